"""How long fulfilment takes: placed→shipped and shipped→delivered, per order and summarised.

An order is *shipped* when it first enters one of :data:`SHIPPED_STATES` and *delivered* when
it first enters one of :data:`DELIVERED_STATES`, as its state changes tell
(:func:`omsframe.state_changes`: webhook events, else the cache's state history).

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> per_order = of.lead_times(tables)
    >>> per_order.shape
    (300, 11)
    >>> of.lead_time_summary(per_order, dims=[])[["leg", "orders", "p50_hours"]].round(1)
                        leg  orders  p50_hours
    0     placed_to_shipped     276       21.4
    1  shipped_to_delivered     268       25.4
    2   placed_to_delivered     268       55.7
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    as_frame,
    as_names,
    group_key,
    is_tables,
    not_on_pyarrow,
    require,
    to_native,
)
from omsframe.analysis._orders import (
    PERCENTILES,
    check_percentiles,
    hours,
    like,
    nearest_rank,
    order_frame,
)
from omsframe.analysis.lifecycle import Source, changes_frame

__all__ = [
    "DELIVERED_STATES",
    "LEAD_DIMENSIONS",
    "LEGS",
    "SHIPPED_STATES",
    "lead_time_summary",
    "lead_times",
]

SHIPPED_STATES: tuple[str, ...] = ("500", "510", "520")
"""States that mean the order left the warehouse: shipped, shipped and informed, ready for
pickup (click and collect)."""
DELIVERED_STATES: tuple[str, ...] = ("550",)
"""States that mean the order reached the customer: delivered."""
LEAD_DIMENSIONS: tuple[str, ...] = ("channel", "delivery_type", "cargo_company", "city")
"""The order dimensions :func:`lead_times` keeps by default."""
LEGS: tuple[str, ...] = ("placed_to_shipped", "shipped_to_delivered", "placed_to_delivered")
"""The legs of fulfilment measured, each a ``<leg>_hours`` column of :func:`lead_times`."""
_ENDS = ("date_placed", "shipped_at", "delivered_at")


def lead_times(
    tables: Mapping[str, Any], dims: Sequence[str] = LEAD_DIMENSIONS, source: Source = "auto"
) -> Any:
    """Each order's fulfilment times: when it was placed, shipped and delivered, in hours.

    Args:
        tables: The loaded tables, pandas or polars; uses ``orders`` and ``events`` and/or
            ``state_history`` (see :func:`omsframe.state_changes`).
        dims: Order dimensions to keep (:data:`~omsframe.analysis.ORDER_DIMENSIONS`).
        source: Where state changes come from: ``"auto"``, ``"events"`` or ``"history"``.

    Returns:
        A frame of the tables' kind, one row per order, sorted by ``order_id``:
        ``order_id``, ``date_placed``, the ``dims``, ``shipped_at`` and ``delivered_at``
        (UTC; null when not (yet) seen) and ``placed_to_shipped_hours``,
        ``shipped_to_delivered_hours``, ``placed_to_delivered_hours`` (floats; null where
        an end is unknown).

    Raises:
        AnalysisError: An unknown dimension or source, or a table is missing.

    Example:
        >>> import datetime as dt, polars as pl
        >>> at = [dt.datetime(2025, 1, 1, h, tzinfo=dt.UTC) for h in (7, 8, 10, 14)]
        >>> orders = pl.DataFrame({"order_id": [7], "date_placed": at[:1],
        ...     "state_code": ["550"], "channel_name": ["Web"]})
        >>> events = pl.DataFrame({"event_id": [1, 2, 3], "order_id": [7, 7, 7],
        ...     "state_code": ["200", "500", "550"], "created_date": at[1:]})
        >>> lead_times({"orders": orders, "events": events}, dims=["channel"]).select(
        ...     "channel", "placed_to_shipped_hours", "shipped_to_delivered_hours").rows()
        [('Web', 3.0, 4.0)]
    """
    dims = as_names(dims)
    orders, dims = order_frame(tables, dims)
    changes = like(changes_frame(tables, source), orders)
    for name, codes in (("shipped_at", SHIPPED_STATES), ("delivered_at", DELIVERED_STATES)):
        first = (
            changes.filter(nw.col("to_state_code").is_in(list(codes)))
            .group_by("order_id")
            .agg(nw.col("changed_at").min().alias(name))
        )
        orders = orders.join(first, on="order_id", how="left")
    orders = orders.with_columns(**{f"{leg}_hours": hours(_microseconds(leg)) for leg in LEGS})
    columns = ["order_id", "date_placed", *dims, "shipped_at", "delivered_at"]
    columns += [f"{leg}_hours" for leg in LEGS]
    return to_native(orders.select(*columns).sort("order_id"), keep=dims)


@not_on_pyarrow
def lead_time_summary(
    data: Any,
    dims: Sequence[str] = ("channel",),
    percentiles: Sequence[int] = PERCENTILES,
    source: Source = "auto",
) -> Any:
    """Lead-time percentiles (nearest rank) and means per leg and dimensions.

    Args:
        data: The output of :func:`lead_times` (filter it first for a period), or the loaded
            tables (then :func:`lead_times` is computed with ``dims`` and ``source``).
        dims: Columns of the per-order frame to group by (``channel``, ``delivery_type``,
            ``cargo_company``, ``city``...), or none for all orders together.
        percentiles: Whole percents to report (default 50, 90, 99); the p-th percentile of n
            lead times is the ``ceil(p * n / 100)``-th shortest.
        source: With tables, where state changes come from.

    Returns:
        A frame of the input's kind: the ``dims``, ``leg`` (see :data:`LEGS`), ``orders``
        (with that lead time known), ``mean_hours``, ``p50_hours``, ``p90_hours``...
        (floats), sorted by dims and leg.

    Raises:
        AnalysisError: Unknown percentiles, or a dimension the frame does not have.

    Example:
        >>> summary = lead_time_summary(of.lead_times(tables), dims=["delivery_type"])
        >>> summary = summary[summary.leg == "placed_to_delivered"]
        >>> summary[["delivery_type", "orders", "p50_hours", "p90_hours"]].round(1)
                delivery_type  orders  p50_hours  p90_hours
        2   click_and_collect      22       56.6      123.1
        5             express      40       25.0       39.0
        8            same_day      10        9.8       20.7
        11           standard     196       65.2      111.8
    """
    dims = as_names(dims)
    wanted = check_percentiles(percentiles)
    if is_tables(data):
        frame = as_frame(lead_times(data, dims=dims, source=source), "lead_times")
    else:
        frame = as_frame(data, "lead_times")
    require(frame, [*dims, *_ENDS], "the lead times", dims=dims)
    # exact microseconds from the timestamps: percentiles and means agree across engines
    micro = {leg: _microseconds(leg) for leg in LEGS}
    parts = [
        frame.select(*dims, leg=nw.lit(leg), _us=micro[leg]).filter(~nw.col("_us").is_null())
        for leg in LEGS
    ]
    rows = nw.concat(parts, how="vertical").with_columns(_key=group_key([*dims, "leg"]))
    counts = rows.group_by("_key").agg(nw.len().alias("orders"), nw.col("_us").sum().alias("_sum"))
    ranks = nearest_rank(rows, "_us", [*dims, "leg"], wanted)
    summary = (
        ranks.join(counts, on="_key", how="left")
        .with_columns(orders=nw.col("orders").cast(nw.Int64))
        .with_columns(
            mean_hours=hours(nw.col("_sum")) / nw.col("orders").cast(nw.Float64),
            **{f"p{p}_hours": hours(nw.col(f"p{p}")) for p in wanted},
        )
    )
    summary = summary.with_columns(
        _leg=nw.col("leg").replace_strict(list(LEGS), list(range(len(LEGS))), return_dtype=nw.Int64)
    )
    columns = [*dims, "leg", "orders", "mean_hours", *[f"p{p}_hours" for p in wanted]]
    result = summary.sort(*dims, "_leg", nulls_last=True).select(*columns)
    return to_native(result, keep=dims)


def _microseconds(leg: str) -> nw.Expr:
    """The length of a leg in integer microseconds (null when an end is unknown)."""
    start, end = {
        "placed_to_shipped": ("date_placed", "shipped_at"),
        "shipped_to_delivered": ("shipped_at", "delivered_at"),
        "placed_to_delivered": ("date_placed", "delivered_at"),
    }[leg]
    return nw.col(end).dt.timestamp("us") - nw.col(start).dt.timestamp("us")
