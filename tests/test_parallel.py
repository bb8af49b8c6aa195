"""Parsing and flattening on every core gives what one core gives."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa

from omsframe.flatten import iter_flatten_orders
from omsframe.parallel import iter_flatten_json
from omsframe.privacy import Privacy
from omsframe.simulator import render
from omsframe.simulator.world import World


def test_workers_give_the_same_tables_as_one_core_in_the_same_order() -> None:
    world = World.generate(seed=17, orders=400)
    lines = [orjson.dumps(render.order_object(world, i, world.end_us)) for i in range(400)]
    lines.insert(123, b'{"id": 1, "orderitem_set": "broken"}')  # quarantined, not fatal
    lines.insert(200, b"{not json")
    privacy = Privacy(key=b"k" * 32)
    parallel = list(iter_flatten_json(lines, privacy=privacy, batch_size=64, workers=2))
    single = list(
        iter_flatten_orders(
            (orjson.loads(line) for line in lines if line != b"{not json"),
            privacy=privacy,
            batch_size=64,
        )
    )
    for name in ("orders", "order_items", "addresses"):
        left = pa.concat_tables([b.tables[name] for b in parallel])
        right = pa.concat_tables([b.tables[name] for b in single])
        assert left.num_rows == right.num_rows > 0
        assert left.equals(right), name
    quarantined = [(q.position, q.reason) for b in parallel for q in b.quarantine]
    assert [p for p, _ in quarantined] == [123, 200]
    assert "not valid JSON" in quarantined[1][1]
    assert all(q.record is None for b in parallel for q in b.quarantine if "JSON" in q.reason)


def test_a_record_bad_at_conversion_is_quarantined_whole_without_its_secrets() -> None:
    # the workers do not keep parsed records: one found bad only when its batch becomes Arrow
    # tables is parsed again from its line, stripped and pseudonymized like any other
    world = World.generate(seed=18, orders=30)
    lines = [orjson.dumps(render.order_object(world, i, world.end_us)) for i in range(30)]
    bad = orjson.loads(lines[7])
    bad["orderitem_set"][0]["net_amount"] = "12,5O"  # not a decimal
    bad["channel"] = {"id": 9, "configuration": {"password": "hunter2"}}
    lines[7] = orjson.dumps(bad)
    privacy = Privacy(key=b"k" * 32)
    for workers in (1, 2):
        batches = list(iter_flatten_json(lines, privacy=privacy, batch_size=10, workers=workers))
        (entry,) = [q for b in batches for q in b.quarantine]
        assert (entry.position, entry.record_id) == (7, bad["id"])
        assert "net_amount" in entry.reason and entry.record is not None
        kept = orjson.loads(entry.record)
        assert kept["orderitem_set"][0]["net_amount"] == "12,5O"
        assert "configuration" not in kept["channel"]
        assert "hunter2" not in entry.record
        email = bad["customer"]["email"]
        assert email not in entry.record and kept["customer"]["email"].startswith("pii:")
        assert sum(b.tables["orders"].num_rows for b in batches) == 29


def test_a_file_is_read_by_the_workers_themselves(tmp_path: Path) -> None:
    world = World.generate(seed=19, orders=300)
    lines = [orjson.dumps(render.order_object(world, i, world.end_us)) for i in range(300)]
    lines.insert(250, b"{cut short")
    path = tmp_path / "orders.ndjson"
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    privacy = Privacy(key=b"k" * 32)
    expected = list(iter_flatten_json(lines, privacy=privacy, batch_size=40, workers=1))
    for workers in (1, 2):
        batches = list(iter_flatten_json(path, privacy=privacy, batch_size=40, workers=workers))
        assert len(batches) > 3  # cut into parts of about 40 lines
        for name in ("orders", "order_items"):
            got = pa.concat_tables([b.tables[name] for b in batches])
            want = pa.concat_tables([b.tables[name] for b in expected])
            assert got.sort_by(got.column_names[0]).equals(want.sort_by(want.column_names[0]))
        customers = {c for b in batches for c in b.tables["customers"]["customer_id"].to_pylist()}
        assert customers == {
            c for b in expected for c in b.tables["customers"]["customer_id"].to_pylist()
        }
        assert sum(b.tables["orders"].num_rows for b in batches) == 300
        assert [q.position for b in batches for q in b.quarantine] == [250]
