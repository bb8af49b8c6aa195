"""Plotly figures for the order lifecycle: states, funnel, transitions, times, returns, webhooks.

Each takes a helper's output (pandas or polars) and returns a ``go.Figure``; nothing is shown
or written. Re-exported by :mod:`omsframe.charts`.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> fig = of.charts.funnel_chart(of.funnel(tables))
    >>> type(fig).__name__
    'Figure'
    >>> dict(zip(fig.data[0].y, fig.data[0].x))
    {'Placed': 300, 'Approved': 299, 'Shipped': 276, 'Delivered': 268}
"""

from __future__ import annotations

import itertools
import re
from typing import Any, Literal

import narwhals as nw
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from omsframe._figures import (
    COLOURS,
    MARGIN,
    NONE,
    TEMPLATE,
    Takes,
    bar_heights,
    column,
    count_axis,
    floats,
    label,
    panels,
    rows,
    split,
)
from omsframe._time_axis import axis_title, fill_periods, infer_period
from omsframe.analysis._frames import Period
from omsframe.analysis.errors import AnalysisError

__all__ = [
    "funnel_chart",
    "lead_time_chart",
    "return_rates_chart",
    "state_counts_chart",
    "time_in_state_chart",
    "transition_heatmap",
    "webhook_health_chart",
]

_STAGES = {"orders": "Placed", "approved": "Approved", "shipped": "Shipped"}
_STAGES["delivered"] = "Delivered"
_FIRST = "(first state)"
_STAY_COLUMNS = {"state_code", "state_name", "stays", "open", "mean_hours"}
_LEGS = ("placed_to_shipped", "shipped_to_delivered", "placed_to_delivered")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_RATE_COLUMNS = {
    "orders",
    "units",
    "units_cancelled",
    "units_refunded",
    "cancel_rate",
    "refund_rate",
    "orders_cancelled",
    "orders_refunded",
    "order_cancel_rate",
    "order_refund_rate",
}


def state_counts_chart(
    counts: Any, of: Literal["orders", "items"] = "orders", title: str | None = None
) -> go.Figure:
    """Where the orders (or items) are now: a bar per state, from :func:`omsframe.state_counts`.

    States in code order, the first on top, labelled with code and name; the frame's periods
    and dims are added together. The hover gives each state's share.

    Args:
        counts: The output of :func:`omsframe.state_counts`.
        of: What ``counts`` counts, as passed to it: ``"orders"`` or ``"items"``.
        title: The figure title (default: "Orders in each state now").

    Example:
        >>> fig = state_counts_chart(of.state_counts(tables))
        >>> fig.layout.title.text, fig.data[0].y[-1]
        ('Orders in each state now', '100 Cancelled')
        >>> sum(fig.data[0].x)
        300
    """
    takes = Takes("state_counts_chart", "state_counts", "of.state_counts(tables)")
    frame = takes.frame(counts)
    takes.need(frame, ["state_code", "count"])
    named = "state_name" in frame.columns
    per = frame.group_by("state_code").agg(
        nw.col("count").sum(), *([nw.col("state_name").max()] if named else [])
    )
    points = sorted(
        rows(per, "state_code", "count", *(["state_name"] if named else [])),
        key=lambda p: _code_order(p[0]),
    )[::-1]  # drawn bottom up: the first state on top
    labels = [
        _FIRST if p[0] is None else f"{p[0]} {p[2]}" if named and p[2] else str(p[0])
        for p in points
    ]
    total = sum(p[1] for p in points)
    fig = go.Figure(
        go.Bar(
            x=[p[1] for p in points],
            y=labels,
            orientation="h",
            customdata=[100 * p[1] / total if total else None for p in points],
            hovertemplate="%{y}: %{x} (%{customdata:.1f}%)<extra></extra>",
        )
    )
    (height,) = bar_heights([len(points)])
    what = "Items" if of == "items" else "Orders"
    fig.update_layout(
        title=title or f"{what} in each state now",
        xaxis={"title": what, **count_axis(max((p[1] for p in points), default=0))},
        yaxis={"title": "State", "tickmode": "linear", "dtick": 1},
        height=height + MARGIN["t"] + MARGIN["b"],
        margin=MARGIN,
        template=TEMPLATE,
    )
    return fig


