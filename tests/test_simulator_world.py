"""Specification of the simulated shop: determinism, shape, amounts, realism, scale, secrets.

The worlds are built once per module. Ground truth is read from the world's arrays, and what a
client would see is checked on the rendered JSON (``render.order_object`` / ``event_object``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from omsframe.simulator import catalogue as cat
from omsframe.simulator import render
from omsframe.simulator.world import DAY, HOUR, RETRY_OFFSETS_S, US, World, iso

Json = dict[str, Any]
LOCAL = 3 * HOUR  # Europe/Istanbul, the shop's business time zone (UTC+3, no DST)
EPOCH_DATE = dt.date(1970, 1, 1)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
MONEY = re.compile(r"^\d+\.\d\d$")
COORDINATE = re.compile(r"^-?\d+\.\d{8}$")
CENT = Decimal("0.01")

# --- helpers --------------------------------------------------------------------------------


def mid(world: World) -> int:
    """A moment in the middle of the world's horizon."""
    return world.start_us + (world.end_us - world.start_us) // 2


def render_orders(world: World, now_us: int) -> list[Json]:
    """Every order that exists at ``now_us``, as the Order List endpoint serves it."""
    return [render.order_object(world, i, now_us) for i in range(world.visible_orders(now_us))]


def world_bytes(world: World, now_us: int | None = None) -> bytes:
    """All orders and all events of a world at ``now_us`` (default: its end), as JSON bytes."""
    now = world.end_us if now_us is None else now_us
    orders = render_orders(world, now)
    events = [render.event_object(world, e, now) for e in range(world.visible_events(now))]
    return orjson.dumps({"orders": orders, "events": events})


def world_digest(seed: int, orders: int, start: str, end: str) -> str:
    """SHA-256 of :func:`world_bytes` of a freshly generated world (dates as ISO strings)."""
    world = World.generate(
        seed=seed, orders=orders, start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end)
    )
    return hashlib.sha256(world_bytes(world)).hexdigest()


def array_nbytes(world: World) -> int:
    """Total size of the world's numpy arrays (the bulk of its memory)."""
    total = 0
    for f in dataclasses.fields(world):
        value = getattr(world, f.name)
        if isinstance(value, np.ndarray):
            total += int(value.nbytes)
    return total


def local_day(us: np.ndarray | int) -> Any:
    """Days since the epoch of the business (Istanbul) date of ``us``."""
    return (np.asarray(us, dtype=np.int64) + LOCAL) // DAY


def day_number(day: dt.date) -> int:
    """Days since the epoch of a date."""
    return (day - EPOCH_DATE).days


def dec(value: str) -> Decimal:
    """Parse a money string (never via float)."""
    return Decimal(value)


def transitions(world: World, i: int) -> list[tuple[int, int]]:
    """The whole lifecycle of order ``i``: ``(time_us, state)``, including the future."""
    lo, hi = int(world.transition_ptr[i]), int(world.transition_ptr[i + 1])
    return list(
        zip(
            world.transition_time[lo:hi].tolist(),
            world.transition_state[lo:hi].tolist(),
            strict=True,
        )
    )


def item_changes(world: World, i: int) -> list[tuple[int, int, int]]:
    """``(item index, time_us, state)`` of the single-item changes of order ``i``."""
    lo, hi = int(world.item_ptr[i]), int(world.item_ptr[i + 1])
    return [
        (k, int(world.item_change_time[k]), int(world.item_change_state[k]))
        for k in range(lo, hi)
        if world.item_change_time[k] >= 0
    ]


def expected_head(world: World, i: int, now_us: int) -> tuple[int, int]:
    """State code and modified time of order ``i`` at ``now_us``, from the lifecycle alone."""
    reached = [(t, s) for t, s in transitions(world, i) if t <= now_us]
    time, state = reached[-1]
    for _k, t, _s in item_changes(world, i):
        if t <= now_us:
            time = max(time, t)
    return state, time


