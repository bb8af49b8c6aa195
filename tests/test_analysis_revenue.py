"""Revenue: exact per currency and period in UTC and Istanbul, never mixing currencies."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd
import polars as pl
import pytest

from omsframe.analysis import AnalysisError, CurrencyError, ledger, revenue
from omsframe.analysis._frames import Period
from omsframe.load import load
from tests.test_analysis_shop import (
    CENT,
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

MONEY = ("gross_sales", "discounts", "returns", "net_sales", "taxes", "markdown")
PERIODS: tuple[Period, ...] = ("day", "week", "month", "quarter", "year")


def by_period(rows: list[dict[str, Any]], measure: str, *dims: str) -> dict[Any, Any]:
    return {(day_of(r["period"]), *[r[d] for d in dims], r["currency"]): r[measure] for r in rows}


def truth_by_period(units: list[Unit], tz: str, by: str, measure: str) -> dict[Any, Any]:
    return totals(
        units, lambda u: (period_of(u.at, tz, by), u.currency), lambda u: getattr(u, measure)
    )


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("engine", ENGINES)
def test_daily_revenue_equals_decimal_sums_of_the_world_per_currency(
    shop: Shop, engine: str, tz: str
) -> None:
    rows = records(
        revenue(shop.tables[engine], by="day", tz=tz, measures=[*MONEY, "net_sales_excl_tax"])
    )
    for measure in (*MONEY, "units"):
        expected = truth_by_period(shop.truth, tz, "day", measure)
        got = by_period(rows, measure)
        assert {k: v for k, v in got.items() if k in expected} == expected, measure
        assert all(v == 0 for k, v in got.items() if k not in expected), measure
    assert all(isinstance(r["net_sales"], Decimal) for r in rows)
    assert all(r["net_sales_excl_tax"] == r["net_sales"] - r["taxes"] for r in rows)


@pytest.mark.parametrize("by", PERIODS)
@pytest.mark.parametrize("tz", ZONES)
def test_every_period_adds_up_in_both_time_zones(shop: Shop, by: Period, tz: str) -> None:
    rows = records(revenue(shop.tables["polars"], by=by, tz=tz))
    for measure in ("net_sales", "returns", "taxes"):
        assert by_period(rows, measure) == truth_by_period(shop.truth, tz, by, measure)
    starts = {day_of(r["period"]) for r in rows}
    assert all(
        period_of(dt.datetime.combine(d, dt.time(12), dt.UTC), "UTC", by) == d for d in starts
    )


def test_day_boundaries_differ_between_utc_and_istanbul(shop: Shop) -> None:
    utc = by_period(records(revenue(shop.tables["pandas"], tz="UTC")), "gross_sales")
    local = by_period(records(revenue(shop.tables["pandas"], tz=ZONES[1])), "gross_sales")
    assert utc != local  # what sells after 21:00 UTC counts on the next Istanbul day
    for currency in ("try", "eur", "usd"):
        assert sum(v for k, v in utc.items() if k[-1] == currency) == sum(
            v for k, v in local.items() if k[-1] == currency
        )


def test_orders_aov_and_units_per_order_count_the_orders_placed(shop: Shop) -> None:
    tz = ZONES[1]
    rows = records(revenue(shop.tables["pandas"], by="week", tz=tz))
    sales = [u for u in shop.truth if u.kind == "sale"]
    placed = totals(
        {(period_of(u.at, tz, "week"), u.currency, u.order_id) for u in sales},
        lambda k: (k[0], k[1]),
        lambda k: 1,
    )
    assert by_period(rows, "orders") == placed
    ordered = totals(sales, lambda u: (period_of(u.at, tz, "week"), u.currency), lambda u: 1)
    assert by_period(rows, "units_ordered") == ordered
    value = totals(
        sales, lambda u: (period_of(u.at, tz, "week"), u.currency), lambda u: u.price - u.discount
    )
    for row in rows:
        k = (day_of(row["period"]), row["currency"])
        assert row["average_order_value"] == pytest.approx(float(value[k] / placed[k]))
        assert row["units_per_order"] == pytest.approx(ordered[k] / placed[k])


def test_change_against_the_previous_period(shop: Shop) -> None:
    rows = records(revenue(shop.tables["polars"], by="month", dims=["channel"]))
    net = {(day_of(r["period"]), r["channel"]): r["net_sales"] for r in rows}
    for row in rows:
        month = day_of(row["period"])
        before = (month - dt.timedelta(days=1)).replace(day=1)
        previous = net.get((before, row["channel"]))
        assert row["previous_net_sales"] == previous
        if previous is None:
            assert row["net_sales_change"] is None
        else:
            assert row["net_sales_change"] == row["net_sales"] - previous
            assert row["net_sales_change_pct"] == pytest.approx(
                float((row["net_sales"] - previous) / abs(previous))
            )
    assert any(r["previous_net_sales"] is not None for r in rows)


def test_dimensions_slice_without_losing_a_cent(shop: Shop) -> None:
    rows = records(revenue(shop.tables["pandas"], by="month", dims=["channel", "payment_type"]))
    by_channel = totals(rows, lambda r: (r["channel"], r["currency"]), lambda r: r["net_sales"])
    assert by_channel == totals(
        shop.truth, lambda u: (u.channel, u.currency), lambda u: u.net_sales
    )
    assert {r["currency"] for r in rows if r["channel"] == "EU Shop"} == {"eur"}


@pytest.mark.parametrize("engine", ENGINES)
def test_currencies_are_never_added_together_without_fx(shop: Shop, engine: str) -> None:
    tables = shop.tables[engine]
    rows = records(revenue(tables, by="year", dims=[]))
    assert sorted(r["currency"] for r in rows if day_of(r["period"]).year == 2024) == [
        "eur",
        "try",
        "usd",
    ]
    assert not any(r["converted"] for r in rows)
    # asking for "no currency" still keeps currencies apart
    again = records(revenue(tables, by="year", dims=["currency"]))
    assert again == rows
    with pytest.raises(CurrencyError, match="needs fx"):
        revenue(tables, reporting_currency="try")
    book = ledger(tables)
    without = book.drop(columns="currency") if engine == "pandas" else book.drop("currency")
    with pytest.raises(AnalysisError, match="currency"):
        revenue(without)
    rates = pl.DataFrame({"date": ["2024-10-01"], "currency": ["eur"], "rate": [36.0]})
    with pytest.raises(CurrencyError, match="usd from 2024-10-2"):  # no usd rate: refused
        revenue(tables, fx=rates, reporting_currency="try")
    early = pl.DataFrame(
        {"date": ["2024-12-01", "2024-12-01"], "currency": ["eur", "usd"], "rate": [36.0, 33.0]}
    )
    with pytest.raises(CurrencyError, match="on or before"):  # rates only from December
        revenue(tables, fx=early, reporting_currency="try")


def _rates() -> pl.DataFrame:
    days = pl.date_range(dt.date(2024, 10, 1), dt.date(2025, 1, 31), "3d", eager=True)
    n = len(days)
    return pl.DataFrame(
        {
            "date": pl.concat([days, days]),
            "currency": ["EUR"] * n + ["USD"] * n,
            "rate": [36 + k * 0.013579 for k in range(n)] + [33 + k * 0.011 for k in range(n)],
        }
    )


def _converted(unit: Unit, amount: Decimal, rates: pl.DataFrame, tz: str) -> Decimal:
    if unit.currency == "try":
        return amount
    day = local_day(unit.at, tz)
    table = rates.filter(
        (pl.col("currency").str.to_lowercase() == unit.currency) & (pl.col("date") <= day)
    )
    rate = Decimal(str(round(table.sort("date")["rate"][-1], 6)))
    exact = abs(amount) * rate
    rounded = exact.quantize(CENT, rounding=ROUND_HALF_UP)
    return rounded if amount >= 0 else -rounded


@pytest.mark.parametrize("engine", ENGINES)
def test_with_fx_every_row_is_converted_at_its_days_rate_exactly(shop: Shop, engine: str) -> None:
    tz = ZONES[1]
    rates = _rates()
    fx = rates if engine == "polars" else rates.to_pandas()
    rows = records(revenue(shop.tables[engine], by="month", tz=tz, fx=fx, reporting_currency="TRY"))
    assert {r["currency"] for r in rows} == {"try"}
    assert all(r["converted"] for r in rows)
    for measure in ("gross_sales", "returns", "net_sales", "taxes"):
        # the unit amounts are converted, each to the cent; the measures follow from them
        def converted(u: Unit, measure: str = measure) -> Decimal:
            unit = dataclasses.replace(
                u,
                price=_converted(u, u.price, rates, tz),
                discount=_converted(u, u.discount, rates, tz),
                retail=_converted(u, u.retail, rates, tz),
                tax=_converted(u, u.tax, rates, tz),
            )
            return Decimal(getattr(unit, measure))

        expected = totals(shop.truth, lambda u: (period_of(u.at, tz, "month"), "try"), converted)
        assert by_period(rows, measure) == expected, measure
    for row in rows:  # the measures add up as in the shop's own currencies
        assert row["gross_sales"] + row["discounts"] + row["returns"] == row["net_sales"]


def test_fx_with_two_rates_for_a_day_bad_dates_or_arrow_tables_is_refused(shop: Shop) -> None:
    twice = pd.DataFrame({"date": ["2024-01-01"] * 2, "currency": ["eur"] * 2, "rate": [30, 40]})
    with pytest.raises(AnalysisError, match="more than one rate for a day and currency"):
        revenue(shop.tables["pandas"], fx=twice, reporting_currency="try")
    american = pd.DataFrame({"date": ["01/09/2024"], "currency": ["eur"], "rate": [30]})
    with pytest.raises(AnalysisError, match=r"fx could not be read .*'YYYY-MM-DD'"):
        revenue(shop.tables["pandas"], fx=american, reporting_currency="try")
    with pytest.raises(AnalysisError, match="needs pandas or polars"):
        revenue(load(shop.path, engine="pyarrow"), fx=_rates(), reporting_currency="try")


def test_revenue_takes_tables_or_a_ledger_and_returns_the_same_kind(shop: Shop) -> None:
    for engine, kind in (("pandas", pd.DataFrame), ("polars", pl.DataFrame)):
        tables = shop.tables[engine]
        from_tables = revenue(tables, by="week", dims=["channel"], tz="UTC")
        from_ledger = revenue(ledger(tables, tz="UTC"), by="week", dims=["channel"])
        assert isinstance(from_tables, kind) and isinstance(from_ledger, kind)
        assert records(from_tables) == records(from_ledger)  # tz taken from the ledger
    assert records(revenue(shop.tables["pandas"], by="month")) == records(
        revenue(shop.tables["polars"], by="month")
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_revenue_does_not_mutate_its_input(shop: Shop, engine: str) -> None:
    book = ledger(shop.tables[engine])
    before = copy.deepcopy(book)
    fx = _rates() if engine == "polars" else _rates().to_pandas()
    fx_before = copy.deepcopy(fx)
    revenue(book, by="month", dims=["city"], fx=fx, reporting_currency="try")
    pairs: list[tuple[Any, Any]] = [(book, before), (fx, fx_before)]
    for frame, copied in pairs:
        if isinstance(frame, pd.DataFrame):
            pd.testing.assert_frame_equal(frame, copied)
        else:
            assert frame.equals(copied)


def test_unknown_periods_measures_and_dims_are_refused(shop: Shop) -> None:
    tables = shop.tables["pandas"]
    with pytest.raises(AnalysisError, match="unknown period 'fortnight'"):
        revenue(tables, by="fortnight")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="unknown measure"):
        revenue(tables, measures=["profit"])
    with pytest.raises(AnalysisError, match=r"unknown dimension.*warehouse.*choose from.*city"):
        revenue(tables, dims=["warehouse"])
    with pytest.raises(AnalysisError, match="change must be a money measure"):
        revenue(tables, change="units")
    assert "previous_net_sales" not in revenue(tables, measures=["gross_sales"], change=None)
    compared = revenue(tables, measures=["gross_sales"])  # the compared measure is added
    assert {"gross_sales", "net_sales", "net_sales_change"} <= set(compared.columns)


def test_rows_without_a_currency_stay_apart_and_are_never_converted(shop: Shop) -> None:
    book = ledger(shop.tables["pandas"])
    book.loc[book.index[:3], "currency"] = None  # a copy of ours: the shop's tables stay intact
    rows = records(revenue(book, by="year"))
    unknown = [r for r in rows if r["currency"] is None]
    assert unknown and sum(r["gross_sales"] for r in unknown) == book.gross_sales.iloc[:3].sum()
    with pytest.raises(CurrencyError, match="3 ledger row"):
        revenue(book, fx=_rates(), reporting_currency="try")


@pytest.mark.parametrize("by", ["day", "week", "month", "quarter"])
def test_only_the_period_the_data_ends_in_is_partial(shop: Shop, by: Period) -> None:
    def start(moment: dt.datetime) -> dt.datetime:  # the test's own periods (period_of)
        day = period_of(moment, "Europe/Istanbul", by)
        return dt.datetime(day.year, day.month, day.day)

    tables = shop.tables["pandas"]
    end = dt.datetime.fromtimestamp(shop.now_us / 1e6, dt.UTC)
    assert tables.as_of is not None and abs(tables.as_of - end) < dt.timedelta(days=2)
    result = revenue(tables, by=by)
    assert (result["partial"] == (result["period"] >= start(tables.as_of))).all()
    assert result["partial"].any() and not result["partial"].all()
    # a ledger frame: the period of its latest booking
    book = ledger(tables)
    from_book = revenue(book, by=by)
    latest = start(book["booked_at"].max().to_pydatetime())
    assert (from_book["partial"] == (from_book["period"] >= latest)).all()
