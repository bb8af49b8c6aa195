"""Currencies never mix: converting ledger rows with a rate table the user passes.

A rate table has one row per day and currency: ``date``, ``currency`` and ``rate``, the
price of one unit of ``currency`` in the reporting currency on that business day (e.g.
``2025-03-01, eur, 38.41`` when reporting in TRY). Each ledger row is converted at the rate
of its business day, or the latest earlier day the table has (weekends, holidays); a row
with no rate on or before its day is an error, never a silent 1, and so are two rates for one
day and currency. Rates are used to six decimals; each unit amount (price, discount, retail
price, tax) is rounded half away from zero to the cent, in integer arithmetic (no float), and
the measures are derived from them as in the ledger, so they add up as they do in the
original currency, and a sale and its same-day cancellation still net to zero.

Example:
    >>> import polars as pl
    >>> rates = pl.DataFrame({"date": ["2025-03-01"], "currency": ["eur"], "rate": [38.41]})
    >>> rate_table(rates, "try").columns
    ['_day', 'currency', '_rate']
"""

from __future__ import annotations

import warnings
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    Frame,
    as_frame,
    cents,
    local_time,
    money_from_cents,
    period_start,
    require,
)
from omsframe.analysis.errors import AnalysisError, CurrencyError
from omsframe.analysis.measures import MEASURES

__all__ = ["convert", "rate_table"]

MICRO = 1_000_000
_INT64_MAX = 2**63 - 1
MONEY_MEASURES: tuple[str, ...] = tuple(m for m in MEASURES if m != "units")
_UNIT_AMOUNTS = ("unit_price", "unit_discount", "unit_retail_price", "unit_tax")
_AMOUNTS = (*MONEY_MEASURES, *_UNIT_AMOUNTS)


def rate_table(fx: Any, reporting_currency: str) -> Frame:
    """A user's rate table, checked and normalised: ``_day`` (naive), ``currency``, ``_rate``.

    ``_rate`` is the rate in millionths (an integer). ``date`` may be a date, a datetime
    (its calendar day counts) or an ISO ``YYYY-MM-DD`` string; ``currency`` any case.

    Raises:
        AnalysisError: The table lacks a column, or has a rate that is not positive.
    """
    rates = as_frame(fx, "fx")
    require(rates, ("date", "currency", "rate"), "fx")
    date = nw.col("date")
    dtype = rates.schema["date"]
    if dtype == nw.Datetime:
        zone = getattr(dtype, "time_zone", None)
        day = (date.dt.replace_time_zone(None) if zone else date).dt.truncate("1d")
    elif dtype == nw.Date:
        day = date.cast(nw.Datetime("us"))
    else:  # strings, or dates held as Python objects
        day = date.cast(nw.String).str.slice(0, 10).str.to_datetime("%Y-%m-%d")
    try:
        rates = rates.select(
            _day=day.cast(nw.Datetime("us")),
            currency=nw.col("currency").cast(nw.String).str.to_lowercase(),
            _rate=(nw.col("rate").cast(nw.Float64) * MICRO).round(0).cast(nw.Int64),
        ).filter(nw.col("currency") != reporting_currency.lower())
    except (ValueError, TypeError, ArithmeticError) as error:  # pandas', polars' and Arrow's
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        first = first.split(". You might")[0]  # (pandas goes on with suggestions)
        raise AnalysisError(
            f"fx could not be read ({first}); give date as dates or 'YYYY-MM-DD' texts and "
            "rate as numbers"
        ) from None
    bad = rates.filter(~(nw.col("_rate") > 0)).shape[0]
    if bad:
        raise AnalysisError(f"fx has {bad} rate(s) that are missing, zero or negative; fix them")
    twice = rates.group_by("_day", "currency").agg(nw.len().alias("_n")).filter(nw.col("_n") > 1)
    if twice.shape[0]:
        day, currency = twice.sort("_day", "currency").select("_day", "currency").row(0)
        raise AnalysisError(
            f"fx has more than one rate for a day and currency ({twice.shape[0]} such, first "
            f"{currency} on {day:%Y-%m-%d}); keep one rate per day and currency"
        )
    return rates.sort("_day")


