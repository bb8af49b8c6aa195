"""Products: sales and returns per SKU (or base code), the top sellers, ABC classes.

All three sum the ledger (:func:`omsframe.ledger`) per product and currency, so a product's
net sales agree with :func:`omsframe.revenue` sliced by ``sku``. Filter the ledger first for
a period or a channel.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> of.top_products(tables, n=3).query("currency == 'try'")[["rank", "sku", "net_sales"]]
       rank              sku  net_sales
    3     1   AKN-0125-GRE-S   49945.09
    4     2  AKN-0105-BEI-XS   32777.46
    5     3  AKN-0138-BLA-XL   24376.03
    >>> abc = of.abc_classes(tables)
    >>> abc.groupby(["currency", "abc_class"]).size().unstack()  # doctest: +NORMALIZE_WHITESPACE
    abc_class   A   B   C
    currency
    eur        19  10  19
    try        77  57  68
    usd        16   6  10
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import narwhals as nw

from omsframe.analysis._frames import (
    MONEY,
    Frame,
    as_frame,
    cents,
    check_names,
    group_key,
    is_tables,
    positive_count,
    ratio,
    require,
    to_native,
)
from omsframe.analysis.errors import AnalysisError
from omsframe.analysis.ledger import ledger_frame

__all__ = ["PRODUCT_LEVELS", "abc_classes", "product_sales", "top_products"]

Level = Literal["sku", "base_code"]
RankBy = Literal["net_sales", "gross_sales", "units", "units_sold"]
PRODUCT_LEVELS: dict[str, tuple[str, ...]] = {
    "sku": ("product_id", "sku", "product_name"),
    "base_code": ("base_code",),
}
"""What a product is at each level: a SKU (one variant), or a base code (its variants
together; ``variants`` then counts their product ids)."""
_MONEY = ("gross_sales", "discounts", "returns", "net_sales")


def product_sales(data: Any, level: Level = "sku") -> Any:
    """Units, money and return rates per product and currency.

    Args:
        data: The loaded tables or a ledger frame, pandas or polars. ``level="base_code"``
            needs the tables (for ``order_items.base_code``) or a ledger with ``base_code``.
        level: ``"sku"`` (``product_id``, ``sku``, ``product_name``) or ``"base_code"``.

    Returns:
        A frame of the input's kind, sorted by currency and net sales (most first): the
        level's columns (and ``variants`` for base codes), ``currency``, ``orders``,
        ``units_sold``, ``units_cancelled``, ``units_refunded``, ``units`` (net),
        ``gross_sales``, ``discounts``, ``returns``, ``net_sales`` (exact decimals),
        ``cancel_rate`` and ``refund_rate`` (of the units sold; floats).

    Raises:
        AnalysisError: An unknown level, or no ``base_code`` for ``level="base_code"``.

    Example:
        >>> sales = product_sales(tables)
        >>> sales.shape
        (282, 15)
        >>> sales.columns[:5].tolist()
        ['product_id', 'sku', 'product_name', 'currency', 'orders']
    """
    return to_native(_product_frame(data, level))


def top_products(
    data: Any, n: int = 10, rank_by: RankBy = "net_sales", level: Level = "sku"
) -> Any:
    """The best-selling products per currency, by net sales or units.

    Args:
        data: The loaded tables or a ledger frame, pandas or polars.
        n: How many products per currency.
        rank_by: ``"net_sales"``, ``"gross_sales"``, ``"units"`` (net) or ``"units_sold"``.
        level: ``"sku"`` or ``"base_code"`` (see :func:`product_sales`).

    Returns:
        :func:`product_sales`'s columns with ``rank`` (1 = best) first, at most ``n`` rows
        per currency, sorted by currency and rank (ties by the product's key).

    Raises:
        AnalysisError: ``n`` is not positive, or an unknown ``rank_by`` or level.

    Example:
        >>> top = top_products(tables, n=3, rank_by="units")
        >>> top.query("currency == 'try'")[["rank", "product_name", "units"]]
           rank             product_name  units
        3     1   Floral Midi Dress Grey     46
        4     2       Skinny Jeans Beige     18
        5     3  Floral Midi Dress Black     16
    """
    n = positive_count(n, "n")
    check_names([rank_by], ("net_sales", "gross_sales", "units", "units_sold"), "rank_by")
    products = _ranked(_product_frame(data, level), rank_by, level)
    return to_native(products.filter(nw.col("rank") <= n))


def abc_classes(
    data: Any,
    measure: RankBy = "net_sales",
    level: Level = "sku",
    thresholds: Sequence[int] = (80, 95),
) -> Any:
    """ABC classes: the few products that make most of the sales, per currency.

    Products are ranked by ``measure``; ``A`` are the best sellers that together make the
    first ``thresholds[0]`` % of the total (the product that crosses it included), ``B``
    those up to ``thresholds[1]`` %, ``C`` the rest and every product with nothing
    positive. Shares are of the sum of the positive values, compared exactly (integer
    cents or units).

    Args:
        data: The loaded tables or a ledger frame, pandas or polars.
        measure: ``"net_sales"``, ``"gross_sales"``, ``"units"`` or ``"units_sold"``.
        level: ``"sku"`` or ``"base_code"`` (see :func:`product_sales`).
        thresholds: The cumulative percents that close classes A and B.

    Returns:
        :func:`product_sales`'s columns with ``rank`` first and ``share``,
        ``cumulative_share`` (floats) and ``abc_class`` last, every product, sorted by
        currency and rank.

    Raises:
        AnalysisError: Thresholds that are not two increasing whole percents in 1..100.

    Example:
        >>> a = abc_classes(tables).query("abc_class == 'A'")
        >>> a.groupby("currency").size().to_dict()
        {'eur': 19, 'try': 77, 'usd': 16}
        >>> a.groupby("currency")["share"].sum().round(2).to_dict()
        {'eur': 0.8, 'try': 0.8, 'usd': 0.82}
    """
    a, b = _thresholds(thresholds)
    check_names([measure], ("net_sales", "gross_sales", "units", "units_sold"), "measure")
    products = _ranked(_product_frame(data, level), measure, level)
    value = cents(nw.col(measure)) if measure in _MONEY else nw.col(measure).cast(nw.Int64)
    products = products.with_columns(_value=nw.when(value > 0).then(value).otherwise(0))
    parts = []
    for currency in _currencies(products):
        part = products.filter(nw.col("currency") == currency).sort("rank")
        part = part.with_columns(_cumulative=nw.col("_value").cum_sum())
        parts.append(part)
    if not parts:
        return to_native(
            products.with_columns(
                share=nw.lit(0.0), cumulative_share=nw.lit(0.0), abc_class=nw.lit("C")
            ).drop("_value")
        )
    rows = nw.concat(parts, how="vertical")
    totals = rows.group_by("currency").agg(nw.col("_value").sum().alias("_total"))
    before = nw.col("_cumulative") - nw.col("_value")
    rows = rows.join(totals, on="currency", how="left").with_columns(
        share=ratio(nw.col("_value"), nw.col("_total")),
        cumulative_share=ratio(nw.col("_cumulative"), nw.col("_total")),
        abc_class=nw.when(nw.col("_value") <= 0)
        .then(nw.lit("C"))
        .when(before * 100 < nw.col("_total") * a)
        .then(nw.lit("A"))
        .when(before * 100 < nw.col("_total") * b)
        .then(nw.lit("B"))
        .otherwise(nw.lit("C")),
    )
    return to_native(rows.drop("_value", "_cumulative", "_total"))


def _product_frame(data: Any, level: Level) -> Frame:
    check_names([level], PRODUCT_LEVELS, "level")
    book, _ = ledger_frame(data, "UTC")
    keys = list(PRODUCT_LEVELS[level])
    if level == "base_code" and "base_code" not in book.columns:
        if not is_tables(data) or "order_items" not in data:
            raise AnalysisError(
                "level='base_code' needs the loaded tables (order_items.base_code) or a "
                "ledger with a base_code column"
            )
        items = as_frame(data["order_items"], "order_items")
        require(items, ["item_id", "base_code"], "order_items")
        book = book.join(items.select("item_id", "base_code"), on="item_id", how="left")
    require(book, keys, "the ledger")
    book = book.with_columns(
        _key=group_key([*keys, "currency"]),
        _sold=(nw.col("kind") == "sale").cast(nw.Int64),
        _cancelled=(nw.col("kind") == "cancellation").cast(nw.Int64),
        _refunded=(nw.col("kind") == "refund").cast(nw.Int64),
    )
    extra = [nw.col("product_id").n_unique().alias("variants")] if level == "base_code" else []
    products = book.group_by(*keys, "currency", "_key").agg(
        nw.col("_sold").sum().alias("units_sold"),
        nw.col("_cancelled").sum().alias("units_cancelled"),
        nw.col("_refunded").sum().alias("units_refunded"),
        nw.col("units").sum(),
        *[nw.col(m).sum() for m in _MONEY],
        *extra,
    )
    orders = (
        book.filter(nw.col("kind") == "sale")
        .group_by("_key")
        .agg(nw.col("order_id").n_unique().alias("orders"))
    )
    counts = ["orders", "units_sold", "units_cancelled", "units_refunded", "units"]
    counts += ["variants"] if extra else []
    products = (
        products.join(orders, on="_key", how="left")
        .with_columns(
            *[nw.col(c).fill_null(0).cast(nw.Int64) for c in counts],
            *[nw.col(m).cast(MONEY) for m in _MONEY],
        )
        .with_columns(
            cancel_rate=ratio(nw.col("units_cancelled"), nw.col("units_sold")),
            refund_rate=ratio(nw.col("units_refunded"), nw.col("units_sold")),
        )
    )
    columns = [*keys, *(["variants"] if extra else []), "currency", *counts[:5], *_MONEY]
    columns += ["cancel_rate", "refund_rate"]
    return products.select(*columns).sort(
        ["currency", "net_sales", *keys],
        descending=[False, True, *[False] * len(keys)],
        nulls_last=True,
    )


def _ranked(products: Frame, rank_by: str, level: Level) -> Frame:
    """Add ``rank`` (1 = best by ``rank_by`` within the currency; ties by the key)."""
    keys = list(PRODUCT_LEVELS[level])
    parts = []
    for currency in _currencies(products):
        part = products.filter(nw.col("currency") == currency).sort(
            [rank_by, *keys], descending=[True, *[False] * len(keys)], nulls_last=True
        )
        parts.append(part.with_row_index("rank").with_columns(nw.col("rank").cast(nw.Int64) + 1))
    if not parts:
        return products.with_columns(rank=nw.lit(0, nw.Int64)).select("rank", *products.columns)
    return nw.concat(parts, how="vertical").select("rank", *products.columns)


def _currencies(frame: Frame) -> list[str]:
    values = frame.get_column("currency").unique().to_list()
    return sorted((v for v in values if v is not None), key=str)


def _thresholds(thresholds: Sequence[int]) -> tuple[int, int]:
    values = list(thresholds)
    if len(values) != 2 or not all(isinstance(v, int) for v in values):
        raise AnalysisError(f"thresholds must be two whole percents, got {thresholds}")
    a, b = values
    if not 0 < a < b <= 100:
        raise AnalysisError(f"thresholds must increase within 1..100, got {thresholds}")
    return a, b
