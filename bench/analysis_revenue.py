"""Benchmark: revenue by day x channel on the items of 100,000 orders, pandas vs polars input.

The tables come from the simulator through the real flattening (``render.order_object`` ->
``iter_flatten_orders``), as a sync would write them, without the HTTP round trip; events and
state history are left out (the simulator's items carry their own cancellation and refund
states, so the ledger does not need them). Each engine gets the same tables: pandas with exact
``decimal128`` (``pd.ArrowDtype``) money as ``omsframe.load`` returns it, polars via
``pl.from_arrow``.

Timed, per engine: ``ledger(tables)``; ``revenue(book, by="day", dims=["channel"])`` on that
ledger; the whole call from the tables; and, as the floor, a hand-written group-by of the
items' ``net_amount`` by Istanbul day, channel and currency in the same library (no event
dating of returns, no other measures). Each figure is the median of ``--runs`` interleaved
runs, with the lowest and highest in brackets.

Run: ``python -m bench.analysis_revenue [--orders 100000] [--runs 5]``; prints Markdown.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa

from omsframe.analysis import ledger, revenue
from omsframe.flatten import iter_flatten_orders
from omsframe.load import to_pandas
from omsframe.simulator import render
from omsframe.simulator.world import World

TZ = "Europe/Istanbul"


def build_tables(orders: int) -> dict[str, pa.Table]:
    """Orders and items of a simulated shop of ``orders`` orders, flattened as a sync does."""
    world = World.generate(seed=5, orders=orders)
    now = world.end_us
    records = (render.order_object(world, i, now) for i in range(world.visible_orders(now)))
    parts: dict[str, list[pa.Table]] = {"orders": [], "order_items": []}
    for batch in iter_flatten_orders(records, batch_size=5_000):
        for name, tables in parts.items():
            tables.append(batch.tables[name])
    return {name: pa.concat_tables(tables) for name, tables in parts.items()}


def pandas_floor(tables: dict[str, Any]) -> Any:
    """Net amount by Istanbul day, channel and currency, by hand in pandas."""
    items = tables["order_items"][["order_id", "net_amount", "price_currency"]]
    orders = tables["orders"][["order_id", "channel_name", "date_placed"]]
    rows = items.merge(orders, on="order_id", how="left")
    day = rows["date_placed"].dt.tz_convert(TZ).dt.tz_localize(None).dt.floor("D")
    keys = [day.rename("day"), rows["channel_name"], rows["price_currency"]]
    return rows.groupby(keys)["net_amount"].sum()


def polars_floor(tables: dict[str, Any]) -> Any:
    """Net amount by Istanbul day, channel and currency, by hand in polars."""
    items = tables["order_items"].select("order_id", "net_amount", "price_currency")
    orders = tables["orders"].select("order_id", "channel_name", "date_placed")
    day = pl.col("date_placed").dt.convert_time_zone(TZ).dt.replace_time_zone(None).dt.date()
    return (
        items.join(orders, on="order_id", how="left")
        .group_by(day.alias("day"), "channel_name", "price_currency")
        .agg(pl.col("net_amount").sum())
    )


def timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    """Build the tables once, time each step per engine, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    arrow = build_tables(args.orders)
    built = time.perf_counter() - started
    engines: dict[str, dict[str, Any]] = {
        "pandas": {name: to_pandas(table) for name, table in arrow.items()},
        "polars": {name: pl.from_arrow(table) for name, table in arrow.items()},
    }
    books = {engine: ledger(tables, tz=TZ) for engine, tables in engines.items()}
    steps: dict[str, Callable[[str], Any]] = {
        "ledger(tables)": lambda e: ledger(engines[e], tz=TZ),
        "revenue(ledger, day x channel)": lambda e: revenue(books[e], by="day", dims=["channel"]),
        "revenue(tables, day x channel)": lambda e: revenue(
            engines[e], by="day", dims=["channel"], tz=TZ
        ),
        "floor: hand-written group-by of net_amount": lambda e: (
            pandas_floor if e == "pandas" else polars_floor
        )(engines[e]),
    }
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for step, work in steps.items():
            for engine in engines:
                times.setdefault((step, engine), []).append(timed(partial(work, engine)))
    items = arrow["order_items"].num_rows
    result = revenue(books["polars"], by="day", dims=["channel"])
    print(
        f"{args.orders:,} orders, {items:,} items, {len(books['pandas']):,} ledger rows, "
        f"{result.height:,} revenue rows; tables built in {built:.0f} s; "
        f"Python {platform.python_version()}, pandas {pd.__version__}, polars {pl.__version__}, "
        f"median of {args.runs} runs [min-max]\n"
    )
    print("| step | pandas s | polars s | pandas / polars |")
    print("|---|---|---|---|")
    for step in steps:
        cells = []
        for engine in engines:
            values = times[(step, engine)]
            cells.append(f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]")
        ratio = statistics.median(times[(step, "pandas")]) / statistics.median(
            times[(step, "polars")]
        )
        print(f"| {step} | {cells[0]} | {cells[1]} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
