"""Charts, tested through their figure data: the right series, the right totals, the labels."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import narwhals as nw
import plotly.graph_objects as go
import polars as pl
import pytest

from omsframe import charts
from omsframe.analysis import (
    campaign_days,
    discount_depth,
    revenue,
    top_discounted_products,
)
from omsframe.load import Tables
from tests.test_analysis_shop import ENGINES, Shop, records, totals


@pytest.fixture(autouse=True)
def never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a chart function called show()")

    monkeypatch.setattr(go.Figure, "show", refuse)


def y_axis_titles(fig: go.Figure) -> list[str]:
    layout = fig.to_dict()["layout"]
    return [layout[k]["title"]["text"] for k in sorted(layout) if k.startswith("yaxis")]


def lines(fig: go.Figure) -> list[dict[str, Any]]:
    """The line of each series, its partial periods' values (drawn apart) put back in place."""
    data = fig.to_dict()["data"]
    main = [t for t in data if t.get("showlegend") is not False]
    for trace in main:
        marks = [
            t
            for t in data
            if t.get("legendgroup") == trace["name"]
            and t.get("marker", {}).get("symbol") == "circle-open"
        ]
        partial = {x: y for t in marks for x, y in zip(t["x"], t["y"], strict=True)}
        trace["y"] = [partial.get(x, y) for x, y in zip(trace["x"], trace["y"], strict=True)]
    return main


def without_city(tables: Tables, orders: int = 20) -> Tables:
    """The tables with the shipping city of the first ``orders`` orders missing."""
    frame = tables["orders"]
    if isinstance(frame, pl.DataFrame):
        first = pl.int_range(pl.len()) < orders
        frame = frame.with_columns(
            shipping_city=pl.when(first).then(None).otherwise(pl.col("shipping_city"))
        )
    else:
        frame = frame.copy()
        frame.loc[frame.index[:orders], "shipping_city"] = None
    return Tables(
        {**{name: tables[name] for name in tables}, "orders": frame},
        policy=tables.policy,
        source=tables.source,
        window=tables.window,
        as_of=tables.as_of,
    )


def panel_pixels(fig: go.Figure) -> list[tuple[float, float]]:
    """Each panel's (top, bottom) in pixels down from the top of the plot area, top first."""
    layout = fig.to_dict()["layout"]
    assert layout.get("height"), "a multi-panel figure needs a height that fits its panels"
    plot = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    domains = [layout[k]["domain"] for k in layout if k.startswith("yaxis")]
    return sorted((plot * (1 - top), plot * (1 - bottom)) for bottom, top in domains)


def assert_roomy(fig: go.Figure, panel: float, gap: float) -> None:
    """Every panel at least ``panel`` pixels tall, ``gap`` pixels between neighbours."""
    pixels = panel_pixels(fig)
    assert all(bottom - top >= panel for top, bottom in pixels), pixels
    assert all(b[0] - a[1] >= gap for a, b in itertools.pairwise(pixels)), pixels


@pytest.mark.parametrize("engine", ENGINES)
def test_revenue_chart_draws_each_currency_on_its_own_labelled_axis(
    shop: Shop, engine: str
) -> None:
    frame = revenue(shop.tables[engine], by="week")
    fig = charts.revenue_chart(frame)
    assert isinstance(fig, go.Figure)
    hollow = [t for t in fig.data if getattr(t.marker, "symbol", None) == "circle-open"]
    assert hollow and frame["partial"].any()  # the week the data ends in is drawn apart
    data = lines(fig)
    assert [t["name"] for t in data] == ["EUR", "TRY", "USD"]
    assert len({t["yaxis"] for t in data}) == 3  # never two currencies on one axis
    assert y_axis_titles(fig) == ["Net sales (EUR)", "Net sales (TRY)", "Net sales (USD)"]
    assert fig.layout.title.text == "Net sales per week"
    expected = totals(shop.truth, lambda u: u.currency.upper(), lambda u: u.net_sales)
    for trace in data:
        assert sum(trace["y"]) == pytest.approx(float(expected[trace["name"]]), abs=0.005)


def test_panels_per_currency_are_tall_enough_for_their_axis_titles(shop: Shop) -> None:
    weekly = revenue(shop.tables["polars"], by="week")
    for fig in (charts.revenue_chart(weekly), charts.aov_chart(weekly)):
        # an axis title such as "Average order value (EUR)" is ~180 px long
        assert_roomy(fig, panel=200, gap=40)
    one = charts.revenue_chart(weekly.filter(pl.col("currency") == "try"))
    assert one.layout.height < charts.revenue_chart(weekly).layout.height


