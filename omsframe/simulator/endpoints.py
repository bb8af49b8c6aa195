"""The simulator's routes and the answers of its 11 OMS endpoints, without HTTP.

:func:`resolve` maps a request path to a :class:`Route` (the login route and the order API of
``oms-api.md``: lists, details, webhook events, enums, pull). :class:`Endpoints` answers an
authenticated request to one of the 11 endpoints at one moment of the shop as a Python object
(the JSON body), rendering only the objects of the requested page and injecting schema drift.
Authentication, the clock, fault draws and the wire are the server's and handler's concern.

Example:
    >>> from omsframe.simulator.faults import Faults
    >>> from omsframe.simulator.query import Dialect
    >>> from omsframe.simulator.world import World
    >>> world = World.generate(seed=1, orders=50)
    >>> endpoints = Endpoints(world, Dialect(), Faults(), on_drift=lambda: None)
    >>> route, pk = resolve("/api/v1/oms/orders/")
    >>> page = endpoints.answer(route, pk, {"limit": "5"}, "http://x/", {}, world.end_us)
    >>> len(page["results"])
    5
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from omsframe.simulator import catalogue as cat
from omsframe.simulator import faults as flt
from omsframe.simulator import render
from omsframe.simulator.faults import Faults
from omsframe.simulator.query import Dialect, Engine, HttpError, not_found, paginate
from omsframe.simulator.world import World

__all__ = ["API", "LOGIN", "Endpoints", "Route", "resolve"]

API = "/api/v1/oms/orders/"
LOGIN = "/api/v1/auth/login/"
Json = dict[str, Any]


# --- routes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """One route: its endpoint name, its path template and the methods it allows."""

    name: str
    template: str
    methods: tuple[str, ...]


_GET = ("GET", "HEAD", "OPTIONS")
_POST = ("POST", "OPTIONS")
_EXACT: dict[str, Route] = {
    route.template: route
    for route in (
        Route("login", LOGIN, _POST),
        Route("orders", API, _GET),
        Route("orders_short", f"{API}short/", _GET),
        Route("orders_simple", f"{API}list-simple/", _GET),
        Route("events", f"{API}webhook-events/", _GET),
        Route("events_short", f"{API}webhook-events/short/", _GET),
        Route("delivery_types", f"{API}delivery-types/", _GET),
        Route("payment_types", f"{API}payment-types/", _GET),
        Route("pull", f"{API}pull-from-omnitron/", _POST),
    )
}
_PATTERNS: tuple[tuple[re.Pattern[str], Route], ...] = (
    (
        re.compile(rf"^{API}webhook-events/([^/.]+)/$"),
        Route("event", f"{API}webhook-events/{{id}}/", _GET),
    ),
    (re.compile(rf"^{API}([^/.]+)/short/$"), Route("order_short", f"{API}{{id}}/short/", _GET)),
    (re.compile(rf"^{API}([^/.]+)/$"), Route("order", f"{API}{{id}}/", _GET)),
)


def resolve(path: str) -> tuple[Route, str] | None:
    """The route of a path and the id it carries (``""`` for none); ``None``: no route.

    Example:
        >>> route, pk = resolve("/api/v1/oms/orders/1001/short/")
        >>> route.name, pk
        ('order_short', '1001')
    """
    route = _EXACT.get(path)
    if route is not None:
        return route, ""
    for pattern, candidate in _PATTERNS:
        match = pattern.match(path)
        if match:
            return candidate, match.group(1)
    return None


class _Shape(Protocol):
    def __call__(self, world: World, i: int, now_us: int, *, shared: bool = False) -> Json: ...


# Shared nested objects: the answer is serialized at once, and drift changes only the order's
# own keys and its item dicts (see render.order_object).
_SHAPES: dict[str, _Shape] = {
    "full": render.order_object,
    "short": render.order_short_object,
    "simple": render.order_simple_object,
}
_LIST_SHAPE = {"orders": "full", "orders_short": "short", "orders_simple": "simple"}


# --- endpoints -------------------------------------------------------------------------------
class Endpoints:
    """The answers of the 11 endpoints at a given moment (no HTTP, no auth, no clock).

    Args:
        world: The shop.
        dialect: Switches for what real servers may do differently.
        faults: Fault settings; only ``rate_drift`` matters here.
        cache: Let the query engine keep recent selections (right only while the clock
            stands still between requests).
        on_drift: Called once per drifted order rendered.
    """

    def __init__(
        self,
        world: World,
        dialect: Dialect,
        faults: Faults,
        *,
        cache: bool = True,
        on_drift: Callable[[], None],
    ) -> None:
        self.world = world
        self.dialect = dialect
        self.faults = faults
        self.engine = Engine(world, dialect, cache=cache)
        self._on_drift = on_drift
        self._lock = threading.Lock()
        self._pulls: list[str] = []

    @property
    def pulls(self) -> list[str]:
        """Order numbers whose pull was accepted, in arrival order (a copy)."""
        with self._lock:
            return list(self._pulls)

    def answer(
        self, route: Route, pk: str, params: dict[str, str], url: str, body: Json, now_us: int
    ) -> object:
        """The JSON answer of one endpoint request at ``now_us``.

        Args:
            route: The resolved route (not ``login``).
            pk: The id in the path of a detail route.
            params: Query parameters.
            url: The full request URL (for ``next``/``previous`` links).
            body: The parsed request body (POST).
            now_us: The shop's moment of the request.

        Raises:
            HttpError: 400 for invalid filters or bodies, 404 for unknown objects or pages.
        """
        name = route.name
        if name == "pull":
            return self._pull(body, now_us)
        if name in ("delivery_types", "payment_types"):
            table = cat.DELIVERY_TYPES if name == "delivery_types" else cat.PAYMENT_TYPES
            return [{"value": value, "label": label} for value, label, _share in table]
        if name in ("order", "order_short", "event"):
            return self._detail(name, pk, now_us)
        return self._list(name, params, url, now_us)

    def _pull(self, body: Json, now_us: int) -> Json:
        number = body.get("number")
        if number is None:
            raise HttpError(400, {"number": ["This field is required."]})
        if isinstance(number, bool) or not isinstance(number, str | int):
            raise HttpError(400, {"number": ["Not a valid string."]})
        number = str(number).strip()
        if not number:
            raise HttpError(400, {"number": ["This field may not be blank."]})
        index = self.engine.index_of_number(number)
        if index is None or index >= self.world.visible_orders(now_us):
            raise not_found()
        with self._lock:
            self._pulls.append(number)
        return {"number": number, "detail": "Order pull from Omnitron queued."}

    def _render_order(self, index: int, now_us: int, shape: str) -> Json:
        order = _SHAPES[shape](self.world, index, now_us, shared=True)
        if self.faults.rate_drift > 0 and flt.apply_drift(order, self.faults, shape):
            self._on_drift()
        return order

    def _render_event(self, index: int, now_us: int, with_payload: bool) -> Json:
        event = render.event_object(
            self.world, index, now_us, with_payload=with_payload, shared=True
        )
        drifts = with_payload and self.faults.rate_drift > 0
        if drifts and flt.apply_drift(event["request_payload"]["payload"], self.faults, "full"):
            self._on_drift()
        return event

    def _list(self, name: str, params: dict[str, str], url: str, now_us: int) -> Json:
        kind = "events" if name.startswith("events") else "orders"
        rows = self.engine.select(kind, params, now_us)
        page, envelope = paginate(rows, params, url, self.dialect)
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
            raise not_found() from None
        if name == "event":
            if not 1 <= pk <= self.world.visible_events(now_us):
                raise not_found("No WebhookEvent matches the given query.")
            return self._render_event(pk - 1, now_us, True)
        index = self.engine.index_of_order(pk)
        if index is None or index >= self.world.visible_orders(now_us):
            raise not_found("No Order matches the given query.")
        return self._render_order(index, now_us, "short" if name == "order_short" else "full")
