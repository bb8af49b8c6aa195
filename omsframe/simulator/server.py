"""The simulator's HTTP API: the OMS order endpoints of ``oms-api.md`` served from a World.

A :class:`SimulatorServer` answers over real HTTP/1.1 on loopback (keep-alive, gzip when
asked) the way a Django REST Framework deployment does: token auth, page-number pagination with
``limit``, django-filter style filters and ``ordering``, DRF's error bodies. Two switches model
what we do not know about real servers (:class:`Dialect`: filters or ordering ignored, other
defaults) and :class:`~omsframe.simulator.faults.Faults` injects the faults of the real world
(429 with ``Retry-After``, 5xx with HTML pages, slow, truncated and dropped responses, invalid
JSON, schema drift). A :class:`Clock` moves the shop forward while a client reads it.
Every request, to any path, draws its fault once; a request that passes authentication and
reaches one of the 11 endpoints sees the shop at one moment and then steps the clock.

This module holds the server's state (clock, tokens, counters) and its lifecycle; the query
engine is in :mod:`~omsframe.simulator.query`, the endpoints in
:mod:`~omsframe.simulator.endpoints` and the HTTP transport in
:mod:`~omsframe.simulator.handler`.

Example:
    >>> import httpx
    >>> with serve(World.generate(seed=1, orders=50)) as server:
    ...     page = httpx.get(
    ...         f"{server.url}/api/v1/oms/orders/?limit=5",
    ...         headers={"Authorization": f"Token {server.token}"},
    ...     ).json()
    >>> len(page["results"]), page["count"] <= 50
    (5, True)
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from omsframe.simulator import faults as flt
from omsframe.simulator.endpoints import Endpoints, Route
from omsframe.simulator.faults import Faults
from omsframe.simulator.handler import HttpServer
from omsframe.simulator.query import Dialect, HttpError
from omsframe.simulator.world import World, from_us, to_us

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_TOKEN",
    "DEFAULT_USERNAME",
    "Clock",
    "Dialect",
    "Faults",
    "SimulatorServer",
    "StatsSnapshot",
    "serve",
]

DEFAULT_TOKEN = "sim-token-7d1f4c2b9e8a6035"
DEFAULT_USERNAME = "analyst"
DEFAULT_PASSWORD = "sim-password-2f9c"
Json = dict[str, Any]


@dataclass
class Clock:
    """The shop's live clock.

    The moment a request sees is ``start + n * step_per_request + speed * wall seconds since
    the server started + advance()``, where ``n`` counts the requests handled by the API
    endpoints before this one (login, unknown paths, 401s and injected 429/5xx/dropped do
    not move the clock).

    Attributes:
        start: The shop time when the server starts; default: the world's end.
        step_per_request: Shop time added after every handled API request.
        speed: Shop seconds per wall-clock second (0: the clock stands still).

    Example:
        >>> Clock(step_per_request=dt.timedelta(hours=1)).speed
        0.0
    """

    start: dt.datetime | None = None
    step_per_request: dt.timedelta = dt.timedelta(0)
    speed: float = 0.0


@dataclass(frozen=True)
class StatsSnapshot:
    """A copy of the server's counters.

    Attributes:
        requests: Requests per route (detail routes as templates such as
            ``/api/v1/oms/orders/{id}/``; unknown paths as they came).
        faults: Injected faults by kind (``429``, ``5xx``, ``slow``, ``truncated``,
            ``dropped``, ``invalid_json``; ``drift`` counts drifted orders rendered).
        statuses: Responses sent per HTTP status (dropped connections have none).

    Example:
        >>> StatsSnapshot({"/x/": 2}, {}, {200: 2}).total
        2
    """

    requests: dict[str, int]
    faults: dict[str, int]
    statuses: dict[int, int]

    @property
    def total(self) -> int:
        """Number of requests received."""
        return sum(self.requests.values())


# --- the server ----------------------------------------------------------------------------
class SimulatorServer:
    """The OMS order API over real HTTP on loopback, served from a :class:`World`.

    Args:
        world: The shop to serve.
        token: A static API token that is always valid.
        username: The user that ``POST /api/v1/auth/login/`` accepts.
        password: That user's password.
        dialect: Switches for what real servers may do differently.
        faults: Faults to inject.
        clock: The live clock.
        host: Address to bind (loopback).
        port: Port to bind; 0 picks a free one.

    Example:
        >>> with SimulatorServer(World.generate(seed=2, orders=40)) as server:
        ...     server.url.startswith("http://127.0.0.1:")
        True
    """

    def __init__(
        self,
        world: World,
        *,
        token: str = DEFAULT_TOKEN,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        dialect: Dialect | None = None,
        faults: Faults | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        clock = clock or Clock()
        if clock.step_per_request < dt.timedelta(0) or clock.speed < 0:
            raise ValueError("Clock: step_per_request and speed must not be negative")
        self.world = world
        self.token = token
        self.username = username
        self.password = password
        self.dialect = dialect or Dialect()
        self.faults = faults or Faults()
        self.clock = clock
        self.host, self.port = host, port
        static = clock.step_per_request == dt.timedelta(0) and clock.speed == 0
        self._endpoints = Endpoints(
            world,
            self.dialect,
            self.faults,
            cache=static,
            on_drift=lambda: self._count("_faults", "drift"),
        )
        self._drawer = flt.FaultDrawer(self.faults)
        self._lock = threading.Lock()
        self._base_us = to_us(clock.start) if clock.start is not None else world.end_us
        self._step_us = clock.step_per_request // dt.timedelta(microseconds=1)
        self._offset_us = 0
        self._ticks = 0
        self._wall0: float | None = None
        self._login_token: str | None = None
        self._requests: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._httpd: HttpServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> SimulatorServer:
        """Bind and serve in a daemon thread; returns ``self``.

        Example:
            >>> server = SimulatorServer(World.generate(seed=2, orders=40)).start()
            >>> server.stop()
        """
        if self._httpd is not None:
            return self
        self._httpd = HttpServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        with self._lock:
            self._wall0 = time.monotonic()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"omsframe-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent).

        Example:
            >>> server = SimulatorServer(World.generate(seed=2, orders=40)).start()
            >>> server.stop(); server.stop()
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, such as ``http://127.0.0.1:8731`` (the server must be started).

        Example:
            >>> with serve() as server:
            ...     server.url.count(":")
            2
        """
        if self._httpd is None:
            raise RuntimeError("SimulatorServer is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    # --- the clock ----------------------------------------------------------------------------
    def _now_locked(self) -> int:
        wall = 0.0 if self._wall0 is None else time.monotonic() - self._wall0
        live = int(self.clock.speed * wall * 1_000_000)
        return self._base_us + self._offset_us + self._ticks * self._step_us + live

    @property
    def now_us(self) -> int:
        """The shop's current moment in microseconds since the epoch."""
        with self._lock:
            return self._now_locked()

    @property
    def now(self) -> dt.datetime:
        """The shop's current moment (UTC).

        Example:
            >>> world = World.generate(seed=2, orders=40)
            >>> SimulatorServer(world).now == from_us(world.end_us)
            True
        """
        return from_us(self.now_us)

    def advance(self, delta: dt.timedelta) -> None:
        """Move the shop's clock forward by ``delta``.

        Example:
            >>> server = SimulatorServer(World.generate(seed=2, orders=40))
            >>> before = server.now_us
            >>> server.advance(dt.timedelta(seconds=1)); server.now_us - before
            1000000
        """
        if delta < dt.timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset_us += delta // dt.timedelta(microseconds=1)

    def freeze(self) -> None:
        """Stop the live clock where it is: from now on every request sees this moment.

        Example:
            >>> server = SimulatorServer(World.generate(seed=2, orders=40),
            ...                          clock=Clock(step_per_request=dt.timedelta(hours=1)))
            >>> server.freeze(); server.clock.step_per_request
            datetime.timedelta(0)
        """
        with self._lock:
            now = self._now_locked()
            self._base_us, self._offset_us, self._ticks, self._step_us = now, 0, 0, 0
            self.clock = Clock(start=from_us(now))

    def _tick(self) -> int:
        """The moment of one handled API request; then step the clock."""
        with self._lock:
            now = self._now_locked()
            self._ticks += 1
            return now

    # --- counters, tokens ------------------------------------------------------------------------
    @property
    def stats(self) -> StatsSnapshot:
        """A copy of the request, fault and status counters.

        Example:
            >>> with serve() as server:
            ...     server.stats.total
            0
        """
        with self._lock:
            return StatsSnapshot(dict(self._requests), dict(self._faults), dict(self._statuses))

    def reset_stats(self) -> None:
        """Zero the counters (pulls are kept)."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._statuses.clear()

    @property
    def pulls(self) -> list[str]:
        """Order numbers whose pull from Omnitron was accepted (queued), in arrival order.

        Example:
            >>> with serve() as server:
            ...     server.pulls
            []
        """
        return self._endpoints.pulls

    def revoke_tokens(self) -> None:
        """Invalidate every token issued by login (the static token stays valid).

        Example:
            >>> server = SimulatorServer(World.generate(seed=2, orders=40))
            >>> server.revoke_tokens()
        """
        with self._lock:
            self._login_token = None

    def _count(self, table: str, key: Any, n: int = 1) -> None:
        with self._lock:
            cast(Counter[Any], getattr(self, table))[key] += n

    def _authenticate(self, header: str | None) -> None:
        """Check ``Authorization: Token <key>`` the way DRF's TokenAuthentication does."""
        parts = (header or "").split()
        if not parts or parts[0].lower() != "token":
            raise _auth_error("Authentication credentials were not provided.")
        if len(parts) == 1:
            raise _auth_error("Invalid token header. No credentials provided.")
        if len(parts) > 2:
            raise _auth_error("Invalid token header. Token string should not contain spaces.")
        with self._lock:
            valid = parts[1] == self.token or parts[1] == self._login_token
        if not valid:
            raise _auth_error("Invalid token.")

    # --- login and endpoints ------------------------------------------------------------------
    def _login(self, body: Json) -> Json:
        errors = {
            name: ["This field is required."]
            for name in ("username", "password")
            if not isinstance(body.get(name), str)
        }
        if errors:
            raise HttpError(400, errors)
        if body["username"] != self.username or body["password"] != self.password:
            raise HttpError(
                400, {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        with self._lock:  # like DRF's Token.objects.get_or_create: one key per user
            if self._login_token is None:
                self._login_token = secrets.token_hex(20)
            return {"key": self._login_token}

    def _endpoint(
        self, route: Route, pk: str, params: dict[str, str], url: str, body: Json
    ) -> object:
        """Answer an authenticated request to one of the 11 endpoints (the clock steps)."""
        return self._endpoints.answer(route, pk, params, url, body, self._tick())


def _auth_error(detail: str) -> HttpError:
    return HttpError(401, {"detail": detail}, (("WWW-Authenticate", "Token"),))


@contextmanager
def serve(
    world: World | None = None,
    *,
    token: str = DEFAULT_TOKEN,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    dialect: Dialect | None = None,
    faults: Faults | None = None,
    clock: Clock | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[SimulatorServer]:
    """Run a :class:`SimulatorServer` for the duration of a ``with`` block.

    Args:
        world: The shop; default ``World.generate(seed=0, orders=500)``.
        token: The static API token.
        username: The login user.
        password: The login password.
        dialect: Switches for what real servers may do differently.
        faults: Faults to inject.
        clock: The live clock.
        host: Address to bind.
        port: Port (0: a free one).

    Yields:
        The started server; it is stopped when the block ends.

    Example:
        >>> import httpx
        >>> with serve() as server:
        ...     httpx.get(server.url + "/api/v1/oms/orders/").status_code
        401
    """
    server = SimulatorServer(
        world if world is not None else World.generate(seed=0, orders=500),
        token=token,
        username=username,
        password=password,
        dialect=dialect,
        faults=faults,
        clock=clock,
        host=host,
        port=port,
    )
    with server:
        yield server


@contextmanager
def simulate(
    orders: int = 2_000,
    seed: int = 0,
    *,
    start: dt.date = dt.date(2024, 1, 1),
    end: dt.date = dt.date(2025, 12, 1),
    **options: Any,
) -> Iterator[SimulatorServer]:
    """Generate a shop and serve it on loopback for the duration of a ``with`` block.

    Args:
        orders: Orders in the shop.
        seed: Random seed: the same seed gives the same shop.
        start: First day orders are placed.
        end: Last day; the shop's clock stands at its end unless ``clock=`` says otherwise.
        **options: Passed to :class:`SimulatorServer` (``faults=``, ``dialect=``, ``clock=``,
            ``port=``...).

    Yields:
        The running server: ``.url``, ``.token``, ``.world`` (the ground truth).

    Example:
        >>> import omsframe as of
        >>> with of.simulate(orders=100) as oms:
        ...     of.Client(oms.url, token=oms.token).order(oms.world.order_id[0].item())["id"]
        1001
    """
    world = World.generate(seed=seed, orders=orders, start=start, end=end)
    with serve(world, **options) as server:
        yield server
