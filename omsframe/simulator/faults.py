"""Fault injection for the simulator server: throttling, server errors, broken transfers, drift.

Each request draws one :class:`Decision` from a seeded :class:`random.Random` (always the same
number of draws per request, so the *multiset* of outcomes over ``N`` requests is fixed by the
seed, whatever the order in which concurrent requests arrive). The exclusive outcomes
(``dropped``, ``429``, ``5xx``, ``truncated``, ``invalid_json``) partition one uniform draw, so
each happens at exactly its own rate; ``slow`` is drawn independently and combines with any.
Schema drift is not drawn per request but per order: whether and how an order drifts depends
only on ``(seed, order id)``, so the same order always looks the same.

Example:
    >>> drawer = FaultDrawer(Faults(seed=1, rate_429=0.5))
    >>> kinds = [drawer.draw().kind for _ in range(1000)]
    >>> 400 < kinds.count("429") < 600
    True
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import threading
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from omsframe.simulator import catalogue as cat
from omsframe.simulator.render import state_object

Json = dict[str, Any]
EXCLUSIVE = ("dropped", "429", "5xx", "truncated", "invalid_json")
SERVER_ERRORS = (500, 502, 503, 504)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}
_JSON_DETAIL = {
    500: "A server error occurred.",
    502: "Bad gateway.",
    503: "Service temporarily unavailable, try again later.",
    504: "Gateway timeout.",
}


@dataclass(frozen=True)
class Faults:
    """Rates of the faults the server injects; all zero (the default) means a perfect server.

    The rates of ``429``, ``5xx``, ``truncated``, ``dropped`` and ``invalid_json`` must add up
    to at most 1 (they exclude each other); ``slow`` and ``drift`` are independent.

    Attributes:
        seed: Seed of the per-request draws and of drift.
        rate_429: Share of requests answered 429 with a ``Retry-After``.
        retry_after: Form of ``Retry-After``: integer seconds, an HTTP date, or either.
        retry_after_seconds: The wait announced (rounded up to whole seconds, as DRF does).
        rate_5xx: Share answered 500/502/503/504, about half of them with an nginx HTML page.
        rate_slow: Share delayed by ``slow_seconds`` before the answer.
        slow_seconds: The delay of a slow answer.
        rate_truncated: Share whose body is cut short under a full ``Content-Length``.
        rate_dropped: Share whose connection is closed with no answer at all.
        rate_invalid_json: Share answered 200 with a body that is not valid JSON.
        rate_drift: Share of orders rendered with schema drift (unknown fields, missing
            optional fields, null objects, unknown state codes).

    Example:
        >>> Faults(rate_5xx=0.1).rate_5xx
        0.1
    """

    seed: int = 0
    rate_429: float = 0.0
    retry_after: Literal["seconds", "date", "mixed"] = "mixed"
    retry_after_seconds: float = 1.0
    rate_5xx: float = 0.0
    rate_slow: float = 0.0
    slow_seconds: float = 0.5
    rate_truncated: float = 0.0
    rate_dropped: float = 0.0
    rate_invalid_json: float = 0.0
    rate_drift: float = 0.0

    def __post_init__(self) -> None:
        rates = {
            "rate_429": self.rate_429,
            "rate_5xx": self.rate_5xx,
            "rate_slow": self.rate_slow,
            "rate_truncated": self.rate_truncated,
            "rate_dropped": self.rate_dropped,
            "rate_invalid_json": self.rate_invalid_json,
            "rate_drift": self.rate_drift,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"Faults.{name} must be within [0, 1], got {rate}")
        if sum(self.exclusive_rates()) > 1.0 + 1e-9:
            raise ValueError("Faults: rate_dropped+429+5xx+truncated+invalid_json exceed 1")
        if self.retry_after not in ("seconds", "date", "mixed"):
            raise ValueError(
                f"Faults.retry_after must be seconds, date or mixed: {self.retry_after}"
            )
        if self.retry_after_seconds < 0 or self.slow_seconds < 0:
            raise ValueError("Faults: retry_after_seconds and slow_seconds must be >= 0")

    def exclusive_rates(self) -> tuple[float, ...]:
        """Rates of the mutually exclusive outcomes, in the order of :data:`EXCLUSIVE`."""
        return (
            self.rate_dropped,
            self.rate_429,
            self.rate_5xx,
            self.rate_truncated,
            self.rate_invalid_json,
        )

    @property
    def any_request_fault(self) -> bool:
        """Whether any per-request fault can fire (drift is per order, not per request)."""
        return self.rate_slow > 0 or any(rate > 0 for rate in self.exclusive_rates())


@dataclass(frozen=True)
class Decision:
    """What the server does wrong with one request.

    Attributes:
        kind: One of :data:`EXCLUSIVE`, or ``None`` for a correct answer.
        slow: Whether to wait ``slow_seconds`` first.
        retry_after_date: For a 429, send an HTTP date rather than seconds.
        status: For a 5xx, the status code.
        html: For a 5xx, an HTML page (like nginx) rather than JSON.
        fraction: For a truncated or invalid body, where in the body to cut (0..1).
    """

    kind: str | None = None
    slow: bool = False
    retry_after_date: bool = False
    status: int = 500
    html: bool = False
    fraction: float = 0.5


NO_FAULT = Decision()


class FaultDrawer:
    """Draw one :class:`Decision` per request, thread-safely, from ``Random(faults.seed)``.

    Example:
        >>> FaultDrawer(Faults()).draw().kind is None
        True
    """

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)
        self._lock = threading.Lock()

    def draw(self) -> Decision:
        """Decide the fate of the next request (always six draws, in a fixed order)."""
        if not self.faults.any_request_fault:
            return NO_FAULT
        with self._lock:
            u_kind, u_slow, u_form, u_status, u_html, u_cut = (self._rng.random() for _ in range(6))
        kind: str | None = None
        edge = 0.0
        for name, rate in zip(EXCLUSIVE, self.faults.exclusive_rates(), strict=True):
            edge += rate
            if u_kind < edge:
                kind = name
                break
        form = self.faults.retry_after
        return Decision(
            kind=kind,
            slow=u_slow < self.faults.rate_slow,
            retry_after_date=form == "date" or (form == "mixed" and u_form < 0.5),
            status=SERVER_ERRORS[min(3, int(u_status * 4))],
            html=u_html < 0.5,
            fraction=0.1 + 0.8 * u_cut,
        )


def throttled(faults: Faults, decision: Decision) -> tuple[str, bytes]:
    """The ``Retry-After`` value and JSON body of a 429 (wording of DRF's ``Throttled``).

    Example:
        >>> throttled(Faults(retry_after_seconds=2), Decision(kind="429"))[0]
        '2'
    """
    wait = math.ceil(faults.retry_after_seconds)
    unit = "second" if wait == 1 else "seconds"
    body = orjson.dumps({"detail": f"Request was throttled. Expected available in {wait} {unit}."})
    if decision.retry_after_date:
        moment = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=faults.retry_after_seconds)
        if moment.microsecond:  # an HTTP date has whole seconds: round up, never announce less
            moment = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
        return email.utils.format_datetime(moment, usegmt=True), body
    return str(wait), body


def server_error(decision: Decision) -> tuple[str, bytes]:
    """Content type and body of a 5xx: an nginx HTML page or a DRF-style JSON detail.

    Example:
        >>> server_error(Decision(kind="5xx", status=502, html=True))[0]
        'text/html'
    """
    status = decision.status
    if decision.html:
        title = f"{status} {_REASONS[status]}"
        page = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        )
        return "text/html", page.encode()
    return "application/json", orjson.dumps({"detail": _JSON_DETAIL[status]})


def cut(body: bytes, fraction: float, *, text: bool = False) -> bytes:
    """A proper prefix of ``body``: about ``fraction`` of it, at least one byte shorter.

    A proper prefix of a JSON object or list is never valid JSON, so this serves both the
    truncated transfer and the invalid-JSON body. With ``text``, the cut never splits a UTF-8
    character, so the prefix is valid text that is not valid JSON.

    Example:
        >>> cut(b'{"a": 1}', 0.5)
        b'{"a"'
        >>> cut('{"ş": 1}'.encode(), 0.3, text=True)
        b'{"'
    """
    if not body:
        return body
    end = max(0, min(len(body) - 1, int(len(body) * fraction)))
    while text and end > 0 and body[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
        end -= 1
    return body[:end]


DRIFT_KINDS = ("unknown_fields", "missing_fields", "null_objects", "unknown_state")


def drift_kinds(faults: Faults, order_id: int) -> tuple[str, ...]:
    """The drift applied to an order: empty for most, fixed by ``(seed, order id)``.

    Example:
        >>> drift_kinds(Faults(rate_drift=0.0), 1001)
        ()
        >>> len(drift_kinds(Faults(rate_drift=1.0), 1001)) >= 1
        True
    """
    if faults.rate_drift <= 0:
        return ()
    rng = random.Random(f"omsframe-drift:{faults.seed}:{order_id}")
    if rng.random() >= faults.rate_drift:
        return ()
    chosen = tuple(kind for kind in DRIFT_KINDS if rng.random() < 0.5)
    return chosen or (DRIFT_KINDS[rng.randrange(len(DRIFT_KINDS))],)


def apply_drift(order: Json, faults: Faults, shape: str) -> tuple[str, ...]:
    """Change a rendered order in place the way a newer or older server version might.

    Args:
        order: An order object as rendered (``full``, ``short`` or ``simple`` shape).
        faults: The fault settings (``rate_drift`` and ``seed``).
        shape: ``"full"``, ``"short"`` or ``"simple"``.

    Returns:
        The drift kinds applied (empty when the order is served as it is).

    Example:
        >>> order = {"id": 1001, "segment": None, "gift_box_note": None, "state": {}}
        >>> kinds = apply_drift(order, Faults(rate_drift=1.0, seed=5), "short")
        >>> bool(kinds)
        True
    """
    kinds = drift_kinds(faults, int(order["id"]))
    if not kinds:
        return kinds
    rng = random.Random(f"omsframe-drift-detail:{faults.seed}:{order['id']}")
    items: list[Json] = order.get("orderitem_set") or []
    if "unknown_fields" in kinds:
        order["loyalty_points"] = rng.randrange(0, 500)
        order["fulfillment"] = {"warehouse": f"WH{rng.randrange(1, 9)}", "priority": "normal"}
        for item in items:
            item["bundle_id"] = None
    if "missing_fields" in kinds:
        order.pop("segment", None)
        order.pop("gift_box_note", None)
        for item in items:
            item.pop("without_net_amount", None)
    if "null_objects" in kinds:
        order["shipping_address"] = None
        if items:
            items[rng.randrange(len(items))]["price_list"] = None
    if "unknown_state" in kinds:
        code = tuple(cat.UNKNOWN_STATES)[rng.randrange(len(cat.UNKNOWN_STATES))]
        if shape == "simple":
            order["state"] = cat.state_id(code, cat.ORDER_CONTENT_TYPE)
        else:
            order["state"] = state_object(code)
    return kinds
