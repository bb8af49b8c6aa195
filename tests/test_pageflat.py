"""Order and event pages flattened on worker processes: same cache as in one process, robust."""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
import pytest

from omsframe.pageflat import PageDecoder, Stub, combine
from omsframe.privacy import Privacy
from omsframe.simulator.server import Clock, serve
from omsframe.simulator.world import World, from_us
from omsframe.store import Store
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
    assert first[2].events_new == first[0].events_new > 0
    assert again[2].events_new == again[0].events_new > 0
    assert snapshot(there) == snapshot(here)
    # the raw layer too (webhook events are flattened on the workers as orders are)
    for name, key in (("raw_orders", "order_id"), ("raw_events", "event_id")):
        tables = [
            Store(root).read_table(name).sort_by([(key, "ascending")]) for root in (here, there)
        ]
        assert tables[0].num_rows > 0 and tables[0].equals(tables[1]), name


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


def test_a_record_too_deep_to_walk_fails_its_page_here_and_keeps_the_worker() -> None:
    # orjson reads JSON 1,000 levels deep; no walk through a record goes that far. The worker
    # answers "failed", the page is flattened here and raises (the session makes that one
    # clear line: tests/test_bad_input.py), and the worker stays for the next pages.
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000
    body = page([{"id": 5, "orderitem_set": [], "extra": "PLACE"}]).replace(b'"PLACE"', deep)
    with PageDecoder(Privacy(), workers=2) as decode:
        decode._launch()
        with pytest.raises(RecursionError):
            decode(body)
        assert len(decode._workers) == 2 and decode.pages_on_workers == 0
        assert [s["id"] for s in decode(page([{"id": 6}]))["results"]] == [6]
        assert decode.pages_on_workers == 1


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


def _event(event_id: int, email: str = "ayse@example.com", **extra: object) -> dict[str, object]:
    return {
        "id": event_id,
        "event_type": "order.status.changed",
        "order": 100 + event_id,
        "created_date": f"2025-03-0{event_id % 9 + 1}T10:00:00Z",
        "modified_date": "2025-03-10T10:00:00Z",
        "request_datetimes": ["2025-03-10T10:00:00Z"],
        "webhook": {"id": 1, "secret_key": "hook-secret", "config": {"auth": {"u": "p"}}},
        "request_payload": {
            "payload": {
                "id": 100 + event_id,
                "customer": {"pk": 7, "email": email},
                "channel": {"id": 2, "configuration": {"password": "hunter2"}},
                "extra": [{"partner_api_token": "tok-123", "note": "kept"}],
            }
        },
        **extra,
    }


def test_event_pages_on_workers_give_the_same_tables_and_raw_rows_as_here() -> None:
    records = [_event(1), _event(2, email="mehmet@example.com"), _event(3)]
    privacy = Privacy(mode="pseudonymize", key=b"k" * 32)
    with PageDecoder(privacy, kind="events", workers=2) as decode:
        decode._launch()  # start now, in this thread
        body = decode(page(records))
        assert decode.pages_on_workers == 1
    with PageDecoder(privacy, kind="events", workers=0) as decode:
        local = decode(page(records))
    # a stub keeps what the sync needs of an event: its id, its stamp and when it was made
    assert dict(body["results"][0]) == {
        "id": 1,
        "modified_date": "2025-03-10T10:00:00Z",
        "created_date": "2025-03-02T10:00:00Z",
    }
    flat, raw = combine(body["results"], "events")
    flat_here, raw_here = combine(local["results"], "events")
    assert flat.tables["events"].equals(flat_here.tables["events"])
    assert raw.equals(raw_here)
    assert raw.column("event_id").to_pylist() == [1, 2, 3]
    texts = str(raw.to_pylist()) + str(flat.tables["events"].to_pylist())
    for secret in ("hook-secret", "hunter2", "tok-123", "ayse@example.com", "mehmet@"):
        assert secret not in texts, secret
    stored = orjson.loads(raw.column("record")[1].as_py())
    assert stored["request_payload"]["payload"]["extra"] == [{"note": "kept"}]
    assert stored["request_payload"]["payload"]["customer"]["email"].startswith("pii:")


