"""Order-level plumbing shared by the state, lifecycle and webhook analyses.

The order dimensions carry the ledger's names (``channel`` for ``channel_name``, ``city`` for
``shipping_city``...), so a slice means the same in :func:`omsframe.revenue` and
:func:`omsframe.funnel`. Percentiles are *nearest-rank* on integers (microseconds), so pandas
and polars agree to the last bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    Frame,
    Period,
    as_float,
    as_frame,
    check_period,
    group_key,
    local_time,
    period_start,
    whole_numbers,
)
from omsframe.analysis.errors import AnalysisError

ORDER_DIMENSIONS: dict[str, str] = {
    "channel": "channel_name",
    "channel_id": "channel_id",
    "payment_type": "payment_type",
    "delivery_type": "delivery_type",
    "client_type": "client_type",
    "cargo_company": "cargo_company",
    "country": "shipping_country_code",
    "city": "shipping_city",
    "customer_id": "customer_id",
}
"""The order dimensions by name, and the ``orders`` column each is (any other ``orders``
column works too, under its own name)."""

HOUR_US = 3_600_000_000
PERCENTILES: tuple[int, ...] = (50, 90, 99)
"""The default percentiles (nearest rank) of durations: p50, p90, p99."""


def table(tables: Mapping[str, Any], name: str) -> Frame:
    """One loaded table as a narwhals frame, or an error saying how to get it."""
    if not isinstance(tables, Mapping):
        raise AnalysisError(
            f"pass the loaded tables (omsframe.load(path)), not a {type(tables).__name__}"
        )
    if name not in tables:
        raise AnalysisError(f"the tables have no {name!r}; load it: omsframe.load(path)")
    return as_frame(tables[name], name)


def like(frame: Frame, other: Frame) -> Frame:
    """``frame`` in ``other``'s library (tables of one kind mixed with another's)."""
    if frame.implementation == other.implementation:
        return frame
    return nw.from_arrow(frame.to_arrow(), backend=other.implementation)


def order_frame(tables: Mapping[str, Any], dims: Sequence[str]) -> tuple[Frame, list[str]]:
    """``order_id``, ``date_placed``, ``state_code`` and the ``dims`` (named as asked).

    Raises:
        AnalysisError: ``orders`` is missing, or has no column for a dimension.
    """
    orders = table(tables, "orders")
    dims = list(dict.fromkeys(dims))
    columns = {d: ORDER_DIMENSIONS.get(d, d) for d in dims}
    missing = [d for d, c in columns.items() if c not in orders.columns]
    for needed in ("order_id", "date_placed", "state_code"):
        if needed not in orders.columns:
            missing.append(needed)
    if missing:
        known = ", ".join(ORDER_DIMENSIONS)
        raise AnalysisError(
            f"orders has no column(s) for {', '.join(missing)}; the order dimensions are "
            f"{known} (or any orders column)"
        )
    frame = orders.select(
        "order_id",
        "date_placed",
        order_state=nw.col("state_code"),
        **{d: nw.col(c) for d, c in columns.items() if d not in ("order_id", "date_placed")},
    )
    return frame, dims


def with_period(frame: Frame, column: str, by: Period | None, tz: str) -> tuple[Frame, list[str]]:
    """Add ``period`` (naive local start of ``column``'s period) unless ``by`` is None."""
    if by is None:
        return frame, []
    check_period(by)
    return frame.with_columns(period=period_start(local_time(column, tz), by)), ["period"]


def hours(microseconds: nw.Expr) -> nw.Expr:
    """A duration in integer microseconds as float hours: ``microseconds * (1 / 3.6e9)``.

    A multiplication, not a division: polars divides a long column by a constant through its
    reciprocal, pandas does not, so only the product is the same bit for bit in both.
    """
    return as_float(microseconds) * (1 / HOUR_US)


def check_percentiles(percentiles: Sequence[int] | int) -> list[int]:
    """Percentiles as whole numbers in 1..100 without repeats (one number is taken too)."""
    return list(dict.fromkeys(whole_numbers(percentiles, "percentiles", 1, 100)))


def nearest_rank(
    frame: Frame, value: str, keys: Sequence[str], percentiles: Sequence[int]
) -> Frame:
    """The nearest-rank percentiles of an integer column per group: one row per group.

    The p-th percentile of n values is the ``ceil(p * n / 100)``-th smallest (so p50 of 1, 2,
    3, 4 is 2, p100 is the largest): always a value that occurred, exact in integers.

    Returns:
        The ``keys`` and ``p<p>`` (same type as ``value``) for each percentile, only for
        groups with a non-null value; ``_key`` is a null-safe key of ``keys``.
    """
    rows = frame.filter(~nw.col(value).is_null()).with_columns(_key=group_key(keys))
    counts = rows.group_by("_key").agg(nw.len().alias("_n"))
    rows = rows.with_columns(
        _rank=nw.col(value).rank(method="ordinal").over("_key").cast(nw.Int64)
    ).join(counts, on="_key", how="left")
    result = rows.select(*keys, "_key").unique("_key")
    for p in percentiles:
        wanted = (nw.col("_n").cast(nw.Int64) * p + 99) // 100
        picked = rows.filter(nw.col("_rank") == wanted).select("_key", **{f"p{p}": nw.col(value)})
        result = result.join(picked, on="_key", how="left")
    return result


def sort_codes(
    frame: Frame, by: Sequence[str], codes: Sequence[str], *, nulls_last: bool = False
) -> Frame:
    """Sort by ``by``; the state-code columns among them in numeric order (``50`` < ``100``).

    State codes are digit strings, so a shorter one is a smaller number.
    """
    order: list[str] = []
    lengths = {}
    for column in by:
        if column in codes:
            lengths[f"_len_{column}"] = nw.col(column).str.len_chars()
            order.append(f"_len_{column}")
        order.append(column)
    if not order:
        return frame
    return frame.with_columns(**lengths).sort(*order, nulls_last=nulls_last).drop(*lengths)


def sorted_by(frame: Frame, keys: Sequence[str]) -> Frame:
    """``frame`` sorted by ``keys``, nulls last (unchanged without keys)."""
    return frame.sort(*keys, nulls_last=True) if keys else frame
