"""Reading a list by id windows, for servers that ignore ``ordering`` but honour id filters.

Offset paging needs a stable order: without one, records move between pages as the data
changes, and a read can see some twice and others not at all (:mod:`omsframe.reconcile` then
re-reads, which mends most but not all of it). When a probe found that the server ignores
``ordering`` but honours ``id__gte`` and ``id__lt``, a list is read by id windows instead:
``id__gte=a&id__lt=b`` slices, each small enough to fit in one page. One window is one request,
answered at one moment, so nothing shifts within it; windows never overlap, so every record
that matches throughout the read arrives exactly once, whatever order the server sends.

1. The id range, cheaply. The first request reads the list's first page (the whole list, when
   it fits). Its ids are a sample; two counts (``limit=1``) of the ids below and above the
   sample tell the density of ids and about where the range begins and ends.
2. Windows of about ``FILL * page_size`` expected records are read concurrently (at most
   ``concurrency`` in flight and held) and handed out in id order. The lowest window is open
   below and the highest open above, so nothing outside the estimated range is missed. The
   width follows the density seen in the windows read so far.
3. A window whose ``count`` is more than one page holds is split into equal-width parts by its
   exact count (an open window first around the ids it showed), read in its place.

Example:
    >>> records = [{"id": i} for i in range(1, 11)]
    >>> def fetch(params):  # honours id__gte/id__lt, sends newest first whatever is asked
    ...     low, high = int(params.get("id__gte", 0)), int(params.get("id__lt", 99))
    ...     rows = [r for r in reversed(records) if low <= r["id"] < high]
    ...     limit = int(params["limit"])
    ...     return {"count": len(rows), "next": None, "previous": None, "results": rows[:limit]}
    >>> stats = PagingStats()
    >>> pages = list(read_id_windows(fetch, PagePlan(params={}, page_size=4), stats))
    >>> [r["id"] for page in pages for r in page.records]
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    >>> stats.complete
    True
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from omsframe.filters import ID_FILTERS
from omsframe.pages import FetchPage, Page, PageBody, PagePlan, PagingStats, Record

__all__ = ["FILL", "Window", "read_id_windows", "split_id_filters"]

logger = logging.getLogger(__name__)

# Records a window is planned to hold, as a share of a page: room for uneven ids.
FILL = 0.8
_EMPTY: PageBody = {"count": 0, "next": None, "previous": None, "results": []}


@dataclass(frozen=True)
class Window:
    """The ids ``low <= id < high``; ``None`` leaves that side open.

    Example:
        >>> Window(10, 20).params(), Window(None, 5).width
        ({'id__gte': '10', 'id__lt': '20'}, None)
    """

    low: int | None
    high: int | None

    @property
    def width(self) -> int | None:
        """How many ids the window spans (``None`` when open)."""
        return None if self.low is None or self.high is None else self.high - self.low

    def params(self) -> dict[str, str]:
        """The window as ``id__gte``/``id__lt`` query parameters."""
        params: dict[str, str] = {}
        if self.low is not None:
            params["id__gte"] = str(self.low)
        if self.high is not None:
            params["id__lt"] = str(self.high)
        return params


def split_id_filters(params: Mapping[str, str]) -> tuple[dict[str, str], Window] | None:
    """The query without its id range filters, and the window those filters describe.

    ``None`` when an id filter is not an integer (then the list cannot be read by windows).

    Example:
        >>> split_id_filters({"id__gt": "5", "id__lte": "9", "channel": "1"})
        ({'channel': '1'}, Window(low=6, high=10))
    """
    rest = dict(params)
    low: int | None = None
    high: int | None = None
    for name in ID_FILTERS:
        text = rest.pop(name, None)
        if text is None:
            continue
        try:
            value = int(text)
        except ValueError:
            return None
        if name in ("id__gt", "id__gte"):
            bound = value + (name == "id__gt")
            low = bound if low is None else max(low, bound)
        else:
            bound = value + (name == "id__lte")
            high = bound if high is None else min(high, bound)
    return rest, Window(low, high)


def _ids(body: PageBody) -> list[int]:
    found = (r.get("id") for r in body["results"])
    return sorted(i for i in found if isinstance(i, int) and not isinstance(i, bool))


def _fits(body: PageBody) -> bool:
    return len(body["results"]) >= body["count"]


class _Planner:
    """Where the windows go: the next one from the left, and the parts of a full one."""

    def __init__(self, whole: Window, start: int, end: int, density: float, target: int) -> None:
        self.whole = whole
        self.cursor = start
        self.end = end
        self.density = density  # records per id, as seen so far
        self.target = target  # records a window is planned to hold
        self.first = True
        self.done = False

    def next_window(self) -> Window | None:
        """The next window to the right of the last one; ``None`` after the open last one."""
        if self.done:
            return None
        width = max(1, round(self.target / self.density))
        if self.first and self.cursor + width >= self.end:
            width = max(1, (self.end - self.cursor) // 2)  # at least two windows
        low = self.whole.low if self.first else self.cursor
        self.first = False
        high = self.cursor + width
        if high >= self.end:
            self.done = True
            return Window(low, self.whole.high)
        self.cursor = high
        return Window(low, high)

    def observe(self, window: Window, count: int) -> None:
        """Follow the density of ids in a window just read (a moving average)."""
        if window.width:
            self.density = (self.density + count / window.width) / 2

    def split(self, window: Window, body: PageBody) -> list[Window] | None:
        """Parts of a window too full for one page; ``None`` when it cannot be split."""
        count, ids = body["count"], _ids(body)
        if not ids:
            return None
        low, high = window.low, window.high
        reach = math.ceil(count / self.density)
        if low is None and high is None:
            middle = ids[len(ids) // 2]
            return None if middle == ids[0] else [Window(None, middle), Window(middle, None)]
        if low is None:
            assert high is not None
            edge = min(high - reach, ids[0])  # the open part holds none of the ids seen
            return [Window(None, edge), *self._even(edge, high, count)]
        if high is None:
            edge = max(low + reach, ids[-1] + 1)
            return [*self._even(low, edge, count), Window(edge, None)]
        if high - low < 2:
            return None
        return self._even(low, high, max(count, 2 * self.target))

    def _even(self, low: int, high: int, count: int) -> list[Window]:
        parts = min(high - low, max(1, math.ceil(count / self.target)))
        step = math.ceil((high - low) / parts)
        return [Window(x, min(x + step, high)) for x in range(low, high, step)]


class _Slot:
    """A window in the queue and its request, once sent."""

    __slots__ = ("future", "window")

    def __init__(self, window: Window, future: Future[PageBody] | None = None) -> None:
        self.window = window
        self.future = future


def read_id_windows(
    fetch: FetchPage, plan: PagePlan, stats: PagingStats
) -> Generator[Page, None, None]:
    """Read a whole list by id windows; pages (one per window) in id order, each id once.

    Args:
        fetch: Reads one page; the server must honour ``id__gte`` and ``id__lt``.
        plan: What to read (its id filters bound the windows) and how.
        stats: Filled in while reading.

    Yields:
        One page per window, records in id order.

    Raises:
        ValueError: An id filter of the plan is not an integer.
        omsframe.errors.ApiError: A request failed for good (after the client's retries).
    """
    split = split_id_filters(plan.params)
    if split is None:
        raise ValueError(f"id filters must be integers to read by id windows: {plan.params}")
    rest, whole = split
    seen: set[object] = set()
    numbered = 0

    def ask(window: Window, limit: int) -> PageBody:
        return fetch({**rest, **window.params(), "page": "1", "limit": str(limit)}) or _EMPTY

    def take(body: PageBody) -> Page:
        nonlocal numbered
        fresh: list[Record] = []
        for record in sorted(body["results"], key=_id_order):
            key = record.get("id")
            if key in seen:
                continue
            if key is not None:
                seen.add(key)
            fresh.append(record)
        numbered += 1
        dropped = len(body["results"]) - len(fresh)
        stats.records += len(fresh)
        stats.duplicates += dropped
        return Page(numbered, fresh, max(stats.count, stats.records), 1, dropped)

    stats.passes = 1
    first = ask(whole, plan.page_size)
    stats.pages, stats.count = 1, first["count"]
    if _fits(first):
        yield take(first)
        return
    ids = _ids(first)
    if not ids:
        stats.missing = stats.count
        logger.warning("%d records counted but none with an id: cannot read by id", stats.count)
        return
    target = max(1, int(len(first["results"]) * FILL))  # the server may cap ``limit``
    pool = ThreadPoolExecutor(max_workers=plan.concurrency, thread_name_prefix="omsframe-window")
    queue: deque[_Slot] = deque()
    try:
        below = pool.submit(ask, Window(whole.low, ids[0]), 1)
        above = pool.submit(ask, Window(ids[-1] + 1, whole.high), 1)
        under, over = below.result()["count"], above.result()["count"]
        stats.pages += 2
        density = max(len(ids), first["count"] - under - over) / (ids[-1] + 1 - ids[0])
        start = ids[0] - math.ceil(under / density)
        end = ids[-1] + 1 + math.ceil(over / density)
        if whole.low is not None:
            start = max(start, whole.low)
        if whole.high is not None:
            end = min(end, whole.high)
        planner = _Planner(whole, start, max(end, start + 1), density, target)

        def fill() -> None:
            sent = sum(slot.future is not None for slot in queue)
            for slot in queue:  # parts of a split window wait at the front
                if sent >= plan.concurrency:
                    return
                if slot.future is None:
                    slot.future = pool.submit(ask, slot.window, plan.page_size)
                    sent += 1
            while sent < plan.concurrency and (window := planner.next_window()) is not None:
                queue.append(_Slot(window, pool.submit(ask, window, plan.page_size)))
                sent += 1

        taken = 0
        fill()
        while queue:
            slot = queue[0]
            assert slot.future is not None
            body = slot.future.result()
            queue.popleft()
            stats.pages += 1
            planner.observe(slot.window, body["count"])
            parts = None if _fits(body) else planner.split(slot.window, body)
            if parts is None:
                taken += body["count"]
                stats.missing += max(0, body["count"] - len(body["results"]))
                fill()
                yield take(body)
            else:
                stats.splits += 1
                queue.extendleft(_Slot(part) for part in reversed(parts))
                fill()
        stats.count = taken
    finally:
        for slot in queue:
            if slot.future is not None:
                slot.future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    if stats.missing:
        logger.warning("%d record(s) could not be read by id windows", stats.missing)


def _id_order(record: Record) -> tuple[bool, int]:
    key = record.get("id")
    return (False, key) if isinstance(key, int) and not isinstance(key, bool) else (True, 0)
