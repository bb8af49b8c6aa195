"""Sync against the simulator over real HTTP: the cache equals the shop's truth."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from omsframe.errors import CacheError, ConfigError
from omsframe.export import export, rebuild
from omsframe.load import cache_info, load
from omsframe.lock import CacheLock
from omsframe.simulator.server import Clock, Dialect, Faults, serve
from omsframe.simulator.world import World, from_us
from omsframe.sync import sync

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=21, orders=600, start=dt.date(2025, 1, 1), end=dt.date(2025, 6, 1))


def truth(world: World, now_us: int, since_us: int | None = None) -> dict[str, Any]:
    """What the shop holds at ``now_us``, computed from the world's arrays.

    ``since_us``: only the orders placed, and the events made, from then on.
    """
    n = world.visible_orders(now_us)
    states, _ = world.order_status(now_us)
    currency = {0: "try", 1: "try", 2: "eur", 3: "usd"}
    net: dict[str, int] = defaultdict(int)
    orders = [i for i in range(n) if since_us is None or world.order_placed[i] >= since_us]
    items: list[int] = []
    for i in orders:
        lo, hi = int(world.item_ptr[i]), int(world.item_ptr[i + 1])
        cents = int((world.item_price[lo:hi] - world.item_discount[lo:hi]).sum())
        net[currency[int(world.order_channel[i])]] += cents
        items += world.item_id[lo:hi].tolist()
    events = world.visible_events(now_us)
    return {
        "order_ids": sorted(int(world.order_id[i]) for i in orders),
        "states": {int(world.order_id[i]): str(int(states[i])) for i in orders},
        "item_ids": sorted(items),
        "net": {c: Decimal(v) / 100 for c, v in net.items()},
        "event_ids": [
            e + 1 for e in range(events) if since_us is None or world.event_time[e] >= since_us
        ],
    }


def check_cache(root: Path, expected: dict[str, Any]) -> None:
    tables = load(root, engine="pyarrow")
    order_ids = tables.orders.column("order_id").to_pylist()
    assert sorted(order_ids) == expected["order_ids"]  # every order, none doubled
    states = dict(zip(order_ids, tables.orders.column("state_code").to_pylist(), strict=True))
    assert states == expected["states"]
    assert sorted(tables.order_items.column("item_id").to_pylist()) == expected["item_ids"]
    net: dict[str, Decimal] = defaultdict(Decimal)
    for currency, amount in zip(
        tables.order_items.column("price_currency").to_pylist(),
        tables.order_items.column("net_amount").to_pylist(),
        strict=True,
    ):
        net[currency] += amount
    assert dict(net) == expected["net"]  # money to the cent
    if expected.get("event_ids") is not None:
        event_ids = tables.events.column("event_id").to_pylist()
        assert sorted(event_ids) == expected["event_ids"]


def snapshot(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted, without the sync-time column of the state history."""
    tables = load(root, engine="pyarrow")
    result = {}
    for name, table in tables.items():
        if name == "state_history":
            table = table.drop_columns(["observed_at"])
        rows = [
            tuple(json.dumps(v, default=str) for v in row.values()) for row in table.to_pylist()
        ]
        result[name] = sorted(rows)
    return result


