"""A sync that dies at an exact point — inside a parquet write, between the partition rewrites of
one batch, inside the manifest update, inside a compaction of the raw layer — resumes to the
same cache as an uninterrupted sync.

The child process dies with ``os._exit`` (no cleanup, no ``finally``: what kill -9 leaves).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omsframe.simulator.server import SimulatorServer, serve
from omsframe.simulator.world import World
from omsframe.sync import sync
from tests.test_sync import assert_raw_layer_current, same_key_cache, snapshot

CHILD = """
import os, sys
import pyarrow.parquet as pq
import omsframe.store as store
from omsframe.sync import sync

point, nth = sys.argv[4], int(sys.argv[5])
# small files (the uninterrupted sync keeps the defaults): kills land between the files of a
# batch, and the resumed cache must hold the same rows whatever its files
store.FILE_ORDERS, store.SMALL_FILE = 25, 10
# "compacting-" points: a month of the raw layer is compacted as soon as it has more raw files
# than orders files (nearly every batch), and the point counts only within compactions
compacting = {"on": not point.startswith("compacting-")}
if point.startswith("compacting-"):
    store.RAW_SLACK, point = 0, point.removeprefix("compacting-")
    real_compact = store.Store._compact_raw

    def compact(self, month):
        compacting["on"] = True
        try:
            return real_compact(self, month)
        finally:
            compacting["on"] = False

    store.Store._compact_raw = compact
calls = {"n": 0}

def count() -> bool:
    if not compacting["on"]:
        return False
    calls["n"] += 1
    return calls["n"] == nth

real_write, real_replace = pq.write_table, os.replace

def write_table(table, where, **options):
    if point == "inside-parquet-write" and count():
        real_write(table.slice(0, max(1, table.num_rows // 2)), where, **options)
        os._exit(9)  # half a temporary file on disk, never renamed
    real_write(table, where, **options)

def replace(source, target):
    name = os.path.basename(str(target))
    parquet = name.startswith("part") and name.endswith(".parquet")
    if point == "before-partition-rename" and parquet and count():
        os._exit(9)  # some partitions of this batch rewritten, the rest not
    if point == "inside-manifest-update" and name == "manifest.json" and count():
        os._exit(9)  # the batch stored, its checkpoint not
    real_replace(source, target)

real_unlink = store.Path.unlink

def unlink(path, missing_ok=False):
    if point == "between-removals" and count():
        os._exit(9)  # a compaction's new files written, some of its old ones not yet removed
    real_unlink(path, missing_ok=missing_ok)

pq.write_table = write_table
store.os.replace = replace
store.Path.unlink = unlink
sync(sys.argv[1], token=sys.argv[2], cache=sys.argv[3], progress=False, batch_size=60)
"""

POINTS = [
    ("inside-parquet-write", 1),
    ("inside-parquet-write", 9),
    ("inside-parquet-write", 40),
    ("before-partition-rename", 2),
    ("before-partition-rename", 15),
    ("before-partition-rename", 61),
    ("inside-manifest-update", 1),
    ("inside-manifest-update", 4),
    ("inside-manifest-update", 9),
    ("inside-manifest-update", 20),
    # inside a compaction of the raw layer (see CHILD)
    ("compacting-inside-parquet-write", 1),
    ("compacting-inside-parquet-write", 3),
    ("compacting-before-partition-rename", 2),
    ("compacting-between-removals", 1),
    ("compacting-between-removals", 4),
]


@pytest.fixture(scope="module")
def oms() -> Iterator[SimulatorServer]:
    with serve(World.generate(seed=31, orders=300)) as server:
        yield server


@pytest.fixture(scope="module")
def clean(oms: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("clean")
    sync(oms.url, token=oms.token, cache=cache, progress=False, batch_size=60)
    return cache


@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[f"{p}-{n}" for p, n in POINTS])
def test_a_sync_dead_at_an_exact_point_resumes_to_the_same_cache(
    oms: SimulatorServer, clean: Path, tmp_path: Path, point: str, nth: int
) -> None:
    cache = same_key_cache(clean, tmp_path / "cache")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, oms.url, oms.token, str(cache), point, str(nth)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 9, f"the sync did not reach {point} #{nth}: {child.stderr[-300:]}"
    report = sync(oms.url, token=oms.token, cache=cache, progress=False, batch_size=60)
    assert report.complete
    assert snapshot(cache) == snapshot(clean)
    assert_raw_layer_current(cache)  # every stored order has its copy (written before it)
