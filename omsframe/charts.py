"""Plotly figures for the analyses: each takes a helper's output and returns a ``go.Figure``.

Nothing is shown or written here: call ``fig.show()`` or ``fig.write_html(...)`` yourself.
Charts take pandas or polars frames alike. Money is drawn as floats (display only: the
frames keep exact decimals), and amounts in different currencies are never drawn on one
axis: each currency gets its own panel, its axis labelled with the currency, unless the
frame was converted with ``fx`` (then the label says so).

The order lifecycle charts (:func:`state_counts_chart`, :func:`funnel_chart`,
:func:`transition_heatmap`, :func:`time_in_state_chart`, :func:`lead_time_chart`,
:func:`return_rates_chart`, :func:`webhook_health_chart`) live in :mod:`omsframe.charts_states`,
the customer and product charts (:func:`cohort_heatmap`, :func:`rfm_chart`,
:func:`new_vs_returning_chart`, :func:`top_products_chart`, :func:`abc_chart`) in
:mod:`omsframe.charts_customers`; all are importable from here.

Shared arguments:
    title: The figure title (each chart has a sensible default).

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop); ``fig.show()`` would draw the figure:

    >>> import omsframe as of
    >>> fig = of.charts.revenue_chart(of.revenue(tables, by="week"))
    >>> type(fig).__name__, fig.layout.title.text
    ('Figure', 'Net sales per week')
"""

from __future__ import annotations

import itertools
from typing import Any

import narwhals as nw
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from omsframe._figures import COLOURS as _COLOURS
from omsframe._figures import TEMPLATE as _TEMPLATE
from omsframe._figures import Takes as _Takes
from omsframe._figures import bar_heights as _bar_heights
from omsframe._figures import column as _column
from omsframe._figures import count_axis as _count_axis
from omsframe._figures import currencies as _currencies
from omsframe._figures import floats as _floats
from omsframe._figures import label
from omsframe._figures import numeric as _numeric
from omsframe._figures import panels as _panels
from omsframe._figures import rows as _rows
from omsframe._figures import split as _split
from omsframe._figures import unit as _unit
from omsframe._figures import value_axis as _value_axis
from omsframe._time_axis import (
    axis_title,
    fill_periods,
    infer_period,
    period_label,
    period_line,
)
from omsframe.analysis._frames import Period
from omsframe.analysis.measures import MEASURES
from omsframe.charts_customers import (
    abc_chart,
    cohort_heatmap,
    new_vs_returning_chart,
    rfm_chart,
    top_products_chart,
)
from omsframe.charts_states import (
    funnel_chart,
    lead_time_chart,
    return_rates_chart,
    state_counts_chart,
    time_in_state_chart,
    transition_heatmap,
    webhook_health_chart,
)

__all__ = [
    "abc_chart",
    "aov_chart",
    "campaign_days_chart",
    "cohort_heatmap",
    "discount_depth_chart",
    "funnel_chart",
    "lead_time_chart",
    "new_vs_returning_chart",
    "return_rates_chart",
    "revenue_chart",
    "rfm_chart",
    "state_counts_chart",
    "time_in_state_chart",
    "top_discounted_products_chart",
    "top_products_chart",
    "transition_heatmap",
    "webhook_health_chart",
]

_DEPTHS = {"discount": "Basket discount (of sale price)", "markdown": "Markdown (of list price)"}
_SUMS = {*MEASURES, "orders", "units_ordered"}


def revenue_chart(
    revenue: Any,
    measure: str = "net_sales",
    color: str | None = None,
    title: str | None = None,
    *,
    by: Period | None = None,
    tz: str | None = None,
) -> go.Figure:
    """A measure of :func:`omsframe.revenue` over time: a line per currency (and ``color``).

    A period without a row (no sales) is drawn as 0 for a sum (``net_sales``, ``orders``...)
    and as a gap for a ratio, never as a line straight across. Where the frame has a
    ``partial`` column, its partial periods (the data ends or begins inside them) are drawn
    dotted with a hollow marker.

    Args:
        revenue: The output of :func:`omsframe.revenue`.
        measure: The column to draw (``net_sales``, ``gross_sales``, ``orders``...).
        color: A dimension of ``revenue`` to draw one line per value of (e.g. ``"channel"``);
            the rows without a value are a line too, ``(none)``.
        title: The figure title (default: "<Measure> per <period>", and "by <color>").
        by: The frame's period (default: what the periods' spacing says).
        tz: The time zone the periods are in, named on the time axis (default: not named).

    Returns:
        The figure: one panel per currency, its y axis labelled with the currency (for
        money: a count has none, and a share such as ``net_sales_change_pct`` is drawn as a
        percentage).

    Example:
        >>> weekly = of.revenue(tables, by="week", dims=["channel"])
        >>> fig = revenue_chart(weekly, color="channel", tz="Europe/Istanbul")
        >>> fig.layout.title.text, fig.layout.xaxis3.title.text
        ('Net sales per week by channel', 'Week (Europe/Istanbul)')
        >>> [a.text for a in fig.layout.annotations]  # a panel per currency
        ['EUR', 'TRY', 'USD']
        >>> [trace.name for trace in fig.data if trace.showlegend is not False]  # the lines
        ['EU Shop (EUR)', 'Mobile App TR (TRY)', 'Web Shop TR (TRY)', 'US Shop (USD)']
    """
    return _over_time(revenue, measure, color, title, by, tz, chart="revenue_chart")