# --- shapes ---------------------------------------------------------------------------------
# Free-form dicts: only their type is checked, never their keys.
OPAQUE = frozenset(
    {
        "state.config",
        "orderitem_set[].state.config",
        "orderitem_set[].product.attributes",
        "orderitem_set[].product.attributes_kwargs",
        "orderitem_set[].product.extra_attributes",
        "orderitem_set[].attributes",
        "orderitem_set[].attributes_kwargs",
        "orderitem_set[].extra_field",
        "channel.configuration.feature_flags",
        "channel.configuration.localized_cancel_mail_subject",
    }
)
# Dicts that may carry keys beyond the example's.
OPEN_PREFIXES = ("channel.configuration.",)
KWARGS_PATHS = ("orderitem_set[].product.attributes_kwargs", "orderitem_set[].attributes_kwargs")
ITEM_MONEY_REQUIRED = ("price", "retail_price", "net_amount", "discount_amount", "tax_rate")
ITEM_MONEY_NULLABLE = ("tax_amount",)  # null on about one order in ten (world.py)
ITEM_MONEY_NULL = ("without_net_amount", "installment_interest_amount")  # always null
TIMESTAMP_KEYS = frozenset({"created_date", "modified_date", "date_placed", "remote_modified_date"})


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    raise TypeError(f"not a JSON value: {value!r}")


def shape_of(
    value: Any, path: str = "", out: dict[str, set[str]] | None = None
) -> dict[str, set[str]]:
    """Every key path of ``value`` (``a.b[].c``) with the JSON types seen there."""
    shape: dict[str, set[str]] = {} if out is None else out
    shape.setdefault(path, set()).add(json_type(value))
    if path in OPAQUE:
        return shape
    if isinstance(value, dict):
        for key, child in value.items():
            shape_of(child, f"{path}.{key}" if path else key, shape)
    elif isinstance(value, list):
        for child in value:
            shape_of(child, f"{path}[]", shape)
    return shape


def shape_problems(order: Json, example: dict[str, set[str]]) -> list[str]:
    """How an order's shape departs from the example's (empty when it conforms)."""
    got = shape_of(order)
    problems: list[str] = []
    for path, types in example.items():
        if path not in got:
            problems.append(f"missing {path}")
        elif "null" not in types and not got[path] <= types:
            problems.append(f"{path}: {sorted(got[path])}, example has {sorted(types)}")
    for path in sorted(got.keys() - example.keys()):
        if not path.startswith(OPEN_PREFIXES):
            problems.append(f"unexpected {path}")
    for item in order["orderitem_set"]:
        for kwargs in (item["product"]["attributes_kwargs"], item["attributes_kwargs"]):
            for key, entry in kwargs.items():
                if not isinstance(entry, dict) or set(entry) != {"label", "value", "data_type"}:
                    problems.append(f"attributes_kwargs[{key!r}] = {entry!r}")
    return problems