def test_revenue_chart_draws_a_line_per_dimension_value(shop: Shop) -> None:
    frame = revenue(shop.tables["pandas"], by="month", dims=["channel"], measures=["gross_sales"])
    fig = charts.revenue_chart(frame, measure="gross_sales", color="channel")
    names = [t["name"] for t in lines(fig)]
    assert names == ["EU Shop (EUR)", "Mobile App TR (TRY)", "Web Shop TR (TRY)", "US Shop (USD)"]
    expected = totals(shop.truth, lambda u: u.channel, lambda u: u.gross_sales)
    for trace in lines(fig):
        channel = trace["name"].rsplit(" (", 1)[0]
        assert sum(trace["y"]) == pytest.approx(float(expected[channel]), abs=0.005)


@pytest.mark.parametrize("engine", ENGINES)
def test_rows_without_a_value_of_color_are_a_line_of_their_own(shop: Shop, engine: str) -> None:
    frame = revenue(without_city(shop.tables[engine]), by="month", dims="city")
    rows = records(frame)
    assert sum(r["city"] is None for r in rows) > 0
    for fig in (charts.revenue_chart(frame, color="city"), charts.aov_chart(frame, color="city")):
        names = [t["name"] for t in lines(fig)]
        nameless = [n for n in names if n.startswith("(none) (")]
        assert nameless
        for name in nameless:  # last in its currency's panel
            panel = [n for n in names if n.endswith(name[len("(none) ") :])]
            assert panel[-1] == name
    drawn = lines(charts.revenue_chart(frame, color="city"))
    for currency in ("eur", "try", "usd"):  # every amount of the frame is on the chart
        expected = sum(r["net_sales"] for r in rows if r["currency"] == currency)
        mine = [t for t in drawn if t["name"].endswith(f"({currency.upper()})")]
        assert sum(sum(t["y"]) for t in mine) == pytest.approx(float(expected), abs=0.005)
    none = sum(r["net_sales"] for r in rows if r["city"] is None)
    assert sum(sum(t["y"]) for t in drawn if t["name"].startswith("(none)")) == pytest.approx(
        float(none), abs=0.005
    )


def test_a_converted_revenue_is_one_axis_that_says_so(shop: Shop) -> None:
    rates = pl.DataFrame(
        {"date": ["2024-10-01", "2024-10-01"], "currency": ["eur", "usd"], "rate": [36.0, 33.0]}
    )
    frame = revenue(shop.tables["polars"], by="month", fx=rates, reporting_currency="try")
    fig = charts.revenue_chart(frame)
    assert [t["name"] for t in lines(fig)] == ["TRY"]
    assert y_axis_titles(fig) == ["Net sales (TRY, converted)"]
    assert sum(lines(fig)[0]["y"]) == pytest.approx(
        float(sum(r["net_sales"] for r in records(frame))), abs=0.005
    )


def test_aov_chart_draws_the_average_order_value(shop: Shop) -> None:
    frame = revenue(shop.tables["polars"], by="month")
    fig = charts.aov_chart(frame)
    assert y_axis_titles(fig)[1] == "Average order value (TRY)"
    try_rows = frame.filter(pl.col("currency") == "try").sort("period")
    assert list(lines(fig)[1]["y"]) == try_rows["average_order_value"].to_list()
    assert fig.layout.title.text == "Average order value per month"


def test_a_share_is_a_percentage_axis_and_a_count_has_no_currency(shop: Shop) -> None:
    monthly = revenue(shop.tables["polars"], by="month")
    fig = charts.revenue_chart(monthly, measure="net_sales_change_pct")
    assert y_axis_titles(fig) == ["Net sales change (%)"] * 3  # a share has no currency
    axes = [v for k, v in fig.to_dict()["layout"].items() if k.startswith("yaxis")]
    assert all(axis["tickformat"] == ".0%" for axis in axes)  # fractions: 0.46 is 46%
    try_rows = monthly.filter(pl.col("currency") == "try").sort("period")
    assert lines(fig)[1]["y"] == try_rows["net_sales_change_pct"].to_list()  # as fractions
    assert y_axis_titles(charts.revenue_chart(monthly, measure="orders")) == ["Orders"] * 3
    money = charts.revenue_chart(monthly, measure="net_sales_change")
    assert y_axis_titles(money)[1] == "Net sales change (TRY)"
    assert "tickformat" not in money.to_dict()["layout"]["yaxis"]


