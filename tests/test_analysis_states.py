"""States, lifecycles, lead times, return rates and webhook health, against the world's truth.

The truth walks the simulator's arrays: each order's transitions up to the shop's clock,
single-item changes, the webhook events' delivery status. A second, smaller shop is synced
several times without events, so its state history is the only record of its changes.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pandas as pd
import polars as pl
import pytest

from omsframe.analysis import (
    AnalysisError,
    funnel,
    lead_time_summary,
    lead_times,
    return_rates,
    state_changes,
    state_counts,
    time_in_state,
    transitions,
    webhook_health,
)
from omsframe.load import Tables, load
from omsframe.simulator import catalogue as cat
from omsframe.simulator.server import Clock, serve
from omsframe.simulator.world import DAY, EVENT_TYPES, World, from_us
from omsframe.sync import sync
from tests.test_analysis_shop import (
    ENGINES,
    ZONES,
    Shop,
    day_of,
    local_day,
    period_of,
    records,
)

HOUR_US = 3_600_000_000
SHIPPED = {"500", "510", "520"}


@dataclass(frozen=True)
class Order:
    """One order of the world as it stands at the shop's clock."""

    order_id: int
    placed: dt.datetime
    channel: str
    payment_type: str
    delivery_type: str
    cargo_company: int
    city: str
    steps: tuple[tuple[int, str], ...]  # (time in microseconds, state code) reached by now
    items: tuple[str, ...]  # each item's current state code

    @property
    def state(self) -> str:
        return self.steps[-1][1]

    def first(self, codes: set[str]) -> int | None:
        return next((t for t, s in self.steps if s in codes), None)


def orders_of(world: World, now_us: int) -> list[Order]:
    """Every order visible at ``now_us``, straight from the world's arrays."""
    orders = []
    for i in range(world.visible_orders(now_us)):
        steps = tuple((t, str(s)) for t, s in world.order_transitions(i, now_us))
        items = []
        for k in range(int(world.item_ptr[i]), int(world.item_ptr[i + 1])):
            own = int(world.item_change_time[k])
            own_state = str(int(world.item_change_state[k]))
            items.append(own_state if 0 <= own <= now_us else steps[-1][1])
        place = world.places[int(world.address_place[int(world.order_shipping[i])])]
        orders.append(
            Order(
                order_id=int(world.order_id[i]),
                placed=from_us(int(world.order_placed[i])),
                channel=cat.CHANNELS[int(world.order_channel[i])].name,
                payment_type=cat.PAYMENT_TYPES[int(world.order_payment[i])][0],
                delivery_type=cat.DELIVERY_TYPES[int(world.order_delivery[i])][0],
                cargo_company=int(world.order_cargo[i]),
                city=place.city,
                steps=steps,
                items=tuple(items),
            )
        )
    return orders


def nearest_rank(values: list[int], p: int) -> int:
    ordered = sorted(values)
    return ordered[(p * len(ordered) + 99) // 100 - 1]


def hours(us: int) -> float:
    return us * (1 / HOUR_US)  # as the analyses compute it: the same in pandas and polars


@pytest.fixture(scope="module")
def orders(shop: Shop) -> list[Order]:
    return orders_of(shop.world, shop.now_us)


# --- where the orders are ---------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_state_counts_of_orders_and_items_are_the_worlds(
    shop: Shop, orders: list[Order], engine: str
) -> None:
    tz = ZONES[1]
    rows = records(state_counts(shop.tables[engine], by="month", dims=["channel"], tz=tz))
    expected = Counter((period_of(o.placed, tz, "month"), o.channel, o.state) for o in orders)
    got = {(day_of(r["period"]), r["channel"], r["state_code"]): r["count"] for r in rows}
    assert got == expected
    for r in rows:
        group = sum(n for k, n in expected.items() if k[:2] == (day_of(r["period"]), r["channel"]))
        assert r["share"] == r["count"] / group
    assert {r["state_name"] for r in rows if r["state_code"] == "550"} == {"Delivered"}
    items = records(state_counts(shop.tables[engine], of="items"))
    assert {r["state_code"]: r["count"] for r in items} == Counter(
        s for o in orders for s in o.items
    )
    assert sum(r["share"] for r in items) == pytest.approx(1.0)