def aov_chart(
    revenue: Any,
    color: str | None = None,
    title: str | None = None,
    *,
    by: Period | None = None,
    tz: str | None = None,
) -> go.Figure:
    """Average order value over time, from :func:`omsframe.revenue`, a panel per currency.

    Takes the arguments of :func:`revenue_chart`; a period without orders has no average
    order value and is a gap in the line.

    Example:
        >>> fig = aov_chart(of.revenue(tables, by="month"))
        >>> fig.layout.title.text, len([t for t in fig.data if t.showlegend is not False])
        ('Average order value per month', 3)
        >>> fig.layout.yaxis.title.text
        'Average order value (EUR)'
    """
    return _over_time(revenue, "average_order_value", color, title, by, tz, chart="aov_chart")


def _over_time(
    data: Any,
    measure: str,
    color: str | None,
    title: str | None,
    by: Period | None,
    tz: str | None,
    *,
    chart: str,
) -> go.Figure:
    takes = _Takes(chart, "revenue", "of.revenue(tables, by='week')")
    frame = takes.frame(data)
    takes.need(frame, ["period", "currency"])
    if chart == "revenue_chart":
        asked = f"ask for it: of.revenue(tables, ..., measures=[{measure!r}])"
        hint = asked if measure in MEASURES else None
        takes.choice(frame, "measure", measure, _numeric(frame), hint)
    takes.need(frame, [measure])
    if color is not None:
        takes.dimension(frame, "color", color)
    by = by or infer_period(_column(frame, "period"))
    partial = ["partial"] if "partial" in frame.columns else []
    # no row is no sales: 0 of a sum, but no ratio (average order value) at all
    fill = 0.0 if measure in _SUMS else None
    currencies = _currencies(frame)
    fig = _panels(currencies)
    colours = itertools.cycle(_COLOURS)
    for row, currency in enumerate(currencies, start=1):
        part = frame.filter(nw.col("currency") == currency)
        # a line per value of color, the rows without one too: "(none) (TRY)"
        groups = [(None, part)] if color is None else _split(part, color)
        for value, rows in groups:
            name = currency.upper() if value is None else f"{value} ({currency.upper()})"
            points = [
                (period, None if v is None else float(v), bool(flag and flag[0]))
                for period, v, *flag in _rows(rows, "period", measure, *partial)
            ]
            line = period_line(points, name=name, colour=next(colours), by=by, fill=fill)
            for trace in line:
                fig.add_trace(trace, row=row, col=1)
        fig.update_yaxes(row=row, col=1, **_value_axis(measure, _unit(frame, currency)))
    fig.update_xaxes(title_text=axis_title(by, tz), row=max(len(currencies), 1), col=1)
    default = f"{label(measure)} {f'per {by}' if by else 'over time'}"
    default += f" by {label(color).lower()}" if color else ""
    fig.update_layout(title=title or default, template=_TEMPLATE, hovermode="x unified")
    return fig


