"""Micro-benchmark: upserting flattened batches of orders into an empty parquet store.

Simulator orders (``World.generate``, rendered in id order as a full sync reads them) are
flattened in batches of ``--batch`` before the clock starts; then every batch goes through
``Store.upsert_orders`` and ``Store.upsert_entities``, as ``omsframe.sync`` calls them, into a
new empty store in a temporary folder. Prints the seconds spent in each, and their total.

Run: ``python -m bench.store_upsert`` (defaults: ``--orders 100000 --batch 2000``, that is 50
batches). ``--order random`` deals the orders to the batches at random, so that every batch
touches every month partition (as an incremental sync of changes scattered over the whole
history does). ``--events N`` adds a pass of ``Store.upsert_events`` over the shop's first
``N`` webhook events, in batches of ``--batch`` (rendering events is slow: 4 s per 10,000).
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from typing import Any

from omsframe.flatten import Flattened, flatten_events, flatten_orders
from omsframe.privacy import Privacy
from omsframe.simulator import render
from omsframe.simulator.world import World
from omsframe.store import Store


def batches(
    world: World, size: int, privacy: Privacy, *, shuffle: bool = False
) -> list[tuple[Flattened, list[dict[str, Any]]]]:
    """The shop's orders flattened ``size`` at a time (with their raw records), in id order."""
    now = world.end_us
    order = list(range(world.visible_orders(now)))
    if shuffle:
        random.Random(world.n_orders).shuffle(order)
    result = []
    for start in range(0, len(order), size):
        records = [render.order_object(world, i, now) for i in order[start : start + size]]
        flat = flatten_orders(records, privacy=privacy)  # strips the secrets in place
        result.append((flat, records))
    return result


def event_batches(
    world: World, count: int, size: int, privacy: Privacy
) -> list[tuple[Flattened, list[dict[str, Any]]]]:
    """The shop's first ``count`` webhook events, flattened ``size`` at a time (with raw)."""
    now = world.end_us
    total = min(count, world.visible_events(now))
    result = []
    for start in range(0, total, size):
        records = [
            render.event_object(world, i, now) for i in range(start, min(total, start + size))
        ]
        result.append((flatten_events(records, privacy=privacy), records))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--order", choices=["id", "random"], default="id")
    parser.add_argument("--events", type=int, default=0, help="time upsert_events on N events")
    args = parser.parse_args(argv)

    privacy = Privacy(key=b"k" * 32)
    started = time.perf_counter()
    world = World.generate(seed=args.seed, orders=args.orders)
    prepared = batches(world, args.batch, privacy, shuffle=args.order == "random")
    events = event_batches(world, args.events, args.batch, privacy)
    print(
        f"prepared {len(prepared)} batches of up to {args.batch} orders"
        + (f" and {len(events)} batches of events" if events else "")
        + f" in {time.perf_counter() - started:.1f} s (not timed)"
    )
    observed = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    spent = {"upsert_orders": 0.0, "upsert_entities": 0.0, "upsert_events": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        store = Store(folder)
        for flat, raw in prepared:
            clock = time.perf_counter()
            store.upsert_orders(flat, raw, policy=privacy.mode, observed_at=observed)
            spent["upsert_orders"] += time.perf_counter() - clock
            clock = time.perf_counter()
            store.upsert_entities(flat, policy=privacy.mode)
            spent["upsert_entities"] += time.perf_counter() - clock
        for flat, raw in events:
            clock = time.perf_counter()
            store.upsert_events(flat, raw, policy=privacy.mode)
            spent["upsert_events"] += time.perf_counter() - clock
        rows, months = store.counts(), len(store.months("orders"))
    print(
        f"stored {rows['orders']} orders in {months} months, "
        f"{rows['customers']} customers, {rows['products']} products, {rows['events']} events"
    )
    for name, seconds in spent.items():
        if name != "upsert_events" or events:
            print(f"{name:16s} {seconds:7.2f} s")
    print(f"{'total':16s} {sum(spent.values()):7.2f} s")


if __name__ == "__main__":
    main()
