"""Filters, ordering and paging of the simulator's list endpoints, as DRF does them.

A :class:`Dialect` holds the switches for what we do not know about a real deployment (filters
or ordering ignored, other defaults). An :class:`Engine` answers a list query at one moment:
django-filter style filters and ``ordering`` are vectorised with numpy over the orders (or
events) visible at that moment, so only the objects of the requested page are rendered later.
:func:`paginate` cuts the page as DRF's ``PageNumberPagination`` with
``page_size_query_param="limit"`` does. Invalid queries raise :class:`HttpError` with DRF's
error bodies.

Example:
    >>> from omsframe.simulator.world import World
    >>> engine = Engine(World.generate(seed=1, orders=50), Dialect())
    >>> rows = engine.select("orders", {"ordering": "id"}, engine.world.end_us)
    >>> page, envelope = paginate(rows, {"limit": "5"}, "http://x/", engine.dialect)
    >>> len(page), envelope["previous"]
    (5, None)
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import numpy as np
from numpy.typing import NDArray

from omsframe.simulator import catalogue as cat
from omsframe.simulator.world import EVENT_TYPES, World, number_of, to_us

ORDER_FIELDS = ("id", "created_date", "modified_date", "date_placed", "number")
EVENT_FIELDS = ("id", "created_date", "modified_date")
_NUMBER_INVERSE = pow(1_000_003, -1, 10**12)  # number_of(id) is id * 1000003 mod 10**12
_CHANNEL_IDS = frozenset(spec.id for spec in cat.CHANNELS)
_ORDERING_TERM = re.compile(r"^(-?)([.\w]+)$")
Array = NDArray[Any]
Json = dict[str, Any]

__all__ = [
    "EVENT_FIELDS",
    "ORDER_FIELDS",
    "Dialect",
    "Engine",
    "HttpError",
    "not_found",
    "paginate",
]


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


class HttpError(Exception):
    """An API error answer: status, JSON body and extra headers (DRF's ``APIException``)."""

    def __init__(self, status: int, body: object, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def not_found(detail: str = "Not found.") -> HttpError:
    """A 404 with DRF's ``detail`` body."""
    return HttpError(404, {"detail": detail})


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


def _parse_filter(engine: Engine, parser: str, op: str, text: str) -> tuple[str, int] | None:
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


class Engine:
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
            HttpError: 400 with django-filter's messages for invalid filter values.
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
            raise HttpError(400, errors)
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


def paginate(
    rows: NDArray[np.int64], params: dict[str, str], url: str, dialect: Dialect
) -> tuple[NDArray[np.int64], Json]:
    """The rows of the asked page and the page envelope (without ``results``).

    Raises:
        HttpError: 404 ``Invalid page.`` for a page that is not a number or out of range.
    """
    size = _page_size(params, dialect)
    count = int(rows.shape[0])
    pages = max(1, -(-count // size))
    text = params.get("page") or "1"
    try:
        number = pages if text == "last" else int(text)
    except ValueError:
        raise not_found("Invalid page.") from None
    if not 1 <= number <= pages:
        raise not_found("Invalid page.")
    next_url = _replace_query_param(url, "page", number + 1) if number < pages else None
    if number == 1:
        previous = None
    elif number == 2:
        previous = _remove_query_param(url, "page")
    else:
        previous = _replace_query_param(url, "page", number - 1)
    envelope = {"count": count, "next": next_url, "previous": previous}
    return rows[(number - 1) * size : number * size], envelope
