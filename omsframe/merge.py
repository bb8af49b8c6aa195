"""Upsert arithmetic: which copy of a row wins, and what an upsert did.

The latest stamp (``modified_date``) wins. Against the stored copy of a key, an incoming copy
with a newer stamp replaces it; one with the same stamp leaves it (unchanged), and an older one,
or one without a stamp, never replaces it; a stored copy without a stamp loses to any stamped
incoming copy. Within one incoming batch, the copy with the latest stamp is the candidate (a
missing stamp is the oldest; on a tie, the later row). For a table without a stamp column the
incoming copy always wins (the batch's last copy of a key).

Example:
    >>> import pyarrow as pa
    >>> old = pa.table({"k": [1, 2], "m": [5, 5]})
    >>> new = pa.table({"k": [2, 3], "m": [9, 1]})
    >>> merged, changed = merge_latest(old, new, ["k"], "m")
    >>> sorted(merged.to_pylist(), key=lambda r: r["k"]), changed
    ([{'k': 1, 'm': 5}, {'k': 2, 'm': 9}, {'k': 3, 'm': 1}], True)

    Two copies of a key in one batch: the newer one wins, wherever it comes.

    >>> batch = pa.table({"k": [4, 4], "m": [7, 6]})
    >>> merge_latest(None, batch, ["k"], "m")[0].to_pylist()
    [{'k': 4, 'm': 7}]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class UpsertCounts:
    """What an upsert did: rows new, updated (newer copy), unchanged (same copy), stale (older)."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    partitions_written: int = 0

    def add(self, other: UpsertCounts) -> None:
        """Add another upsert's counts to these."""
        self.new += other.new
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.stale += other.stale
        self.partitions_written += other.partitions_written


def newer(candidate: Any, current: Any) -> bool:
    """Whether stamp ``candidate`` is newer than ``current`` (a missing stamp never is)."""
    if candidate is None:
        return False
    return current is None or candidate > current


def newer_mask(candidate: pa.Array, current: pa.Array) -> pa.Array:
    """:func:`newer` of each pair of stamps, as a boolean array without nulls."""
    return pc.coalesce(
        pc.greater(candidate, current), pc.and_(pc.is_valid(candidate), pc.is_null(current))
    )


def same_mask(left: pa.Array, right: pa.Array) -> pa.Array:
    """Whether each pair of values is equal (two nulls are, as in Python), without nulls."""
    return pc.coalesce(pc.equal(left, right), pc.and_(pc.is_null(left), pc.is_null(right)))


