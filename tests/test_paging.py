"""Page planning, the ordered concurrent window, reconciliation and probing, without HTTP."""

from __future__ import annotations

import datetime as dt
import operator
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omsframe.errors import ServerError
from omsframe.paging import (
    EVENT_FILTERS,
    ORDER_FILTERS,
    Listing,
    PageBody,
    PagePlan,
    PagingStats,
    ProbeResult,
    filter_params,
    page_count,
    probe_filters,
    read_pages,
    to_utc_iso,
)

Record = dict[str, Any]


def pages_of(
    records: Callable[[int], list[Record]], *, delay: float = 0.0
) -> tuple[Callable[[Mapping[str, str]], PageBody | None], list[Mapping[str, str]]]:
    """A fetch function over ``records(page)`` (called per request, so data may change)."""
    calls: list[Mapping[str, str]] = []
    lock = threading.Lock()

    def fetch(params: Mapping[str, str]) -> PageBody | None:
        with lock:
            calls.append(dict(params))
        if delay:
            time.sleep(delay)
        number, limit = int(params["page"]), int(params["limit"])
        rows = records(number)
        if number > page_count(len(rows), limit):
            return None
        return {
            "count": len(rows),
            "next": None,
            "previous": None,
            "results": rows[(number - 1) * limit : number * limit],
        }

    return fetch, calls


def ids(n: int, start: int = 1) -> list[Record]:
    return [{"id": i} for i in range(start, start + n)]


# --- filters --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=3))),
            "2025-03-01T09:00:00Z",
        ),
        (dt.datetime(2025, 3, 1, 12, 0), "2025-03-01T12:00:00Z"),
        (dt.datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=dt.UTC), "2025-03-01T12:00:00.000005Z"),
        (dt.date(2025, 3, 1), "2025-03-01T00:00:00Z"),
        ("2025-03-01T12:00:00Z", "2025-03-01T12:00:00Z"),
        ("2025-03-01T12:00:00-05:00", "2025-03-01T17:00:00Z"),
        ("2025-03-01", "2025-03-01T00:00:00Z"),
    ],
)
def test_to_utc_iso(value: Any, expected: str) -> None:
    assert to_utc_iso(value) == expected


def test_to_utc_iso_refuses_what_is_not_a_date() -> None:
    with pytest.raises(ValueError, match="yesterday"):
        to_utc_iso("yesterday")


@given(
    st.datetimes(
        min_value=dt.datetime(1970, 1, 2),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.timezones(),
    )
)
@settings(max_examples=50)
def test_to_utc_iso_keeps_the_moment(moment: dt.datetime) -> None:
    text = to_utc_iso(moment)
    assert text.endswith("Z")
    assert dt.datetime.fromisoformat(text) == moment.astimezone(dt.UTC)  # (== fails in DST gaps)


def test_filter_params() -> None:
    params = filter_params(
        "orders",
        {"id__gt": 10, "channel": 3, "created_date__lte": dt.date(2025, 1, 2), "number": None},
        ORDER_FILTERS,
    )
    assert params == {"id__gt": "10", "channel": "3", "created_date__lte": "2025-01-02T00:00:00Z"}
    assert filter_params("events", {"delivered": False}, EVENT_FILTERS) == {"delivered": "false"}
    with pytest.raises(TypeError, match="delivered"):
        filter_params("orders", {"delivered": True}, ORDER_FILTERS)


# --- planning and the window ----------------------------------------------------------------
@given(st.integers(0, 10_000), st.integers(1, 500))
def test_page_count_covers_every_record(count: int, size: int) -> None:
    n = page_count(count, size)
    assert n >= 1 and (n - 1) * size < max(count, 1) <= n * size


def test_records_come_in_page_order_whatever_order_pages_finish_in() -> None:
    def records(number: int) -> list[Record]:
        time.sleep(0.004 * (7 - number % 7))  # later pages often finish first
        return ids(95)

    fetch, calls = pages_of(records)
    listing = Listing(
        "orders", fetch, PagePlan(params={"ordering": "id"}, page_size=10, concurrency=4)
    )
    assert [r["id"] for r in listing] == list(range(1, 96))
    assert calls[0]["page"] == "1" and len(calls) == 10
    assert all(c["ordering"] == "id" and c["limit"] == "10" for c in calls)