def interrupt_batch(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Make the ``number``-th batch stored raise KeyboardInterrupt, as Ctrl-C would."""
    from omsframe.store import Store

    real = Store.upsert_batch
    calls = {"n": 0}

    def interrupted(self: Store, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == number:
            raise KeyboardInterrupt  # as Ctrl-C or a kernel restart would
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "upsert_batch", interrupted)


def test_full_then_incremental_sync_follow_the_live_shop(world: World, tmp_path: Path) -> None:
    start = from_us(world.end_us) - 10 * DAY
    with serve(world, clock=Clock(start=start)) as oms:
        first = sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        assert first.plan == "full" and first.complete
        check_cache(tmp_path, truth(world, oms.now_us))
        before = truth(world, oms.now_us)
        oms.advance(5 * DAY)
        second = sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        assert second.plan == "incremental"
        assert second.orders_new > 0 and second.orders_updated > 0
        after = truth(world, oms.now_us)
        assert second.orders_seen < len(after["order_ids"]) / 2
        check_cache(tmp_path, after)
    history = load(tmp_path, tables=["state_history"], engine="pyarrow").state_history
    changes = {
        (r["order_id"], r["from_state_code"], r["to_state_code"])
        for r in history.to_pylist()
        if r["from_state_code"] is not None
    }
    expected_changes = {
        (order_id, state, after["states"][order_id])
        for order_id, state in before["states"].items()
        if after["states"][order_id] != state
    }
    assert changes == expected_changes
    info = cache_info(tmp_path)
    assert info.exists and not info.unfinished_sync
    assert info.rows["orders"] == len(after["order_ids"])
    assert info.source == first.source
    placed = load(tmp_path, tables=["orders"], engine="pyarrow").orders.column("date_placed")
    assert info.months == tuple(sorted({d.strftime("%Y-%m") for d in placed.to_pylist()}))
    assert len(info.months) > 2  # every month, not only the first and the last
    assert f"in months {info.months[0]} .. {info.months[-1]}" in str(info)


def file_orders(root: Path) -> dict[tuple[str, str], dict[str, set[int]]]:
    """The order ids in each file of the per-order tables, by (month folder, file name)."""
    import pyarrow.parquet as pq

    found: dict[tuple[str, str], dict[str, set[int]]] = defaultdict(dict)
    for table in ("orders", "order_items", "addresses", "raw_orders"):
        folder = root / ("raw/orders" if table == "raw_orders" else f"tables/{table}")
        for path in folder.glob("month=*/part*.parquet"):
            ids = pq.read_table(path, columns=["order_id"]).column(0).to_pylist()
            found[(path.parent.name, path.name)][table] = set(ids)
    return found


def test_files_are_bounded_aligned_and_only_those_of_changed_orders_are_rewritten(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omsframe import store

    monkeypatch.setattr(store, "FILE_ORDERS", 40)
    monkeypatch.setattr(store, "SMALL_FILE", 15)
    monkeypatch.setattr(store, "EVENT_SPAN", 50)
    start = from_us(world.end_us) - 10 * DAY
    with serve(world, clock=Clock(start=start)) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, batch_size=70)
        check_cache(tmp_path, truth(world, oms.now_us))
        files = file_orders(tmp_path)
        assert len(files) > 10  # several files a month
        for tables in files.values():
            assert len(tables.get("orders", ())) <= 40  # bounded
            assert len(tables.get("raw_orders", ())) <= 40
            # the same file name holds the same orders in every per-order table
            for name in ("order_items", "addresses"):
                assert tables.get(name, set()) <= tables.get("orders", set())
        assert_raw_layer_current(tmp_path)
        events = event_files(tmp_path)
        assert len(events) > 10  # webhook events too: files by ranges of 50 ids, in each month
        events_before = {
            p: p.stat().st_mtime_ns for p in (tmp_path / "tables/events").rglob("*.parquet")
        }
        orders = (tmp_path / "tables/orders").rglob("*.parquet")
        stamps = {path: path.stat().st_mtime_ns for path in orders}
        raw_before = {p: p.stat().st_mtime_ns for p in (tmp_path / "raw/orders").rglob("*.parquet")}
        before = truth(world, oms.now_us)
        oms.advance(2 * DAY)
        second = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, batch_size=70)
        after = truth(world, oms.now_us)
        check_cache(tmp_path, after)
    changed = {i for i, state in before["states"].items() if after["states"][i] != state}
    assert second.orders_updated > 0 and changed
    # the new events went to their ranges' files: the files of earlier ranges stay as they were
    assert second.events_new > 0 and event_files(tmp_path)
    first_new = max(before["event_ids"]) + 1
    for path, stamp in events_before.items():
        if max(pq_ids(path, "event_id")) < first_new - 50:
            assert path.stat().st_mtime_ns == stamp, path
    rewritten = {p for p, stamp in stamps.items() if p.stat().st_mtime_ns != stamp}
    for path in stamps:
        ids = set(pq_ids(path))
        if path in rewritten:
            assert ids & changed or len(ids) < 15  # changed orders, or new ones joined it
        else:
            assert not ids & changed
    assert len(rewritten) < len(stamps) / 2
    # the raw layer is added to, never rewritten: its new files hold changed and new orders only
    assert_raw_layer_current(tmp_path)
    raw_after = set((tmp_path / "raw/orders").rglob("*.parquet"))
    assert all(p in raw_after and p.stat().st_mtime_ns == t for p, t in raw_before.items())
    added = {i for path in raw_after - set(raw_before) for i in pq_ids(path)}
    assert added and added <= changed | (set(after["order_ids"]) - set(before["order_ids"]))


def assert_raw_layer_current(root: Path) -> None:
    """Every stored order's latest copy in the raw layer is the stored one (its stamp, month)."""
    from omsframe.store import Store

    def stamps(name: str) -> list[tuple[int, dt.datetime, str]]:
        table = Store(root).read_table(name)
        columns = [table.column(c).to_pylist() for c in ("order_id", "modified_date")]
        months = [d.strftime("%Y-%m") for d in table.column("date_placed").to_pylist()]
        return list(zip(*columns, months, strict=True))

    latest: dict[int, tuple[dt.datetime, str]] = {}
    for order_id, stamp, month in stamps("raw_orders"):
        if order_id not in latest or stamp >= latest[order_id][0]:
            latest[order_id] = (stamp, month)
    assert latest == {order_id: (stamp, month) for order_id, stamp, month in stamps("orders")}


def pq_ids(path: Path, column: str = "order_id") -> list[int]:
    import pyarrow.parquet as pq

    ids: list[int] = pq.read_table(path, columns=[column]).column(0).to_pylist()
    return ids


def event_files(root: Path) -> dict[str, list[int]]:
    """Each events file's ids (``month=.../part-00003``), checked against its raw twin.

    Every file holds the ids of one range of ``EVENT_SPAN`` (its number), and the raw layer's
    file of the same name holds the same events.
    """
    from omsframe import store

    found = {}
    for path in sorted((root / "tables/events").rglob("*.parquet")):
        ids = pq_ids(path, "event_id")
        number = int(path.stem.removeprefix("part-"))
        assert {i // store.EVENT_SPAN for i in ids} == {number}, path
        twin = root / "raw/events" / path.parent.name / path.name
        assert sorted(pq_ids(twin, "event_id")) == sorted(ids)
        found[f"{path.parent.name}/{path.stem}"] = ids
    return found


def test_sync_is_exact_under_faults(world: World, tmp_path: Path) -> None:
    faults = Faults(
        seed=4, rate_5xx=0.1, rate_429=0.05, rate_truncated=0.01, retry_after_seconds=0.01
    )
    with serve(world, faults=faults) as oms:
        report = sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        assert report.retries > 0
        check_cache(tmp_path, truth(world, oms.now_us))


def test_a_server_that_ignores_filters_and_ordering_still_ends_exact(
    world: World, tmp_path: Path
) -> None:
    dialect = Dialect(honour_filters=False, honour_ordering=False, default_ordering="-id")
    with serve(world, dialect=dialect, clock=Clock(start=from_us(world.end_us) - 10 * DAY)) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        oms.advance(4 * DAY)
        report = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        assert report.plan == "full scan"
        assert any("ignores the modified_date filter" in note for note in report.notes)
        assert report.orders_unchanged > 0
        expected = truth(world, oms.now_us)
        expected["event_ids"] = None
        check_cache(tmp_path, expected)


@pytest.mark.parametrize("honoured", [True, False], ids=["server-filters", "events-cut-here"])
def test_a_window_holds_the_orders_placed_since_its_start_through_full_and_incremental_syncs(
    world: World, tmp_path: Path, honoured: bool
) -> None:
    start = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)
    since_us = int(start.timestamp() * 1_000_000)
    dialect = Dialect() if honoured else Dialect(ignored_filters=frozenset({"created_date__gte"}))
    with serve(world, dialect=dialect, clock=Clock(start=from_us(world.end_us) - 10 * DAY)) as oms:
        first = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-04")
        assert first.plan == "full"
        check_cache(tmp_path, truth(world, oms.now_us, since_us))
        everything = len(truth(world, oms.now_us)["order_ids"])
        # asked of the server: only the window's orders are read
        assert first.orders_seen == len(truth(world, oms.now_us, since_us)["order_ids"])
        assert first.orders_seen < everything
        if not honoured:  # the events read whole, the older ones left out here, and said so
            assert first.events_seen == len(truth(world, oms.now_us)["event_ids"])
            assert any("ignores created_date__gte" in note for note in first.notes)
            assert any("left out" in note for note in first.notes)
        oms.advance(4 * DAY)
        # a later sync keeps the window, given or not
        again = sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        assert again.plan == "incremental" and again.orders_new > 0
        check_cache(tmp_path, truth(world, oms.now_us, since_us))
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since=start)
        before = snapshot(tmp_path)
        # a narrower window is refused before anything is read or written
        with pytest.raises(ConfigError, match="placed since 2025-04-01T00:00:00Z"):
            sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-05-01")
        assert snapshot(tmp_path) == before
    tables = load(tmp_path, engine="pyarrow")
    orders, items = tables.orders, tables.order_items

    def ids(table: Any, column: str) -> set[Any]:
        return set(table.column(column).to_pylist())

    # the entities are those the window's orders brought, whoever filtered
    assert ids(tables.customers, "customer_id") == ids(orders, "customer_id")
    assert ids(tables.products, "product_id") == ids(items, "product_id")
    assert ids(tables.channels, "channel_id") == ids(orders, "channel_id") | ids(
        items, "channel_id"
    )
    # (states stay once seen: an order's earlier state is in the catalogue too)
    assert ids(tables.states, "code") >= ids(orders, "state_code") | ids(items, "state_code")
    # money analyses say what a window lacks: the cache's, not one asked of load
    assert tables.window[0] == tables.held_since == start
    from omsframe.analysis import WindowWarning, ledger

    with pytest.warns(WindowWarning, match="synced with since"):
        ledger(tables)
    import warnings

    from omsframe.report import write_report

    with warnings.catch_warnings():
        warnings.simplefilter("error", WindowWarning)  # the report says it itself, not twice
        page = write_report(tmp_path).read_text()
    assert "only the orders placed since 2025-04-01T00:00:00Z" in page
    info = cache_info(tmp_path)
    assert info.since == "2025-04-01T00:00:00Z" and "placed since 2025-04-01" in str(info)
    assert info.months[0] == "2025-04"


