"""Revenue by period, dimensions and currency: the sales measures, orders, AOV, change.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> monthly = of.revenue(tables, by="month")
    >>> monthly[monthly.currency == "try"][["period", "net_sales", "orders"]]
           period  net_sales  orders
    1  2024-10-01   90638.46      42
    4  2024-11-01  149136.85      65
    7  2024-12-01  277588.60      99
    10 2025-01-01   87513.29      43
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    MONEY,
    Frame,
    Period,
    as_names,
    cents,
    check_names,
    check_period,
    group_key,
    local_time,
    partial_period,
    period_index,
    period_start,
    ratio,
    require,
    to_native,
)
from omsframe.analysis.currency import convert
from omsframe.analysis.errors import AnalysisError, CurrencyError
from omsframe.analysis.ledger import ledger_frame
from omsframe.analysis.measures import MEASURES, RATIOS

__all__ = ["DEFAULT_MEASURES", "revenue"]

DEFAULT_MEASURES: tuple[str, ...] = ("gross_sales", "discounts", "returns", "net_sales", "taxes")


def revenue(
    data: Any,
    by: Period = "day",
    dims: Sequence[str] = (),
    measures: Sequence[str] = DEFAULT_MEASURES,
    tz: str | None = None,
    fx: Any = None,
    reporting_currency: str | None = None,
    change: str | None = "net_sales",
) -> Any:
    """Revenue per period, dimensions and currency: one tidy row for each.

    Sums the ledger's measures over the business periods of ``tz`` (a sale counts in the
    period its order was placed, a cancellation or refund in the period it happened) and
    adds the order figures. Amounts in different currencies are never added together:
    every row is one currency, unless ``fx`` converts them all to ``reporting_currency``
    (then ``converted`` is true and ``currency`` is the reporting currency).

    Args:
        data: The loaded tables (:func:`omsframe.load`) or a ledger frame
            (:func:`omsframe.ledger`, or rows of it), pandas or polars.
        by: The period: ``"day"``, ``"week"`` (ISO, from Monday), ``"month"``, ``"quarter"``
            or ``"year"``.
        dims: Ledger columns to slice by, e.g. ``["channel"]`` or ``["city", "sku"]``
            (see :data:`omsframe.analysis.DIMENSIONS`). ``currency`` is always one.
        measures: Ledger measures to sum (see :func:`omsframe.explain`).
        tz: The business time zone whose days, weeks... the periods are (IANA name). Default:
            the ledger's own, or ``"Europe/Istanbul"`` for tables.
        fx: A rate table (``date``, ``currency``, ``rate``: one ``currency`` in the reporting
            currency on that day) to convert every amount row by row at its day's rate; see
            :mod:`omsframe.analysis.currency`.
        reporting_currency: The currency ``fx`` converts to (required with ``fx``).
        change: The measure to compare with the previous period, added to ``measures`` if
            missing (``None``: no comparison).

    Returns:
        A frame of the input's kind, sorted by ``period``, ``dims``, ``currency``: ``period``
        (the period's first moment, naive local time in ``tz``), ``partial`` (true for the
        period the data ends in, which it does not wholly cover: the period of the loaded
        tables' ``as_of``, or of the ledger's latest booking), the ``dims``, ``currency``,
        ``converted``, the ``measures`` (exact decimals), ``orders`` (orders placed: distinct
        orders with a sale row), ``units`` (net), ``units_ordered``,
        ``average_order_value`` and ``units_per_order`` (floats), and for ``change``:
        ``previous_<m>`` (the previous period's value for the same dims and currency; null
        when that period has no row), ``<m>_change`` (decimal) and ``<m>_change_pct`` (float,
        relative to the absolute previous value). A period without sales has no row.

    Raises:
        AnalysisError: An unknown period, measure or dimension.
        CurrencyError: ``fx`` lacks a rate a row needs, or ``reporting_currency`` is given
            without ``fx``.

    Example:
        >>> weekly = revenue(tables, by="week", dims=["channel"])
        >>> weekly[["period", "channel", "currency", "net_sales", "orders"]].head(3)
              period        channel currency  net_sales  orders
        0 2024-09-30        EU Shop      eur     341.29       3
        1 2024-09-30  Mobile App TR      try    1953.96       1
        2 2024-09-30    Web Shop TR      try   13677.55       6
        >>> weekly.groupby("currency")["net_sales"].sum().to_dict()
        {'eur': Decimal('1878.67'), 'try': Decimal('604877.20'), 'usd': Decimal('1520.25')}
    """
    dims = as_names(dims)
    measures = as_names(measures, "measures")
    check_period(by)
    compared = [] if change is None else [change]
    names = [m for m in check_names([*measures, *compared], MEASURES, "measure(s)") if m != "units"]
    if change == "units":
        raise AnalysisError("change must be a money measure such as 'net_sales', or None")
    book, zone = ledger_frame(data, tz)
    dims = [d for d in dims if d != "currency"]
    require(book, dims, "the ledger", dims=dims)
    if fx is not None:
        if not reporting_currency:
            raise AnalysisError("with fx, pass reporting_currency: the currency its rates give")
        book = convert(book, fx, reporting_currency, zone)
    elif reporting_currency is not None:
        raise CurrencyError(
            "reporting_currency needs fx, a rate table (date, currency, rate); "
            "without one every row stays in its own currency"
        )
    totals = _totals(book, by, zone, dims, [*names, "gross_sales", "discounts"])
    totals = totals.with_columns(
        partial=partial_period(data, book, by, zone),
        converted=nw.lit(fx is not None),
        average_order_value=RATIOS["average_order_value"](),
        units_per_order=RATIOS["units_per_order"](),
    )
    if change is not None:
        totals = _with_change(totals, change, by)
    drop = [c for c in ("gross_sales", "discounts") if c not in names]
    figures = ["orders", "units", "units_ordered", "average_order_value", "units_per_order"]
    changes = [f"previous_{m}" for m in compared]
    changes += [c for m in compared for c in (f"{m}_change", f"{m}_change_pct")]
    columns = ["period", "partial", *dims, "currency", "converted", *names, *figures, *changes]
    result = totals.drop(*drop).select(*columns).sort("period", *dims, "currency")
    return to_native(result, keep=dims)


def _totals(book: Frame, by: Period, tz: str, dims: list[str], money: list[str]) -> Frame:
    """Sum the measures and count orders per period, dims and currency (with ``_key``)."""
    book = book.with_columns(
        period=period_start(local_time("booked_at", tz), by),
        _key=group_key([*dims, "currency"]),
        _ordered=(nw.col("kind") == "sale").cast(nw.Int64),
    )
    keys = ["period", *dims, "currency", "_key"]
    totals = book.group_by(keys).agg(
        *[nw.col(m).sum() for m in dict.fromkeys(money)],  # Decimal(38, 2), exact
        nw.col("units").sum(),
        nw.col("_ordered").sum().alias("units_ordered"),
    )
    orders = (
        book.filter(nw.col("kind") == "sale")
        .group_by("period", "_key")
        .agg(nw.col("order_id").n_unique().alias("orders"))
    )
    return totals.join(orders, on=["period", "_key"], how="left").with_columns(
        # totals stay Decimal(18, 2) like the ledger: a total beyond 10**16 fails loudly
        *[nw.col(m).cast(MONEY) for m in dict.fromkeys(money)],
        orders=nw.col("orders").fill_null(0).cast(nw.Int64),
        units=nw.col("units").cast(nw.Int64),
        units_ordered=nw.col("units_ordered").cast(nw.Int64),
    )


def _with_change(totals: Frame, measure: str, by: Period) -> Frame:
    """Add the previous period's value of ``measure`` and the change against it."""
    totals = totals.with_columns(_index=period_index(nw.col("period"), by))
    previous = f"previous_{measure}"
    earlier = totals.select("_key", _index=nw.col("_index") + 1, **{previous: nw.col(measure)})
    totals = totals.join(earlier, on=["_key", "_index"], how="left")
    difference = nw.col(measure) - nw.col(previous)
    return totals.with_columns(
        **{
            f"{measure}_change": difference.cast(MONEY),
            f"{measure}_change_pct": ratio(cents(difference), cents(nw.col(previous).abs())),
        }
    ).drop("_index", "_key")