def test_the_window_never_holds_more_than_concurrency_pages() -> None:
    fetch, calls = pages_of(lambda n: ids(1000))
    pages = Listing("orders", fetch, PagePlan(params={}, page_size=10, concurrency=3)).pages()
    for expected in range(1, 6):
        assert next(pages).number == expected
        time.sleep(0.01)
        assert len(calls) <= expected + 3
    pages.close()


def test_an_empty_list_reads_one_page() -> None:
    fetch, calls = pages_of(lambda n: [])
    listing = Listing("orders", fetch, PagePlan(params={}))
    assert list(listing) == [] and len(calls) == 1 and listing.stats.complete


def test_a_capped_limit_sets_the_page_size() -> None:
    def fetch(params: Mapping[str, str]) -> PageBody | None:
        limit = min(int(params["limit"]), 7)
        number = int(params["page"])
        rows = ids(30)
        return {
            "count": 30,
            "next": None,
            "previous": None,
            "results": rows[(number - 1) * limit : number * limit],
        }

    listing = Listing("orders", fetch, PagePlan(params={}, page_size=20))
    assert [r["id"] for r in listing] == list(range(1, 31))
    assert listing.stats.pages == 5


def test_a_failing_page_raises_and_stops_the_window() -> None:
    def fetch(params: Mapping[str, str]) -> PageBody | None:
        if params["page"] == "3":
            raise ServerError(endpoint="orders", url="https://x/", status=503)
        return {
            "count": 100,
            "next": None,
            "previous": None,
            "results": ids(10, 10 * int(params["page"]) - 9),
        }

    seen: list[int] = []
    with pytest.raises(ServerError):
        for record in Listing("orders", fetch, PagePlan(params={}, page_size=10)):
            seen.append(record["id"])
    assert seen == list(range(1, 21))


# --- reconciliation -------------------------------------------------------------------------
def test_duplicates_are_dropped_and_counted() -> None:
    data = ids(30)

    def records(number: int) -> list[Record]:
        if number == 2:  # a new record sorts first: page 2 repeats one record of page 1
            data.insert(0, {"id": 0})
        return list(data)

    fetch, _ = pages_of(records)
    stats = PagingStats()
    pages = list(read_pages(fetch, PagePlan(params={}, page_size=10, concurrency=1), stats))
    out = [r["id"] for p in pages for r in p.records]
    assert sorted(out) == list(range(31))
    assert stats.duplicates >= 1 and pages[1].duplicates == 1
    assert stats.passes == 2  # the count changed and the order is not known to be stable


def test_records_without_id_are_kept() -> None:
    fetch, _ = pages_of(lambda n: [{"name": "a"}, {"name": "b"}])
    listing = Listing("delivery", fetch, PagePlan(params={}))
    assert len(list(listing)) == 2 and listing.stats.complete


def test_a_shrinking_list_is_read_again_and_vanished_pages_are_quiet() -> None:
    data = ids(50)
    lock = threading.Lock()

    def records(number: int) -> list[Record]:
        with lock:
            if number >= 2 and len(data) == 50:
                del data[:25]  # half the list goes after page 1: page 4 is gone
            return list(data)

    fetch, _ = pages_of(records)
    stats = PagingStats()
    plan = PagePlan(params={}, page_size=10, concurrency=3)
    out = [r["id"] for p in read_pages(fetch, plan, stats) for r in p.records]
    # 1..10 were handed out before they went, 11..25 went unseen, 26..35 came in the re-read
    assert sorted(out) == [*range(1, 11), *range(26, 51)]
    assert stats.vanished_pages == 1 and stats.passes == 2 and stats.complete


def test_an_ever_changing_list_stops_after_max_passes_and_says_so() -> None:
    data = ids(20)

    def records(number: int) -> list[Record]:
        data.append({"id": len(data) + 1})
        return list(data)

    fetch, _ = pages_of(records)
    stats = PagingStats()
    list(read_pages(fetch, PagePlan(params={}, page_size=10, concurrency=1, max_passes=3), stats))
    assert stats.passes == 3 and not stats.settled and not stats.complete


def test_growth_needs_no_second_pass_when_ordering_by_id_is_known() -> None:
    data = ids(20)

    def records(number: int) -> list[Record]:
        if number == 2 and len(data) == 20:
            data.extend(ids(5, start=21))
        return list(data)

    fetch, _ = pages_of(records)
    stats = PagingStats()
    plan = PagePlan(params={}, page_size=10, concurrency=1, ordered_by_id=True)
    out = [r["id"] for p in read_pages(fetch, plan, stats) for r in p.records]
    assert out == list(range(1, 26)) and stats.passes == 1 and stats.complete


