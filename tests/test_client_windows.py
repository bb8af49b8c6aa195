"""Reading by id windows: for servers that ignore ``ordering`` but honour the id filters.

First without HTTP (a fake server over a list of ids), then against the simulator over
loopback HTTP with a shop that moves while it is read.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omsframe.client import Client
from omsframe.config import RetryPolicy
from omsframe.paging import Listing, PageBody, PagePlan, PagingStats, ProbeResult, plan_read
from omsframe.simulator.server import Clock, Dialect, SimulatorServer, serve
from omsframe.simulator.world import World, from_us
from omsframe.windows import FILL, Window, read_id_windows, split_id_filters
from tests.fakes import clear_environment

Record = dict[str, Any]
Fetch = Callable[[Mapping[str, str]], PageBody | None]
WINDOWS = ProbeResult("orders", 1000, False, {"id__gte": True, "id__lt": True})


@pytest.fixture(autouse=True)
def _no_omsframe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)


def id_server(
    ids: list[int], *, max_limit: int = 1000, seed: int = 0, delay: float = 0.0
) -> tuple[Fetch, list[dict[str, str]]]:
    """Honours ``id__gte``/``id__lt``, ignores ``ordering``: each answer in a random order."""
    calls: list[dict[str, str]] = []
    lock = threading.Lock()
    rng = random.Random(seed)

    def fetch(params: Mapping[str, str]) -> PageBody | None:
        low = int(params.get("id__gte", -(10**18)))
        high = int(params.get("id__lt", 10**18))
        rows = [{"id": i} for i in ids if low <= i < high]
        with lock:
            calls.append(dict(params))
            rng.shuffle(rows)
        if delay:
            time.sleep(delay)
        limit = min(int(params["limit"]), max_limit)
        return {"count": len(rows), "next": None, "previous": None, "results": rows[:limit]}

    return fetch, calls


def read_all(fetch: Fetch, **plan: Any) -> tuple[list[int], PagingStats]:
    stats = PagingStats()
    pages = read_id_windows(fetch, PagePlan(params=plan.pop("params", {}), **plan), stats)
    return [r["id"] for page in pages for r in page.records], stats


# --- without HTTP ---------------------------------------------------------------------------
@given(
    ids=st.sets(st.integers(1, 5000), max_size=400),
    page_size=st.integers(1, 60),
    concurrency=st.integers(1, 5),
    seed=st.integers(0, 99),
)
@settings(max_examples=60, deadline=None)
def test_every_id_comes_once_in_order_whatever_the_server_order(
    ids: set[int], page_size: int, concurrency: int, seed: int
) -> None:
    fetch, calls = id_server(sorted(ids), seed=seed)
    got, stats = read_all(fetch, page_size=page_size, concurrency=concurrency)
    assert got == sorted(ids)
    assert stats.complete and stats.passes == 1 and stats.count == len(ids)
    assert stats.pages == len(calls)
    assert all(c["page"] == "1" for c in calls)


def test_a_list_that_fits_in_one_page_is_one_request() -> None:
    fetch, calls = id_server(list(range(1, 51)))
    got, stats = read_all(fetch, page_size=100)
    assert got == list(range(1, 51)) and len(calls) == 1 and stats.complete


def test_evenly_spread_ids_need_few_more_requests_than_pages() -> None:
    fetch, calls = id_server(list(range(1, 10_001)), seed=1)
    got, stats = read_all(fetch, page_size=100, concurrency=4)
    assert got == list(range(1, 10_001)) and stats.splits <= 2
    # 3 to find the range, then windows planned FILL-full
    assert len(calls) <= 3 + 10_000 / (100 * FILL) * 1.1
    assert all(int(c["limit"]) in (1, 100) for c in calls)


def test_clumps_of_ids_are_split_until_each_window_fits() -> None:
    ids = [*range(1, 301), *range(1_000_000, 1_000_500), 5_000_000]
    fetch, _ = id_server(ids, seed=2)
    got, stats = read_all(fetch, page_size=50, concurrency=3)
    assert got == ids and stats.splits > 0 and stats.complete


def test_the_callers_id_filters_bound_the_windows() -> None:
    fetch, calls = id_server(list(range(1, 2001)))
    params = {"id__gt": "100", "id__lte": "1500", "ordering": "id", "channel": "2"}
    got, stats = read_all(fetch, page_size=40, params=params)
    assert got == list(range(101, 1501)) and stats.complete
    for call in calls:
        assert int(call.get("id__gte", 101)) >= 101 and int(call.get("id__lt", 1501)) <= 1501
        assert call["channel"] == "2" and "id__gt" not in call and "id__lte" not in call


def test_a_server_capping_limit_is_still_read_whole() -> None:
    fetch, calls = id_server(list(range(1, 801)), max_limit=30)
    got, stats = read_all(fetch, page_size=100)
    assert got == list(range(1, 801)) and stats.complete
    assert len(calls) < 3 + 800 / (30 * FILL) * 1.3


def test_no_more_than_concurrency_windows_are_held() -> None:
    fetch, calls = id_server(list(range(1, 5001)), delay=0.002)
    pages = read_id_windows(fetch, PagePlan(params={}, page_size=50, concurrency=3), PagingStats())
    for _ in range(5):
        next(pages)
        time.sleep(0.02)
        assert len(calls) <= 3 + 5 + 3
    pages.close()


def test_a_window_that_cannot_be_split_is_reported_missing() -> None:
    # A broken server: id 7 counts three records but sends one.
    def fetch(params: Mapping[str, str]) -> PageBody | None:
        low = int(params.get("id__gte", 0))
        high = int(params.get("id__lt", 100))
        rows = [{"id": i} for i in range(1, 21) if low <= i < high]
        extra = 2 if low <= 7 < high else 0
        limit = int(params["limit"])
        return {"count": len(rows) + extra, "next": None, "previous": None, "results": rows[:limit]}

    got, stats = read_all(fetch, page_size=5)
    assert got == list(range(1, 21))
    assert stats.missing == 2 and not stats.complete


def test_split_id_filters() -> None:
    assert split_id_filters({"id__gte": "3", "id__gt": "4", "id__lt": "9", "id__lte": "5"}) == (
        {},
        Window(5, 6),
    )
    assert split_id_filters({"ordering": "id"}) == ({"ordering": "id"}, Window(None, None))
    assert split_id_filters({"id__gt": "x"}) is None


@pytest.mark.parametrize(
    ("probed", "params", "windows"),
    [
        (WINDOWS, {}, True),
        (WINDOWS, {"ordering": "id", "id__gt": "10"}, True),
        (WINDOWS, {"ordering": "-modified_date"}, False),  # not what windows hand out
        (WINDOWS, {"id__gt": "ten"}, False),
        (ProbeResult("orders", 1000, True, {"id__gte": True, "id__lt": True}), {}, False),
        (ProbeResult("orders", 1000, False, {"id__gte": True}), {}, False),
        (ProbeResult("orders", 3, None, {"id__gte": None, "id__lt": None}), {}, False),
        (None, {}, False),
    ],
)
def test_windows_are_planned_only_when_the_probe_says_they_help(
    probed: ProbeResult | None, params: dict[str, str], windows: bool
) -> None:
    plan = plan_read(params, page_size=100, concurrency=4, max_passes=2, probed=probed)
    assert plan.id_windows is windows


def test_a_listing_reads_by_windows_when_planned() -> None:
    fetch, calls = id_server(list(range(1, 301)))
    plan = plan_read({}, page_size=20, concurrency=2, max_passes=2, probed=WINDOWS)
    listing = Listing("orders", fetch, plan)
    assert [r["id"] for r in listing] == list(range(1, 301))
    assert all("id__gte" in c or "id__lt" in c for c in calls[1:])


# --- against the simulator, while the shop moves --------------------------------------------
def client_for(server: SimulatorServer, **options: Any) -> Client:
    retry = RetryPolicy(max_attempts=5, backoff_initial=0.001, backoff_max=0.02)
    return Client(server.url, token=server.token, retry=retry, timeout=10, **options)


@pytest.mark.parametrize("default_ordering", ["modified_date", "-modified_date"])
def test_every_order_visible_at_the_start_arrives_once_in_id_order(default_ordering: str) -> None:
    # a busy fortnight, half an hour of shop time per request: orders arrive and change
    world = World.generate(seed=8, orders=500, start=dt.date(2025, 3, 1), end=dt.date(2025, 3, 15))
    start = from_us((world.start_us + world.end_us) // 2)
    clock = Clock(start=start, step_per_request=dt.timedelta(minutes=30))
    dialect = Dialect(honour_ordering=False, default_ordering=default_ordering)
    with serve(world, dialect=dialect, clock=clock) as server:
        with client_for(server, page_size=10, concurrency=3) as oms:
            probed = oms.probe()
            start_us = server.now_us
            listing = oms.orders(probed=probed)
            ids = [o["id"] for o in listing]
        end_us = server.now_us
    at_start = [int(i) for i in world.order_id[: world.visible_orders(start_us)]]
    at_end = [int(i) for i in world.order_id[: world.visible_orders(end_us)]]
    assert listing.plan.id_windows and not probed.honours("ordering")
    assert ids == sorted(set(ids)), "not in id order, or an order came twice"
    assert set(at_start) <= set(ids), f"lost: {sorted(set(at_start) - set(ids))[:10]}"
    assert set(ids) <= set(at_end) and len(at_end) > len(at_start)  # the shop did move
    assert listing.stats.complete and listing.stats.passes == 1


def test_webhook_events_are_read_by_windows_too() -> None:
    world = World.generate(seed=9, orders=200, start=dt.date(2025, 3, 1), end=dt.date(2025, 3, 8))
    start = from_us((world.start_us + world.end_us) // 2)
    clock = Clock(start=start, step_per_request=dt.timedelta(minutes=20))
    dialect = Dialect(honour_ordering=False, default_ordering="-modified_date")
    with (
        serve(world, dialect=dialect, clock=clock) as server,
        client_for(server, page_size=25, concurrency=4) as oms,
    ):
        probed = oms.probe("webhook_events")
        visible = world.visible_events(server.now_us)
        listing = oms.webhook_events_short(probed=probed)
        ids = [e["id"] for e in listing]
    assert listing.plan.id_windows
    assert ids == sorted(set(ids)) and set(range(1, visible + 1)) <= set(ids)  # id = index + 1
    assert listing.stats.complete