@pytest.mark.parametrize("workers", [0, 2])
def test_combine_of_events_takes_each_record_handed_out_by_its_position(workers: int) -> None:
    first_copy, second_copy = _event(5, email="first@example.com"), _event(5)
    bad = _event(6, request_datetimes="not a list")
    with PageDecoder(Privacy(mode="keep"), kind="events", workers=workers) as decode:
        if workers:
            decode._launch()
        one = decode(page([_event(4), first_copy, bad, second_copy]))["results"]
        two = decode(page([_event(7), _event(8)]))["results"]
    # the paging logic hands out the first copy of id 5 only; the batch spans both pages
    flat, raw = combine([one[0], one[1], one[2], two[1]], "events")
    assert flat.tables["events"].column("event_id").to_pylist() == [4, 5, 8]
    assert raw.column("event_id").to_pylist() == [4, 5, 8]
    record = orjson.loads(raw.column("record")[1].as_py())
    assert record["request_payload"]["payload"]["customer"]["email"] == "first@example.com"
    # the bad event is quarantined at its position in the batch
    assert [(q.kind, q.position, q.record_id) for q in flat.quarantine] == [("event", 2, 6)]
    # a batch of the page's other records: their rows, without the quarantine
    flat, raw = combine([two[0]], "events")
    assert (
        flat.tables["events"].column("event_id").to_pylist() == [7] == raw["event_id"].to_pylist()
    )
    assert flat.quarantine == []
    empty, raw = combine([], "events")
    assert empty.tables["events"].num_rows == 0 == raw.num_rows


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
        # (a first sync writes its manifest at once: wait for a checkpoint in it)
        while not (workers and '"orders"' in _checkpoint(killed)) and process.poll() is None:
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

    def watched(
        content: bytes, privacy: Privacy, *, gzip: bool = False, kind: pageflat.Kind = "orders"
    ) -> tuple[object, ...]:
        nonlocal inside, most
        with count:
            inside += 1
            most = max(most, inside)
            threads.add(threading.current_thread().name)
        time.sleep(0.01)  # long enough for the other threads to come in, were they let
        try:
            return real(content, privacy, gzip=gzip, kind=kind)
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


def test_pages_are_asked_for_plain_only_once_they_go_to_workers_or_a_helper() -> None:
    with PageDecoder(Privacy(), workers=0) as here:
        here(page([{"id": 1}], count=10**6))
        assert not here.plain  # flattened in this process: gzip bodies
    with PageDecoder(Privacy(), threshold=10) as there:
        there(page([{"id": 1}], count=5))
        assert not there.plain  # a small read: no workers
        there(page([{"id": 1}], count=50))
        assert there.plain  # workers starting: the next pages come uncompressed


def grouped_and_alone(contents: list[bytes]) -> tuple[list[Any], list[Any]]:
    from omsframe.pageflat import flatten_page, flatten_pages

    privacy = Privacy(mode="pseudonymize", key=b"k" * 32)
    alone: list[Any] = []
    for content in contents:
        try:
            alone.append(flatten_page(content, privacy))
        except orjson.JSONDecodeError as error:
            alone.append(error)
    return flatten_pages(contents, privacy), alone


def stubs(answers: list[Any]) -> list[Stub]:
    return [
        Stub(keys, answer[5], answer[6] + i)
        for answer in answers
        for i, keys in enumerate(answer[4])
    ]


