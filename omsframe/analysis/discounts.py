"""How much is sold on discount, and how deep: shares, rates and depth distributions.

Both functions look at what was *offered*: the sale rows of the ledger (units as ordered,
cancelled and refunded ones included), never the return rows.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> monthly = of.discounts(tables, by="month")
    >>> monthly[monthly.currency == "try"][["period", "items_discounted", "discount_rate"]]
           period  items_discounted  discount_rate
    1  2024-10-01                14       0.023609
    4  2024-11-01                54       0.123788
    7  2024-12-01                59       0.037334
    10 2025-01-01                14       0.011670
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
    check_period,
    group_key,
    local_time,
    period_start,
    ratio,
    require,
    to_native,
    whole_numbers,
)
from omsframe.analysis.errors import AnalysisError
from omsframe.analysis.ledger import ledger_frame
from omsframe.analysis.measures import RATIOS

__all__ = ["DEPTH_EDGES", "discount_depth", "discounts"]

DEPTH_EDGES: tuple[int, ...] = (10, 20, 30, 40, 50)
"""Default upper edges (percent) of the depth buckets: 0 %, 0-10 %, ..., 40-50 %, >50 %."""

_UNIT_COLUMNS = ("unit_price", "unit_discount", "unit_retail_price")


def _sales(
    data: Any, by: Period, dims: Sequence[str], tz: str | None, *, per_currency: bool = True
) -> tuple[Frame, list[str]]:
    """The ledger's sale rows with ``period`` and a null-safe ``_key`` of dims and currency.

    ``per_currency``: the result is per currency anyway (``currency`` is dropped from
    ``dims``); otherwise ``currency`` is a dimension like any other.
    """
    check_period(by)
    book, zone = ledger_frame(data, tz)
    dims = [d for d in dims if d != "currency"] if per_currency else list(dims)
    require(book, [*dims, *_UNIT_COLUMNS], "the ledger", dims=dims)
    sales = book.filter(nw.col("kind") == "sale").with_columns(
        period=period_start(local_time("booked_at", zone), by),
        _key=group_key([*dims, "currency"]),
    )
    return sales, dims


def discounts(
    data: Any, by: Period = "month", dims: Sequence[str] = (), tz: str | None = None
) -> Any:
    """Discount shares and rates per period, dimensions and currency.

    An item is *discounted* when it carries a basket discount (``unit_discount > 0``), and
    *marked down* when it sold below its list price (``unit_price < unit_retail_price``); an
    order is discounted when one of its items (in the row's dims) is.

    Args:
        data: The loaded tables or a ledger frame, pandas or polars.
        by: ``"day"``, ``"week"``, ``"month"``, ``"quarter"`` or ``"year"``.
        dims: Ledger columns to slice by; ``currency`` is always one.
        tz: The business time zone (default: the ledger's, or ``"Europe/Istanbul"``).

    Returns:
        A frame of the input's kind: ``period``, ``dims``, ``currency``, ``orders``,
        ``orders_discounted``, ``items``, ``items_discounted``, ``items_marked_down``,
        ``gross_sales``, ``discounts``, ``markdown`` (exact decimals), and the floats
        ``orders_discounted_share``, ``items_discounted_share``,
        ``items_marked_down_share``, ``discount_rate`` and ``markdown_rate`` (see
        :func:`omsframe.explain`).

    Example:
        >>> weekly = discounts(tables, by="week", dims=["channel"])
        >>> weekly.shape
        (54, 16)
        >>> weekly.columns[:4].tolist()
        ['period', 'channel', 'currency', 'orders']
    """
    dims = as_names(dims)
    sales, dims = _sales(data, by, dims, tz)
    sales = sales.with_columns(
        _discounted=(nw.col("unit_discount") > 0).cast(nw.Int64),
        _marked_down=(nw.col("unit_retail_price") > nw.col("unit_price")).cast(nw.Int64),
    )
    keys = ["period", *dims, "currency", "_key"]
    totals = sales.group_by(keys).agg(
        nw.len().alias("items"),
        nw.col("_discounted").sum().alias("items_discounted"),
        nw.col("_marked_down").sum().alias("items_marked_down"),
        nw.col("gross_sales").sum(),
        nw.col("discounts").sum(),
        nw.col("markdown").sum(),
    )
    orders = sales.group_by("period", "_key").agg(nw.col("order_id").n_unique().alias("orders"))
    discounted = (
        sales.filter(nw.col("_discounted") == 1)
        .group_by("period", "_key")
        .agg(nw.col("order_id").n_unique().alias("orders_discounted"))
    )
    counts = ["orders", "orders_discounted", "items", "items_discounted", "items_marked_down"]
    totals = (
        totals.join(orders, on=["period", "_key"], how="left")
        .join(discounted, on=["period", "_key"], how="left")
        .with_columns(
            *[nw.col(c).fill_null(0).cast(nw.Int64) for c in counts],
            *[nw.col(c).cast(MONEY) for c in ("gross_sales", "discounts", "markdown")],
        )
        .with_columns(
            orders_discounted_share=ratio(nw.col("orders_discounted"), nw.col("orders")),
            items_discounted_share=ratio(nw.col("items_discounted"), nw.col("items")),
            items_marked_down_share=ratio(nw.col("items_marked_down"), nw.col("items")),
            discount_rate=RATIOS["discount_rate"](),
            markdown_rate=RATIOS["markdown_rate"](),
        )
    )
    columns = [
        "period",
        *dims,
        "currency",
        *counts,
        "orders_discounted_share",
        "items_discounted_share",
        "items_marked_down_share",
        "gross_sales",
        "discounts",
        "discount_rate",
        "markdown",
        "markdown_rate",
    ]
    return to_native(totals.select(*columns).sort("period", *dims, "currency"), keep=dims)


def discount_depth(
    data: Any,
    by: Period = "month",
    dims: Sequence[str] = (),
    tz: str | None = None,
    edges: Sequence[int] = DEPTH_EDGES,
) -> Any:
    """How deep the discounts and markdowns go: the items sold in each depth bucket.

    Two depths per unit sold: the *discount* depth ``unit_discount / unit_price`` (the basket
    discount as a share of the sale price) and the *markdown* depth ``(unit_retail_price -
    unit_price) / unit_retail_price`` (how far below list price). Buckets are ``0%`` (none),
    then ``(0, e1]``, ``(e1, e2]``, ... and ``>last``, compared exactly in integer cents. Only
    counts, no money, so currencies need not be apart.

    Args:
        data: The loaded tables or a ledger frame, pandas or polars.
        by: ``"day"``, ``"week"``, ``"month"``, ``"quarter"`` or ``"year"``.
        dims: Ledger columns to slice by.
        tz: The business time zone (default: the ledger's, or ``"Europe/Istanbul"``).
        edges: Upper bucket edges in whole percent, increasing, between 1 and 99.

    Returns:
        A long frame of the input's kind: ``period``, ``dims``, ``depth`` (``"discount"`` or
        ``"markdown"``), ``bucket`` (``"0%"``, ``"0-10%"``... ``">50%"``), ``bucket_order``
        (0, 1, ...), ``items`` and ``share`` (of the items of the period, dims and depth;
        float). Empty buckets have no row.

    Raises:
        AnalysisError: ``edges`` are not increasing whole percents between 1 and 99.

    Example:
        >>> depth = discount_depth(tables, by="month", edges=(10, 25, 50))
        >>> november = depth[(depth.period == "2024-11-01") & (depth.depth == "discount")]
        >>> november[["bucket", "items", "share"]]
            bucket  items     share
        7       0%     95  0.582822
        8    0-10%     12  0.073620
        9   10-25%     17  0.104294
        10  25-50%     39  0.239264
    """
    dims = as_names(dims)
    edges = whole_numbers(edges, "edges", 1, 99)
    if edges != sorted(set(edges)):
        raise AnalysisError(f"edges must be increasing whole percents in 1..99, got {edges}")
    sales, dims = _sales(data, by, dims, tz, per_currency=False)
    labels = ["0%", *[f"{lo}-{hi}%" for lo, hi in zip([0, *edges], edges, strict=False)]]
    labels.append(f">{edges[-1]}%")
    price, retail = cents(nw.col("unit_price")), cents(nw.col("unit_retail_price"))
    parts = []
    for depth, part, whole in (
        ("discount", cents(nw.col("unit_discount")), price),
        ("markdown", retail - price, retail),
    ):
        parts.append(
            sales.select(
                "period",
                *dims,
                depth=nw.lit(depth),
                bucket_order=_bucket(part, whole, edges),
                _key=group_key(dims),
            )
        )
    rows = nw.concat(parts, how="vertical")
    keys = ["period", *dims, "depth", "_key"]
    counts = rows.group_by([*keys, "bucket_order"]).agg(nw.len().alias("items"))
    totals = rows.group_by("period", "depth", "_key").agg(nw.len().alias("_all"))
    counts = counts.join(totals, on=["period", "depth", "_key"], how="left").with_columns(
        bucket=nw.col("bucket_order").replace_strict(
            list(range(len(labels))), labels, return_dtype=nw.String
        ),
        items=nw.col("items").cast(nw.Int64),
        share=ratio(nw.col("items"), nw.col("_all")),
    )
    columns = ["period", *dims, "depth", "bucket", "bucket_order", "items", "share"]
    return to_native(
        counts.select(*columns).sort("period", *dims, "depth", "bucket_order"), keep=dims
    )


def _bucket(part: nw.Expr, whole: nw.Expr, edges: list[int]) -> nw.Expr:
    """The bucket number of ``part / whole``: 0 for none, k for ``(e[k-1], e[k]]``, exact."""
    chain = nw.when((part <= 0) | (whole <= 0)).then(nw.lit(0))
    for k, edge in enumerate(edges, start=1):
        chain = chain.when(part * 100 <= whole * edge).then(nw.lit(k))
    return chain.otherwise(nw.lit(len(edges) + 1)).cast(nw.Int64)
