"""What the doctests find in their namespace: ``of`` and ``tables``, a small simulated shop.

The examples of :mod:`omsframe.analysis` and :mod:`omsframe.charts` read like user code,
``of.revenue(tables, by="week")``, where a user would first ``tables = of.load("data/demo")``.
Here ``tables`` are the tables of a cache synced once per session (per xdist worker) from the
simulator: 300 orders from October 2024 to mid-January 2025, so 11.11 and Black Friday are in.
The same seed gives the same shop, so the examples' outputs are stable (customer ids are
pseudonymized with the cache's own key, so examples never print them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import omsframe as of

DOCTEST_SHOP: dict[str, Any] = {
    "orders": 300,
    "seed": 11,
    "start": dt.date(2024, 10, 1),
    "end": dt.date(2025, 1, 15),
}


def _runs_doctests(session: pytest.Session) -> bool:
    """Whether the session collected any doctest (else the shop is not worth syncing)."""
    return any(type(item).__name__ == "DoctestItem" for item in session.items)


@pytest.fixture(scope="session", autouse=True)
def _doctest_tables(
    request: pytest.FixtureRequest,
    doctest_namespace: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Put ``of`` and ``tables`` (the simulated shop, loaded) into the doctest namespace."""
    doctest_namespace["of"] = of
    if not _runs_doctests(request.session):
        return
    cache = tmp_path_factory.mktemp("doctest-shop")
    with of.simulate(**DOCTEST_SHOP) as oms:
        of.sync(oms.url, token=oms.token, cache=cache, progress=False)
    doctest_namespace["tables"] = of.load(cache)