def weeks(*days: int) -> list[dt.datetime]:
    """Monday period starts of January 2025 (6, 13, 20, 27)."""
    return [dt.datetime(2025, 1, d) for d in days]


def test_a_week_without_sales_is_zero_net_sales_and_no_average_order_value() -> None:
    frame = pl.DataFrame(
        {
            "period": weeks(6, 13, 27),  # no row for the week of the 20th: no sales
            "currency": ["try"] * 3,
            "net_sales": [Decimal("100.00"), Decimal("80.00"), Decimal("90.00")],
            "orders": [2, 1, 3],
            "average_order_value": [50.0, 80.0, 30.0],
        }
    )
    (sales,) = charts.revenue_chart(frame).data
    assert list(sales.x) == weeks(6, 13, 20, 27)
    assert list(sales.y) == [100.0, 80.0, 0.0, 90.0]  # no sales: 0, not a line across
    (orders,) = charts.revenue_chart(frame, measure="orders").data
    assert list(orders.y) == [2, 1, 0, 3]
    (aov,) = charts.aov_chart(frame).data
    assert list(aov.x) == weeks(6, 13, 20, 27)
    assert list(aov.y) == [50.0, 80.0, None, 30.0]  # no orders: no average, a gap
    assert aov.connectgaps is False


def test_partial_periods_are_drawn_dotted_and_hollow_when_the_frame_says_so() -> None:
    frame = pl.DataFrame(
        {
            "period": weeks(6, 13, 20, 27),
            "currency": ["try"] * 4,
            "net_sales": [Decimal("40.00"), Decimal("100.00"), Decimal("90.00"), Decimal("10.00")],
            "average_order_value": [40.0, 50.0, 45.0, 10.0],
            "partial": [True, False, False, True],  # the data begins and ends mid-week
        }
    )
    for fig in (charts.revenue_chart(frame), charts.aov_chart(frame)):
        whole, *rest = fig.data
        assert list(whole.x) == weeks(6, 13, 20, 27) and whole.y[0] is None is whole.y[3]
        assert whole.y[1:3] != (None, None) and whole.showlegend is not False
        dotted = [t for t in rest if t.line.dash == "dot"]
        assert [list(t.x) for t in dotted] == [weeks(6, 13), weeks(20, 27)]
        (hollow,) = [t for t in rest if t.mode == "markers"]
        assert list(hollow.x) == weeks(6, 27) and hollow.marker.symbol == "circle-open"
        assert "(partial)" in hollow.hovertemplate
        assert {t.line.color or t.marker.color for t in fig.data} == {whole.line.color}
        assert all(t.showlegend is False for t in rest)
    (only,) = charts.revenue_chart(frame.drop("partial")).data  # no column: as before
    assert list(only.y) == [40.0, 100.0, 90.0, 10.0] and only.line.dash is None


def test_the_title_and_time_axis_say_the_period_and_no_more_than_is_known(shop: Shop) -> None:
    weekly = revenue(shop.tables["polars"], by="week")
    fig = charts.revenue_chart(weekly, tz="Europe/Istanbul")
    assert fig.layout.title.text == "Net sales per week"
    assert fig.layout.xaxis3.title.text == "Week (Europe/Istanbul)"
    assert charts.revenue_chart(weekly).layout.xaxis3.title.text == "Week"  # no zone claimed
    monthly = revenue(shop.tables["polars"], by="month", dims=["channel"])
    fig = charts.revenue_chart(monthly, color="channel")
    assert fig.layout.title.text == "Net sales per month by channel"
    assert charts.aov_chart(weekly).layout.title.text == "Average order value per week"
    # two months three apart look like quarters: by says what they are, and fills the gap
    months = revenue(shop.tables["polars"], by="month")
    ends = months.filter(pl.col("period").dt.month().is_in([10, 1]))
    assert charts.revenue_chart(ends).layout.title.text == "Net sales per quarter"
    fig = charts.revenue_chart(ends, by="month")
    assert fig.layout.title.text == "Net sales per month"
    assert len(lines(fig)[1]["x"]) == 4 and list(lines(fig)[1]["y"])[1:3] == [0.0, 0.0]
    one = weekly.filter(pl.col("period") == weekly["period"].min())
    assert charts.revenue_chart(one).layout.title.text == "Net sales over time"


