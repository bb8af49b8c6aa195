"""Benchmark: how fast the simulator generates a shop and serves pages on loopback.

Run with ``make bench`` (or ``python -m bench.simulator_throughput``). Prints a Markdown table
to paste into BENCHMARKS.md. The figures are for one machine; compare rows of one run.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import platform
import resource
import time

import httpx
import numpy as np

from omsframe.simulator.server import SimulatorServer
from omsframe.simulator.world import World


def world_nbytes(world: World) -> int:
    """Bytes held by the world's numpy arrays."""
    total = 0
    for field in dataclasses.fields(world):
        value = getattr(world, field.name)
        if isinstance(value, np.ndarray):
            total += value.nbytes
    return total


def pages_per_second(
    url: str, token: str, pages: int, limit: int, workers: int, gzip: bool
) -> float:
    """Fetch ``pages`` distinct pages of ``limit`` full orders with ``workers`` threads."""
    headers = {"Authorization": f"Token {token}"}
    if not gzip:
        headers["Accept-Encoding"] = "identity"
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:

        def fetch(page: int) -> int:
            response = http.get(
                "/api/v1/oms/orders/", params={"page": page, "limit": limit, "ordering": "id"}
            )
            response.raise_for_status()
            return len(response.content)

        fetch(1)  # warm up
        started = time.perf_counter()
        with cf.ThreadPoolExecutor(workers) as pool:
            list(pool.map(fetch, range(1, pages + 1)))
        return pages / (time.perf_counter() - started)


def main() -> None:
    """Run the benchmark and print the results as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()

    rows: list[tuple[str, str]] = []
    started = time.perf_counter()
    world = World.generate(seed=1, orders=args.orders)
    rows.append((f"generate {args.orders:,} orders", f"{time.perf_counter() - started:.2f} s"))
    rows.append(("world arrays", f"{world_nbytes(world) / 2**20:.1f} MiB"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("process peak RSS after generation", f"{peak:.0f} MiB"))
    pages = min(args.pages, args.orders // 100)
    with SimulatorServer(world, port=0) as server:
        for workers, gzip in ((1, False), (1, True), (4, False)):
            rate = pages_per_second(server.url, server.token, pages, 100, workers, gzip)
            compression = "on" if gzip else "off"
            label = f"pages of 100 full orders/s, {workers} client thread(s), gzip {compression}"
            rows.append((label, f"{rate:.0f} pages/s = {rate * 100:,.0f} orders/s"))
    print(f"machine: {platform.machine()}, Python {platform.python_version()}\n")
    print("| measure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
