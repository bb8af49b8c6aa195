"""Benchmark: flatten the same simulator orders four ways, each in its own process.

Ways: omsframe (``iter_flatten_orders`` in batches of 5,000), ``pandas.json_normalize``
(orders, plus items with ``record_path``), dlt's normalizer (``extract`` + ``normalize`` into
child tables, no load), DuckDB ``read_json`` (orders plus ``unnest`` of the items into Arrow),
and, as floors, orjson parsing the same bytes and nothing else: each record parsed and dropped
(``orjson_parse``), or parsed into a list as a loader holds them (``orjson_list``).

Every way reads the same newline-delimited JSON file. Time is measured inside the child
process after its imports; memory is the child's peak RSS (``ru_maxrss``) and its growth
over the RSS measured just before the work started.

Run: ``python -m bench.flatten_compare [--orders 10000 100000]``; prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WAYS = (
    "orjson_parse",
    "orjson_list",
    "omsframe",
    "omsframe_1core",
    "json_normalize",
    "dlt",
    "duckdb",
)


def rss_mib() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_orders(path: Path, orders: int) -> None:
    """Write ``orders`` simulator orders as newline-delimited JSON."""
    import orjson

    from omsframe.simulator import render
    from omsframe.simulator.world import World

    world = World.generate(seed=5, orders=orders)
    with path.open("wb") as out:
        for i in range(world.visible_orders(world.end_us)):
            out.write(orjson.dumps(render.order_object(world, i, world.end_us)))
            out.write(b"\n")


def lines(path: Path) -> Iterator[bytes]:
    """The file's lines, streamed."""
    with path.open("rb") as source:
        yield from source


def run_way(way: str, path: Path) -> dict[str, Any]:
    """Run one way in this process; return rows produced, seconds, memory."""
    import orjson
    import pandas as pd  # imported before timing by every way: pyarrow loads it lazily

    import omsframe.flatten
    import omsframe.parallel

    if way == "dlt":
        import dlt
    elif way == "duckdb":
        import duckdb
    before = rss_mib()
    started = time.perf_counter()
    rows = 0
    if way == "orjson_parse":  # parse each record and drop it: the strictest floor
        rows = sum(1 for line in lines(path) if orjson.loads(line))
    elif way == "orjson_list":  # parse into a list, as a loader holds records (collector on)
        rows = len([orjson.loads(line) for line in lines(path)])
    elif way == "omsframe":  # one worker process per core, each reading its part of the file
        for batch in omsframe.parallel.iter_flatten_json(path, batch_size=500):
            rows += batch.tables["order_items"].num_rows
    elif way == "omsframe_1core":  # the same, in this one process
        for batch in omsframe.parallel.iter_flatten_json(lines(path), batch_size=5000, workers=1):
            rows += batch.tables["order_items"].num_rows
    elif way == "json_normalize":
        orders = [orjson.loads(line) for line in lines(path)]
        flat_orders = pd.json_normalize(orders)
        items = pd.json_normalize(
            orders, record_path="orderitem_set", meta=["id"], meta_prefix="order."
        )
        rows = len(items) + 0 * len(flat_orders)
    elif way == "dlt":
        with tempfile.TemporaryDirectory() as workdir:
            pipeline = dlt.pipeline(
                pipeline_name="flatten_bench",
                pipelines_dir=workdir,
                destination=dlt.destinations.duckdb(os.path.join(workdir, "x.duckdb")),
                dataset_name="bench",
            )
            pipeline.extract((orjson.loads(line) for line in lines(path)), table_name="orders")
            info = pipeline.normalize()
            rows = sum(
                count for name, count in info.row_counts.items() if name.endswith("orderitem_set")
            )
    elif way == "duckdb":
        con = duckdb.connect()
        source = f"read_json('{path}', format='newline_delimited', maximum_object_size=100000000)"
        con.execute(f"CREATE TABLE raw AS SELECT * FROM {source}")
        con.execute("SELECT * EXCLUDE (orderitem_set) FROM raw").to_arrow_table()
        result = con.execute(
            "SELECT id AS order_id, unnest(orderitem_set, recursive := true) FROM raw"
        )
        table = result.to_arrow_table() if result is not None else None
        rows = table.num_rows if table is not None else 0
    else:
        raise SystemExit(f"unknown way {way}")
    seconds = time.perf_counter() - started
    return {
        "way": way,
        "rows": rows,
        "seconds": seconds,
        "peak_mib": peak_mib(),
        "growth_mib": peak_mib() - before,
    }


def main() -> None:
    """Write the inputs, run every way in a child process, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--ways", nargs="+", default=list(WAYS))
    parser.add_argument("--child", nargs=2, metavar=("WAY", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_way(args.child[0], Path(args.child[1]))))
        return
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    columns = (
        "orders | way | item rows | seconds | orders/s | vs orjson parse | peak MiB | growth MiB"
    )
    print(f"| {columns} |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for orders in args.orders:
            path = Path(tmp) / f"orders-{orders}.ndjson"
            write_orders(path, orders)
            floor = None
            for way in args.ways:
                child = subprocess.run(
                    [sys.executable, "-m", "bench.flatten_compare", "--child", way, str(path)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=False,
                )
                if child.returncode != 0:
                    reason = (child.stderr.strip().splitlines() or ["?"])[-1][:80]
                    print(f"| {orders:,} | {way} | failed: {reason} | | | | | |")
                    continue
                result = json.loads(child.stdout.strip().splitlines()[-1])
                floor = result["seconds"] if way == "orjson_parse" else floor
                ratio = f"{result['seconds'] / floor:.1f}x" if floor else ""
                print(
                    f"| {orders:,} | {way} | {result['rows']:,} | {result['seconds']:.2f} | "
                    f"{orders / result['seconds']:,.0f} | {ratio} | {result['peak_mib']:.0f} | "
                    f"{result['growth_mib']:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
