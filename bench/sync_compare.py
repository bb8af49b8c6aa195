"""Benchmark: sync, incremental sync and load against the simulator, beside naive baselines.

Each measured job runs in its own process against one simulator process (so the server does
not share the GIL with the job), and reports seconds and its peak RSS:

- ``sync``: ``omsframe.sync`` of every order (events off) into an empty cache, pages parsed and
  flattened on worker processes (the default for a read this large);
- ``sync-1``: the same in one process (``workers=0``);
- ``naive``: a sequential httpx loop over the pages, ``pandas.json_normalize`` of the orders and
  of their items (``record_path``), ``to_parquet`` of both — the usual notebook;
- ``naive-plain``: the same, asking for uncompressed answers (``Accept-Encoding: identity``),
  as the sync does for the pages it hands to its workers (httpx asks for gzip by default);
- ``naive-page``: ``naive`` with the sync's page size (``limit`` 250 since the eighteenth
  session; ``naive`` keeps 100, as in every earlier run): the loop gains from larger pages too;
- ``incremental``: ``omsframe.sync`` again after the shop's clock moved so that 1% of the
  orders there were at the sync changed state (the orders placed meanwhile come on top);
- ``incremental-any``: the same from a copy of the synced cache, after the clock moved so that
  1% of the orders are new or changed state (new orders counted among the changes);
  each run of an incremental starts from its own copy of the synced cache (see ``snapshot``);
- ``load``: ``omsframe.load`` of orders and items from the cache into pandas;
- ``flatten``: ``omsframe.flatten_orders`` of the same orders from their JSON (what ``load``
  saves you from).

The jobs but ``sync-1``, ``load`` and ``flatten`` run in ``--rounds`` rounds (3 by default),
each round on a new server of the same shop at the same moment: a full sync, the three naive
loops, then the two incrementals from copies of that round's cache. Each row gives the
median and every run's time, and after the table each round's ratios (full sync against
naive, incremental against full sync) are given, jobs minutes apart: on a shared machine
whose speed drifts by a fifth within minutes, jobs a quarter of an hour apart compared the
machine's moods as much as the jobs. ``load`` runs ``--rounds`` times at the end.

Run: ``python -m bench.sync_compare [--orders 10000 100000] [--rounds 3]``; prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER = """
import sys, datetime as dt
import numpy as np
from omsframe.simulator.server import SimulatorServer, Clock
from omsframe.simulator.world import World, from_us
world = World.generate(seed=9, orders=int(sys.argv[1]))
start = from_us(world.end_us) - dt.timedelta(days=30)

synced_at = None  # the clock when the cache was synced (the first advance's starting point)

def moment_changing(share, new_count):
    # the clock time by which `share` of the orders visible at the sync have changed state
    # (new_count=False), or have changed state or been placed since (new_count=True)
    n = world.visible_orders(synced_at)
    never = np.iinfo(np.int64).max
    times = np.where(world.transition_time > synced_at, world.transition_time, never)
    first = np.minimum.reduceat(times[: world.transition_ptr[n]], world.transition_ptr[:n])
    first = first[first < never]
    if new_count:
        first = np.concatenate([first, world.order_created[n:]])
    first = np.sort(first)
    k = max(1, int(share * n))
    return int(first[min(k, len(first)) - 1])