def walk_values(value: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    """Every ``(path, leaf or node)`` of a JSON value, keys last in the path."""
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk_values(child, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for child in value:
            yield from walk_values(child, f"{path}[]")


def format_problems(order: Json) -> list[str]:
    """Money, timestamp and coordinate strings of an order that are not in the API's format."""
    problems: list[str] = []
    for path, value in walk_values(order):
        key = path.rsplit(".", 1)[-1]
        if key in TIMESTAMP_KEYS and value is not None and not TIMESTAMP.match(value):
            problems.append(f"{path} = {value!r}")
        if key in ("latitude", "longitude") and not COORDINATE.match(value):
            problems.append(f"{path} = {value!r}")
    for item in order["orderitem_set"]:
        for key in ITEM_MONEY_REQUIRED:
            if not isinstance(item[key], str) or not MONEY.match(item[key]):
                problems.append(f"item {item['id']} {key} = {item[key]!r}")
        for key in ITEM_MONEY_NULLABLE:
            if item[key] is not None and not MONEY.match(item[key]):
                problems.append(f"item {item['id']} {key} = {item[key]!r}")
        for key in ITEM_MONEY_NULL:
            if item[key] is not None:
                problems.append(f"item {item['id']} {key} = {item[key]!r}")
    for key in ("created_date", "modified_date", "date_placed"):
        if not TIMESTAMP.match(order[key]):
            problems.append(f"{key} = {order[key]!r}")
    return problems


# --- worlds, built once ---------------------------------------------------------------------
DETERMINISM: dict[str, Any] = {"orders": 250, "start": "2025-01-01", "end": "2025-04-01"}


@pytest.fixture(scope="module")
def example_shape(example_orders: list[Json]) -> dict[str, set[str]]:
    shape: dict[str, set[str]] = {}
    for order in example_orders:
        shape_of(order, "", shape)
    return shape


@pytest.fixture(scope="module")
def shape_world() -> World:
    return World.generate(seed=11, orders=1500)


@pytest.fixture(scope="module")
def shape_orders(shape_world: World) -> dict[str, list[Json]]:
    """The 1500-order world rendered at its end and in the middle of its horizon."""
    return {
        "end": render_orders(shape_world, shape_world.end_us),
        "mid": render_orders(shape_world, mid(shape_world)),
    }


@pytest.fixture(scope="module")
def world() -> World:
    """The realism world: ~5000 orders over the default horizon (2024-01 to 2025-12)."""
    return World.generate(seed=2024, orders=5000)


@pytest.fixture(scope="module")
def orders(world: World) -> list[Json]:
    return render_orders(world, world.end_us)


@pytest.fixture(scope="module")
def dense_world() -> World:
    """Many orders in two months: enough that every open state is populated at any moment."""
    return World.generate(seed=99, orders=4000, start=dt.date(2025, 1, 1), end=dt.date(2025, 3, 1))


# --- 1. determinism -------------------------------------------------------------------------


def test_same_arguments_give_byte_identical_json() -> None:
    args = {
        "orders": DETERMINISM["orders"],
        "start": dt.date.fromisoformat(DETERMINISM["start"]),
        "end": dt.date.fromisoformat(DETERMINISM["end"]),
    }
    first, second = World.generate(seed=5, **args), World.generate(seed=5, **args)
    assert first is not second
    assert first.n_events > first.n_orders > 0
    assert world_bytes(first) == world_bytes(second)
    assert world_bytes(first, mid(first)) == world_bytes(second, mid(second))


def test_another_seed_gives_other_json() -> None:
    digests = {world_digest(seed, **DETERMINISM) for seed in (5, 6)}
    assert len(digests) == 2


def test_determinism_does_not_depend_on_the_interpreter_hash_seed() -> None:
    # str hashing is salted per process: iterating a set of strings while drawing from the
    # generator made worlds differ between processes (but never within one).
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_simulator_world import world_digest, DETERMINISM; "
        "print(world_digest(5, **DETERMINISM))"
    )
    digests = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        digests.add(done.stdout.strip())
    assert digests == {world_digest(5, **DETERMINISM)}


# --- 2. shape -------------------------------------------------------------------------------


def test_example_shape_is_walked_into_lists_and_dicts(example_shape: dict[str, set[str]]) -> None:
    assert example_shape["orderitem_set[].product.productimage_set[].url"] == {"str"}
    assert example_shape["shipping_address.district.township"] == {"int"}
    assert example_shape["orderitem_set[].tax_amount"] == {"null"}
    assert example_shape["channel.configuration.auth_token"] == {"str"}
    assert example_shape["commands"] == {"list"}
    assert "orderitem_set[].product.attributes.hallo" not in example_shape  # opaque


def test_shape_check_detects_drift(
    example_shape: dict[str, set[str]], shape_orders: dict[str, list[Json]]
) -> None:
    order = orjson.loads(orjson.dumps(shape_orders["end"][0]))
    assert shape_problems(order, example_shape) == []
    order["orderitem_set"][0]["price"] = 12.5
    del order["shipping_address"]["district"]["township"]
    order["surprise"] = 1
    order["orderitem_set"][0]["product"]["attributes_kwargs"]["color"] = {"label": "x"}
    order["channel"]["configuration"]["extra_key"] = "fine"
    problems = shape_problems(order, example_shape)
    assert len(problems) == 4, problems
    assert format_problems(order) == [f"item {order['orderitem_set'][0]['id']} price = 12.5"]


@pytest.mark.parametrize("moment", ["end", "mid"])
def test_every_order_has_the_example_shape(
    moment: str, example_shape: dict[str, set[str]], shape_orders: dict[str, list[Json]]
) -> None:
    rendered = shape_orders[moment]
    assert len(rendered) > (1000 if moment == "end" else 400)
    problems = {o["id"]: p for o in rendered if (p := shape_problems(o, example_shape))}
    assert not problems, list(problems.items())[:3]


@pytest.mark.parametrize("moment", ["end", "mid"])
def test_money_timestamps_and_coordinates_are_formatted(
    moment: str, shape_orders: dict[str, list[Json]]
) -> None:
    problems = {o["id"]: p for o in shape_orders[moment] if (p := format_problems(o))}
    assert not problems, list(problems.items())[:3]


def test_events_have_the_documented_shape(
    shape_world: World, example_shape: dict[str, set[str]]
) -> None:
    now = shape_world.end_us
    keys = {
        "id",
        "uuid",
        "event_type",
        "order",
        "order_number",
        "request_payload",
        "response_http_status",
        "response_content",
        "delivered",
        "retry_count",
        "request_datetimes",
        "webhook",
        "created_date",
        "modified_date",
    }
    n = shape_world.visible_events(now)
    uuids = set()
    for e in range(0, n, 7):
        event = render.event_object(shape_world, e, now)
        assert set(event) == keys
        assert set(event["webhook"]) == {
            "id",
            "target_url",
            "event_type",
            "secret_key",
            "config",
            "additional_headers",
        }
        assert event["request_payload"]["event"] == {
            "type": event["event_type"],
            "uuid": event["uuid"],
        }
        assert shape_problems(event["request_payload"]["payload"], example_shape) == []
        assert all(TIMESTAMP.match(t) for t in event["request_datetimes"])
        assert TIMESTAMP.match(event["created_date"]) and TIMESTAMP.match(event["modified_date"])
        short = render.event_object(shape_world, e, now, with_payload=False)
        assert set(short) == keys - {"request_payload"}
        uuids.add(event["uuid"])
    assert len(uuids) == len(range(0, n, 7))


# --- 3. amounts -----------------------------------------------------------------------------


def test_amount_model_holds_on_every_item(orders: list[Json]) -> None:
    problems: list[str] = []
    items = 0
    for order in orders:
        for item in order["orderitem_set"]:
            items += 1
            price, retail = dec(item["price"]), dec(item["retail_price"])
            discount, net = dec(item["discount_amount"]), dec(item["net_amount"])
            rate = dec(item["tax_rate"])
            where = f"order {order['id']} item {item['id']}"
            if not Decimal(0) < price <= retail:
                problems.append(f"{where}: price {price} retail {retail}")
            if not Decimal(0) <= discount <= price:
                problems.append(f"{where}: discount {discount} price {price}")
            if net != price - discount:
                problems.append(f"{where}: net {net} != {price} - {discount}")
            if item["tax_amount"] is not None:
                tax = (net * rate / (100 + rate)).quantize(CENT, rounding=ROUND_HALF_UP)
                if dec(item["tax_amount"]) != tax:
                    problems.append(f"{where}: tax {item['tax_amount']} != {tax}")
            if item["price_list"]["currency"] != item["price_currency"]:
                problems.append(f"{where}: price list {item['price_list']['currency']}")
    assert items > len(orders)
    assert not problems, problems[:5]


def test_tax_is_null_on_about_one_order_in_ten(orders: list[Json]) -> None:
    null_orders = 0
    for order in orders:
        nulls = {item["tax_amount"] is None for item in order["orderitem_set"]}
        assert len(nulls) == 1, order["id"]  # all items of an order alike
        null_orders += nulls.pop()
    assert 0.05 < null_orders / len(orders) < 0.15


def test_tax_rates_are_a_few_vat_classes(orders: list[Json]) -> None:
    rates = collections.Counter(i["tax_rate"] for o in orders for i in o["orderitem_set"])
    assert 2 <= len(rates) <= 6
    assert {"10.00", "20.00"} <= set(rates)


def test_currency_is_the_channels(orders: list[Json]) -> None:
    by_channel: dict[int, set[str]] = collections.defaultdict(set)
    per_order: collections.Counter[str] = collections.Counter()
    for order in orders:
        currencies = {item["price_currency"] for item in order["orderitem_set"]}
        assert len(currencies) == 1, order["id"]
        by_channel[order["channel"]["id"]] |= currencies
        per_order[currencies.pop()] += 1
    assert all(len(c) == 1 for c in by_channel.values()), by_channel
    assert set(per_order) == {"try", "eur", "usd"}
    total = sum(per_order.values())
    assert per_order["try"] / total > 0.6
    assert per_order["eur"] / total > 0.03 and per_order["usd"] / total > 0.02


def test_campaign_orders_have_deeper_discounts(world: World, orders: list[Json]) -> None:
    campaign = {day_number(d) for d in world.campaign_days}
    sums = {True: [Decimal(0), Decimal(0)], False: [Decimal(0), Decimal(0)]}
    for i, order in enumerate(orders):
        key = int(local_day(world.order_placed[i])) in campaign
        for item in order["orderitem_set"]:
            sums[key][0] += dec(item["discount_amount"])
            sums[key][1] += dec(item["price"])
    deep = sums[True][0] / sums[True][1]
    usual = sums[False][0] / sums[False][1]
    assert deep > Decimal("0.15")
    assert deep > 3 * usual
    assert usual > 0  # coupons on ordinary days


# --- 4. realism -----------------------------------------------------------------------------


def test_channels_products_and_customers(orders: list[Json]) -> None:
    channels = {o["channel"]["id"] for o in orders}
    assert 3 <= len(channels) <= 5
    products = {i["product"]["id"]: i["product"] for o in orders for i in o["orderitem_set"]}
    assert len(products) >= 200
    for product in products.values():
        assert product["attributes"], product["id"]
        assert set(product["attributes_kwargs"]) == set(product["attributes"])
    for order in orders:
        assert order["customer"]["channel"] == order["channel"]["id"]


def test_returning_customers_at_a_realistic_share(orders: list[Json]) -> None:
    seen: collections.Counter[int] = collections.Counter()
    repeat = 0
    for order in sorted(orders, key=lambda o: (o["created_date"], o["id"])):
        pk = order["customer"]["pk"]
        repeat += seen[pk] > 0
        seen[pk] += 1
    assert 0.15 < repeat / len(orders) < 0.6
    assert sum(1 for n in seen.values() if n >= 3) > 50
    # the same customer keeps their name and channel across orders
    names: dict[int, tuple[str, str, int]] = {}
    for order in orders:
        c = order["customer"]
        assert names.setdefault(c["pk"], (c["email"], c["last_name"], c["channel"])) == (
            c["email"],
            c["last_name"],
            c["channel"],
        )


def _full_days(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Order counts per business day, partial first and last days left out."""
    days = local_day(world.order_placed)
    first, last = int(days.min()) + 1, int(days.max()) - 1
    inside = days[(days >= first) & (days <= last)]
    counts = np.bincount(inside - first, minlength=last - first + 1)
    return np.arange(first, last + 1), counts


def test_weekends_differ_and_the_shop_grows(world: World) -> None:
    days, counts = _full_days(world)
    campaign = np.isin(days, [day_number(d) for d in world.campaign_days])
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday: Monday is 0
    weekend = weekday >= 5
    ratio = counts[weekend & ~campaign].mean() / counts[~weekend & ~campaign].mean()
    assert ratio > 1.08
    placed = world.order_placed
    half = mid(world)
    assert (placed >= half).sum() > 1.15 * (placed < half).sum()


def test_campaign_days_have_more_orders(world: World) -> None:
    assert dt.date(2024, 11, 29) in world.campaign_days  # Black Friday 2024
    assert dt.date(2025, 11, 11) in world.campaign_days
    days, counts = _full_days(world)
    campaign = np.isin(days, [day_number(d) for d in world.campaign_days])
    assert campaign.sum() >= 10
    assert counts[campaign].mean() > 1.5 * counts[~campaign].mean()


def test_orders_are_placed_inside_the_horizon(world: World, dense_world: World) -> None:
    for w in (world, dense_world):
        assert (w.order_placed >= w.start_us).all()
        assert (w.order_placed < w.order_created).all()
        assert (w.order_created <= w.end_us).all()  # every order exists at the default clock
        assert w.visible_orders(w.end_us) == w.n_orders
        assert (np.diff(w.order_created) >= 0).all()
        # no pile-up of clipped times at the edges of the horizon
        assert len(np.unique(w.order_placed)) == w.n_orders


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (dt.datetime(2025, 3, 1, 10, 30), dt.datetime(2025, 3, 1, 16, 0)),
        (dt.datetime(2025, 3, 1, 10, 30), dt.datetime(2025, 3, 1, 11, 0)),
        (dt.datetime(2025, 2, 27, 22, 15), dt.datetime(2025, 3, 4, 1, 0)),
    ],
)
def test_short_horizons_keep_every_order_inside(start: dt.datetime, end: dt.datetime) -> None:
    w = World.generate(seed=3, orders=300, start=start, end=end)
    assert w.n_orders == 300
    assert w.order_placed.min() >= w.start_us
    assert w.order_created.max() <= w.end_us


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="orders"):
        World.generate(seed=1, orders=-1)
    with pytest.raises(ValueError, match="end"):
        World.generate(seed=1, orders=5, start=dt.date(2025, 1, 2), end=dt.date(2025, 1, 1))
    assert World.generate(seed=1, orders=0).visible_orders(2**62) == 0


def test_payment_delivery_and_places_vary(orders: list[Json]) -> None:
    payments = collections.Counter(o["payment_type"] for o in orders)
    deliveries = collections.Counter(o["delivery_type"] for o in orders)
    assert len(payments) >= 4 and payments.most_common(1)[0][0] == "credit_card"
    assert set(payments) <= {p[0] for p in cat.PAYMENT_TYPES}
    assert len(deliveries) >= 3 and deliveries.most_common(1)[0][0] == "standard"
    cities = {o["shipping_address"]["city"]["pk"] for o in orders}
    districts = {o["shipping_address"]["district"]["pk"] for o in orders}
    countries = {o["shipping_address"]["country"]["code"] for o in orders}
    assert len(cities) >= 8 and len(districts) >= 30 and len(countries) >= 3
    for order in orders:
        address = order["shipping_address"]
        assert address["district"]["city"] == address["city"]["pk"]
        assert address["city"]["country"] == address["country"]["pk"]
        assert address["customer"]["pk"] == order["customer"]["pk"]
    assert any(o["billing_address"]["id"] != o["shipping_address"]["id"] for o in orders)


def test_items_per_order(orders: list[Json]) -> None:
    sizes = collections.Counter(len(o["orderitem_set"]) for o in orders)
    assert set(sizes) == {1, 2, 3, 4, 5, 6}
    assert sizes[1] == max(sizes.values())
    assert 1.5 < sum(k * v for k, v in sizes.items()) / len(orders) < 3
    for order in orders:
        assert {i["order"] for i in order["orderitem_set"]} == {order["id"]}


# --- lifecycles -----------------------------------------------------------------------------
ALLOWED = {
    200: {400},
    300: {400, 100},
    400: {450, 50, 100},
    450: {500, 520, 50, 100},
    50: {100},
    500: {540, 550},
    540: {550},
    520: {550},
    550: {544},
    544: {600},
}
SHIPPED = {500, 520, 540, 550}


def test_lifecycles_follow_the_state_machine(world: World) -> None:
    finals: collections.Counter[int] = collections.Counter()
    seen_states: set[int] = set()
    for i in range(world.n_orders):
        steps = transitions(world, i)
        times = [t for t, _ in steps]
        states = [s for _, s in steps]
        assert times[0] == world.order_created[i], i  # the first state at creation
        assert all(a < b for a, b in itertools.pairwise(times)), (i, steps)
        assert states[0] in (200, 300), (i, steps)
        for a, b in itertools.pairwise(states):
            assert b in ALLOWED.get(a, set()), (i, steps)
        assert states[-1] in (100, 550, 600), (i, steps)
        if 100 in states:
            assert not SHIPPED & set(states), (i, steps)  # cancelled before shipping
        finals[states[-1]] += 1
        seen_states |= set(states)
    n = world.n_orders
    assert 0.03 < finals[100] / n < 0.2
    assert 0.02 < finals[600] / n < 0.12
    assert finals[550] / n > 0.7
    assert {50, 200, 300, 400, 450, 500, 520, 540, 544, 550, 600} <= seen_states


def test_single_items_are_cancelled_or_refunded(world: World) -> None:
    counts: collections.Counter[int] = collections.Counter()
    for i in range(world.n_orders):
        changes = item_changes(world, i)
        if not changes:
            continue
        steps = transitions(world, i)
        states = [s for _, s in steps]
        assert int(world.item_ptr[i + 1] - world.item_ptr[i]) >= 2  # never the only item
        assert 100 not in states  # the order itself goes on (it may be refunded later)
        for _k, t, s in changes:
            counts[s] += 1
            shipped = min(t2 for t2, s2 in steps if s2 in (500, 520))
            delivered = min(t2 for t2, s2 in steps if s2 == 550)
            if s == 100:
                assert t < shipped
            else:  # a single refund keeps the order delivered
                assert s == 600 and t > delivered and 600 not in states
    assert set(counts) == {100, 600}
    total_items = int(world.item_ptr[-1])
    assert 0 < counts[100] + counts[600] < 0.1 * total_items


@pytest.mark.parametrize("moment", ["end", "mid"])
def test_rendered_state_and_modified_date_follow_the_lifecycle(world: World, moment: str) -> None:
    now = world.end_us if moment == "end" else mid(world)
    n = world.visible_orders(now)
    codes, modified = world.order_status(now)
    assert len(codes) == n
    for i in range(n):
        order = render.order_object(world, i, now)
        state, time = expected_head(world, i, now)
        assert order["state"]["enum_value"] == str(state), i
        assert order["modified_date"] == iso(time), i
        assert (int(codes[i]), int(modified[i])) == (state, time), i
        assert order["date_placed"] <= order["created_date"] <= order["modified_date"]
        assert order["modified_date"] <= iso(now)
        reached = {s for t, s in transitions(world, i) if t <= now}
        last_transition = max(t for t, _s in transitions(world, i) if t <= now)
        assert (order["tracking_number"] is not None) == bool(reached & {500, 520}), i
        changed = {k: (t, s) for k, t, s in item_changes(world, i) if t <= now}
        lo = int(world.item_ptr[i])
        for k, item in enumerate(order["orderitem_set"], lo):
            assert item["created_date"] >= order["created_date"]
            assert item["modified_date"] <= order["modified_date"] or (
                item["modified_date"] == item["created_date"]  # created just after the order
            )
            if k in changed:
                assert item["state"]["enum_value"] == str(changed[k][1])
                assert item["modified_date"] == iso(changed[k][0])
            else:  # the item is in the order's state and changed with it
                assert item["state"]["enum_value"] == str(state)
                assert item["modified_date"] == max(item["created_date"], iso(last_transition))


def test_orders_are_open_in_every_state_mid_horizon(dense_world: World) -> None:
    now = mid(dense_world)
    rendered = render_orders(dense_world, now)
    open_states = collections.Counter(o["state"]["enum_value"] for o in rendered)
    assert open_states["200"] + open_states["300"] >= 1, open_states
    for code in ("400", "450", "500"):
        assert open_states[code] >= 1, open_states
    assert open_states["550"] + open_states["600"] + open_states["100"] > len(rendered) / 2
    codes, _ = dense_world.order_status(now)
    assert collections.Counter(str(int(c)) for c in codes) == open_states


# --- webhook events -------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["world", "dense_world"])
def test_each_change_emits_one_event(which: str, request: pytest.FixtureRequest) -> None:
    w: World = request.getfixturevalue(which)
    for now in (mid(w), w.end_us):
        n_orders, n_events = w.visible_orders(now), w.visible_events(now)
        reached = (w.transition_time <= now).astype(np.int64)
        expected = np.add.reduceat(reached, w.transition_ptr[:-1])
        item_order = np.searchsorted(w.item_ptr, np.arange(int(w.item_ptr[-1])), side="right") - 1
        item_reached = (w.item_change_time >= 0) & (w.item_change_time <= now)
        expected += np.bincount(item_order[item_reached], minlength=w.n_orders)
        got = np.bincount(w.event_order[:n_events], minlength=w.n_orders)
        assert (got == expected).all()
        assert (expected[n_orders:] == 0).all()  # no event for an order not yet created
        assert (w.event_time[n_events:] > now).all()
    assert (np.diff(w.event_time) >= 0).all()
    assert (w.order_created[w.event_order] <= w.event_time).all()


def test_events_describe_the_change(world: World) -> None:
    now = world.end_us
    first_seen: set[int] = set()
    for e in range(world.visible_events(now)):
        order = int(world.event_order[e])
        event = render.event_object(world, e, now, with_payload=e % 5 == 0)
        assert event["order"] == int(world.order_id[order])
        assert event["order_number"] == world.order_number[order]
        assert event["created_date"] == iso(int(world.event_time[e]))
        if order not in first_seen:
            assert event["event_type"] == "order.created"
            first_seen.add(order)
        elif world.event_item[e] >= 0:
            assert event["event_type"] == "order.updated"
        else:
            assert event["event_type"] == "order.status.changed"
        assert event["webhook"]["event_type"] == event["event_type"]
        if "request_payload" in event:
            payload = event["request_payload"]["payload"]
            assert payload["number"] == event["order_number"]
            assert payload["modified_date"] == event["created_date"]
            if world.event_item[e] < 0:
                assert payload["state"]["enum_value"] == str(int(world.event_state[e]))
            else:
                k = int(world.event_item[e]) - int(world.item_ptr[order])
                item = payload["orderitem_set"][k]
                assert item["state"]["enum_value"] == str(int(world.event_state[e]))
    assert len(first_seen) == world.n_orders


def test_webhook_deliveries_fail_and_retry(world: World) -> None:
    now = world.end_us
    n = world.visible_events(now)
    stats: collections.Counter[str] = collections.Counter()
    last_offset = RETRY_OFFSETS_S[-1] * US
    modified, retries, delivered = world.event_status(now)
    for e in range(n):
        event = render.event_object(world, e, now, with_payload=False)
        assert len(event["request_datetimes"]) == event["retry_count"] + 1
        assert event["request_datetimes"][0] == event["created_date"]
        assert event["modified_date"] == event["request_datetimes"][-1]
        assert (event["response_http_status"] == 200) == event["delivered"]
        assert event["modified_date"] == iso(int(modified[e]))
        assert (event["retry_count"], event["delivered"]) == (int(retries[e]), bool(delivered[e]))
        settled = int(world.event_time[e]) + last_offset < now
        stats["retried"] += event["retry_count"] > 0
        stats["retried_ok"] += event["retry_count"] > 0 and event["delivered"]
        stats["failed"] += settled and not event["delivered"]
    assert stats["retried"] > 0.02 * n
    assert stats["retried_ok"] > 0
    assert 0 < stats["failed"] < 0.05 * n


# --- 5. scale -------------------------------------------------------------------------------


def test_memory_per_order_is_small(world: World) -> None:
    assert array_nbytes(world) / world.n_orders < 1000


def test_arrays_are_consistent(world: World) -> None:
    n = world.n_orders
    for f in dataclasses.fields(world):
        value = getattr(world, f.name)
        if f.name.startswith("order_") and isinstance(value, np.ndarray):
            assert value.shape == (n,), f.name
    assert world.item_ptr[0] == 0 and world.item_ptr[-1] == len(world.item_id)
    assert world.transition_ptr[-1] == len(world.transition_time)
    assert (np.diff(world.item_ptr) >= 1).all() and (np.diff(world.transition_ptr) >= 2).all()
    assert len(set(world.order_number)) == n
    assert len(np.unique(world.item_id)) == len(world.item_id)


@pytest.mark.slow
def test_a_hundred_thousand_orders_fit_in_memory() -> None:
    big = World.generate(seed=1, orders=100_000)
    assert big.n_orders == 100_000
    assert big.visible_orders(big.end_us) == 100_000
    assert array_nbytes(big) < 150 * 2**20
    codes, _ = big.order_status(mid(big))
    open_states = collections.Counter(int(c) for c in codes)
    assert all(open_states[c] > 0 for c in (300, 400, 450, 500)), open_states
    last = big.n_orders - 1
    assert render.order_object(big, last, big.end_us)["id"] == int(big.order_id[last])


# --- 6. secrets -----------------------------------------------------------------------------


def test_secrets_are_served_where_a_scan_must_catch_them(shape_world: World) -> None:
    secrets = shape_world.secrets()
    assert len(secrets) == len(set(secrets)) >= 2 * len(cat.CHANNELS) + 3
    assert all(len(s) >= 16 for s in secrets)
    configurations = orjson.dumps(
        [render.channel_object(shape_world, c)["configuration"] for c in range(len(cat.CHANNELS))]
    ).decode()
    kinds = {int(k): e for e, k in reversed(list(enumerate(shape_world.event_kind.tolist())))}
    hooks = orjson.dumps(
        [
            render.event_object(shape_world, e, shape_world.end_us, with_payload=False)["webhook"]
            for e in kinds.values()
        ]
    ).decode()
    assert len(kinds) == 3
    for secret in secrets:
        assert secret in configurations or secret in hooks, secret
    order = orjson.dumps(render.order_object(shape_world, 0, shape_world.end_us)).decode()
    assert any(s in order for s in secrets)
    assert not any(s in order for s in World.generate(seed=12, orders=5).secrets())
    short = orjson.dumps(render.order_short_object(shape_world, 0, shape_world.end_us)).decode()
    assert not any(s in short for s in secrets)
