"""Plotly figures for customers and products: cohorts, RFM segments, new vs returning, top sellers.

Each takes a helper's output (pandas or polars) and returns a ``go.Figure``; nothing is shown
or written. Counts of customers may share an axis across currencies; money never does (a
panel per currency). Re-exported by :mod:`omsframe.charts`.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> fig = of.charts.cohort_heatmap(of.cohorts(tables))
    >>> type(fig).__name__, fig.layout.title.text
    ('Figure', 'Cohort retention (%)')
    >>> fig.data[0].y
    ('2024-10-01', '2024-11-01', '2024-12-01', '2025-01-01')
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import narwhals as nw
import plotly.graph_objects as go

from omsframe._figures import (
    PANEL_HEIGHT,
    TEMPLATE,
    Takes,
    bar_heights,
    column,
    count_axis,
    currencies,
    floats,
    label,
    numeric,
    panels,
    rows,
    value_axis,
)
from omsframe._figures import kind as column_kind
from omsframe._time_axis import (
    axis_title,
    fill_periods,
    infer_period,
    period_index,
    period_label,
)
from omsframe.analysis._frames import Period
from omsframe.analysis.rfm import RFM_SEGMENTS

__all__ = [
    "abc_chart",
    "cohort_heatmap",
    "new_vs_returning_chart",
    "rfm_chart",
    "top_products_chart",
]

_COUNTS = ("customers", "cohort_customers", "orders")
_MONEY = ("net_sales", "net_sales_per_customer")
CELL_LABELS_UP_TO = 12
"""The widest cohort matrix (in ages) whose cells are labelled; a wider one is colour only."""
CELL_HEIGHT = 26
"""Pixels per cohort: a row of the heatmap."""
NOT_REACHED = "#e0e0e0"
"""The colour of a cohort's ages not reached yet (the background: no cell is drawn there)."""


def cohort_heatmap(
    cohorts: Any,
    value: str = "retention",
    title: str | None = None,
    *,
    by: Period | None = None,
) -> go.Figure:
    """The cohort matrix of :func:`omsframe.cohorts`: cohorts down, ages across.

    An age a cohort has reached without orders is 0 (shown as "0%"); only ages it has not
    reached yet (past the frame's last period) stay blank. Up to
    :data:`CELL_LABELS_UP_TO` ages each cell is labelled; a wider matrix is coloured only,
    its values in the hover.

    Args:
        cohorts: The output of :func:`omsframe.cohorts`.
        value: ``"retention"`` (share of the cohort ordering again, in %), a count
            (``"customers"``, ``"cohort_customers"``, ``"orders"``), all currencies
            together, or money (``"net_sales"``, ``"net_sales_per_customer"``): a panel per
            currency, the currency in the hover.
        title: The figure title (default: "Cohort retention (%)", or "<Value> by cohort").
        by: The cohort period (default: what the cohorts' and periods' spacing says).

    Example:
        >>> cohort_heatmap(of.cohorts(tables)).layout.title.text
        'Cohort retention (%)'
        >>> fig = cohort_heatmap(of.cohorts(tables), value="orders")  # counts: one panel
        >>> fig.layout.title.text, len(fig.data), fig.layout.annotations
        ('Orders by cohort', 1, ())
        >>> fig = cohort_heatmap(of.cohorts(tables), value="net_sales")
        >>> fig.layout.title.text, [a.text for a in fig.layout.annotations]
        ('Net sales by cohort', ['EUR', 'TRY', 'USD'])
        >>> [len(row) for row in fig.data[1].z]  # ages reached: 3, 2, 1, 0 months on
        [4, 4, 4, 4]
        >>> fig.data[1].z[3][1] is None  # the last cohort has not reached age 1 yet
        True
    """
    takes = Takes("cohort_heatmap", "cohorts", "of.cohorts(tables)")
    frame = takes.frame(cohorts)
    takes.need(frame, ["cohort", "age", "currency", "customers", "cohort_customers"])
    if value != "retention":
        takes.choice(frame, "value", value, ["retention", *_COUNTS, *_MONEY])
    if value == "retention" or value in _COUNTS:
        groups = [("", _pooled(frame, value))]
    else:
        groups = []
        for currency in currencies(frame):
            part = frame.filter(nw.col("currency") == currency)
            cells = {(c, a): v for c, a, v in rows(part, "cohort", "age", value)}
            groups.append(
                (currency, {k: None if v is None else float(v) for k, v in cells.items()})
            )
    by = by or _cohort_period(frame)
    reached = _ages_reached(frame, by)
    starts = sorted({c for _, cells in groups for c, _ in cells})
    oldest = max([a for _, cells in groups for _, a in cells] + list(reached.values()), default=-1)
    ages = list(range(oldest + 1))
    labelled = len(ages) <= CELL_LABELS_UP_TO
    fig = panels(
        [g[0] for g in groups] if len(groups) > 1 else [],
        heights=[max(PANEL_HEIGHT, CELL_HEIGHT * len(starts))] * len(groups),
    )
    fmt = "{:.0f}%" if value == "retention" else "{:,.0f}"
    digits = ",.0f" if value in _COUNTS else ",.2f"  # in the hover: counts are whole
    for row, (currency, cells) in enumerate(groups, start=1):
        unit = "%" if value == "retention" else f" {currency.upper()}" if currency else ""
        z = [
            [cells.get((c, a), 0.0 if a <= reached.get(c, -1) else None) for a in ages]
            for c in starts
        ]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=ages,
                y=[f"{c:%Y-%m-%d}" for c in starts],
                colorscale="Blues",
                # labels of their own, so a cell not reached yet stays blank (not "%")
                text=[["" if v is None else fmt.format(v) for v in line] for line in z]
                if labelled
                else None,
                texttemplate="%{text}" if labelled else None,
                textfont={"size": 12},
                hoverongaps=False,
                hovertemplate=f"cohort %{{y}}, age %{{x}}: %{{z:{digits}}}{unit}<extra></extra>",
                showscale=row == 1,
            ),
            row=row,
            col=1,
        )
        fig.update_yaxes(
            title_text="Cohort (first order)",
            type="category",  # every cohort labelled, as a date
            autorange="reversed",
            row=row,
            col=1,
        )
    fig.update_xaxes(showgrid=False, **({"dtick": 1} if len(ages) <= 24 else {}))
    fig.update_yaxes(showgrid=False)
    ages_title = f"{by.capitalize() if by else 'Period'}s since the first order"
    fig.update_xaxes(title_text=ages_title, row=max(len(groups), 1), col=1)
    default = "Cohort retention (%)" if value == "retention" else f"{label(value)} by cohort"
    fig.update_layout(
        title={"text": title or default, "subtitle": {"text": "Grey: ages not reached yet"}},
        template=TEMPLATE,
        plot_bgcolor=NOT_REACHED,
    )
    return fig