def test_pages_waiting_together_are_flattened_as_one_with_the_same_rows() -> None:
    def order(n: int, customer: int) -> dict[str, object]:
        return {
            "id": n,
            "modified_date": f"2025-01-{n:02d}T00:00:00Z",
            "date_placed": "2025-01-01T00:00:00Z",
            "customer": {"pk": customer, "first_name": "Ayşe"},
            "orderitem_set": [{"id": 100 + n, "price": "10.50", "price_currency": "try"}],
        }

    contents = [page([order(1, 7), order(2, 8)]), page([order(3, 7)]), page([order(4, 9)])]
    grouped, alone = grouped_and_alone(contents)
    assert len({id(answer[5]) for answer in grouped}) == 1  # one FlatPage for the three
    assert [answer[6] for answer in grouped] == [0, 2, 3]  # where each page's records start
    assert [answer[:5] for answer in grouped] == [answer[:5] for answer in alone]
    flat, raw = combine(stubs(grouped))
    flat_alone, raw_alone = combine(stubs(alone))
    for name in ("orders", "order_items", "addresses"):
        assert flat.tables[name].equals(flat_alone.tables[name]), name
    assert raw.equals(raw_alone)
    # customer 7 came on two pages: one row once flattened together (the store keeps the
    # latest either way)
    assert flat.tables["customers"].column("customer_id").to_pylist() == [7, 8, 9]
    # a batch holding only some of a shared page's records keeps only theirs
    part, part_raw = combine(stubs(grouped)[1:3])
    assert part.tables["orders"].column("order_id").to_pylist() == [2, 3]
    assert part_raw.column("order_id").to_pylist() == [2, 3]


def test_pages_that_share_an_id_or_fail_are_flattened_alone() -> None:
    older = {"id": 1, "modified_date": "2025-01-01T00:00:00Z"}
    newer = {"id": 1, "modified_date": "2025-02-01T00:00:00Z"}
    contents = [
        page([older]),
        page([newer, {"id": 2}]),  # id 1 again: apart, each page keeps its own copy
        b"{not json",
        orjson.dumps({"detail": "not a page"}),
        b"",
        page([{"id": 3}]),
    ]
    grouped, alone = grouped_and_alone(contents)
    assert isinstance(grouped[2], orjson.JSONDecodeError) and isinstance(alone[2], type(grouped[2]))
    assert grouped[3] == alone[3] == ("body", {"detail": "not a page"})
    assert grouped[4] == alone[4] == ("body", None)
    assert grouped[0][5] is grouped[5][5]  # pages 1 and 6 together
    assert grouped[1][5] is not grouped[0][5]  # page 2 alone
    for n in (0, 1):
        kept = grouped[n][5].raw.filter(pc.equal(grouped[n][5].raw.column("order_id"), 1))
        assert (
            orjson.loads(kept.column("record")[0].as_py())["modified_date"]
            == (older if n == 0 else newer)["modified_date"]
        )


def test_a_page_shared_by_two_batches_reports_its_drift_and_quarantine_once() -> None:
    bad_customer = {"pk": "not a number"}  # quarantined as a customer, not as an order
    contents = [
        page([{"id": 1, "new_thing": 1, "customer": bad_customer}, {"id": 2, "new_thing": 2}]),
        page([{"id": 3, "new_thing": 3}]),
    ]
    grouped, answers_alone = grouped_and_alone(contents)
    records = stubs(grouped)
    assert records[0].page is records[2].page
    first, _ = combine(records[:1])  # the batch boundary falls inside the shared page
    second, _ = combine(records[1:])
    alone = combine(stubs(answers_alone))[0]
    assert alone.drift.to_dict()["new_fields"] == {"order.new_thing": 3}
    assert first.drift.to_dict()["new_fields"] == alone.drift.to_dict()["new_fields"]
    assert second.drift.to_dict()["new_fields"] == {}
    kinds = [bad.kind for bad in alone.quarantine]
    assert "customers" in kinds
    assert [bad.kind for bad in first.quarantine + second.quarantine] == kinds


def numbered_orders(n: int) -> list[dict[str, object]]:
    return [
        {"id": n * 100 + k, "orderitem_set": [{"id": n * 1000 + k, "price": "1.50"}]}
        for k in range(30)
    ]