def funnel_chart(funnel: Any, color: str | None = None, title: str | None = None) -> go.Figure:
    """Placed → approved → shipped → delivered, from :func:`omsframe.funnel`.

    Sums the frame's rows (periods and dims), or one funnel per value of ``color``; the
    cancelled and refunded orders are given under the title.

    Args:
        funnel: The output of :func:`omsframe.funnel`.
        color: A dimension of ``funnel`` to draw one funnel per value of (e.g. ``"channel"``);
            the orders without a value are a funnel too, ``(none)``.
        title: The figure title (default: "Order funnel").

    Example:
        >>> import polars as pl
        >>> frame = pl.DataFrame({"orders": [10], "approved": [9], "shipped": [8],
        ...     "delivered": [7], "cancelled": [1], "refunded": [1]})
        >>> funnel_chart(frame).to_dict()["data"][0]["x"]
        [10, 9, 8, 7]
    """
    takes = Takes("funnel_chart", "funnel", "of.funnel(tables)")
    frame = takes.frame(funnel)
    counts = [*_STAGES, "cancelled", "refunded"]
    takes.need(frame, counts)
    if color is not None:
        takes.dimension(frame, "color", color)
    groups = [("All orders", frame)] if color is None else split(frame, color)
    fig = go.Figure()
    for name, part in groups:
        totals = part.select(*[nw.col(c).sum() for c in counts]).row(0)
        fig.add_trace(
            go.Funnel(
                y=list(_STAGES.values()),
                x=[int(v or 0) for v in totals[:4]],
                name=name,
                textinfo="value+percent initial",
            )
        )
    placed, cancelled, refunded = (
        int(frame.select(nw.col(c).sum()).item() or 0) for c in ("orders", "cancelled", "refunded")
    )
    note = f"Cancelled {cancelled} ({_percent(cancelled, placed)}), "
    note += f"refunded {refunded} ({_percent(refunded, placed)})"
    fig.update_layout(
        title={"text": f"{title or 'Order funnel'}<br><sup>{note}</sup>"},
        template=TEMPLATE,
        showlegend=color is not None,
    )
    return fig


def transition_heatmap(
    transitions: Any, value: str = "changes", title: str | None = None
) -> go.Figure:
    """The from→to matrix of :func:`omsframe.transitions` as a heatmap.

    Rows are the states left (the order's first known state on top), columns the states
    entered, both in code order and labelled with code and name; empty cells stay blank.

    Args:
        transitions: The output of :func:`omsframe.transitions`.
        value: ``"changes"`` or ``"orders"``.
        title: The figure title (default: "State transitions").

    Example:
        >>> fig = transition_heatmap(of.transitions(tables))
        >>> fig.layout.title.text
        'State transitions'
        >>> fig.data[0].x[:3]
        ('50 Cancellation Waiting', '100 Cancelled', '200 Waiting')
    """
    takes = Takes("transition_heatmap", "transitions", "of.transitions(tables)")
    frame = takes.frame(transitions)
    takes.need(frame, ["from_state_code", "to_state_code"])
    takes.choice(frame, "value", value, ["changes", "orders"])
    named = {"from_state_name", "to_state_name"} <= set(frame.columns)
    pairs = rows(
        frame,
        "from_state_code",
        "to_state_code",
        value,
        *(["from_state_name", "to_state_name"] if named else []),
    )
    names: dict[str | None, str] = {None: _FIRST}
    for pair in pairs:
        for code, name in zip(pair[:2], pair[3:] if named else (None, None), strict=True):
            if code is not None:
                names[code] = f"{code} {name}" if name else str(code)
    sources = sorted({p[0] for p in pairs}, key=_code_order)
    targets = sorted({p[1] for p in pairs if p[1] is not None}, key=_code_order)
    cells = {(p[0], p[1]): p[2] for p in pairs}
    fig = go.Figure(
        go.Heatmap(
            z=[[cells.get((f, t)) for t in targets] for f in sources],
            x=[names[t] for t in targets],
            y=[names[f] for f in sources],
            colorscale="Blues",
            texttemplate="%{z}",
            hovertemplate=f"%{{y}} → %{{x}}: %{{z}} {value}<extra></extra>",
            colorbar={"title": label(value)},
        )
    )
    fig.update_layout(
        title=title or "State transitions",
        xaxis_title="To state",
        yaxis_title="From state",
        yaxis_autorange="reversed",
        template=TEMPLATE,
    )
    return fig