def versus_stored(
    keys: pa.Array, stamps: pa.Array, stored_keys: pa.Array, stored_stamps: pa.Array
) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Each incoming row against the stored copy of its key.

    Returns, per incoming row: the position of the stored copy (null when none is stored),
    whether the incoming stamp is newer (:func:`newer_mask`), and whether it is the same
    (:func:`same_mask`).

    Example:
        >>> position, is_newer, same = versus_stored(
        ...     pa.array([1, 2, 3]), pa.array([5, 5, 5]), pa.array([1, 2]), pa.array([4, 5])
        ... )
        >>> position.to_pylist(), is_newer.to_pylist(), same.to_pylist()
        ([0, 1, None], [True, False, True], [False, True, False])
    """
    position = pc.index_in(keys, value_set=stored_keys)
    previous = stored_stamps.take(position)
    stamps = stamps.cast(previous.type)
    return position, newer_mask(stamps, previous), same_mask(stamps, previous)


def merge_latest(
    current: pa.Table | None,
    incoming: pa.Table,
    keys: list[str],
    stamp: str | None,
    counts: UpsertCounts | None = None,
) -> tuple[pa.Table, bool]:
    """Rows of both, one per key: the latest ``stamp`` wins (see the module's rules).

    Each incoming row is counted against the stored copy of its key: new (none stored),
    updated (newer), unchanged (the same stamp) or stale (older, or without a stamp). The work
    is done by Arrow (hashing, take, filter); Python does no work per row.

    Args:
        current: The stored rows (one per key), or ``None`` when nothing is stored.
        incoming: The batch; a key may appear more than once.
        keys: The columns that make a row's key.
        stamp: The column of the rows' version (``modified_date``), or ``None`` for tables
            without one, where every incoming row wins.
        counts: Add what the upsert did to these.

    Returns:
        The merged rows (the stored rows kept, then the winning incoming ones) and whether
        anything changed.
    """
    base = current if current is not None else incoming.schema.empty_table()
    stored_keys, incoming_keys = row_keys(base, incoming, keys)
    total = incoming.num_rows
    if stamp is None:  # no version: every incoming copy counts as newer
        position = pc.index_in(incoming_keys, value_set=stored_keys)
        is_newer, same = pa.array(np.ones(total, np.bool_)), pa.array(np.zeros(total, np.bool_))
    else:
        value, previous = column_array(incoming.column(stamp)), column_array(base.column(stamp))
        position, is_newer, same = versus_stored(incoming_keys, value, stored_keys, previous)
    in_stored = pc.is_valid(position)
    stored_count = count_true(in_stored)
    wins = pc.or_(pc.invert(in_stored), is_newer)
    updated = count_true(pc.and_(in_stored, is_newer))
    unchanged = count_true(pc.and_(in_stored, same))
    stale = stored_count - updated - unchanged
    if counts is not None:
        counts.new += total - stored_count
        counts.updated += updated
        counts.unchanged += unchanged
        counts.stale += stale
    # the latest copy of a key in the batch is the only candidate: if any copy beats the
    # stored one, the latest does too (its stamp is at least as new)
    take = pc.and_(wins, latest_per_key(incoming_keys, incoming.column(stamp) if stamp else None))
    if not count_true(take):
        return base, False
    fresh = incoming.filter(take)
    if current is None:
        return fresh, True
    replaced = pc.is_in(stored_keys, value_set=incoming_keys.filter(take))
    kept = current.filter(pc.invert(replaced))
    return pa.concat_tables([kept, fresh.cast(kept.schema)]), True


def column_array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array (a table's column may come in chunks)."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def count_true(mask: pa.Array) -> int:
    """How many values of a boolean array are true."""
    return int(pc.sum(mask, min_count=0).as_py())


def row_keys(current: pa.Table, incoming: pa.Table, keys: list[str]) -> tuple[pa.Array, pa.Array]:
    """One key value per row of each table, equal exactly where the rows' keys are equal.

    A single key column is used as it is; several are combined into one integer code per row,
    computed over both tables at once (a null is a value like any other, as in a tuple).
    """
    if len(keys) == 1:
        stored = column_array(current.column(keys[0]))
        return stored, column_array(incoming.column(keys[0])).cast(stored.type)
    code = pa.nulls(current.num_rows + incoming.num_rows, pa.int64()).fill_null(0)
    for key in keys:
        stored = column_array(current.column(key))
        both = pa.concat_arrays([stored, column_array(incoming.column(key)).cast(stored.type)])
        encoded = pc.dictionary_encode(both, null_encoding="encode")
        joined = pc.add(
            pc.multiply(code, len(encoded.dictionary)), encoded.indices.cast(pa.int64())
        )
        # re-encoded at each step, so the codes stay below the number of rows
        code = pc.dictionary_encode(joined).indices.cast(pa.int64())
    return code.slice(0, current.num_rows), code.slice(current.num_rows)


def latest_per_key(keys: pa.Array, stamps: pa.ChunkedArray | pa.Array | None) -> pa.Array:
    """Which rows are the latest of their key (latest stamp, missing oldest; later row on a tie).

    Example:
        >>> latest_per_key(pa.array([1, 2, 1]), pa.array([5, 5, 4])).to_pylist()
        [True, True, False]
    """
    rows = len(keys)
    codes = pc.dictionary_encode(keys, null_encoding="encode").indices
    if rows < 2 or len(pc.unique(codes)) == rows:
        return pa.array(np.ones(rows, np.bool_))
    columns: dict[str, Any] = {"key": codes}
    order: list[tuple[str, str]] = [("key", "ascending")]
    if stamps is not None:
        columns["has_stamp"] = pc.is_valid(stamps)
        columns["stamp"] = stamps
        order += [("has_stamp", "ascending"), ("stamp", "ascending")]
    columns["row"] = pa.array(np.arange(rows, dtype=np.int64))
    order.append(("row", "ascending"))
    ranked = pc.sort_indices(pa.table(columns), sort_keys=order)
    ordered = codes.take(ranked)
    last = pc.not_equal(ordered.slice(0, rows - 1), ordered.slice(1))
    winners = ranked.filter(pa.concat_arrays([last, pa.array([True])]))
    mask = np.zeros(rows, np.bool_)
    mask[winners.to_numpy()] = True
    return pa.array(mask)
