"""RFM: recency, frequency and monetary scores per customer, and the segments they name.

Built on :func:`omsframe.transactions` (orders with positive net sales): *recency* is the
days since the customer's last order, *frequency* their number of orders, *monetary* their
net sales. Each is scored 1-5 by quintile among the customers of the same currency (5 is
best: most recent, most orders, most money); equal values get the same score. The segment
follows from the recency and frequency scores, as in the usual RFM grid (:data:`RFM_SEGMENTS`).

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> scores = of.rfm(tables)
    >>> scores.groupby("currency").size().to_dict()
    {'eur': 19, 'try': 147, 'usd': 12}
    >>> scores.query("currency == 'try'")["segment"].value_counts().head(3)
    segment
    Hibernating       48
    About to sleep    23
    Promising         19
    Name: count, dtype: int64
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import DAY_US, MONEY, cents, not_on_pyarrow, to_native
from omsframe.analysis.customers import transaction_frame
from omsframe.analysis.errors import AnalysisError

__all__ = ["RFM_SEGMENTS", "rfm"]

SCORES = 5
RFM_SEGMENTS: dict[str, tuple[tuple[range, range], ...]] = {
    "Champions": ((range(5, 6), range(4, 6)),),
    "Loyal customers": ((range(3, 5), range(4, 6)),),
    "Potential loyalists": ((range(4, 6), range(2, 4)),),
    "New customers": ((range(5, 6), range(1, 2)),),
    "Promising": ((range(4, 5), range(1, 2)),),
    "Need attention": ((range(3, 4), range(3, 4)),),
    "About to sleep": ((range(3, 4), range(1, 3)),),
    "Can't lose them": ((range(1, 3), range(5, 6)),),
    "At risk": ((range(1, 3), range(3, 5)),),
    "Hibernating": ((range(1, 3), range(1, 3)),),
}
"""The segments by (recency score, frequency score) ranges, best first; every pair of
scores 1-5 falls in exactly one (e.g. ``Champions``: recency 5, frequency 4-5)."""

DateLike = dt.date | dt.datetime | str


@not_on_pyarrow
def rfm(data: Any, as_of: DateLike | None = None, tz: str | None = None) -> Any:
    """Recency, frequency and monetary value per customer, their 1-5 scores and segment.

    Scores are quintiles within the customer's currency: with ``n`` customers, one whose
    value ranks ``k``-th (ties share the lowest rank) scores ``1 + (k - 1) * 5 // n``;
    recency is ranked from the longest ago, so the most recent score 5.

    Args:
        data: The loaded tables or a ledger frame, pandas or polars.
        as_of: The day recency is counted to (a date, datetime or ``YYYY-MM-DD``; its
            calendar day counts). Default: the day after the last order.
        tz: The business time zone of days (default: the ledger's, or
            ``"Europe/Istanbul"``).

    Returns:
        A frame of the input's kind, one row per customer and currency, sorted by currency
        and customer: ``customer_id``, ``currency``, ``first_order`` and ``last_order``
        (local days, naive), ``recency_days``, ``frequency`` (orders), ``monetary`` (net
        sales, exact decimal), ``r_score``, ``f_score``, ``m_score``, ``rfm`` (the three
        scores as text, ``"545"``) and ``segment`` (see :data:`RFM_SEGMENTS`).

    Raises:
        AnalysisError: ``as_of`` is not a date, or is before a customer's last order.

    Example:
        >>> at_risk = rfm(tables, as_of="2025-02-01").query("segment == 'At risk'")
        >>> at_risk[["r_score", "f_score"]].agg(["min", "max"])
             r_score  f_score
        min        1        4
        max        2        4
    """
    tx = transaction_frame(data, tz)
    per = tx.group_by("customer_id", "currency").agg(
        nw.col("date").min().alias("first_order"),
        nw.col("date").max().alias("last_order"),
        nw.len().alias("frequency"),
        nw.col("monetary_value").sum().alias("monetary"),
    )
    last = per.select(nw.col("last_order").max()).item() if per.shape[0] else None
    day = _day(as_of) if as_of is not None else _day(last) + 1 if last is not None else 0
    per = per.with_columns(
        recency_days=(nw.lit(day * DAY_US) - nw.col("last_order").dt.timestamp("us")) // DAY_US,
        frequency=nw.col("frequency").cast(nw.Int64),
        monetary=nw.col("monetary").cast(MONEY),
    ).with_columns(nw.col("recency_days").cast(nw.Int64))
    early = per.filter(nw.col("recency_days") < 0).shape[0]
    if early:
        raise AnalysisError(
            f"as_of {as_of} is before the last order of {early} customer(s); pass a later day"
        )
    counts = per.group_by("currency").agg(nw.len().alias("_n"))
    per = per.join(counts, on="currency", how="left").with_columns(
        r_score=_score(-nw.col("recency_days")),
        f_score=_score(nw.col("frequency")),
        m_score=_score(cents(nw.col("monetary"))),
    )
    per = per.with_columns(
        rfm=nw.concat_str(
            [nw.col(c).cast(nw.String) for c in ("r_score", "f_score", "m_score")], separator=""
        ),
        segment=_segment(),
    )
    columns = ["customer_id", "currency", "first_order", "last_order", "recency_days"]
    columns += ["frequency", "monetary", "r_score", "f_score", "m_score", "rfm", "segment"]
    return to_native(per.select(*columns).sort("currency", "customer_id"))


def _score(value: nw.Expr) -> nw.Expr:
    """1-5 by quintile of ``value`` within the currency (ties share the lowest rank)."""
    rank = value.rank(method="min").over("currency").cast(nw.Int64)
    return (1 + (rank - 1) * SCORES // nw.col("_n").cast(nw.Int64)).cast(nw.Int64)


def _segment() -> nw.Expr:
    r, f = nw.col("r_score"), nw.col("f_score")
    chain: Any = None
    for name, cells in RFM_SEGMENTS.items():
        for recency, frequency in cells:
            condition = r.is_between(recency.start, recency.stop - 1) & f.is_between(
                frequency.start, frequency.stop - 1
            )
            chain = (nw.when(condition) if chain is None else chain.when(condition)).then(
                nw.lit(name)
            )
    return chain.otherwise(nw.lit(None, nw.String))  # type: ignore[no-any-return]


def _day(value: Any) -> int:
    """Days since 1970-01-01 of a date, datetime (its calendar day) or ISO string.

    A ``YYYY-MM`` text is the month's first day, as ``since``/``until`` of :func:`omsframe.load`.
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = dt.date.fromisoformat(f"{text}-01" if len(text) == 7 else text[:10])
        except ValueError:
            raise AnalysisError(
                f"as_of must be a date such as '2025-01-31' or '2025-01', got {value!r}"
            ) from None
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        raise AnalysisError(f"as_of must be a date, got {type(value).__name__}")
    return (value - dt.date(1970, 1, 1)).days
