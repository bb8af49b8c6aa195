"""Products: sales, returns, top sellers and ABC classes per currency, against the world."""

from __future__ import annotations

import copy
from collections import Counter
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from omsframe.analysis import (
    AnalysisError,
    abc_classes,
    ledger,
    product_sales,
    return_rates,
    revenue,
    top_products,
)
from tests.test_analysis_shop import ENGINES, Shop, Unit, records, totals


def base_code(product_id: int) -> str:
    return f"AKN-{100 + (product_id - 300) // 5:04d}"  # as the simulator names them


def per_product(units: list[Unit], key: Any = lambda u: u.product_id) -> dict[str, Any]:
    """Per (product key, currency): each measure of the truth."""
    by = lambda u: (key(u), u.currency)  # noqa: E731
    sales = [u for u in units if u.kind == "sale"]
    return {
        "units_sold": totals(sales, by, lambda u: 1),
        "units_cancelled": totals([u for u in units if u.kind == "cancellation"], by, lambda u: 1),
        "units_refunded": totals([u for u in units if u.kind == "refund"], by, lambda u: 1),
        "units": totals(units, by, lambda u: u.units),
        "gross_sales": totals(units, by, lambda u: u.gross_sales),
        "discounts": totals(units, by, lambda u: u.discounts),
        "returns": totals(units, by, lambda u: u.returns),
        "net_sales": totals(units, by, lambda u: u.net_sales),
        "orders": totals({(by(u), u.order_id) for u in sales}, lambda k: k[0], lambda k: 1),
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_product_sales_are_the_worlds_per_sku_and_currency(shop: Shop, engine: str) -> None:
    rows = records(product_sales(shop.tables[engine]))
    truth = per_product(shop.truth)
    assert {(r["product_id"], r["currency"]) for r in rows} == set(truth["units_sold"])
    for measure, expected in truth.items():
        got = {(r["product_id"], r["currency"]): r[measure] for r in rows}
        assert got == {k: expected.get(k, 0) for k in got}, measure
    for r in rows:
        assert r["cancel_rate"] == r["units_cancelled"] / r["units_sold"]
        assert r["refund_rate"] == r["units_refunded"] / r["units_sold"]
        assert base_code(r["product_id"]) in r["sku"]
    assert all(isinstance(r["net_sales"], Decimal) for r in rows)


def test_product_net_sales_agree_with_revenue_by_sku(shop: Shop) -> None:
    rows = records(product_sales(shop.tables["polars"]))
    by_sku = records(revenue(shop.tables["polars"], by="year", dims=["sku"], change=None))

    def key(r: dict[str, Any]) -> tuple[str, str]:
        return (r["sku"], r["currency"])

    net = lambda r: r["net_sales"]  # noqa: E731
    assert totals(rows, key, net) == totals(by_sku, key, net)


@pytest.mark.parametrize("engine", ENGINES)
def test_base_codes_gather_their_variants(shop: Shop, engine: str) -> None:
    rows = records(product_sales(shop.tables[engine], level="base_code"))
    truth = per_product(shop.truth, key=lambda u: base_code(u.product_id))
    assert {(r["base_code"], r["currency"]): r["net_sales"] for r in rows} == truth["net_sales"]
    variants = totals(
        {(base_code(u.product_id), u.currency, u.product_id) for u in shop.truth},
        lambda k: k[:2],
        lambda k: 1,
    )
    assert {(r["base_code"], r["currency"]): r["variants"] for r in rows} == variants
    with pytest.raises(AnalysisError, match="base_code"):
        product_sales(ledger(shop.tables[engine]), level="base_code")


@pytest.mark.parametrize("rank_by", ["net_sales", "units"])
@pytest.mark.parametrize("engine", ENGINES)
def test_top_products_rank_each_currency(shop: Shop, engine: str, rank_by: str) -> None:
    rows = records(top_products(shop.tables[engine], n=5, rank_by=rank_by))  # type: ignore[arg-type]
    truth = per_product(shop.truth)[rank_by]
    for currency in ("eur", "try", "usd"):
        mine = [r for r in rows if r["currency"] == currency]
        ranked = sorted((k for k in truth if k[1] == currency), key=lambda k: (-truth[k], k[0]))
        assert [r["product_id"] for r in mine] == [k[0] for k in ranked[:5]]
        assert [r["rank"] for r in mine] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("engine", ENGINES)
def test_abc_classes_split_the_cumulative_net_sales(shop: Shop, engine: str) -> None:
    rows = records(abc_classes(shop.tables[engine], thresholds=(70, 90)))
    truth = per_product(shop.truth)["net_sales"]
    for currency in ("eur", "try", "usd"):
        ranked = sorted((k for k in truth if k[1] == currency), key=lambda k: (-truth[k], k[0]))
        total = sum(max(truth[k], Decimal(0)) for k in ranked)
        before, expected = Decimal(0), {}
        for k in ranked:
            value = max(truth[k], Decimal(0))
            expected[k[0]] = (
                "C"
                if value <= 0
                else "A"
                if before < total * Decimal("0.7")
                else "B"
                if before < total * Decimal("0.9")
                else "C"
            )
            before += value
        mine = [r for r in rows if r["currency"] == currency]
        assert {r["product_id"]: r["abc_class"] for r in mine} == expected
        assert mine[-1]["cumulative_share"] == pytest.approx(1.0)
        classes = Counter(r["abc_class"] for r in mine)
        assert classes["A"] < classes["B"] + classes["C"]  # a few products make most sales


def test_abc_by_units_and_its_thresholds(shop: Shop) -> None:
    rows = records(abc_classes(shop.tables["pandas"], measure="units"))
    assert {r["abc_class"] for r in rows} == {"A", "B", "C"}
    with pytest.raises(AnalysisError, match="thresholds"):
        abc_classes(shop.tables["pandas"], thresholds=(95, 80))
    with pytest.raises(AnalysisError, match="at least 1"):
        top_products(shop.tables["pandas"], n=0)
    with pytest.raises(AnalysisError, match="unknown level"):
        product_sales(shop.tables["pandas"], level="colour")  # type: ignore[arg-type]


def test_return_rates_per_product_match_product_sales(shop: Shop) -> None:
    rates = records(return_rates(shop.tables["polars"], dims=["product_id", "currency"]))
    sales = records(product_sales(shop.tables["polars"]))
    assert {(r["product_id"], r["currency"]): r["cancel_rate"] for r in rates} == {
        (r["product_id"], r["currency"]): r["cancel_rate"] for r in sales
    }


HELPERS: dict[str, Any] = {
    "product_sales": product_sales,
    "base_codes": lambda t: product_sales(t, level="base_code"),
    "top_products": lambda t: top_products(t, n=3, rank_by="units"),
    "abc_classes": abc_classes,
}


@pytest.mark.parametrize("name", HELPERS)
def test_each_helper_gives_the_same_on_pandas_and_polars(shop: Shop, name: str) -> None:
    helper = HELPERS[name]
    assert records(helper(shop.tables["pandas"])) == records(helper(shop.tables["polars"]))


@pytest.mark.parametrize("engine", ENGINES)
def test_the_helpers_do_not_mutate_a_ledger(shop: Shop, engine: str) -> None:
    book = ledger(shop.tables[engine])
    before = copy.deepcopy(book)
    for name in ("product_sales", "top_products", "abc_classes"):
        assert records(HELPERS[name](book)) == records(HELPERS[name](shop.tables[engine]))
    if engine == "pandas":
        pd.testing.assert_frame_equal(book, before)
    else:
        assert book.equals(before)
