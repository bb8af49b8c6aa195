"""The sales ledger: event-dated, exact, the same on pandas and polars, inputs untouched."""

from __future__ import annotations

import copy
import datetime as dt
import io
from decimal import Decimal
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

import narwhals as nw
import pandas as pd
import polars as pl
import pytest

import omsframe.analysis as analysis
from omsframe.analysis import AnalysisError, explain, ledger, revenue
from omsframe.analysis.measures import MEASURES, RATIOS, definition
from tests.test_analysis_shop import (
    ENGINES,
    ZONES,
    Shop,
    Unit,
    records,
    tax_share,
    totals,
)

MONEY = ("gross_sales", "discounts", "returns", "net_sales", "taxes", "markdown")


@pytest.fixture(scope="module")
def books(shop: Shop) -> dict[str, Any]:
    return {engine: ledger(shop.tables[engine]) for engine in ENGINES}


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["kind"], row["booked_at"], row["order_id"], row["item_id"])


@pytest.mark.parametrize("engine", ENGINES)
def test_every_sale_and_reversal_is_a_row_dated_as_in_the_world(
    shop: Shop, books: dict[str, Any], engine: str
) -> None:
    rows = records(books[engine])
    expected = {(u.kind, u.at, u.order_id, u.item_id) for u in shop.truth}
    assert len(rows) == len(shop.truth)
    assert {key(r) for r in rows} == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_each_row_has_the_worlds_signed_amounts_to_the_cent(
    shop: Shop, books: dict[str, Any], engine: str
) -> None:
    truth = {(u.kind, u.at, u.order_id, u.item_id): u for u in shop.truth}
    for row in records(books[engine]):
        unit = truth[key(row)]
        for measure in (*MONEY, "units"):
            assert row[measure] == getattr(unit, measure), (measure, row)
        assert row["currency"] == unit.currency
        assert row["channel"] == unit.channel
        assert row["tax_source"] == ("rate" if unit.tax_from_rate else "oms")


@pytest.mark.parametrize("engine", ENGINES)
def test_totals_per_currency_equal_decimal_sums_of_the_world(
    shop: Shop, books: dict[str, Any], engine: str
) -> None:
    rows = records(books[engine])
    for measure in (*MONEY, "units"):
        got = totals(rows, itemgetter("currency"), itemgetter(measure))
        assert got == totals(shop.truth, attrgetter("currency"), attrgetter(measure))
    assert isinstance(rows[0]["net_sales"], Decimal)  # exact, never float


def test_a_cancelled_order_nets_to_zero_and_a_refund_lands_on_its_own_date(
    shop: Shop, books: dict[str, Any]
) -> None:
    frame = books["pandas"]
    cancelled = next(u for u in shop.truth if u.kind == "cancellation" and _whole(shop, u))
    rows = frame[frame.order_id == cancelled.order_id]
    assert set(rows.kind) == {"sale", "cancellation"}
    for measure in ("net_sales", "taxes", "net_sales_excl_tax", "total_sales", "markdown", "units"):
        assert rows[measure].sum() == 0, measure
    # what was sold, less its discounts, comes back as returns
    assert rows.gross_sales.sum() + rows.discounts.sum() == -rows.returns.sum()
    sale_day = rows[rows.kind == "sale"].booked_local.dt.date.iloc[0]
    cancel_at = rows[rows.kind == "cancellation"].booked_at
    assert (cancel_at == pd.Timestamp(cancelled.at)).all()

    refund = next(u for u in shop.truth if u.kind == "refund" and _whole(shop, u))
    rows = frame[frame.order_id == refund.order_id]
    refunds = rows[rows.kind == "refund"]
    assert (refunds.booked_at == pd.Timestamp(refund.at)).all()
    placed_day = rows[rows.kind == "sale"].booked_local.dt.date.iloc[0]
    assert refunds.booked_local.dt.date.iloc[0] > placed_day  # its own, later date
    assert rows.net_sales.sum() == 0
    assert refunds.returns.sum() == -rows[rows.kind == "sale"].net_sales.sum()
    assert sale_day <= cancel_at.dt.tz_convert(ZONES[1]).dt.date.iloc[0]


def test_a_single_item_refund_reverses_that_item_only(shop: Shop, books: dict[str, Any]) -> None:
    reversals = totals(shop.truth, lambda u: u.order_id, lambda u: u.kind != "sale")
    sold = totals(shop.truth, lambda u: u.order_id, lambda u: u.kind == "sale")
    refund = next(
        u
        for u in shop.truth
        if u.kind == "refund" and reversals[u.order_id] == 1 and sold[u.order_id] > 1
    )
    frame = books["polars"].filter(pl.col("order_id") == refund.order_id)
    reversed_items = frame.filter(pl.col("kind") != "sale")
    assert reversed_items["item_id"].to_list() == [refund.item_id]
    assert reversed_items["booked_at"].to_list() == [refund.at]
    assert frame["net_sales"].sum() > 0  # the other items stay sold


def _whole(shop: Shop, unit: Unit) -> bool:
    """Whether every item of the unit's order was reversed the same way."""
    kinds = [u.kind for u in shop.truth if u.order_id == unit.order_id and u.kind != "sale"]
    items = [u for u in shop.truth if u.order_id == unit.order_id and u.kind == "sale"]
    return kinds == [unit.kind] * len(items)


