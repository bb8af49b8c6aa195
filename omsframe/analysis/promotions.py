"""When and what sells on discount: campaign days and the products most sold on discount.

Like :mod:`omsframe.analysis.discounts`, both look at the ledger's sale rows (what was
ordered, cancelled and refunded units included).

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> days = of.campaign_days(tables).query("campaign and currency == 'try'")
    >>> days[["day", "units", "discount_rate"]]
              day  units  discount_rate
    18 2024-10-15      3       0.344656
    53 2024-11-11      4       0.396025
    72 2024-11-29     22       0.307867
    73 2024-11-30     12       0.466287
    74 2024-12-01     10       0.409656
    76 2024-12-02      1       0.324081
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal

import narwhals as nw

from omsframe.analysis._frames import (
    MONEY,
    as_names,
    check_names,
    group_key,
    local_time,
    period_start,
    ratio,
    require,
    to_native,
)
from omsframe.analysis.errors import AnalysisError
from omsframe.analysis.ledger import ledger_frame
from omsframe.analysis.measures import RATIOS

__all__ = ["campaign_days", "top_discounted_products"]

OnDiscount = Literal["discount", "markdown", "either"]
_MONEY = ("gross_sales", "discounts", "markdown")


def campaign_days(
    data: Any, dims: Sequence[str] = (), tz: str | None = None, threshold: float = 0.2
) -> Any:
    """Discount depth against units sold, per business day and currency.

    Campaign days (Black Friday, flash sales) show as days where deep discounts meet many
    units: plot ``discount_rate`` against ``units``. A day is flagged ``campaign`` when its
    discount rate reaches ``threshold``.

    Args:
        data: The loaded tables or a ledger frame, pandas or polars.
        dims: Ledger columns to slice by; ``currency`` is always one.
        tz: The business time zone whose days count (default: the ledger's, or
            ``"Europe/Istanbul"``).
        threshold: The discount rate (0.2 is 20 %) from which a day is a campaign day;
            above 0, at most 1.

    Returns:
        A frame of the input's kind, one row per day, dims and currency with sales: ``day``
        (local midnight, naive), ``dims``, ``currency``, ``orders``, ``units`` (ordered),
        ``gross_sales``, ``discounts``, ``markdown`` (exact decimals), ``discount_rate``,
        ``markdown_rate`` (floats) and ``campaign`` (bool).

    Example:
        >>> days = campaign_days(tables)
        >>> days.groupby("campaign")["units"].mean().round(1).to_dict()  # units a day
        {False: 4.6, True: 6.4}
    """
    dims = as_names(dims)
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise AnalysisError(f"threshold must be a discount rate such as 0.2, got {threshold!r}")
    if not 0 < threshold <= 1:
        raise AnalysisError(f"threshold is a rate between 0 and 1 (0.2 is 20 %), got {threshold}")
    book, zone = ledger_frame(data, tz)
    dims = [d for d in dims if d != "currency"]
    require(book, dims, "the ledger", dims=dims)
    sales = book.filter(nw.col("kind") == "sale").with_columns(
        day=period_start(local_time("booked_at", zone), "day"),
        _key=group_key([*dims, "currency"]),
    )
    keys = ["day", *dims, "currency", "_key"]
    days = sales.group_by(keys).agg(nw.len().alias("units"), *[nw.col(m).sum() for m in _MONEY])
    orders = sales.group_by("day", "_key").agg(nw.col("order_id").n_unique().alias("orders"))
    days = (
        days.join(orders, on=["day", "_key"], how="left")
        .with_columns(
            *[nw.col(m).cast(MONEY) for m in _MONEY],
            orders=nw.col("orders").cast(nw.Int64),
            units=nw.col("units").cast(nw.Int64),
        )
        .with_columns(
            discount_rate=RATIOS["discount_rate"](), markdown_rate=RATIOS["markdown_rate"]()
        )
        .with_columns(campaign=(nw.col("discount_rate") >= threshold).fill_null(value=False))
    )
    columns = ["day", *dims, "currency", "orders", "units", *_MONEY]
    columns += ["discount_rate", "markdown_rate", "campaign"]
    return to_native(days.select(*columns).sort("day", *dims, "currency"), keep=dims)


def top_discounted_products(data: Any, n: int = 10, on: OnDiscount = "discount") -> Any:
    """The products most sold on discount, per currency.

    Args:
        data: The loaded tables or a ledger frame (filter it first for a period or channel),
            pandas or polars.
        n: How many products per currency.
        on: What counts as sold on discount: ``"discount"`` (a basket discount,
            ``unit_discount > 0``), ``"markdown"`` (below list price) or ``"either"``.

    Returns:
        A frame of the input's kind, at most ``n`` rows per currency, sorted by currency
        then by ``units_on_discount`` (most first): ``product_id``, ``sku``,
        ``product_name``, ``currency``, ``units`` (all units sold), ``units_on_discount``,
        ``share_on_discount`` (float), and over the units on discount ``gross_sales``,
        ``discounts``, ``markdown`` (exact decimals) and ``discount_rate`` (float).

    Raises:
        AnalysisError: ``n`` is not positive or ``on`` is unknown.

    Example:
        >>> top = top_discounted_products(tables, n=5, on="either")
        >>> top.shape
        (15, 11)
        >>> top[top.currency == "try"][["sku", "units_on_discount"]]
                       sku  units_on_discount
        5  AKN-0138-BLA-XL                 19
        6   AKN-0125-GRE-S                 15
        7  AKN-0145-NAV-XL                 11
        8  AKN-0104-GRE-XL                 10
        9   AKN-0146-RED-L                  9
    """
    if n < 1:
        raise AnalysisError(f"n must be at least 1, got {n}")
    check_names([on], ("discount", "markdown", "either"), "on")
    book, _ = ledger_frame(data, "UTC")
    keys = ["product_id", "sku", "product_name", "currency"]
    require(book, [*keys, "unit_price", "unit_discount", "unit_retail_price"], "the ledger")
    discounted = nw.col("unit_discount") > 0
    marked_down = nw.col("unit_retail_price") > nw.col("unit_price")
    condition = {"discount": discounted, "markdown": marked_down}.get(on, discounted | marked_down)
    sales = book.filter(nw.col("kind") == "sale").with_columns(
        _key=group_key(keys), _on=condition.cast(nw.Int64)
    )
    everything = sales.group_by("_key").agg(nw.len().alias("units"))
    on_discount = (
        sales.filter(nw.col("_on") == 1)
        .group_by(*keys, "_key")
        .agg(nw.len().alias("units_on_discount"), *[nw.col(m).sum() for m in _MONEY])
    )
    products = (
        on_discount.join(everything, on="_key", how="left")
        .with_columns(
            *[nw.col(m).cast(MONEY) for m in _MONEY],
            units=nw.col("units").cast(nw.Int64),
            units_on_discount=nw.col("units_on_discount").cast(nw.Int64),
        )
        .with_columns(
            share_on_discount=ratio(nw.col("units_on_discount"), nw.col("units")),
            discount_rate=RATIOS["discount_rate"](),
        )
        .sort(["units_on_discount", "gross_sales", "sku"], descending=[True, True, False])
    )
    columns = [*keys, "units", "units_on_discount", "share_on_discount", *_MONEY]
    columns.append("discount_rate")
    currencies = sorted(products.get_column("currency").unique().to_list(), key=str)
    tops = [products.filter(nw.col("currency") == c).head(n) for c in currencies]
    if not tops:
        return to_native(products.select(*columns))
    return to_native(nw.concat(tops, how="vertical").select(*columns))
