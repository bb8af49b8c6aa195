"""Narwhals plumbing shared by the analyses: frames in and out, exact money, local periods.

Every analysis is written once against narwhals: it takes a pandas or polars frame (or the
loaded tables), works on a ``nw.DataFrame`` and hands back the kind of frame it was given.
Money stays ``Decimal(18, 2)``; where integer arithmetic is needed (rounding a derived tax or a
conversion), amounts go to integer cents and back, never through float.
"""

from __future__ import annotations

import datetime as dt
import functools
import numbers
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, ParamSpec, TypeVar, get_args

import narwhals as nw

from omsframe.analysis.errors import AnalysisError

DEFAULT_TZ = "Europe/Istanbul"
"""The business time zone the analyses bucket by unless told otherwise (Akinon shops keep
Istanbul time); pass ``tz="UTC"`` (or any IANA name) for another."""

Period = Literal["day", "week", "month", "quarter", "year"]
PERIODS: tuple[str, ...] = get_args(Period)
MONEY = nw.Decimal(18, 2)
DAY_US = 86_400_000_000
Frame = nw.DataFrame[Any]


def as_frame(native: Any, what: str) -> Frame:
    """Wrap a pandas / polars frame (or Arrow table) for narwhals; refuse anything else."""
    if isinstance(native, nw.DataFrame):
        return native
    try:
        return nw.from_native(native, eager_only=True)
    except TypeError:
        raise AnalysisError(
            f"{what} must be a pandas or polars DataFrame (or an Arrow table), "
            f"got {type(native).__name__}; pass omsframe.load(...) tables or a frame"
        ) from None


def to_native(frame: Frame, keep: Iterable[str] = ()) -> Any:
    """The native frame, with a fresh 0..n-1 index for pandas, its measures in numpy dtypes.

    In pandas, what an analysis computes comes out the same way whatever Arrow did on the
    way: ratios and other fractions as ``float64`` (NaN where undefined), counts and flags
    as ``int64`` and ``bool``. The columns in ``keep`` (the dimensions, as the tables have
    them) and ids keep the loaded tables' dtypes (an id that may be missing is
    ``int64[pyarrow]``: see :func:`omsframe.load`), but for the keys of orders, items and
    events, which never are (``int64``); money stays exact decimals.
    """
    native = nw.maybe_reset_index(frame).to_native()
    if nw.get_native_namespace(frame).__name__ == "pandas":
        native = _numpy_measures(native, frozenset(keep))
    return native


#: ids that are never missing where a row is about an order, an item or an event
_KEYS = frozenset({"order_id", "item_id", "event_id"})


def _numpy_measures(frame: Any, keep: frozenset[str]) -> Any:
    """``frame`` (pandas) with its Arrow-typed measures (and keys) in numpy dtypes.

    A computed count or flag has no gaps, so its dtype does not depend on the rows; one with a
    gap stays as it is rather than turn into floats.
    """
    import pandas as pd
    import pyarrow as pa

    changed = {}
    for name, dtype in frame.dtypes.items():
        if not isinstance(dtype, pd.ArrowDtype) or name in keep:
            continue
        kind = dtype.pyarrow_dtype
        column = frame[name]
        if pa.types.is_floating(kind):
            changed[name] = column.astype("float64")  # (a missing ratio becomes NaN)
        elif not (pa.types.is_integer(kind) or pa.types.is_boolean(kind)) or column.hasnans:
            continue
        elif name in _KEYS or not _is_id(str(name)):
            changed[name] = column.astype("bool" if pa.types.is_boolean(kind) else "int64")
    return frame.assign(**changed) if changed else frame


def _is_id(name: str) -> bool:
    return name.endswith("_id") or name == "cargo_company"


def is_tables(data: Any) -> bool:
    """Whether ``data`` is the loaded tables (a mapping of table name to frame)."""
    return isinstance(data, Mapping)


