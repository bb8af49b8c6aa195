"""How orders move between states: every change, the from→to matrix, time in each state.

Two sources tell when an order changed state:

- the webhook **events**: each carries the order as it was at that moment, so the order's
  states in event order (``created_date``, then ``event_id``), with repeats dropped (an
  ``order.updated`` event of a single item repeats the order state), are its changes, timed
  to the microsecond the OMS stamped them;
- the cache's **state history**: every state change a sync has observed (``state_history``),
  timed by the order's ``modified_date`` when seen. Changes between two syncs collapse into
  one (a sync that finds an order shipped, then delivered, never saw it in between), so its
  durations are as precise as the syncs were frequent.

``source="auto"`` takes an order's events where it has any and its state history otherwise,
so transitions exist even for orders the webhook never announced.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> moves = of.transitions(tables)
    >>> moves.nlargest(3, "changes")[["from_state_code", "to_state_code", "changes"]]
      from_state_code to_state_code  changes
    8             400           450      284
    0             NaN           200      280
    3             200           400      280
    >>> stays = of.time_in_state(tables, dims=["delivery_type"])
    >>> stays.query("state_code == '500'")[["delivery_type", "stays", "p50_hours"]].round(1)
       delivery_type  stays  p50_hours
    19       express     40       13.9
    20      same_day     10        3.8
    21      standard    196       32.7
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import narwhals as nw

from omsframe.analysis._frames import (
    Frame,
    as_names,
    check_names,
    group_key,
    not_on_pyarrow,
    to_native,
)
from omsframe.analysis._orders import (
    PERCENTILES,
    check_percentiles,
    hours,
    like,
    nearest_rank,
    order_frame,
    sort_codes,
    table,
)
from omsframe.analysis.errors import AnalysisError

__all__ = ["state_changes", "time_in_state", "transitions"]

Source = Literal["auto", "events", "history"]
CHANGE_COLUMNS = (
    "order_id",
    "from_state_code",
    "to_state_code",
    "changed_at",
    "left_at",
    "hours_in_state",
    "source",
)


def state_changes(tables: Mapping[str, Any], source: Source = "auto") -> Any:
    """Every state change of every order, with how long the order then stayed in the state.

    Args:
        tables: The loaded tables, pandas or polars; uses ``events`` and/or ``state_history``
            (whichever ``source`` needs and the tables have).
        source: ``"events"``, ``"history"``, or ``"auto"`` (events for the orders that have
            any, the state history for the others).

    Returns:
        A frame of the tables' kind, one row per change, sorted by order and time:
        ``order_id``, ``from_state_code`` (null for the order's first known state: its
        creation, from events; its first observation, from the state history),
        ``to_state_code``, ``changed_at`` (UTC), ``left_at`` (when the order next changed
        state; null while it is still in it), ``hours_in_state`` (float; null while open)
        and ``source`` (``"events"`` or ``"history"``).

    Raises:
        AnalysisError: An unknown ``source``, or the tables lack what it needs.

    Example:
        >>> import datetime as dt, polars as pl
        >>> at = [dt.datetime(2025, 1, 1, h, tzinfo=dt.UTC) for h in (8, 9, 9, 12)]
        >>> events = pl.DataFrame({"event_id": [1, 2, 3, 4], "order_id": [7, 7, 7, 7],
        ...     "state_code": ["200", "400", "400", "450"], "created_date": at})
        >>> changes = state_changes({"events": events})
        >>> changes.select("from_state_code", "to_state_code", "hours_in_state").rows()
        [(None, '200', 1.0), ('200', '400', 3.0), ('400', '450', None)]
    """
    return to_native(_changes(tables, source))


def transitions(tables: Mapping[str, Any], source: Source = "auto") -> Any:
    """The from→to matrix of state changes, as a long frame: a row per pair seen.

    Args:
        tables: The loaded tables, pandas or polars (see :func:`state_changes`).
        source: ``"auto"``, ``"events"`` or ``"history"`` (see :func:`state_changes`).

    Returns:
        A frame of the tables' kind: ``from_state_code`` (null: the order's first known
        state), ``to_state_code``, ``from_state_name``, ``to_state_name``, ``changes`` (how
        many) and ``orders`` (how many orders made the change), sorted by the two codes
        (nulls first). Pivot it for a matrix, or draw it with
        :func:`omsframe.charts.transition_heatmap`.

    Raises:
        AnalysisError: An unknown ``source``, or the tables lack what it needs.

    Example:
        >>> import datetime as dt, polars as pl
        >>> at = [dt.datetime(2025, 1, 1, h, tzinfo=dt.UTC) for h in (8, 9, 12)]
        >>> events = pl.DataFrame({"event_id": [1, 2, 3], "order_id": [7, 7, 7],
        ...     "state_code": ["200", "400", "450"], "created_date": at})
        >>> transitions({"events": events}).select("from_state_code", "to_state_code",
        ...     "changes").rows()
        [(None, '200', 1), ('200', '400', 1), ('400', '450', 1)]
    """
    changes = _changes(tables, source).with_columns(
        _key=group_key(["from_state_code", "to_state_code"])
    )
    pairs = changes.group_by("from_state_code", "to_state_code", "_key").agg(
        nw.len().alias("changes"), nw.col("order_id").n_unique().alias("orders")
    )
    names = _state_names(tables, changes)
    pairs = (
        pairs.join(
            names.rename({"code": "from_state_code", "name": "from_state_name"}),
            on="from_state_code",
            how="left",
        )
        .join(
            names.rename({"code": "to_state_code", "name": "to_state_name"}),
            on="to_state_code",
            how="left",
        )
        .with_columns(nw.col("changes").cast(nw.Int64), nw.col("orders").cast(nw.Int64))
    )
    columns = ["from_state_code", "to_state_code", "from_state_name", "to_state_name"]
    result = pairs.select(*columns, "changes", "orders")
    return to_native(sort_codes(result, columns[:2], columns[:2]))


@not_on_pyarrow
def time_in_state(
    tables: Mapping[str, Any],
    source: Source = "auto",
    dims: Sequence[str] = (),
    percentiles: Sequence[int] = PERCENTILES,
) -> Any:
    """How long orders stay in each state: nearest-rank percentiles in hours.

    A *stay* starts when an order enters a state and ends when it next changes state; stays
    still going (``open``) have no length yet and are only counted. The p-th percentile is
    the ``ceil(p * n / 100)``-th shortest of the ``n`` finished stays.

    Args:
        tables: The loaded tables, pandas or polars (see :func:`state_changes`); ``orders``
            too when ``dims`` are given.
        source: ``"auto"``, ``"events"`` or ``"history"`` (see :func:`state_changes`).
        dims: Order dimensions (:data:`~omsframe.analysis.ORDER_DIMENSIONS`).
        percentiles: Whole percents to report (default 50, 90, 99).

    Returns:
        A frame of the tables' kind, one row per state (and dims): ``state_code``,
        ``state_name``, the ``dims``, ``stays`` (finished), ``open``, ``mean_hours`` and
        ``p50_hours``, ``p90_hours``... (floats; null without a finished stay), sorted by
        state code and dims.

    Raises:
        AnalysisError: Unknown percentiles, source or dimension.

    Example:
        >>> import datetime as dt, polars as pl
        >>> at = [dt.datetime(2025, 1, 1, h, tzinfo=dt.UTC) for h in (8, 9, 12, 13)]
        >>> events = pl.DataFrame({"event_id": [1, 2, 3, 4], "order_id": [7, 7, 8, 8],
        ...     "state_code": ["400", "450", "400", "450"], "created_date": at})
        >>> time_in_state({"events": events}).select("state_code", "stays", "open",
        ...     "p50_hours").rows()
        [('400', 2, 0, 1.0), ('450', 0, 2, None)]
    """
    dims = as_names(dims)
    wanted = check_percentiles(percentiles)
    changes = _changes(tables, source)
    if dims:
        orders, _ = order_frame(tables, dims)
        orders = like(orders.drop("date_placed", "order_state"), changes)
        changes = changes.join(orders, on="order_id", how="left")
    keys = ["to_state_code", *dims]
    changes = changes.with_columns(
        _key=group_key(keys),
        _us=nw.col("left_at").dt.timestamp("us") - nw.col("changed_at").dt.timestamp("us"),
        _open=nw.col("left_at").is_null().cast(nw.Int64),
    )
    done = changes.filter(~nw.col("left_at").is_null())
    counts = changes.group_by(*keys, "_key").agg(nw.col("_open").sum().alias("open"))
    sums = done.group_by("_key").agg(nw.len().alias("stays"), nw.col("_us").sum().alias("_sum"))
    ranks = nearest_rank(done, "_us", keys, wanted).drop(*keys)
    names = _state_names(tables, changes).rename({"code": "to_state_code", "name": "state_name"})
    stays = (
        counts.join(sums, on="_key", how="left")
        .join(ranks, on="_key", how="left")
        .join(names, on="to_state_code", how="left")
        .with_columns(
            stays=nw.col("stays").fill_null(0).cast(nw.Int64),
            open=nw.col("open").cast(nw.Int64),
        )
        .with_columns(
            mean_hours=nw.when(nw.col("stays") > 0).then(
                hours(nw.col("_sum")) / nw.col("stays").cast(nw.Float64)
            ),
            **{f"p{p}_hours": hours(nw.col(f"p{p}")) for p in wanted},
        )
        .rename({"to_state_code": "state_code"})
    )
    columns = ["state_code", "state_name", *dims, "stays", "open", "mean_hours"]
    columns += [f"p{p}_hours" for p in wanted]
    return to_native(
        sort_codes(stays.select(*columns), ["state_code", *dims], ["state_code"], nulls_last=True),
        keep=dims,
    )


def changes_frame(tables: Mapping[str, Any], source: Source = "auto") -> Frame:
    """:func:`state_changes` as a narwhals frame (for the other analyses)."""
    return _changes(tables, source)


def _changes(tables: Mapping[str, Any], source: Source) -> Frame:
    check_names([source], ("auto", "events", "history"), "source")
    if not isinstance(tables, Mapping):
        raise AnalysisError(
            f"pass the loaded tables (omsframe.load(path)), not a {type(tables).__name__}"
        )
    has_events, has_history = "events" in tables, "state_history" in tables
    if source == "events" or (source == "auto" and has_events and not has_history):
        return _finish(_from_events(table(tables, "events")))
    if source == "history" or (source == "auto" and not has_events):
        return _finish(_from_history(table(tables, "state_history")))
    from_events = _from_events(table(tables, "events"))
    history = like(_from_history(table(tables, "state_history")), from_events)
    covered = from_events.select("order_id").unique().with_columns(_seen=nw.lit(value=True))
    history = (
        history.join(covered, on="order_id", how="left")
        .filter(nw.col("_seen").is_null())
        .drop("_seen")
    )
    return _finish(nw.concat([from_events, history.select(from_events.columns)], how="vertical"))


def _from_events(events: Frame) -> Frame:
    """Consecutive distinct order states per order, in event order."""
    check_names(
        ["event_id", "order_id", "state_code", "created_date"], events.columns, "events column(s)"
    )
    rows = (
        events.filter(~nw.col("state_code").is_null() & ~nw.col("order_id").is_null())
        .select("order_id", "event_id", "created_date", to_state_code=nw.col("state_code"))
        .sort("order_id", "created_date", "event_id")
    )
    rows = _with_previous(rows, "to_state_code", "_before")
    rows = rows.filter(nw.col("_before").is_null() | (nw.col("_before") != nw.col("to_state_code")))
    rows = _with_previous(rows, "to_state_code", "from_state_code")
    return rows.select(
        "order_id",
        nw.col("from_state_code").cast(nw.String),
        nw.col("to_state_code").cast(nw.String),
        changed_at=nw.col("created_date"),
        source=nw.lit("events"),
        _seq=nw.col("event_id").cast(nw.Int64),
    )


def _from_history(history: Frame) -> Frame:
    """The state history's rows, as they are (each is one observed change)."""
    columns = ["order_id", "from_state_code", "to_state_code", "changed_at"]
    check_names(columns, history.columns, "state_history column(s)")
    rows = history.filter(~nw.col("to_state_code").is_null()).select(
        "order_id",
        nw.col("from_state_code").cast(nw.String),
        nw.col("to_state_code").cast(nw.String),
        "changed_at",
        source=nw.lit("history"),
        _seq=nw.lit(0, nw.Int64),  # (order, changed_at) is the history's key: no ties
    )
    return rows


