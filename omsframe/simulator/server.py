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

Filtering and sorting are vectorised with numpy over the orders (or events) visible at the
request's moment; only the objects of the requested page are rendered to JSON.

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
import email.utils
import re
import secrets
import socket
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson
from numpy.typing import NDArray

from omsframe.simulator import catalogue as cat
from omsframe.simulator import faults as flt
from omsframe.simulator import render
from omsframe.simulator.faults import Faults
from omsframe.simulator.world import EVENT_TYPES, World, from_us, number_of, to_us

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
API = "/api/v1/oms/orders/"
LOGIN = "/api/v1/auth/login/"
ORDER_FIELDS = ("id", "created_date", "modified_date", "date_placed", "number")
EVENT_FIELDS = ("id", "created_date", "modified_date")
_NUMBER_INVERSE = pow(1_000_003, -1, 10**12)  # number_of(id) is id * 1000003 mod 10**12
_CHANNEL_IDS = frozenset(spec.id for spec in cat.CHANNELS)
_ORDERING_TERM = re.compile(r"^(-?)([.\w]+)$")
Array = NDArray[Any]
Json = dict[str, Any]


@dataclass(frozen=True)
class Dialect:
    """What we do not know about a real OMS deployment, as switches.

    Attributes:
        honour_filters: ``False``: every filter is silently ignored (as DRF ignores unknown
            query parameters), so a client gets unfiltered data.
        ignored_filters: Names of single filters to ignore (e.g. ``"modified_date__gte"``).
        honour_ordering: ``False``: ``ordering`` is ignored and the default ordering used.
        default_ordering: Ordering when none (or no valid one) is asked; comma-separated
            fields, ``-`` for descending. Fields an endpoint lacks fall back to ``-id``.
        default_page_size: Page size without ``limit``.
        max_page_size: Largest page size; a larger ``limit`` is cut to it.

    Example:
        >>> Dialect(honour_ordering=False, default_ordering="id").default_ordering
        'id'
    """

    honour_filters: bool = True
    ignored_filters: frozenset[str] = frozenset()
    honour_ordering: bool = True
    default_ordering: str = "-id"
    default_page_size: int = 20
    max_page_size: int = 1000

    def __post_init__(self) -> None:
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ValueError("Dialect: need 1 <= default_page_size <= max_page_size")
        if not _ordering_terms(self.default_ordering, ORDER_FIELDS):
            raise ValueError(
                f"Dialect.default_ordering: no orderable field in {self.default_ordering!r}"
            )


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


class _HttpError(Exception):
    """An API error answer: status and JSON body."""

    def __init__(self, status: int, body: object, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def _not_found(detail: str = "Not found.") -> _HttpError:
    return _HttpError(404, {"detail": detail})


def _ordering_terms(text: str, fields: tuple[str, ...]) -> tuple[tuple[str, bool], ...]:
    """Valid ``(field, descending)`` terms of an ordering string; invalid ones dropped (DRF)."""
    terms = []
    for raw in text.split(","):
        match = _ORDERING_TERM.match(raw.strip())
        if match and match.group(2) in fields:
            terms.append((match.group(2), match.group(1) == "-"))
    return tuple(terms)


# --- filters ------------------------------------------------------------------------------
# name -> (parser, column, op). Parsers return a value, or raise ValueError with the message.
_RANGE = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}
_Filter = tuple[str, str, str]


def _filters(kind: str) -> dict[str, _Filter]:
    specs: dict[str, _Filter] = {f"id__{op}": ("number", "id", op) for op in _RANGE}
    dates = ("created_date", "modified_date") + (("date_placed",) if kind == "orders" else ())
    for name in dates:
        for op in ("gte", "lte"):
            specs[f"{name}__{op}"] = ("datetime", name, op)
    specs["number"] = ("order_number", "order_index", "eq")
    specs["channel"] = ("channel", "channel_index", "eq")
    specs["state__enum_value"] = ("state", "state", "eq")
    if kind == "events":
        specs["event_type"] = ("event_type", "event_kind", "eq")
        specs["delivered"] = ("bool", "delivered", "eq")
        specs["order"] = ("exact_number", "order_id", "eq")
    return specs


_FILTERS = {"orders": _filters("orders"), "events": _filters("events")}
_NOTHING = "nothing"  # an op that matches no row (a valid value that no row can have)