def _cohort_period(frame: Any) -> Period | None:
    """The cohorts' period, from the spacing of their starts and calendar periods."""
    periods = column(frame, "period") if "period" in frame.columns else []
    return infer_period([*column(frame, "cohort"), *periods])


def _ages_reached(frame: Any, by: Period | None) -> dict[Any, int]:
    """The oldest age each cohort has reached by the frame's last period (none unknown)."""
    if "period" not in frame.columns or by is None:
        return {}
    last = max((p for p in column(frame, "period") if p is not None), default=None)
    if last is None:
        return {}
    end = period_index(last, by)
    return {c: end - period_index(c, by) for c in set(column(frame, "cohort")) if c is not None}


def _pooled(frame: Any, value: str) -> dict[tuple[Any, int], float | None]:
    """A count (or retention in %) per cohort and age, all currencies together."""
    sizes: dict[Any, int] = defaultdict(int)
    active: dict[tuple[Any, int], int] = defaultdict(int)
    count = "customers" if value == "retention" else value
    for cohort, age, n, size in rows(frame, "cohort", "age", count, "cohort_customers"):
        active[cohort, age] += n or 0
        if age == 0:
            sizes[cohort] += size
    if value != "retention":
        return {k: float(v) for k, v in active.items()}
    return {(c, a): 100 * n / sizes[c] if sizes[c] else None for (c, a), n in active.items()}