def _finish(changes: Frame) -> Frame:
    """Sort, and add when each state was left (the order's next change) and the stay."""
    changes = changes.sort("order_id", "changed_at", "_seq")  # events at one moment: by id
    following = _with_next(changes, "changed_at", "left_at")
    stay = nw.col("left_at").dt.timestamp("us") - nw.col("changed_at").dt.timestamp("us")
    return following.with_columns(hours_in_state=hours(stay)).select(*CHANGE_COLUMNS)


def _with_previous(rows: Frame, column: str, name: str) -> Frame:
    """Add the previous row's ``column`` within the same order (rows sorted by order)."""
    return _shifted(rows, column, name, 1)


def _with_next(rows: Frame, column: str, name: str) -> Frame:
    """Add the next row's ``column`` within the same order (rows sorted by order)."""
    return _shifted(rows, column, name, -1)


def _shifted(rows: Frame, column: str, name: str, step: int) -> Frame:
    rows = rows.with_row_index("_row")
    other = rows.select(
        _row=nw.col("_row").cast(nw.Int64) + step,
        _order=nw.col("order_id"),
        **{name: nw.col(column)},
    )
    joined = rows.with_columns(nw.col("_row").cast(nw.Int64)).join(other, on="_row", how="left")
    same = nw.col("_order") == nw.col("order_id")
    return (
        joined.with_columns(**{name: nw.when(same.fill_null(value=False)).then(nw.col(name))})
        .sort("_row")
        .drop("_row", "_order")
    )


def _state_names(tables: Mapping[str, Any], changes: Frame) -> Frame:
    """``code`` -> ``name``, from the ``states`` table and the state names the rows carry."""
    parts = []
    if "states" in tables:
        states = table(tables, "states")
        if {"code", "name"} <= set(states.columns):
            parts.append(states.select(code=nw.col("code").cast(nw.String), name=nw.col("name")))
    for name in ("orders", "events", "order_items"):
        if name in tables:
            frame = table(tables, name)
            if {"state_code", "state_name"} <= set(frame.columns):
                parts.append(frame.select(code=nw.col("state_code"), name=nw.col("state_name")))
    parts = [like(p, changes) for p in parts]
    if not parts:
        empty = changes.select(code=nw.col("to_state_code"), name=nw.col("to_state_code"))
        return empty.head(0)
    names = nw.concat(
        [p.with_columns(nw.col("name").cast(nw.String)) for p in parts], how="vertical"
    )
    return (
        names.filter(~nw.col("code").is_null() & ~nw.col("name").is_null())
        .group_by("code")
        .agg(nw.col("name").max())
    )