def flat_as_alone(bodies: list[Any]) -> Any:
    """A batch of numbered pages (``bodies[n]`` of ``numbered_orders(n)``), combined, after
    checking its tables equal those of each page flattened alone in this process."""
    with PageDecoder(Privacy(), workers=0) as here:
        alone = [here(page(numbered_orders(n))) for n in range(len(bodies))]
    for n, body in enumerate(bodies):
        assert [s["id"] for s in body["results"]] == [s["id"] for s in alone[n]["results"]]
    flat, raw = combine([s for body in bodies for s in body["results"]])
    flat_here, raw_here = combine([s for body in alone for s in body["results"]])
    for name in ("orders", "order_items", "addresses"):
        assert flat.tables[name].equals(flat_here.tables[name]), name
    assert raw.equals(raw_here)
    return flat


def test_pages_waiting_for_a_worker_go_to_it_together_and_give_the_same_tables() -> None:
    from collections import Counter

    import omsframe.pageflat as pageflat

    with PageDecoder(Privacy(), workers=1) as decode, ThreadPoolExecutor(8) as pool:
        decode._launch()
        # pages come in any order: here none in the order of their ids
        order = [5, 2, 9, 0, 11, 3, 7, 1, 10, 4, 8, 6]
        came = pool.map(lambda n: decode(page(numbered_orders(n))), order)
        bodies = [body for _, body in sorted(zip(order, came, strict=True))]
        assert decode.pages_on_workers == 12
    groups = Counter(id(body["results"][0].page) for body in bodies)
    assert sum(groups.values()) == 12 and 1 < max(groups.values()) <= pageflat.GROUP_PAGES
    # a batch's rows come in the order of its records, whichever pages went together
    flat = flat_as_alone(bodies)
    assert flat.tables["orders"].column("order_id").to_pylist() == [
        n * 100 + k for n in range(12) for k in range(30)
    ]
    # and a batch that ends inside pages flattened together
    records = [s for body in bodies for s in body["results"]][45:200]
    part, part_raw = combine(records)
    assert part.tables["orders"].column("order_id").to_pylist() == [s["id"] for s in records]
    assert part.tables["order_items"].column("order_id").to_pylist() == [s["id"] for s in records]
    assert part_raw.column("order_id").to_pylist() == [s["id"] for s in records]


def test_pages_whose_rows_cannot_be_told_apart_stay_one_page() -> None:
    from omsframe.flatten import flatten_orders
    from omsframe.pageflat import _row_starts

    records = [{"id": 1, "orderitem_set": [{"id": 10}]}, {"id": 2, "orderitem_set": [{"id": 20}]}]
    flat = flatten_orders(records)
    assert _row_starts(flat, records, [0, 1]) == {
        "orders": [0, 1, 2],
        "order_items": [0, 1, 2],
        "addresses": [0, 0, 0],
    }
    assert _row_starts(flat, records[::-1], [0, 1]) is None  # rows not in the records' order


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="stops a process with SIGSTOP")
def test_pages_given_together_to_a_worker_that_goes_silent_are_flattened_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import signal

    import omsframe.pageflat as pageflat

    with PageDecoder(Privacy(), workers=1) as decode, ThreadPoolExecutor(6) as pool:
        decode._launch()
        (worker,) = decode._workers
        monkeypatch.setattr(pageflat, "ANSWER_TIMEOUT", 0.5)  # (once it has greeted)
        os.kill(worker.process.pid, signal.SIGSTOP)
        bodies = list(pool.map(lambda n: decode(page(numbered_orders(n))), range(6)))
        assert decode._workers == [] and decode.pages_on_workers == 0
    for n, body in enumerate(bodies):
        assert [s["id"] for s in body["results"]] == [n * 100 + k for k in range(30)]


def helped(decode: PageDecoder) -> None:
    """Start a decoder's helper now, in this thread (as ``start(helper=True)`` does in one)."""
    decode._starting, decode._helper = True, True
    decode._launch()
    assert len(decode._workers) == 1


