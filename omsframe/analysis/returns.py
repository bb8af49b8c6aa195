"""Cancellation and refund rates: of the units ordered, the share later cancelled or refunded.

Rates look at what was ordered, grouped by when and how it was ordered (period placed, hour
of day, weekday, channel, payment type, product...): each unit sold is followed to its fate
in the ledger (:func:`omsframe.ledger`), cancelled (a single item, or the whole order),
refunded, or kept. Only counts, so currencies need not be apart.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> rates = of.return_rates(tables, dims=["payment_type"])
    >>> rates[["payment_type", "units", "cancel_rate", "refund_rate"]].round(3)
          payment_type  units  cancel_rate  refund_rate
    0      credit_card    439        0.089        0.068
    1   funds_transfer     42        0.238        0.048
    2    loyalty_money     39        0.051        0.179
    3       masterpass     57        0.053        0.088
    4  pay_on_delivery     71        0.056        0.056
    >>> of.return_rates(tables, dims=["weekday", "hour"]).shape
    (122, 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    Frame,
    Period,
    as_names,
    check_period,
    group_key,
    local_time,
    period_start,
    ratio,
    require,
    to_native,
)
from omsframe.analysis._orders import sorted_by
from omsframe.analysis.ledger import ledger_frame

__all__ = ["PLACED_DIMENSIONS", "return_rates"]

PLACED_DIMENSIONS: tuple[str, ...] = ("hour", "weekday")
"""Dimensions derived from when the order was placed, in the business time zone: ``hour``
(0-23) and ``weekday`` (1 = Monday ... 7 = Sunday)."""


def return_rates(
    data: Any, dims: Sequence[str] = ("channel",), by: Period | None = None, tz: str | None = None
) -> Any:
    """Cancellation and refund rates of the units (and orders) ordered, by dimensions.

    ``cancel_rate = units_cancelled / units`` and ``refund_rate = units_refunded / units``,
    where ``units`` are the units ordered in the group and ``units_cancelled`` /
    ``units_refunded`` those of them cancelled or refunded by now (whenever that happened;
    a unit is reversed at most once). ``order_cancel_rate`` and ``order_refund_rate`` are
    the shares of orders with at least one unit cancelled or refunded.

    Args:
        data: The loaded tables or a ledger frame (:func:`omsframe.ledger`, with its return
            rows), pandas or polars.
        dims: Ledger columns (:data:`~omsframe.analysis.DIMENSIONS`: ``channel``,
            ``payment_type``, ``sku``...) and ``hour`` / ``weekday`` of placement.
        by: Also group by the period the order was placed in, or ``None``.
        tz: The business time zone of periods, hours and weekdays (default: the ledger's,
            or ``"Europe/Istanbul"``).

    Returns:
        A frame of the input's kind: ``period`` (with ``by``), the ``dims``, ``orders``,
        ``units``, ``units_cancelled``, ``units_refunded``, ``cancel_rate``,
        ``refund_rate``, ``orders_cancelled``, ``orders_refunded``, ``order_cancel_rate``
        and ``order_refund_rate`` (rates are floats), sorted by period and dims.

    Raises:
        AnalysisError: An unknown period or dimension.

    Example:
        >>> rates = return_rates(tables, dims=["channel"])
        >>> rates[["channel", "units", "units_refunded", "refund_rate"]].round(3)
                 channel  units  units_refunded  refund_rate
        0        EU Shop     67              11        0.164
        1  Mobile App TR    213              23        0.108
        2        US Shop     40               2        0.050
        3    Web Shop TR    328              12        0.037
    """
    dims = as_names(dims)
    book, zone = ledger_frame(data, tz)
    require(book, [d for d in dims if d not in PLACED_DIMENSIONS], "the ledger", dims=dims)
    placed = local_time("booked_at", zone)
    sales = book.filter(nw.col("kind") == "sale").with_columns(
        hour=placed.dt.hour().cast(nw.Int64), weekday=placed.dt.weekday().cast(nw.Int64)
    )
    keys = list(dims)
    if by is not None:
        check_period(by)
        sales = sales.with_columns(period=period_start(placed, by))
        keys = ["period", *dims]
    fates = (
        book.filter(nw.col("kind") != "sale")
        .select(
            "item_id",
            _cancelled=(nw.col("kind") == "cancellation").cast(nw.Int64),
            _refunded=(nw.col("kind") == "refund").cast(nw.Int64),
        )
        .unique("item_id")
    )
    units = sales.join(fates, on="item_id", how="left").with_columns(
        nw.col("_cancelled").fill_null(0),
        nw.col("_refunded").fill_null(0),
        _key=group_key(keys),
    )
    rates = units.group_by(*keys, "_key").agg(
        nw.col("order_id").n_unique().alias("orders"),
        nw.len().alias("units"),
        nw.col("_cancelled").sum().alias("units_cancelled"),
        nw.col("_refunded").sum().alias("units_refunded"),
    )
    for column, flag in (("orders_cancelled", "_cancelled"), ("orders_refunded", "_refunded")):
        rates = rates.join(_orders_with(units, flag, column), on="_key", how="left")
    counts = ["orders", "units", "units_cancelled", "units_refunded"]
    counts += ["orders_cancelled", "orders_refunded"]
    rates = rates.with_columns(*[nw.col(c).fill_null(0).cast(nw.Int64) for c in counts])
    rates = rates.with_columns(
        cancel_rate=ratio(nw.col("units_cancelled"), nw.col("units")),
        refund_rate=ratio(nw.col("units_refunded"), nw.col("units")),
        order_cancel_rate=ratio(nw.col("orders_cancelled"), nw.col("orders")),
        order_refund_rate=ratio(nw.col("orders_refunded"), nw.col("orders")),
    )
    columns = [*keys, "orders", "units", "units_cancelled", "units_refunded", "cancel_rate"]
    columns += ["refund_rate", "orders_cancelled", "orders_refunded", "order_cancel_rate"]
    columns.append("order_refund_rate")
    return to_native(sorted_by(rates.select(*columns), keys), keep=dims)


def _orders_with(units: Frame, flag: str, name: str) -> Frame:
    """Per group key: the orders with at least one unit flagged."""
    return (
        units.filter(nw.col(flag) == 1)
        .group_by("_key")
        .agg(nw.col("order_id").n_unique().alias(name))
    )
