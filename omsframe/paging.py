"""Reading a paginated OMS list: :class:`Listing`, the lazy list a client's list method returns.

The work is split by concern; everything is re-exported here:

- :mod:`omsframe.filters`: filter types and their query parameters;
- :mod:`omsframe.pages`: the page body, the plan, pages as handed out, the stats;
- :mod:`omsframe.reconcile`: offset paging over live data (concurrent, ordered, reconciled);
- :mod:`omsframe.windows`: reading by id windows, for servers that ignore ``ordering``;
- :mod:`omsframe.probe`: finding out what a server honours.

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

from collections.abc import Generator, Mapping

from omsframe.filters import (
    DEFAULT_ORDERING,
    EVENT_FILTERS,
    ID_FILTERS,
    ORDER_FILTERS,
    DateLike,
    EventFilters,
    OrderFilters,
    filter_params,
    to_utc_iso,
)
from omsframe.pages import (
    FetchPage,
    Page,
    PageBody,
    PagePlan,
    PagingStats,
    Record,
    page_count,
)
from omsframe.probe import PROBE_LIMIT, ProbeResult, probe_filters
from omsframe.reconcile import read_pages
from omsframe.windows import read_id_windows, split_id_filters

__all__ = [
    "DEFAULT_ORDERING",
    "EVENT_FILTERS",
    "ID_FILTERS",
    "ORDER_FILTERS",
    "PROBE_LIMIT",
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
    "plan_read",
    "probe_filters",
    "read",
    "read_id_windows",
    "read_pages",
    "to_utc_iso",
]


def plan_read(
    params: Mapping[str, str],
    *,
    page_size: int,
    concurrency: int,
    max_passes: int,
    probed: ProbeResult | None = None,
) -> PagePlan:
    """How to read a list with these query parameters, given what a probe found.

    ``ordering`` defaults to ``id`` (a stable order). When ``id`` is the ordering asked for:

    - a server known to honour it is read by page number, and new records only append;
    - a server known to ignore it, but to honour ``id__gte`` and ``id__lt``, is read by id
      windows (:mod:`omsframe.windows`), so that nothing shifts; records come in id order.

    Example:
        >>> plan_read({}, page_size=100, concurrency=4, max_passes=2).params
        {'ordering': 'id'}
        >>> ignores = ProbeResult("orders", 50, False, {"id__gte": True, "id__lt": True})
        >>> plan_read({}, page_size=100, concurrency=4, max_passes=2, probed=ignores).id_windows
        True
    """
    query = dict(params)
    query.setdefault("ordering", DEFAULT_ORDERING)
    by_id = query["ordering"] == DEFAULT_ORDERING
    windows = bool(
        by_id
        and probed
        and probed.ordering is False
        and probed.honours("id__gte")
        and probed.honours("id__lt")
        and split_id_filters(query) is not None
    )
    return PagePlan(
        params=query,
        page_size=page_size,
        concurrency=concurrency,
        ordered_by_id=bool(by_id and probed and probed.honours("ordering")),
        max_passes=max_passes,
        id_windows=windows,
    )


def read(fetch: FetchPage, plan: PagePlan, stats: PagingStats) -> Generator[Page, None, None]:
    """Read a list as planned: by id windows (``plan.id_windows``) or by page number."""
    reader = read_id_windows if plan.id_windows else read_pages
    return reader(fetch, plan, stats)


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
        >>> import omsframe as of
        >>> with of.simulate(orders=20) as oms, of.Client(oms.url, token=oms.token) as client:
        ...     listing = client.orders(created_date__gte="2025-01-01", page_size=5)
        ...     for page in listing.pages():
        ...         print(page.number, len(page.records))
        1 5
        2 5
        3 1
        >>> listing.stats.complete
        True
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
            yield from read(self._fetch, self.plan, stats)
            return
        from tqdm.auto import tqdm

        with tqdm(desc=self.endpoint, unit=" records", total=None) as bar:
            for page in read(self._fetch, self.plan, stats):
                if page.count > (bar.total or 0):
                    bar.total = page.count
                    bar.refresh()
                bar.update(len(page.records))
                yield page

    def __repr__(self) -> str:
        return f"Listing({self.endpoint!r}, params={dict(self.plan.params)!r})"
