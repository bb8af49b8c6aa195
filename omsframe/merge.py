"""Upsert arithmetic: which copy of a row wins, and what an upsert did.

The latest ``modified_date`` wins; on a tie (or without a stamp) the incoming copy wins; an
older incoming copy never replaces a newer stored one.

Example:
    >>> import pyarrow as pa
    >>> old = pa.table({"k": [1, 2], "m": [5, 5]})
    >>> new = pa.table({"k": [2, 3], "m": [9, 1]})
    >>> merged, changed = merge_latest(old, new, ["k"], "m")
    >>> sorted(merged.to_pylist(), key=lambda r: r["k"]), changed
    ([{'k': 1, 'm': 5}, {'k': 2, 'm': 9}, {'k': 3, 'm': 1}], True)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


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


def state_change(
    order_id: int, before: Any, after: Any, changed: Any, observed: dt.datetime, placed: Any
) -> dict[str, Any]:
    """A row of ``state_history``: an order went from ``before`` to ``after``."""
    return {
        "order_id": order_id,
        "from_state_code": before,
        "to_state_code": after,
        "changed_at": changed if changed is not None else observed,
        "observed_at": observed,
        "date_placed": placed,
    }


def merge_latest(
    current: pa.Table | None,
    incoming: pa.Table,
    keys: list[str],
    stamp: str | None,
    counts: UpsertCounts | None = None,
) -> tuple[pa.Table, bool]:
    """Rows of both, one per key: the latest ``stamp`` wins, incoming wins ties and no stamp."""

    def key_of(table: pa.Table) -> list[tuple[Any, ...]]:
        return list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))

    stored: dict[tuple[Any, ...], Any] = {}
    if current is not None:
        stamps = current.column(stamp).to_pylist() if stamp else [None] * current.num_rows
        stored = dict(zip(key_of(current), stamps, strict=True))
    incoming_stamps = incoming.column(stamp).to_pylist() if stamp else [None] * incoming.num_rows
    take: list[bool] = []
    chosen: dict[tuple[Any, ...], int] = {}
    for index, (key, value) in enumerate(zip(key_of(incoming), incoming_stamps, strict=True)):
        if key in stored and stamp is not None:
            previous = stored[key]
            if value == previous:
                take.append(False)
                if counts:
                    counts.unchanged += 1
                continue
            if not newer(value, previous):
                take.append(False)
                if counts:
                    counts.stale += 1
                continue
        if counts:
            if key in stored:
                counts.updated += 1
            else:
                counts.new += 1
        take.append(True)
        chosen[key] = index
    # within the incoming batch, keep only the last chosen row per key
    take = [
        flag and chosen.get(key) == index
        for index, (flag, key) in enumerate(zip(take, key_of(incoming), strict=True))
    ]
    if not any(take):
        return current if current is not None else incoming.schema.empty_table(), False
    fresh = incoming.filter(pa.array(take, pa.bool_()))
    if current is None:
        return fresh, True
    replaced = set(key_of(fresh))
    kept = current.filter(pa.array([k not in replaced for k in key_of(current)], pa.bool_()))
    return pa.concat_tables([kept, fresh.cast(kept.schema)]), True
