"""Where the orders are: the current state distribution and the order funnel.

The funnel asks, of the orders placed in a period, how many reached each stage. An order has
reached a stage when any state it is known to have been in implies it (see
:data:`FUNNEL_STAGES`): its current state, every state a webhook event carried, and every state
the cache's state history observed. A later state implies the earlier stages, so an order
first seen delivered counts as approved and shipped even where no event says so.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> of.state_counts(tables, of="items")[["state_name", "count"]]
      state_name  count
    0  Cancelled     58
    1   Approved      2
    2  Preparing      2
    3    Shipped     21
    4  Delivered    517
    5   Refunded     48
    >>> of.funnel(tables, by="month")[["period", "orders", "shipped", "delivered"]]
          period  orders  shipped  delivered
    0 2024-10-01      56       51         51
    1 2024-11-01      77       72         72
    2 2024-12-01     113      107        107
    3 2025-01-01      54       46         38
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import narwhals as nw

from omsframe.analysis._frames import (
    DEFAULT_TZ,
    Frame,
    Period,
    as_names,
    check_names,
    check_tz,
    group_key,
    ratio,
    to_native,
)
from omsframe.analysis._orders import (
    ORDER_DIMENSIONS,
    like,
    order_frame,
    sort_codes,
    sorted_by,
    table,
    with_period,
)

__all__ = ["FUNNEL_STAGES", "funnel", "state_counts"]

FUNNEL_STAGES: dict[str, tuple[str, ...]] = {
    "approved": ("400", "450", "500", "510", "520", "540", "544", "545", "550", "600"),
    "shipped": ("500", "510", "520", "540", "544", "545", "550", "600"),
    "delivered": ("550", "600"),
    "cancelled": ("100",),
    "refunded": ("600",),
}
"""Each funnel stage and the states (``enum_value``) that show an order reached it.