def rfm_chart(rfm: Any, title: str | None = None) -> go.Figure:
    """Customers per RFM segment, a bar per currency, from :func:`omsframe.rfm`.

    Segments in :data:`~omsframe.analysis.RFM_SEGMENTS` order (best first); the hover gives
    the segment's net sales in its currency.

    Example:
        >>> fig = rfm_chart(of.rfm(tables, as_of="2025-01-15"))
        >>> [trace.name for trace in fig.data]
        ['EUR', 'TRY', 'USD']
        >>> trace = fig.data[1]  # the best segment is drawn on top
        >>> trace.name, trace.y[-1], trace.x[-1]
        ('TRY', 'Champions', 15)
    """
    takes = Takes("rfm_chart", "rfm", "of.rfm(tables)")
    frame = takes.frame(rfm)
    takes.need(frame, ["segment", "currency", "monetary"])
    counts = (
        frame.group_by("currency", "segment")
        .agg(nw.len().alias("customers"), nw.col("monetary").sum())
        .with_columns(nw.col("monetary").cast(nw.Float64))
    )
    order = [s for s in RFM_SEGMENTS if s in set(counts.get_column("segment").to_list())]
    fig = go.Figure()
    for currency in currencies(counts):
        cells = {
            s: (n, m)
            for s, n, m in rows(
                counts.filter(nw.col("currency") == currency), "segment", "customers", "monetary"
            )
        }
        fig.add_trace(
            go.Bar(
                y=order[::-1],
                x=[cells.get(s, (0, 0.0))[0] for s in order[::-1]],
                orientation="h",
                name=currency.upper(),
                customdata=[cells.get(s, (0, 0.0))[1] for s in order[::-1]],
                hovertemplate=(
                    "%{y}: %{x} customers, net sales "
                    f"%{{customdata:,.2f}} {currency.upper()}<extra></extra>"
                ),
            )
        )
    most = max(column(counts, "customers"), default=0)
    fig.update_layout(
        title=title or "Customers by RFM segment",
        xaxis={"title": "Customers", **count_axis(most)},  # whole customers, from zero
        barmode="group",
        template=TEMPLATE,
    )
    return fig


def new_vs_returning_chart(
    mix: Any,
    measure: str = "customers",
    title: str | None = None,
    *,
    by: Period | None = None,
    tz: str | None = None,
) -> go.Figure:
    """New and returning customers (or net sales) per period (:func:`omsframe.new_vs_returning`).

    Stacked bars per customer type; counts add currencies together, ``net_sales`` gets a
    panel per currency.

    Args:
        mix: The output of :func:`omsframe.new_vs_returning`.
        measure: ``"customers"``, ``"orders"`` or ``"net_sales"``.
        title: The figure title (default: says the measure and the period).
        by: The frame's period (default: what the periods' spacing says).
        tz: The time zone the periods are in, named on the time axis (default: not named).

    Example:
        >>> fig = new_vs_returning_chart(of.new_vs_returning(tables), "net_sales")
        >>> fig.layout.title.text
        'Net sales of new and returning customers per month'
        >>> [trace.name for trace in fig.data if "TRY" in trace.name]
        ['New (TRY)', 'Returning (TRY)']
        >>> [a.text for a in fig.layout.annotations]
        ['EUR', 'TRY', 'USD']
    """
    takes = Takes("new_vs_returning_chart", "new_vs_returning", "of.new_vs_returning(tables)")
    frame = takes.frame(mix)
    takes.need(frame, ["period", "customer_type", "currency"])
    takes.choice(frame, "measure", measure, ["customers", "orders", "net_sales"])
    by = by or infer_period(column(frame, "period"))
    # a bar per period, named as one; a period without orders keeps its place, empty
    starts = {p for p in column(frame, "period") if p is not None}
    periods = [p for (p,) in fill_periods([(p,) for p in starts], by, ())]
    money = measure not in _COUNTS
    names = currencies(frame) if money else [""]
    fig = panels(names)
    for row, currency in enumerate(names, start=1):
        part = frame.filter(nw.col("currency") == currency) if money else frame
        per = (
            part.group_by("period", "customer_type")
            .agg(nw.col(measure).sum())
            .with_columns(nw.col(measure).cast(nw.Float64))
        )
        cells = {(p, k): v for p, k, v in rows(per, "period", "customer_type", measure)}
        for kind in ("new", "returning", "unknown"):
            if not any(k == kind for _, k in cells):
                continue
            fig.add_trace(
                go.Bar(
                    x=[period_label(p, by) for p in periods],
                    y=[cells.get((p, kind)) for p in periods],
                    name=f"{kind.capitalize()}{f' ({currency.upper()})' if money else ''}",
                ),
                row=row,
                col=1,
            )
        unit = f" ({currency.upper()})" if money else ""
        counts = {} if money else count_axis(_stacked_maximum(per, measure))
        fig.update_yaxes(title_text=f"{label(measure)}{unit}", row=row, col=1, **counts)
    fig.update_xaxes(type="category")
    fig.update_xaxes(title_text=axis_title(by, tz), row=len(names), col=1)
    period = f"per {by}" if by else "over time"
    default = (
        f"New and returning customers {period}"
        if measure == "customers"
        else f"{label(measure)} of new and returning customers {period}"
    )
    fig.update_layout(title=title or default, barmode="stack", template=TEMPLATE)
    return fig