def _parse_decimal(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError("Enter a number.") from None
    if not value.is_finite():
        raise ValueError("Enter a number.")
    limit = Decimal(2**62)  # beyond any id; keeps huge exponents cheap and numpy in range
    return max(-limit, min(limit, value))


def _parse_filter(engine: _Engine, parser: str, op: str, text: str) -> tuple[str, int] | None:
    """Turn one query value into ``(op, integer value)``; ``None`` means: no filter.

    Raises:
        ValueError: With django-filter's message when the value is invalid.
    """
    if parser == "number":  # NumberFilter: a decimal, compared with integer ids exactly
        value = _parse_decimal(text)
        rounding = "ROUND_FLOOR" if op in ("gt", "lte") else "ROUND_CEILING"
        return op, int(value.to_integral_value(rounding=rounding))
    if parser == "exact_number":
        value = _parse_decimal(text)
        return (op, int(value)) if value == value.to_integral_value() else (_NOTHING, 0)
    if parser == "datetime":
        try:
            return op, to_us(dt.datetime.fromisoformat(text.strip()))
        except ValueError:
            raise ValueError("Enter a valid date/time.") from None
    if parser == "channel":
        digits = text.strip()
        channel = int(digits) if digits.isascii() and digits.isdigit() else -1
        if channel not in _CHANNEL_IDS:
            raise ValueError(
                "Select a valid choice. That choice is not one of the available choices."
            )
        return op, channel - 1
    if parser == "state":  # a CharFilter on the string enum_value: "0400" is not "400"
        ok = text.isascii() and text.isdigit() and str(int(text)) == text
        return (op, int(text)) if ok else (_NOTHING, 0)
    if parser == "order_number":
        index = engine.index_of_number(text)
        return (op, index) if index is not None else (_NOTHING, 0)
    if parser == "event_type":
        return (op, EVENT_TYPES.index(text)) if text in EVENT_TYPES else (_NOTHING, 0)
    # BooleanWidget: anything but true/false/1/0 means "no filter", as in django-filter
    flag = {"true": 1, "1": 1, "false": 0, "0": 0}.get(text.lower())
    return None if flag is None else (op, flag)


class _Engine:
    """Vectorised filtering, ordering and paging of a world's orders and events."""

    def __init__(self, world: World, dialect: Dialect, *, cache: bool = True) -> None:
        self.world = world
        self.dialect = dialect
        self.cache = cache  # worth it only while the clock stands still between requests
        self.orders_monotone = bool(
            np.all(np.diff(world.order_id) > 0) and np.all(np.diff(world.order_created) >= 0)
        )
        self.number_key = world.order_id * 1_000_003 % 10**12  # sorts like the number string
        self.event_channel = world.order_channel[world.event_order]
        self.event_order_id = world.order_id[world.event_order]
        fields = {"orders": ORDER_FIELDS, "events": EVENT_FIELDS}
        self.default_ordering = {
            kind: _ordering_terms(dialect.default_ordering, names) or (("id", True),)
            for kind, names in fields.items()
        }
        self.fields = fields
        self._cache: OrderedDict[tuple[object, ...], NDArray[np.int64]] = OrderedDict()
        self._lock = threading.Lock()
        if not self.orders_monotone:  # build the lazy map once, before threads race for it
            _ = world.index_of_order_id

    def index_of_order(self, order_id: int) -> int | None:
        """Order index of an OMS order id (over the whole horizon), or ``None``."""
        if not self.orders_monotone:
            return self.world.index_of_order_id.get(order_id)
        index = int(np.searchsorted(self.world.order_id, order_id))
        found = index < self.world.n_orders and int(self.world.order_id[index]) == order_id
        return index if found else None

    def index_of_number(self, text: str) -> int | None:
        """Order index of an order number (over the whole horizon), or ``None``."""
        if len(text) != 16 or not (text.isascii() and text.isdigit()) or text[:4] != "2291":
            return None
        order_id = int(text[4:]) * _NUMBER_INVERSE % 10**12
        return self.index_of_order(order_id) if number_of(order_id) == text else None

    def columns(self, kind: str, now_us: int) -> tuple[int, Callable[[str], Array]]:
        """The visible row count and a lazy column getter at ``now_us``."""
        w = self.world
        if kind == "orders":
            n = w.visible_orders(now_us)
            getters: dict[str, Callable[[], Array]] = {
                "id": lambda: w.order_id[:n],
                "created_date": lambda: w.order_created[:n],
                "date_placed": lambda: w.order_placed[:n],
                "modified_date": lambda: w.order_status(now_us)[1],
                "state": lambda: w.order_status(now_us)[0],
                "channel_index": lambda: w.order_channel[:n],
                "order_index": lambda: np.arange(n),
                "number": lambda: self.number_key[:n],
            }
        else:
            n = w.visible_events(now_us)
            getters = {
                "id": lambda: np.arange(1, n + 1),
                "created_date": lambda: w.event_time[:n],
                "modified_date": lambda: w.event_status(now_us)[0],
                "state": lambda: w.event_state[:n],
                "channel_index": lambda: self.event_channel[:n],
                "order_index": lambda: w.event_order[:n],
                "event_kind": lambda: w.event_kind[:n],
                "delivered": lambda: w.event_status(now_us)[2],
                "order_id": lambda: self.event_order_id[:n],
            }
        cache: dict[str, Array] = {}

        def column(name: str) -> Array:
            if name not in cache:
                cache[name] = getters[name]()
            return cache[name]

        return n, column

    def parse(
        self, kind: str, params: dict[str, str]
    ) -> tuple[tuple[tuple[str, str, int], ...], tuple[tuple[str, bool], ...]]:
        """Active filters ``(column, op, value)`` and ordering terms of a query.

        Raises:
            _HttpError: 400 with django-filter's messages for invalid filter values.
        """
        dialect = self.dialect
        active: list[tuple[str, str, int]] = []
        errors: dict[str, list[str]] = {}
        if dialect.honour_filters:
            for name, (parser, column, op) in _FILTERS[kind].items():
                text = params.get(name, "")
                if text == "" or name in dialect.ignored_filters:
                    continue
                try:
                    parsed = _parse_filter(self, parser, op, text)
                except ValueError as exc:
                    errors[name] = [str(exc)]
                    continue
                if parsed is not None:
                    active.append((column, *parsed))
        if errors:
            raise _HttpError(400, errors)
        ordering: tuple[tuple[str, bool], ...] = ()
        if dialect.honour_ordering and params.get("ordering"):
            ordering = _ordering_terms(params["ordering"], self.fields[kind])
        return tuple(active), ordering or self.default_ordering[kind]

    def select(self, kind: str, params: dict[str, str], now_us: int) -> NDArray[np.int64]:
        """Indices (order or event indices) matching a query, in the asked order."""
        active, ordering = self.parse(kind, params)
        key = (kind, now_us, active, ordering)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        n, column = self.columns(kind, now_us)
        mask: NDArray[np.bool_] | None = None
        for name, op, value in active:
            if op == _NOTHING:
                part = np.zeros(n, dtype=bool)
            elif op == "eq":
                part = column(name) == value
            else:
                part = _RANGE[op](column(name), value)
            mask = part if mask is None else mask & part
        rows = np.arange(n, dtype=np.int64) if mask is None else np.flatnonzero(mask)
        rows = self._sort(kind, rows, ordering, column)
        if not self.cache:
            return rows
        with self._lock:
            self._cache[key] = rows
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        return rows

    def _sort(
        self,
        kind: str,
        rows: NDArray[np.int64],
        ordering: tuple[tuple[str, bool], ...],
        column: Callable[[str], Array],
    ) -> NDArray[np.int64]:
        """Sort rows by the ordering terms, ties broken by id ascending (a total order)."""
        # rows come in index order; index order is id order and created order (checked once)
        monotone = kind == "events" or self.orders_monotone
        if monotone and ordering in ((("id", False),), (("created_date", False),)):
            return rows
        if monotone and ordering == (("id", True),):
            return rows[::-1].copy()
        if monotone and len(ordering) == 1:
            # one key: a quicksort is right unless two keys tie (then ties need id order)
            values = column(ordering[0][0])[rows].astype(np.int64)
            if ordering[0][1]:
                values = -values
            perm = np.argsort(values)
            ranked = values[perm]
            if not np.any(ranked[1:] == ranked[:-1]):
                return rows[perm]
        keys: list[Array] = [column("id")[rows]]
        for name, descending in reversed(ordering):
            values = column(name)[rows].astype(np.int64)
            keys.append(-values if descending else values)
        return rows[np.lexsort(keys)]


# --- pagination (DRF's PageNumberPagination with page_size_query_param="limit") -----------
def _replace_query_param(url: str, key: str, value: object) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    query_dict = parse_qs(query, keep_blank_values=True)
    query_dict[key] = [str(value)]
    return urlunsplit(
        (scheme, netloc, path, urlencode(sorted(query_dict.items()), doseq=True), fragment)
    )


def _remove_query_param(url: str, key: str) -> str:
    scheme, netloc, path, query, fragment = urlsplit(url)
    query_dict = parse_qs(query, keep_blank_values=True)
    query_dict.pop(key, None)
    return urlunsplit(
        (scheme, netloc, path, urlencode(sorted(query_dict.items()), doseq=True), fragment)
    )


def _page_size(params: dict[str, str], dialect: Dialect) -> int:
    try:
        size = int(params.get("limit", ""))
    except ValueError:
        return dialect.default_page_size
    return dialect.default_page_size if size <= 0 else min(size, dialect.max_page_size)


def _paginate(
    rows: NDArray[np.int64], params: dict[str, str], url: str, dialect: Dialect
) -> tuple[NDArray[np.int64], Json]:
    """The rows of the asked page and the page envelope (without ``results``).

    Raises:
        _HttpError: 404 ``Invalid page.`` for a page that is not a number or out of range.
    """
    size = _page_size(params, dialect)
    count = int(rows.shape[0])
    pages = max(1, -(-count // size))
    text = params.get("page") or "1"
    try:
        number = pages if text == "last" else int(text)
    except ValueError:
        raise _not_found("Invalid page.") from None
    if not 1 <= number <= pages:
        raise _not_found("Invalid page.")
    next_url = _replace_query_param(url, "page", number + 1) if number < pages else None
    if number == 1:
        previous = None
    elif number == 2:
        previous = _remove_query_param(url, "page")
    else:
        previous = _replace_query_param(url, "page", number - 1)
    envelope = {"count": count, "next": next_url, "previous": previous}
    return rows[(number - 1) * size : number * size], envelope


# --- routes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Route:
    name: str
    template: str
    methods: tuple[str, ...]


_GET = ("GET", "HEAD", "OPTIONS")
_POST = ("POST", "OPTIONS")
_EXACT: dict[str, _Route] = {
    route.template: route
    for route in (
        _Route("login", LOGIN, _POST),
        _Route("orders", API, _GET),
        _Route("orders_short", f"{API}short/", _GET),
        _Route("orders_simple", f"{API}list-simple/", _GET),
        _Route("events", f"{API}webhook-events/", _GET),
        _Route("events_short", f"{API}webhook-events/short/", _GET),
        _Route("delivery_types", f"{API}delivery-types/", _GET),
        _Route("payment_types", f"{API}payment-types/", _GET),
        _Route("pull", f"{API}pull-from-omnitron/", _POST),
    )
}
_PATTERNS: tuple[tuple[re.Pattern[str], _Route], ...] = (
    (
        re.compile(rf"^{API}webhook-events/([^/.]+)/$"),
        _Route("event", f"{API}webhook-events/{{id}}/", _GET),
    ),
    (re.compile(rf"^{API}([^/.]+)/short/$"), _Route("order_short", f"{API}{{id}}/short/", _GET)),
    (re.compile(rf"^{API}([^/.]+)/$"), _Route("order", f"{API}{{id}}/", _GET)),
)


def _resolve(path: str) -> tuple[_Route, str] | None:
    route = _EXACT.get(path)
    if route is not None:
        return route, ""
    for pattern, candidate in _PATTERNS:
        match = pattern.match(path)
        if match:
            return candidate, match.group(1)
    return None


_SHAPES: dict[str, Callable[[World, int, int], Json]] = {
    "full": render.order_object,
    "short": render.order_short_object,
    "simple": render.order_simple_object,
}
_LIST_SHAPE = {"orders": "full", "orders_short": "short", "orders_simple": "simple"}


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
        self._engine = _Engine(world, self.dialect, cache=static)
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
        self._pulls: list[str] = []
        self._httpd: _HttpServer | None = None
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
        self._httpd = _HttpServer((self.host, self.port), self)
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
        with self._lock:
            return list(self._pulls)

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

    # --- endpoints ------------------------------------------------------------------------------
    def _login(self, body: Json) -> Json:
        errors = {
            name: ["This field is required."]
            for name in ("username", "password")
            if not isinstance(body.get(name), str)
        }
        if errors:
            raise _HttpError(400, errors)
        if body["username"] != self.username or body["password"] != self.password:
            raise _HttpError(
                400, {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        with self._lock:  # like DRF's Token.objects.get_or_create: one key per user
            if self._login_token is None:
                self._login_token = secrets.token_hex(20)
            return {"key": self._login_token}

    def _pull(self, body: Json, now_us: int) -> Json:
        number = body.get("number")
        if number is None:
            raise _HttpError(400, {"number": ["This field is required."]})
        if isinstance(number, bool) or not isinstance(number, str | int):
            raise _HttpError(400, {"number": ["Not a valid string."]})
        number = str(number).strip()
        if not number:
            raise _HttpError(400, {"number": ["This field may not be blank."]})
        index = self._engine.index_of_number(number)
        if index is None or index >= self.world.visible_orders(now_us):
            raise _not_found()
        with self._lock:
            self._pulls.append(number)
        return {"number": number, "detail": "Order pull from Omnitron queued."}

    def _render_order(self, index: int, now_us: int, shape: str) -> Json:
        order = _SHAPES[shape](self.world, index, now_us)
        if self.faults.rate_drift > 0 and flt.apply_drift(order, self.faults, shape):
            self._count("_faults", "drift")
        return order

    def _render_event(self, index: int, now_us: int, with_payload: bool) -> Json:
        event = render.event_object(self.world, index, now_us, with_payload=with_payload)
        drifts = with_payload and self.faults.rate_drift > 0
        if drifts and flt.apply_drift(event["request_payload"]["payload"], self.faults, "full"):
            self._count("_faults", "drift")
        return event

    def _list(self, name: str, params: dict[str, str], url: str, now_us: int) -> Json:
        kind = "events" if name.startswith("events") else "orders"
        rows = self._engine.select(kind, params, now_us)
        page, envelope = _paginate(rows, params, url, self.dialect)
        if kind == "orders":
            shape = _LIST_SHAPE[name]
            results = [self._render_order(int(i), now_us, shape) for i in page]
        else:
            full = name == "events"
            results = [self._render_event(int(e), now_us, full) for e in page]
        envelope["results"] = results
        return envelope

    def _detail(self, name: str, raw_id: str, now_us: int) -> Json:
        try:
            pk = int(raw_id)
        except ValueError:
            raise _not_found() from None
        if name == "event":
            if not 1 <= pk <= self.world.visible_events(now_us):
                raise _not_found("No WebhookEvent matches the given query.")
            return self._render_event(pk - 1, now_us, True)
        index = self._engine.index_of_order(pk)
        if index is None or index >= self.world.visible_orders(now_us):
            raise _not_found("No Order matches the given query.")
        return self._render_order(index, now_us, "short" if name == "order_short" else "full")

    def _endpoint(
        self, route: _Route, pk: str, params: dict[str, str], url: str, body: Json
    ) -> object:
        """Answer an authenticated request to one of the 11 endpoints (the clock steps)."""
        now_us = self._tick()
        name = route.name
        if name == "pull":
            return self._pull(body, now_us)
        if name in ("delivery_types", "payment_types"):
            table = cat.DELIVERY_TYPES if name == "delivery_types" else cat.PAYMENT_TYPES
            return [{"value": value, "label": label} for value, label, _share in table]
        if name in ("order", "order_short", "event"):
            return self._detail(name, pk, now_us)
        return self._list(name, params, url, now_us)


def _auth_error(detail: str) -> _HttpError:
    return _HttpError(401, {"detail": detail}, (("WWW-Authenticate", "Token"),))


def _query_params(query: str) -> dict[str, str]:
    """Query parameters, the last value of a repeated one winning (Django's QueryDict.get)."""
    return {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}


def _json_body(headers: Any, raw: bytes) -> Json:
    """Parse a JSON or form body as DRF's parsers do; 400 on malformed JSON."""
    if not raw:
        return {}
    if "application/x-www-form-urlencoded" in (headers.get("Content-Type") or ""):
        return dict(_query_params(raw.decode("utf-8", "replace")))
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _HttpError(400, {"detail": f"JSON parse error - {exc}"}) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise _HttpError(
            400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}
        )
    return data


class _HttpServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator and its open connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many concurrent clients connect at once

    def __init__(self, address: tuple[str, int], sim: SimulatorServer) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Shut every open keep-alive connection (their threads then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One connection: parses requests and writes DRF-like answers (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr log."""

    def do_GET(self) -> None:
        """Serve any method: routing, faults, auth and errors are the same for all."""
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        sim = cast(_HttpServer, self.server).sim
        path, _, query = self.path.partition("?")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(sim, 400, {"detail": "Bad Content-Length."})
            return
        raw = self.rfile.read(length) if length else b""
        resolved = _resolve(path)
        sim._count("_requests", resolved[0].template if resolved else path)
        decision = sim._drawer.draw()
        if decision.slow:
            sim._count("_faults", "slow")
            time.sleep(sim.faults.slow_seconds)
        if decision.kind in ("dropped", "429", "5xx"):
            sim._count("_faults", decision.kind)
            self._fail(sim, decision)
            return
        headers: tuple[tuple[str, str], ...] = ()
        try:
            status, payload = 200, self._answer(sim, resolved, query, raw)
        except _HttpError as exc:
            status, payload, headers = exc.status, exc.body, exc.headers
        if isinstance(payload, _Redirect):
            self._send(sim, 301, b"", (("Location", payload.location),), content_type="text/html")
            return
        body = orjson.dumps(payload)
        if decision.kind == "invalid_json":
            sim._count("_faults", "invalid_json")
            status, body = 200, flt.cut(body, decision.fraction, text=True)
        if resolved is not None:
            headers = (*headers, ("Allow", ", ".join(resolved[0].methods)))
        truncate = decision.fraction if decision.kind == "truncated" else None
        if truncate is not None:
            sim._count("_faults", "truncated")
        self._send(sim, status, body, headers, truncate=truncate)

    def _answer(
        self, sim: SimulatorServer, resolved: tuple[_Route, str] | None, query: str, raw: bytes
    ) -> object:
        path = self.path.partition("?")[0]
        if resolved is None:
            if not path.endswith("/") and _resolve(path + "/") is not None:
                return _Redirect(path + "/" + (f"?{query}" if query else ""))  # APPEND_SLASH
            raise _not_found()
        route, pk = resolved
        if route.name != "login":
            sim._authenticate(self.headers.get("Authorization"))
        if self.command not in route.methods:
            raise _HttpError(405, {"detail": f'Method "{self.command}" not allowed.'})
        if self.command == "OPTIONS":
            return {
                "name": route.name.replace("_", " ").title(),
                "description": "",
                "renders": ["application/json"],
                "parses": ["application/json", "application/x-www-form-urlencoded"],
            }
        body = _json_body(self.headers, raw) if self.command == "POST" else {}
        if route.name == "login":
            return sim._login(body)
        host = self.headers.get("Host") or f"{sim.host}:{sim.port}"
        return sim._endpoint(route, pk, _query_params(query), f"http://{host}{self.path}", body)

    def _fail(self, sim: SimulatorServer, decision: flt.Decision) -> None:
        if decision.kind == "dropped":
            self.close_connection = True
            return
        if decision.kind == "429":
            retry_after, body = flt.throttled(sim.faults, decision)
            self._send(sim, 429, body, (("Retry-After", retry_after),))
            return
        content_type, body = flt.server_error(decision)
        self._send(sim, decision.status, body, content_type=content_type)

    def _send(
        self,
        sim: SimulatorServer,
        status: int,
        body: object,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        content_type: str = "application/json",
        truncate: float | None = None,
    ) -> None:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            "Server: nginx",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            f"Content-Type: {content_type}",
        ]
        if data and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
            data = compressor.compress(data) + compressor.flush()
            lines += ["Content-Encoding: gzip", "Vary: Accept, Accept-Encoding"]
        elif content_type == "application/json":
            lines.append("Vary: Accept")
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(data)}")
        if self.close_connection or truncate is not None:
            lines.append("Connection: close")
        sim._count("_statuses", status)
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if self.command == "HEAD":
            return
        if truncate is not None:
            self.close_connection = True
            data = flt.cut(data, truncate)
        self.wfile.write(data)


@dataclass(frozen=True)
class _Redirect:
    location: str


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