def test_an_earlier_since_widens_the_window_keeping_the_state_history(
    world: World, tmp_path: Path
) -> None:
    march = int(dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    with serve(world, clock=Clock(start=from_us(world.end_us) - 10 * DAY)) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-04")
        oms.advance(2 * DAY)
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        history = load(tmp_path, tables=["state_history"], engine="pyarrow").state_history
        before = sorted(map(str, history.drop_columns(["observed_at"]).to_pylist()))
        oms.advance(2 * DAY)
        wider = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-03")
        assert wider.plan == "full" and wider.orders_new > 0
        check_cache(tmp_path, truth(world, oms.now_us, march))
        assert cache_info(tmp_path).since == "2025-03-01T00:00:00Z"
        # the changes the earlier syncs saw are all still there, none doubled
        history = load(tmp_path, tables=["state_history"], engine="pyarrow").state_history
        after = sorted(map(str, history.drop_columns(["observed_at"]).to_pylist()))
        assert set(before) <= set(after) and len(after) == len(set(after))
        oms.advance(DAY)
        later = sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        assert later.plan == "incremental"
        check_cache(tmp_path, truth(world, oms.now_us, march))


@pytest.mark.parametrize("stop", ["orders", "events"])
def test_a_widening_cut_short_is_read_whole_by_the_next_syncs(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: str
) -> None:
    march = int(dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    with serve(world, clock=Clock(start=from_us(world.end_us) - 10 * DAY)) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-04")
        oms.advance(DAY)
        if stop == "orders":  # killed in its first batch of orders
            interrupt_batch(monkeypatch, 1)
            with pytest.raises(KeyboardInterrupt):
                sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-03")
            monkeypatch.undo()
        else:  # widened without the events, which a later sync reads
            sync(
                oms.url,
                token=oms.token,
                cache=tmp_path,
                progress=False,
                since="2025-03",
                events=False,
            )
        oms.advance(DAY)
        again = sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        check_cache(tmp_path, truth(world, oms.now_us, march))
        assert "widening" not in json.loads((tmp_path / "manifest.json").read_text())
        oms.advance(DAY)
        assert sync(oms.url, token=oms.token, cache=tmp_path, progress=False).plan == "incremental"
        check_cache(tmp_path, truth(world, oms.now_us, march))
    assert again.plan == ("full" if stop == "orders" else "incremental")  # (its orders' plan)


def test_a_server_that_ignores_the_window_s_order_filter_is_refused_it(
    world: World, tmp_path: Path
) -> None:
    ignores = Dialect(ignored_filters=frozenset({"date_placed__gte"}))
    with serve(world, dialect=ignores) as oms:
        with pytest.raises(ConfigError, match="ignores the date_placed__gte filter"):
            sync(oms.url, token=oms.token, cache=tmp_path / "new", progress=False, since="2025-04")
        assert not (tmp_path / "new").exists()  # nothing made
    with serve(world) as oms:  # a cache of a window from a server that honours it
        sync(oms.url, token=oms.token, cache=tmp_path / "c", progress=False, since="2025-04")
        before = snapshot(tmp_path / "c")
    with (  # then widened on one that does not
        serve(world, dialect=ignores) as oms,
        pytest.raises(ConfigError, match="ignores the date_placed__gte filter"),
    ):
        sync(oms.url, token=oms.token, cache=tmp_path / "c", progress=False, since="2025-03")
    assert snapshot(tmp_path / "c") == before
    assert cache_info(tmp_path / "c").since == "2025-04-01T00:00:00Z"


def test_a_window_is_not_in_the_future_and_a_damaged_one_is_named(
    world: World, tmp_path: Path
) -> None:
    with serve(world) as oms:
        with pytest.raises(ConfigError, match="in the future"):
            sync(oms.url, token=oms.token, cache=tmp_path / "x", progress=False, since="2999-01")
        assert not (tmp_path / "x").exists()
        sync(
            oms.url,
            token=oms.token,
            cache=tmp_path,
            progress=False,
            since="2025-04-01",
            events=False,
        )
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        manifest["since"] = "2025-04-01"  # the same moment, written otherwise: still the same
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-04")
        manifest["since"] = "soon"
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(CacheError, match="'since' is not a moment"):
            sync(oms.url, token=oms.token, cache=tmp_path, progress=False)


def test_the_high_water_mark_of_a_window_counts_the_window(world: World) -> None:
    from omsframe.client import Client
    from omsframe.sync import _high_water

    start = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)
    with serve(world) as oms, Client(oms.url, token=oms.token) as client:
        probe = client.probe("orders")
        _, everything = _high_water(client, "orders", probe, {})
        _, window = _high_water(client, "orders", probe, {"date_placed__gte": start})
        since_us = int(start.timestamp() * 1_000_000)
        assert window == len(truth(world, oms.now_us, since_us)["order_ids"]) < (everything or 0)


def test_a_cache_of_every_order_refuses_a_window(world: World, tmp_path: Path) -> None:
    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        with pytest.raises(ConfigError, match="holds every order"):
            sync(oms.url, token=oms.token, cache=tmp_path, progress=False, since="2025-02")
        with pytest.raises(ConfigError, match="since"):
            sync(oms.url, token=oms.token, cache=tmp_path / "new", progress=False, since="soon")
    assert cache_info(tmp_path).since is None
    assert not (tmp_path / "new").exists()


def test_a_cache_of_layout_1_is_extended_and_marked_2_so_older_versions_refuse_it(
    world: World, tmp_path: Path
) -> None:
    # layout 2: webhook events in files by id range (an omsframe of layout 1 writes a month's
    # events to part.parquet alone and would leave stale copies beside it)
    start = from_us(world.end_us) - 10 * DAY
    manifest = tmp_path / "manifest.json"
    with serve(world, clock=Clock(start=start)) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        assert json.loads(manifest.read_text())["format"] == 2
        older = json.loads(manifest.read_text()) | {"format": 1}
        manifest.write_text(json.dumps(older))
        cache_info(tmp_path)  # read as it is
        assert json.loads(manifest.read_text())["format"] == 1
        oms.advance(2 * DAY)
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False)
        check_cache(tmp_path, truth(world, oms.now_us))
    assert json.loads(manifest.read_text())["format"] == 2
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"format": 3}))
    with pytest.raises(CacheError, match="not a manifest this omsframe version can read"):
        load(tmp_path)


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken(
    world: World, tmp_path: Path
) -> None:
    with serve(world) as oms:
        with CacheLock(tmp_path), pytest.raises(CacheError, match="locked by another sync"):
            sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from omsframe.lock import CacheLock; "
                "CacheLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(CacheError, match=f"pid {holder.pid}"):
            sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False, wait=0.3)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        report = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        assert report.orders_new == len(truth(world, oms.now_us)["order_ids"])


