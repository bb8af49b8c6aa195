"""Where each stored order is: the index a sync leaves, trusted only for files as they were."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from omsframe.layout import INDEX_FILE, OrderLayout, Place, read_layout, save_layout
from omsframe.simulator.server import Clock, serve
from omsframe.simulator.world import World, from_us
from omsframe.store import Store
from omsframe.sync import sync
from tests.test_sync import check_cache, truth

A, B, C = ("2025-01", "part-00000"), ("2025-01", "part-00001"), ("2025-02", "part-00000")


def layout_of(files: dict[Place, list[int]]) -> OrderLayout:
    return OrderLayout.of([(place, np.array(ids, np.int64)) for place, ids in files.items()])


def reader(files: dict[Place, list[int]], asked: list[Place]) -> Callable[[Place], np.ndarray]:
    def read_ids(place: Place) -> np.ndarray:
        asked.append(place)
        return np.array(files[place], np.int64)

    return read_ids


def test_files_as_they_were_come_from_the_index_the_others_from_disk(tmp_path: Path) -> None:
    saved = {A: [1, 5, 9], B: [2, 3], C: [4]}
    stamps = {A: (1, 100, 7), B: (2, 50, 7), C: (3, 20, 7)}
    save_layout(tmp_path, layout_of(saved), [(p, stamps[p], len(i)) for p, i in saved.items()])
    # on disk now: A as it was; B rewritten (3 left it, 6 came); C gone; d new
    d = ("2025-03", "part-00000")
    disk = {A: [1, 5, 9], B: [2, 6], d: [7, 8]}
    on_disk = [(A, stamps[A]), (B, (9, 51, 8)), (d, (4, 10, 8))]
    asked: list[Place] = []
    layout = read_layout(tmp_path, on_disk, reader(disk, asked))
    assert sorted(asked) == sorted([B, d])  # A was taken from the index
    probe = list(range(12))
    expected = {i: place for place, ids in disk.items() for i in ids}
    assert layout.lookup(probe) == [expected.get(i) for i in probe]
    assert layout.sizes == {A: 3, B: 2, d: 2}


def test_a_file_whose_count_disagrees_is_left_out_of_the_saved_index(tmp_path: Path) -> None:
    layout = layout_of({A: [1, 2], B: [3]})
    save_layout(tmp_path, layout, [(A, (1, 1, 1), 2), (B, (2, 2, 2), 5)])  # B: 5 rows on disk
    asked: list[Place] = []
    again = read_layout(tmp_path, [(A, (1, 1, 1)), (B, (2, 2, 2))], reader({B: [3]}, asked))
    assert asked == [B]
    assert again.lookup([1, 2, 3]) == [A, A, B]


@pytest.mark.parametrize(
    "damage",
    [b"", b"not arrow at all", None],  # empty, garbage, missing
)
def test_a_damaged_or_missing_index_means_reading_every_file(
    tmp_path: Path, damage: bytes | None
) -> None:
    files = {A: [1], B: [2, 3]}
    save_layout(tmp_path, layout_of(files), [(A, (1, 1, 1), 1), (B, (2, 2, 2), 2)])
    if damage is None:
        (tmp_path / INDEX_FILE).unlink()
    else:
        (tmp_path / INDEX_FILE).write_bytes(damage)
    asked: list[Place] = []
    layout = read_layout(tmp_path, [(A, (1, 1, 1)), (B, (2, 2, 2))], reader(files, asked))
    assert sorted(asked) == [A, B]
    assert layout.lookup([1, 2, 3, 4]) == [A, B, B, None]


def test_an_index_saved_and_read_back_answers_as_the_layout_did(tmp_path: Path) -> None:
    rng = random.Random(3)
    layout = OrderLayout()
    places = [(f"2025-{m:02d}", f"part-{k:05d}") for m in range(1, 4) for k in range(3)]
    for _ in range(200):
        place = rng.choice(places)
        layout.add(place, rng.sample(range(2_000), rng.randint(0, 30)))
    held = layout.counts()
    stamps = {place: (k, k, k) for k, place in enumerate(places)}
    files = [(place, stamps[place], held.get(place, 0)) for place in places]
    save_layout(tmp_path, layout, files)
    again = read_layout(tmp_path, [(p, stamps[p]) for p in places], reader({}, []))
    probe = list(range(-3, 2_003))
    assert again.lookup(probe) == layout.lookup(probe)
    assert {p: n for p, n in again.sizes.items() if n} == {p: n for p, n in held.items() if n}


def split_file(cache: Path, month: str, stem: str, into: str) -> list[int]:
    """Move the second half of a file's orders to a new file name, in every per-order table."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    orders = pq.read_table(cache / f"tables/orders/month={month}/{stem}.parquet")
    moved = orders.column("order_id").to_pylist()[orders.num_rows // 2 :]
    for folder in ("tables/order_items", "tables/addresses", "raw/orders", "tables/orders"):
        path = cache / folder / f"month={month}" / f"{stem}.parquet"
        table = pq.read_table(path)
        leaves = pc.is_in(table.column("order_id"), value_set=pa.array(moved, pa.int64()))
        pq.write_table(table.filter(leaves), path.with_name(f"{into}.parquet"))
        pq.write_table(table.filter(pc.invert(leaves)), path)
    return moved


def test_a_file_changed_since_the_index_was_saved_is_read_again(tmp_path: Path) -> None:
    """Orders moved to another file behind the index's back are found there, not doubled."""
    world = World.generate(seed=5, orders=300, start=dt.date(2025, 1, 1), end=dt.date(2025, 4, 1))
    cache = tmp_path / "cache"
    with serve(world, clock=Clock(start=from_us(world.end_us) - dt.timedelta(days=20))) as oms:
        sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
        assert (cache / INDEX_FILE).exists()
        moved = split_file(cache, "2025-02", "part-00000", into="part-00077")
        assert moved
        again = sync(oms.url, token=oms.token, cache=cache, progress=False, full=True)
        assert again.orders_new == 0
        check_cache(cache, {**truth(world, oms.now_us), "event_ids": None})
    # the index now saved answers as the files do (a copy has new inodes: every file is read)
    shutil.copytree(cache, tmp_path / "copy")
    probe = list(map(int, world.order_id[: world.n_orders]))
    from_files = Store(tmp_path / "copy")._layout().lookup(probe)
    assert Store(cache)._layout().lookup(probe) == from_files
    assert {from_files[probe.index(i)] for i in moved} == {("2025-02", "part-00077")}
