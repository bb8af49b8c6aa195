"""Customers: new and returning, cohorts, transactions and RFM, against the world's truth.

Who placed each order comes from the world's ``order_customer`` (the OMS customer ``pk`` is
``3000 + index``); money from the truth ledger of ``tests.test_analysis_shop``.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pandas as pd
import polars as pl
import pytest

from omsframe.analysis import (
    AnalysisError,
    cohorts,
    ledger,
    new_vs_returning,
    revenue,
    rfm,
    transactions,
)
from omsframe.simulator import catalogue as cat
from tests.test_analysis_shop import (
    ENGINES,
    ZONES,
    Shop,
    Unit,
    day_of,
    local_day,
    period_of,
    records,
    totals,
)


@pytest.fixture(scope="module")
def customer_of(shop: Shop) -> dict[int, int]:
    """Order id -> customer id, from the world."""
    world = shop.world
    return {
        int(world.order_id[i]): 3000 + int(world.order_customer[i])
        for i in range(world.visible_orders(shop.now_us))
    }


def first_periods(
    shop: Shop, customer_of: dict[int, int], tz: str, by: str
) -> dict[tuple[int, str], dt.date]:
    first: dict[tuple[int, str], dt.date] = {}
    for u in shop.truth:
        if u.kind == "sale":
            key = (customer_of[u.order_id], u.currency)
            period = period_of(u.at, tz, by)
            first[key] = min(first.get(key, period), period)
    return first


def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


# --- new and returning ------------------------------------------------------------------------
@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("engine", ENGINES)
def test_new_and_returning_customers_and_their_net_sales(
    shop: Shop, customer_of: dict[int, int], engine: str, tz: str
) -> None:
    rows = records(new_vs_returning(shop.tables[engine], by="month", tz=tz))
    first = first_periods(shop, customer_of, tz, "month")

    def key(u: Unit) -> tuple[Any, ...]:
        period = period_of(u.at, tz, "month")
        new = first[customer_of[u.order_id], u.currency] == period
        return (period, "new" if new else "returning", u.currency)

    sales = [u for u in shop.truth if u.kind == "sale"]
    got = {(day_of(r["period"]), r["customer_type"], r["currency"]): r for r in rows}
    assert {k: r["net_sales"] for k, r in got.items()} == totals(
        shop.truth, key, lambda u: u.net_sales
    )
    customers = totals({(key(u), customer_of[u.order_id]) for u in sales}, lambda k: k[0], len1)
    orders = totals({(key(u), u.order_id) for u in sales}, lambda k: k[0], len1)
    assert {k: r["customers"] for k, r in got.items() if r["orders"]} == customers
    assert {k: r["orders"] for k, r in got.items() if r["orders"]} == orders
    assert {"new", "returning"} == {r["customer_type"] for r in rows}
    assert all(isinstance(r["net_sales"], Decimal) for r in rows)


def len1(_: Any) -> int:
    return 1


def test_new_and_returning_add_up_to_revenue(shop: Shop) -> None:
    mix = records(new_vs_returning(shop.tables["polars"], by="week"))
    whole = records(revenue(shop.tables["polars"], by="week", change=None))
    summed = totals(mix, lambda r: (r["period"], r["currency"]), lambda r: r["net_sales"])
    assert summed == {(r["period"], r["currency"]): r["net_sales"] for r in whole}
    customers = totals(mix, lambda r: (r["period"], r["currency"]), lambda r: r["orders"])
    assert customers == {(r["period"], r["currency"]): r["orders"] for r in whole}


# --- cohorts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_cohort_retention_and_revenue_are_the_worlds(
    shop: Shop, customer_of: dict[int, int], engine: str
) -> None:
    tz = ZONES[1]
    rows = records(cohorts(shop.tables[engine], tz=tz))
    first = first_periods(shop, customer_of, tz, "month")

    def cell(u: Unit) -> tuple[Any, ...]:
        cohort = first[customer_of[u.order_id], u.currency]
        age = month_index(period_of(u.at, tz, "month")) - month_index(cohort)
        return (cohort, age, u.currency)

    sales = [u for u in shop.truth if u.kind == "sale"]
    sizes = Counter((period, currency) for (_, currency), period in first.items())
    active = totals({(cell(u), customer_of[u.order_id]) for u in sales}, lambda k: k[0], len1)
    net = totals(shop.truth, cell, lambda u: u.net_sales)
    got = {(day_of(r["cohort"]), r["age"], r["currency"]): r for r in rows}
    assert set(got) == set(net)
    for k, r in got.items():
        cohort, age, currency = k
        assert r["cohort_customers"] == sizes[cohort, currency]
        assert r["customers"] == active.get(k, 0)
        assert r["retention"] == active.get(k, 0) / sizes[cohort, currency]
        assert r["net_sales"] == net[k]
        assert day_of(r["period"]) == (
            dt.date(
                cohort.year + (cohort.month - 1 + age) // 12, (cohort.month - 1 + age) % 12 + 1, 1
            )
        )
    assert all(r["retention"] == 1.0 for r in rows if r["age"] == 0)
    assert any(r["age"] >= 2 and r["customers"] > 0 for r in rows)  # customers come back


def test_cohorts_by_week(shop: Shop) -> None:
    rows = records(cohorts(shop.tables["pandas"], by="week", tz="UTC"))
    assert all(day_of(r["cohort"]).weekday() == 0 for r in rows)
    assert all(r["age"] == (day_of(r["period"]) - day_of(r["cohort"])).days // 7 for r in rows)


# --- transactions for CLV models --------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_transactions_are_one_row_per_customer_order_with_its_net_sales(
    shop: Shop, customer_of: dict[int, int], engine: str
) -> None:
    tz = ZONES[1]
    rows = records(transactions(shop.tables[engine], tz=tz))
    net = totals(shop.truth, lambda u: u.order_id, lambda u: u.net_sales)
    placed = {u.order_id: u.at for u in shop.truth if u.kind == "sale"}
    expected = sorted(
        (
            (customer_of[o], local_day(placed[o], tz), value, o)
            for o, value in net.items()
            if value > 0
        ),
        key=lambda row: (row[0], row[1], row[3]),
    )
    got = [(r["customer_id"], r["date"].date(), r["monetary_value"], r["order_id"]) for r in rows]
    assert got == expected
    assert all(r["date"].time() == dt.time(0) and r["date"].tzinfo is None for r in rows)
    everything = records(transactions(shop.tables[engine], tz=tz, keep_zero=True))
    assert len(everything) == len(net) > len(rows)  # fully cancelled orders come back


def test_transactions_feed_a_lifetimes_style_summary(shop: Shop) -> None:
    frame = transactions(shop.tables["pandas"])
    one = frame[frame["currency"] == "try"].astype({"monetary_value": float})
    summary = one.groupby("customer_id").agg(
        frequency=("date", lambda d: d.nunique() - 1), monetary=("monetary_value", "mean")
    )
    assert (summary["frequency"] >= 0).all() and (summary["monetary"] > 0).all()
    assert (summary["frequency"] > 0).any()


# --- RFM --------------------------------------------------------------------------------------
GRID = {
    r"[1-2][1-2]": "Hibernating",
    r"[1-2][3-4]": "At risk",
    r"[1-2]5": "Can't lose them",
    r"3[1-2]": "About to sleep",
    r"33": "Need attention",
    r"[3-4][4-5]": "Loyal customers",
    r"41": "Promising",
    r"51": "New customers",
    r"[4-5][2-3]": "Potential loyalists",
    r"5[4-5]": "Champions",
}


def quintile(value: Any, values: list[Any]) -> int:
    rank = 1 + sum(v < value for v in values)  # ties share the lowest rank
    return 1 + (rank - 1) * 5 // len(values)


@pytest.mark.parametrize("engine", ENGINES)
def test_rfm_scores_are_quintiles_of_the_worlds_customers(
    shop: Shop, customer_of: dict[int, int], engine: str
) -> None:
    tz = ZONES[1]
    as_of = dt.date(2025, 1, 15)
    rows = records(rfm(shop.tables[engine], as_of=as_of, tz=tz))
    net = totals(shop.truth, lambda u: u.order_id, lambda u: u.net_sales)
    placed = {u.order_id: u for u in shop.truth if u.kind == "sale"}
    per: dict[tuple[int, str], list[tuple[dt.date, Decimal]]] = defaultdict(list)
    for order_id, value in net.items():
        if value > 0:
            u = placed[order_id]
            per[customer_of[order_id], u.currency].append((local_day(u.at, tz), value))
    facts = {
        k: ((as_of - max(d for d, _ in v)).days, len(v), sum(m for _, m in v))
        for k, v in per.items()
    }
    assert {(r["customer_id"], r["currency"]) for r in rows} == set(facts)
    for r in rows:
        recency, frequency, monetary = facts[r["customer_id"], r["currency"]]
        assert (r["recency_days"], r["frequency"], r["monetary"]) == (recency, frequency, monetary)
        peers = [f for k, f in facts.items() if k[1] == r["currency"]]
        assert r["r_score"] == quintile(-recency, [-p[0] for p in peers])
        assert r["f_score"] == quintile(frequency, [p[1] for p in peers])
        assert r["m_score"] == quintile(monetary, [p[2] for p in peers])
        assert r["rfm"] == f"{r['r_score']}{r['f_score']}{r['m_score']}"
        names = [n for pattern, n in GRID.items() if re.fullmatch(pattern, r["rfm"][:2])]
        assert [r["segment"]] == names
    assert len({r["segment"] for r in rows}) >= 5


def test_rfm_counts_recency_to_the_day_after_the_last_order_by_default(shop: Shop) -> None:
    rows = records(rfm(shop.tables["polars"]))
    assert min(r["recency_days"] for r in rows) == 1
    with pytest.raises(AnalysisError, match="before the last order"):
        rfm(shop.tables["polars"], as_of="2024-11-01")
    with pytest.raises(AnalysisError, match="as_of must be a date"):
        rfm(shop.tables["polars"], as_of="soon")


# --- both engines, inputs untouched -----------------------------------------------------------
HELPERS: dict[str, Any] = {
    "new_vs_returning": lambda t: new_vs_returning(t, by="week"),
    "cohorts": cohorts,
    "transactions": transactions,
    "rfm": lambda t: rfm(t, as_of="2025-02-01"),
}


@pytest.mark.parametrize("name", HELPERS)
def test_each_helper_gives_the_same_on_pandas_and_polars(shop: Shop, name: str) -> None:
    helper = HELPERS[name]
    pandas_result, polars_result = helper(shop.tables["pandas"]), helper(shop.tables["polars"])
    assert isinstance(pandas_result, pd.DataFrame) and isinstance(polars_result, pl.DataFrame)
    assert records(pandas_result) == records(polars_result)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_helpers_take_a_ledger_and_do_not_mutate_it(shop: Shop, engine: str) -> None:
    book = ledger(shop.tables[engine])
    before = copy.deepcopy(book)
    for name, helper in HELPERS.items():
        assert records(helper(book)) == records(helper(shop.tables[engine])), name
    if engine == "pandas":
        pd.testing.assert_frame_equal(book, before)
    else:
        assert book.equals(before)


def test_guest_orders_are_unknown_customers(shop: Shop) -> None:
    book = ledger(shop.tables["polars"])
    guests = book.with_columns(
        customer_id=pl.when(pl.col("channel") == cat.CHANNELS[3].name)
        .then(None)
        .otherwise(pl.col("customer_id"))
    )
    mix = records(new_vs_returning(guests))
    unknown = [r for r in mix if r["customer_type"] == "unknown"]
    assert unknown and {r["currency"] for r in unknown} == {"usd"}
    assert all(r["customers"] == 0 for r in unknown) and any(r["orders"] for r in unknown)
    assert "usd" not in {r["currency"] for r in records(cohorts(guests))}
    assert "usd" not in {r["currency"] for r in records(transactions(guests))}


def test_unknown_periods_are_refused(shop: Shop) -> None:
    with pytest.raises(AnalysisError, match="unknown period"):
        cohorts(shop.tables["pandas"], by="decade")  # type: ignore[arg-type]
