"""The vocabulary of a paginated read: a page as sent, the plan, a page as handed out, stats.

The OMS pages like Django REST framework: ``?page=N&limit=L`` gives ``{"count", "next",
"previous", "results"}``. The readers (:mod:`omsframe.reconcile`) know nothing about HTTP: they
call a :data:`FetchPage` function that the client provides.

Example:
    >>> page_count(250, 100)
    3
    >>> PagingStats(count=3, records=3).complete
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = ["FetchPage", "Page", "PageBody", "PagePlan", "PagingStats", "Record", "page_count"]

Record = dict[str, Any]


class PageBody(TypedDict):
    """The body of one page, as the OMS sends it."""

    count: int
    next: str | None
    previous: str | None
    results: list[Record]


# Reads one page for the given query parameters; ``None`` when the page vanished (404 "Invalid
# page." because the data shrank). Raises for every other failure.
FetchPage = Callable[[Mapping[str, str]], PageBody | None]


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
        id_windows: Read by id windows (see :mod:`omsframe.windows`) instead of by page
            number: for a server that ignores ``ordering`` but honours the id filters.
    """

    params: Mapping[str, str]
    page_size: int = 100
    concurrency: int = 4
    ordered_by_id: bool = False
    max_passes: int = 2
    id_windows: bool = False


@dataclass(frozen=True)
class Page:
    """One page as handed out: only records not handed out before.

    Attributes:
        number: Page number within its read (for an id-window read: the window's number).
        records: The new records of this page, in the server's order (in id order for an
            id-window read).
        count: The ``count`` the server reported with this page (for an id-window read: the
            count of the whole list when the read began).
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
        pages: Pages read (vanished pages not included; for an id-window read: every request,
            windows that were split and the two counts that find the id range included).
        duplicates: Records dropped because their id had been handed out already.
        passes: Whole passes made.
        vanished_pages: Pages that answered 404 "Invalid page." because the data shrank.
        missing: How many records still fell short of ``count`` at the end.
        settled: Whether the last pass saw no sign of shifted pages (a shrinking ``count``, or a
            changing one when the order is not known to be stable).
        splits: Id windows that held more records than one page and were split (id-window
            reads only).

    Example:
        >>> import omsframe as of
        >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
        ...     listing = client.orders(page_size=5)
        ...     ids = [order["id"] for order in listing]
        >>> stats = listing.stats
        >>> stats.records == stats.count == len(ids), stats.pages == -(-len(ids) // 5)
        (True, True)
        >>> stats.passes, stats.duplicates, stats.complete
        (1, 0, True)
    """

    count: int = 0
    records: int = 0
    pages: int = 0
    duplicates: int = 0
    passes: int = 0
    vanished_pages: int = 0
    missing: int = 0
    settled: bool = True
    splits: int = 0

    @property
    def complete(self) -> bool:
        """Whether every record the server counted was handed out, from settled data."""
        return self.missing == 0 and self.settled