@pytest.mark.parametrize("engine", ENGINES)
def test_discount_depth_chart_shows_the_share_of_items_per_bucket(shop: Shop, engine: str) -> None:
    frame = discount_depth(shop.tables[engine], by="year")
    first = min(r["period"] for r in records(frame))
    one = nw.from_native(frame).filter(nw.col("period") == first).to_native()
    fig = charts.discount_depth_chart(one)  # a single period: the buckets across
    data = fig.to_dict()["data"]
    assert [t["name"] for t in data] == [
        "Basket discount (of sale price)",
        "Markdown (of list price)",
    ]
    sold = sum(r["items"] for r in records(one) if r["depth"] == "discount")
    assert sold > 0
    for trace in data:
        assert sum(trace["y"]) == pytest.approx(100.0)
        assert sum(trace["customdata"]) == sold
    assert next(iter(data[0]["x"])) == "0%"
    assert fig.layout.yaxis.title.text == "Share of items sold (%)"


@pytest.mark.parametrize("engine", ENGINES)
def test_discount_depth_chart_shows_each_period(shop: Shop, engine: str) -> None:
    frame = discount_depth(shop.tables[engine], by="quarter")
    fig = charts.discount_depth_chart(frame, tz="Europe/Istanbul")
    assert fig.layout.title.text == "Discount and markdown depth per quarter"
    headings = [a.text for a in fig.layout.annotations]
    assert headings == ["Basket discount (of sale price)", "Markdown (of list price)"]
    assert fig.layout.xaxis2.title.text == "Quarter (Europe/Istanbul)"
    sold = sum(1 for u in shop.truth if u.kind == "sale")
    for axis in ("y", "y2"):  # a panel per depth, a bar per quarter stacked by bucket
        panel = [t for t in fig.to_dict()["data"] if t["yaxis"] == axis]
        assert [t["name"] for t in panel][:2] == ["0%", "0-10%"]
        assert all(list(t["x"]) == ["2024 Q4", "2025 Q1"] for t in panel)
        for quarter in (0, 1):
            assert sum(t["y"][quarter] for t in panel) == pytest.approx(100.0)
        assert sum(sum(t["customdata"]) for t in panel) == sold


def test_campaign_days_chart_marks_the_campaign_days(shop: Shop) -> None:
    frame = campaign_days(shop.tables["pandas"])
    fig = charts.campaign_days_chart(frame)
    data = fig.to_dict()["data"]
    names = [t["name"] for t in data]
    assert names == [
        "EUR",
        "EUR campaign days",
        "TRY",
        "TRY campaign days",
        "USD",
        "USD campaign days",
    ]
    campaign = {d.isoformat() for d in shop.world.campaign_days}
    for trace in data:
        assert ({*trace["text"]} <= campaign) == trace["name"].endswith("campaign days")
    assert sum(sum(t["x"]) for t in data) == sum(1 for u in shop.truth if u.kind == "sale")
    assert "TRY" in data[3]["hovertemplate"]
    assert fig.layout.xaxis.title.text == "Units sold per day"


def test_top_discounted_products_chart_draws_the_ranked_products(shop: Shop) -> None:
    frame = top_discounted_products(shop.tables["polars"], n=5)
    fig = charts.top_discounted_products_chart(frame)
    data = fig.to_dict()["data"]
    assert [t["name"] for t in data] == ["EUR", "TRY", "USD"]
    for trace in data:
        rows = frame.filter(pl.col("currency") == trace["name"].lower())
        assert list(trace["x"])[::-1] == rows["units_on_discount"].to_list()
        assert trace["y"][-1].endswith(f"({rows['sku'][0]})")  # the first drawn on top
        discounts = [-float(d) for d in rows["discounts"].to_list()]
        assert list(trace["customdata"])[::-1] == discounts
    assert fig.layout.title.text == "Products most sold on discount"


def test_every_discounted_product_gets_a_readable_label(shop: Shop) -> None:
    frame = top_discounted_products(shop.tables["polars"], n=10)
    fig = charts.top_discounted_products_chart(frame)
    # room under each panel for its x axis title and the next panel's currency heading
    assert_roomy(fig, panel=10 * 20, gap=90)
    layout = fig.to_dict()["layout"]
    for key in (k for k in layout if k.startswith("yaxis")):
        assert layout[key]["dtick"] == 1 and layout[key]["automargin"] is True
    for key in (k for k in layout if k.startswith("xaxis")):
        assert layout[key]["tickformat"] == ",d"  # units: no 0.5 ticks


def test_charts_do_not_change_their_input(shop: Shop) -> None:
    frame = revenue(shop.tables["pandas"], by="month")
    before = frame.copy(deep=True)
    charts.revenue_chart(frame)
    charts.aov_chart(frame)
    assert frame.equals(before)
    assert isinstance(frame["net_sales"].iloc[0], Decimal)