``approved``: approved (400) or any later fulfilment state; ``shipped``: shipped (500), shipped
and informed (510), ready for pickup (520) or later; ``delivered``: delivered (550), or refunded
(600, which follows a delivery); ``cancelled``: cancelled (100); ``refunded``: refunded (600).
A cancellation waiting (50) or review (544, 545) is not yet a cancellation or refund."""

Level = Literal["orders", "items"]


def state_counts(
    tables: Mapping[str, Any],
    of: Level = "orders",
    by: Period | None = None,
    dims: Sequence[str] = (),
    tz: str = DEFAULT_TZ,
) -> Any:
    """How many orders (or items) are in each state now, by period placed and dimensions.

    Args:
        tables: The loaded tables (:func:`omsframe.load`), pandas or polars; uses ``orders``
            and, for items, ``order_items``.
        of: Count ``"orders"`` (by order state) or ``"items"`` (by item state: a single item
            can be cancelled or refunded while its order is not).
        by: Group by the period the order was placed in (``"day"`` ... ``"year"``), or
            ``None`` for all orders together.
        dims: Order dimensions (:data:`~omsframe.analysis.ORDER_DIMENSIONS`: ``channel``,
            ``payment_type``, ``city``...); for items also item columns such as ``sku``.
        tz: The business time zone of the periods.

    Returns:
        A frame of the tables' kind: ``period`` (with ``by``), the ``dims``, ``state_code``,
        ``state_name``, ``count`` and ``share`` (of the orders or items of the period and
        dims; float), sorted by period, dims and state code. The tables are not changed.

    Raises:
        AnalysisError: An unknown ``of``, period or dimension, or a table is missing.

    Example:
        >>> import polars as pl
        >>> orders = pl.DataFrame({"order_id": [1, 2, 3], "state_code": ["550", "550", "100"],
        ...     "state_name": ["Delivered", "Delivered", "Cancelled"],
        ...     "date_placed": [None, None, None], "channel_name": ["Web", "App", "Web"]})
        >>> state_counts({"orders": orders})["count"].to_list()
        [1, 2]
    """
    dims = as_names(dims)
    check_names([of], ("orders", "items"), "level")
    check_tz(tz)
    if of == "orders":
        orders = table(tables, "orders")
        check_names(["state_name"], orders.columns, "orders column(s)")
        units, _ = order_frame(tables, dims)
        names = orders.select("order_id", "state_name")
        units = units.join(names, on="order_id", how="left").rename({"order_state": "state_code"})
    else:
        items = table(tables, "order_items")
        orders = table(tables, "orders")
        order_dims = [d for d in dims if d in ORDER_DIMENSIONS or d in orders.columns]
        item_dims = [d for d in dims if d not in order_dims]
        parents, _ = order_frame(tables, order_dims)
        item_columns = ["order_id", "state_code", "state_name", *item_dims]
        check_names(item_columns, items.columns, "order_items column(s)")
        units = items.select(*item_columns).join(
            parents.drop("order_state"), on="order_id", how="left"
        )
    units, period = with_period(units, "date_placed", by, tz)
    keys = [*period, *dims]
    units = units.with_columns(_key=group_key(keys))
    counts = units.group_by(*keys, "_key", "state_code").agg(nw.len().alias("count"))
    totals = units.group_by("_key").agg(nw.len().alias("_all"))
    names = (
        units.filter(~nw.col("state_name").is_null())
        .group_by("state_code")
        .agg(nw.col("state_name").max())
    )
    counts = (
        counts.join(totals, on="_key", how="left")
        .join(names, on="state_code", how="left")
        .with_columns(
            count=nw.col("count").cast(nw.Int64), share=ratio(nw.col("count"), nw.col("_all"))
        )
    )
    columns = [*keys, "state_code", "state_name", "count", "share"]
    ordered = sort_codes(
        counts.select(*columns), [*keys, "state_code"], ["state_code"], nulls_last=True
    )
    return to_native(ordered, keep=dims)


def funnel(
    tables: Mapping[str, Any],
    by: Period | None = "month",
    dims: Sequence[str] = (),
    tz: str = DEFAULT_TZ,
) -> Any:
    """Of the orders placed in each period, how many reached each stage of the funnel.

    ``approved``, ``shipped`` and ``delivered`` count the orders that reached the stage,
    ``cancelled`` and ``refunded`` those that were cancelled or refunded (whole orders; a
    single item cancelled is in :func:`omsframe.return_rates`), by the states of
    :data:`FUNNEL_STAGES`. Orders placed recently may not have got far yet: read the last
    periods with that in mind.

    Args:
        tables: The loaded tables, pandas or polars; uses ``orders``, and ``events`` and
            ``state_history`` when present (more states seen, fewer stages missed).
        by: The period the orders were placed in (``"day"`` ... ``"year"``), or ``None``.
        dims: Order dimensions (:data:`~omsframe.analysis.ORDER_DIMENSIONS`).
        tz: The business time zone of the periods.

    Returns:
        A frame of the tables' kind: ``period`` (with ``by``), the ``dims``, ``orders``
        (placed), the stage counts ``approved``, ``shipped``, ``delivered``, ``cancelled``,
        ``refunded`` and their shares of ``orders`` (``approved_share``...; floats), sorted
        by period and dims.

    Raises:
        AnalysisError: An unknown period or dimension, or ``orders`` is missing.

    Example:
        >>> import polars as pl
        >>> orders = pl.DataFrame({"order_id": [1, 2], "state_code": ["550", "100"],
        ...     "date_placed": [None, None]})
        >>> funnel({"orders": orders}, by=None).row(0)
        (2, 1, 1, 1, 1, 0, 0.5, 0.5, 0.5, 0.5, 0.0)
    """
    dims = as_names(dims)
    check_tz(tz)
    orders, dims = order_frame(tables, dims)
    reached = _reached(tables, orders)
    orders, period = with_period(orders, "date_placed", by, tz)
    for stage, codes in FUNNEL_STAGES.items():
        flagged = (
            reached.filter(nw.col("state_code").is_in(list(codes)))
            .select("order_id")
            .unique()
            .with_columns(**{stage: nw.lit(1, nw.Int64)})
        )
        orders = orders.join(flagged, on="order_id", how="left").with_columns(
            nw.col(stage).fill_null(0)
        )
    keys = [*period, *dims]
    orders = orders.with_columns(_key=group_key(keys))
    stages = list(FUNNEL_STAGES)
    counts = orders.group_by(*keys, "_key").agg(
        nw.len().alias("orders"), *[nw.col(s).sum() for s in stages]
    )
    counts = counts.with_columns(
        *[nw.col(c).cast(nw.Int64) for c in ("orders", *stages)],
    ).with_columns(**{f"{s}_share": ratio(nw.col(s), nw.col("orders")) for s in stages})
    columns = [*keys, "orders", *stages, *[f"{s}_share" for s in stages]]
    return to_native(sorted_by(counts.select(*columns), keys), keep=dims)


def _reached(tables: Mapping[str, Any], orders: Frame) -> Frame:
    """Every (order, state) known: current states, event states, state-history states."""
    parts = [orders.select("order_id", state_code=nw.col("order_state"))]
    if "events" in tables:
        events = table(tables, "events")
        check_names(["order_id", "state_code"], events.columns, "events column(s)")
        parts.append(events.select("order_id", "state_code"))
    if "state_history" in tables:
        history = table(tables, "state_history")
        columns = ["order_id", "from_state_code", "to_state_code"]
        check_names(columns, history.columns, "state_history column(s)")
        for column in columns[1:]:
            parts.append(history.select("order_id", state_code=nw.col(column)))
    parts = [like(p, orders) for p in parts]
    rows = nw.concat(
        [p.with_columns(nw.col("state_code").cast(nw.String)) for p in parts], how="vertical"
    )
    return rows.filter(~nw.col("state_code").is_null() & ~nw.col("order_id").is_null()).unique()
