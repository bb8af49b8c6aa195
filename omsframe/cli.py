"""The ``omsframe`` command: ``omsframe simulate`` and ``omsframe demo``.

Example:
    $ omsframe simulate --orders 5000 --seed 7 --port 8765
    $ omsframe demo
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from omsframe._version import __version__
from omsframe.errors import CacheError, ConfigError, OmsframeError
from omsframe.schema import TABLES
from omsframe.simulator.server import Clock, Dialect, Faults, SimulatorServer
from omsframe.simulator.world import World, to_us

_DATE = click.DateTime(formats=["%Y-%m-%d"])
_SHARE = click.FloatRange(0.0, 1.0)


class _Group(click.Group):
    """Errors as one line on stderr and exit code 1, no traceback (``OMSFRAME_DEBUG=1``: shown).

    Ctrl-C exits with 130 and says how to go on.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["omsframe.json"] = "--json" in args  # (an error then says itself as JSON too)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        wants_json = bool(ctx.meta.get("omsframe.json"))
        try:
            return super().invoke(ctx)
        except OmsframeError as error:
            _fail(str(error), type(error).__name__, wants_json, 1)
        except click.ClickException as error:  # a usage error: click says it (exit 2)
            if wants_json:
                click.echo(json.dumps({"error": error.format_message(), "kind": "UsageError"}))
            raise
        except KeyboardInterrupt:
            _fail(
                "interrupted; what was stored is kept: run the same command again to go on "
                "(a sync resumes from its last checkpoint)",
                "KeyboardInterrupt",
                wants_json,
                130,
            )
        except (OSError, ValueError) as error:  # a folder that cannot be written, a port in use
            if os.environ.get("OMSFRAME_DEBUG"):
                raise
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            _fail(f"{reason} (OMSFRAME_DEBUG=1 shows where)", type(error).__name__, wants_json, 1)


def _fail(message: str, kind: str, as_json: bool, code: int) -> NoReturn:
    """One line on stderr (and, for ``--json``, ``{"error", "kind"}`` on stdout), then exit."""
    if as_json:
        click.echo(json.dumps({"error": message, "kind": kind}))
    click.echo(f"omsframe: {message}", err=True)
    sys.exit(code)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="omsframe")
def main() -> None:
    """omsframe: Akinon OMS orders as exact, tidy tables.

    \b
    Typical use:
      export OMSFRAME_TOKEN=...            (or OMSFRAME_USERNAME and OMSFRAME_PASSWORD)
      omsframe sync --url https://acme-oms.akinon.net
      omsframe status --cache data/acme-oms.akinon.net
      omsframe export --cache data/acme-oms.akinon.net --format csv --out exports/
    """  # noqa: D301 (click's \b, which keeps the lines as they are, is a backspace character)


_CACHE = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Cache folder (default: data/<host of the URL>).",
)
DEMO_CACHE = Path("data/demo")
#: ``--cache`` of the commands that read a cache (they take no URL)
_CACHE_READ = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEMO_CACHE,
    help="Cache folder (default: data/demo, the cache of `omsframe demo`).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(value.to_dict() if hasattr(value, "to_dict") else value, default=str))
    else:
        click.echo(str(value))