def time_in_state_chart(time_in_state: Any, title: str | None = None) -> go.Figure:
    """Hours in each state at the frame's percentiles, from :func:`omsframe.time_in_state`.

    Bars of each percentile the frame has (p50, p90 and p99 by default) of the finished
    stays, states in code order; states without a finished stay are left out. A frame with
    ``dims`` gets a panel per percentile and, in each, a bar per dimension value, coloured
    and in the legend (the stays without a value as ``(none)``): percentiles of different
    slices cannot be added together.

    Args:
        time_in_state: The output of :func:`omsframe.time_in_state`, with or without dims.
        title: The figure title (default: "Time in state", and "by <dims>").

    Example:
        >>> fig = time_in_state_chart(of.time_in_state(tables))
        >>> [trace.name for trace in fig.data]
        ['p50', 'p90', 'p99']
        >>> fig.data[0].x[-2:]
        ('544 Review Started', '550 Delivered')
        >>> fig = time_in_state_chart(of.time_in_state(tables, dims="delivery_type"))
        >>> fig.layout.title.text, [a.text for a in fig.layout.annotations]
        ('Time in state by delivery type', ['p50', 'p90', 'p99'])
        >>> [trace.name for trace in fig.data if trace.showlegend]
        ['click_and_collect', 'express', 'same_day', 'standard']
    """
    takes = Takes("time_in_state_chart", "time_in_state", "of.time_in_state(tables)")
    frame = takes.frame(time_in_state)
    takes.need(frame, ["state_code", "stays"])
    frame = frame.filter(nw.col("stays") > 0)
    named = "state_name" in frame.columns
    percentiles = sorted(
        (c for c in frame.columns if re.fullmatch(r"p\d+_hours", c)), key=lambda c: int(c[1:-6])
    )
    dims = [c for c in frame.columns if c not in _STAY_COLUMNS and c not in percentiles]
    stays = rows(frame, "state_code", *dims, "stays")
    names = column(frame, "state_name") if named else [None] * len(stays)
    labels = [f"{s[0]} {n}" if n else str(s[0]) for s, n in zip(stays, names, strict=True)]
    if not dims:
        fig = go.Figure()
        for hours in percentiles:
            p = hours.removesuffix("_hours")
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=floats(frame, hours),
                    name=p,
                    customdata=[s[-1] for s in stays],
                    hovertemplate=f"%{{x}}: {p} %{{y:.1f}} h"
                    " (%{customdata} stays)<extra></extra>",
                )
            )
        fig.update_layout(xaxis_title="State", yaxis_title="Hours in state")
    else:
        fig = _stays_by_dims(frame, dims, percentiles, stays, labels)
    fig.update_layout(
        title=title or f"Time in state{f' by {_dims_label(dims).lower()}' if dims else ''}",
        barmode="group",
        template=TEMPLATE,
    )
    return fig


def _stays_by_dims(
    frame: Any,
    dims: list[str],
    percentiles: list[str],
    stays: list[tuple[Any, ...]],
    labels: list[str],
) -> go.Figure:
    """A panel per percentile, a bar per dimension value (a colour each) per state."""
    values = [tuple(s[1:-1]) for s in stays]
    hours = {h: floats(frame, h) for h in percentiles}
    keys = sorted(set(values), key=lambda v: [(x is None, "" if x is None else x) for x in v])
    order = [labels[i] for i in sorted(range(len(stays)), key=lambda i: _code_order(stays[i][0]))]
    fig = panels(percentiles, headings=[h.removesuffix("_hours") for h in percentiles])
    for key, colour in zip(keys, itertools.cycle(COLOURS), strict=False):
        name = " / ".join(NONE if v is None else str(v) for v in key)
        mine = [i for i, v in enumerate(values) if v == key]
        for row, h in enumerate(percentiles, start=1):
            p = h.removesuffix("_hours")
            fig.add_trace(
                go.Bar(
                    x=[labels[i] for i in mine],
                    y=[hours[h][i] for i in mine],
                    name=name,
                    legendgroup=name,
                    showlegend=row == 1,
                    marker_color=colour,
                    customdata=[stays[i][-1] for i in mine],
                    hovertemplate=f"%{{x}}, {name}: {p} %{{y:.1f}} h"
                    " (%{customdata} stays)<extra></extra>",
                ),
                row=row,
                col=1,
            )
            fig.update_yaxes(title_text="Hours in state", row=row, col=1)
    # every panel's states in code order, the same in each
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=list(dict.fromkeys(order))
    )
    fig.update_xaxes(title_text="State", row=len(percentiles), col=1)
    fig.update_layout(legend={"title": {"text": _dims_label(dims)}})
    return fig


