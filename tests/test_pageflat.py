"""Order pages flattened on worker processes: same cache as in one process, robust to failures."""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from omsframe.pageflat import PageDecoder, Stub, combine
from omsframe.privacy import Privacy
from omsframe.simulator.server import Clock, serve
from omsframe.simulator.world import World, from_us
from omsframe.sync import sync
from tests.test_sync import check_cache, snapshot, truth


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=33, orders=700, start=dt.date(2025, 1, 1), end=dt.date(2025, 6, 1))


def page(records: Sequence[object], count: int | None = None) -> bytes:
    body = {"count": len(records) if count is None else count, "next": None, "previous": None}
    return orjson.dumps({**body, "results": records})


@pytest.mark.parametrize("compress", ["1", ""])
def test_sync_on_workers_equals_sync_in_one_process(
    world: World, tmp_path: Path, compress: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gzip bodies go to the workers as they came; by default (""), from this loopback host,
    # the pages for the workers come uncompressed
    monkeypatch.setenv("OMSFRAME_COMPRESS", compress)
    start = from_us(world.end_us) - 20 * dt.timedelta(days=1)
    here, there = tmp_path / "here", tmp_path / "there"
    with serve(world, clock=Clock(start=start)) as oms:
        first, again = {}, {}
        for cache, workers in ((here, 0), (there, 2)):
            # pii="keep": each cache has its own key, so pseudonyms would differ
            first[workers] = sync(
                oms.url,
                token=oms.token,
                cache=cache,
                progress=False,
                workers=workers,
                batch_size=250,
                pii="keep",
            )
        check_cache(there, truth(world, oms.now_us))
        oms.advance(10 * dt.timedelta(days=1))
        for cache, workers in ((here, 0), (there, 2)):
            again[workers] = sync(
                oms.url, token=oms.token, cache=cache, progress=False, workers=workers
            )
        check_cache(there, truth(world, oms.now_us))
    assert (first[2].orders_new, first[2].items) == (first[0].orders_new, first[0].items)
    assert again[2].orders_updated == again[0].orders_updated > 0
    assert snapshot(there) == snapshot(here)


def test_workers_take_the_pages_and_give_the_same_tables() -> None:
    records = [
        {"id": 1, "modified_date": "2025-01-01T00:00:00Z", "orderitem_set": []},
        {"id": 2, "channel": {"id": 5, "configuration": {"password": "hunter2"}}},
    ]
    privacy = Privacy(mode="pseudonymize", key=b"k" * 32)
    with PageDecoder(privacy, workers=2) as decode:
        decode(page(records))  # starts the workers in the background
        for _ in range(1200):  # up to a minute on a busy machine
            if decode._workers:
                break
            import time

            time.sleep(0.05)
        assert len(decode._workers) == 2
        body = decode(page(records))
        assert decode.pages_on_workers == 1
    with PageDecoder(privacy, workers=0) as decode:
        local = decode(page(records))
    flat, raw = combine(body["results"])
    flat_here, raw_here = combine(local["results"])
    for name, table in flat.tables.items():
        assert table.equals(flat_here.tables[name]), name
    assert raw.equals(raw_here)
    assert "hunter2" not in str(raw.to_pylist()) and "configuration" not in str(raw.to_pylist())


def test_a_lost_worker_leaves_the_page_to_this_process() -> None:
    records = [{"id": 9, "orderitem_set": []}]
    with PageDecoder(Privacy(), workers=2) as decode:
        decode._launch()  # start now, in this thread
        for worker in list(decode._workers):
            worker.process.kill()
            worker.process.wait()
        body = decode(page(records))  # a worker fails; the page is flattened here
        assert len(decode._workers) == 1
        decode(page(records))  # so does the other
        again = decode(page(records))  # no worker left: flattened here
        assert decode._workers == [] and decode.pages_on_workers == 0
    assert [s["id"] for s in body["results"]] == [9] == [s["id"] for s in again["results"]]
    flat, _ = combine(body["results"])
    assert flat.tables["orders"].column("order_id").to_pylist() == [9]


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_json_and_bodies_that_are_not_pages(workers: int) -> None:
    with PageDecoder(Privacy(), workers=workers) as decode:
        if workers:
            decode._launch()
        with pytest.raises(orjson.JSONDecodeError):
            decode(b'{"count": 1, "results": [')
        assert decode(b'{"detail": "nope"}') == {"detail": "nope"}
        assert decode(b'{"count": 1, "results": [3]}') == {"count": 1, "results": [3]}
        # a body as it came, gzip-compressed: inflated where it is flattened
        body = page([{"id": 4, "orderitem_set": []}])
        assert [dict(s) for s in decode(gzip.compress(body), gzip=True)["results"]] == [{"id": 4}]
        with pytest.raises(orjson.JSONDecodeError, match="gzip"):
            decode(gzip.compress(body)[:-9], gzip=True)  # cut short
        assert decode(gzip.compress(b" "), gzip=True) is None  # an empty body, as uncompressed
        if workers:
            assert len(decode._workers) == 2  # a bad page does not cost a worker
            assert decode.pages_on_workers == 4  # every body but the two bad ones


def test_combine_keeps_only_the_records_handed_out() -> None:
    with PageDecoder(Privacy(), workers=0) as decode:
        first = decode(page([{"id": 1}, {"id": 2}, {"id": "x"}]))["results"]
        second = decode(page([{"id": 2}, {"id": 3}, {"id": None}]))["results"]
    assert all(isinstance(s, Stub) for s in first + second)
    # the paging logic dropped id 2 of the second page (handed out with the first)
    flat, raw = combine([*first, second[1], second[2]])
    assert sorted(flat.tables["orders"].column("order_id").to_pylist()) == [1, 2, 3]
    assert sorted(raw.column("order_id").to_pylist()) == [1, 2, 3]
    # quarantined: "x" at position 2 of the batch, None at position 3 + 2 of the second page
    assert sorted(q.position for q in flat.quarantine) == [2, 5]
    # a page split across two batches gives each batch its own records
    flat, _ = combine(first[:1])
    assert flat.tables["orders"].column("order_id").to_pylist() == [1]
    assert flat.quarantine == []


KILL_SCRIPT = """
import sys
from omsframe.sync import sync
sync(sys.argv[1], token=sys.argv[2], cache=sys.argv[3], progress=False, batch_size=60, workers=2)
"""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether a process runs (an ended one waiting to be reaped, a zombie, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_a_sync_killed_with_its_workers_running_resumes_and_leaves_no_worker(
    world: World, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.test_sync import _checkpoint, same_key_cache

    clean = tmp_path / "clean"
    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=clean, progress=False, workers=0)
        killed = same_key_cache(clean, tmp_path / "killed")
        process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, oms.url, oms.token, killed])
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while not (workers and _checkpoint(killed)) and process.poll() is None:
            assert time.monotonic() < deadline, "the sync made no progress"
            workers = _children(process.pid)
            time.sleep(0.01)
        assert len(workers) == 2 and process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its sync"
            time.sleep(0.05)
        final = sync(oms.url, token=oms.token, cache=killed, progress=False, workers=2)
        assert final.resumed and final.complete
    assert snapshot(killed) == snapshot(clean)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="stops a process with SIGSTOP")