def test_state_counts_sort_codes_as_numbers(shop: Shop) -> None:
    codes = [r["state_code"] for r in records(state_counts(shop.tables["polars"]))]
    assert codes == sorted(codes, key=int)


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("engine", ENGINES)
def test_funnel_counts_the_orders_placed_that_reached_each_stage(
    shop: Shop, orders: list[Order], engine: str, tz: str
) -> None:
    rows = records(funnel(shop.tables[engine], by="month", dims=["payment_type"], tz=tz))
    stages = {
        "approved": lambda states: "400" in states,
        "shipped": lambda states: bool(SHIPPED & states),
        "delivered": lambda states: "550" in states,
        "cancelled": lambda states: "100" in states,
        "refunded": lambda states: "600" in states,
    }
    expected: dict[tuple[Any, ...], Counter[str]] = defaultdict(Counter)
    for o in orders:
        states = {s for _, s in o.steps}
        counts = expected[period_of(o.placed, tz, "month"), o.payment_type]
        counts["orders"] += 1
        for stage, reached in stages.items():
            counts[stage] += reached(states)
    assert len(rows) == len(expected)
    for r in rows:
        counts = expected[day_of(r["period"]), r["payment_type"]]
        assert {k: r[k] for k in ("orders", *stages)} == {k: counts[k] for k in ("orders", *stages)}
        for stage in stages:
            assert r[f"{stage}_share"] == counts[stage] / counts["orders"]
    assert sum(r["cancelled"] for r in rows) > 0 and sum(r["refunded"] for r in rows) > 0


# --- how orders move --------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_transitions_from_events_are_the_worlds_state_changes(
    shop: Shop, orders: list[Order], engine: str
) -> None:
    rows = records(transitions(shop.tables[engine], source="events"))
    expected: Counter[tuple[str | None, str]] = Counter()
    for o in orders:
        previous: str | None = None
        for _, state in o.steps:
            expected[previous, state] += 1
            previous = state
    assert {(r["from_state_code"], r["to_state_code"]): r["changes"] for r in rows} == expected
    assert all(r["orders"] == r["changes"] for r in rows)  # no order repeats a change here
    names = {(r["from_state_code"], r["to_state_code"]): r["to_state_name"] for r in rows}
    assert names["450", "500"] == "Shipped"
    assert names[None, "200"] == "Waiting"  # from the events' own state names
    assert records(transitions(shop.tables[engine])) == rows  # auto: every order has events