def require(frame: Frame, columns: Iterable[str], what: str, *, dims: Iterable[str] = ()) -> None:
    """Raise :class:`AnalysisError` naming the columns ``frame`` lacks.

    A missing column among ``dims`` (what the caller asked to slice by) is an unknown
    dimension: the error offers the columns there are to slice by.
    """
    missing = [c for c in columns if c not in frame.columns]
    if not missing:
        return
    unknown = [c for c in missing if c in set(dims)]
    if unknown:
        schema = frame.schema
        offered = [
            c
            for c in frame.columns
            if not c.startswith("_") and schema[c] not in (nw.Decimal, nw.Datetime, nw.Float64)
        ]
        raise AnalysisError(
            f"unknown dimension(s) {', '.join(unknown)}: {what} has no such column; "
            f"choose from {', '.join(offered)}"
        )
    hint = (
        "pass the loaded tables or a frame made by omsframe.ledger"
        if what == "the ledger"
        else f"pass {what} as omsframe makes them"
    )
    raise AnalysisError(f"{what} has no column(s) {', '.join(missing)}; {hint}")


def check_period(by: str) -> None:
    """Refuse an unknown period name."""
    if by not in PERIODS:
        raise AnalysisError(f"unknown period {by!r}; choose one of {', '.join(PERIODS)}")


def check_tz(tz: str) -> str:
    """Validate an IANA time zone name and return it."""
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise AnalysisError(
            f"unknown time zone {tz!r}; pass an IANA name such as 'Europe/Istanbul' or 'UTC'"
        ) from None
    return tz


_P = ParamSpec("_P")
_R = TypeVar("_R")