def test_a_silent_worker_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    import omsframe.pageflat as pageflat

    with PageDecoder(Privacy(), workers=1) as decode:
        decode._launch()
        monkeypatch.setattr(pageflat, "ANSWER_TIMEOUT", 0.5)
        (worker,) = decode._workers
        os.kill(worker.process.pid, signal.SIGSTOP)  # alive, but it will never answer
        body = decode(page([{"id": 4}]))
        assert decode._workers == [] and worker.process.poll() is not None
    assert [s["id"] for s in body["results"]] == [4]


def test_the_collector_is_paused_only_inside_and_a_freeze_of_the_program_is_kept() -> None:
    import gc

    from omsframe.flatten import collector_paused

    assert gc.isenabled()
    with collector_paused(freeze=True):
        assert not gc.isenabled() and gc.get_freeze_count() > 0  # what was there is frozen
        cyclic: list[object] = []
        cyclic.append(cyclic)
        del cyclic
        assert gc.collect() >= 1  # the caller's collections still free cycles made meanwhile
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.freeze()  # a program that froze its objects itself (a pre-forking server) keeps them so
    try:
        with collector_paused(freeze=True):
            assert not gc.isenabled()
        # still frozen (the count itself may drop as frozen objects are freed meanwhile)
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_raw_layer_keeps_the_latest_copy_of_an_order_sent_twice() -> None:
    import pyarrow as pa

    from omsframe.pageflat import raw_orders_table

    orders = pa.table(
        {"order_id": [1, 2], "date_placed": [None, None], "modified_date": [None, None]}
    )
    older = {"id": 1, "modified_date": "2025-01-02T00:00:00Z", "number": "old"}
    newer = {"id": 1, "modified_date": "2025-01-03T00:00:00Z", "number": "new"}
    texts = [
        raw_orders_table(orders, records).column("record").to_pylist()
        for records in ([older, newer, {"id": 2}], [newer, older, {"id": 2}])
    ]
    assert texts[0] == texts[1]  # whichever came first, the latest stamp wins
    assert orjson.loads(texts[0][0])["number"] == "new" and orjson.loads(texts[0][1]) == {"id": 2}
    unique = raw_orders_table(orders, [{"id": 2}, older]).column("record").to_pylist()
    assert [orjson.loads(t)["id"] for t in unique] == [1, 2]  # in the order of the orders table