def convert(book: Frame, fx: Any, reporting_currency: str, tz: str) -> Frame:
    """Ledger rows with every amount in ``reporting_currency``, at the rate of their day.

    Args:
        book: Ledger rows (any subset of the ledger's columns, with ``booked_at`` and
            ``currency``).
        fx: The rate table (see the module docstring).
        reporting_currency: The currency the rates convert to (``"try"``).
        tz: The business time zone that decides a row's day.

    Returns:
        The rows with ``currency`` set to ``reporting_currency`` (lower case), the original
        in ``original_currency``, and the rate used in ``fx_rate`` (float, for reading).

    Raises:
        CurrencyError: A row's currency has no rate on or before its day, or a row has no
            currency.

    Example:
        >>> import polars as pl
        >>> rates = pl.DataFrame({"date": ["2024-09-30"] * 2, "currency": ["eur", "usd"],
        ...     "rate": [36.95, 34.12]})
        >>> in_try = convert(nw.from_native(of.ledger(tables)), rates, "try", "UTC")
        >>> in_try.get_column("currency").unique().to_list(), in_try.shape
        (['try'], (754, 36))
    """
    to = reporting_currency.lower()
    rates = rate_table(fx, to)
    if rates.implementation != book.implementation:  # e.g. polars rates for a pandas ledger
        rates = nw.from_arrow(rates.to_arrow(), backend=book.implementation)
    unknown = book.filter(nw.col("currency").is_null()).shape[0]
    if unknown:
        raise CurrencyError(
            f"{unknown} ledger row(s) have no currency, so no rate applies; "
            "filter them out, or leave fx out to see them apart"
        )
    book = book.with_columns(
        _day=period_start(local_time("booked_at", tz), "day"),
        original_currency=nw.col("currency"),
    )
    foreign = book.filter(nw.col("currency") != to).sort("_day")
    home = book.filter(nw.col("currency") == to).with_columns(_rate=nw.lit(MICRO, nw.Int64))
    with warnings.catch_warnings():  # polars cannot check sortedness within groups; we sorted
        warnings.filterwarnings("ignore", "Sortedness", UserWarning)
        try:
            foreign = foreign.join_asof(rates, on="_day", by="currency", strategy="backward")
        except NotImplementedError:  # narwhals has no as-of join on Arrow tables
            raise AnalysisError(
                "fx conversion needs pandas or polars tables; load them with "
                "engine='pandas' (the default) or engine='polars'"
            ) from None
    missing = foreign.filter(nw.col("_rate").is_null())
    if missing.shape[0]:
        first = missing.group_by("currency").agg(nw.col("_day").min()).sort("currency")
        where = ", ".join(
            f"{c} from {d:%Y-%m-%d}" for c, d in first.iter_rows(named=False) if c is not None
        )
        raise CurrencyError(
            f"fx has no {to} rate for {missing.shape[0]} ledger row(s) ({where or 'no currency'});"
            " add rates on or before those days, or leave fx out to keep currencies apart"
        )
    amounts = [c for c in _AMOUNTS if c in book.columns]
    _check_range(foreign, rates, amounts)
    rows = nw.concat([home, foreign.select(home.columns)], how="vertical")
    # The unit amounts are converted, and the measures derived from them as in the ledger, so
    # that net_sales = gross_sales + discounts + returns holds in the reporting currency too
    # (each measure rounded on its own would miss by a cent here and there).
    derived = "kind" in book.columns and all(c in book.columns for c in _UNIT_AMOUNTS)
    measures = [m for m in MONEY_MEASURES if m in book.columns] if derived else []
    rows = rows.with_columns(
        *[_converted(c).alias(c) for c in amounts if c not in measures],
        currency=nw.lit(to),
        fx_rate=nw.col("_rate").cast(nw.Float64) / MICRO,
    )
    return rows.with_columns(*[MEASURES[m]().alias(m) for m in measures]).drop("_day", "_rate")


def _converted(column: str) -> nw.Expr:
    """``amount * rate`` rounded half away from zero to the cent, in integer cents."""
    amount = cents(nw.col(column))
    size = amount.abs()
    rounded = (2 * size * nw.col("_rate") + MICRO) // (2 * MICRO)
    return money_from_cents(nw.when(amount < 0).then(-rounded).otherwise(rounded))


def _check_range(rows: Frame, rates: Frame, amounts: list[str]) -> None:
    """Refuse a conversion whose integer arithmetic could overflow (huge amount x rate)."""
    if not rows.shape[0] or not amounts:
        return
    largest = max(
        int(value or 0)
        for value in rows.select(*[cents(nw.col(c)).abs().max() for c in amounts]).row(0)
    )
    rate = int(rates.select(nw.col("_rate").max()).item() or 0)
    if 2 * largest * rate + MICRO > _INT64_MAX:
        raise AnalysisError(
            "an amount times its fx rate is too large to convert exactly; "
            "convert totals instead of ledger rows"
        )
