"""Benchmark: how fast the simulator generates a shop and serves pages on loopback.

Run with ``make bench`` (or ``python -m bench.simulator_throughput``; ``--help`` for the
options). Prints a Markdown table to paste into BENCHMARKS.md.

The simulator runs in a subprocess, as in the client benchmarks (a Python HTTP server in the
measuring process would compete with the client for the GIL); the client is ``httpx`` in this
process, reading ``--pages`` distinct pages of 100 objects and keeping only their length. Each
figure is the median of ``--runs`` interleaved runs, with the lowest and highest in brackets,
because shared machines are noisy. Besides pages per second (wall clock, client included), the
table gives the server's CPU time per page, read from the server process: it is what one page
costs the simulator, and it is less sensitive to other jobs on the machine than wall time.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np

from omsframe.simulator.server import SimulatorServer
from omsframe.simulator.world import World

PATHS = {"orders": "/api/v1/oms/orders/", "events": "/api/v1/oms/orders/webhook-events/"}
# (what, client threads, gzip)
CONFIGS: tuple[tuple[str, int, bool], ...] = (
    ("orders", 1, False),
    ("orders", 1, True),
    ("orders", 4, False),
    ("events", 1, False),
)


def world_nbytes(world: World) -> int:
    """Bytes held by the world's numpy arrays."""
    total = 0
    for field in dataclasses.fields(world):
        value = getattr(world, field.name)
        if isinstance(value, np.ndarray):
            total += value.nbytes
    return total


def peak_rss_mib() -> float:
    """This process's peak resident set size, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the server process ---------------------------------------------------------------------
def serve(orders: int) -> None:
    """Generate a shop and serve it; answer ``cpu`` lines on stdin until stdin closes."""
    started = time.perf_counter()
    world = World.generate(seed=1, orders=orders)
    generated = time.perf_counter() - started
    facts = {
        "generate_s": generated,
        "arrays_mib": world_nbytes(world) / 2**20,
        "rss_mib": peak_rss_mib(),
    }
    with SimulatorServer(world, port=0) as server:
        print(json.dumps({"url": server.url, "token": server.token, **facts}), flush=True)
        for _line in sys.stdin:
            print(json.dumps({"cpu": time.process_time(), "rss_mib": peak_rss_mib()}), flush=True)


class ServerProcess:
    """A simulator in a subprocess: its URL, token, generation facts and CPU clock."""

    def __init__(self, orders: int) -> None:
        command = [sys.executable, "-m", "bench.simulator_throughput", "--serve"]
        command += ["--orders", str(orders)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.facts: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the simulator process ended without answering")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self) -> dict[str, Any]:
        """The server process's CPU seconds so far and its peak RSS."""
        assert self.process.stdin is not None
        self.process.stdin.write("cpu\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        """End the server process."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@contextmanager
def server_process(orders: int) -> Iterator[ServerProcess]:
    """Run the simulator in a subprocess for the duration of a ``with`` block."""
    server = ServerProcess(orders)
    try:
        yield server
    finally:
        server.close()


# --- the client -----------------------------------------------------------------------------
def read_pages(
    server: ServerProcess, what: str, pages: int, workers: int, gzip: bool
) -> tuple[float, float]:
    """Fetch ``pages`` distinct pages of 100; pages per second and server CPU ms per page."""
    headers = {"Authorization": f"Token {server.facts['token']}"}
    if not gzip:
        headers["Accept-Encoding"] = "identity"
    with httpx.Client(base_url=server.facts["url"], headers=headers, timeout=60) as http:

        def fetch(page: int) -> int:
            params: dict[str, str | int] = {"page": page, "limit": 100, "ordering": "id"}
            response = http.get(PATHS[what], params=params)
            response.raise_for_status()
            return len(response.content)

        fetch(1)  # warm up: the connection, the query engine's selection
        cpu_before = server.ask()["cpu"]
        started = time.perf_counter()
        with cf.ThreadPoolExecutor(workers) as pool:
            list(pool.map(fetch, range(1, pages + 1)))
        seconds = time.perf_counter() - started
        cpu = server.ask()["cpu"] - cpu_before
    return pages / seconds, cpu / pages * 1000


def spread(values: list[float], fmt: str) -> str:
    """The median of ``values``, with the lowest and highest in brackets."""
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:{fmt}} [{low:{fmt}}–{high:{fmt}}]"


def main() -> None:
    """Run the benchmark and print the results as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.orders)
        return

    pages = max(1, min(args.pages, args.orders // 100))
    generation: list[dict[str, Any]] = []
    rates: dict[tuple[str, int, bool], list[float]] = {config: [] for config in CONFIGS}
    costs: dict[tuple[str, int, bool], list[float]] = {config: [] for config in CONFIGS}
    served_rss: list[float] = []
    for run in range(args.runs):
        with server_process(args.orders) as server:  # a new server per run: generation too
            generation.append(server.facts)
            for config in CONFIGS if run % 2 == 0 else reversed(CONFIGS):
                what, workers, gzip = config
                rate, cost = read_pages(server, what, pages, workers, gzip)
                rates[config].append(rate)
                costs[config].append(cost)
                print(f"  run {run + 1} {config}: {rate:.0f} pages/s", file=sys.stderr)
            served_rss.append(server.ask()["rss_mib"])

    rows: list[tuple[str, str]] = [
        (
            f"generate {args.orders:,} orders",
            spread([g["generate_s"] for g in generation], ".2f") + " s",
        ),
        ("world arrays", f"{generation[0]['arrays_mib']:.1f} MiB"),
        (
            "server peak RSS after generation",
            spread([g["rss_mib"] for g in generation], ".0f") + " MiB",
        ),
    ]
    for config in CONFIGS:
        what, workers, gzip = config
        kind = "full orders" if what == "orders" else "webhook events (with payload)"
        setting = f"{workers} client thread{'s' * (workers > 1)}, gzip {'on' if gzip else 'off'}"
        per_second = statistics.median(rates[config]) * 100
        value = f"{spread(rates[config], '.0f')} pages/s (= {per_second:,.0f} {what}/s)"
        rows.append((f"pages of 100 {kind}, {setting}", value))
        rows.append(
            (f"server CPU per page of {kind}, {setting}", spread(costs[config], ".2f") + " ms")
        )
    rows.append(("server peak RSS after serving", spread(served_rss, ".0f") + " MiB"))

    cpus = len(os.sched_getaffinity(0))
    print(
        f"machine: {platform.machine()}, {cpus} CPUs, Python {platform.python_version()}; "
        f"median of {args.runs} runs [lowest–highest], {pages} pages per measure\n"
    )
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
