"""The cache under bad conditions: damaged files, read-only folders, a full disk."""

from __future__ import annotations

import functools
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omsframe.errors import CacheError
from omsframe.load import load
from omsframe.manifest import load_manifest
from omsframe.schema import TABLES
from omsframe.simulator.server import SimulatorServer, serve
from omsframe.simulator.world import World
from omsframe.store import FILE_GROUP, WRITE_THREADS
from omsframe.sync import sync


@pytest.fixture(scope="module")
def oms() -> Iterator[SimulatorServer]:
    with serve(World.generate(seed=8, orders=200)) as server:
        yield server


@pytest.fixture(scope="module")
def synced(oms: SimulatorServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    return cache


def copy_cache(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_a_damaged_parquet_file_gives_a_clear_error_naming_rebuild(
    synced: Path, tmp_path: Path
) -> None:
    cache = copy_cache(synced, tmp_path / "c")
    victim = next((cache / "tables" / "orders").glob("month=*/part*.parquet"))
    victim.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CacheError, match="omsframe rebuild") as error:
        load(cache)
    assert str(victim) in str(error.value) and "\n" not in str(error.value)


def test_a_damaged_manifest_gives_a_clear_error(synced: Path, tmp_path: Path) -> None:
    cache = copy_cache(synced, tmp_path / "c")
    (cache / "manifest.json").write_text("{ not json")
    with pytest.raises(CacheError, match="damaged"):
        load_manifest(cache)


def test_a_read_only_cache_refuses_cleanly_and_keeps_its_data(
    oms: SimulatorServer, synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = copy_cache(synced, tmp_path / "c")
    before = load(cache, engine="pyarrow").orders

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(30, "Read-only file system")

    # the tests run as root, which ignores permission bits: refuse at the OS call instead
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(CacheError, match="Read-only file system"):
        sync(oms.url, token=oms.token, cache=cache, progress=False, events=False, full=True)
    monkeypatch.undo()
    assert load(cache, engine="pyarrow").orders.equals(before)


def test_a_full_disk_mid_write_leaves_no_debris_and_the_next_sync_completes(
    oms: SimulatorServer, synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "c"
    real_write = pq.write_table
    calls = {"n": 0}

    counting = threading.Lock()  # (files are written on several threads)

    def fill_disk(table: object, where: str, **options: object) -> None:
        with counting:
            calls["n"] += 1
            number = calls["n"]
        real_write(table, where, **options)
        if number == 7:  # half a file lands, then the disk is full
            with open(where, "r+b") as half:
                half.truncate(10)
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", fill_disk)
    with pytest.raises(CacheError, match="No space left on device"):
        sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    monkeypatch.undo()
    # no write started after the failure: each other writing thread only ends the write it
    # was in (a file group is len(FILE_GROUP) files), give or take one begun as it failed
    assert 7 <= calls["n"] <= 7 + (WRITE_THREADS - 1) * 2 * len(FILE_GROUP)
    assert list(cache.rglob("*.tmp")) == []
    load(cache)  # what was stored before the failure reads cleanly
    sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    expected, got = load(synced, engine="pyarrow"), load(cache, engine="pyarrow")
    for name in ("orders", "order_items", "addresses", "customers", "products"):
        # each cache has its own pseudonymization key: compare what is not personal data
        personal = [c.name for c in TABLES[name].columns if c.pii]
        keys = [(c, "ascending") for c in TABLES[name].key]
        mine = got[name].drop_columns(personal).sort_by(keys)
        theirs = expected[name].drop_columns(personal).sort_by(keys)
        assert mine.equals(theirs), name


def test_an_order_whose_date_placed_moves_is_stored_once_in_its_new_month(tmp_path: Path) -> None:
    import copy
    import datetime as dt

    from omsframe.flatten import flatten_orders
    from omsframe.privacy import Privacy
    from omsframe.store import Store
    from tests.test_flatten import example_copy

    store = Store(tmp_path)
    privacy = Privacy(key=b"k" * 32)
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    def upsert(placed: str, modified: str) -> Any:
        order = copy.deepcopy(example_copy()[0])
        order.update(date_placed=placed, modified_date=modified)
        flat = flatten_orders([order], privacy=privacy)
        return store.upsert_orders(flat, [order], policy="pseudonymize", observed_at=now)

    upsert("2023-05-17T13:45:20.000000Z", "2023-05-17T13:45:55.000000Z")
    assert store.months("orders") == ["2023-05"]
    counts = upsert("2023-06-02T10:00:00.000000Z", "2023-06-02T10:00:01.000000Z")  # it moves
    assert (counts.new, counts.updated) == (0, 1)  # an update, not a new order
    # its state did not change: the state history keeps its one row (it used to get another)
    assert Store(tmp_path).read_table("state_history").num_rows == 1
    fresh = Store(tmp_path)  # a new reader sees the files only
    for name in ("orders", "order_items", "addresses"):  # no empty file left in the old month
        assert fresh.months(name) == ["2023-06"], name
        assert not list((tmp_path / "tables" / name).glob("month=2023-05/*")), name
    for name in ("orders", "order_items", "addresses"):
        table = fresh.read_table(name)
        assert set(table.column("order_id").to_pylist()) == {6998}, name
        assert table.num_rows == (2 if name == "addresses" else 1), name
    # the raw layer keeps both copies, each in its month; the latest is the current one
    copies = fresh.read_table("raw_orders").sort_by("modified_date").to_pylist()
    assert [(c["date_placed"].month, c["modified_date"].month) for c in copies] == [(5, 5), (6, 6)]
    assert fresh.read_partition("orders", "2023-06") is not None
    upsert("2023-04-01T10:00:00.000000Z", "2023-04-01T10:00:01.000000Z")  # older: ignored
    placed = Store(tmp_path).read_table("orders").column("date_placed").to_pylist()
    assert [p.month for p in placed] == [6]


def test_a_rebuild_killed_between_its_two_renames_is_recovered(
    synced: Path, tmp_path: Path
) -> None:
    import os

    from omsframe.export import rebuild

    cache = copy_cache(synced, tmp_path / "c")
    before = load(cache, engine="pyarrow").orders
    os.replace(cache / "tables", cache / "tables.old")  # as a rebuild killed mid-swap leaves it
    (cache / "tables.rebuild").mkdir()
    with pytest.raises(CacheError, match="interrupted rebuild"):
        load(cache)
    from omsframe.load import cache_info

    assert "in the middle of an interrupted rebuild" in str(cache_info(cache).damage)
    rebuild(cache)
    assert not (cache / "tables.old").exists()
    after = load(cache, engine="pyarrow").orders
    assert after.sort_by("order_id").equals(before.sort_by("order_id"))
    assert load(cache, engine="pyarrow").state_history.num_rows > 0


def test_an_interrupted_rebuild_leaves_the_cache_as_it_was_and_nothing_beside_it(
    oms: SimulatorServer, synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from omsframe.export import rebuild

    cache = copy_cache(synced, tmp_path / "c")
    before = load(cache, engine="pyarrow").orders

    def interrupted(*args: Any, **kwargs: Any) -> Any:  # Ctrl-C once the orders are staged
        assert (cache / "tables.rebuild" / "orders").exists()
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # (the state history is copied once all is staged)
        patch.setattr(shutil, "copytree", interrupted)
        with pytest.raises(KeyboardInterrupt):
            rebuild(cache)
    leftovers = {"tables.rebuild", "tables.old", ".rebuild-discard"}
    assert not leftovers & {p.name for p in cache.iterdir()}
    assert load(cache, engine="pyarrow").orders.equals(before)
    # a rebuild killed outright (kill -9) leaves its staging folder: the next writer removes it
    (cache / "tables.rebuild" / "orders").mkdir(parents=True)
    (cache / ".rebuild-discard").mkdir()
    sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    assert not leftovers & {p.name for p in cache.iterdir()}


def test_a_lost_file_is_an_error_and_never_silently_fewer_rows(
    oms: SimulatorServer, synced: Path, tmp_path: Path
) -> None:
    import os

    from omsframe.export import export, rebuild
    from omsframe.load import cache_info

    cache = copy_cache(synced, tmp_path / "c")
    before = load(cache, engine="pyarrow").orders.sort_by("order_id")
    lost = sorted((cache / "tables" / "orders").rglob("part-*.parquet"))[1]
    lost.unlink()
    for reader in (lambda: load(cache), lambda: export(cache, tmp_path / "out")):
        with pytest.raises(CacheError, match=rf"lost rows .*omsframe rebuild --cache {cache}"):
            reader()
    assert cache_info(cache).damage is not None
    files = sorted(p for p in cache.rglob("*.parquet"))
    stamps = [os.stat(p).st_mtime_ns for p in files]
    with pytest.raises(CacheError, match="lost rows"):  # refused before anything is written
        sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    assert [os.stat(p).st_mtime_ns for p in files] == stamps
    rebuild(cache)
    assert load(cache, engine="pyarrow").orders.sort_by("order_id").equals(before)
    assert cache_info(cache).damage is None
    # a raw file lost: the tables still read, but a rebuild would lose orders and refuses
    next((cache / "raw" / "orders").rglob("part-*.parquet")).unlink()
    assert load(cache, engine="pyarrow").orders.num_rows == before.num_rows
    assert "a rebuild would now lose orders" in str(cache_info(cache).damage)
    with pytest.raises(CacheError, match=r"its raw layer holds .* the tables were kept"):
        rebuild(cache)
    assert load(cache, engine="pyarrow").orders.sort_by("order_id").equals(before)


def test_the_tables_of_a_sync_stopped_midway_are_not_called_damaged(
    oms: SimulatorServer, synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from omsframe.load import cache_info, lost_rows
    from omsframe.store import Store

    cache = copy_cache(synced, tmp_path / "c")
    upsert = Store.upsert_batch

    def stopped(self: Store, *args: Any, **kwargs: Any) -> Any:
        upsert(self, *args, **kwargs)
        raise KeyboardInterrupt  # killed once its first batch is written, before a checkpoint

    with monkeypatch.context() as patch:
        patch.setattr(Store, "upsert_batch", stopped)
        with pytest.raises(KeyboardInterrupt):
            sync(oms.url, token=oms.token, cache=cache, progress=False, events=False, full=True)
    manifest = load_manifest(cache)
    assert manifest.get("writing") and not manifest.get("checkpoint")
    # its tables may differ from the counts (an order's new copy with fewer items, an order
    # between two months, the raw layer compacted): not damage, the next run mends them
    fewer = {**manifest, "counts": {**manifest["counts"], "order_items": 10**6}}
    assert lost_rows(cache, fewer) is None
    assert "order_items" in str(
        lost_rows(cache, {k: v for k, v in fewer.items() if k != "writing"})
    )
    assert cache_info(cache).damage is None and cache_info(cache).unfinished_sync
    load(cache)
    sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    assert "writing" not in json.loads((cache / "manifest.json").read_text())


def test_a_damaged_raw_file_is_mended_by_moving_it_away_and_a_full_sync(
    oms: SimulatorServer, synced: Path, tmp_path: Path
) -> None:
    from omsframe.export import rebuild
    from omsframe.load import cache_info

    cache = copy_cache(synced, tmp_path / "c")
    before = load(cache, engine="pyarrow").orders.sort_by("order_id")
    raw = next((cache / "raw" / "orders").rglob("part-*.parquet"))
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(CacheError, match=r"it is a raw file, .* move it out of the cache and run"):
        rebuild(cache)
    raw.rename(tmp_path / "moved-away.parquet")
    assert "a rebuild would now lose orders" in str(cache_info(cache).damage)
    report = sync(oms.url, token=oms.token, cache=cache, progress=False, events=False, full=True)
    assert report.orders_seen == before.num_rows
    assert cache_info(cache).damage is None
    rebuild(cache)
    assert load(cache, engine="pyarrow").orders.sort_by("order_id").equals(before)


def test_a_lost_pii_key_is_an_error_not_a_silent_new_key(
    oms: SimulatorServer, synced: Path, tmp_path: Path
) -> None:
    cache = copy_cache(synced, tmp_path / "c")
    (cache / ".pii-key").unlink()
    with pytest.raises(CacheError, match="restore the key from a backup"):
        sync(oms.url, token=oms.token, cache=cache, progress=False, events=False)
    assert not (cache / ".pii-key").exists()


def test_new_orders_fill_a_small_last_file_then_go_to_new_bounded_files() -> None:
    from omsframe.layout import OrderLayout

    layout = OrderLayout()

    def place_new(month: str, count: int) -> list[tuple[str, int]]:
        return layout.place_new(month, count, file_orders=10, small_file=4)

    assert place_new("2025-01", 25) == [
        ("part-00000", 9),
        ("part-00001", 8),
        ("part-00002", 8),
    ]
    layout.add(("2025-01", "part-00000"), list(range(3)))  # a small last file: filled first
    assert place_new("2025-01", 12) == [("part-00000", 7), ("part-00001", 5)]
    layout.add(("2025-01", "part-00001"), list(range(3, 9)))  # a large enough one: left alone
    assert place_new("2025-01", 2) == [("part-00002", 2)]
    assert place_new("2025-02", 1) == [("part-00000", 1)]  # months are apart


def test_a_batch_is_split_into_its_files_in_order_or_not() -> None:
    import pyarrow as pa

    from omsframe.store import _split

    table = pa.table({"order_id": [10, 11, 12, 13, 14]})

    def ids(codes: list[int], count: int) -> list[list[int]]:
        parts = _split(table, pa.array(codes, pa.int64()), count)
        return [part.column("order_id").to_pylist() for part in parts]

    assert ids([0, 0, 1, 2, 2], 3) == [[10, 11], [12], [13, 14]]  # in order: slices
    assert ids([2, 0, 1, 0, 2], 3) == [[11, 13], [12], [10, 14]]  # out of order: kept stable
    assert ids([1, 1, 1, 1, 1], 3) == [[], [10, 11, 12, 13, 14], []]
    assert _split(table.slice(0, 0), pa.array([], pa.int64()), 0) == []


def test_files_a_killed_sync_left_without_their_orders_file_are_removed(
    synced: Path, oms: SimulatorServer, tmp_path: Path
) -> None:
    import shutil

    cache = copy_cache(synced, tmp_path / "c")
    before = load(cache, engine="pyarrow")
    # what a sync killed between the files of a new file name leaves: items, no orders (the
    # raw layer's files are not named after the orders files: see test_raw_layer_*)
    for folder in ("tables/order_items", "tables/addresses"):
        source = next((cache / folder).glob("month=*/part-*.parquet"))
        shutil.copy(source, source.with_name("part-00099.parquet"))
    sync(oms.url, token=oms.token, cache=cache, progress=False, events=False, full=True)
    assert not list(cache.rglob("part-00099.parquet"))
    after = load(cache, engine="pyarrow")
    for name in ("order_items", "addresses"):
        assert after[name].num_rows == before[name].num_rows  # no row doubled


def test_the_order_index_answers_like_a_dict_of_ids_to_files() -> None:
    import random

    import numpy as np

    from omsframe.layout import OrderLayout

    layout = OrderLayout()
    truth: dict[int, tuple[str, str]] = {}
    assert layout.lookup([1, 2]) == [None, None]
    rng = random.Random(7)
    places = [("2025-01", "part-00000"), ("2025-01", "part-00001"), ("2025-02", "part-00000")]
    for step in range(300):
        place = rng.choice(places)
        ids = rng.sample(range(500), rng.randint(0, 12))
        if step % 4 == 3:
            ids = [i for i in ids if truth.get(i) == place]
            layout.remove(place, ids)
            for i in ids:
                truth.pop(i)
        else:
            layout.add(place, ids)
            truth.update(dict.fromkeys(ids, place))
        probe = rng.sample(range(-5, 505), 40)
        assert layout.lookup(probe) == [truth.get(i) for i in probe]
    assert layout.lookup([]) == []
    built = OrderLayout.of(
        [(place, np.array(sorted(i for i, p in truth.items() if p == place))) for place in places]
    )
    probe = list(range(-5, 505))
    assert built.lookup(probe) == layout.lookup(probe)


def test_a_batch_s_writes_run_side_by_side_and_stop_at_the_first_error() -> None:
    import threading
    import time

    from omsframe.store import _run_writes

    echo = [functools.partial(int, n) for n in range(6)]
    assert _run_writes(echo) == list(range(6))  # results in order
    started: list[int] = []
    lock = threading.Lock()

    def write(number: int) -> int:
        with lock:
            started.append(number)
        if number == 0:
            raise CacheError("cannot write part-00000.parquet: no space left")
        time.sleep(0.05)
        return number

    with pytest.raises(CacheError, match="no space left"):
        _run_writes([functools.partial(write, n) for n in range(8)])
    assert 0 in started and len(started) < 8  # the queued writes never started

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the writes run

    import concurrent.futures

    from omsframe import store

    started.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "WRITE_THREADS", 2)  # (side by side even on one core)
        patch.setattr(concurrent.futures, "wait", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _run_writes([functools.partial(write, n + 1) for n in range(8)])
    assert len(started) <= 2  # the two under way finished; the six queued never started


def test_a_month_s_raw_copies_land_before_its_tables_and_a_failed_one_stops_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy
    import datetime as dt
    import threading
    import time

    from omsframe import store as store_module
    from omsframe.flatten import flatten_orders
    from omsframe.privacy import Privacy
    from omsframe.store import Store
    from tests.test_flatten import example_copy

    monkeypatch.setattr(store_module, "WRITE_THREADS", 2)  # (side by side even on one core)
    privacy = Privacy(key=b"k" * 32)
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    real_write = Store._write

    def traced(self: Store, name: str, *args: Any, **kwargs: Any) -> None:
        with lock:
            events.append(("start", name))
        if name == "raw_orders":
            time.sleep(0.05)  # a slow raw file: the tables must still wait for it
        real_write(self, name, *args, **kwargs)
        with lock:
            events.append(("end", name))

    monkeypatch.setattr(Store, "_write", traced)

    def upsert(order_id: int, placed: str, modified: str) -> None:
        order = copy.deepcopy(example_copy()[0])
        order.update(id=order_id, date_placed=placed, modified_date=modified)
        flat = flatten_orders([order], privacy=privacy)
        Store(tmp_path).upsert_orders(flat, [order], policy="pseudonymize", observed_at=now)

    upsert(1, "2023-05-17T13:45:20.000000Z", "2023-05-17T13:45:55.000000Z")
    raw_end = events.index(("end", "raw_orders"))
    tables = [i for i, (kind, name) in enumerate(events) if kind == "start" and name in FILE_GROUP]
    assert tables and min(tables) > raw_end  # no table file before the order's raw copy

    def no_space(self: Store, month: str, stem: str, rows: pa.Table) -> int:
        raise CacheError(f"cannot write {stem}.parquet: no space left on device")

    monkeypatch.setattr(Store, "_append_raw", no_space)
    events.clear()
    with pytest.raises(CacheError, match="no space left"):
        upsert(1, "2023-05-17T13:45:20.000000Z", "2023-05-18T00:00:00.000000Z")
    assert not [name for _, name in events if name in FILE_GROUP]  # no table was written
    stored = Store(tmp_path).read_table("orders").column("modified_date").to_pylist()
    assert [m.day for m in stored] == [17]  # the order as it was, with its raw copy


def test_later_writes_are_decided_while_the_first_ones_run() -> None:
    import threading

    from omsframe import store
    from omsframe.store import _run_writes

    running = threading.Event()
    decided = threading.Event()

    def first() -> int:
        running.set()
        # ends only once `later` has been called: it fails (times out) if `later` waits for it
        assert decided.wait(timeout=10), "later was not called while the first write ran"
        return 1

    def later() -> list[Any]:
        assert running.wait(timeout=10)
        decided.set()
        return [functools.partial(int, 2), functools.partial(int, 3)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "WRITE_THREADS", 2)
        assert _run_writes([first], later) == [1, 2, 3]  # results in order, later's last

        # `later` fails: the write under way ends, nothing else starts, the error is raised
        running.clear()
        decided.clear()
        ended: list[int] = []

        def slow() -> int:
            running.set()
            decided.wait(timeout=10)
            ended.append(1)
            return 1

        def failing() -> list[Any]:
            assert running.wait(timeout=10)
            decided.set()
            raise CacheError("cannot read customers/part-00000.parquet")

        with pytest.raises(CacheError, match="cannot read customers"):
            _run_writes([slow], failing)
        assert ended == [1]

    # one thread: the same results, one after the other
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "WRITE_THREADS", 1)
        assert _run_writes([functools.partial(int, 1)], later) == [1, 2, 3]


def test_customers_go_to_files_by_id_range_and_stay_where_they_are(tmp_path: Path) -> None:
    from omsframe.flatten import flatten_orders
    from omsframe.privacy import Privacy
    from omsframe.store import CUSTOMER_SPAN, Store

    privacy = Privacy(key=b"k" * 32)

    def batch(*customers: tuple[int, str]) -> Any:
        orders = [
            {"id": n, "modified_date": f"2025-0{day}-01T10:00:00Z", "customer": {"pk": pk}}
            for n, (pk, day) in enumerate(customers, start=1)
        ]
        return flatten_orders(orders, privacy=privacy)

    store = Store(tmp_path)
    old = batch((5, "1"), (2 * CUSTOMER_SPAN + 1, "1")).tables["customers"]
    store._write("customers", None, old, privacy.mode)  # one file, as an earlier omsframe wrote
    store.upsert_entities(
        batch((2 * CUSTOMER_SPAN + 1, "2"), (7, "2"), (3 * CUSTOMER_SPAN, "2")), policy=privacy.mode
    )
    files = {
        stem: sorted(
            pq.read_table(store.file_path("customers", None, stem))["customer_id"].to_pylist()
        )
        for stem in store.stems("customers", None)
    }
    assert files == {
        "part": [5, 2 * CUSTOMER_SPAN + 1],  # a stored customer stays in its file
        "part-00000": [7],
        "part-00003": [3 * CUSTOMER_SPAN],
    }
    table = store.read_table("customers")
    stamps = dict(
        zip(
            table.column("customer_id").to_pylist(),
            [t.month for t in table.column("last_order_modified").to_pylist()],
            strict=True,
        )
    )
    assert stamps == {5: 1, 2 * CUSTOMER_SPAN + 1: 2, 7: 2, 3 * CUSTOMER_SPAN: 2}
    store.upsert_entities(batch((7, "3")), policy=privacy.mode)  # again: no file but its own
    assert store.read_table("customers").num_rows == 4
    assert [p.name for p in sorted(store.table_dir("customers").glob("*.parquet"))] == [
        "part-00000.parquet",
        "part-00003.parquet",
        "part.parquet",
    ]


def test_row_counts_are_read_from_footers_once_per_file_version(
    synced: Path, tmp_path: Path
) -> None:
    import json

    from omsframe.store import Store

    cache = copy_cache(synced, tmp_path / "c")
    store = Store(cache)

    def footers(name: str) -> int:
        folder = store.table_dir(name)
        return sum(pq.read_metadata(p).num_rows for p in folder.rglob("part*.parquet"))

    counts = store.counts()
    assert counts == {name: footers(name) for name in counts}
    assert counts["orders"] == 200
    remembered = cache / ".rows.json"
    entries = json.loads(remembered.read_text())
    assert any(key.startswith("tables/orders/") for key in entries)
    # a file written since is read again
    products = store.file_path("products", None)
    pq.write_table(pq.read_table(products).slice(0, 1), products)
    assert store.counts()["products"] == 1
    # an unchanged file is not: its remembered count is used (here, a wrong one, to show it)
    key = next(k for k in entries if k.startswith("tables/channels/"))
    entries = json.loads(remembered.read_text())
    entries[key][3] = 99
    remembered.write_text(json.dumps(entries))
    assert store.counts()["channels"] == 99
    # damaged or missing, the remembered counts are rebuilt from the footers
    for damage in ("{not json", "[1, 2]"):
        remembered.write_text(damage)
        assert store.counts() == {**counts, "products": 1}
    remembered.unlink()
    assert store.counts()["orders"] == 200 and remembered.exists()


def test_a_store_counts_the_files_it_wrote_without_reading_their_footers(
    synced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy
    import datetime as dt

    from omsframe import store as store_module
    from omsframe.flatten import flatten_orders
    from omsframe.privacy import Privacy
    from tests.test_flatten import example_copy

    cache = copy_cache(synced, tmp_path / "c")
    store = store_module.Store(cache)
    before = store.counts()  # (every footer read once, remembered)
    order = copy.deepcopy(example_copy()[0])
    flat = flatten_orders([order], privacy=Privacy(key=store.pii_key()))
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.upsert_orders(flat, [order], policy="pseudonymize", observed_at=now)
    opened: list[str] = []
    real = pq.ParquetFile

    def watched(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", watched)
    counts = store.counts()
    assert opened == []  # every file written since was written by this store
    assert counts["orders"] == before["orders"] + 1
    assert counts["order_items"] == before["order_items"] + flat.tables["order_items"].num_rows
    assert store_module.Store(cache).counts() == counts  # (a new store: from .rows.json)
    (cache / ".rows.json").unlink()
    assert store_module.Store(cache).counts() == counts  # (and from the footers)
    assert opened  # (those were read)


def test_a_sync_s_customers_wait_in_pending_files_and_are_merged_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt
    import shutil

    from omsframe import store as store_module
    from omsframe.flatten import flatten_orders
    from omsframe.privacy import Privacy

    privacy = Privacy(key=b"k" * 32)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def batch(first: int, *customers: tuple[int, str]) -> Any:
        orders = [
            {
                "id": n,
                "date_placed": "2025-01-01T10:00:00Z",
                "modified_date": f"2025-0{month}-01T10:00:00Z",
                "customer": {"pk": pk, "first_name": f"name {month}"},
            }
            for n, (pk, month) in enumerate(customers, start=first)
        ]
        return flatten_orders(orders, privacy=privacy)

    store = store_module.Store(tmp_path)
    batches = [
        batch(1, (1, "1"), (20_000, "1")),
        batch(10, (1, "3"), (2, "2")),  # customer 1 again, newer
        batch(20, (1, "2"), (20_000, "4")),  # customer 1 again, older than the one pending
    ]
    monkeypatch.setattr(store_module, "PENDING_GROUP", 2)  # two merges: 2 batches, then 1
    for flat in batches:
        store.upsert_batch(flat, [], policy=privacy.mode, observed_at=now, pend_customers=True)
    assert store.read_table("customers").num_rows == 0  # nothing merged yet
    pending = sorted((tmp_path / "pending" / "customers").glob("*.parquet"))
    assert [p.name for p in pending] == [f"part-00000{n}.parquet" for n in range(3)]
    assert store.read_table("orders").num_rows == 6  # the orders are stored meanwhile
    kept = tmp_path / "kept.parquet"
    shutil.copy(pending[0], kept)
    store.merge_pending_customers(privacy.mode)
    assert not (tmp_path / "pending").exists()  # merged, and the folder gone

    def customers() -> dict[int, tuple[int, str]]:
        table = store.read_table("customers")
        return {
            row["customer_id"]: (row["last_order_modified"].month, row["first_name"])
            for row in table.to_pylist()
        }

    merged = customers()
    assert {k: v[0] for k, v in merged.items()} == {1: 3, 2: 2, 20_000: 4}  # latest wins
    direct = store_module.Store(tmp_path / "direct")  # the same batches merged as they come
    for flat in batches:
        direct.upsert_batch(flat, [], policy=privacy.mode, observed_at=now)
    assert (
        direct.read_table("customers")
        .sort_by("customer_id")
        .equals(store.read_table("customers").sort_by("customer_id"))
    )
    # a pending file merged again (a sync killed before deleting it) changes nothing
    (tmp_path / "pending" / "customers").mkdir(parents=True)
    shutil.copy(kept, tmp_path / "pending" / "customers" / "part-000000.parquet")
    store.merge_pending_customers(privacy.mode)
    assert customers() == merged


def test_a_sync_of_one_batch_writes_its_customers_at_once_a_longer_one_pends_them(
    oms: SimulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omsframe import store as store_module

    pended: list[int] = []
    pend = store_module.Store._pend

    def counting(self: store_module.Store, customers: Any) -> int:
        pended.append(customers.num_rows)
        return pend(self, customers)

    monkeypatch.setattr(store_module.Store, "_pend", counting)
    one, many = tmp_path / "one", tmp_path / "many"
    sync(oms.url, token=oms.token, cache=one, progress=False, events=False)  # 200 orders
    assert pended == []  # one batch: written with the batch's other files
    sync(oms.url, token=oms.token, cache=many, progress=False, events=False, batch_size=50)
    assert len(pended) == 4  # a batch each, merged at the end
    assert not (many / "pending").exists()

    def customers(cache: Path) -> list[tuple[Any, ...]]:
        table = load(cache, tables=["customers"], engine="pyarrow").customers  # (keys differ:
        columns = ["customer_id", "channel_id", "last_order_modified"]  # so do pseudonyms)
        return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True))

    assert customers(one) == customers(many)


def test_an_upsert_uses_the_files_read_ahead_unless_they_were_written_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy
    import datetime as dt

    from omsframe.flatten import flatten_orders
    from omsframe.privacy import Privacy
    from omsframe.store import FILE_GROUP, Store
    from tests.test_flatten import example_copy

    privacy = Privacy(key=b"k" * 32)
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    def upsert(store: Store, order_id: int, modified: str, state: str = "400") -> None:
        order = copy.deepcopy(example_copy()[0])
        order.update(id=order_id, modified_date=modified)
        order["state"]["enum_value"] = state
        flat = flatten_orders([order], privacy=privacy)
        store.upsert_orders(flat, [order], policy="pseudonymize", observed_at=now)

    upsert(Store(tmp_path), 1, "2023-05-17T13:45:55.000000Z")
    upsert(Store(tmp_path), 2, "2023-05-17T13:45:56.000000Z")
    reads: list[str] = []
    real = pq.ParquetFile

    def counted(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(Path(path).relative_to(tmp_path).parent.parent.as_posix())
        return real(path, *args, **kwargs)

    monkeypatch.setattr("omsframe.store.pq.ParquetFile", counted)
    store = Store(tmp_path)
    store.prepare()  # (where each order is)
    reads.clear()
    store.read_ahead([1, 999])  # 999 is not stored: nothing to read for it
    folders = [store.table_dir(name).relative_to(tmp_path).as_posix() for name in FILE_GROUP]
    assert sorted(reads) == sorted([*folders, "tables/state_history"])
    assert len(store._ahead) == len(FILE_GROUP) + 1
    reads.clear()
    upsert(store, 1, "2023-05-18T00:00:00.000000Z", state="550")
    assert reads == []  # every file the upsert needed was there
    assert store._ahead == {}
    # a file group written between the read-ahead and the upsert is read again
    store.read_ahead([2])
    upsert(Store(tmp_path), 2, "2023-05-19T00:00:00.000000Z", state="600")  # another writer
    upsert(store, 1, "2023-05-20T00:00:00.000000Z", state="650")
    orders = Store(tmp_path).read_table("orders").sort_by("order_id")
    assert orders.column("order_id").to_pylist() == [1, 2]
    assert [m.day for m in orders.column("modified_date").to_pylist()] == [20, 19]
    history = Store(tmp_path).read_table("state_history")
    assert sorted(history.column("to_state_code").to_pylist()) == [
        "400",
        "400",
        "550",
        "600",
        "650",
    ]


def test_a_read_ahead_stops_at_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import omsframe.store as store_module
    from omsframe.store import Store

    store = Store(tmp_path)
    layout = store._layout()
    layout.add(("2025-01", "part-00000"), [1])
    layout.add(("2025-02", "part-00000"), [2])
    read: list[Path] = []

    def fake(self: Store, path: Path, name: str) -> Any:
        read.append(path)
        return pq.read_table(tmp_path / "one.parquet")

    import pyarrow as pa

    pq.write_table(pa.table({"x": list(range(1000))}), tmp_path / "one.parquet")
    for month in ("2025-01", "2025-02"):
        for name in ("orders", "raw_orders"):
            path = store.file_path(name, month, "part-00000")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    monkeypatch.setattr(Store, "_read_file", fake)
    monkeypatch.setattr(store_module, "READ_AHEAD_BYTES", 1)  # full after one file group
    store.read_ahead([1, 2])
    assert {p.parent.name for p in read} == {"month=2025-01"}


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.integers(0, 40), max_size=120).map(sorted),
    drop=st.sets(st.integers(0, 40)),
    chunks=st.integers(1, 3),
)
def test_dropping_orders_from_a_file_keeps_every_other_row_in_order(
    ids: list[int], drop: set[int], chunks: int
) -> None:
    from omsframe import store
    from omsframe.store import _without

    column = pa.array(ids, pa.int64())
    table = pa.table({"order_id": column, "row": pa.array(range(len(ids)))})
    if chunks > 1 and len(ids) > 2:  # a table read back may come in chunks
        cut = len(ids) // chunks
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    wanted = [(i, r) for r, i in enumerate(ids) if i not in drop]
    for runs in (store.SLICE_RUNS, 0):  # as slices where few runs; filtered (a copy) if not
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(store, "SLICE_RUNS", runs)
            kept = _without(table, pa.array(sorted(drop), pa.int64()))
        assert kept.schema == table.schema
        pairs = zip(kept["order_id"].to_pylist(), kept["row"].to_pylist(), strict=True)
        assert list(pairs) == wanted


@settings(max_examples=200, deadline=None)
@given(
    stamps=st.lists(
        st.one_of(st.none(), st.integers(-62_135_596_800_000_000, 253_402_300_799_999_999)),
        max_size=60,
    ),
    chunks=st.integers(1, 3),
)
def test_months_are_those_arrow_formats(stamps: list[int | None], chunks: int) -> None:
    import pyarrow.compute as pc

    from omsframe.store import UNKNOWN_MONTH, _months

    column = pa.array(stamps, pa.timestamp("us", tz="UTC"))
    cut = len(stamps) // chunks
    table = pa.table({"d": pa.chunked_array([column.slice(0, cut), column.slice(cut)])})
    wanted = pc.fill_null(pc.strftime(column, format="%Y-%m"), UNKNOWN_MONTH)
    assert _months(table, "d").to_pylist() == wanted.to_pylist()


def _events(*specs: tuple[int, str, str]) -> tuple[Any, list[dict[str, Any]]]:
    """Flattened events (and their records) of ``(id, created day, modified stamp)``."""
    from omsframe.flatten import flatten_events

    records = [
        {
            "id": event_id,
            "created_date": f"2025-03-{day}T10:00:00Z",
            "modified_date": f"2025-03-20T10:00:0{stamp}Z",
            "request_payload": {"payload": {"id": 1, "note": f"copy {stamp}"}},
        }
        for event_id, day, stamp in specs
    ]
    return flatten_events(records), records


def test_events_go_to_files_by_id_range_and_stay_in_their_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omsframe import store as store_module
    from omsframe.store import Store

    monkeypatch.setattr(store_module, "EVENT_SPAN", 10)
    store = Store(tmp_path)
    # a month written by an earlier omsframe: one file, part.parquet
    flat, _ = _events((3, "01", "1"), (25, "02", "1"))
    store._write("events", "2025-03", flat.tables["events"], None, "part")
    store.upsert_events(*_events((3, "01", "1")), policy="keep")  # (its raw copy)
    (tmp_path / "raw/events/month=2025-03/part-00000.parquet").rename(
        tmp_path / "raw/events/month=2025-03/part.parquet"
    )
    # an update of a stored event, and new events in three id ranges
    flat, records = _events((3, "01", "2"), (4, "01", "2"), (12, "05", "2"), (31, "06", "2"))
    counts = store.upsert_events(flat, records, policy="keep")
    assert (counts.new, counts.updated) == (3, 1)

    def files(name: str) -> dict[str, list[int]]:
        found = {}
        for stem in store.stems(name, "2025-03"):
            table = store.read_file(name, "2025-03", stem)
            assert table is not None
            found[stem] = sorted(table["event_id"].to_pylist())
        return found

    assert files("events") == {
        "part": [3, 25],  # stored events stay in their file (3 updated there)
        "part-00000": [4],
        "part-00001": [12],
        "part-00003": [31],
    }
    assert files("raw_events") == {
        "part": [3],
        "part-00000": [4],
        "part-00001": [12],
        "part-00003": [31],
    }
    events = store.read_table("events")
    assert sorted(events["event_id"].to_pylist()) == [3, 4, 12, 25, 31]  # each once
    notes = {r["event_id"]: r["payload"] for r in events.to_pylist()}
    assert '"copy 2"' in notes[3]
    raw = store.read_table("raw_events").to_pylist()
    assert sorted(r["event_id"] for r in raw) == [3, 4, 12, 31]
    assert all('"copy 2"' in r["record"] for r in raw)
    # the same batch again changes nothing
    again = store.upsert_events(flat, records, policy="keep")
    assert (again.new, again.updated, again.partitions_written) == (0, 0, 0)
