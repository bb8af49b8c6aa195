"""The ``omsframe`` command: ``omsframe simulate`` and ``omsframe demo``.

Example:
    $ omsframe simulate --orders 5000 --seed 7 --port 8765
    $ omsframe demo
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import click
import httpx

from omsframe import __version__
from omsframe.simulator.server import Clock, Dialect, Faults, SimulatorServer
from omsframe.simulator.world import World

_DATE = click.DateTime(formats=["%Y-%m-%d"])


@click.group()
@click.version_option(__version__, prog_name="omsframe")
def main() -> None:
    """omsframe: Akinon OMS orders as exact, tidy tables."""


def _world(orders: int, seed: int, start: dt.datetime, end: dt.datetime) -> World:
    return World.generate(seed=seed, orders=orders, start=start.date(), end=end.date())


@main.command()
@click.option("--orders", default=10_000, show_default=True, help="Orders in the shop.")
@click.option("--seed", default=0, show_default=True, help="Random seed of the shop.")
@click.option("--start", type=_DATE, default="2024-01-01", show_default=True, help="First day.")
@click.option("--end", type=_DATE, default="2025-12-01", show_default=True, help="Last day.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, help="Port (0 picks a free one).")
@click.option("--token", default="sim-token", show_default=True, help="Static API token.")
@click.option("--ignore-filters", is_flag=True, help="Silently ignore every filter.")
@click.option("--ignore-ordering", is_flag=True, help="Silently ignore `ordering`.")
@click.option("--default-ordering", default="-id", show_default=True, help="Ordering by default.")
@click.option("--max-page-size", default=1000, show_default=True, help="Largest `limit` served.")
@click.option("--rate-429", default=0.0, help="Share of requests answered 429.")
@click.option("--rate-5xx", default=0.0, help="Share answered 500/502/503/504.")
@click.option("--rate-slow", default=0.0, help="Share answered slowly.")
@click.option("--rate-truncated", default=0.0, help="Share with a truncated body.")
@click.option("--rate-dropped", default=0.0, help="Share whose connection is dropped.")
@click.option("--rate-invalid-json", default=0.0, help="Share answered with invalid JSON.")
@click.option("--rate-drift", default=0.0, help="Share of orders with schema drift.")
@click.option(
    "--live-step", default=0.0, show_default=True, help="Shop minutes that pass per request."
)
def simulate(
    orders: int,
    seed: int,
    start: dt.datetime,
    end: dt.datetime,
    host: str,
    port: int,
    token: str,
    ignore_filters: bool,
    ignore_ordering: bool,
    default_ordering: str,
    max_page_size: int,
    rate_429: float,
    rate_5xx: float,
    rate_slow: float,
    rate_truncated: float,
    rate_dropped: float,
    rate_invalid_json: float,
    rate_drift: float,
    live_step: float,
) -> None:
    """Serve a simulated OMS over HTTP until interrupted (Ctrl-C)."""
    world = _world(orders, seed, start, end)
    server = SimulatorServer(
        world,
        token=token,
        host=host,
        port=port,
        dialect=Dialect(
            honour_filters=not ignore_filters,
            honour_ordering=not ignore_ordering,
            default_ordering=default_ordering,
            max_page_size=max_page_size,
        ),
        faults=Faults(
            seed=seed,
            rate_429=rate_429,
            rate_5xx=rate_5xx,
            rate_slow=rate_slow,
            rate_truncated=rate_truncated,
            rate_dropped=rate_dropped,
            rate_invalid_json=rate_invalid_json,
            rate_drift=rate_drift,
        ),
        clock=Clock(step_per_request=dt.timedelta(minutes=live_step)),
    )
    with server:
        click.echo(f"OMS simulator serving {world.n_orders} orders (seed {seed})")
        click.echo(f"  url:      {server.url}")
        click.echo(f"  token:    {token}   (header `Authorization: Token {token}`)")
        click.echo(f"  login:    {server.username} / {server.password}")
        example = f"{server.url}/api/v1/oms/orders/?limit=1"
        click.echo(f"  try:      curl -H 'Authorization: Token {token}' '{example}'")
        click.echo("Press Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped")


@main.command()
@click.option("--orders", default=5_000, show_default=True, help="Orders in the demo shop.")
@click.option("--seed", default=0, show_default=True, help="Random seed of the demo shop.")
def demo(orders: int, seed: int) -> None:
    """Start the simulator and show what it serves (the main job grows with the loader)."""
    started = time.perf_counter()
    world = World.generate(seed=seed, orders=orders)
    took = time.perf_counter() - started
    click.echo(f"generated a shop of {world.n_orders} orders in {took:.2f}s")
    with SimulatorServer(world, port=0) as server:
        click.echo(f"OMS simulator listening at {server.url}")
        headers = {"Authorization": f"Token {server.token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            _show(http)


def _get(http: httpx.Client, path: str, **params: Any) -> Any:
    response = http.get(path, params=params)
    response.raise_for_status()
    return response.json()


def _show(http: httpx.Client) -> None:
    base = "/api/v1/oms/orders/"
    first = _get(http, base, limit=100, ordering="id")
    click.echo(f"\n{base}  count={first['count']}  next={first['next']}")
    states: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    gross: dict[str, Decimal] = {}
    items = 0
    for order in first["results"]:
        states[f"{order['state']['enum_value']} {order['state']['name']}"] += 1
        channels[order["channel"]["name"]] += 1
        for item in order["orderitem_set"]:
            items += 1
            currency = item["price_currency"].upper()
            gross[currency] = gross.get(currency, Decimal(0)) + Decimal(item["price"])
    click.echo(f"first page: {len(first['results'])} orders, {items} items")
    click.echo("  by state:   " + ", ".join(f"{k} ×{v}" for k, v in states.most_common()))
    click.echo("  by channel: " + ", ".join(f"{k} ×{v}" for k, v in channels.most_common()))
    click.echo("  gross:      " + ", ".join(f"{v} {k}" for k, v in sorted(gross.items())))
    sample = first["results"][0]
    click.echo(
        f"\nsample order {sample['number']} placed {sample['date_placed']}, "
        f"{sample['payment_type']}, {sample['delivery_type']}, "
        f"ship to {sample['shipping_address']['city']['name']}"
    )
    for item in sample["orderitem_set"]:
        click.echo(
            f"  {item['product']['sku']:<18} {item['product']['name']:<40} "
            f"price {item['price']:>9} list {item['retail_price']:>9} "
            f"discount {item['discount_amount']:>8} {item['price_currency'].upper()}"
        )
    events = _get(http, base + "webhook-events/short/", limit=1)
    click.echo(f"\n{base}webhook-events/  count={events['count']}")
    for path in ("delivery-types/", "payment-types/"):
        values = [entry["value"] for entry in _get(http, base + path)]
        click.echo(f"{base}{path}  {', '.join(values)}")
    click.echo("\nRun `omsframe simulate` to keep a simulator running for your own requests.")


if __name__ == "__main__":
    main()
