"""merge_latest: which copy of a row wins, checked against a plain-Python statement of the rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from omsframe.merge import UpsertCounts, merge_latest, newer

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
TIME = pa.timestamp("us", tz="UTC")


def reference(
    current: list[dict[str, Any]] | None,
    incoming: list[dict[str, Any]],
    keys: list[str],
    stamp: str | None,
) -> tuple[list[dict[str, Any]], bool, UpsertCounts]:
    """The rules of omsframe.merge, one row at a time."""
    counts = UpsertCounts()

    def key_of(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[k] for k in keys)

    stored = {key_of(r): (r[stamp] if stamp else None) for r in current or []}
    best: dict[tuple[Any, ...], int] = {}  # the batch's latest copy per key
    for index, row in enumerate(incoming):
        key = key_of(row)
        other = best.get(key)
        if (
            other is None
            or stamp is None
            or not newer(incoming[other][stamp], row[stamp])  # later row on a tie
        ):
            best[key] = index
    winners = []
    for index, row in enumerate(incoming):
        key = key_of(row)
        if key not in stored:
            counts.new += 1
            wins = True
        elif stamp is None:
            counts.updated += 1
            wins = True
        elif row[stamp] == stored[key]:
            counts.unchanged += 1
            wins = False
        elif newer(row[stamp], stored[key]):
            counts.updated += 1
            wins = True
        else:
            counts.stale += 1
            wins = False
        if wins and best[key] == index:
            winners.append(row)
    replaced = {key_of(r) for r in winners}
    kept = [r for r in current or [] if key_of(r) not in replaced]
    return kept + winners, bool(winners), counts


def table(rows: list[dict[str, Any]], columns: dict[str, pa.DataType]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=pa.schema(columns))


def test_two_copies_of_a_key_in_one_batch_the_earlier_one_newer() -> None:
    current = table(
        [{"k": 1, "m": T0, "v": "stored"}], {"k": pa.int64(), "m": TIME, "v": pa.string()}
    )
    incoming = table(
        [
            {"k": 1, "m": T0 + dt.timedelta(hours=2), "v": "newest, first"},
            {"k": 1, "m": T0 + dt.timedelta(hours=1), "v": "newer, second"},
            {"k": 2, "m": T0, "v": "tie, first"},
            {"k": 2, "m": T0, "v": "tie, second"},
            {"k": 3, "m": T0, "v": "stamped"},
            {"k": 3, "m": None, "v": "no stamp, later"},
        ],
        {"k": pa.int64(), "m": TIME, "v": pa.string()},
    )
    counts = UpsertCounts()
    merged, changed = merge_latest(current, incoming, ["k"], "m", counts)
    assert changed
    assert sorted((r["k"], r["v"]) for r in merged.to_pylist()) == [
        (1, "newest, first"),
        (2, "tie, second"),
        (3, "stamped"),
    ]
    # every incoming row is counted against the stored copy
    assert (counts.new, counts.updated, counts.unchanged, counts.stale) == (4, 2, 0, 0)


def test_against_the_stored_copy() -> None:
    columns = {"k": pa.int64(), "m": TIME}
    later = T0 + dt.timedelta(seconds=1)
    current = table(
        [{"k": 1, "m": T0}, {"k": 2, "m": T0}, {"k": 3, "m": T0}, {"k": 4, "m": None}], columns
    )
    incoming = table(
        [{"k": 1, "m": T0}, {"k": 2, "m": None}, {"k": 3, "m": later}, {"k": 4, "m": later}],
        columns,
    )
    counts = UpsertCounts()
    merged, changed = merge_latest(current, incoming, ["k"], "m", counts)
    assert changed
    assert sorted((r["k"], r["m"]) for r in merged.to_pylist()) == [
        (1, T0),
        (2, T0),
        (3, later),
        (4, later),
    ]
    assert (counts.new, counts.updated, counts.unchanged, counts.stale) == (0, 2, 1, 1)
    same, changed = merge_latest(merged, incoming.slice(2), ["k"], "m")
    assert not changed and same is merged


def test_a_table_without_a_stamp_takes_the_batchs_last_copy() -> None:
    columns = {"enum_class": pa.string(), "code": pa.string(), "name": pa.string()}
    current = table([{"enum_class": "o", "code": "1", "name": "old"}], columns)
    incoming = table(
        [
            {"enum_class": "o", "code": "1", "name": "first"},
            {"enum_class": "i", "code": "1", "name": "other class"},
            {"enum_class": "o", "code": "1", "name": "last"},
        ],
        columns,
    )
    counts = UpsertCounts()
    merged, _ = merge_latest(current, incoming, ["enum_class", "code"], None, counts)
    assert sorted(merged.to_pylist(), key=str) == sorted(
        [
            {"enum_class": "o", "code": "1", "name": "last"},
            {"enum_class": "i", "code": "1", "name": "other class"},
        ],
        key=str,
    )
    assert (counts.new, counts.updated) == (1, 2)


stamps = st.one_of(st.none(), st.integers(0, 3).map(lambda h: T0 + dt.timedelta(hours=h)))
rows = st.fixed_dictionaries(
    {
        "a": st.one_of(st.none(), st.integers(0, 3)),
        "b": st.sampled_from([None, "x", "y"]),
        "m": stamps,
    }
)
COLUMNS = {"a": pa.int64(), "b": pa.string(), "m": TIME, "row": pa.int64()}


@settings(max_examples=300, deadline=None)
@given(
    stored=st.one_of(st.none(), st.lists(rows, max_size=8)),
    batch=st.lists(rows, max_size=10),
    keys=st.sampled_from([["a"], ["b"], ["a", "b"]]),
    stamp=st.sampled_from(["m", None]),
)
def test_merge_latest_follows_the_rules(
    stored: list[dict[str, Any]] | None,
    batch: list[dict[str, Any]],
    keys: list[str],
    stamp: str | None,
) -> None:
    current = None
    if stored is not None:  # one stored row per key
        unique = {tuple(r[k] for k in keys): r for r in stored}
        current = [{**r, "row": -1 - i} for i, r in enumerate(unique.values())]
    incoming = [{**r, "row": i} for i, r in enumerate(batch)]
    expected, expected_changed, expected_counts = reference(current, incoming, keys, stamp)
    counts = UpsertCounts()
    merged, changed = merge_latest(
        table(current, COLUMNS) if current is not None else None,
        table(incoming, COLUMNS),
        keys,
        stamp,
        counts,
    )
    assert changed == expected_changed
    assert counts == expected_counts
    assert sorted(merged.to_pylist(), key=lambda r: r["row"]) == sorted(
        expected if expected_changed else current or [], key=lambda r: r["row"]
    )
    assert merged.schema.equals(pa.schema(COLUMNS))