@pytest.mark.parametrize("engine", ENGINES)
def test_state_changes_time_each_stay_to_the_microsecond(
    shop: Shop, orders: list[Order], engine: str
) -> None:
    rows = records(state_changes(shop.tables[engine]))
    got: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for r in rows:
        got[r["order_id"]].append((r["to_state_code"], r["changed_at"], r["left_at"]))
        assert r["source"] == "events"
    for o in orders:
        times = [from_us(t) for t, _ in o.steps]
        expected = [
            (s, times[k], times[k + 1] if k + 1 < len(times) else None)
            for k, (_, s) in enumerate(o.steps)
        ]
        assert got[o.order_id] == expected
    stays = [r for r in rows if r["left_at"] is not None]
    assert all(
        r["hours_in_state"]
        == hours((r["left_at"] - r["changed_at"]) // dt.timedelta(microseconds=1))
        for r in stays
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_time_in_state_is_the_nearest_rank_of_the_worlds_stays(
    shop: Shop, orders: list[Order], engine: str
) -> None:
    rows = records(time_in_state(shop.tables[engine], dims=["delivery_type"]))
    stays: dict[tuple[str, str], list[int]] = defaultdict(list)
    still: Counter[tuple[str, str]] = Counter()
    for o in orders:
        for (t, s), (t_next, _) in zip(o.steps, o.steps[1:], strict=False):
            stays[s, o.delivery_type].append(t_next - t)
        still[o.state, o.delivery_type] += 1
    assert {(r["state_code"], r["delivery_type"]) for r in rows} == set(stays) | set(still)
    for r in rows:
        key = (r["state_code"], r["delivery_type"])
        assert (r["stays"], r["open"]) == (len(stays[key]), still[key])
        if not stays[key]:
            assert r["p50_hours"] is None and r["mean_hours"] is None
            continue
        for p in (50, 90, 99):
            assert r[f"p{p}_hours"] == hours(nearest_rank(stays[key], p))
        assert r["mean_hours"] == pytest.approx(hours(sum(stays[key])) / len(stays[key]))


def test_time_in_state_takes_any_percentiles(shop: Shop) -> None:
    rows = records(time_in_state(shop.tables["polars"], percentiles=(25, 100)))
    approved = next(r for r in rows if r["state_code"] == "400")
    assert approved["p25_hours"] <= approved["p100_hours"]
    assert "p50_hours" not in approved
    with pytest.raises(AnalysisError, match="percentiles"):
        time_in_state(shop.tables["polars"], percentiles=(0,))


# --- lead times -------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_lead_times_per_order_are_the_worlds(shop: Shop, orders: list[Order], engine: str) -> None:
    rows = {r["order_id"]: r for r in records(lead_times(shop.tables[engine]))}
    assert len(rows) == len(orders)
    for o in orders:
        r = rows[o.order_id]
        placed = int(shop.world.order_placed[shop.world.index_of_order_id[o.order_id]])
        shipped, delivered = o.first(SHIPPED), o.first({"550"})
        assert (r["channel"], r["delivery_type"]) == (o.channel, o.delivery_type)
        assert (r["cargo_company"], r["city"]) == (o.cargo_company, o.city)
        assert r["shipped_at"] == (from_us(shipped) if shipped else None)
        assert r["delivered_at"] == (from_us(delivered) if delivered else None)
        assert r["placed_to_shipped_hours"] == (hours(shipped - placed) if shipped else None)
        both = shipped is not None and delivered is not None
        assert r["shipped_to_delivered_hours"] == (
            hours(delivered - shipped) if both else None  # type: ignore[operator]
        )


@pytest.mark.parametrize("dim", ["channel", "cargo_company", "city"])
@pytest.mark.parametrize("engine", ENGINES)
def test_lead_time_percentiles_by_dimension(
    shop: Shop, orders: list[Order], engine: str, dim: str
) -> None:
    rows = records(lead_time_summary(lead_times(shop.tables[engine]), dims=[dim]))
    legs: dict[tuple[Any, str], list[int]] = defaultdict(list)
    world = shop.world
    for o in orders:
        placed = int(world.order_placed[world.index_of_order_id[o.order_id]])
        shipped, delivered = o.first(SHIPPED), o.first({"550"})
        if shipped is not None:
            legs[getattr(o, dim), "placed_to_shipped"].append(shipped - placed)
        if shipped is not None and delivered is not None:
            legs[getattr(o, dim), "shipped_to_delivered"].append(delivered - shipped)
        if delivered is not None:
            legs[getattr(o, dim), "placed_to_delivered"].append(delivered - placed)
    assert {(r[dim], r["leg"]) for r in rows} == set(legs)
    for r in rows:
        values = legs[r[dim], r["leg"]]
        assert r["orders"] == len(values)
        assert [r[f"p{p}_hours"] for p in (50, 90, 99)] == [
            hours(nearest_rank(values, p)) for p in (50, 90, 99)
        ]
        assert r["mean_hours"] == pytest.approx(hours(sum(values)) / len(values))


def test_lead_time_summary_takes_the_tables_too(shop: Shop) -> None:
    whole = records(lead_time_summary(shop.tables["pandas"], dims=["delivery_type"]))
    per_order = lead_times(shop.tables["pandas"], dims=["delivery_type"])
    assert whole == records(lead_time_summary(per_order, dims=["delivery_type"]))
    assert [r["leg"] for r in whole[:3]] == [
        "placed_to_shipped",
        "shipped_to_delivered",
        "placed_to_delivered",
    ]


# --- cancellation and refund rates ------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_return_rates_by_weekday_and_hour_follow_every_unit_sold(shop: Shop, engine: str) -> None:
    tz = ZONES[1]
    rows = records(return_rates(shop.tables[engine], dims=["weekday", "hour"], tz=tz))
    fate = {u.item_id: u.kind for u in shop.truth if u.kind != "sale"}
    expected: dict[tuple[int, int], Counter[str]] = defaultdict(Counter)
    order_fates: dict[tuple[int, int], dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for u in shop.truth:
        if u.kind != "sale":
            continue
        local = u.at.astimezone(pd.Timestamp(0, tz=tz).tzinfo)
        key = (local.isoweekday(), local.hour)
        expected[key]["units"] += 1
        expected[key][fate.get(u.item_id, "kept")] += 1
        order_fates[key]["orders"].add(u.order_id)
        order_fates[key][fate.get(u.item_id, "kept")].add(u.order_id)
    assert {(r["weekday"], r["hour"]) for r in rows} == set(expected)
    for r in rows:
        key = (r["weekday"], r["hour"])
        counts, fates = expected[key], order_fates[key]
        assert (r["units"], r["units_cancelled"], r["units_refunded"]) == (
            counts["units"],
            counts["cancellation"],
            counts["refund"],
        )
        assert (r["orders"], r["orders_cancelled"], r["orders_refunded"]) == (
            len(fates["orders"]),
            len(fates["cancellation"]),
            len(fates["refund"]),
        )
        assert r["cancel_rate"] == counts["cancellation"] / counts["units"]
        assert r["order_refund_rate"] == len(fates["refund"]) / len(fates["orders"])


def test_return_rates_by_payment_type_and_month(shop: Shop, orders: list[Order]) -> None:
    rows = records(return_rates(shop.tables["polars"], dims=["payment_type"], by="month"))
    payment = {o.order_id: o.payment_type for o in orders}
    fate = {u.item_id: u.kind for u in shop.truth if u.kind != "sale"}
    sold: Counter[tuple[Any, str]] = Counter()
    cancelled: Counter[tuple[Any, str]] = Counter()
    for u in shop.truth:
        if u.kind == "sale":
            key = (period_of(u.at, ZONES[1], "month"), payment[u.order_id])
            sold[key] += 1
            cancelled[key] += fate.get(u.item_id) == "cancellation"
    assert {(day_of(r["period"]), r["payment_type"]): r["units"] for r in rows} == sold
    assert {
        (day_of(r["period"]), r["payment_type"]): r["units_cancelled"] for r in rows
    } == cancelled


# --- webhook delivery health ------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_webhook_health_counts_deliveries_and_retries_of_the_worlds_events(
    shop: Shop, engine: str
) -> None:
    tz = ZONES[0]
    rows = records(webhook_health(shop.tables[engine], by="day", dims=["event_type"], tz=tz))
    world = shop.world
    _, retries, delivered = world.event_status(shop.now_us)
    expected: dict[tuple[Any, str], Counter[str]] = defaultdict(Counter)
    for e in range(world.visible_events(shop.now_us)):
        key = (local_day(from_us(int(world.event_time[e])), tz), EVENT_TYPES[world.event_kind[e]])
        expected[key]["events"] += 1
        expected[key]["delivered"] += bool(delivered[e])
        expected[key]["retried"] += int(retries[e]) > 0
        expected[key]["retries"] += int(retries[e])
        expected[key]["attempts"] += int(retries[e]) + 1
    assert {(day_of(r["period"]), r["event_type"]) for r in rows} == set(expected)
    for r in rows:
        counts = expected[day_of(r["period"]), r["event_type"]]
        for column in ("events", "delivered", "retried", "retries", "attempts"):
            assert r[column] == counts[column], column
        assert r["failed"] == counts["events"] - counts["delivered"]
        assert r["failed_attempts"] == counts["attempts"] - counts["delivered"]
        assert r["delivery_rate"] == counts["delivered"] / counts["events"]
    assert sum(r["failed"] for r in rows) > 0 and sum(r["retries"] for r in rows) > 0


# --- the state history: transitions where there are no events ---------------------------------
@dataclass
class HistoryShop:
    """A shop synced several times without events: its state history is all there is."""

    world: World
    moments: list[int]
    tables: dict[str, Tables]


@pytest.fixture(scope="module")
def history_shop(tmp_path_factory: pytest.TempPathFactory) -> HistoryShop:
    root = tmp_path_factory.mktemp("history")
    world = World.generate(
        seed=5, orders=300, start=dt.date(2024, 11, 1), end=dt.date(2024, 12, 20)
    )
    moments = [world.end_us - k * DAY for k in (36, 30, 24, 18, 12, 6, 3, 0)]
    with serve(world, clock=Clock(start=from_us(moments[0]))) as oms:
        for k, moment in enumerate(moments):
            if k:
                oms.advance(dt.timedelta(microseconds=moment - moments[k - 1]))
            assert oms.now_us == moment
            sync(oms.url, token=oms.token, cache=root, progress=False, events=False)
    tables: dict[str, Tables] = {engine: load(root, engine=engine) for engine in ENGINES}
    return HistoryShop(world, moments, tables)


def observed(shop: HistoryShop) -> dict[int, list[tuple[str | None, str, dt.datetime]]]:
    """Per order: the (from, to, changed_at) changes the syncs saw, from the world."""
    seen: dict[int, list[tuple[str | None, str, dt.datetime]]] = defaultdict(list)
    for moment in shop.moments:
        states, modified = shop.world.order_status(moment)
        for i in range(len(states)):
            order_id, state = int(shop.world.order_id[i]), str(int(states[i]))
            changes = seen[order_id]
            before = changes[-1][1] if changes else None
            if not changes or before != state:
                changes.append((before, state, from_us(int(modified[i]))))
    return seen


@pytest.mark.parametrize("engine", ENGINES)
def test_transitions_from_the_state_history_are_what_the_syncs_saw(
    history_shop: HistoryShop, engine: str
) -> None:
    tables = history_shop.tables[engine]
    assert "events" not in tables or len(tables["events"]) == 0
    seen = observed(history_shop)
    expected = Counter((f, t) for changes in seen.values() for f, t, _ in changes)
    rows = records(transitions(tables))  # auto: no events, so the state history
    assert {(r["from_state_code"], r["to_state_code"]): r["changes"] for r in rows} == expected
    assert any(r["from_state_code"] is not None for r in rows)
    changes = records(state_changes(tables))
    assert {r["source"] for r in changes} == {"history"}
    by_order: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for r in changes:
        by_order[r["order_id"]].append((r["from_state_code"], r["to_state_code"], r["changed_at"]))
    assert by_order == seen


def test_the_funnel_reads_the_state_history_too(history_shop: HistoryShop) -> None:
    seen = observed(history_shop)
    rows = records(funnel(history_shop.tables["polars"], by=None))
    states = {order_id: {t for _, t, _ in changes} for order_id, changes in seen.items()}
    delivered = sum(bool({"550", "600"} & s) for s in states.values())
    assert rows[0]["orders"] == len(states)
    assert rows[0]["delivered"] == delivered
    shipped = {"500", "510", "520", "540", "544", "545", "550", "600"}
    assert rows[0]["shipped"] == sum(bool(shipped & s) for s in states.values())


def test_auto_takes_events_where_an_order_has_them_and_the_history_elsewhere(
    shop: Shop, engine: str = "polars"
) -> None:
    tables = dict(shop.tables[engine].items())
    announced = set(tables["orders"]["order_id"].to_list()[::2])
    tables["events"] = tables["events"].filter(pl.col("order_id").is_in(announced))
    rows = records(state_changes(tables))
    sources: dict[int, set[str]] = defaultdict(set)
    for r in rows:
        sources[r["order_id"]].add(r["source"])
    assert all(s == ({"events"} if o in announced else {"history"}) for o, s in sources.items())
    assert len(sources) == len(shop.tables[engine]["orders"])
    only_events = records(state_changes(tables, source="events"))
    assert {r["order_id"] for r in only_events} == announced


# --- every helper: same answer on both engines, inputs untouched, clear errors -----------------
HELPERS: dict[str, Any] = {
    "state_counts": lambda t: state_counts(t, of="items", by="week", dims=["channel", "sku"]),
    "funnel": lambda t: funnel(t, by="week", dims=["channel", "city"]),
    "state_changes": state_changes,
    "transitions": transitions,
    "time_in_state": lambda t: time_in_state(t, dims=["channel"]),
    "lead_times": lead_times,
    "lead_time_summary": lambda t: lead_time_summary(t, dims=["city"]),
    "return_rates": lambda t: return_rates(t, dims=["sku", "weekday"], by="month"),
    "webhook_health": lambda t: webhook_health(t, by="week", dims=["response_http_status"]),
}


@pytest.mark.parametrize("name", HELPERS)
def test_each_helper_gives_the_same_on_pandas_and_polars(shop: Shop, name: str) -> None:
    helper = HELPERS[name]
    pandas_result, polars_result = helper(shop.tables["pandas"]), helper(shop.tables["polars"])
    assert isinstance(pandas_result, pd.DataFrame) and isinstance(polars_result, pl.DataFrame)
    assert records(pandas_result) == records(polars_result)
    assert list(pandas_result.columns) == polars_result.columns


@pytest.mark.parametrize("engine", ENGINES)
def test_the_helpers_do_not_mutate_the_tables(shop: Shop, engine: str) -> None:
    tables = {name: shop.tables[engine][name] for name in shop.tables[engine]}
    before = copy.deepcopy(tables)
    for helper in HELPERS.values():
        helper(tables)
    for name, frame in tables.items():
        if engine == "pandas":
            pd.testing.assert_frame_equal(frame, before[name])
        else:
            assert frame.equals(before[name])


def test_the_helpers_say_what_is_wrong(shop: Shop) -> None:
    tables = shop.tables["pandas"]
    with pytest.raises(AnalysisError, match="unknown source"):
        transitions(tables, source="webhooks")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="colour"):
        funnel(tables, dims=["colour"])
    with pytest.raises(AnalysisError, match="unknown level"):
        state_counts(tables, of="units")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="unknown period"):
        funnel(tables, by="fortnight")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="no 'events'"):
        webhook_health({"orders": tables["orders"]})
    with pytest.raises(AnalysisError, match="loaded tables"):
        state_changes(tables["orders"])
    with pytest.raises(AnalysisError, match="time zone"):
        funnel(tables, tz="Mars/Olympus")
