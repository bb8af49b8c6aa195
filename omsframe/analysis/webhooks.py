"""Webhook delivery health: how many events reached their target, and how many retries it took.

Each webhook event is delivered by one or more attempts (``attempt_count``; ``retry_count`` =
attempts after the first). An event not ``delivered`` has failed so far: the OMS may still be
retrying it, or may have given up.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> health = of.webhook_health(tables, by="month", dims=["event_type"])
    >>> created = health[health.event_type == "order.created"]
    >>> created[["period", "events", "failed", "retries"]]
          period  events  failed  retries
    0 2024-10-01      56       2       13
    3 2024-11-01      77       1       13
    6 2024-12-01     113       4       20
    9 2025-01-01      54       0       14
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    DEFAULT_TZ,
    Period,
    as_names,
    check_names,
    check_tz,
    group_key,
    ratio,
    to_native,
)
from omsframe.analysis._orders import sorted_by, table, with_period

__all__ = ["webhook_health"]

_COLUMNS = ("event_id", "created_date", "delivered", "retry_count", "attempt_count")


def webhook_health(
    tables: Mapping[str, Any],
    by: Period | None = "day",
    dims: Sequence[str] = (),
    tz: str = DEFAULT_TZ,
) -> Any:
    """Delivered and failed webhook events, attempts and retries, by period of the event.

    Args:
        tables: The loaded tables, pandas or polars; uses ``events``.
        by: The period the event was created in (``"day"`` ... ``"year"``), or ``None``.
        dims: ``events`` columns to slice by: ``event_type``, ``webhook_id``,
            ``response_http_status``...
        tz: The business time zone of the periods.

    Returns:
        A frame of the tables' kind: ``period`` (with ``by``), the ``dims``, ``events``,
        ``delivered``, ``failed`` (not delivered), ``retried`` (events retried at least
        once), ``attempts``, ``retries`` (attempts after the first), ``failed_attempts``
        (attempts that did not deliver), and the floats ``delivery_rate`` (delivered /
        events), ``retry_rate`` (retried / events) and ``attempts_per_event``, sorted by
        period and dims.

    Raises:
        AnalysisError: ``events`` is missing, or lacks a column.

    Example:
        >>> import datetime as dt, polars as pl
        >>> events = pl.DataFrame({"event_id": [1, 2],
        ...     "created_date": [dt.datetime(2025, 1, 1, tzinfo=dt.UTC)] * 2,
        ...     "delivered": [True, False], "retry_count": [0, 3], "attempt_count": [1, 4]})
        >>> webhook_health({"events": events}, by=None).row(0)
        (2, 1, 1, 1, 5, 3, 4, 0.5, 0.5, 2.5)
    """
    dims = as_names(dims)
    check_tz(tz)
    events = table(tables, "events")
    check_names([*_COLUMNS, *dims], events.columns, "events column(s)")
    rows = events.select(
        "created_date",
        *dims,
        _delivered=nw.col("delivered").fill_null(value=False).cast(nw.Int64),
        _retries=nw.col("retry_count").fill_null(0).cast(nw.Int64),
        _attempts=nw.col("attempt_count").fill_null(0).cast(nw.Int64),
    )
    rows, period = with_period(rows, "created_date", by, tz)
    keys = [*period, *dims]
    rows = rows.with_columns(_key=group_key(keys), _retried=(nw.col("_retries") > 0).cast(nw.Int64))
    health = rows.group_by(*keys, "_key").agg(
        nw.len().alias("events"),
        nw.col("_delivered").sum().alias("delivered"),
        nw.col("_retried").sum().alias("retried"),
        nw.col("_attempts").sum().alias("attempts"),
        nw.col("_retries").sum().alias("retries"),
    )
    counts = ["events", "delivered", "retried", "attempts", "retries"]
    health = (
        health.with_columns(*[nw.col(c).cast(nw.Int64) for c in counts])
        .with_columns(
            failed=nw.col("events") - nw.col("delivered"),
            failed_attempts=nw.col("attempts") - nw.col("delivered"),
        )
        .with_columns(
            delivery_rate=ratio(nw.col("delivered"), nw.col("events")),
            retry_rate=ratio(nw.col("retried"), nw.col("events")),
            attempts_per_event=ratio(nw.col("attempts"), nw.col("events")),
        )
    )
    columns = [*keys, "events", "delivered", "failed", "retried", "attempts", "retries"]
    columns += ["failed_attempts", "delivery_rate", "retry_rate", "attempts_per_event"]
    return to_native(sorted_by(health.select(*columns), keys), keep=dims)