def not_on_pyarrow(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """An analysis that needs window functions narwhals lacks on pyarrow: a clear error there."""

    @functools.wraps(function)
    def analysis(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return function(*args, **kwargs)
        except NotImplementedError as error:
            if "PyArrow" not in str(error):
                raise
            raise AnalysisError(
                f"{function.__name__} needs window functions that narwhals does not offer on "
                "pyarrow tables; load with engine='pandas' (the default) or engine='polars'"
            ) from None

    return analysis


def as_names(names: str | Sequence[str] | None, what: str = "dims") -> list[str]:
    """Names given as one text or a sequence (``None``: none), as a list without repeats.

    Raises:
        AnalysisError: ``names`` is neither a text nor a sequence of texts.

    Example:
        >>> as_names("channel"), as_names(("channel", "city", "channel")), as_names(None)
        (['channel'], ['channel', 'city'], [])
    """
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    if isinstance(names, Iterable) and not isinstance(names, Mapping):
        listed = list(dict.fromkeys(names))
        if all(isinstance(n, str) for n in listed):
            return listed
    raise AnalysisError(
        f"{what} must be a column name or a list of them, got {names!r}; e.g. {what}=['channel']"
    )


def whole_numbers(values: Any, what: str, low: int, high: int) -> list[int]:
    """One whole number or a sequence of them (numpy's too), each in ``low..high``.

    Raises:
        AnalysisError: Something else, or a number out of range.

    Example:
        >>> whole_numbers(50, "percentiles", 1, 100), whole_numbers((10, 25), "edges", 1, 99)
        ([50], [10, 25])
    """
    listed = [values] if isinstance(values, numbers.Number) else values
    if isinstance(listed, Iterable) and not isinstance(listed, str | bytes | Mapping):
        numbers_ = list(listed)
        if numbers_ and all(_whole(v) and low <= v <= high for v in numbers_):
            return [int(v) for v in numbers_]
    raise AnalysisError(f"{what} must be whole numbers in {low}..{high}, got {values!r}")


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_count(n: Any, what: str) -> int:
    """A whole number of at least 1 (numpy's too).

    Raises:
        AnalysisError: Anything else (a text, a fraction, zero).
    """
    if not _whole(n) or n < 1:
        raise AnalysisError(f"{what} must be a whole number of at least 1, got {n!r}")
    return int(n)


def check_names(names: Sequence[str], known: Iterable[str], what: str) -> list[str]:
    """Refuse names not in ``known``; return them as a list without repeats."""
    allowed = list(known)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise AnalysisError(
            f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}"
        )
    return list(dict.fromkeys(names))


def zero_money() -> nw.Expr:
    """An exact zero amount."""
    return nw.lit(Decimal("0.00")).cast(MONEY)


def cents(expr: nw.Expr) -> nw.Expr:
    """A money expression as integer cents (exact: amounts have two decimals)."""
    # a decimal literal keeps Arrow's result precision small (an int literal counts 19 digits)
    return (expr.cast(MONEY) * nw.lit(Decimal(100))).cast(nw.Int64)


def money_from_cents(expr: nw.Expr) -> nw.Expr:
    """Integer cents as exact ``Decimal(18, 2)`` money."""
    return (expr.cast(nw.Decimal(19, 0)) * nw.lit(Decimal("0.01"))).cast(MONEY)


def as_float(expr: nw.Expr) -> nw.Expr:
    """A number as float64 (for ratios; never for totals)."""
    return expr.cast(nw.Float64)


def ratio(numerator: nw.Expr, denominator: nw.Expr) -> nw.Expr:
    """``numerator / denominator`` as float64, null where the denominator is zero or null.

    Give integers (counts, or money as :func:`cents`): both are then exact in float64 and the
    one division is correctly rounded, so pandas and polars agree to the last bit.
    """
    den = as_float(denominator)
    return nw.when(den != 0).then(as_float(numerator) / den)


def local_time(column: str, tz: str) -> nw.Expr:
    """A UTC timestamp column as naive wall-clock time in ``tz``."""
    return nw.col(column).dt.convert_time_zone(tz).dt.replace_time_zone(None)


def period_start(local: nw.Expr, by: Period) -> nw.Expr:
    """The start of the period (naive local time) that a naive local time falls in.

    Weeks start on Monday (ISO weeks); quarters in January, April, July and October.
    """
    if by == "week":
        day = local.dt.timestamp("us") // DAY_US
        monday = day - (day + 3) % 7  # 1970-01-01 was a Thursday
        return (monday * DAY_US).cast(nw.Datetime("us"))
    every = {"day": "1d", "month": "1mo", "quarter": "1q", "year": "1y"}[by]
    return local.dt.truncate(every)


def partial_period(data: Any, book: Frame, by: Period, tz: str) -> nw.Expr:
    """True for the ``period`` the data ends in, which it does not wholly cover.

    The data ends at the loaded tables' ``as_of`` (the latest change to an order the last
    sync saw), or, for a ledger frame, at its latest booking.
    """
    end = _latest(data, book)
    if end is None:
        return nw.lit(value=False)
    local = end.astimezone(zoneinfo.ZoneInfo(tz)).replace(tzinfo=None)
    return nw.col("period") >= period_start(nw.lit(local, nw.Datetime("us")), by)


def _latest(data: Any, book: Frame) -> dt.datetime | None:
    """How far ``data`` goes: the loaded tables' ``as_of``, else the ledger's latest booking."""
    as_of = getattr(data, "as_of", None) if is_tables(data) else None
    if isinstance(as_of, dt.datetime):
        return as_of
    if not book.shape[0]:
        return None
    last = book.select(nw.col("booked_at").max()).item()
    if last is None:
        return None
    moment: dt.datetime = last.to_pydatetime() if hasattr(last, "to_pydatetime") else last
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def period_index(start: nw.Expr, by: Period) -> nw.Expr:
    """Consecutive integers for consecutive periods (to find the previous one)."""
    if by in ("day", "week"):
        day = start.dt.timestamp("us") // DAY_US
        return day // 7 if by == "week" else day
    year = start.dt.year().cast(nw.Int64)
    month = start.dt.month().cast(nw.Int64)
    if by == "month":
        return year * 12 + month - 1
    if by == "quarter":
        return year * 4 + (month - 1) // 3
    return year


def group_key(columns: Sequence[str]) -> nw.Expr:
    """One string key for a set of columns, nulls included (joins never match nulls alike)."""
    if not columns:
        return nw.lit("")
    parts = [nw.col(c).cast(nw.String).fill_null("\x00") for c in columns]
    return nw.concat_str(parts, separator="\x1f")