# "reset": a new server of the same shop at the same moment (a new round); "<share> <mode>":
# move the clock on (see moment_changing); "advance S": move it on by S seconds
while True:
    with SimulatorServer(world, clock=Clock(start=start)) as server:
        print(server.url, server.token, flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                break
            first, second = line.split()
            if first == "advance":
                server.advance(dt.timedelta(seconds=float(second)))
            else:
                synced_at = synced_at or server.now_us
                target = moment_changing(float(first), second == "any")
                server.advance(dt.timedelta(microseconds=max(0, target - server.now_us)))
            print("ok", flush=True)
        else:
            break
"""


def peak_mib() -> float:
    """Peak RSS of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def job(kind: str, url: str, token: str, cache: str) -> dict[str, Any]:
    """Run one measured job in this process."""
    import httpcore  # noqa: F401  (httpx imports it on its first client: a one-time import)
    import httpx
    import orjson
    import pandas as pd

    import omsframe

    started = time.perf_counter()  # imports are not what is measured
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    detail = ""
    if kind in ("sync", "sync-1", "incremental", "incremental-any"):
        workers = 0 if kind == "sync-1" else None
        report = omsframe.sync(
            url, token=token, cache=cache, events=False, progress=False, workers=workers
        )
        detail = f"{report.plan}: {report.orders_seen:,} orders read"
    elif kind in ("naive", "naive-plain", "naive-page"):
        from omsframe.config import DEFAULT_PAGE_SIZE

        limit = DEFAULT_PAGE_SIZE if kind == "naive-page" else 100
        frames, items = [], []
        headers = {"Authorization": f"Token {token}"}
        if kind == "naive-plain":
            headers["Accept-Encoding"] = "identity"
        with httpx.Client(headers=headers, timeout=60) as http:
            page = 1
            while True:
                response = http.get(
                    f"{url}/api/v1/oms/orders/",
                    params={"page": page, "limit": limit, "ordering": "id"},
                )
                if response.status_code == 404:
                    break
                body = response.json()
                results = body["results"]
                frames.append(pd.json_normalize(results))
                items.append(
                    pd.json_normalize(
                        results, record_path="orderitem_set", meta=["id"], meta_prefix="order."
                    )
                )
                if not body["next"]:
                    break
                page += 1
        orders = pd.concat(frames, ignore_index=True)
        order_items = pd.concat(items, ignore_index=True)
        # nested leftovers (lists) are not parquet-friendly as objects: keep them as JSON text
        for frame in (orders, order_items):
            for column in frame.columns:
                if frame[column].dtype == object:
                    frame[column] = frame[column].map(
                        lambda v: orjson.dumps(v).decode() if isinstance(v, list | dict) else v
                    )
        orders.to_parquet(Path(cache) / "orders.parquet")
        order_items.to_parquet(Path(cache) / "order_items.parquet")
        detail = f"{len(orders):,} orders"
    elif kind == "load":
        tables = omsframe.load(cache, tables=["orders", "order_items"])
        detail = f"{len(tables.orders):,} orders, {len(tables.order_items):,} items"
    elif kind == "flatten":
        raw = omsframe.load(cache, tables=["orders"], engine="pyarrow")  # warm the imports
        del raw
        from omsframe.merge import latest_per_key
        from omsframe.store import Store

        raw = Store(cache).read_table("raw_orders")  # each order's latest copy (see Store)
        raw = raw.filter(latest_per_key(raw["order_id"].combine_chunks(), raw["modified_date"]))
        texts = raw.column("record").to_pylist()
        started = time.perf_counter()
        records = [orjson.loads(t) for t in texts]
        flat = omsframe.flatten_orders(records)
        flat.to_pandas()
        detail = f"{flat.tables['orders'].num_rows:,} orders"
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if children.ru_maxrss:  # worker processes (ended by now)
        detail += f"; workers: {children.ru_maxrss / 1024:.0f} MiB peak each"
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    used = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    detail += f"; CPU {used:.1f} s"
    if children.ru_maxrss:
        detail += f" + workers {children.ru_utime + children.ru_stime:.1f} s"
    return {"kind": kind, "seconds": seconds, "peak_mib": peak_mib(), "detail": detail}


def run(kind: str, url: str, token: str, cache: str) -> dict[str, Any]:
    """Run a job in a child process."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.sync_compare", "--child", kind, url, token, cache],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        return {
            "kind": kind,
            "seconds": float("nan"),
            "peak_mib": float("nan"),
            "detail": "failed: " + (child.stderr.strip().splitlines() or ["?"])[-1][:80],
        }
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def snapshot(source: str, target: str) -> None:
    """A copy of a cache as it is: parquet files hard-linked (their inodes, sizes and times
    kept, so the copy's counts and index are as current as the source's), the rest copied.

    omsframe replaces a parquet file (a new file renamed over it), never changes it in place,
    so a sync on the copy leaves the source as it was; the lock file is written in place,
    hence copied.
    """
    shutil.copytree(
        source,
        target,
        copy_function=lambda src, dst: (
            os.link(src, dst) if src.endswith(".parquet") else shutil.copy2(src, dst)
        ),
    )


def summary(kind: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for the runs of a job: the median time (and the range), the largest peak."""
    times = sorted(r["seconds"] for r in runs)
    middle = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]  # (its detail)
    detail = middle["detail"]
    if len(runs) > 1:
        detail = f"median of {len(runs)} ({', '.join(f'{t:.2f}' for t in times)}); " + detail
    return {
        "kind": kind,
        "seconds": statistics.median(times),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "detail": detail,
    }


