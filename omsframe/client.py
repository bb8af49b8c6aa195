"""The OMS client: one method per endpoint, with auth, re-login, retries and a rate budget.

A :class:`Client` holds one thread-safe ``httpx.Client``; list methods read pages
concurrently (see :mod:`omsframe.paging`) and share the client's :class:`RateBudget`, so the
whole client slows down after a 429 and never starts a request before ``Retry-After``.

Requests go only to URLs built from the base URL and the configured paths (never to a ``next``
link, never through a redirect), so the token goes nowhere else. Request headers are never
logged; URLs in logs and errors are sanitized.

Example:
    >>> with Client("https://acme-oms.akinon.net", token="...") as oms:  # doctest: +SKIP
    ...     for order in oms.orders(modified_date__gte="2025-01-01", progress=True):
    ...         print(order["number"])
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict, Unpack

import httpx
import orjson

from omsframe.config import EndpointPaths, RetryPolicy, Settings
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
from omsframe.paging import (
    DEFAULT_ORDERING,
    EVENT_FILTERS,
    ID_FILTERS,
    ORDER_FILTERS,
    EventFilters,
    FetchPage,
    Listing,
    OrderFilters,
    PageBody,
    PagePlan,
    ProbeResult,
    filter_params,
    probe_filters,
)
from omsframe.ratelimit import RateBudget, WaitTooLong, backoff_delay, parse_retry_after

__all__ = ["Client", "ClientStats", "EnumChoice", "ListEndpoint", "Record"]

logger = logging.getLogger(__name__)

Record = dict[str, Any]
ListEndpoint = Literal[
    "orders", "orders_short", "orders_simple", "webhook_events", "webhook_events_short"
]
Method = Literal["GET", "POST"]

RETRIED_STATUSES: Final = frozenset({500, 502, 503, 504})
# Failures after which a write may not have happened: only these are retried for a POST.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_VANISHED: Final = object()
_RANGE_SUFFIXES = ("__gt", "__gte", "__lt", "__lte")


class EnumChoice(TypedDict):
    """One entry of an enum endpoint: ``{"value": "standard", "label": "Standard"}``."""

    value: str
    label: str


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


class Client:
    """A client for one Akinon OMS.

    Each argument falls back to its ``OMSFRAME_*`` environment variable, then to its default
    (see :mod:`omsframe.config`). With ``username`` and ``password`` the client logs in (and
    logs in again once when a request answers 401); with only a ``token`` it uses the token.

    Args:
        url: Base URL, e.g. ``https://acme-oms.akinon.net`` (``OMSFRAME_URL``).
        token: API key (``OMSFRAME_TOKEN``).
        username: Login user (``OMSFRAME_USERNAME``).
        password: Login password (``OMSFRAME_PASSWORD``).
        allow_http: Allow plain ``http://`` to a host that is not loopback.
        concurrency: Requests in flight at most (``OMSFRAME_CONCURRENCY``, default 4).
        page_size: Records asked for per page (``OMSFRAME_PAGE_SIZE``, default 100).
        timeout: Seconds per request (``OMSFRAME_TIMEOUT``, default 30).
        max_passes: Whole passes over a list at most when records fall short of ``count``.
        retry: The retry policy (attempts, backoff, cap).
        paths: Endpoint paths, when they differ from ``oms-api.md``.
        http_client: An ``httpx.Client`` to use (it is not closed by :meth:`close`).
        transport: An ``httpx`` transport, e.g. ``httpx.MockTransport`` in tests.
        sleep: Waits a number of seconds (tests pass a fake).
        clock: Monotonic seconds (tests pass a fake).

    Raises:
        ConfigError: A setting is missing or refused (message says which and what to do).

    Example:
        >>> oms = Client("https://acme-oms.akinon.net", token="...")  # doctest: +SKIP
        >>> oms.order(4321)["number"]  # doctest: +SKIP
        '2291000004321013'
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        allow_http: bool = False,
        concurrency: int | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
        max_passes: int = 2,
        retry: RetryPolicy | None = None,
        paths: EndpointPaths | None = None,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = Settings.resolve(
            url=url,
            token=token,
            username=username,
            password=password,
            allow_http=allow_http,
            concurrency=concurrency,
            page_size=page_size,
            timeout=timeout,
            max_passes=max_passes,
            retry=retry,
            paths=paths,
        )
        self._setup(settings, http_client, transport, sleep, clock)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Client:
        """A client for already resolved settings (see :meth:`Settings.resolve`)."""
        client = cls.__new__(cls)
        client._setup(settings, http_client, transport, sleep, clock)
        return client

    def _setup(
        self,
        settings: Settings,
        http_client: httpx.Client | None,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        if http_client is not None and transport is not None:
            raise TypeError("pass http_client= or transport=, not both")
        self.settings = settings
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=max(10, settings.concurrency * 2)),
            headers={"User-Agent": "omsframe", "Accept": "application/json"},
        )
        self._sleep = sleep
        self._budget = RateBudget(settings.concurrency, clock=clock, sleep=sleep)
        self._auth_lock = threading.Lock()
        self._token = settings.token
        self._generation = 0  # bumped at each login: tells which token a request carried
        self._counts_lock = threading.Lock()
        self._requests = self._retries = self._logins = 0
        self._waited = 0.0

    # --- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP connections (unless the ``httpx.Client`` was passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.settings
        auth = "+".join(
            name for name, given in (("token", s.token), ("login", s.username)) if given
        )
        return f"Client({s.url!r}, auth={auth!r}, concurrency={s.concurrency})"

    @property
    def stats(self) -> ClientStats:
        """What the client did so far (requests, retries, logins, 429s, waits)."""
        budget = self._budget.stats()
        with self._counts_lock:
            return ClientStats(
                self._requests,
                self._retries,
                self._logins,
                budget.throttled,
                self._waited + budget.waited_seconds,
            )

    # --- the 11 endpoints -----------------------------------------------------------------
    def orders(
        self,
        *,
        page_size: int | None = None,
        progress: bool = False,
        probed: ProbeResult | None = None,
        **filters: Unpack[OrderFilters],
    ) -> Listing:
        """Order List (full nested orders), filtered by keyword; read lazily.

        Args:
            page_size: Records per page (default: the client's ``page_size``).
            progress: Show a progress bar sized from ``count``.
            probed: What :meth:`probe` found about this server, if known. When it honours
                ``ordering``, a list that grows while it is read needs no second pass.
            **filters: ``id__gt``, ``created_date__gte``, ``state__enum_value``, ``ordering``
                ... (see :class:`~omsframe.paging.OrderFilters`); dates may be datetimes or
                ISO strings and are sent in UTC. ``ordering`` defaults to ``id``.

        Returns:
            A :class:`~omsframe.paging.Listing`: iterate for records (each id once, in page
            order), or call ``.pages()``; ``.stats`` says what the read did.

        Example:
            >>> for order in oms.orders(date_placed__gte="2025-06-01"):  # doctest: +SKIP
            ...     print(order["id"], order["state"]["enum_value"])
        """
        return self._listing("orders", ORDER_FILTERS, filters, page_size, progress, probed)

    def orders_short(
        self,
        *,
        page_size: int | None = None,
        progress: bool = False,
        probed: ProbeResult | None = None,
        **filters: Unpack[OrderFilters],
    ) -> Listing:
        """Order List - Short: order fields without items and addresses; as :meth:`orders`.

        Example:
            >>> numbers = [o["number"] for o in oms.orders_short(channel=1)]  # doctest: +SKIP
        """
        return self._listing("orders_short", ORDER_FILTERS, filters, page_size, progress, probed)

    def orders_simple(
        self,
        *,
        page_size: int | None = None,
        progress: bool = False,
        probed: ProbeResult | None = None,
        **filters: Unpack[OrderFilters],
    ) -> Listing:
        """Order List - Simple: flat orders with ids for nested objects; as :meth:`orders`.

        Example:
            >>> ids = [o["id"] for o in oms.orders_simple(id__gt=1000)]  # doctest: +SKIP
        """
        return self._listing("orders_simple", ORDER_FILTERS, filters, page_size, progress, probed)

    def order(self, order_id: int) -> Record:
        """Order Detail: one full order by id.

        Raises:
            NotFoundError: No order with this id.

        Example:
            >>> oms.order(4321)["orderitem_set"][0]["price"]  # doctest: +SKIP
            '249.90'
        """
        return self._detail("order", order_id)

    def order_short(self, order_id: int) -> Record:
        """Order Detail - Short: one order by id, short shape.

        Example:
            >>> oms.order_short(4321)["state"]["enum_value"]  # doctest: +SKIP
            '550'
        """
        return self._detail("order_short", order_id)

    def webhook_events(
        self,
        *,
        page_size: int | None = None,
        progress: bool = False,
        probed: ProbeResult | None = None,
        **filters: Unpack[EventFilters],
    ) -> Listing:
        """Order Webhook Event List, filtered by keyword; as :meth:`orders`.

        Filters: ``event_type``, ``delivered``, ids and dates (see
        :class:`~omsframe.paging.EventFilters`).

        Example:
            >>> failed = list(oms.webhook_events(delivered=False))  # doctest: +SKIP
        """
        return self._listing("webhook_events", EVENT_FILTERS, filters, page_size, progress, probed)

    def webhook_events_short(
        self,
        *,
        page_size: int | None = None,
        progress: bool = False,
        probed: ProbeResult | None = None,
        **filters: Unpack[EventFilters],
    ) -> Listing:
        """Order Webhook Event List - Short: events without ``request_payload``.

        Example:
            >>> kinds = {e["event_type"] for e in oms.webhook_events_short()}  # doctest: +SKIP
        """
        return self._listing(
            "webhook_events_short", EVENT_FILTERS, filters, page_size, progress, probed
        )

    def webhook_event(self, event_id: int) -> Record:
        """Order Webhook Event Details: one event by id.

        Example:
            >>> oms.webhook_event(17)["event_type"]  # doctest: +SKIP
            'order.status.changed'
        """
        return self._detail("webhook_event", event_id)

    def delivery_types(self) -> list[EnumChoice]:
        """Order Delivery Type Enums: ``[{"value": ..., "label": ...}, ...]``.

        Example:
            >>> oms.delivery_types()[0]  # doctest: +SKIP
            {'value': 'standard', 'label': 'Standard'}
        """
        return self._enum("delivery_types")

    def payment_types(self) -> list[EnumChoice]:
        """Order Payment Type Enums: ``[{"value": ..., "label": ...}, ...]``.

        Example:
            >>> [c["value"] for c in oms.payment_types()]  # doctest: +SKIP
            ['credit_card', 'funds_transfer', ...]
        """
        return self._enum("payment_types")

    def pull_from_omnitron(self, number: str) -> Record:
        """Order Pull From Omnitron: ask the OMS to re-import one order (a write).

        Nothing in omsframe calls this implicitly: a sync only reads. It sends
        ``POST {"number": number}`` once; it is retried only when the request surely did not
        reach the server (connection refused, 429), never after a 5xx or a read timeout.

        Args:
            number: The order number (not the id).

        Returns:
            The server's JSON answer (``{}`` when the body is empty).

        Example:
            >>> oms.pull_from_omnitron("2291000004321013")  # doctest: +SKIP
        """
        path = self.settings.paths.pull_from_omnitron
        body = self._request(
            "pull_from_omnitron", "POST", path, json={"number": str(number)}, write=True
        )
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise self._shape_error("pull_from_omnitron", path, "expected a JSON object")
        return body

    # --- probe ----------------------------------------------------------------------------
    def probe(self, endpoint: ListEndpoint = "orders") -> ProbeResult:
        """Find out whether this server honours ``ordering`` and each id/date range filter.

        DRF silently ignores parameters it does not know and returns unfiltered data, so this
        asks a few small questions (``limit=5``) and compares the answers with what was asked.

        Args:
            endpoint: The list endpoint to probe.

        Returns:
            A frozen :class:`~omsframe.paging.ProbeResult` (``.to_dict()`` for a manifest).

        Example:
            >>> result = oms.probe()  # doctest: +SKIP
            >>> result.honours("ordering"), result.honours("modified_date__gte")  # doctest: +SKIP
            (True, True)
        """
        known = ORDER_FILTERS if endpoint.startswith("orders") else EVENT_FILTERS
        names = tuple(
            name
            for name in sorted(known)
            if name.endswith(_RANGE_SUFFIXES) and (name in ID_FILTERS or "date" in name)
        )
        return probe_filters(
            endpoint, self._page_reader(endpoint), names, self.settings.concurrency
        )

    # --- building blocks ------------------------------------------------------------------
    def _listing(
        self,
        endpoint: ListEndpoint,
        known: frozenset[str],
        filters: Mapping[str, object],
        page_size: int | None,
        progress: bool,
        probed: ProbeResult | None,
    ) -> Listing:
        params = filter_params(endpoint, filters, known)
        params.setdefault("ordering", DEFAULT_ORDERING)  # a stable order: see paging
        plan = PagePlan(
            params=params,
            page_size=page_size or self.settings.page_size,
            concurrency=self.settings.concurrency,
            ordered_by_id=bool(
                probed and probed.honours("ordering") and params["ordering"] == DEFAULT_ORDERING
            ),
            max_passes=self.settings.max_passes,
        )
        return Listing(endpoint, self._page_reader(endpoint), plan, progress=progress)

    def _page_reader(self, endpoint: ListEndpoint) -> FetchPage:
        path: str = getattr(self.settings.paths, endpoint)

        def fetch(params: Mapping[str, str]) -> PageBody | None:
            beyond_first = params.get("page", "1") != "1"
            body = self._request(endpoint, "GET", path, params=params, vanish=beyond_first)
            if body is _VANISHED:
                return None
            if not (
                isinstance(body, dict)
                and isinstance(body.get("count"), int)
                and isinstance(body.get("results"), list)
                and all(isinstance(record, dict) for record in body["results"])
            ):
                raise self._shape_error(endpoint, path, "expected a page {count, results: [..]}")
            return body  # type: ignore[return-value]

        return fetch

    def _detail(
        self, endpoint: Literal["order", "order_short", "webhook_event"], id_: int
    ) -> Record:
        if isinstance(id_, bool) or not isinstance(id_, int):
            raise TypeError(f"{endpoint}() takes an integer id, not {type(id_).__name__}")
        path = getattr(self.settings.paths, endpoint).format(id=id_)
        body = self._request(endpoint, "GET", path)
        if not isinstance(body, dict):
            raise self._shape_error(endpoint, path, "expected a JSON object")
        return body

    def _enum(self, endpoint: Literal["delivery_types", "payment_types"]) -> list[EnumChoice]:
        path = getattr(self.settings.paths, endpoint)
        body = self._request(endpoint, "GET", path)
        if not isinstance(body, list) or not all(
            isinstance(item, dict) and "value" in item for item in body
        ):
            raise self._shape_error(endpoint, path, "expected a list of {value, label}")
        return body

    def _shape_error(self, endpoint: str, path: str, what: str) -> ResponseError:
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
        body = self._request(
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
    def _request(
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
    ) -> Any:
        """Send one request until it succeeds or fails for good; return the parsed JSON.

        Args:
            endpoint: Name for errors and logs.
            method: HTTP method.
            path: Path under the base URL.
            params: Query parameters.
            json: JSON body.
            authenticate: Send the token (log in first if needed; once more after a 401).
            vanish: A 404 "Invalid page." returns ``_VANISHED`` instead of raising.
            write: A write: retried only when it surely did not reach the server.
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
            with self._counts_lock:
                self._requests += 1
                self._retries += attempt > 1
            try:
                response, throttled = self._send(method, url, shown, json, headers, attempt)
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
                if last or (write and not isinstance(exc, _NOT_SENT)):
                    raise ServerError(
                        endpoint=endpoint, url=shown, detail=f"{failure} after {attempt} attempt(s)"
                    ) from exc
                self._back_off(backoff_delay(attempt, policy), shown, failure, attempt)
                continue
            status = response.status_code

            if response.is_success:
                if not response.content.strip():
                    return None
                try:
                    return orjson.loads(response.content)
                except orjson.JSONDecodeError:
                    if last or write:
                        raise ResponseError(
                            endpoint=endpoint,
                            url=shown,
                            status=status,
                            detail=f"invalid or truncated JSON ({len(response.content)} bytes)",
                        ) from None
                    self._back_off(backoff_delay(attempt, policy), shown, "bad JSON", attempt)
                    continue

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
                return _VANISHED
            raise self._status_error(endpoint, shown, status, detail, response)

    def _send(
        self,
        method: Method,
        url: httpx.URL,
        shown: str,
        json: Any,
        headers: dict[str, str],
        attempt: int,
    ) -> tuple[httpx.Response, float]:
        """Send once within the rate budget; returns the response and a 429's wait.

        A 429 throttles the budget before this request's slot is freed, so that no other
        request starts in between.
        """
        started = time.perf_counter()
        throttled = 0.0
        with self._budget.slot(self.settings.retry.max_retry_after) as slot_start:
            response = self._http.request(
                method, url, json=json, headers=headers, follow_redirects=False
            )
            if response.status_code == 429:
                asked = _retry_after(response)
                throttled = backoff_delay(attempt, self.settings.retry) if asked is None else asked
                self._budget.throttle(throttled, slot_start)
            elif response.is_success:
                self._budget.succeeded()
        elapsed = time.perf_counter() - started
        logger.debug("%s %s -> %d in %.3fs", method, shown, response.status_code, elapsed)
        return response, throttled

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
