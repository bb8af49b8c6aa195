"""Finding out what a server honours: ``ordering`` and each id/date range filter.

DRF silently ignores query parameters it does not know and returns unfiltered data, so a
probe asks a few small questions (``limit=5``) and compares the answers with what was asked.
The answer, a :class:`ProbeResult`, tells the readers whether a growing list can only append
(``ordering=id`` honoured) and whether id windows can be read (id range filters honoured).

Example:
    >>> records = [{"id": i} for i in range(1, 41)]
    >>> def fetch(params):  # ignores every filter and ``ordering``, as a bare DRF view might
    ...     return {"count": 40, "next": None, "previous": None, "results": records[:5]}
    >>> result = probe_filters("orders", fetch, ("id__gt",))
    >>> result.ordering, result.honours("id__gt")
    (False, False)
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from omsframe.filters import ID_FILTERS, to_utc_iso
from omsframe.pages import FetchPage, PageBody, Record

__all__ = ["PROBE_LIMIT", "ProbeResult", "probe_filters", "range_filters"]

_RANGE_SUFFIXES = ("__gt", "__gte", "__lt", "__lte")


def range_filters(known: frozenset[str]) -> tuple[str, ...]:
    """The id and date range filters among ``known``, in name order: what a probe checks.

    Example:
        >>> range_filters(frozenset({"id__gt", "number", "created_date__gte", "ordering"}))
        ('created_date__gte', 'id__gt')
    """
    return tuple(
        name
        for name in sorted(known)
        if name.endswith(_RANGE_SUFFIXES) and (name in ID_FILTERS or "date" in name)
    )


@dataclass(frozen=True)
class ProbeResult:
    """Which of ``ordering`` and the id/date filters a server honours, for one endpoint.

    ``True``: honoured; ``False``: ignored (the server returned data the filter excludes, or
    did not narrow the count); ``None``: could not tell (too few records).

    Example:
        >>> result = ProbeResult("orders", 10, True, {"id__gt": True})
        >>> result.honours("id__gt"), result.honours("id__lt"), result.to_dict()["filters"]
        (True, False, {'id__gt': True})
    """

    endpoint: str
    count: int
    ordering: bool | None
    filters: Mapping[str, bool | None] = field(default_factory=dict)
    requests: int = 0

    def honours(self, name: str) -> bool:
        """Whether ``name`` (``"ordering"`` or a filter) is known to be honoured."""
        answer = self.ordering if name == "ordering" else self.filters.get(name)
        return answer is True

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a manifest (JSON-serialisable)."""
        return {
            "endpoint": self.endpoint,
            "count": self.count,
            "ordering": self.ordering,
            "filters": dict(self.filters),
            "requests": self.requests,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeResult:
        """The inverse of :meth:`to_dict`."""
        return cls(
            endpoint=str(data["endpoint"]),
            count=int(data["count"]),
            ordering=data["ordering"],
            filters=dict(data.get("filters", {})),
            requests=int(data.get("requests", 0)),
        )


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
PROBE_LIMIT = 5


def probe_filters(
    endpoint: str, fetch: FetchPage, filters: tuple[str, ...], concurrency: int = 4
) -> ProbeResult:
    """Find out with a few small requests whether ``ordering`` and each filter are honoured.

    Reads the first five records ordered by ``id`` and by ``-id``, then for each filter picks a
    value in the middle of what it saw and checks that the answer both narrows ``count`` and
    holds only records that satisfy the filter.

    Args:
        endpoint: Name for the result.
        fetch: Reads one page (the probe asks for ``limit=5``).
        filters: Filter names of the form ``<field>__<gt|gte|lt|lte>`` to check.
        concurrency: Requests in flight at most.

    Returns:
        The answer.
    """

    def ask(params: Mapping[str, str]) -> PageBody | None:
        return fetch({**params, "page": "1", "limit": str(PROBE_LIMIT)})

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="omsframe-probe") as pool:
        up_future = pool.submit(ask, {"ordering": "id"})
        down_future = pool.submit(ask, {"ordering": "-id"})
        up, down = up_future.result(), down_future.result()
        total = up["count"] if up else 0
        sample = (up["results"] if up else []) + (down["results"] if down else [])
        ordering = _ordering_honoured(up, down)
        checks: dict[str, tuple[Future[PageBody | None], str, Any]] = {}
        for name in filters:
            field_name, _, op = name.rpartition("__")
            pivot = _pivot(sample, field_name, ordering=ordering, up=up)
            if pivot is None or op not in _OPERATORS:
                continue
            value = str(pivot) if field_name == "id" else to_utc_iso(pivot)
            checks[name] = (pool.submit(ask, {name: value}), field_name, pivot)
        answers: dict[str, bool | None] = {name: None for name in filters}
        for name, (future, field_name, pivot) in checks.items():
            answers[name] = _filter_honoured(
                future.result(), total, field_name, _OPERATORS[name.rpartition("__")[2]], pivot
            )
    return ProbeResult(endpoint, total, ordering, answers, requests=2 + len(checks))


def _ids(body: PageBody | None) -> list[int]:
    return [r["id"] for r in body["results"] if isinstance(r.get("id"), int)] if body else []


def _ordering_honoured(up: PageBody | None, down: PageBody | None) -> bool | None:
    ups, downs = _ids(up), _ids(down)
    if len(set(ups) | set(downs)) < 2:
        return None
    return ups == sorted(ups) and downs == sorted(downs, reverse=True) and ups[0] < downs[0]


def _value(record: Record, field_name: str) -> Any:
    value = record.get(field_name)
    if field_name == "id":
        return value if isinstance(value, int) else None
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _pivot(
    sample: list[Record], field_name: str, *, ordering: bool | None, up: PageBody | None
) -> Any:
    """A value with records on both sides of it, from the records seen."""
    if field_name == "id" and ordering and up and len(up["results"]) >= 3:
        return _ids(up)[1]  # the second smallest id: there are smaller and larger ones
    values = sorted({v for v in (_value(r, field_name) for r in sample) if v is not None})
    return values[len(values) // 2] if len(values) >= 3 else None


def _filter_honoured(
    body: PageBody | None,
    total: int,
    field_name: str,
    compare: Callable[[Any, Any], bool],
    pivot: Any,
) -> bool | None:
    if body is None:
        return None
    values = [_value(r, field_name) for r in body["results"]]
    if any(v is None for v in values):
        return None
    return body["count"] < total and all(compare(v, pivot) for v in values)
