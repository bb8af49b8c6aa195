"""Benchmark: paging a whole order list, the concurrent client against a one-at-a-time loop.

Run with ``python -m bench.client_paging`` (``--help`` for the options). It reads every order
of a simulated shop (full orders, ``page_size`` 100) from the same simulator with:

- ``sequential``: a plain loop over ``httpx.Client.get`` (one request at a time, ``orjson``
  parsing, follow ``next`` until it is null): the floor any client should beat;
- ``client cN``: :meth:`omsframe.client.Client.orders` at ``concurrency=N``.

Each measurement runs in a fresh Python process, so that its peak RSS (``ru_maxrss``) is its
own: the table gives the rise of peak RSS over the RSS before the read, and separately the
``tracemalloc`` peak of one more, untimed, run. Timed runs are interleaved and the median of
``--runs`` is reported, with the spread, because shared machines are noisy.

The simulator runs in a subprocess by default (``--server subprocess``): a Python HTTP server
in the measuring process would compete with the client for the GIL. ``--latency`` adds that
many seconds to every answer (the simulator's ``slow`` fault at rate 1), to stand for the round
trip and query time of a remote OMS; the default runs 0 and 0.05 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import orjson

ORDERS_PATH = "/api/v1/oms/orders/"


# --- the server -----------------------------------------------------------------------------
def serve(orders: int, latency: float) -> None:
    """Serve a simulated shop until stdin closes; print the URL and token first."""
    from omsframe.simulator.faults import Faults
    from omsframe.simulator.server import SimulatorServer
    from omsframe.simulator.world import World

    world = World.generate(seed=1, orders=orders)
    faults = Faults(rate_slow=1.0 if latency else 0.0, slow_seconds=latency)
    with SimulatorServer(world, port=0, faults=faults) as server:
        print(json.dumps({"url": server.url, "token": server.token}), flush=True)
        sys.stdin.read()


@contextmanager
def server_process(orders: int, latency: float) -> Iterator[tuple[str, str]]:
    """A simulator in a subprocess; yields its URL and token."""
    command = [sys.executable, "-m", "bench.client_paging", "--serve", "--orders", str(orders)]
    command += ["--latency", str(latency)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())
        yield first["url"], first["token"]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


# --- one measurement (in its own process) ---------------------------------------------------
def cpu_seconds() -> float:
    """CPU time of this process so far (user and system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def current_rss_kib() -> int:
    """The resident set size now, in KiB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def read_sequential(url: str, token: str, page_size: int) -> int:
    """Every order, one request at a time."""
    records = 0
    headers = {"Authorization": f"Token {token}"}
    with httpx.Client(headers=headers, timeout=60) as http:
        page = 1
        while True:
            params: dict[str, str | int] = {"page": page, "limit": page_size, "ordering": "id"}
            response = http.get(url + ORDERS_PATH, params=params)
            response.raise_for_status()
            body = orjson.loads(response.content)
            records += len(body["results"])
            if not body["next"]:
                return records
            page += 1


def read_client(url: str, token: str, page_size: int, concurrency: int) -> int:
    """Every order through the client."""
    from omsframe.client import Client

    records = 0
    with Client(url, token=token, page_size=page_size, concurrency=concurrency, timeout=60) as oms:
        for page in oms.orders().pages():
            records += len(page.records)
    return records


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One timed read (or one ``tracemalloc`` read); the figures as a dict."""
    from omsframe import client as _warm  # noqa: F401  (imports before the baseline)

    with ExitStack() as stack:
        if args.url is None:
            url, token = stack.enter_context(server_in_thread(args.orders, args.latency))
        else:
            url, token = args.url, args.token
        if args.tracemalloc:
            tracemalloc.start()
        before = current_rss_kib()
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        if args.mode == "sequential":
            records = read_sequential(url, token, args.page_size)
        else:
            records = read_client(url, token, args.page_size, args.concurrency)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        traced = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
    return {
        "records": records,
        "seconds": seconds,
        "cpu_ms_per_page": cpu * 1000 / math.ceil(records / args.page_size),
        "rss_rise_mib": max(0, peak_kib - before) / 1024,
        "traced_mib": traced / 2**20,
    }


@contextmanager
def server_in_thread(orders: int, latency: float) -> Iterator[tuple[str, str]]:
    """A simulator in a thread of this process (it competes for the GIL)."""
    from omsframe.simulator.faults import Faults
    from omsframe.simulator.server import SimulatorServer
    from omsframe.simulator.world import World

    world = World.generate(seed=1, orders=orders)
    faults = Faults(rate_slow=1.0 if latency else 0.0, slow_seconds=latency)
    with SimulatorServer(world, port=0, faults=faults) as server:
        yield server.url, server.token


# --- the driver -----------------------------------------------------------------------------
def run_one(
    config: tuple[str, int],
    args: argparse.Namespace,
    where: tuple[str, str] | None,
    latency: float,
    *,
    traced: bool = False,
) -> dict[str, Any]:
    """One measurement in a fresh process."""
    mode, concurrency = config
    command = [sys.executable, "-m", "bench.client_paging", "--measure", mode]
    command += ["--concurrency", str(concurrency), "--page-size", str(args.page_size)]
    command += ["--orders", str(args.orders), "--latency", str(latency)]
    if where is not None:
        command += ["--url", where[0], "--token", where[1]]
    if traced:
        command.append("--tracemalloc")
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["records"] != args.orders:
        raise SystemExit(f"{mode} c{concurrency}: read {result['records']} of {args.orders}")
    return result


def bench_latency(
    args: argparse.Namespace, latency: float
) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    configs = [("sequential", 1)] + [("client", c) for c in args.concurrency]
    timed: dict[tuple[str, int], list[dict[str, Any]]] = {config: [] for config in configs}
    traced: dict[tuple[str, int], dict[str, Any]] = {}

    @contextmanager
    def place() -> Iterator[tuple[str, str] | None]:
        if args.server == "subprocess":
            with server_process(args.orders, latency) as where:
                yield where
        else:
            yield None

    with place() as where:
        run_one(configs[0], args, where, latency)  # warm the server and the OS; not counted
        for run in range(args.runs):
            for config in configs if run % 2 == 0 else reversed(configs):
                timed[config].append(run_one(config, args, where, latency))
                print(
                    f"  latency {latency}s run {run + 1} {config}: "
                    f"{args.orders / timed[config][-1]['seconds']:,.0f} orders/s",
                    file=sys.stderr,
                )
        for config in configs:
            traced[config] = run_one(config, args, where, latency, traced=True)
    rows = []
    for mode, concurrency in configs:
        label = (
            "sequential httpx loop"
            if mode == "sequential"
            else f"Client, concurrency {concurrency}"
        )
        rows.append((label, timed[(mode, concurrency)], traced[(mode, concurrency)]))
    return rows


def main() -> None:
    """Run the benchmark (or, internally, one measurement or the server) and print Markdown."""
    parser = argparse.ArgumentParser(description="Paging a whole order list: client vs a loop.")
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 2, 4, 8, 16]
    )
    parser.add_argument(
        "--latencies", type=lambda s: [float(c) for c in s.split(",")], default=[0.0, 0.05]
    )
    parser.add_argument("--server", choices=["subprocess", "thread"], default="subprocess")
    # internal: one measurement, or the server process
    parser.add_argument("--measure", choices=["sequential", "client"], dest="mode")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args()
    if args.serve:
        serve(args.orders, args.latency)
        return
    if args.mode:
        if isinstance(args.concurrency, list):
            args.concurrency = args.concurrency[0]
        print(json.dumps(measure(args)))
        return

    print(
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{platform.machine()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{args.orders:,} full orders, page_size {args.page_size}, simulator in a {args.server}, "
        f"median of {args.runs} runs [min-max]\n"
    )
    for latency in args.latencies:
        rows = bench_latency(args, latency)
        print(f"\nadded latency per request: {latency * 1000:.0f} ms\n")
        print(
            "| reader | orders/s | seconds | client CPU/page | peak RSS rise | tracemalloc peak |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for label, runs, traced in rows:
            rates = sorted(args.orders / r["seconds"] for r in runs)
            seconds = statistics.median(r["seconds"] for r in runs)
            cpu = statistics.median(r["cpu_ms_per_page"] for r in runs)
            rss = statistics.median(r["rss_rise_mib"] for r in runs)
            print(
                f"| {label} | {statistics.median(rates):,.0f} [{rates[0]:,.0f}-{rates[-1]:,.0f}] "
                f"| {seconds:.2f} | {cpu:.1f} ms | {rss:.0f} MiB | {traced['traced_mib']:.1f} MiB |"
            )


if __name__ == "__main__":
    main()
