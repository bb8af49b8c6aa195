"""Discounts: shares, rates, depth buckets, campaign days, top products; exact, both engines."""

from __future__ import annotations

import copy
from collections import defaultdict
from fractions import Fraction
from typing import Any

import pandas as pd
import pytest

from omsframe.analysis import (
    AnalysisError,
    campaign_days,
    discount_depth,
    discounts,
    ledger,
    top_discounted_products,
)
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


def sales(shop: Shop) -> list[Unit]:
    return [u for u in shop.truth if u.kind == "sale"]


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("engine", ENGINES)
def test_discount_shares_and_amounts_equal_the_worlds(shop: Shop, engine: str, tz: str) -> None:
    rows = records(discounts(shop.tables[engine], by="week", tz=tz))
    got = {(day_of(r["period"]), r["currency"]): r for r in rows}

    def key(u: Unit) -> tuple[Any, ...]:
        return (period_of(u.at, tz, "week"), u.currency)

    sold = sales(shop)
    expected = {
        "items": totals(sold, key, lambda u: 1),
        "items_discounted": totals(sold, key, lambda u: int(u.discount > 0)),
        "items_marked_down": totals(sold, key, lambda u: int(u.retail > u.price)),
        "gross_sales": totals(sold, key, lambda u: u.price),
        "discounts": totals(sold, key, lambda u: -u.discount),
        "markdown": totals(sold, key, lambda u: u.retail - u.price),
    }
    orders: dict[Any, set[int]] = defaultdict(set)
    discounted: dict[Any, set[int]] = defaultdict(set)
    for u in sold:
        orders[key(u)].add(u.order_id)
        if u.discount > 0:
            discounted[key(u)].add(u.order_id)
    assert set(got) == set(orders)
    for k, row in got.items():
        for column, values in expected.items():
            assert row[column] == values[k], column
        assert row["orders"] == len(orders[k])
        assert row["orders_discounted"] == len(discounted[k])
        assert row["discount_rate"] == pytest.approx(
            float(-expected["discounts"][k] / expected["gross_sales"][k])
        )
        assert row["items_discounted_share"] == pytest.approx(
            expected["items_discounted"][k] / expected["items"][k]
        )


def bucket(part: Fraction, edges: tuple[int, ...]) -> str:
    if part <= 0:
        return "0%"
    for lo, hi in zip((0, *edges), edges, strict=False):
        if part <= Fraction(hi, 100):
            return f"{lo}-{hi}%"
    return f">{edges[-1]}%"


@pytest.mark.parametrize("edges", [(10, 20, 30, 40, 50), (5, 25)])
@pytest.mark.parametrize("engine", ENGINES)
def test_depth_buckets_count_every_item_exactly(
    shop: Shop, engine: str, edges: tuple[int, ...]
) -> None:
    tz = ZONES[1]
    rows = records(discount_depth(shop.tables[engine], by="month", tz=tz, edges=edges))
    got = {(day_of(r["period"]), r["depth"], r["bucket"]): r["items"] for r in rows}
    expected: dict[Any, int] = defaultdict(int)
    for u in sales(shop):
        month = period_of(u.at, tz, "month")
        expected[month, "discount", bucket(Fraction(u.discount) / Fraction(u.price), edges)] += 1
        markdown = Fraction(u.retail - u.price) / Fraction(u.retail)
        expected[month, "markdown", bucket(markdown, edges)] += 1
    assert got == dict(expected)
    shares = totals(rows, lambda r: (day_of(r["period"]), r["depth"]), lambda r: r["share"])
    assert all(s == pytest.approx(1.0) for s in shares.values())
    orders = {(r["depth"], r["bucket"]): r["bucket_order"] for r in rows}
    assert orders[("discount", "0%")] == 0


def test_depth_edges_must_be_increasing_percents(shop: Shop) -> None:
    for edges in [(), (50, 10), (0, 10), (10, 100), (10, 10)]:
        with pytest.raises(AnalysisError, match="edges"):
            discount_depth(shop.tables["pandas"], edges=edges)


@pytest.mark.parametrize("engine", ENGINES)
def test_campaign_days_are_the_worlds_in_istanbul_time(shop: Shop, engine: str) -> None:
    tz = ZONES[1]
    rows = records(campaign_days(shop.tables[engine], tz=tz))
    units = totals(sales(shop), lambda u: (local_day(u.at, tz), u.currency), lambda u: 1)
    assert {(day_of(r["day"]), r["currency"]): r["units"] for r in rows} == units
    gross = totals(sales(shop), lambda u: (local_day(u.at, tz), u.currency), lambda u: u.price)
    assert {(day_of(r["day"]), r["currency"]): r["gross_sales"] for r in rows} == gross
    flagged = {day_of(r["day"]) for r in rows if r["campaign"]}
    assert flagged == set(shop.world.campaign_days)  # discount depth finds them exactly
    in_utc = {day_of(r["day"]) for r in records(campaign_days(shop.tables[engine], tz="UTC"))}
    assert in_utc != {day_of(r["day"]) for r in rows}  # other day boundaries


@pytest.mark.parametrize("on", ["discount", "markdown", "either"])
def test_top_discounted_products_rank_units_sold_on_discount(shop: Shop, on: str) -> None:
    def on_discount(u: Unit) -> bool:
        discounted, marked_down = u.discount > 0, u.retail > u.price
        return {"discount": discounted, "markdown": marked_down}.get(on, discounted or marked_down)

    sold = sales(shop)
    counts = totals(
        [u for u in sold if on_discount(u)], lambda u: (u.product_id, u.currency), lambda u: 1
    )
    every = totals(sold, lambda u: (u.product_id, u.currency), lambda u: 1)
    pandas_rows = records(top_discounted_products(shop.tables["pandas"], n=4, on=on))  # type: ignore[arg-type]
    polars_rows = records(top_discounted_products(shop.tables["polars"], n=4, on=on))  # type: ignore[arg-type]
    assert pandas_rows == polars_rows
    for currency in ("try", "eur", "usd"):
        rows = [r for r in pandas_rows if r["currency"] == currency]
        best = sorted((v for (p, c), v in counts.items() if c == currency), reverse=True)[:4]
        assert [r["units_on_discount"] for r in rows] == best
        for r in rows:
            assert r["units_on_discount"] == counts[r["product_id"], currency]
            assert r["units"] == every[r["product_id"], currency]


@pytest.mark.parametrize("engine", ENGINES)
def test_discount_helpers_do_not_mutate_their_input(shop: Shop, engine: str) -> None:
    book = ledger(shop.tables[engine])
    before = copy.deepcopy(book)
    discounts(book, dims=["channel"])
    discount_depth(book, dims=["channel"])
    campaign_days(book, dims=["channel"])
    top_discounted_products(book)
    if engine == "pandas":
        pd.testing.assert_frame_equal(book, before)
    else:
        assert book.equals(before)


def test_discount_helpers_give_the_same_on_pandas_and_polars(shop: Shop) -> None:
    for helper in (discounts, discount_depth, campaign_days):
        assert records(helper(shop.tables["pandas"], dims=["channel"])) == records(
            helper(shop.tables["polars"], dims=["channel"])
        )


def test_top_discounted_products_refuses_bad_arguments(shop: Shop) -> None:
    with pytest.raises(AnalysisError, match="at least 1"):
        top_discounted_products(shop.tables["pandas"], n=0)
    with pytest.raises(AnalysisError, match="unknown on"):
        top_discounted_products(shop.tables["pandas"], on="coupon")  # type: ignore[arg-type]
