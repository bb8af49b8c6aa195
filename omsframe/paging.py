"""Reading a paginated OMS list: filters, page planning, concurrent ordered reads, reconciliation.

The OMS pages like Django REST framework: ``?page=N&limit=L`` gives ``{"count", "next",
"previous", "results"}``. The first page tells ``count``, so the remaining pages are known and
fetched concurrently, at most ``concurrency`` at a time, and handed out in page order (a
sliding window: the request for page ``k + concurrency`` goes out when page ``k`` is handed out,
so no more than ``concurrency`` pages are held at once).

Offset paging over live data shifts: a record inserted, deleted or re-sorted between two page
requests can be seen twice or not at all. So a read asks for a stable ordering (``ordering=id``
unless told otherwise), drops records whose ``id`` it has already handed out and follows
``count`` to the new end as it grows. It reads the whole list again (up to ``max_passes``) when
the records fall short of the final ``count``, or when ``count`` changed in a way that can have
moved records onto pages already read: a shrinking count always, a growing one unless the
server is known to honour ``ordering=id`` (new records, with larger ids, then only append). A
page that vanished because the data shrank (404 "Invalid page." past the new end) ends the pass
quietly; a page that never answers raises. :class:`PagingStats` says what happened.

Page URLs are built from the base URL and the page number, never taken from ``next``, so a
``next`` pointing at another host never receives the token.

This module knows nothing about HTTP: it calls a :data:`FetchPage` function that the client
provides (see :meth:`omsframe.client.Client.orders`).

Example:
    >>> pages = {1: [{"id": 1}, {"id": 2}], 2: [{"id": 3}]}
    >>> def fetch(params):
    ...     n = int(params["page"])
    ...     return {"count": 3, "next": None, "previous": None, "results": pages[n]}
    >>> listing = Listing("orders", fetch, PagePlan(params={}, page_size=2))
    >>> [record["id"] for record in listing]
    [1, 2, 3]
    >>> listing.stats.pages, listing.stats.complete
    (2, True)
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import operator
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypedDict

__all__ = [
    "EVENT_FILTERS",
    "ORDER_FILTERS",
    "DateLike",
    "EventFilters",
    "FetchPage",
    "Listing",
    "OrderFilters",
    "Page",
    "PageBody",
    "PagePlan",
    "PagingStats",
    "ProbeResult",
    "filter_params",
    "page_count",
    "probe_filters",
    "read_pages",
    "to_utc_iso",
]

logger = logging.getLogger(__name__)

Record = dict[str, Any]
DateLike = dt.datetime | dt.date | str


class PageBody(TypedDict):
    """The body of one page, as the OMS sends it."""

    count: int
    next: str | None
    previous: str | None
    results: list[Record]


# Reads one page for the given query parameters; ``None`` when the page vanished (404 "Invalid
# page." because the data shrank). Raises for every other failure.
FetchPage = Callable[[Mapping[str, str]], PageBody | None]


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


# --- filters --------------------------------------------------------------------------------
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


# --- planning -------------------------------------------------------------------------------
def page_count(count: int, page_size: int) -> int:
    """Number of pages for ``count`` records (at least one: an empty list has page 1).

    Example:
        >>> page_count(0, 100), page_count(100, 100), page_count(101, 100)
        (1, 1, 2)
    """
    return max(1, math.ceil(count / page_size))


@dataclass(frozen=True)
class PagePlan:
    """How to read one list.

    Attributes:
        params: Filters and ``ordering`` as query parameters (without ``page``/``limit``).
        page_size: Records to ask for per page; the server may send fewer, which then counts.
        concurrency: Pages in flight at most (and held at most).
        ordered_by_id: The server is known to honour ``ordering=id``: then new records (with
            new, larger ids) can only append, so a growing ``count`` shifts no page and the
            pass simply reads on to the new end.
        max_passes: Whole passes at most (the first read plus re-reads).
    """

    params: Mapping[str, str]
    page_size: int = 100
    concurrency: int = 4
    ordered_by_id: bool = False
    max_passes: int = 2


@dataclass(frozen=True)
class Page:
    """One page as handed out: only records not handed out before.

    Attributes:
        number: Page number within its read.
        records: The new records of this page, in the server's order.
        count: The ``count`` the server reported with this page.
        pass_number: 1 for the first pass, 2 for the re-read, ...
        duplicates: Records of this page dropped because they were handed out already.
    """

    number: int
    records: list[Record]
    count: int
    pass_number: int
    duplicates: int = 0


@dataclass
class PagingStats:
    """What one read of a list did; complete once the iteration has ended.

    Attributes:
        count: The ``count`` last reported by a whole pass.
        records: Records handed out (each id once).
        pages: Pages read (vanished pages not included).
        duplicates: Records dropped because their id had been handed out already.
        passes: Whole passes made.
        vanished_pages: Pages that answered 404 "Invalid page." because the data shrank.
        missing: How many records still fell short of ``count`` at the end.
        settled: Whether the last pass saw no sign of shifted pages (a shrinking ``count``, or a
            changing one when the order is not known to be stable).
    """

    count: int = 0
    records: int = 0
    pages: int = 0
    duplicates: int = 0
    passes: int = 0
    vanished_pages: int = 0
    missing: int = 0
    settled: bool = True

    @property
    def complete(self) -> bool:
        """Whether every record the server counted was handed out, from settled data."""
        return self.missing == 0 and self.settled


# --- reading --------------------------------------------------------------------------------
def read_pages(fetch: FetchPage, plan: PagePlan, stats: PagingStats) -> Generator[Page, None, None]:
    """Read a whole list, reconciled: each id once, shortfalls re-read; pages in order.

    Args:
        fetch: Reads one page.
        plan: What to read and how.
        stats: Filled in while reading.

    Yields:
        Pages with their new records.

    Raises:
        omsframe.errors.ApiError: A page failed for good (after the client's retries).
    """
    seen: set[object] = set()
    unnamed = 0  # records without an id cannot be deduplicated; count them apart

    def take(body: PageBody, number: int, pass_number: int) -> Page:
        nonlocal unnamed
        fresh: list[Record] = []
        for record in body["results"]:
            key = record.get("id") if isinstance(record, dict) else None
            if key is None:
                unnamed += 1
            elif key in seen:
                continue
            else:
                seen.add(key)
            fresh.append(record)
        dropped = len(body["results"]) - len(fresh)
        stats.pages += 1
        stats.records += len(fresh)
        stats.duplicates += dropped
        return Page(number, fresh, body["count"], pass_number, dropped)

    def gap() -> int:
        return stats.count - len(seen) - unnamed

    pool = ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="omsframe-page")
    try:
        for pass_number in range(1, plan.max_passes + 1):
            stats.passes = pass_number
            watch = _CountWatch(fetch)
            vanished = stats.vanished_pages
            # Pages served out of order shift under live data in ways a re-read cannot mend
            # when the order is not known to be stable: re-read one page at a time.
            width = plan.concurrency if pass_number == 1 or plan.ordered_by_id else 1
            pages = _ordered_read(watch.fetch, plan.params, plan, width, pool, stats)
            for number, body in pages:
                stats.count = watch.highest  # provisional, for whoever watches mid-pass
                yield take(body, number, pass_number)
            stats.count = watch.latest if watch.shrank else watch.highest
            # A shrinking count means records moved to pages already read; a changing count
            # does too unless new records can only append (ordering by id honoured).
            shrank = watch.shrank or stats.vanished_pages > vanished
            moved = watch.changed and not plan.ordered_by_id
            stats.settled = not (shrank or moved)
            if gap() <= 0 and stats.settled:
                break
            if pass_number < plan.max_passes:
                logger.info(
                    "pass %d: %d short of count %d, count %s: reading again",
                    pass_number,
                    max(0, gap()),
                    stats.count,
                    "shrank" if shrank else "changed" if moved else "steady",
                )
        stats.missing = max(0, gap())
        if not stats.complete:
            logger.warning(
                "%s: %d record(s) short of count %d after %d pass(es); the data changed while "
                "it was read",
                "unsettled" if not stats.settled else "incomplete",
                stats.missing,
                stats.count,
                stats.passes,
            )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _CountWatch:
    """Watches the ``count`` of one pass's answers, in the order the server gave them.

    Concurrent pages finish in any order, so ``count`` in page order says nothing about time.
    But an answer that arrived before a request was sent was surely computed before it: a
    count below the highest such count is a real shrink.
    """

    def __init__(self, fetch: FetchPage) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._counts: set[int] = set()
        self._highest: int | None = None
        self.latest = 0
        self.shrank = False

    @property
    def highest(self) -> int:
        """The highest ``count`` seen."""
        return self._highest or 0

    @property
    def changed(self) -> bool:
        """Whether the answers disagreed about ``count``."""
        return len(self._counts) > 1

    def fetch(self, params: Mapping[str, str]) -> PageBody | None:
        """Fetch a page, noting its count."""
        with self._lock:
            floor = self._highest
        body = self._fetch(params)
        if body is not None:
            count = body["count"]
            with self._lock:
                self.shrank |= floor is not None and count < floor
                self._highest = count if self._highest is None else max(self._highest, count)
                self._counts.add(count)
                self.latest = count
        return body


def _ordered_read(
    fetch: FetchPage,
    params: Mapping[str, str],
    plan: PagePlan,
    width: int,
    pool: ThreadPoolExecutor,
    stats: PagingStats,
) -> Iterator[tuple[int, PageBody]]:
    """Pages 1..n of one query in order; page 1 first, then a window of concurrent reads."""

    def query(number: int, size: int) -> dict[str, str]:
        return {**params, "page": str(number), "limit": str(size)}

    first = fetch(query(1, plan.page_size))
    if first is None:  # an empty list has a page 1 in DRF; a vanished one is as good as empty
        stats.vanished_pages += 1
        return
    results = first["results"]
    # The server may cap ``limit``: a full first page of fewer records sets the real size.
    size = (
        len(results) if 0 < len(results) < min(plan.page_size, first["count"]) else plan.page_size
    )
    last = page_count(first["count"], size)
    yield 1, first

    window: deque[tuple[int, Future[PageBody | None]]] = deque()
    upcoming = 2

    def fill() -> None:
        nonlocal upcoming
        while len(window) < width and upcoming <= last:
            window.append((upcoming, pool.submit(fetch, query(upcoming, size))))
            upcoming += 1

    try:
        fill()
        while window:
            number, future = window.popleft()
            body = future.result()
            if body is None:
                # The data shrank past this page: the pages after it are gone too.
                stats.vanished_pages += 1
                return
            # Follow count to a new end. Pages finish out of order, so a smaller count may be
            # older news: never pull the end back (a page past a shrunken end just vanishes).
            last = max(last, page_count(body["count"], size))
            fill()
            yield number, body
    finally:
        for _, pending in window:
            pending.cancel()


class Listing:
    """A list endpoint's records, read lazily when iterated (each iteration reads anew).

    Iterate for records, or call :meth:`pages` for pages. :attr:`stats` describes the last
    (or current) iteration.

    Args:
        endpoint: Name of the endpoint, for the progress bar and messages.
        fetch: Reads one page.
        plan: What to read and how.
        progress: Show a ``tqdm`` progress bar sized from ``count``.

    Example:
        >>> listing = client.orders(created_date__gte="2025-01-01")  # doctest: +SKIP
        >>> for page in listing.pages():  # doctest: +SKIP
        ...     print(page.number, len(page.records))
    """

    def __init__(
        self, endpoint: str, fetch: FetchPage, plan: PagePlan, *, progress: bool = False
    ) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.progress = progress
        self.stats = PagingStats()
        self._fetch = fetch

    def __iter__(self) -> Generator[Record, None, None]:
        for page in self.pages():
            yield from page.records

    def pages(self) -> Generator[Page, None, None]:
        """Read the list and yield its pages in order (only new records on each page)."""
        self.stats = stats = PagingStats()
        if not self.progress:
            yield from read_pages(self._fetch, self.plan, stats)
            return
        from tqdm.auto import tqdm

        with tqdm(desc=self.endpoint, unit=" records", total=None) as bar:
            for page in read_pages(self._fetch, self.plan, stats):
                if page.count > (bar.total or 0):
                    bar.total = page.count
                    bar.refresh()
                bar.update(len(page.records))
                yield page

    def __repr__(self) -> str:
        return f"Listing({self.endpoint!r}, params={dict(self.plan.params)!r})"


# --- probing --------------------------------------------------------------------------------
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
