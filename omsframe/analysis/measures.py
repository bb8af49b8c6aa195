"""Every measure, defined once: its formula is its docstring, its code a narwhals expression.

The ledger (:func:`omsframe.ledger`) has one row per unit sold (``kind == "sale"``) and one
per unit cancelled or refunded (``kind`` ``"cancellation"`` / ``"refund"``, together the
*return* rows). Each row keeps the unit's amounts as the OMS sends them, unsigned:
``unit_price``, ``unit_discount``, ``unit_retail_price`` and ``unit_tax``. The measures turn
them into signed amounts that add up over any set of rows, following the published Shopify
sales definitions: a sale counts on the day the order was placed, a return as a negative on
the day it happened, so a cancelled order nets to zero.

Prices include tax, as the OMS sends them (``price`` is the tax-included sale price), so
``gross_sales``, ``discounts``, ``returns`` and ``net_sales`` include tax; ``taxes`` is the tax
they contain and ``net_sales_excl_tax`` is net sales without it.

Money measures are exact ``Decimal(18, 2)``; ratios (average order value, rates, shares) are
float64 and say so.

Example:
    >>> explain("net_sales")
    net_sales = gross_sales + discounts + returns.
    <BLANKLINE>
    What the shop keeps from the units sold, after discounts and returns, tax included.
    Money (exact decimal).
"""

# Each measure's docstring starts with its formula, so with its lower-case name:
# ruff: noqa: D403

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import TextIO

import narwhals as nw

from omsframe.analysis._frames import MONEY, cents, ratio, zero_money
from omsframe.analysis.errors import AnalysisError

__all__ = ["MEASURES", "RATIOS", "explain"]

Measure = Callable[[], nw.Expr]
MEASURES: dict[str, Measure] = {}
"""The ledger's row measures by name, in column order."""
RATIOS: dict[str, Measure] = {}
"""Measures of aggregated rows (an analysis' output), by name."""


def _measure(function: Measure) -> Measure:
    MEASURES[function.__name__] = function
    return function


def _ratio(function: Measure) -> Measure:
    RATIOS[function.__name__] = function
    return function


def _sale() -> nw.Expr:
    return nw.col("kind") == "sale"


def _signed(amount: nw.Expr) -> nw.Expr:
    """``amount`` on a sale row, ``-amount`` on a return row."""
    return nw.when(_sale()).then(amount).otherwise(-amount).cast(MONEY)


@_measure
def gross_sales() -> nw.Expr:
    """gross_sales = unit_price on a sale row; 0 on a return row.

    The sale price of the units sold (after markdown, before the basket discount), tax
    included, counted on the day the order was placed. Money (exact decimal).
    """
    return nw.when(_sale()).then(nw.col("unit_price")).otherwise(zero_money()).cast(MONEY)


@_measure
def discounts() -> nw.Expr:
    """discounts = -unit_discount on a sale row; 0 on a return row.

    The basket discounts (coupons, campaigns) given on the units sold, as a negative amount,
    tax included. Money (exact decimal).
    """
    return nw.when(_sale()).then(-nw.col("unit_discount")).otherwise(zero_money()).cast(MONEY)


@_measure
def returns() -> nw.Expr:
    """returns = -(unit_price - unit_discount) on a return row; 0 on a sale row.

    What the customer no longer pays for units cancelled or refunded, as a negative amount on
    the day of the cancellation or refund, tax included. Money (exact decimal).
    """
    net = nw.col("unit_price") - nw.col("unit_discount")
    return nw.when(_sale()).then(zero_money()).otherwise(-net).cast(MONEY)


@_measure
def net_sales() -> nw.Expr:
    """net_sales = gross_sales + discounts + returns.

    What the shop keeps from the units sold, after discounts and returns, tax included.
    Money (exact decimal).
    """
    return (gross_sales() + discounts() + returns()).cast(MONEY)


@_measure
def taxes() -> nw.Expr:
    """taxes = unit_tax on a sale row; -unit_tax on a return row.

    The tax included in net sales. ``unit_tax`` is the item's ``tax_amount``, or, where the
    OMS sent none, ``round_half_up((unit_price - unit_discount) * tax_rate / (100 +
    tax_rate), 2)``; 0 without a rate either (the ledger's ``tax_source`` says which:
    ``oms``, ``rate``, ``none``). Money (exact decimal).
    """
    return _signed(nw.col("unit_tax"))


@_measure
def net_sales_excl_tax() -> nw.Expr:
    """net_sales_excl_tax = net_sales - taxes.

    Net sales without the tax they include (Shopify's "net sales" for a shop whose prices
    include tax). Money (exact decimal).
    """
    return (net_sales() - taxes()).cast(MONEY)


@_measure
def total_sales() -> nw.Expr:
    """total_sales = net_sales_excl_tax + taxes.

    Net sales plus taxes; equal to ``net_sales`` because prices include tax, and without
    shipping, which the OMS order items do not carry. Money (exact decimal).
    """
    return (net_sales_excl_tax() + taxes()).cast(MONEY)