def test_a_cache_refuses_another_source_and_another_pii_policy(
    world: World, tmp_path: Path
) -> None:
    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False, pii="drop")
        with pytest.raises(ConfigError, match="uses PII policy 'drop'"):
            sync(oms.url, token=oms.token, cache=tmp_path, progress=False, pii="keep")
    with serve(world) as other:  # the same simulator on another port: the same source
        sync(other.url, token=other.token, cache=tmp_path, progress=False, events=False)
        elsewhere = other.url.replace("127.0.0.1", "localhost")  # another host: refused
        with pytest.raises(CacheError, match="holds data from"):
            sync(elsewhere, token=other.token, cache=tmp_path, progress=False)


def same_key_cache(clean: Path, folder: Path) -> Path:
    """An empty cache with the pseudonymization key of ``clean``, so the two can be compared."""
    folder.mkdir()
    (folder / ".pii-key").write_bytes((clean / ".pii-key").read_bytes())
    return folder


def _checkpoint(root: Path) -> str:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return ""
    return json.dumps([manifest.get("checkpoint"), manifest.get("cursors")])


KILL_SCRIPT = """
import sys
from omsframe.sync import sync
sync(sys.argv[1], token=sys.argv[2], cache=sys.argv[3], progress=False, batch_size=40)
"""


