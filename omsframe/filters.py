"""The filters of the OMS list endpoints, and how they are sent.

The list endpoints filter with django-filter: ``id__gt``, ``created_date__gte``,
``state__enum_value`` ... (``oms-api.md``). DRF silently ignores a parameter it does not know,
so unknown names are refused here rather than sent. Dates may be datetimes, dates or ISO
strings; they are sent as ISO 8601 in UTC with ``Z``.

Example:
    >>> filter_params("orders", {"id__gt": 5, "created_date__gte": "2025-01-01"}, ORDER_FILTERS)
    {'id__gt': '5', 'created_date__gte': '2025-01-01T00:00:00Z'}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TypedDict

__all__ = [
    "DEFAULT_ORDERING",
    "EVENT_FILTERS",
    "ID_FILTERS",
    "ORDER_FILTERS",
    "DateLike",
    "EventFilters",
    "OrderFilters",
    "filter_params",
    "to_utc_iso",
]

DateLike = dt.datetime | dt.date | str


class OrderFilters(TypedDict, total=False):
    """Filters of the order lists (``oms-api.md``); dates are datetimes or ISO strings."""

    id__gt: int
    id__gte: int
    id__lt: int
    id__lte: int
    number: str
    channel: int
    state__enum_value: str | int
    created_date__gte: DateLike
    created_date__lte: DateLike
    modified_date__gte: DateLike
    modified_date__lte: DateLike
    date_placed__gte: DateLike
    date_placed__lte: DateLike
    ordering: str


class EventFilters(TypedDict, total=False):
    """Filters of the webhook event lists (``oms-api.md``)."""

    id__gt: int
    id__gte: int
    id__lt: int
    id__lte: int
    number: str
    channel: int
    event_type: str
    delivered: bool
    created_date__gte: DateLike
    created_date__lte: DateLike
    modified_date__gte: DateLike
    modified_date__lte: DateLike
    ordering: str


ORDER_FILTERS = frozenset(OrderFilters.__annotations__)
EVENT_FILTERS = frozenset(EventFilters.__annotations__)
ID_FILTERS = ("id__gt", "id__gte", "id__lt", "id__lte")
DEFAULT_ORDERING = "id"


def to_utc_iso(value: DateLike) -> str:
    """A moment as ISO 8601 in UTC with ``Z``, as the OMS filters expect.

    Naive datetimes and ISO strings without an offset are taken as UTC; a date means its
    midnight UTC. Microseconds are kept when present.

    Example:
        >>> to_utc_iso(dt.datetime(2024, 5, 1, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=3))))
        '2024-05-01T12:30:00Z'
        >>> to_utc_iso("2024-05-01")
        '2024-05-01T00:00:00Z'
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 date or time: {value!r}") from None
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds") + "Z"


def filter_params(
    where: str, filters: Mapping[str, object], known: frozenset[str]
) -> dict[str, str]:
    """Query parameters for keyword filters: dates to UTC ISO, booleans to ``true``/``false``.

    Unknown filter names raise ``TypeError`` (the OMS would silently ignore them and return
    unfiltered data). ``None`` values are left out.

    Example:
        >>> filter_params("orders", {"id__gt": 5, "delivered": True}, EVENT_FILTERS)
        {'id__gt': '5', 'delivered': 'true'}
    """
    unknown = sorted(set(filters) - known)
    if unknown:
        raise TypeError(
            f"{where}() got unknown filter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if "date" in name:
            params[name] = to_utc_iso(value)  # type: ignore[arg-type]
        elif isinstance(value, bool):
            params[name] = "true" if value else "false"
        else:
            params[name] = str(value)
    return params