def test_taxes_are_derived_from_the_rate_where_the_oms_sent_none(
    shop: Shop, books: dict[str, Any]
) -> None:
    items = records(shop.tables["pandas"].order_items)
    rates = {r["item_id"]: r["tax_rate"] for r in items if r["tax_amount"] is None}
    derived = [r for r in records(books["pandas"]) if r["tax_source"] == "rate"]
    assert derived
    assert {r["item_id"] for r in derived} == set(rates)
    for row in derived:
        net = row["unit_price"] - row["unit_discount"]
        assert row["unit_tax"] == tax_share(net, rates[row["item_id"]])


def test_pandas_and_polars_give_the_same_ledger(books: dict[str, Any]) -> None:
    assert isinstance(books["pandas"], pd.DataFrame)
    assert isinstance(books["polars"], pl.DataFrame)
    assert list(books["pandas"].columns) == books["polars"].columns
    assert records(books["pandas"]) == records(books["polars"])


@pytest.mark.parametrize("engine", ENGINES)
def test_ledger_does_not_mutate_its_input(shop: Shop, engine: str) -> None:
    tables = shop.tables[engine]
    before = {name: copy.deepcopy(frame) for name, frame in tables.items()}
    ledger(tables, tz="UTC")
    for name, frame in tables.items():
        if engine == "pandas":
            pd.testing.assert_frame_equal(frame, before[name])
        else:
            assert frame.equals(before[name])


def test_booked_local_is_in_the_business_time_zone(shop: Shop) -> None:
    for tz in ZONES:
        book = ledger(shop.tables["polars"], tz=tz)
        assert book.schema["booked_local"] == pl.Datetime("us", tz)
        assert book.schema["booked_at"] == pl.Datetime("us", "UTC")


def _without_item_states(tables: Any, order_id: int) -> dict[str, Any]:
    """The tables as an OMS that never updates item states would send them, for one order."""
    items = tables["order_items"].copy()
    items.loc[items.order_id == order_id, "state_code"] = "450"
    return {**tables, "order_items": items}


def test_an_order_level_reversal_is_dated_by_event_then_state_history_then_modified_date(
    shop: Shop,
) -> None:
    tables = shop.tables["pandas"]
    cancelled = next(u for u in shop.truth if u.kind == "cancellation" and _whole(shop, u))
    order = cancelled.order_id
    later = pd.Timestamp(cancelled.at) + pd.Timedelta(hours=5)

    def cancel_time(data: dict[str, Any]) -> Any:
        book = ledger(data)
        rows = book[(book.order_id == order) & (book.kind == "cancellation")]
        assert len(rows) == sum(1 for u in shop.truth if u.order_id == order and u.kind == "sale")
        return rows.booked_at.iloc[0]

    data = _without_item_states(tables, order)
    history = data["state_history"].copy()
    history.loc[history.order_id == order, "changed_at"] = later
    data["state_history"] = history
    assert cancel_time(data) == pd.Timestamp(cancelled.at)  # the event wins
    del data["events"]
    assert cancel_time(data) == later  # then the state history
    del data["state_history"]
    orders = data["orders"].copy()
    orders.loc[orders.order_id == order, "modified_date"] = later + pd.Timedelta(hours=1)
    data["orders"] = orders
    assert cancel_time(data) == later + pd.Timedelta(hours=1)  # then the order's modified_date


def test_measures_add_up_row_by_row(books: dict[str, Any]) -> None:
    frame = books["pandas"]
    assert (frame.net_sales == frame.gross_sales + frame.discounts + frame.returns).all()
    assert (frame.net_sales_excl_tax == frame.net_sales - frame.taxes).all()
    assert (frame.total_sales == frame.net_sales).all()  # prices include tax, no shipping
    assert set(frame.units) == {1, -1}


def test_every_measure_is_explained_with_its_formula() -> None:
    for name in (*MEASURES, *RATIOS):
        assert definition(name).startswith(f"{name} = ")
    out = io.StringIO()
    explain("net_sales", file=out)
    assert out.getvalue().startswith("net_sales = gross_sales + discounts + returns.")
    with pytest.raises(AnalysisError, match="no measure 'profit'"):
        explain("profit")


def test_every_figure_revenue_gives_is_explained(shop: Shop) -> None:
    columns = revenue(shop.tables["pandas"], by="month", measures=list(MEASURES)).columns
    figures = [c for c in columns if c not in ("period", "currency", "converted", "units")]
    for name in figures:
        assert definition(name).startswith(f"{name} = "), name
    assert "0.46 is +46 %" in definition("net_sales_change_pct")
    with pytest.raises(AnalysisError, match="no measure 'units_change'"):
        definition("units_change")  # no money measure


def test_explain_prints_to_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    analysis.explain("taxes")
    assert "tax_rate" in capsys.readouterr().out


def test_missing_tables_columns_or_time_zone_are_refused(shop: Shop, tmp_path: Path) -> None:
    tables = shop.tables["pandas"]
    with pytest.raises(AnalysisError, match="no 'orders'"):
        ledger({"order_items": tables["order_items"]})
    with pytest.raises(AnalysisError, match="price"):
        ledger({**tables, "order_items": tables["order_items"].drop(columns="price")})
    with pytest.raises(AnalysisError, match="time zone"):
        ledger(tables, tz="Mars/Olympus")
    with pytest.raises(AnalysisError, match="pandas or polars"):
        ledger({**tables, "orders": [1, 2]})
    assert nw.from_native(ledger(tables)).shape[0] == len(records(ledger(tables)))
    assert dt.UTC is not None and tmp_path.exists()