def test_a_sync_killed_at_random_moments_resumes_to_the_same_cache(
    world: World, tmp_path: Path
) -> None:
    import random

    clean = tmp_path / "clean"
    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=clean, progress=False, batch_size=40)
        killed = same_key_cache(clean, tmp_path / "killed")
        rng = random.Random(7)
        kills = 0
        for _ in range(20):
            process = subprocess.Popen(
                [sys.executable, "-c", KILL_SCRIPT, oms.url, oms.token, str(killed)],
                stderr=subprocess.PIPE,
            )
            # wait for the sync to store a batch, then kill it at a random moment after it
            seen = _checkpoint(killed)
            deadline = time.monotonic() + 60
            while _checkpoint(killed) == seen and process.poll() is None:
                assert time.monotonic() < deadline, "the sync made no progress"
                time.sleep(0.01)
            time.sleep(rng.random() * 0.3)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait()
            if kills >= 12:
                break
        assert kills >= 10, "the sync finished before it could be killed 10 times"
        final = sync(oms.url, token=oms.token, cache=killed, progress=False, batch_size=40)
        assert final.complete
    assert snapshot(killed) == snapshot(clean)
    assert_raw_layer_current(killed)
    leftovers = [p for p in killed.rglob("*.tmp")]
    assert leftovers == [] or all(p.name.startswith(".") for p in leftovers)