def _dims_label(dims: list[str]) -> str:
    """The dimensions as a legend's title: ``Delivery type / city``."""
    return " / ".join(label(d) if i == 0 else label(d).lower() for i, d in enumerate(dims))


def lead_time_chart(
    lead_times: Any,
    leg: str = "placed_to_shipped",
    by: str | None = "channel",
    title: str | None = None,
) -> go.Figure:
    """Box plots of a lead time in hours, from :func:`omsframe.lead_times`: a box per ``by``.

    Args:
        lead_times: The per-order output of :func:`omsframe.lead_times`.
        leg: ``"placed_to_shipped"``, ``"shipped_to_delivered"`` or ``"placed_to_delivered"``.
        by: A column to draw one box per value of (``channel``, ``delivery_type``,
            ``cargo_company``, ``city``...), or ``None`` for one box; the orders without a
            value are a box too, ``(none)``.
        title: The figure title (default: the leg's name).

    Example:
        >>> fig = lead_time_chart(of.lead_times(tables), by="delivery_type")
        >>> fig.layout.title.text
        'Placed to shipped (hours)'
        >>> [trace.name for trace in fig.data]
        ['click_and_collect', 'express', 'same_day', 'standard']
    """
    takes = Takes("lead_time_chart", "lead_times", "of.lead_times(tables)")
    frame = takes.frame(lead_times)
    hours = f"{leg}_hours"
    takes.need(
        frame,
        [hours],
        f"leg is one of {', '.join(_LEGS)}; pass the frame of omsframe.lead_times(...) "
        f"(a row per order, not lead_time_summary's), e.g. {takes.example}",
    )
    if by is not None:
        takes.dimension(frame, "by", by)
    frame = frame.filter(~nw.col(hours).is_null())
    groups = [("All orders", frame)] if by is None else split(frame, by)
    fig = go.Figure()
    for name, part in groups:
        fig.add_trace(go.Box(y=floats(part, hours), name=name, boxpoints="outliers"))
    fig.update_layout(
        title=title or f"{label(leg)} (hours)",
        xaxis_title=label(by) if by else None,
        yaxis_title=f"{label(leg)} (hours)",
        showlegend=False,
        template=TEMPLATE,
    )
    return fig


def return_rates_chart(rates: Any, dim: str | None = None, title: str | None = None) -> go.Figure:
    """The shares of the units ordered later cancelled or refunded (:func:`omsframe.return_rates`).

    A pair of bars per value of ``dim`` (the units without one too, ``(none)``); the
    frame's periods and other dims are added together (the rates recomputed from the
    counts). Weekdays read Mon .. Sun (1 is Monday), hours 0 .. 23, in order.

    Args:
        rates: The output of :func:`omsframe.return_rates`.
        dim: The dimension across (default: the frame's first).
        title: The figure title (default: "Cancelled and refunded units by <dim>").

    Raises:
        AnalysisError: The frame has no dimension to draw, or lacks a count.

    Example:
        >>> fig = return_rates_chart(of.return_rates(tables, dims=["weekday"]))
        >>> fig.data[0].x
        ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')
        >>> fig.layout.title.text, fig.layout.xaxis.title.text
        ('Cancelled and refunded units by weekday', 'Weekday placed')
    """
    takes = Takes("return_rates_chart", "return_rates", "of.return_rates(tables, dims=['weekday'])")
    frame = takes.frame(rates)
    counts = ["units", "units_cancelled", "units_refunded"]
    takes.need(frame, counts)
    dims = [c for c in frame.columns if c != "period" and c not in _RATE_COLUMNS]
    dim = dim or next(iter(dims), None)
    if dim is None:
        raise AnalysisError(
            "return_rates_chart draws the rates across a dimension and the frame has none; "
            "make it with one, e.g. of.return_rates(tables, dims=['weekday'])"
        )
    takes.dimension(frame, "dim", dim)
    per = frame.group_by(dim).agg(*[nw.col(c).sum() for c in counts])
    points = sorted(
        rows(per, dim, *counts), key=lambda p: (p[0] is None, 0 if p[0] is None else p[0])
    )
    labels = [
        NONE if v is None else _WEEKDAYS[v - 1] if dim == "weekday" and v in range(1, 8) else str(v)
        for v, *_ in points
    ]
    fig = go.Figure()
    for name, index in (("Cancelled", 2), ("Refunded", 3)):
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[100 * p[index] / p[1] if p[1] else None for p in points],
                name=name,
                customdata=[[p[index], p[1]] for p in points],
                hovertemplate=f"%{{x}}: %{{y:.1f}}% {name.lower()}"
                " (%{customdata[0]} of %{customdata[1]} units)<extra></extra>",
            )
        )
    placed = {"weekday": "Weekday placed", "hour": "Hour placed"}
    fig.update_layout(
        title=title or f"Cancelled and refunded units by {label(dim).lower()}",
        xaxis={"title": placed.get(dim, label(dim)), "type": "category"},
        yaxis={"title": "Share of the units ordered (%)", "rangemode": "nonnegative"},
        barmode="group",
        template=TEMPLATE,
    )
    return fig


