"""Offset paging over live data: concurrent ordered reads, reconciled across passes.

The first page tells ``count``, so the remaining pages are known and fetched concurrently, at
most ``concurrency`` at a time, and handed out in page order (a sliding window: the request for
page ``k + concurrency`` goes out when page ``k`` is handed out, so no more than
``concurrency`` pages are held at once).

Offset paging over live data shifts: a record inserted, deleted or re-sorted between two page
requests can be seen twice or not at all. So a read asks for a stable ordering (``ordering=id``
unless told otherwise), drops records whose ``id`` it has already handed out and follows
``count`` to the new end as it grows. It reads the whole list again (up to ``max_passes``) when
the records fall short of the final ``count``, or when ``count`` changed in a way that can have
moved records onto pages already read: a shrinking count always, a growing one unless the
server is known to honour ``ordering=id`` (new records, with larger ids, then only append). A
page that vanished because the data shrank (404 "Invalid page." past the new end) ends the pass
quietly; a page that never answers raises. :class:`~omsframe.pages.PagingStats` says what
happened.

Page URLs are built from the base URL and the page number, never taken from ``next``, so a
``next`` pointing at another host never receives the token.

Example:
    >>> def fetch(params):
    ...     n = int(params["page"])
    ...     return {"count": 3, "next": None, "previous": None, "results": [{"id": n}] * (n < 4)}
    >>> stats = PagingStats()
    >>> [p.records for p in read_pages(fetch, PagePlan(params={}, page_size=1), stats)]
    [[{'id': 1}], [{'id': 2}], [{'id': 3}]]
    >>> stats.complete
    True
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from omsframe.pages import FetchPage, Page, PageBody, PagePlan, PagingStats, Record, page_count

__all__ = ["read_pages"]

logger = logging.getLogger(__name__)


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
    seen = IdSet()
    unnamed = 0  # records without an id cannot be deduplicated; count them apart

    def take(body: PageBody, number: int, pass_number: int) -> Page:
        nonlocal unnamed
        records = body["results"]
        keys = [record.get("id") if isinstance(record, dict) else None for record in records]
        new = iter(seen.add_all([key for key in keys if key is not None]))
        fresh: list[Record] = []
        for record, key in zip(records, keys, strict=True):
            if key is None:
                unnamed += 1
            elif not next(new):
                continue
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


class IdSet:
    """The ids a read handed out: integers kept as sorted 8-byte numbers, other ids in a set.

    A Python set of 100,000 integer ids takes ~7 MiB, and a sync held one for every order
    it read; sorted int64 numbers take 0.8 MiB. New ids wait in a small set and join the
    sorted ones in bulk.

    Example:
        >>> ids = IdSet()
        >>> ids.add_all([3, 1, 3, "x"]), ids.add_all([1, 2, "x"]), len(ids)
        ([True, True, False, True], [False, True, False], 4)
    """

    def __init__(self) -> None:
        self._sorted = np.empty(0, np.int64)
        self._recent: set[int] = set()
        self._other: set[object] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent) + len(self._other)

    def add_all(self, keys: list[object]) -> list[bool]:
        """Add ``keys`` in turn; for each, whether it was new (``False`` when seen before)."""
        stored = self._stored([key for key in keys if isinstance(key, int) and _is_int64(key)])
        recent, other = self._recent, self._other
        new: list[bool] = []
        for key in keys:
            if isinstance(key, int) and _is_int64(key):
                known = key in stored or key in recent
                if not known:
                    recent.add(key)
            else:
                known = key in other
                if not known:
                    other.add(key)
            new.append(not known)
        if len(recent) >= max(_MERGE_AT, len(self._sorted) // 8):
            merged = np.concatenate([self._sorted, np.fromiter(recent, np.int64, len(recent))])
            merged.sort()
            self._sorted, self._recent = merged, set()
        return new

    def _stored(self, ids: list[int]) -> set[int]:
        """Those of ``ids`` among the sorted ones."""
        if not ids or not len(self._sorted):
            return set()
        wanted = np.asarray(ids, np.int64)
        at = np.minimum(np.searchsorted(self._sorted, wanted), len(self._sorted) - 1)
        return set(wanted[self._sorted[at] == wanted].tolist())


_MERGE_AT = 4_096  # new ids held in a set before they join the sorted ones (at least)


def _is_int64(key: int) -> bool:
    return key.__class__ is int and -(2**63) <= key < 2**63  # (not a bool, fits in 8 bytes)


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
    del results
    yield 1, first
    del first  # (the caller's now: not held for the rest of the read)

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
