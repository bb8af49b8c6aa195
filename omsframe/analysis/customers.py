"""Customers: new and returning, cohorts by first order, and a transaction frame for CLV models.

A customer's *first order* is their earliest order placed (a sale row of the ledger) in a
currency: customers belong to a channel, so in practice to one currency, and money of
different currencies is never added. Net sales come from the ledger (a sale counts when
placed, a cancellation or refund when it happened), so they agree with
:func:`omsframe.revenue` period by period. Rows without a customer (guest orders) are kept
apart as ``"unknown"`` where money is summed, and left out of cohorts.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> of.new_vs_returning(tables, by="month").groupby("customer_type")["orders"].sum()
    customer_type
    new          255
    returning     45
    Name: orders, dtype: int64
    >>> of.cohorts(tables).shape, of.transactions(tables).shape
    ((23, 10), (260, 5))
"""

from __future__ import annotations

from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    MONEY,
    Frame,
    Period,
    cents,
    check_period,
    group_key,
    local_time,
    period_index,
    period_start,
    ratio,
    to_native,
)
from omsframe.analysis.ledger import ledger_frame

__all__ = ["cohorts", "new_vs_returning", "transaction_frame", "transactions"]

_SALE = nw.col("kind") == "sale"


def new_vs_returning(data: Any, by: Period = "month", tz: str | None = None) -> Any:
    """New and returning customers per period, with their orders and net sales.

    A customer is *new* in the period of their first order and *returning* in every later
    one. ``customers`` and ``orders`` count those who placed an order in the period;
    ``net_sales`` is the ledger's net sales booked in the period (a cancellation or refund by
    a customer who did not order in the period counts as ``returning``; rows without a
    customer as ``unknown``), so the three types add up to :func:`omsframe.revenue`.

    Args:
        data: The loaded tables or a ledger frame (all of it: first orders are found in it),
            pandas or polars.
        by: ``"day"``, ``"week"``, ``"month"``, ``"quarter"`` or ``"year"``.
        tz: The business time zone (default: the ledger's, or ``"Europe/Istanbul"``).

    Returns:
        A frame of the input's kind: ``period``, ``customer_type`` (``"new"``,
        ``"returning"``, ``"unknown"``), ``currency``, ``customers``, ``orders`` and
        ``net_sales`` (exact decimal), sorted by period, type and currency.

    Raises:
        AnalysisError: An unknown period.

    Example:
        >>> mix = new_vs_returning(tables, by="month")
        >>> mix.pivot_table(index="period", columns="customer_type", values="customers",
        ...     aggfunc="sum", fill_value=0)  # doctest: +NORMALIZE_WHITESPACE
        customer_type  new  returning
        period
        2024-10-01      47          0
        2024-11-01      53          4
        2024-12-01      69         12
        2025-01-01      26         15
    """
    check_period(by)
    book, zone = ledger_frame(data, tz)
    book = _with_first(book, by, zone)
    book = book.with_columns(
        customer_type=nw.when(nw.col("customer_id").is_null())
        .then(nw.lit("unknown"))
        .when(nw.col("_first") == nw.col("period"))
        .then(nw.lit("new"))
        .otherwise(nw.lit("returning"))
    )
    keys = ["period", "customer_type", "currency"]
    book = book.with_columns(_key=group_key(keys))
    money = book.group_by(*keys, "_key").agg(nw.col("net_sales").sum())
    known = book.filter(_SALE & ~nw.col("customer_id").is_null())
    people = known.group_by("_key").agg(nw.col("customer_id").n_unique().alias("customers"))
    orders = book.filter(_SALE).group_by("_key").agg(nw.col("order_id").n_unique().alias("orders"))
    mix = (
        money.join(people, on="_key", how="left")
        .join(orders, on="_key", how="left")
        .with_columns(
            customers=nw.col("customers").fill_null(0).cast(nw.Int64),
            orders=nw.col("orders").fill_null(0).cast(nw.Int64),
            net_sales=nw.col("net_sales").cast(MONEY),
            _type=nw.col("customer_type").replace_strict(
                ["new", "returning", "unknown"], [0, 1, 2], return_dtype=nw.Int64
            ),
        )
    )
    columns = [*keys, "customers", "orders", "net_sales"]
    return to_native(mix.sort("period", "_type", "currency").select(*columns))