@_measure
def markdown() -> nw.Expr:
    """markdown = unit_retail_price - unit_price on a sale row; its negative on a return row.

    How far below the list price the units were sold (price-list markdowns, not basket
    discounts); not part of net sales. Money (exact decimal).
    """
    return _signed(nw.col("unit_retail_price") - nw.col("unit_price"))


@_measure
def units() -> nw.Expr:
    """units = 1 on a sale row; -1 on a return row.

    Net units (an OMS item is one unit): units sold less units cancelled or refunded.
    Integer.
    """
    return nw.when(_sale()).then(nw.lit(1)).otherwise(nw.lit(-1)).cast(nw.Int64)


@_ratio
def average_order_value() -> nw.Expr:
    """average_order_value = (gross_sales + discounts) / orders.

    The value of an average order placed in the period, after discounts, tax included, before
    later returns (``gross_sales`` and ``discounts`` only count on sale rows). Float.
    """
    return ratio(cents(nw.col("gross_sales") + nw.col("discounts")), nw.col("orders") * 100)


@_ratio
def units_per_order() -> nw.Expr:
    """units_per_order = units_ordered / orders.

    Units in an average order placed in the period (``units_ordered`` counts sale rows).
    Float.
    """
    return ratio(nw.col("units_ordered"), nw.col("orders"))


@_ratio
def discount_rate() -> nw.Expr:
    """discount_rate = -discounts / gross_sales.

    The share of gross sales given away as basket discounts (0.15 is 15 %). Float.
    """
    return ratio(-cents(nw.col("discounts")), cents(nw.col("gross_sales")))


@_ratio
def markdown_rate() -> nw.Expr:
    """markdown_rate = markdown / (gross_sales + markdown).

    How far below list price the units sold, as a share of their list value. Float.
    """
    return ratio(cents(nw.col("markdown")), cents(nw.col("gross_sales") + nw.col("markdown")))


#: What the figures of an analysis' output mean that are counts or comparisons, not measures.
FIGURES: dict[str, str] = {
    "orders": "orders = the number of distinct orders with a sale row.\n\n"
    "The orders placed in the period (and dims, currency); an order counts once however many "
    "units it has, and stays counted when it is cancelled or refunded later. Count.",
    "units_ordered": "units_ordered = the number of sale rows.\n\n"
    "The units ordered in the period, before cancellations and refunds (units nets those "
    "out). Count.",
    "partial": "partial = the period holds the moment the data ends.\n\n"
    "True for the period of the loaded tables' as_of (the latest change to an order the last "
    "sync saw), or of a ledger's latest booking: the data does not cover it wholly. Bool.",
}


def _comparison(name: str) -> str | None:
    """The text for ``previous_<m>``, ``<m>_change`` or ``<m>_change_pct`` of a measure."""
    for prefix, suffix, text in (
        (
            "previous_",
            "",
            "{m}'s value in the period before, for the same dims and currency; "
            "null when that period has no row. Money (exact decimal).",
        ),
        (
            "",
            "_change_pct",
            "({m} - previous_{m}) / abs(previous_{m}), a fraction: 0.46 is "
            "+46 %, -0.2 is -20 %; null without a previous value or when it is 0. Float.",
        ),
        ("", "_change", "{m} - previous_{m}. Money (exact decimal)."),
    ):
        if name.startswith(prefix) and name.endswith(suffix):
            measure = name[len(prefix) : len(name) - len(suffix)]
            if measure in MEASURES and measure != "units":
                return f"{name} = " + text.format(m=measure)
    return None


def definition(name: str) -> str:
    """The formula and meaning of a measure, as its docstring says.

    Raises:
        AnalysisError: No measure has this name.

    Example:
        >>> definition("units").splitlines()[0]
        'units = 1 on a sale row; -1 on a return row.'
    """
    function = MEASURES.get(name) or RATIOS.get(name)
    if function is not None:
        return inspect.getdoc(function) or name
    text = FIGURES.get(name) or _comparison(name)
    if text is None:
        known = ", ".join([*MEASURES, *RATIOS, *FIGURES])
        raise AnalysisError(
            f"no measure {name!r}; the measures are {known}, and previous_<m>, <m>_change, "
            "<m>_change_pct of a money measure"
        )
    return text


def explain(name: str, file: TextIO | None = None) -> None:
    """Print what a measure means: its formula, then a sentence or two.

    Args:
        name: A measure (``"net_sales"``), a ratio (``"average_order_value"``), a count or
            flag of the analyses' output (``"orders"``, ``"units_ordered"``, ``"partial"``),
            or a comparison (``"net_sales_change_pct"``).
        file: Where to write (default: standard output).

    Raises:
        AnalysisError: No measure has this name.

    Example:
        >>> explain("returns")  # doctest: +ELLIPSIS
        returns = -(unit_price - unit_discount) on a return row; 0 on a sale row.
        ...
    """
    print(definition(name), file=file or sys.stdout)
