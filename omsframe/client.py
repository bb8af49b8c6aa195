"""The OMS client: one method per endpoint, with auth, re-login, retries and a rate budget.

A :class:`Client` sends every request through one :class:`~omsframe.session.Session` (a
thread-safe ``httpx.Client``, the credentials, retries and a shared rate budget: the whole
client slows down after a 429 and never starts a request before ``Retry-After``). List methods
read pages concurrently and reconcile them (see :mod:`omsframe.paging`).

Requests go only to URLs built from the base URL and the configured paths (never to a ``next``
link, never through a redirect), so the token goes nowhere else. Request headers are never
logged; URLs in logs and errors are sanitized.

For a real OMS, pass its base URL and an API key (or a login):
``Client("https://acme-oms.akinon.net", token="...")``. The examples read the built-in
simulator instead (:func:`omsframe.simulate`), a small seeded shop served on loopback.

Example:
    >>> import omsframe as of
    >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
    ...     numbers = [order["number"] for order in client.orders(modified_date__gte="2025-01-01")]
    >>> len(numbers), numbers[0]
    (11, '2291001010003030')
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypedDict, Unpack

import httpx

from omsframe.config import EndpointPaths, RetryPolicy, Settings
from omsframe.filters import EVENT_FILTERS, ORDER_FILTERS, EventFilters, OrderFilters, filter_params
from omsframe.pages import FetchPage, PageBody
from omsframe.paging import Listing, plan_read
from omsframe.probe import ProbeResult, probe_filters, range_filters
from omsframe.session import VANISHED, BodyDecoder, ClientStats, Session

__all__ = ["Client", "ClientStats", "EnumChoice", "ListEndpoint", "Record"]

Record = dict[str, Any]
ListEndpoint = Literal[
    "orders", "orders_short", "orders_simple", "webhook_events", "webhook_events_short"
]


class EnumChoice(TypedDict):
    """One entry of an enum endpoint: ``{"value": "standard", "label": "Standard"}``."""

    value: str
    label: str


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
        concurrency: Requests in flight at most (``OMSFRAME_CONCURRENCY``, default 8).
        page_size: Records asked for per page (``OMSFRAME_PAGE_SIZE``, default 250).
        timeout: Seconds per request (``OMSFRAME_TIMEOUT``, default 30).
        compress: Ask for gzip-compressed answers (``OMSFRAME_COMPRESS``, ``1`` or ``0``);
            by default yes, except for the pages a sync hands to worker processes from a
            loopback host (see :attr:`~omsframe.config.Settings.compress`).
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
        Logging in with a username and password (the simulator's), then reading one order:

        >>> import omsframe as of
        >>> with of.simulate(orders=20) as oms:
        ...     with of.Client(oms.url, username=oms.username, password=oms.password) as client:
        ...         number = client.order(1001)["number"]
        >>> number, client.stats.logins
        ('2291001001003003', 1)
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
        compress: bool | None = None,
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
            compress=compress,
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
        self.settings = settings
        self._session = Session(
            settings, http_client=http_client, transport=transport, sleep=sleep, clock=clock
        )

    # --- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP connections (unless the ``httpx.Client`` was passed in)."""
        self._session.close()

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
        return self._session.stats

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
                ``ordering``, a list that grows while it is read needs no second pass. When it
                ignores ``ordering`` but honours ``id__gte``/``id__lt``, a list ordered by
                ``id`` is read by id windows (:mod:`omsframe.windows`): nothing shifts.
            **filters: ``id__gt``, ``created_date__gte``, ``state__enum_value``, ``ordering``
                ... (see :class:`~omsframe.paging.OrderFilters`); dates may be datetimes or
                ISO strings and are sent in UTC. ``ordering`` defaults to ``id``.

        Returns:
            A :class:`~omsframe.paging.Listing`: iterate for records (each id once, in page
            order), or call ``.pages()``; ``.stats`` says what the read did.

        Example:
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     recent = list(client.orders(date_placed__gte="2025-06-01"))
            >>> len(recent), recent[0]["id"], recent[0]["state"]["enum_value"]
            (6, 1015, '550')
        """
        return self._listing("orders", filters, page_size, progress, probed)

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
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     numbers = [o["number"] for o in client.orders_short(channel=1)]
            >>> len(numbers), numbers[0]
            (9, '2291001002003006')
        """
        return self._listing("orders_short", filters, page_size, progress, probed)

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
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     [o["id"] for o in client.orders_simple(id__gt=1015)]
            [1016, 1017, 1018, 1019, 1020]
        """
        return self._listing("orders_simple", filters, page_size, progress, probed)

    def order(self, order_id: int) -> Record:
        """Order Detail: one full order by id.

        Raises:
            NotFoundError: No order with this id.

        Example:
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     client.order(1001)["orderitem_set"][0]["price"]
            '788.99'
        """
        return self._detail("order", order_id)

    def order_short(self, order_id: int) -> Record:
        """Order Detail - Short: one order by id, short shape.

        Example:
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     client.order_short(1001)["state"]["enum_value"]
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
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     failed = list(client.webhook_events(delivered=False))
            >>> [(e["id"], e["event_type"], e["delivered"]) for e in failed]
            [(68, 'order.status.changed', False)]
        """
        return self._listing("webhook_events", filters, page_size, progress, probed)

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
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     kinds = {e["event_type"] for e in client.webhook_events_short()}
            >>> sorted(kinds)
            ['order.created', 'order.status.changed', 'order.updated']
        """
        return self._listing("webhook_events_short", filters, page_size, progress, probed)

    def webhook_event(self, event_id: int) -> Record:
        """Order Webhook Event Details: one event by id.

        Example:
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     client.webhook_event(68)["event_type"]
            'order.status.changed'
        """
        return self._detail("webhook_event", event_id)

    def delivery_types(self) -> list[EnumChoice]:
        """Order Delivery Type Enums: ``[{"value": ..., "label": ...}, ...]``.

        Example:
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     client.delivery_types()[0]
            {'value': 'standard', 'label': 'Standard'}
        """
        return self._enum("delivery_types")

    def payment_types(self) -> list[EnumChoice]:
        """Order Payment Type Enums: ``[{"value": ..., "label": ...}, ...]``.

        Example:
            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     [c["value"] for c in client.payment_types()]
            ['credit_card', 'funds_transfer', 'pay_on_delivery', 'masterpass', 'loyalty_money']
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
            The simulator queues the pull and records it in ``oms.pulls``:

            >>> import omsframe as of
            >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
            ...     answer = client.pull_from_omnitron("2291001001003003")
            >>> answer["detail"], oms.pulls
            ('Order pull from Omnitron queued.', ['2291001001003003'])
        """
        path = self.settings.paths.pull_from_omnitron
        body = self._session.request(
            "pull_from_omnitron", "POST", path, json={"number": str(number)}, write=True
        )
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise self._session.shape_error("pull_from_omnitron", path, "expected a JSON object")
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
            A simulated server that ignores ``ordering`` (see
            :class:`~omsframe.simulator.query.Dialect`):

            >>> import omsframe as of
            >>> from omsframe.simulator.server import Dialect
            >>> with of.simulate(orders=20, dialect=Dialect(honour_ordering=False)) as oms:
            ...     with of.Client(oms.url, token=oms.token) as client:
            ...         result = client.probe()
            >>> result.honours("ordering"), result.honours("modified_date__gte")
            (False, True)
        """
        return probe_filters(
            endpoint,
            self._page_reader(endpoint),
            range_filters(_known_filters(endpoint)),
            self.settings.concurrency,
        )

    # --- building blocks ------------------------------------------------------------------
    def _listing(
        self,
        endpoint: ListEndpoint,
        filters: Mapping[str, object],
        page_size: int | None,
        progress: bool,
        probed: ProbeResult | None,
        decode: BodyDecoder | None = None,
    ) -> Listing:
        """A lazy list; ``decode`` turns each page's bytes into its body (default: parse)."""
        plan = plan_read(
            filter_params(endpoint, filters, _known_filters(endpoint)),
            page_size=page_size or self.settings.page_size,
            concurrency=self.settings.concurrency,
            max_passes=self.settings.max_passes,
            probed=probed,
        )
        return Listing(endpoint, self._page_reader(endpoint, decode), plan, progress=progress)

    def _page_reader(self, endpoint: ListEndpoint, decode: BodyDecoder | None = None) -> FetchPage:
        path: str = getattr(self.settings.paths, endpoint)

        def fetch(params: Mapping[str, str]) -> PageBody | None:
            beyond_first = params.get("page", "1") != "1"
            body = self._session.request(
                endpoint, "GET", path, params=params, vanish=beyond_first, decode=decode
            )
            if body is VANISHED:
                return None
            if not (
                isinstance(body, dict)
                and isinstance(body.get("count"), int)
                and isinstance(body.get("results"), list)
                and all(isinstance(record, dict) for record in body["results"])
            ):
                what = "expected a page {count, results: [..]}"
                raise self._session.shape_error(endpoint, path, what)
            return body  # type: ignore[return-value]

        return fetch

    def _detail(
        self, endpoint: Literal["order", "order_short", "webhook_event"], id_: int
    ) -> Record:
        if isinstance(id_, bool) or not isinstance(id_, int):
            raise TypeError(f"{endpoint}() takes an integer id, not {type(id_).__name__}")
        path = getattr(self.settings.paths, endpoint).format(id=id_)
        body = self._session.request(endpoint, "GET", path)
        if not isinstance(body, dict):
            raise self._session.shape_error(endpoint, path, "expected a JSON object")
        return body

    def _enum(self, endpoint: Literal["delivery_types", "payment_types"]) -> list[EnumChoice]:
        path = getattr(self.settings.paths, endpoint)
        body = self._session.request(endpoint, "GET", path)
        if not isinstance(body, list) or not all(
            isinstance(item, dict) and "value" in item for item in body
        ):
            raise self._session.shape_error(endpoint, path, "expected a list of {value, label}")
        return body


def _known_filters(endpoint: ListEndpoint) -> frozenset[str]:
    """The filter keywords an order or a webhook-event list takes."""
    return ORDER_FILTERS if endpoint.startswith("orders") else EVENT_FILTERS