def cohorts(data: Any, by: Period = "month", tz: str | None = None) -> Any:
    """The retention matrix: customers by period of first order, and what each cohort did next.

    A cohort is the customers whose first order (in a currency) fell in the same period.
    At ``age`` k (periods after the first), ``customers`` counts the cohort's customers who
    placed an order in that period (all of them at age 0), ``retention`` is their share of
    the cohort, and ``net_sales`` the cohort's net sales booked in that period.

    Args:
        data: The loaded tables or a ledger frame (all of it), pandas or polars.
        by: The cohort period, ``"month"`` by default (``"week"``, ``"quarter"``...).
        tz: The business time zone (default: the ledger's, or ``"Europe/Istanbul"``).

    Returns:
        A frame of the input's kind, one row per cohort, age and currency with orders or
        net sales: ``cohort`` (the first-order period, naive local start), ``age``
        (periods since), ``period`` (the calendar period), ``currency``,
        ``cohort_customers``, ``customers``, ``retention`` (float), ``orders``,
        ``net_sales`` (exact decimal) and ``net_sales_per_customer`` (net sales over the
        cohort's customers; float), sorted by cohort, currency and age. Rows without a
        customer are left out.

    Raises:
        AnalysisError: An unknown period.

    Example:
        >>> matrix = cohorts(tables).query("currency == 'try'")
        >>> retention = matrix.pivot(index="cohort", columns="age", values="retention")
        >>> retention.round(2)  # doctest: +NORMALIZE_WHITESPACE
        age           0     1     2     3
        cohort
        2024-10-01  1.0  0.08  0.11  0.06
        2024-11-01  1.0  0.16  0.09   NaN
        2024-12-01  1.0  0.12   NaN   NaN
        2025-01-01  1.0   NaN   NaN   NaN
    """
    check_period(by)
    book, zone = ledger_frame(data, tz)
    book = _with_first(book, by, zone).filter(~nw.col("customer_id").is_null())
    book = book.with_columns(
        cohort=nw.col("_first"),
        age=period_index(nw.col("period"), by) - period_index(nw.col("_first"), by),
    )
    keys = ["cohort", "age", "period", "currency"]
    book = book.with_columns(_key=group_key(keys), _cohort_key=group_key(["cohort", "currency"]))
    money = book.group_by(*keys, "_key", "_cohort_key").agg(nw.col("net_sales").sum())
    sales = (
        book.filter(_SALE)
        .group_by("_key")
        .agg(
            nw.col("customer_id").n_unique().alias("customers"),
            nw.col("order_id").n_unique().alias("orders"),
        )
    )
    sizes = (
        book.filter(_SALE)
        .group_by("_cohort_key")
        .agg(nw.col("customer_id").n_unique().alias("cohort_customers"))
    )
    matrix = (
        money.join(sales, on="_key", how="left")
        .join(sizes, on="_cohort_key", how="left")
        .with_columns(
            *[
                nw.col(c).fill_null(0).cast(nw.Int64)
                for c in ("customers", "orders", "cohort_customers")
            ],
            age=nw.col("age").cast(nw.Int64),
            net_sales=nw.col("net_sales").cast(MONEY),
        )
        .with_columns(
            retention=ratio(nw.col("customers"), nw.col("cohort_customers")),
            net_sales_per_customer=ratio(
                cents(nw.col("net_sales")), nw.col("cohort_customers") * 100
            ),
        )
    )
    columns = [*keys, "cohort_customers", "customers", "retention", "orders", "net_sales"]
    columns.append("net_sales_per_customer")
    return to_native(matrix.select(*columns).sort("cohort", "currency", "age"))


def transactions(data: Any, tz: str | None = None, keep_zero: bool = False) -> Any:
    """One row per customer order with its net sales: the frame CLV libraries take.

    ``lifetimes`` (``summary_data_from_transaction_data``) and PyMC-Marketing
    (``rfm_summary``, ``BetaGeoModel``...) take it as it is, with ``customer_id_col=
    "customer_id"``, ``datetime_col="date"``, ``monetary_value_col="monetary_value"``
    (cast ``monetary_value`` to float for them, and keep one currency). The money is exact:
    the order's sale less what was later cancelled or refunded of it.

    Args:
        data: The loaded tables or a ledger frame, pandas or polars.
        tz: The business time zone of ``date`` (default: the ledger's, or
            ``"Europe/Istanbul"``).
        keep_zero: Keep orders whose net sales are zero or less (cancelled or refunded in
            full); by default they are left out: they were not purchases.

    Returns:
        A frame of the input's kind, sorted by customer, date and order: ``customer_id``,
        ``date`` (local midnight of the day the order was placed, naive), ``monetary_value``
        (the order's net sales; exact decimal), ``order_id`` and ``currency``. Orders
        without a customer are left out.

    Example:
        >>> tx = transactions(tables).query("currency == 'try'")
        >>> tx = tx.astype({"monetary_value": float})  # as lifetimes and PyMC-Marketing take it
        >>> tx.columns.tolist()
        ['customer_id', 'date', 'monetary_value', 'order_id', 'currency']
        >>> tx.groupby("customer_id").size().value_counts().sort_index().to_dict()  # orders
        {1: 104, 2: 28, 3: 10, 4: 1, 5: 1, 6: 2, 7: 1}
    """
    return to_native(transaction_frame(data, tz, keep_zero))


def transaction_frame(data: Any, tz: str | None, keep_zero: bool = False) -> Frame:
    """:func:`transactions` as a narwhals frame (for :func:`omsframe.rfm`)."""
    book, zone = ledger_frame(data, tz)
    book = book.filter(~nw.col("customer_id").is_null())
    keys = ["customer_id", "order_id", "currency"]
    book = book.with_columns(_key=group_key(keys))
    placed = book.filter(_SALE).group_by("_key").agg(nw.col("booked_at").min().alias("_placed"))
    orders = (
        book.group_by(*keys, "_key")
        .agg(nw.col("net_sales").sum().alias("monetary_value"))
        .join(placed, on="_key", how="inner")
        .with_columns(
            date=period_start(local_time("_placed", zone), "day"),
            monetary_value=nw.col("monetary_value").cast(MONEY),
        )
    )
    if not keep_zero:
        orders = orders.filter(nw.col("monetary_value") > 0)
    columns = ["customer_id", "date", "monetary_value", "order_id", "currency"]
    return orders.select(*columns).sort("customer_id", "date", "order_id")


def _with_first(book: Frame, by: Period, tz: str) -> Frame:
    """Add ``period`` (of ``booked_at``) and ``_first``: the period of the first order."""
    book = book.with_columns(period=period_start(local_time("booked_at", tz), by))
    # a null-safe key: pandas would match null currencies in a join, polars would not
    book = book.with_columns(_customer=group_key(["customer_id", "currency"]))
    first = (
        book.filter(_SALE & ~nw.col("customer_id").is_null())
        .group_by("_customer")
        .agg(nw.col("period").min().alias("_first"))
    )
    return book.join(first, on="_customer", how="left").drop("_customer")