@main.command(name="sync")
@click.option("--url", envvar="OMSFRAME_URL", help="OMS base URL (or OMSFRAME_URL).")
@_CACHE
@click.option("--full", is_flag=True, help="Read every order, not only what changed.")
@click.option("--no-events", is_flag=True, help="Skip the webhook events.")
@click.option(
    "--lookback",
    default=30,
    show_default=True,
    type=click.IntRange(min=0),
    help="Minutes before the cursor to re-read.",
)
@click.option(
    "--pii",
    type=click.Choice(["pseudonymize", "keep", "drop"]),
    help="PII policy of a new cache (default pseudonymize).",
)
@click.option(
    "--since",
    help=(
        "A new cache holds only the orders placed (events made) from this day on, UTC "
        "(YYYY-MM-DD or YYYY-MM); later syncs keep it; an earlier day widens it."
    ),
)
@click.option("--wait", is_flag=True, help="Wait for another sync of this cache to finish.")
@click.option("--allow-http", is_flag=True, help="Allow plain http:// to a remote host.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help=(
        "Processes flattening pages (default: one per core for 20,000+ orders, "
        "one from 1,000; 0: none)."
    ),
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_JSON
def sync_command(
    url: str | None,
    cache: Path | None,
    full: bool,
    no_events: bool,
    lookback: int,
    pii: str | None,
    since: str | None,
    wait: bool,
    allow_http: bool,
    workers: int | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Fill or update the parquet cache from an OMS.

    Credentials come from OMSFRAME_TOKEN, or OMSFRAME_USERNAME and OMSFRAME_PASSWORD; they are
    never written anywhere. The first sync reads every order (placed from --since on, if given);
    later ones only what changed.
    """
    from omsframe.sync import sync

    report = sync(
        url,
        cache=cache,
        full=full,
        events=not no_events,
        lookback=dt.timedelta(minutes=lookback),
        pii=pii,  # type: ignore[arg-type]
        wait=wait,
        allow_http=allow_http,
        progress=not (quiet or as_json) and sys.stderr.isatty(),
        workers=workers,
        since=since,
    )
    _print(report, as_json)


@main.command()
@_CACHE_READ
@_JSON
def status(cache: Path, as_json: bool) -> None:
    """Say what a cache holds, how fresh it is and where it came from.

    Exits with 1 (after printing) when the tables lost rows against the manifest's counts.
    """
    from omsframe.load import cache_info

    if not cache.exists():
        raise CacheError(f"no cache at {cache}: the folder does not exist; check --cache")
    info = cache_info(cache)
    _print(info, as_json)
    if info.damage:
        sys.exit(1)


@main.command()
@_CACHE_READ
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write <table>.parquet or <table>.csv into (created if missing).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True
)
@click.option("--tables", help=f"Comma-separated tables (default: all: {','.join(TABLES)}).")
@click.option("--since", help="Orders placed on or after this day, UTC (YYYY-MM-DD or YYYY-MM).")
@click.option("--until", help="Orders placed before this day, UTC (exclusive).")
@_JSON
def export(
    cache: Path,
    out: Path,
    fmt: str,
    tables: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Write the cache's tables as parquet or CSV files (never secrets or the PII key)."""
    from omsframe.export import export as export_tables

    files = export_tables(
        cache,
        out,
        format=fmt,  # type: ignore[arg-type]
        tables=[t.strip() for t in tables.split(",") if t.strip()] if tables else None,
        since=since,
        until=until,
    )
    if not files:
        from omsframe.manifest import load_manifest

        held = load_manifest(cache).get("since")
        window = f"; the cache holds the orders placed since {held} only" if held else ""
        raise ConfigError(
            f"no rows to export from {cache} (check --tables, --since and --until{window}); "
            f"nothing in {out} was written or removed"
        )
    _print({"files": [str(f) for f in files]} if as_json else "\n".join(map(str, files)), as_json)


@main.command()
@_CACHE_READ
@click.option("--wait", is_flag=True, help="Wait for a sync of this cache to finish.")
@_JSON
def rebuild(cache: Path, wait: bool, as_json: bool) -> None:
    """Rebuild every table from the cache's raw JSON, offline."""
    from omsframe.export import rebuild as rebuild_tables

    counts = rebuild_tables(cache, wait=wait)
    _print(counts if as_json else ", ".join(f"{k}: {v:,}" for k, v in counts.items()), as_json)


def _world(orders: int, seed: int, start: dt.datetime, end: dt.datetime) -> World:
    return World.generate(seed=seed, orders=orders, start=start.date(), end=end.date())


@main.command()
@click.option(
    "--orders", default=10_000, show_default=True, type=click.IntRange(min=1), help="Orders."
)
@click.option("--seed", default=0, show_default=True, help="Random seed of the shop.")
@click.option("--start", type=_DATE, default="2024-01-01", show_default=True, help="First day.")
@click.option("--end", type=_DATE, default="2025-12-01", show_default=True, help="Last day.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one).",
)
@click.option("--token", default="sim-token", show_default=True, help="Static API token.")
@click.option("--ignore-filters", is_flag=True, help="Silently ignore every filter.")
@click.option("--ignore-ordering", is_flag=True, help="Silently ignore `ordering`.")
@click.option("--default-ordering", default="-id", show_default=True, help="Ordering by default.")
@click.option("--max-page-size", default=1000, show_default=True, help="Largest `limit` served.")
@click.option(
    "--rate-429",
    default=0.0,
    show_default=True,
    type=_SHARE,
    help="Share of requests answered 429.",
)
@click.option(
    "--rate-5xx",
    default=0.0,
    show_default=True,
    type=_SHARE,
    help="Share answered 500/502/503/504.",
)
@click.option(
    "--rate-slow", default=0.0, show_default=True, type=_SHARE, help="Share answered slowly."
)
@click.option(
    "--rate-truncated",
    default=0.0,
    show_default=True,
    type=_SHARE,
    help="Share with a truncated body.",
)
@click.option(
    "--rate-dropped",
    default=0.0,
    show_default=True,
    type=_SHARE,
    help="Share whose connection is dropped.",
)
@click.option(
    "--rate-invalid-json",
    default=0.0,
    show_default=True,
    type=_SHARE,
    help="Share answered with invalid JSON.",
)
@click.option(
    "--rate-drift",
    default=0.0,
    show_default=True,
    type=_SHARE,
    help="Share of orders with schema drift.",
)
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


@main.command(name="report")
@_CACHE_READ
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write (default: <cache>/report.html).",
)
@click.option("--tz", default="Europe/Istanbul", show_default=True, help="Business time zone.")
def report_command(cache: Path, out: Path | None, tz: str) -> None:
    """Write the self-contained HTML report of a cache (opens offline)."""
    from omsframe.report import write_report

    click.echo(str(write_report(cache, out=out, tz=tz)))