def discount_depth_chart(
    depth: Any, title: str | None = None, *, by: Period | None = None, tz: str | None = None
) -> go.Figure:
    """The share of items sold in each depth bucket, from :func:`omsframe.discount_depth`.

    Over several periods, a panel per depth (basket discount, markdown) with a stacked bar
    per period: its items' shares by bucket, deeper buckets darker. Over one period (or
    without ``period``), a bar series per depth across the buckets. The frame's dims are
    added together.

    Args:
        depth: The output of :func:`omsframe.discount_depth`.
        title: The figure title (default: "Discount and markdown depth", and the period).
        by: The frame's period (default: what the periods' spacing says).
        tz: The time zone the periods are in, named on the time axis (default: not named).

    Example:
        >>> depth = of.discount_depth(tables, by="month")
        >>> fig = discount_depth_chart(depth)
        >>> fig.layout.title.text
        'Discount and markdown depth per month'
        >>> [a.text for a in fig.layout.annotations]
        ['Basket discount (of sale price)', 'Markdown (of list price)']
        >>> [trace.name for trace in fig.data][:3]  # in each panel, a colour per bucket
        ['0%', '0-10%', '10-20%']
        >>> fig = discount_depth_chart(depth[depth.period == "2024-11-01"])
        >>> [trace.name for trace in fig.data]
        ['Basket discount (of sale price)', 'Markdown (of list price)']
        >>> list(fig.data[0].x)
        ['0%', '0-10%', '10-20%', '20-30%', '30-40%', '40-50%']
    """
    takes = _Takes("discount_depth_chart", "discount_depth", "of.discount_depth(tables)")
    frame = takes.frame(depth)
    takes.need(frame, ["depth", "bucket", "bucket_order", "items"])
    periods = _column(frame, "period") if "period" in frame.columns else []
    if len({p for p in periods if p is not None}) > 1:
        return _depth_per_period(frame, title, by, tz)
    counts = (
        frame.group_by("depth", "bucket", "bucket_order")
        .agg(nw.col("items").sum())
        .sort("depth", "bucket_order")
    )
    fig = go.Figure()
    for kind in sorted(counts.get_column("depth").unique().to_list()):
        rows = counts.filter(nw.col("depth") == kind)
        items = rows.get_column("items").to_list()
        total = sum(items) or 1
        fig.add_trace(
            go.Bar(
                x=rows.get_column("bucket").to_list(),
                y=[100 * n / total for n in items],
                customdata=items,
                name=_DEPTHS.get(kind, str(kind)),
                hovertemplate="%{x}: %{y:.1f}% of items (%{customdata} items)<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or "Discount and markdown depth",
        xaxis_title="Depth bucket",
        yaxis_title="Share of items sold (%)",
        barmode="group",
        template=_TEMPLATE,
    )
    return fig


def _depth_per_period(
    frame: Any, title: str | None, by: Period | None, tz: str | None
) -> go.Figure:
    """A panel per depth, a bar per period stacked by bucket: how the depth moved."""
    counts = frame.group_by("period", "depth", "bucket", "bucket_order").agg(nw.col("items").sum())
    all_periods = {p for p in _column(counts, "period") if p is not None}
    by = by or infer_period(all_periods)
    kinds = sorted({k for k in _column(counts, "depth") if k is not None})
    buckets = sorted({(o, b) for o, b in _rows(counts, "bucket_order", "bucket")})
    colours = dict(zip(buckets, _depth_colours(len(buckets)), strict=True))
    fig = _panels(kinds, headings=[_DEPTHS.get(k, str(k)) for k in kinds])
    for row, kind in enumerate(kinds, start=1):
        part = counts.filter(nw.col("depth") == kind)
        totals: dict[Any, int] = {}
        for period, items in _rows(part, "period", "items"):
            totals[period] = totals.get(period, 0) + items
        cells = {(p, o): n for p, o, n in _rows(part, "period", "bucket_order", "items")}
        # a period without sales keeps its place on the axis, empty
        periods = [p for (p,) in fill_periods([(p,) for p in all_periods], by, ())]
        for order, bucket in buckets:
            items = [cells.get((p, order), 0) for p in periods]
            fig.add_trace(
                go.Bar(
                    x=[period_label(p, by) for p in periods],
                    y=[
                        100 * n / totals[p] if totals.get(p) else None
                        for n, p in zip(items, periods, strict=True)
                    ],
                    customdata=items,
                    name=bucket,
                    legendgroup=bucket,
                    showlegend=row == 1,
                    marker_color=colours[order, bucket],
                    hovertemplate=f"{bucket}: %{{y:.1f}}% of items (%{{customdata}} items)"
                    "<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text="Share of items (%)", range=[0, 100], row=row, col=1)
    fig.update_xaxes(type="category")  # a bar per period, named as one
    fig.update_xaxes(title_text=axis_title(by, tz), row=len(kinds), col=1)
    fig.update_layout(
        title=title or f"Discount and markdown depth {f'per {by}' if by else 'over time'}",
        barmode="stack",
        legend={"title": {"text": "Depth bucket"}, "traceorder": "reversed"},  # as stacked
        template=_TEMPLATE,
        hovermode="x unified",
    )
    return fig


def _depth_colours(count: int) -> list[str]:
    """Grey for no discount, then lighter to darker blue as the buckets deepen."""
    blues = sample_colorscale(
        "Blues", [0.3 + 0.7 * i / max(count - 2, 1) for i in range(count - 1)]
    )
    return ["#c8c8c8", *blues][:count]


def campaign_days_chart(days: Any, title: str | None = None) -> go.Figure:
    """Discount rate against units sold per day, from :func:`omsframe.campaign_days`.

    One marker series per currency; campaign days as diamonds. Rates and units are not
    money, so currencies share the axes; the hover shows gross sales in their currency.

    Example:
        >>> fig = campaign_days_chart(of.campaign_days(tables))
        >>> [trace.name for trace in fig.data]
        ['EUR', 'EUR campaign days', 'TRY', 'TRY campaign days', 'USD', 'USD campaign days']
    """
    takes = _Takes("campaign_days_chart", "campaign_days", "of.campaign_days(tables)")
    frame = takes.frame(days)
    takes.need(frame, ["day", "currency", "units", "discount_rate", "gross_sales"])
    flagged = "campaign" in frame.columns
    fig = go.Figure()
    for currency in _currencies(frame):
        for campaign in (False, True) if flagged else (False,):
            rows = frame.filter(nw.col("currency") == currency)
            if flagged:
                rows = rows.filter(nw.col("campaign") == campaign)
            if not rows.shape[0]:
                continue
            name = currency.upper() + (" campaign days" if campaign else "")
            fig.add_trace(
                go.Scatter(
                    x=rows.get_column("units").to_list(),
                    y=[100 * r for r in _floats(rows, "discount_rate")],
                    mode="markers",
                    marker={"symbol": "diamond" if campaign else "circle", "size": 9},
                    name=name,
                    text=[f"{d:%Y-%m-%d}" for d in rows.get_column("day").to_list()],
                    customdata=_floats(rows, "gross_sales"),
                    hovertemplate=(
                        "%{text}: %{x} units, %{y:.1f}% discount, gross sales "
                        f"%{{customdata:,.2f}} {currency.upper()}<extra></extra>"
                    ),
                )
            )
    fig.update_layout(
        title=title or "Discount depth against units sold per day",
        xaxis_title="Units sold per day",
        yaxis_title="Discount rate (% of gross sales)",
        template=_TEMPLATE,
    )
    return fig


def top_discounted_products_chart(top: Any, title: str | None = None) -> go.Figure:
    """Units sold on discount per product, from :func:`omsframe.top_discounted_products`.

    Horizontal bars, one panel per currency (the same product can sell in several).

    Example:
        >>> fig = top_discounted_products_chart(of.top_discounted_products(tables, n=5))
        >>> fig.layout.title.text, [len(trace.y) for trace in fig.data]
        ('Products most sold on discount', [5, 5, 5])
    """
    takes = _Takes(
        "top_discounted_products_chart",
        "top_discounted_products",
        "of.top_discounted_products(tables)",
    )
    frame = takes.frame(top)
    takes.need(frame, ["sku", "product_name", "currency", "units_on_discount", "discounts"])
    currencies = _currencies(frame)
    parts = [frame.filter(nw.col("currency") == currency) for currency in currencies]
    fig = _panels(currencies, shared_x=False, heights=_bar_heights([p.shape[0] for p in parts]))
    for row, (currency, rows) in enumerate(zip(currencies, parts, strict=True), start=1):
        # the frame is ranked; reversed, the first product is drawn at the top
        names = rows.get_column("product_name").to_list()[::-1]
        skus = rows.get_column("sku").to_list()[::-1]
        fig.add_trace(
            go.Bar(
                x=rows.get_column("units_on_discount").to_list()[::-1],
                y=[f"{n} ({s})" for n, s in zip(names, skus, strict=True)],
                orientation="h",
                name=currency.upper(),
                customdata=[-d for d in _floats(rows, "discounts")][::-1],
                hovertemplate=(
                    "%{y}: %{x} units on discount, discounts "
                    f"%{{customdata:,.2f}} {currency.upper()}<extra></extra>"
                ),
            ),
            row=row,
            col=1,
        )
        most = max(rows.get_column("units_on_discount").to_list(), default=0)
        fig.update_xaxes(title_text="Units sold on discount", row=row, col=1, **_count_axis(most))
    fig.update_yaxes(tickmode="linear", dtick=1)  # a label for every bar: the panel fits them
    fig.update_layout(
        title=title or "Products most sold on discount", template=_TEMPLATE, showlegend=False
    )
    return fig