def test_tables_cross_the_pipe_in_ipc_form_and_are_read_in_place() -> None:
    import os

    import pyarrow as pa

    from omsframe.pageflat import _receive, _send

    chunked = pa.concat_tables([pa.table({"a": [1, 2]}), pa.table({"a": [3]})])
    nested = pa.table(
        {
            "tags": [["x"], [], None],
            "money": pa.array(["1.10", None, "2"]).cast(pa.decimal128(18, 2)),
        }
    )
    message = ("page", {"one": chunked, "two": [nested, pa.table({"e": pa.array([], pa.int8())})]})
    read, write = os.pipe()
    with os.fdopen(write, "wb") as stream:
        _send(stream, message)
        _send(stream, "no tables")
    before = pa.total_allocated_bytes()
    kind, tables = _receive(read, 5)
    assert pa.total_allocated_bytes() == before  # read in place: no Arrow memory taken
    assert _receive(read, 5) == "no tables"
    os.close(read)
    assert kind == "page"
    assert tables["one"].equals(chunked) and tables["two"][0].equals(nested)
    assert tables["two"][1].num_rows == 0 and tables["two"][1].schema.field("e").type == pa.int8()


def test_a_sync_allocates_arrow_memory_that_goes_back_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow as pa

    from omsframe.sync import POOL_VARIABLE, returning_arrow_memory

    monkeypatch.delenv(POOL_VARIABLE, raising=False)
    default = pa.default_memory_pool().backend_name
    with returning_arrow_memory():
        inside = pa.default_memory_pool().backend_name
    assert pa.default_memory_pool().backend_name == default
    assert inside in ("jemalloc", "system") if default == "mimalloc" else inside == default
    monkeypatch.setenv(POOL_VARIABLE, "mimalloc")
    with returning_arrow_memory():
        assert pa.default_memory_pool().backend_name == default  # the user's choice is kept


def test_an_incremental_sync_lets_arrow_keep_freed_memory_for_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyarrow as pa

    from omsframe.sync import POOL_VARIABLE, _decay_ms, returning_arrow_memory

    set_to: list[int] = []
    real = pa.default_memory_pool()
    monkeypatch.delenv(POOL_VARIABLE, raising=False)
    monkeypatch.setattr(pa, "jemalloc_set_decay_ms", set_to.append)
    monkeypatch.setattr(pa, "default_memory_pool", pa.mimalloc_memory_pool)  # (pyarrow's own)
    for plan in ("full", "incremental", "full scan"):
        with returning_arrow_memory(_decay_ms(plan)):
            pass
    monkeypatch.undo()
    pa.set_memory_pool(real)
    assert set_to == [0, 1000, 0]


def test_pages_flattened_in_this_process_are_flattened_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from omsframe import pageflat

    inside, most = 0, 0
    count = threading.Lock()
    real = pageflat.flatten_page
    threads: set[str] = set()

    def watched(content: bytes, privacy: Privacy, *, gzip: bool = False) -> tuple[object, ...]:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
            threads.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough for the other threads to come in, were they let
        try:
            return real(content, privacy, gzip=gzip)
        finally:
            with count:
                inside -= 1

    monkeypatch.setattr(pageflat, "flatten_page", watched)
    with PageDecoder(Privacy(), workers=0) as decode, ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda n: decode(page([{"id": n}])), range(16)))
    assert most == 1
    assert sorted(b["results"][0]["id"] for b in bodies) == list(range(16))
    # and on one thread (each thread that flattens keeps freed memory in its own C heap)
    assert len(threads) == 1 and threads.pop().startswith("omsframe-flatten")
    # a page that comes after the decoder closed is flattened by the thread that brings it
    assert decode(page([{"id": 99}]))["results"][0]["id"] == 99
    assert threads == {threading.current_thread().name}


def test_pages_are_asked_for_plain_only_once_they_go_to_workers() -> None:
    with PageDecoder(Privacy(), workers=0) as here:
        here(page([{"id": 1}], count=10**6))
        assert not here.plain  # flattened in this process: gzip bodies
    with PageDecoder(Privacy(), threshold=10) as there:
        there(page([{"id": 1}], count=5))
        assert not there.plain  # a small read: no workers
        there(page([{"id": 1}], count=50))
        assert there.plain  # workers starting: the next pages come uncompressed
