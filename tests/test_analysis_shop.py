"""The small synced shop the analysis tests share, and its truth, computed from the world.

The truth never reads the synced tables: it walks the simulator's arrays (integer cents,
lifecycles as transitions, single-item changes) and adds with ``decimal.Decimal``. The
test modules build their own cache with ``build_shop`` in a module-scoped fixture.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import narwhals as nw

from omsframe.load import Tables, load
from omsframe.simulator import catalogue as cat
from omsframe.simulator.server import serve
from omsframe.simulator.world import World, from_us
from omsframe.sync import sync

ENGINES: tuple[Literal["pandas", "polars"], ...] = ("pandas", "polars")
ZONES = ("UTC", "Europe/Istanbul")
CENT = Decimal("0.01")
REVERSAL = {100: "cancellation", 600: "refund"}


@dataclass
class Shop:
    """A simulated shop synced into a cache, loaded with each engine."""

    world: World
    now_us: int
    path: Path
    tables: dict[str, Tables]
    truth: list[Unit]


def build_shop(root: Path) -> Shop:
    """Generate the world (Black Friday and 11.11 inside), sync it, load it both ways."""
    world = World.generate(
        seed=11, orders=800, start=dt.date(2024, 10, 20), end=dt.date(2025, 1, 10)
    )
    with serve(world) as oms:
        sync(oms.url, token=oms.token, cache=root, progress=False)
    tables: dict[str, Tables] = {engine: load(root, engine=engine) for engine in ENGINES}
    return Shop(world, world.end_us, root, tables, truth(world, world.end_us))


@dataclass(frozen=True)
class Unit:
    """One truth ledger row: signed amounts in Decimal, as the ledger should have them."""

    kind: str
    at: dt.datetime
    order_id: int
    item_id: int
    currency: str
    channel: str
    product_id: int
    price: Decimal
    discount: Decimal
    retail: Decimal
    tax: Decimal
    tax_from_rate: bool

    @property
    def sign(self) -> int:
        return 1 if self.kind == "sale" else -1

    @property
    def gross_sales(self) -> Decimal:
        return self.price if self.kind == "sale" else Decimal("0.00")

    @property
    def discounts(self) -> Decimal:
        return -self.discount if self.kind == "sale" else Decimal("0.00")

    @property
    def returns(self) -> Decimal:
        return Decimal("0.00") if self.kind == "sale" else -(self.price - self.discount)

    @property
    def net_sales(self) -> Decimal:
        return self.sign * (self.price - self.discount)

    @property
    def taxes(self) -> Decimal:
        return self.sign * self.tax

    @property
    def markdown(self) -> Decimal:
        return self.sign * (self.retail - self.price)

    @property
    def units(self) -> int:
        return self.sign


def tax_share(net: Decimal, rate: Decimal) -> Decimal:
    """The tax included in a tax-included amount, half up to the cent."""
    return (net * rate / (100 + rate)).quantize(CENT, rounding=ROUND_HALF_UP)


def truth(world: World, now_us: int) -> list[Unit]:
    """Every sale and reversal of the shop at ``now_us``, straight from the world's arrays."""
    units: list[Unit] = []
    for i in range(world.visible_orders(now_us)):
        channel = cat.CHANNELS[int(world.order_channel[i])]
        last_time, last_state = world.order_transitions(i, now_us)[-1]
        for k in range(int(world.item_ptr[i]), int(world.item_ptr[i + 1])):
            price = Decimal(int(world.item_price[k])) / 100
            discount = Decimal(int(world.item_discount[k])) / 100
            rate = Decimal(int(world.item_tax_rate[k])) / 100
            sale = Unit(
                kind="sale",
                at=from_us(int(world.order_placed[i])),
                order_id=int(world.order_id[i]),
                item_id=int(world.item_id[k]),
                currency=channel.currency,
                channel=channel.name,
                product_id=300 + int(world.item_product[k]),  # as the simulator renders it
                price=price,
                discount=discount,
                retail=Decimal(int(world.item_retail[k])) / 100,
                tax=tax_share(price - discount, rate),
                tax_from_rate=bool(world.order_tax_null[i]),
            )
            units.append(sale)
            own_time, own_state = int(world.item_change_time[k]), int(world.item_change_state[k])
            if 0 <= own_time <= now_us and own_state in REVERSAL:
                units.append(replace(sale, kind=REVERSAL[own_state], at=from_us(own_time)))
            elif last_state in REVERSAL:
                units.append(replace(sale, kind=REVERSAL[last_state], at=from_us(last_time)))
    return units


def local_day(moment: dt.datetime, tz: str) -> dt.date:
    """The calendar day of a UTC moment in a time zone."""
    return moment.astimezone(ZoneInfo(tz)).date()


def period_of(moment: dt.datetime, tz: str, by: str) -> dt.date:
    """The first day of the business period a moment falls in (as the analyses define it)."""
    day = local_day(moment, tz)
    if by == "day":
        return day
    if by == "week":
        return day - dt.timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    if by == "quarter":
        return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return dt.date(day.year, 1, 1)


T = TypeVar("T")


def totals(
    units: Iterable[T], key: Callable[[T], Hashable], measure: Callable[[T], Any]
) -> dict[Any, Any]:
    """Sum ``measure`` over the units grouped by ``key`` (Decimal or int sums)."""
    sums: dict[Any, Any] = defaultdict(int)
    for u in units:
        sums[key(u)] += measure(u)
    return dict(sums)


def records(frame: Any) -> list[dict[str, Any]]:
    """The rows of a pandas or polars frame as dicts of Python values (Decimal, datetime)."""
    rows: list[dict[str, Any]] = nw.from_native(frame, eager_only=True).to_arrow().to_pylist()
    return rows


def day_of(value: Any) -> dt.date:
    """A period label (naive local datetime) as a date."""
    return value.date() if isinstance(value, dt.datetime) else value


def test_the_synced_shop_holds_the_worlds_items_and_money(shop: Shop) -> None:
    sales = [u for u in shop.truth if u.kind == "sale"]
    for engine in ENGINES:
        items = records(shop.tables[engine].order_items)
        assert sorted(r["item_id"] for r in items) == sorted(u.item_id for u in sales)
        net = totals(items, lambda r: r["price_currency"], lambda r: r["net_amount"])
        assert net == totals(sales, lambda u: u.currency, lambda u: u.price - u.discount)


def test_the_shop_has_what_the_analysis_tests_need(shop: Shop) -> None:
    kinds = {(u.kind, u.currency) for u in shop.truth}
    assert {("sale", "try"), ("sale", "eur"), ("sale", "usd")} <= kinds
    assert {("cancellation", "try"), ("refund", "try")} <= kinds
    assert any(u.tax_from_rate for u in shop.truth)  # taxes derived from the rate
    world = shop.world
    item_changes = world.item_change_state[world.item_change_time >= 0]
    assert {100, 600} <= set(item_changes.tolist())  # single items cancelled and refunded
    near_midnight = [u for u in shop.truth if local_day(u.at, "UTC") != local_day(u.at, ZONES[1])]
    assert near_midnight  # UTC and Istanbul days differ for some rows
    assert len(world.campaign_days) >= 3