def webhook_health_chart(
    health: Any, title: str | None = None, *, by: Period | None = None, tz: str | None = None
) -> go.Figure:
    """Delivered and failed webhook events and retries per period (:func:`omsframe.webhook_health`).

    Sums the frame's dims per period: stacked bars of delivered and failed events, a line
    of retries on a second axis; a period without events is drawn as 0 of each.

    Args:
        health: The output of :func:`omsframe.webhook_health` (with a period).
        title: The figure title (default: "Webhook deliveries per <period>").
        by: The frame's period (default: what the periods' spacing says).
        tz: The time zone the periods are in, named on the time axis (default: not named).

    Example:
        >>> fig = webhook_health_chart(of.webhook_health(tables, by="week"))
        >>> [(trace.type, trace.name, len(trace.x)) for trace in fig.data]
        [('bar', 'Delivered', 16), ('bar', 'Failed', 16), ('scatter', 'Retries', 16)]
    """
    takes = Takes("webhook_health_chart", "webhook_health", "of.webhook_health(tables, by='week')")
    frame = takes.frame(health)
    takes.need(frame, ["delivered", "failed", "retries"])
    takes.need(
        frame,
        ["period"],
        "it draws the events per period: call webhook_health with one, "
        "e.g. of.webhook_health(tables, by='week')",
    )
    per = (
        frame.group_by("period")
        .agg(nw.col("delivered").sum(), nw.col("failed").sum(), nw.col("retries").sum())
        .sort("period")
    )
    by = by or infer_period(column(per, "period"))
    points = fill_periods(rows(per, "period", "delivered", "failed", "retries"), by, (0, 0, 0))
    periods, delivered, failed, retries = ([p[i] for p in points] for i in range(4))
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name, counts, colour in (
        ("Delivered", delivered, "#2ca02c"),
        ("Failed", failed, "#d62728"),
    ):
        fig.add_trace(
            go.Bar(x=periods, y=counts, name=name, marker_color=colour), secondary_y=False
        )
    fig.add_trace(
        go.Scatter(x=periods, y=retries, name="Retries", mode="lines+markers"), secondary_y=True
    )
    default = f"Webhook deliveries {f'per {by}' if by else 'over time'}"
    fig.update_layout(title=title or default, barmode="stack", template=TEMPLATE)
    events = [d + f for d, f in zip(delivered, failed, strict=True)]
    fig.update_yaxes(title_text="Events", secondary_y=False, **count_axis(max(events, default=0)))
    # its own ticks (not synced to the events axis) and no second grid
    fig.update_yaxes(
        title_text="Retries",
        secondary_y=True,
        showgrid=False,
        **count_axis(max(retries, default=0)),
    )
    fig.update_xaxes(title_text=axis_title(by, tz))
    return fig


def _code_order(code: str | None) -> tuple[int, str]:
    """State codes in numeric order (digit strings: shorter is smaller); none first."""
    return (-1, "") if code is None else (len(code), code)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