DEMO_PORT = 0  # any free port: on loopback the port is not part of the cache identity
DEMO_WEEK = dt.timedelta(days=7)


@main.command()
@click.option(
    "--orders",
    default=5_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Orders in the demo shop.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed of the demo shop.")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEMO_CACHE,
    show_default=True,
    help="Cache folder of the demo.",
)
@click.option("--port", default=DEMO_PORT, show_default=True, help="Port of the simulator.")
def demo(orders: int, seed: int, cache: Path, port: int) -> None:
    """The main job against the built-in simulator: sync, then summarise.

    The demo shop's clock runs an hour per real minute since the demo cache was made (at most a
    week), so running the demo again later finds new and changed orders: an incremental sync.
    """
    from omsframe.load import load
    from omsframe.manifest import load_manifest
    from omsframe.sync import sync

    world = World.generate(seed=seed, orders=orders)
    created = load_manifest(cache).get("created") if (cache / "manifest.json").exists() else None
    elapsed = (
        dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(created) if created else dt.timedelta(0)
    )
    shop_now = world_end(world) - DEMO_WEEK + min(DEMO_WEEK, elapsed * 60)
    with SimulatorServer(world, port=port, clock=Clock(start=shop_now)) as server:
        placed = world.visible_orders(to_us(shop_now))
        click.echo(
            f"OMS simulator at {server.url}: {placed:,} orders placed by shop time "
            f"{shop_now:%Y-%m-%d %H:%M} UTC (of the {world.n_orders:,} of its shop, seed {seed})"
        )
        report = sync(server.url, token=server.token, cache=cache, progress=sys.stderr.isatty())
    click.echo(f"\n{report}\n")
    tables = load(cache)
    click.echo(_summary(tables))
    from omsframe.report import write_report

    click.echo(f"\nreport: {write_report(cache)}")


def world_end(world: World) -> dt.datetime:
    """The last moment of the demo shop (the end of its date range)."""
    from omsframe.simulator.world import from_us

    return from_us(world.end_us)


def _summary(tables: Any) -> str:
    orders, items = tables.orders, tables.order_items
    lines = [f"{len(orders):,} orders, {len(items):,} items, {len(tables.customers):,} customers"]
    live = items[~items["state_code"].isin(["100", "600"])]
    net = live.groupby("price_currency")["net_amount"].sum()
    lines.append(
        "net sales (excluding cancelled and refunded items): "
        + ", ".join(f"{amount:,.2f} {currency.upper()}" for currency, amount in net.items())
    )
    states = orders.groupby(["state_code", "state_name"]).size().sort_values(ascending=False)
    lines.append(
        "orders by state: " + ", ".join(f"{name} {count:,}" for (_, name), count in states.items())
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
