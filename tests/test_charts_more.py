"""The lifecycle, customer and product charts, tested through their figure data."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import polars as pl
import pytest

from omsframe import charts
from omsframe.analysis import (
    RFM_SEGMENTS,
    abc_classes,
    cohorts,
    funnel,
    lead_time_summary,
    lead_times,
    new_vs_returning,
    return_rates,
    revenue,
    rfm,
    state_counts,
    time_in_state,
    top_products,
    transitions,
    webhook_health,
)
from omsframe.analysis.errors import AnalysisError
from omsframe.simulator import catalogue as cat
from tests.test_analysis_shop import ENGINES, Shop, records
from tests.test_charts import assert_roomy, without_city


@pytest.fixture(autouse=True)
def never_shown_or_written(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a chart function showed or wrote a figure")

    for method in ("show", "write_html", "write_image"):
        monkeypatch.setattr(go.Figure, method, refuse)


def data(fig: go.Figure) -> list[dict[str, Any]]:
    assert isinstance(fig, go.Figure)
    traces: list[dict[str, Any]] = fig.to_dict()["data"]
    return traces


def layout(fig: go.Figure) -> dict[str, Any]:
    result: dict[str, Any] = fig.to_dict()["layout"]
    return result


# --- the order lifecycle ----------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_the_funnel_chart_draws_the_worlds_stages(shop: Shop, engine: str) -> None:
    world, now = shop.world, shop.now_us
    reached: Counter[str] = Counter()
    for i in range(world.visible_orders(now)):
        states = {s for _, s in world.order_transitions(i, now)}
        reached["Placed"] += 1
        reached["Approved"] += 400 in states
        reached["Shipped"] += bool({500, 520} & states)
        reached["Delivered"] += 550 in states
        reached["cancelled"] += 100 in states
    fig = charts.funnel_chart(funnel(shop.tables[engine], by="month"))
    (trace,) = data(fig)
    assert trace["type"] == "funnel"
    assert trace["y"] == ["Placed", "Approved", "Shipped", "Delivered"]
    assert trace["x"] == [reached[s] for s in trace["y"]]
    assert f"Cancelled {reached['cancelled']} " in layout(fig)["title"]["text"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_state_counts_chart_draws_where_the_orders_are_now(shop: Shop, engine: str) -> None:
    frame = state_counts(shop.tables[engine], by="month", dims=["channel"])
    fig = charts.state_counts_chart(frame)
    (trace,) = data(fig)
    assert sum(trace["x"]) == shop.world.visible_orders(shop.now_us)  # months, channels summed
    codes = [label.split()[0] for label in trace["y"]]
    assert codes == sorted(codes, key=int, reverse=True)  # the first state on top
    assert "550 Delivered" in trace["y"]
    assert layout(fig)["title"]["text"] == "Orders in each state now"
    items = charts.state_counts_chart(state_counts(shop.tables[engine], of="items"), of="items")
    assert layout(items)["xaxis"]["title"]["text"] == "Items"


def test_the_funnel_chart_draws_a_funnel_per_channel(shop: Shop) -> None:
    frame = funnel(shop.tables["polars"], by=None, dims=["channel"])
    traces = data(charts.funnel_chart(frame, color="channel", title="By channel"))
    assert [t["name"] for t in traces] == sorted(c.name for c in cat.CHANNELS)
    assert sum(t["x"][0] for t in traces) == shop.world.visible_orders(shop.now_us)


@pytest.mark.parametrize("engine", ENGINES)
def test_orders_without_a_value_are_drawn_as_none_not_dropped(shop: Shop, engine: str) -> None:
    tables = without_city(shop.tables[engine])
    orders = shop.world.visible_orders(shop.now_us)
    traces = data(charts.funnel_chart(funnel(tables, by=None, dims=["city"]), color="city"))
    assert traces[-1]["name"] == "(none)" and traces[-1]["x"][0] == 20
    assert sum(t["x"][0] for t in traces) == orders
    per_order = lead_times(tables)
    boxes = data(charts.lead_time_chart(per_order, by="city"))
    assert boxes[-1]["name"] == "(none)"
    timed = [r for r in records(per_order) if r["placed_to_shipped_hours"] is not None]
    assert sum(len(b["y"]) for b in boxes) == len(timed)
    assert len(boxes[-1]["y"]) == sum(r["city"] is None for r in timed) > 0
    cancelled, _ = data(charts.return_rates_chart(return_rates(tables, dims=["city"])))
    assert cancelled["x"][-1] == "(none)" and "None" not in cancelled["x"]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_transition_heatmap_holds_every_change(shop: Shop, engine: str) -> None:
    frame = transitions(shop.tables[engine])
    (trace,) = data(charts.transition_heatmap(frame))
    assert trace["type"] == "heatmap"
    cells = [v for row in trace["z"] for v in row if v is not None]
    assert sum(cells) == sum(r["changes"] for r in records(frame))
    assert trace["y"][0] == "(first state)"
    assert "450 Preparing" in trace["y"] and "550 Delivered" in trace["x"]
    codes = [label.split()[0] for label in trace["x"]]
    assert codes == sorted(codes, key=int)
    shipped = trace["z"][trace["y"].index("450 Preparing")][trace["x"].index("500 Shipped")]
    assert shipped == next(
        r["changes"]
        for r in records(frame)
        if (r["from_state_code"], r["to_state_code"]) == ("450", "500")
    )
    assert None in trace["z"][0]  # impossible changes stay blank


def test_the_time_in_state_chart_draws_percentiles_of_finished_stays(shop: Shop) -> None:
    frame = records(time_in_state(shop.tables["pandas"]))
    traces = data(charts.time_in_state_chart(time_in_state(shop.tables["pandas"])))
    assert [t["name"] for t in traces] == ["p50", "p90", "p99"]
    finished = [r for r in frame if r["stays"] > 0]
    assert traces[0]["y"] == [r["p50_hours"] for r in finished]
    assert "400 Approved" in traces[0]["x"] and not any("100" in x for x in traces[0]["x"])


@pytest.mark.parametrize("engine", ENGINES)
def test_the_time_in_state_chart_draws_a_bar_per_dimension_value(shop: Shop, engine: str) -> None:
    frame = time_in_state(without_city(shop.tables[engine]), dims=["delivery_type"])
    fig = charts.time_in_state_chart(frame)
    traces = data(fig)
    types = sorted(d[0] for d in cat.DELIVERY_TYPES)
    assert [t["name"] for t in traces if t["showlegend"]] == types  # a colour per value
    assert layout(fig)["legend"]["title"]["text"] == "Delivery type"
    assert layout(fig)["title"]["text"] == "Time in state by delivery type"
    assert [a["text"] for a in layout(fig)["annotations"]] == ["p50", "p90", "p99"]
    finished = [r for r in records(frame) if r["stays"] > 0]
    for t in traces:  # each bar is its value's percentile, in its percentile's panel
        p = ["y", "y2", "y3"].index(t["yaxis"])
        mine = [r for r in finished if r["delivery_type"] == t["name"]]
        assert list(t["y"]) == [r[f"{('p50', 'p90', 'p99')[p]}_hours"] for r in mine]
        assert len(set(t["x"])) == len(t["x"])  # one bar per state and value
    assert len({t["marker"]["color"] for t in traces}) == len(types)
    order = layout(fig)["xaxis"]["categoryarray"]
    assert [x.split()[0] for x in order] == sorted((x.split()[0] for x in order), key=int)
    by_city = data(
        charts.time_in_state_chart(time_in_state(without_city(shop.tables[engine]), dims="city"))
    )
    assert by_city[-1]["name"] == "(none)"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_lead_time_chart_draws_a_box_per_value(shop: Shop, engine: str) -> None:
    per_order = lead_times(shop.tables[engine])
    rows = records(per_order)
    fig = charts.lead_time_chart(per_order, leg="shipped_to_delivered", by="delivery_type")
    traces = data(fig)
    assert [t["name"] for t in traces] == sorted(d[0] for d in cat.DELIVERY_TYPES)
    assert all(t["type"] == "box" for t in traces)
    for t in traces:
        expected = [
            r["shipped_to_delivered_hours"]
            for r in rows
            if r["delivery_type"] == t["name"] and r["shipped_to_delivered_hours"] is not None
        ]
        assert list(t["y"]) == expected
    assert layout(fig)["yaxis"]["title"]["text"] == "Shipped to delivered (hours)"
    (single,) = data(charts.lead_time_chart(per_order, by=None))
    assert len(single["y"]) == sum(r["placed_to_shipped_hours"] is not None for r in rows)


def test_the_webhook_chart_stacks_delivered_and_failed_events(shop: Shop) -> None:
    _, retries, delivered = shop.world.event_status(shop.now_us)
    fig = charts.webhook_health_chart(webhook_health(shop.tables["polars"], dims=["event_type"]))
    bars, line = data(fig)[:2], data(fig)[2]
    assert [b["name"] for b in bars] == ["Delivered", "Failed"]
    assert sum(bars[0]["y"]) == int(delivered.sum())
    assert sum(bars[1]["y"]) == len(delivered) - int(delivered.sum())
    assert sum(line["y"]) == int(retries.sum())
    assert layout(fig)["barmode"] == "stack"


def test_the_webhook_chart_counts_in_whole_numbers_from_zero() -> None:
    health = pl.DataFrame(
        {
            "period": [dt.datetime(2025, 1, d) for d in (6, 13, 20)],
            "delivered": [40, 52, 47],
            "failed": [1, 0, 2],
            "retries": [2, 0, 3],
        }
    )
    axes = layout(charts.webhook_health_chart(health))
    events, retries = axes["yaxis"], axes["yaxis2"]
    assert retries["title"]["text"] == "Retries" and retries["overlaying"] == "y"
    # not synced to the events axis (which gave ticks like 93.9, 74.3 ... -3.9)
    assert retries["tickmode"] == "linear" and retries["dtick"] == 1
    for axis in (events, retries):
        assert axis["rangemode"] == "nonnegative" and axis["tickformat"] == ",d"


def test_the_webhook_chart_shows_a_week_without_events_as_none() -> None:
    health = pl.DataFrame(
        {
            "period": [dt.datetime(2025, 1, d) for d in (6, 20, 27)],  # none the 13th
            "delivered": [40, 52, 47],
            "failed": [1, 0, 2],
            "retries": [2, 0, 3],
        }
    )
    fig = charts.webhook_health_chart(health, tz="Europe/Istanbul")
    delivered, _, retries = data(fig)
    assert list(retries["x"]) == [dt.datetime(2025, 1, d) for d in (6, 13, 20, 27)]
    assert list(retries["y"]) == [2, 0, 0, 3] and list(delivered["y"]) == [40, 0, 52, 47]
    assert layout(fig)["title"]["text"] == "Webhook deliveries per week"
    assert layout(fig)["xaxis"]["title"]["text"] == "Week (Europe/Istanbul)"


# --- customers and products -------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_the_cohort_heatmap_pools_currencies_for_retention(shop: Shop, engine: str) -> None:
    frame = cohorts(shop.tables[engine])
    (trace,) = data(charts.cohort_heatmap(frame))
    assert [row[0] for row in trace["z"]] == [100.0] * len(trace["y"])  # age 0: everyone
    rows = records(frame)
    first = rows[0]["cohort"]
    size = sum(r["cohort_customers"] for r in rows if r["cohort"] == first and r["age"] == 0)
    back = sum(r["customers"] for r in rows if r["cohort"] == first and r["age"] == 1)
    assert trace["z"][0][1] == pytest.approx(100 * back / size)


def cohort_rows(ages: dict[dt.datetime, dict[int, int]], size: int = 10) -> pl.DataFrame:
    """A hand-made cohorts frame: for each monthly cohort, customers back at each age."""
    records = []
    for cohort, back in ages.items():
        for age, customers in back.items():
            month = cohort.year * 12 + cohort.month - 1 + age
            period = dt.datetime(month // 12, month % 12 + 1, 1)
            records.append((cohort, age, period, "try", size, customers))
    names = ["cohort", "age", "period", "currency", "cohort_customers", "customers"]
    return pl.DataFrame(records, schema=names, orient="row")


def test_the_cohort_heatmap_shows_no_return_as_0_and_leaves_only_unreached_ages_blank() -> None:
    oct_, nov, dec = (dt.datetime(y, m, 1) for y, m in ((2024, 10), (2024, 11), (2024, 12)))
    # nobody came back in their first month after; December is the last month of the data
    frame = cohort_rows({oct_: {0: 10, 2: 2}, nov: {0: 10}, dec: {0: 10}})
    fig = charts.cohort_heatmap(frame)
    (trace,) = data(fig)
    assert trace["z"] == [[100.0, 0.0, 20.0], [100.0, 0.0, None], [100.0, None, None]]
    assert layout(fig)["xaxis"]["title"]["text"] == "Months since the first order"
    assert trace["text"] == [["100%", "0%", "20%"], ["100%", "0%", ""], ["100%", "", ""]]
    assert trace["texttemplate"] == "%{text}" and trace["hoverongaps"] is False


def test_a_wide_cohort_heatmap_is_tall_and_leaves_its_values_to_the_hover() -> None:
    months = [dt.datetime(2023 + m // 12, m % 12 + 1, 1) for m in range(23)]
    fig = charts.cohort_heatmap(cohort_rows({m: {0: 10, 1: 3} for m in months}))
    (trace,) = data(fig)
    assert len(trace["z"]) == 23 and len(trace["x"]) == 24  # ages 0 .. 23
    assert not trace.get("text") and not trace.get("texttemplate")  # 529: unreadably small
    assert "%{z" in trace["hovertemplate"]
    assert layout(fig)["height"] >= 23 * 20 + 180  # a readable row per cohort


def test_the_cohort_heatmap_keeps_money_apart_by_currency(shop: Shop) -> None:
    fig = charts.cohort_heatmap(cohorts(shop.tables["polars"]), value="net_sales")
    traces = data(fig)
    assert len(traces) == 3 and len({t["yaxis"] for t in traces}) == 3
    titles = [a["text"] for a in layout(fig)["annotations"]]
    assert titles == ["EUR", "TRY", "USD"]
    eur = sum(
        r["net_sales"] for r in records(cohorts(shop.tables["polars"])) if r["currency"] == "eur"
    )
    assert sum(v for row in traces[0]["z"] for v in row if v is not None) == pytest.approx(
        float(eur)
    )


def test_the_cohort_heatmap_counts_orders_across_currencies(shop: Shop) -> None:
    frame = cohorts(shop.tables["polars"])
    fig = charts.cohort_heatmap(frame, value="orders")
    (trace,) = data(fig)  # counts are not money: one panel, all currencies together
    assert not layout(fig).get("annotations")
    assert not any(c in trace["hovertemplate"] for c in ("EUR", "TRY", "USD"))
    assert "%{z:,.0f}" in trace["hovertemplate"]
    drawn = sum(v for row in trace["z"] for v in row if v is not None)
    assert drawn == sum(r["orders"] for r in records(frame))
    assert layout(fig)["title"]["text"] == "Orders by cohort"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_rfm_chart_counts_customers_per_segment(shop: Shop, engine: str) -> None:
    frame = rfm(shop.tables[engine])
    rows = records(frame)
    traces = data(charts.rfm_chart(frame))
    assert [t["name"] for t in traces] == ["EUR", "TRY", "USD"]
    for t in traces:
        counts = Counter(r["segment"] for r in rows if r["currency"] == t["name"].lower())
        assert dict(zip(t["y"], t["x"], strict=True)) == {s: counts.get(s, 0) for s in t["y"]}
    order = list(RFM_SEGMENTS)
    assert list(traces[0]["y"]) == sorted(traces[0]["y"], key=order.index, reverse=True)


def test_the_rfm_chart_counts_customers_in_whole_numbers_from_zero() -> None:
    frame = pl.DataFrame(
        {
            "segment": ["Champions", "Champions", "At Risk"],
            "currency": ["try", "try", "eur"],
            "monetary": [Decimal("10.00"), Decimal("20.00"), Decimal("5.00")],
        }
    )
    axis = layout(charts.rfm_chart(frame))["xaxis"]
    assert axis["title"]["text"] == "Customers"
    assert axis["tickformat"] == ",d" and axis["rangemode"] == "nonnegative"
    assert axis["tickmode"] == "linear" and axis["dtick"] == 1  # no 0.5 customers


def test_the_new_vs_returning_chart(shop: Shop) -> None:
    frame = new_vs_returning(shop.tables["pandas"])
    rows = records(frame)
    traces = data(charts.new_vs_returning_chart(frame))
    assert [t["name"] for t in traces] == ["New", "Returning"]
    assert sum(traces[0]["y"]) == sum(r["customers"] for r in rows if r["customer_type"] == "new")
    money = charts.new_vs_returning_chart(frame, measure="net_sales")
    assert len({t["yaxis"] for t in data(money)}) == 3


def test_the_new_vs_returning_chart_says_what_and_when(shop: Shop) -> None:
    frame = new_vs_returning(shop.tables["polars"], by="month")
    fig = charts.new_vs_returning_chart(frame, tz="Europe/Istanbul")
    assert layout(fig)["title"]["text"] == "New and returning customers per month"
    assert layout(fig)["xaxis"]["title"]["text"] == "Month (Europe/Istanbul)"
    months = sorted({r["period"] for r in records(frame)})
    assert data(fig)[0]["x"] == [f"{m:%b %Y}" for m in months]  # not Oct 1, Oct 31, Nov 30
    assert layout(fig)["xaxis"]["type"] == "category"
    assert layout(fig)["yaxis"]["tickformat"] == ",d"  # customers are whole
    money = charts.new_vs_returning_chart(frame, "net_sales")
    assert layout(money)["title"]["text"] == "Net sales of new and returning customers per month"
    assert layout(money)["xaxis3"]["title"]["text"] == "Month"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_return_rates_chart_names_the_weekdays(shop: Shop, engine: str) -> None:
    frame = return_rates(shop.tables[engine], dims=["weekday"], by="month")
    rows = records(frame)
    fig = charts.return_rates_chart(frame)
    cancelled, refunded = data(fig)
    assert cancelled["x"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]  # 1 is Monday
    assert layout(fig)["xaxis"]["type"] == "category"
    assert layout(fig)["xaxis"]["title"]["text"] == "Weekday placed"
    monday = [r for r in rows if r["weekday"] == 1]  # the months added together
    share = sum(r["units_refunded"] for r in monday) / sum(r["units"] for r in monday)
    assert refunded["y"][0] == pytest.approx(100 * share)
    by_channel = charts.return_rates_chart(return_rates(shop.tables[engine], dims=["channel"]))
    assert data(by_channel)[0]["x"] == sorted(c.name for c in cat.CHANNELS)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_top_products_chart_puts_the_best_seller_on_top(shop: Shop, engine: str) -> None:
    top = top_products(shop.tables[engine], n=5)
    rows = records(top)
    fig = charts.top_products_chart(top)
    traces = data(fig)
    assert [t["name"] for t in traces] == ["EUR", "TRY", "USD"]
    for t in traces:
        best = next(r for r in rows if r["currency"] == t["name"].lower() and r["rank"] == 1)
        assert t["y"][-1] == f"{best['product_name']} ({best['sku']})"
        assert t["x"][-1] == pytest.approx(float(best["net_sales"]))
    assert layout(fig)["xaxis"]["title"]["text"] == "Net sales (EUR)"


def test_the_top_products_chart_draws_a_rate_as_a_percentage(shop: Shop) -> None:
    top = top_products(shop.tables["polars"], n=5)
    fig = charts.top_products_chart(top, measure="cancel_rate")
    xaxes = [v for k, v in layout(fig).items() if k.startswith("xaxis")]
    assert [axis["title"]["text"] for axis in xaxes] == ["Cancel rate (%)"] * 3  # no currency
    assert all(axis["tickformat"] == ".0%" for axis in xaxes)
    orders = layout(charts.top_products_chart(top, measure="orders"))
    assert orders["xaxis"]["title"]["text"] == "Orders"  # a count: no currency either
    assert orders["xaxis"]["tickformat"] == ",d"  # whole orders, from zero


def test_the_top_products_chart_labels_all_ten_products(shop: Shop) -> None:
    fig = charts.top_products_chart(top_products(shop.tables["pandas"], n=10))
    assert [len(t["y"]) for t in data(fig)] == [10, 10, 10]
    assert_roomy(fig, panel=10 * 20, gap=90)  # 20 px a label; x title and heading between
    yaxes = [v for k, v in layout(fig).items() if k.startswith("yaxis")]
    assert all(axis["dtick"] == 1 and axis["automargin"] for axis in yaxes)


def test_the_abc_chart_climbs_to_the_whole(shop: Shop) -> None:
    traces = data(charts.abc_chart(abc_classes(shop.tables["polars"])))
    assert [t["name"] for t in traces] == ["EUR", "TRY", "USD"]
    for t in traces:
        assert list(t["y"]) == sorted(t["y"]) and t["y"][-1] == pytest.approx(100.0)
        assert {"A", "B", "C"} <= set(t["text"])


def test_the_charts_are_importable_from_omsframe_charts(tmp_path: Path) -> None:
    for name in (
        "state_counts_chart",
        "funnel_chart",
        "transition_heatmap",
        "time_in_state_chart",
        "lead_time_chart",
        "return_rates_chart",
        "webhook_health_chart",
        "cohort_heatmap",
        "rfm_chart",
        "new_vs_returning_chart",
        "top_products_chart",
        "abc_chart",
    ):
        assert name in charts.__all__ and callable(getattr(charts, name))
    assert list(tmp_path.iterdir()) == []


# --- what a chart says when it is given the wrong thing -------------------------------------------
@pytest.mark.parametrize("name", charts.__all__)
def test_a_chart_given_the_tables_says_which_frame_it_takes(shop: Shop, name: str) -> None:
    chart = getattr(charts, name)
    with pytest.raises(AnalysisError) as caught:
        chart(shop.tables["pandas"])
    message = str(caught.value)
    assert message.startswith(f"{name} takes the frame of omsframe.")
    assert ", got Tables; e.g. " in message and f"e.g. {name}(of." in message
    assert "pass omsframe.load" not in message  # the tables are what it was given


def test_a_chart_error_names_the_call_that_makes_its_frame(shop: Shop) -> None:
    tables = shop.tables["polars"]
    with pytest.raises(AnalysisError) as caught:
        charts.revenue_chart(tables)
    assert str(caught.value) == (
        "revenue_chart takes the frame of omsframe.revenue(...), got Tables; "
        "e.g. revenue_chart(of.revenue(tables, by='week'))"
    )
    with pytest.raises(AnalysisError, match=r"^webhook_health_chart needs column\(s\) period,"):
        charts.webhook_health_chart(webhook_health(tables, by=None))
    with pytest.raises(AnalysisError, match=r"call webhook_health with one, e\.g\. .*by='week'"):
        charts.webhook_health_chart(webhook_health(tables, by=None))
    monthly = revenue(tables, by="month")
    with pytest.raises(AnalysisError, match=r"^revenue_chart: color='city' is not a column.*"):
        charts.revenue_chart(monthly, color="city")
    with pytest.raises(AnalysisError, match=r"of\.revenue\(tables, \.\.\., dims=\['city'\]\)"):
        charts.revenue_chart(monthly, color="city")
    with pytest.raises(AnalysisError, match=r"measures=\['markdown'\]"):
        charts.revenue_chart(monthly, measure="markdown")
    with pytest.raises(AnalysisError, match=r"^aov_chart needs column\(s\) period, currency"):
        charts.aov_chart(lead_times(tables))
    with pytest.raises(AnalysisError, match=r"not lead_time_summary's"):
        charts.lead_time_chart(lead_time_summary(lead_times(tables)))
    with pytest.raises(AnalysisError, match=r"^funnel_chart: color='city'"):
        charts.funnel_chart(funnel(tables), color="city")
    # the analyses keep their own words about their own input
    with pytest.raises(AnalysisError, match=r"^data must be a pandas or polars DataFrame"):
        revenue(42, by="week")