def _stacked_maximum(per: Any, measure: str) -> float:
    """The tallest stack: the largest sum of ``measure`` over a period's customer types."""
    totals = per.group_by("period").agg(nw.col(measure).sum())
    return float(max(column(totals, measure), default=0) or 0)


def top_products_chart(top: Any, measure: str = "net_sales", title: str | None = None) -> go.Figure:
    """The best sellers of :func:`omsframe.top_products` as bars, a panel per currency.

    Args:
        top: The output of :func:`omsframe.top_products`.
        measure: The column to draw: money (``"net_sales"``...; its axis says the
            currency), a count (``"units"``, ``"orders"``...) or a rate (``"cancel_rate"``,
            ``"refund_rate"``: drawn as a percentage).
        title: The figure title (default: "Top products").

    Example:
        >>> fig = top_products_chart(of.top_products(tables, n=10))
        >>> fig.layout.title.text, [len(trace.y) for trace in fig.data]
        ('Top products', [10, 10, 10])
    """
    takes = Takes("top_products_chart", "top_products", "of.top_products(tables)")
    frame = takes.frame(top)
    takes.need(frame, ["currency"])
    takes.choice(frame, "measure", measure, numeric(frame))
    names = currencies(frame)
    parts = [frame.filter(nw.col("currency") == currency) for currency in names]
    parts = [part.sort("rank") if "rank" in part.columns else part for part in parts]
    fig = panels(names, shared_x=False, heights=bar_heights([part.shape[0] for part in parts]))
    for row, (currency, part) in enumerate(zip(names, parts, strict=True), start=1):
        labels = _product_labels(part)
        values = floats(part, measure)
        fig.add_trace(
            go.Bar(
                x=values[::-1],
                y=labels[::-1],  # the best seller on top
                orientation="h",
                name=currency.upper(),
            ),
            row=row,
            col=1,
        )
        fig.update_xaxes(row=row, col=1, **value_axis(measure, currency.upper()))
        drawn = [v for v in values if v is not None]
        if column_kind(measure) == "count" and all(v >= 0 and v.is_integer() for v in drawn):
            fig.update_xaxes(row=row, col=1, **count_axis(max(drawn, default=0)))
    fig.update_yaxes(tickmode="linear", dtick=1)  # a label for every bar: the panel fits them
    fig.update_layout(title=title or "Top products", template=TEMPLATE, showlegend=False)
    return fig


def abc_chart(abc: Any, title: str | None = None) -> go.Figure:
    """The Pareto curve of :func:`omsframe.abc_classes`: cumulative share by rank, per currency.

    Example:
        >>> fig = abc_chart(of.abc_classes(tables))
        >>> fig.layout.title.text
        'ABC: cumulative share of sales by product rank'
        >>> [trace.name for trace in fig.data]
        ['EUR', 'TRY', 'USD']
    """
    takes = Takes("abc_chart", "abc_classes", "of.abc_classes(tables)")
    frame = takes.frame(abc)
    takes.need(frame, ["rank", "currency", "cumulative_share", "abc_class"])
    fig = go.Figure()
    for currency in currencies(frame):
        part = frame.filter(nw.col("currency") == currency).sort("rank")
        fig.add_trace(
            go.Scatter(
                x=part.get_column("rank").to_list(),
                y=[100 * v for v in floats(part, "cumulative_share")],
                mode="lines",
                name=currency.upper(),
                text=part.get_column("abc_class").to_list(),
                hovertemplate="rank %{x}: %{y:.1f}% (class %{text})<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or "ABC: cumulative share of sales by product rank",
        xaxis_title="Product rank",
        yaxis_title="Cumulative share (%)",
        template=TEMPLATE,
    )
    return fig


def _product_labels(frame: Any) -> list[str]:
    if {"product_name", "sku"} <= set(frame.columns):
        return [f"{n} ({s})" for n, s in rows(frame, "product_name", "sku")]
    if "base_code" in frame.columns:
        return [str(b) for (b,) in rows(frame, "base_code")]
    return [str(p) for (p,) in rows(frame, "product_id")]