def test_a_helper_and_the_thread_here_share_the_pages_of_a_mid_sized_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import omsframe.pageflat as pageflat

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    flattened_here: list[str] = []
    real = pageflat.flatten_page

    def watched(content: bytes, privacy: Privacy, *, gzip: bool = False, kind: Any) -> Any:
        import threading

        flattened_here.append(threading.current_thread().name)
        return real(content, privacy, gzip=gzip, kind=kind)

    monkeypatch.setattr(pageflat, "flatten_page", watched)
    with PageDecoder(Privacy(), helper_threshold=100) as decode:
        decode(page(numbered_orders(0), count=50))  # too few records for a helper
        assert not decode._starting
        decode(page(numbered_orders(0), count=150))  # a helper starts in the background
        # and from a loopback host the next pages come uncompressed, as for workers
        assert decode._starting and decode._helper and decode.plain
    with PageDecoder(Privacy(), helper_threshold=100) as decode, ThreadPoolExecutor(8) as pool:
        helped(decode)
        flattened_here.clear()
        # gzip bodies (from a remote host) are inflated by the reading threads, whoever
        # flattens them
        bodies = list(
            pool.map(
                lambda n: decode(gzip.compress(page(numbered_orders(n))), gzip=True), range(24)
            )
        )
        on_helper = decode.pages_on_workers
    # every page was taken once: some by the helper, the others by the one thread here
    assert 0 < on_helper < 24 and len(flattened_here) == 24 - on_helper
    assert {name.rsplit("_", 1)[0] for name in flattened_here} == {"omsframe-flatten"}
    flat_as_alone(bodies)


def test_no_helper_on_one_core_nor_when_the_workers_are_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import omsframe.pageflat as pageflat

    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert PageDecoder(Privacy()).helper_threshold is None
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert PageDecoder(Privacy()).helper_threshold == pageflat.HELPER_THRESHOLD
    assert PageDecoder(Privacy(), workers=0).helper_threshold is None
    assert PageDecoder(Privacy(), workers=3).helper_threshold is None


def test_pages_of_a_lost_helper_are_flattened_here() -> None:
    with PageDecoder(Privacy(), helper_threshold=100) as decode, ThreadPoolExecutor(6) as pool:
        helped(decode)
        (worker,) = decode._workers
        worker.process.kill()
        worker.process.wait()
        bodies = list(pool.map(lambda n: decode(page(numbered_orders(n))), range(12)))
        assert decode._workers == [] and decode.pages_on_workers == 0
    for n, body in enumerate(bodies):
        assert [s["id"] for s in body["results"]] == [n * 100 + k for k in range(30)]


def test_a_worker_runs_without_pandas_numpy_and_arrow_datasets() -> None:
    import subprocess
    import sys

    from omsframe.pageflat import _WORKER_MAIN

    program = _WORKER_MAIN.replace(
        "serve_worker()",
        "from omsframe.pageflat import flatten_page\n"
        "from omsframe.privacy import Privacy\n"
        f"flatten_page({page(numbered_orders(1))!r}, Privacy(mode='pseudonymize', key=b'k' * 32))\n"
        "print(sorted({m.partition('.')[0] for m in sys.modules} & {'pandas', 'numpy'}"
        " | {m for m in sys.modules} & {'pyarrow.dataset', 'pyarrow.acero', 'pyarrow.fs'}))",
    )
    assert "serve_worker()" not in program
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_worker_ends_at_once_when_its_pipes_close() -> None:
    import subprocess
    import sys

    from omsframe.pageflat import _WORKER_MAIN

    # an exit handler stands for the interpreter's tidying up at exit, which a worker skips
    program = _WORKER_MAIN.replace(
        "serve_worker()",
        "import atexit\natexit.register(lambda: sys.stderr.write('tidied'))\nserve_worker()",
    )
    assert "atexit.register" in program
    done = subprocess.run([sys.executable, "-c", program], input=b"", capture_output=True)
    assert done.returncode == 0 and b"tidied" not in done.stderr