def test_the_cache_reads_in_duckdb_and_polars_without_omsframe(
    world: World, tmp_path: Path
) -> None:
    import duckdb
    import polars as pl

    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        expected = truth(world, oms.now_us)
    glob = str(tmp_path / "tables" / "order_items" / "*" / "*.parquet")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    (row,) = con.execute(
        f"SELECT count(*), sum(net_amount) FROM read_parquet('{glob}', hive_partitioning=true)"
    ).fetchall()
    assert row[0] == len(expected["item_ids"])
    assert Decimal(row[1]) == sum(expected["net"].values())
    frame = pl.read_parquet(glob, hive_partitioning=True)
    assert frame.height == len(expected["item_ids"])
    assert "month" in frame.columns
    # customers are in files by id range: the folder reads as one table, each customer once
    customers = pl.read_parquet(str(tmp_path / "tables" / "customers" / "*.parquet"))
    assert customers.height == customers["customer_id"].n_unique() > 100
    assert customers.height == load(tmp_path, engine="pyarrow").customers.num_rows
    months = con.execute(
        f"SELECT DISTINCT strftime(date_placed, '%Y-%m'), month FROM read_parquet("
        f"'{tmp_path}/tables/orders/*/*.parquet', hive_partitioning=true) ORDER BY 1"
    ).fetchall()
    # every row sits in the partition of its month, and DuckDB sees the partition column
    assert all(str(placed) == str(month) for placed, month in months)
    assert len(months) == len({str(p) for p, _ in months}) > 3


def test_load_reads_only_the_months_asked_for(world: World, tmp_path: Path) -> None:
    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
    since, until = dt.datetime(2025, 3, 1, tzinfo=dt.UTC), dt.datetime(2025, 4, 15, tzinfo=dt.UTC)
    tables = load(
        tmp_path, since="2025-03-01", until="2025-04-15", tables=["orders", "order_items"]
    )
    placed = [from_us(int(t)) for t in world.order_placed]
    expected = sorted(
        int(i) for i, p in zip(world.order_id, placed, strict=True) if since <= p < until
    )
    assert sorted(tables.orders["order_id"].tolist()) == expected
    assert set(tables.order_items["order_id"].tolist()) <= set(expected)
    assert str(tables.order_items["net_amount"].dtype).startswith("decimal128")
    assert list(tables) == ["orders", "order_items"]
    with pytest.raises(ConfigError, match="unknown table"):
        load(tmp_path, tables=["nope"])


def test_export_and_rebuild(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=cache, progress=False)
    before = snapshot(cache)
    files = export(cache, tmp_path / "csv", format="csv") + export(cache, tmp_path / "pq")
    assert {f.name for f in files} >= {"orders.csv", "order_items.parquet", "events.csv"}
    key = (cache / ".pii-key").read_bytes()
    for file in files:
        data = file.read_bytes()
        assert key not in data and key.hex().encode() not in data
        for secret in world.secrets():
            assert secret.encode() not in data, (file, secret)
    items_csv = (tmp_path / "csv" / "order_items.csv").read_text()
    assert '"net_amount"' in items_csv.splitlines()[0]
    # a damaged file of customers a killed sync left pending (a sync would stop on it)
    (cache / "pending" / "customers").mkdir(parents=True)
    (cache / "pending" / "customers" / "part-000000.parquet").write_bytes(b"PAR1 damaged")
    rebuilt = rebuild(cache)
    assert rebuilt["orders"] == len(before["orders"])
    assert snapshot(cache) == before
    assert not (cache / "tables.rebuild").exists()
    assert not (cache / "pending").exists()  # the rebuilt customers hold them