def start_server(
    program: str, orders: int
) -> tuple[subprocess.Popen[str], str, Callable[[str], str]]:
    """A simulator process running ``program`` on a shop of ``orders`` orders.

    Returns the process (closing its stdin ends it), its first line (URL and token), and a
    function that tells it a line and returns its answer.
    """
    server = subprocess.Popen(
        [sys.executable, "-c", program, str(orders)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None

    def command(line: str) -> str:
        """Tell the server process something; its answer."""
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(line + "\n")
        server.stdin.flush()
        return server.stdout.readline()

    return server, server.stdout.readline(), command


def measure_size(orders: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Every job's runs against one simulator of ``orders`` orders."""
    server, first, command = start_server(SERVER, orders)
    url, token = first.split()
    runs: dict[str, list[dict[str, Any]]] = {}

    def measure(kind: str, target: str) -> None:
        runs.setdefault(kind, []).append(run(kind, url, token, target))

    with tempfile.TemporaryDirectory() as tmp:
        cache, naive = os.path.join(tmp, "cache"), os.path.join(tmp, "naive")
        os.makedirs(naive)
        measure("sync-1", cache + "-1")
        shutil.rmtree(cache + "-1")
        for number in range(rounds):
            # each round on a new server of the same shop at the same moment, so that its
            # incrementals run minutes, not a quarter of an hour, after its full sync
            if number:
                url, token = command("reset").split()
            target = f"{cache}-{number}"
            measure("sync", target)
            measure("naive", naive)
            measure("naive-plain", naive)
            measure("naive-page", naive)
            # move the shop's clock until 1% of its orders are new or have changed state
            command("0.01 any")
            snapshot(target, f"{target}-any")
            measure("incremental-any", f"{target}-any")
            shutil.rmtree(f"{target}-any")
            # ... and on, until 1% of the orders there were at the sync have changed state
            # (the orders placed meanwhile come on top)
            command("0.01 state")
            snapshot(target, f"{target}-state")
            measure("incremental", f"{target}-state")
            if number + 1 < rounds:
                shutil.rmtree(target)
                shutil.rmtree(f"{target}-state")
        last = f"{cache}-{rounds - 1}-state"  # the last round's incremental: loaded
        for _ in range(rounds):
            measure("load", last)
        measure("flatten", last)
    assert server.stdin is not None
    server.stdin.close()  # (the server process ends)
    server.wait()
    return runs


def main() -> None:
    """Start a simulator per size, run every job, print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs of each measured job but sync-1 and flatten (medians reported); "
        "the full syncs and the naive loops take turns, so that a machine whose speed "
        "drifts slows both",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(job(*args.child)))
        return
    print("| orders | job | seconds | peak RSS MiB | detail |\n|---|---|---|---|---|")
    rounds: list[str] = []
    for orders in args.orders:
        runs = measure_size(orders, max(1, args.rounds))
        for kind, done in runs.items():
            result = summary(kind, done)
            print(
                f"| {orders:,} | {result['kind']} | {result['seconds']:.2f} | "
                f"{result['peak_mib']:.0f} | {result['detail']} |",
                flush=True,
            )
        rounds.append(f"{orders:,} orders, round by round: " + round_ratios(runs))
    print("\n" + "\n".join(f"- {line}" for line in rounds))


def round_ratios(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Each round's naive / sync (times faster) and incremental / sync (share), in Markdown.

    Last, each round's incremental / naive: the two targets (the full sync at least 5 times
    faster than the naive loop, the incremental under 5 % of the full sync) can both hold only
    where it is under 1 %, whatever the full sync's time (BENCHMARKS.md "Sync").

    Example:
        >>> run = lambda *seconds: [{"seconds": s} for s in seconds]
        >>> for part in round_ratios({"sync": run(20, 25), "naive": run(100, 110),
        ...         "incremental": run(1, 1.5), "incremental-any": run(0.5, 0.6)}).split("; "):
        ...     print(part)
        naive / sync 5.00x, 4.40x
        incremental / sync 5.0 %, 6.0 %
        incremental-any / sync 2.5 %, 2.4 %
        incremental / naive 1.00 %, 1.36 %
    """

    def share(kind: str, base: str, digits: int) -> str:
        pairs = zip(runs[kind], runs[base], strict=True)
        return f"{kind} / {base} " + ", ".join(
            f"{r['seconds'] / b['seconds'] * 100:.{digits}f} %" for r, b in pairs
        )

    full = [r["seconds"] for r in runs["sync"]]
    parts = [
        "naive / sync "
        + ", ".join(f"{n['seconds'] / s:.2f}x" for n, s in zip(runs["naive"], full, strict=True)),
        share("incremental", "sync", 1),
        share("incremental-any", "sync", 1),
        share("incremental", "naive", 2),
    ]
    if "naive-page" in runs:  # (the loop at the sync's page size)
        parts.insert(
            1,
            "naive-page / sync "
            + ", ".join(
                f"{n['seconds'] / s:.2f}x" for n, s in zip(runs["naive-page"], full, strict=True)
            ),
        )
    return "; ".join(parts)


if __name__ == "__main__":
    main()
