"""Properties of the analyses on generated tables: exact sums, both engines, any time zone."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omsframe.analysis import ledger, revenue
from omsframe.load import to_pandas
from omsframe.schema import arrow_schema
from tests.test_analysis_shop import CENT, day_of, local_day, records, tax_share

START = dt.datetime(2025, 3, 30, 18, tzinfo=dt.UTC)  # evenings: day boundaries differ by zone
REVERSED = {"100": "cancellation", "600": "refund"}


@dataclass
class Item:
    item_id: int
    price: int  # cents
    discount: int
    retail: int
    rate: int | None  # percent
    tax_sent: bool
    state: str
    modified: dt.datetime


@dataclass
class Order:
    order_id: int
    currency: str
    channel: str | None
    placed: dt.datetime
    state: str
    modified: dt.datetime
    items: list[Item]


@st.composite
def orders(draw: st.DrawFn) -> list[Order]:
    result = []
    item_id = 100
    for k in range(draw(st.integers(1, 8))):
        placed = START + dt.timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
        state = draw(st.sampled_from(["550", "100", "600", "50", "450"]))
        modified = placed + dt.timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
        items = []
        for _ in range(draw(st.integers(1, 3))):
            item_id += 1
            price = draw(st.integers(0, 500_000))
            own = draw(st.sampled_from([None, "100", "600"]))
            items.append(
                Item(
                    item_id=item_id,
                    price=price,
                    discount=draw(st.integers(0, price)),
                    retail=price + draw(st.sampled_from([0, 0, 1, 999, 25_000])),
                    rate=draw(st.sampled_from([None, 0, 1, 8, 10, 20])),
                    tax_sent=draw(st.booleans()),
                    state=own or state,
                    modified=placed + dt.timedelta(minutes=draw(st.integers(0, 5000)))
                    if own
                    else modified,
                )
            )
        result.append(
            Order(
                order_id=1 + k,
                currency=draw(st.sampled_from(["try", "eur", "EUR"])),
                channel=draw(st.sampled_from(["Web", "App", None])),
                placed=placed,
                state=state,
                modified=modified,
                items=items,
            )
        )
    return result


def money(cents: int) -> Decimal:
    return Decimal(cents) / 100


def tax_of(item: Item) -> Decimal:
    net = money(item.price - item.discount)
    if item.rate is None:
        return Decimal("0.00")
    return tax_share(net, Decimal(item.rate))


def tables(shop: list[Order]) -> dict[str, pa.Table]:
    """The orders and items as the cache would hold them (every other column null)."""
    order_rows = [
        {
            "order_id": o.order_id,
            "state_code": o.state,
            "modified_date": o.modified,
            "date_placed": o.placed,
            "channel_id": {"Web": 1, "App": 2}.get(o.channel or ""),
            "channel_name": o.channel,
            "payment_type": "credit_card",
        }
        for o in shop
    ]
    item_rows = [
        {
            "item_id": i.item_id,
            "order_id": o.order_id,
            "state_code": i.state,
            "modified_date": i.modified,
            "date_placed": o.placed,
            "price": money(i.price),
            "retail_price": money(i.retail),
            "discount_amount": money(i.discount),
            "tax_rate": None if i.rate is None else Decimal(i.rate),
            "tax_amount": tax_of(i) if i.tax_sent and i.rate is not None else None,
            "price_currency": o.currency,
        }
        for o in shop
        for i in o.items
    ]
    return {
        "orders": pa.Table.from_pylist(order_rows, schema=arrow_schema("orders")),
        "order_items": pa.Table.from_pylist(item_rows, schema=arrow_schema("order_items")),
    }


def expected_net(shop: list[Order], tz: str, rates: dict[str, Decimal] | None) -> dict[Any, Any]:
    """Net sales and taxes by local day, channel and currency, with Decimal, row by row."""
    sums: dict[Any, Any] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for o in shop:
        currency = o.currency.lower()
        for i in o.items:
            rows = [(o.placed, 1)]
            if i.state in REVERSED:
                rows.append((i.modified, -1))
            for at, sign in rows:
                amounts = [sign * money(i.price - i.discount), sign * tax_of(i)]
                target = currency
                if rates is not None:  # each unit amount converted, the measures from them
                    target = "try"
                    rate = rates.get(currency, Decimal(1))
                    price, discount = (
                        _convert(money(i.price), rate),
                        _convert(money(i.discount), rate),
                    )
                    amounts = [sign * (price - discount), sign * _convert(tax_of(i), rate)]
                key = (local_day(at, tz), o.channel, target)
                sums[key][0] += amounts[0]
                sums[key][1] += amounts[1]
    return {k: tuple(v) for k, v in sums.items()}


def _convert(amount: Decimal, rate: Decimal) -> Decimal:
    rounded = (abs(amount) * rate).quantize(CENT, rounding=ROUND_HALF_UP)
    return rounded if amount >= 0 else -rounded


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shop=orders(),
    tz=st.sampled_from(["UTC", "Europe/Istanbul", "America/New_York", "Asia/Kolkata"]),
    rate=st.one_of(st.none(), st.decimals(Decimal("0.5"), Decimal("50"), places=6)),
)
def test_revenue_by_day_equals_decimal_sums_on_both_engines(
    shop: list[Order], tz: str, rate: Decimal | None
) -> None:
    arrow = tables(shop)
    fx = None
    if rate is not None:
        fx = pl.DataFrame({"date": [dt.date(2025, 3, 1)], "currency": ["eur"], "rate": [rate]})
    kwargs: dict[str, Any] = {"fx": fx, "reporting_currency": "try" if fx is not None else None}
    results = []
    for frames in (
        {name: to_pandas(table) for name, table in arrow.items()},
        {name: pl.from_arrow(table) for name, table in arrow.items()},
    ):
        rows = records(revenue(frames, by="day", dims=["channel"], tz=tz, **kwargs))
        got = {
            (day_of(r["period"]), r["channel"], r["currency"]): (r["net_sales"], r["taxes"])
            for r in rows
        }
        assert got == expected_net(shop, tz, None if rate is None else {"eur": rate})
        results.append(rows)
        book = records(ledger(frames, tz=tz))
        assert sum(1 for r in book if r["kind"] == "sale") == sum(len(o.items) for o in shop)
    assert results[0] == results[1]


@settings(max_examples=15, deadline=None)
@given(shop=orders())
def test_an_order_reversed_whole_nets_to_zero(shop: list[Order]) -> None:
    book = records(ledger({name: pl.from_arrow(t) for name, t in tables(shop).items()}))
    for o in shop:
        rows = [r for r in book if r["order_id"] == o.order_id]
        net = sum(r["net_sales"] for r in rows)
        if all(i.state in REVERSED for i in o.items):
            assert net == 0
            assert sum(r["units"] for r in rows) == 0
        assert all(local_day(r["booked_at"], "UTC") >= local_day(o.placed, "UTC") for r in rows)