def test_the_raw_layer_grows_by_new_files_is_compacted_and_rebuilds_the_tables(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omsframe import store
    from omsframe.store import Store

    monkeypatch.setattr(store, "RAW_SLACK", 2)
    monkeypatch.setattr(store, "FILE_ORDERS", 40)  # compacted months come in several files
    monkeypatch.setattr(store, "SMALL_FILE", 15)
    cache = tmp_path / "cache"
    with serve(world, clock=Clock(start=from_us(world.end_us) - 20 * DAY)) as oms:
        sync(oms.url, token=oms.token, cache=cache, progress=False)
        raw = Store(cache)
        piled = 0
        for _ in range(6):  # each incremental adds a file to the months of the orders it brings
            oms.advance(2 * DAY)
            sync(oms.url, token=oms.token, cache=cache, progress=False)
            for month in raw.months("raw_orders"):
                files = len(raw.stems("raw_orders", month))
                assert files <= len(raw.stems("orders", month)) + 2  # compacted beyond
                piled = max(piled, files - len(raw.stems("orders", month)))
            assert_raw_layer_current(cache)
            paths = (cache / "raw/orders").glob("month=*/part-*.parquet")
            assert max(len(pq_ids(path)) for path in paths) <= 40  # bounded, compacted or not
        check_cache(cache, truth(world, oms.now_us))
    assert piled == 2  # (the months did pile up to the slack: compaction was needed)
    # a compacted month's files are new ones (numbered after the old, which are gone)
    assert any(raw.stems("raw_orders", m)[0] != "part-00000" for m in raw.months("raw_orders"))
    ids = raw.read_table("raw_orders").column("order_id").to_pylist()
    assert len(ids) < 1.5 * len(set(ids))  # compacted months hold one copy an order
    before = snapshot(cache)
    rebuild(cache)
    assert snapshot(cache) == before


def test_report_renders_for_terminals_and_notebooks(world: World, tmp_path: Path) -> None:
    with serve(world) as oms:
        report = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
    text = str(report)
    assert "plan" in text and "full" in text and f"{report.orders_new:,} new" in text
    assert report._repr_html_().startswith("<table>")
    assert json.loads(json.dumps(report.to_dict()))["orders_new"] == report.orders_new


def test_an_interrupted_sync_resumes_by_id_where_the_server_ignores_ordering(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dialect = Dialect(honour_ordering=False, default_ordering="-modified_date")
    with serve(world, dialect=dialect) as oms:
        interrupt_batch(monkeypatch, 3)
        with pytest.raises(KeyboardInterrupt):
            sync(oms.url, token=oms.token, cache=tmp_path, progress=False, batch_size=100)
        monkeypatch.undo()
        assert cache_info(tmp_path).unfinished_sync
        report = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, batch_size=100)
        assert report.resumed
        assert any("id windows" in note for note in report.notes)
        total = len(truth(world, oms.now_us)["order_ids"])
        assert report.orders_seen <= total - 200  # the two stored batches were not read again
        check_cache(tmp_path, truth(world, oms.now_us))


def test_a_window_s_interrupted_first_sync_resumes_within_the_window(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    since_us = int(dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    with serve(world) as oms:
        interrupt_batch(monkeypatch, 2)
        with pytest.raises(KeyboardInterrupt):
            sync(
                oms.url,
                token=oms.token,
                cache=tmp_path,
                progress=False,
                batch_size=100,
                since="2025-03-01",
                events=False,
            )
        monkeypatch.undo()
        report = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, batch_size=100)
        assert report.resumed and report.plan == "full"
        expected = truth(world, oms.now_us, since_us)
        assert report.orders_seen <= len(expected["order_ids"]) - 100  # the window, resumed
        check_cache(tmp_path, {**expected, "event_ids": None})
    assert cache_info(tmp_path).since == "2025-03-01T00:00:00Z"


def test_a_stored_batch_is_let_go_before_the_next_one_is_awaited(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two whole batches alive while the next one was read was the peak memory of a sync."""
    import weakref

    sync_module = sys.modules["omsframe.sync"]  # (the package re-exports the function)
    real = sync_module._batches
    alive: list[int] = []

    def watched(records: Any, size: int, meanwhile: Any = None, arriving: Any = None) -> Any:
        pages: list[Any] = []
        for batch in real(records, size, meanwhile, arriving):
            # the next batch is here: nothing may hold the pages of the one before any more
            # (but those it shares with this one: pages flattened together, see flatten_pages)
            shared = {id(stub.page) for stub in batch}
            alive.append(sum(id(p) not in shared for p in (page() for page in pages) if p))
            pages = [weakref.ref(stub.page) for stub in batch]
            yield batch
            del batch

    monkeypatch.setattr(sync_module, "_batches", watched)
    with serve(world) as oms:
        report = sync(
            oms.url,
            token=oms.token,
            cache=tmp_path,
            progress=False,
            events=False,
            batch_size=200,  # (two whole pages)
            workers=0,
        )
    assert report.orders_new == 600 and len(alive) == 3
    assert alive == [0] * len(alive)


def test_the_batcher_runs_work_meanwhile_in_the_caller_s_thread_while_the_reader_reads() -> None:
    import threading

    sync_module = sys.modules["omsframe.sync"]
    started = threading.Event()
    done: list[str] = []

    def records() -> Any:
        started.set()  # the reader is reading...
        yield from ({"id": i} for i in range(5))

    def meanwhile() -> None:
        assert started.wait(5)  # ...while this runs, in the caller's thread
        done.append(threading.current_thread().name)

    batches = list(sync_module._batches(records(), 2, meanwhile))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert done == [threading.current_thread().name]


def test_the_batcher_hands_the_records_read_before_the_first_batch_to_the_caller() -> None:
    import threading

    sync_module = sys.modules["omsframe.sync"]
    handed: list[Any] = []
    threads: set[str] = set()
    go_on = threading.Event()

    def records() -> Any:
        yield from ({"id": i} for i in range(3))
        yield "not a record"
        assert go_on.wait(5)  # the first batch waits for more pages...
        yield from ({"id": i} for i in range(3, 6))

    def arriving(came: list[dict[str, Any]]) -> None:  # ...meanwhile the caller is told
        handed.extend(r["id"] for r in came)
        threads.add(threading.current_thread().name)
        go_on.set()

    batches = list(sync_module._batches(records(), 5, None, arriving))
    assert [len(b) for b in batches] == [5, 2]
    assert handed == [0, 1, 2] and threads == {threading.current_thread().name}
    # a read of nothing ends as one without the caller being told anything
    assert list(sync_module._batches(iter([]), 5, None, arriving)) == []


def test_an_incremental_reads_ahead_the_files_of_orders_changed_since_the_last_sync() -> None:
    sync_module = sys.modules["omsframe.sync"]
    asked: list[list[int]] = []

    class Store:
        def read_ahead(self, ids: list[int]) -> None:
            asked.append(ids)

    arriving = sync_module._reading_ahead(Store(), "2025-01-01T10:00:00Z")
    arriving(
        [
            {"id": 1, "modified_date": "2025-01-01T09:45:00Z"},  # in the look-back window
            {"id": 2, "modified_date": "2025-01-01T10:00:00.500000Z"},  # after the cursor
            {"id": 3, "modified_date": "2025-01-01T12:00:00+03:00"},  # before it, in UTC
            {"id": 4, "modified_date": "2025-01-01T11:00:00+00:00"},
            {"id": "x", "modified_date": "2025-01-02T00:00:00Z"},  # not an id
            {"id": 5},  # no stamp
        ]
    )
    arriving([{"id": 6, "modified_date": "2025-01-01T09:00:00Z"}])  # nothing to read
    assert asked == [[2, 4]]


def test_another_shop_on_another_loopback_port_is_refused(tmp_path: Path) -> None:
    from omsframe.simulator.server import simulate

    with simulate(orders=120, seed=0) as first:
        sync(first.url, token=first.token, cache=tmp_path, progress=False, events=False)
        port = urlsplit(first.url).port
    before = load(tmp_path, engine="pyarrow").orders
    with simulate(orders=120, seed=3) as other, pytest.raises(CacheError, match="another OMS"):
        sync(other.url, token=other.token, cache=tmp_path, progress=False, events=False)
    assert load(tmp_path, engine="pyarrow").orders.equals(before)
    with simulate(orders=120, seed=0) as same:  # the same shop on another port: synced
        assert urlsplit(same.url).port != port
        report = sync(same.url, token=same.token, cache=tmp_path, progress=False, events=False)
    assert report.plan == "incremental"
    # a server that ignores the number filter: the stored order is read by its id instead
    from omsframe.simulator.query import Dialect

    deaf = Dialect(honour_filters=False)
    with (
        simulate(orders=120, seed=3, dialect=deaf) as other,
        pytest.raises(CacheError, match="another OMS"),
    ):
        sync(other.url, token=other.token, cache=tmp_path, progress=False, events=False)
    assert load(tmp_path, engine="pyarrow").orders.equals(before)
    with simulate(orders=120, seed=0, dialect=deaf) as same:
        report = sync(same.url, token=same.token, cache=tmp_path, progress=False, events=False)
    assert report.plan != "full" and report.orders_new == 0


def test_a_record_dated_in_the_future_does_not_carry_the_cursor_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from omsframe.simulator.server import simulate
    from omsframe.sync_report import SyncReport

    module = importlib.import_module("omsframe.sync")

    report = SyncReport(cache="c", source="s")
    now = module._now()
    held = module._not_ahead("2031-01-01T00:00:00Z", "orders", report)
    assert held is not None and abs(dt.datetime.fromisoformat(held) - now) < dt.timedelta(minutes=1)
    assert "dated 2031-01-01T00:00:00Z, in the future" in report.notes[0]
    assert module._not_ahead("2025-01-01T00:00:00Z", "orders", report) == "2025-01-01T00:00:00Z"
    # a shop whose every record is ahead of this machine's clock: the next sync reads them all
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    monkeypatch.setattr(module, "_now", lambda: past)
    with simulate(orders=60) as oms:
        first = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        again = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
    assert any("in the future" in note for note in first.notes)
    assert again.orders_seen == first.orders_seen  # from 2020 on: nothing skipped


def test_a_full_sync_writes_anew_what_changed_without_a_new_modified_date(
    world: World, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        truth_orders = load(tmp_path, engine="pyarrow").orders.sort_by("order_id")
        # content changed under the same modified_date (a data fix on the OMS, or a damaged
        # copy here): shown here as a stored file that says otherwise than the server
        path = sorted((tmp_path / "tables" / "orders").rglob("part-*.parquet"))[0]
        table = pq.read_table(path)
        city = table.schema.get_field_index("shipping_city")
        changed = table.set_column(city, "shipping_city", pa.nulls(len(table), pa.string()))
        pq.write_table(changed, path)
        again = sync(oms.url, token=oms.token, cache=tmp_path, progress=False, events=False)
        assert again.orders_updated == 0  # the same stamps: an incremental keeps what it has
        assert not load(tmp_path, engine="pyarrow").orders.sort_by("order_id").equals(truth_orders)
        full = sync(
            oms.url, token=oms.token, cache=tmp_path, progress=False, events=False, full=True
        )
    assert full.plan == "full"
    assert load(tmp_path, engine="pyarrow").orders.sort_by("order_id").equals(truth_orders)
