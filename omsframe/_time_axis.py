"""The time axis of a chart: the period of the starts, the missing and the partial periods.

An analysis gives a row per period *with* data: a week without sales has no row. Drawn as it
comes, a line would run straight across that week as if it had sales, so the charts put the
missing periods back: as 0 where the measure is a sum (no sales are 0 net sales) and as a gap
where it is a ratio (no orders: no average order value). The axis title says no more than is
known: the time zone only when the caller names it.

Example:
    >>> import datetime as dt
    >>> weeks = [(dt.datetime(2025, 1, 6), 5.0), (dt.datetime(2025, 1, 20), 7.0)]
    >>> by = infer_period(p for p, _ in weeks)
    >>> by, [(f"{p:%m-%d}", v) for p, v in fill_periods(weeks, by, (0.0,))]
    ('week', [('01-06', 5.0), ('01-13', 0.0), ('01-20', 7.0)])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import plotly.graph_objects as go

from omsframe.analysis._frames import PERIODS, Period

__all__ = [
    "axis_title",
    "fill_periods",
    "infer_period",
    "period_index",
    "period_label",
    "period_line",
]


def infer_period(starts: Iterable[Any]) -> Period | None:
    """The period that period starts step by, as far as they say: the coarsest they all fit.

    Midnights that are all the 1st of January step by years; of January, April, July or
    October, by quarters; all the 1st, by months; all Mondays, by weeks; else by days.
    ``None`` for fewer than two distinct starts, or starts that are not midnights. (Two
    months three apart look like quarters: a caller who knows says ``by``.)

    Example:
        >>> import datetime as dt
        >>> infer_period([dt.date(2024, 11, 1), dt.date(2024, 12, 1), dt.date(2025, 1, 1)])
        'month'
        >>> infer_period([dt.date(2025, 1, 6)]) is None
        True
    """
    distinct = {_as_datetime(s) for s in starts if s is not None}
    if len(distinct) < 2:
        return None
    for by in reversed(PERIODS):
        if all(_aligned(s, by) for s in distinct):
            return by  # type: ignore[return-value]  # PERIODS are Period's values
    return None


def fill_periods(
    points: Sequence[tuple[Any, ...]], by: Period | None, fill: tuple[Any, ...]
) -> list[tuple[Any, ...]]:
    """Points ``(period start, values...)`` with the periods missing between them put back.

    A missing period gets ``fill`` as its values (and, where the points carry a last
    ``partial`` flag, ``fill`` says it: ``False``). Points whose starts are not whole
    periods of ``by`` (or without ``by``) come back as they are, sorted by start.
    """
    ordered = sorted(points, key=lambda p: _as_datetime(p[0]))
    if by is None or not ordered:
        return ordered
    have = {_as_datetime(p[0]) for p in ordered}
    if not all(_aligned(s, by) for s in have):
        return ordered
    missing, start, last = [], min(have), max(have)
    while start < last:
        start = _next(start, by)
        if start not in have:
            missing.append((start, *fill))
    return sorted([*ordered, *missing], key=lambda p: _as_datetime(p[0]))


def period_index(start: Any, by: Period) -> int:
    """Consecutive integers for consecutive periods (ages between two starts are differences).

    Example:
        >>> import datetime as dt
        >>> period_index(dt.date(2025, 1, 1), "month") - period_index(dt.date(2024, 10, 1), "month")
        3
    """
    moment = _as_datetime(start)
    if by == "day":
        return moment.toordinal()
    if by == "week":
        return (moment.toordinal() - 1) // 7  # day 1 (0001-01-01) was a Monday
    months = moment.year * 12 + moment.month - 1
    return {"month": months, "quarter": months // 3, "year": moment.year}[by]


def period_label(start: Any, by: Period | None) -> str:
    """A period start as the period's name: ``2024-10-07``, ``Oct 2024``, ``2024 Q4``, ``2024``.

    Example:
        >>> import datetime as dt
        >>> [period_label(dt.datetime(2024, 10, 1), by) for by in ("month", "quarter", None)]
        ['Oct 2024', '2024 Q4', '2024-10-01']
    """
    moment = _as_datetime(start)
    if by == "month":
        return f"{moment:%b %Y}"
    if by == "quarter":
        return f"{moment.year} Q{(moment.month - 1) // 3 + 1}"
    if by == "year":
        return str(moment.year)
    return f"{moment:%Y-%m-%d}" if moment.time() == dt.time() else str(moment)


def axis_title(by: Period | None, tz: str | None) -> str:
    """The time axis's title: the period, and the time zone its starts are in if known.

    Example:
        >>> axis_title("week", "Europe/Istanbul"), axis_title(None, None)
        ('Week (Europe/Istanbul)', 'Period')
    """
    return f"{by.capitalize() if by else 'Period'}{f' ({tz})' if tz else ''}"


def period_line(
    points: Sequence[tuple[Any, float | None, bool]],
    *,
    name: str,
    colour: str,
    by: Period | None,
    fill: float | None,
) -> list[go.Scatter]:
    """A measure over periods as a line, missing periods put back and partial ones set apart.

    Args:
        points: ``(period start, value, partial)``: partial when the data ends (or begins)
            inside the period, so its value is not the whole period's.
        name: The line's name in the legend.
        colour: Its colour (the partial segments are drawn in it too).
        by: The period, for the missing ones (``None``: none are put back).
        fill: The value of a missing period: ``0.0`` for a sum, ``None`` (a gap) for a ratio.

    Returns:
        The solid line of whole periods (gaps stay gaps); for partial periods, a dotted
        segment from their neighbours and a hollow marker whose hover says "(partial)".
    """
    filled = fill_periods(points, by, (fill, False))
    x = [p[0] for p in filled]
    y = [p[1] for p in filled]
    partial = [bool(p[2]) for p in filled]
    traces = [
        go.Scatter(
            x=x,
            y=[None if part else value for value, part in zip(y, partial, strict=True)],
            mode="lines+markers",
            name=name,
            legendgroup=name,
            line={"color": colour},
            connectgaps=False,
        )
    ]
    for first, last in _runs(partial):
        low, high = max(first - 1, 0), min(last + 1, len(x) - 1)
        traces.append(
            go.Scatter(
                x=x[low : high + 1],
                y=y[low : high + 1],
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=False,
                line={"color": colour, "dash": "dot"},
                connectgaps=False,
                hoverinfo="skip",
            )
        )
    if any(partial):
        traces.append(
            go.Scatter(
                x=[s for s, part in zip(x, partial, strict=True) if part],
                y=[v for v, part in zip(y, partial, strict=True) if part],
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=False,
                marker={"color": colour, "symbol": "circle-open", "size": 10},
                hovertemplate="%{y} (partial)",
            )
        )
    return traces


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """The first and last index of each run of true flags."""
    runs: list[tuple[int, int]] = []
    for i, flag in enumerate(flags):
        if flag and runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        elif flag:
            runs.append((i, i))
    return runs


def _as_datetime(value: Any) -> dt.datetime:
    """A period start (datetime, pandas Timestamp or date) as a plain datetime."""
    if isinstance(value, dt.datetime):
        return dt.datetime.combine(value.date(), value.time(), value.tzinfo)
    return dt.datetime.combine(value, dt.time())


def _aligned(start: dt.datetime, by: str) -> bool:
    """Whether ``start`` is the first moment of a ``by`` period."""
    if start.time() != dt.time():
        return False
    return {
        "day": True,
        "week": start.weekday() == 0,
        "month": start.day == 1,
        "quarter": start.day == 1 and start.month % 3 == 1,
        "year": start.day == 1 and start.month == 1,
    }[by]


def _next(start: dt.datetime, by: str) -> dt.datetime:
    """The start of the period after the one starting at ``start`` (a whole period)."""
    if by in ("day", "week"):
        return start + dt.timedelta(days=1 if by == "day" else 7)
    months = start.year * 12 + start.month - 1 + {"month": 1, "quarter": 3, "year": 12}[by]
    return start.replace(year=months // 12, month=months % 12 + 1)
