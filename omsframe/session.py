"""One request to the OMS, done right: auth and re-login, retries, the rate budget, errors.

A :class:`Session` holds one thread-safe ``httpx.Client`` and one :class:`RateBudget` shared by
all its concurrent requests, so that the whole client slows down after a 429 and never starts a
request before ``Retry-After``. :meth:`Session.request` sends one request until it succeeds or
fails for good and returns the parsed JSON; failures become :mod:`omsframe.errors` exceptions.

Requests go only to URLs built from the base URL and a path (never to a ``next`` link, never
through a redirect), so the token goes nowhere else. Request headers are never logged; URLs in
logs and errors are sanitized.

Example:
    Against the built-in simulator (for a real OMS: ``Settings(url=..., token=...)`` with its
    base URL and API key):

    >>> from omsframe.config import Settings
    >>> from omsframe.simulator.server import simulate
    >>> with simulate(orders=20) as oms:
    ...     session = Session(Settings(url=oms.url, token=oms.token))
    ...     page = session.request("orders", "GET", "/api/v1/oms/orders/", params={"limit": "5"})
    ...     session.close()
    >>> page["count"], len(page["results"]), page["previous"]
    (20, 5, None)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlsplit

import httpx
import orjson

from omsframe.config import RetryPolicy, Settings
from omsframe.errors import (
    ApiError,
    AuthError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
    body_excerpt,
    redact,
    sanitize_url,
)
from omsframe.ratelimit import RateBudget, WaitTooLong, backoff_delay, parse_retry_after

__all__ = ["VANISHED", "ClientStats", "Method", "Session"]


class BodyDecoder(Protocol):
    """Turns a response body into the result (what ``Session.request(decode=...)`` takes).

    Called with ``gzip=True`` for a gzip body as it came (the decoder undoes the gzip itself:
    on a worker process, say, so that this one neither inflates nor copies the full body).
    Raises ``orjson.JSONDecodeError`` for a body that is not JSON or not valid gzip.

    A decoder whose ``plain`` attribute is true takes bodies to other processes on this
    machine: from a loopback host, they are then asked for uncompressed (see
    :attr:`~omsframe.config.Settings.compress`).
    """

    def __call__(self, content: bytes, *, gzip: bool = False) -> Any: ...


logger = logging.getLogger(__name__)

Method = Literal["GET", "POST"]

RETRIED_STATUSES: Final = frozenset({500, 502, 503, 504})
# Failures after which a write may not have happened: only these are retried for a POST.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: what the resolver says of a host name that does not exist (not retried: a typo, mostly)
_NO_SUCH_HOST = (
    "Name or service not known",
    "nodename nor servname provided",
    "No address associated with hostname",
    "getaddrinfo failed",
)
#: the hint for a record nested deeper than the walks through a record can go (not retried: the
#: server would send it again)
_TOO_DEEP = (
    "no OMS sends such JSON: check the base URL, or report that record to the OMS's "
    "maintainers; the cache keeps what it had, and a sync resumes from its last checkpoint"
)


def _unknown_host(error: Exception) -> str | None:
    """The hint for a host name the resolver does not know, else ``None``."""
    if isinstance(error, httpx.ConnectError) and any(s in str(error) for s in _NO_SUCH_HOST):
        return "the host name is not known to the resolver: check the URL"
    return None


def _connect_hint(error: Exception, url: httpx.URL) -> str | None:
    """The hint for a connection refused again and again (``None``: the error's own)."""
    if isinstance(error, httpx.ConnectError) and "refused" in str(error).lower():
        port = url.port or (443 if url.scheme == "https" else 80)
        return (
            f"nothing accepts connections at {url.host}:{port}: check the URL, and that the "
            "OMS (or the tunnel to it) is up"
        )
    return None


# What :meth:`Session.request` returns for a page that vanished (404 "Invalid page.").
VANISHED: Final = object()


@dataclass(frozen=True)
class ClientStats:
    """What a client did so far.

    Attributes:
        requests: HTTP requests sent (including retries and logins).
        retries: Requests sent again after a retryable failure.
        logins: Logins made (the first one included).
        throttled: 429 answers received.
        waited_seconds: Seconds spent waiting (backoff, Retry-After, spacing), summed over
            requests (concurrent waits add up).
    """

    requests: int
    retries: int
    logins: int
    throttled: int
    waited_seconds: float


class Session:
    """Sends requests for one client: credentials, retries, rate budget, counters.

    Args:
        settings: Resolved settings (URL, credentials, timeout, retry policy, paths).
        http_client: An ``httpx.Client`` to use (it is not closed by :meth:`close`).
        transport: An ``httpx`` transport, e.g. ``httpx.MockTransport`` in tests.
        sleep: Waits a number of seconds (tests pass a fake).
        clock: Monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if http_client is not None and transport is not None:
            raise TypeError("pass http_client= or transport=, not both")
        self.settings = settings
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport,
            # a plain-http URL (allowed on loopback, or when asked) never uses TLS: no need to
            # build a TLS context (~60 ms); an https URL is always verified
            verify=urlsplit(settings.url).scheme.lower() != "http",
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=max(10, settings.concurrency * 2)),
            headers={"User-Agent": "omsframe", "Accept": "application/json"}
            # (httpx's own default asks for gzip, deflate and more)
            | ({"Accept-Encoding": "identity"} if settings.compress is False else {}),
        )
        self._plain_for_workers = settings.compress is None and settings.loopback
        self._sleep = sleep
        self.budget = RateBudget(settings.concurrency, clock=clock, sleep=sleep)
        self._auth_lock = threading.Lock()
        self._token = settings.token
        self._generation = 0  # bumped at each login: tells which token a request carried
        self._counts_lock = threading.Lock()
        self._requests = self._retries = self._logins = 0
        self._waited = 0.0

    def close(self) -> None:
        """Close the HTTP connections (unless the ``httpx.Client`` was passed in)."""
        if self._owns_http:
            self._http.close()

    @property
    def stats(self) -> ClientStats:
        """What the session did so far (requests, retries, logins, 429s, waits)."""
        budget = self.budget.stats()
        with self._counts_lock:
            return ClientStats(
                self._requests,
                self._retries,
                self._logins,
                budget.throttled,
                self._waited + budget.waited_seconds,
            )

    def shape_error(self, endpoint: str, path: str, what: str) -> ResponseError:
        """The error for a 2xx answer of the wrong shape."""
        return ResponseError(
            endpoint=endpoint, url=self.settings.url + path, status=200, detail=what
        )

    # --- auth -----------------------------------------------------------------------------
    def _credentials(self) -> tuple[str | None, int]:
        """The token to send and its generation; logs in first when there is none yet."""
        with self._auth_lock:
            if self._token is None:
                self._login()
            return self._token, self._generation

    def _relogin(self, generation: int) -> None:
        """Log in again, unless another request already did since ``generation``."""
        with self._auth_lock:
            if self._generation == generation:
                self._login()

    def _login(self) -> None:
        s = self.settings
        if not (s.username and s.password):
            return
        body = self.request(
            "login",
            "POST",
            s.paths.login,
            json={"username": s.username, "password": s.password},
            authenticate=False,
        )
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            # never quote the body: it may hold a key under another name
            raise ResponseError(
                endpoint="login",
                url=s.url + s.paths.login,
                status=200,
                detail='no "key" in the login answer',
                hint="check the login path (Client(paths=EndpointPaths(login=...)))",
            )
        self._token = key
        self._generation += 1
        with self._counts_lock:
            self._logins += 1

    # --- one request, with retries --------------------------------------------------------
    def request(
        self,
        endpoint: str,
        method: Method,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        authenticate: bool = True,
        vanish: bool = False,
        write: bool = False,
        decode: BodyDecoder | None = None,
    ) -> Any:
        """Send one request until it succeeds or fails for good; return the parsed JSON.

        Args:
            endpoint: Name for errors and logs.
            method: HTTP method.
            path: Path under the base URL.
            params: Query parameters.
            json: JSON body.
            authenticate: Send the token (log in first if needed; once more after a 401).
            vanish: A 404 "Invalid page." returns ``VANISHED`` instead of raising.
            write: A write: retried only when it surely did not reach the server.
            decode: Turns a successful body into the result (default ``orjson.loads``);
                given a gzip body as it came (see :class:`BodyDecoder`).
        """
        policy = self.settings.retry
        url = httpx.URL(self.settings.url + path, params=params)
        shown = sanitize_url(str(url))
        relogged = False
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= policy.max_attempts
            headers: dict[str, str] = {}
            generation = 0
            if authenticate:
                token, generation = self._credentials()
                if token:
                    headers["Authorization"] = f"Token {token}"
            if self._plain_for_workers and getattr(decode, "plain", False):
                headers["Accept-Encoding"] = "identity"
            with self._counts_lock:
                self._requests += 1
                self._retries += attempt > 1
            try:
                response, throttled, gzipped = self._send(
                    method, url, shown, json, headers, attempt, keep_gzip=decode is not None
                )
            except WaitTooLong as exc:
                raise RateLimitError(
                    endpoint=endpoint,
                    url=shown,
                    status=None,
                    detail="not sent: an earlier 429 of this client is still in force",
                    hint=_too_long(exc.seconds, policy),
                    retry_after=exc.seconds,
                ) from None
            except (httpx.TransportError, httpx.DecodingError) as exc:
                # DecodingError: a gzip body cut short; the rest: timeouts, dropped connections
                failure = type(exc).__name__
                unknown = _unknown_host(exc)
                if unknown or last or (write and not isinstance(exc, _NOT_SENT)):
                    raise ServerError(
                        endpoint=endpoint,
                        url=shown,
                        detail=f"{failure} after {attempt} attempt(s)",
                        hint=unknown or _connect_hint(exc, url),
                    ) from exc
                self._back_off(backoff_delay(attempt, policy), shown, failure, attempt)
                continue
            status = response.status_code

            if response.is_success:
                if gzipped is None and not response.content.strip():
                    return None
                try:
                    if gzipped is not None and decode is not None:
                        return decode(gzipped, gzip=True)
                    return (decode or orjson.loads)(response.content)
                except orjson.JSONDecodeError:
                    size = len(response.content if gzipped is None else gzipped)
                    if last or write:
                        raise ResponseError(
                            endpoint=endpoint,
                            url=shown,
                            status=status,
                            detail=f"invalid or truncated JSON ({size} bytes)",
                        ) from None
                    self._back_off(backoff_delay(attempt, policy), shown, "bad JSON", attempt)
                    continue
                except RecursionError:  # JSON orjson reads (to 1,024 levels) but no walk can
                    raise ResponseError(
                        endpoint=endpoint,
                        url=shown,
                        status=status,
                        detail="a record is nested too deeply (about 1,000 levels) to take apart",
                        hint=_TOO_DEEP,
                    ) from None

            if status == 401 and authenticate and not relogged and self.settings.username:
                relogged = True
                attempt -= 1  # a re-login is not a failed attempt
                self._relogin(generation)
                continue

            if status == 429:
                too_long = throttled > policy.max_retry_after
                if last or too_long:
                    raise RateLimitError(
                        endpoint=endpoint,
                        url=shown,
                        detail=self._excerpt(response),
                        hint=_too_long(throttled, policy) if too_long else None,
                        retry_after=throttled,
                    )
                logger.info(
                    "%s: 429, all requests wait %.2fs (attempt %d)", shown, throttled, attempt
                )
                continue  # the budget holds every request until Retry-After has passed

            if status in RETRIED_STATUSES and not write and not last:
                wait = backoff_delay(attempt, policy)
                asked = _retry_after(response)
                if asked is not None and asked <= policy.max_retry_after:
                    wait = max(wait, asked)
                self._back_off(wait, shown, str(status), attempt)
                continue

            detail = self._excerpt(response)
            if vanish and status == 404 and "Invalid page" in detail:
                return VANISHED
            raise self._status_error(endpoint, shown, status, detail, response)

    def _send(
        self,
        method: Method,
        url: httpx.URL,
        shown: str,
        json: Any,
        headers: dict[str, str],
        attempt: int,
        *,
        keep_gzip: bool = False,
    ) -> tuple[httpx.Response, float, bytes | None]:
        """Send once within the rate budget; returns the response, a 429's wait, and a body.

        The body is the one as it came when that is gzip and ``keep_gzip`` (else ``None``:
        then it is ``response.content``). A 429 throttles the budget before this request's
        slot is freed, so that no other request starts in between.
        """
        started = time.perf_counter()
        throttled = 0.0
        gzipped: bytes | None = None
        with self.budget.slot(self.settings.retry.max_retry_after) as slot_start:
            request = self._http.build_request(method, url, json=json, headers=headers)
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                encoding = response.headers.get("Content-Encoding", "").strip().lower()
                if (
                    keep_gzip
                    and response.is_success
                    and encoding == "gzip"
                    and not response.is_stream_consumed  # (else read already, and inflated)
                ):
                    gzipped = b"".join(response.iter_raw())
                else:
                    response.read()
            finally:
                response.close()
                # httpx's response and its stream refer to each other: read and closed, the
                # stream goes, so the pair is freed at once, not by the cyclic collector
                response.stream = httpx.ByteStream(b"")
            if response.status_code == 429:
                asked = _retry_after(response)
                throttled = backoff_delay(attempt, self.settings.retry) if asked is None else asked
                self.budget.throttle(throttled, slot_start)
            elif response.is_success:
                self.budget.succeeded()
        elapsed = time.perf_counter() - started
        logger.debug("%s %s -> %d in %.3fs", method, shown, response.status_code, elapsed)
        return response, throttled, gzipped

    def _back_off(self, seconds: float, shown: str, failure: str, attempt: int) -> None:
        logger.info("%s: %s, retrying in %.2fs (attempt %d)", shown, failure, seconds, attempt)
        if seconds > 0:
            with self._counts_lock:
                self._waited += seconds
            self._sleep(seconds)

    def _status_error(
        self, endpoint: str, url: str, status: int, detail: str, response: httpx.Response
    ) -> ApiError:
        kind: type[ApiError] = ApiError
        hint: str | None = None  # None: the error class's own advice
        if status == 401 or (endpoint == "login" and status in (400, 403)):
            kind = AuthError
        elif status == 403:
            kind = AuthError
            hint = "these credentials may not use this endpoint: ask the OMS administrator"
        elif status == 404:
            kind = NotFoundError
        elif status >= 500:
            kind = ServerError
        elif 300 <= status < 400:
            location = sanitize_url(response.headers.get("Location", ""))
            hint = f"the server redirects to {location}: check url= and the endpoint paths"
        return kind(endpoint=endpoint, url=url, status=status, detail=detail, hint=hint)

    def _excerpt(self, response: httpx.Response) -> str:
        text = body_excerpt(response.content, response.headers.get("Content-Type", ""))
        return redact(text, (self._token, self.settings.token, self.settings.password))


def _too_long(seconds: float, policy: RetryPolicy) -> str:
    return (
        f"the server asks to wait {seconds:.0f} s, more than "
        f"max_retry_after={policy.max_retry_after:.0f} s: try again later"
    )


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("Retry-After"), response.headers.get("Date"))