def test_an_older_smaller_count_does_not_pull_the_end_back() -> None:
    # Pages 2 and 3 are in flight together; page 2 is served after an order arrived (31: four
    # pages) and finishes last, page 3 before it arrived (30: three pages).
    def records(number: int) -> list[Record]:
        if number == 2:
            time.sleep(0.03)
            return ids(31)
        return ids(30) if number in (1, 3) else ids(31)

    fetch, _ = pages_of(records)
    stats = PagingStats()
    plan = PagePlan(params={}, page_size=10, concurrency=3, ordered_by_id=True)
    out = [r["id"] for p in read_pages(fetch, plan, stats) for r in p.records]
    assert out == list(range(1, 32))
    assert stats.passes == 1 and stats.count == 31 and stats.complete


def test_stats_are_fresh_for_each_iteration() -> None:
    fetch, _ = pages_of(lambda n: ids(15))
    listing = Listing("orders", fetch, PagePlan(params={}, page_size=10))
    list(listing)
    list(listing)
    assert listing.stats.pages == 2 and listing.stats.records == 15


# --- probe ----------------------------------------------------------------------------------
def stamped(n: int) -> list[Record]:
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return [
        {
            "id": 10 * i,
            "created_date": (base + dt.timedelta(days=i)).isoformat().replace("+00:00", "Z"),
        }
        for i in range(1, n + 1)
    ]


def value_of(record: Record, field_name: str) -> Any:
    value = record[field_name]
    return value if field_name == "id" else dt.datetime.fromisoformat(value)


def fake_server(
    records: list[Record], *, ordering: bool, filters: bool
) -> Callable[[Mapping[str, str]], PageBody | None]:
    compare = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}

    def fetch(params: Mapping[str, str]) -> PageBody | None:
        rows = list(records)
        for name, value in params.items():
            field_name, _, op = name.rpartition("__")
            if filters and op in compare:
                pivot = value_of(
                    {field_name: int(value) if field_name == "id" else value}, field_name
                )
                rows = [r for r in rows if compare[op](value_of(r, field_name), pivot)]
        if ordering:
            rows.sort(key=lambda r: r["id"], reverse=params.get("ordering", "id").startswith("-"))
        limit = int(params["limit"])
        return {"count": len(rows), "next": None, "previous": None, "results": rows[:limit]}

    return fetch


NAMES = ("created_date__gte", "created_date__lte", "id__gt", "id__gte", "id__lt", "id__lte")


@pytest.mark.parametrize(
    ("ordering", "filters"), [(True, True), (False, True), (True, False), (False, False)]
)
def test_probe_tells_what_is_honoured(ordering: bool, filters: bool) -> None:
    result = probe_filters(
        "orders", fake_server(stamped(40), ordering=ordering, filters=filters), NAMES
    )
    assert result.ordering is ordering
    assert dict(result.filters) == dict.fromkeys(NAMES, filters)
    assert result.count == 40 and result.requests == 2 + len(NAMES)


def test_probe_with_too_few_records_cannot_tell() -> None:
    result = probe_filters("orders", fake_server(stamped(1), ordering=True, filters=True), NAMES)
    assert result.ordering is None and set(result.filters.values()) == {None}


def test_probe_result_round_trips_through_json() -> None:
    result = ProbeResult(
        "orders", 12, True, {"id__gt": True, "created_date__gte": None}, requests=8
    )
    data = orjson.loads(orjson.dumps(result.to_dict()))
    assert ProbeResult.from_dict(data) == result
    assert result.honours("ordering") and not result.honours("created_date__gte")
    with pytest.raises(AttributeError):
        result.count = 3  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(-5, 60),
                st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**70]),
                st.text(max_size=2),
            ),
            max_size=12,
        ),
        max_size=25,
    )
)
def test_the_ids_seen_answer_like_a_set(pages: list[list[object]]) -> None:
    from omsframe import reconcile

    ids, truth = reconcile.IdSet(), set[object]()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reconcile, "_MERGE_AT", 3)  # into the sorted ids often
        for keys in pages:
            expected = []
            for key in keys:
                expected.append(key not in truth)
                truth.add(key)
            assert ids.add_all(keys) == expected
            assert len(ids) == len(truth)
