"""Rendering with kept parts is byte-identical to rendering without, and safe to change.

The renderer keeps the objects that do not change with the clock (``world.parts``) and hands
them out *shared* to the server (``shared=True``), *copied* to everyone else. These tests pin
the bytes to those of the renderer before the parts were kept, check that shared and copied
renderings are the same bytes, and that changing what one gets (fault injection on shared
objects, any caller on copies) never leaks into the next rendering.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from omsframe.simulator import faults as flt
from omsframe.simulator import render
from omsframe.simulator.parts import fresh
from omsframe.simulator.world import DAY, EPOCH, World, iso

Json = dict[str, Any]
# SHA-256 of rendered(World.generate(seed=21, orders=400)), recorded with the renderer as it was
# before it kept parts (commit f59c6f7). A deliberate change of the rendered JSON changes it.
PINNED = "55636e589c1e2322fd4d89030cd98778b8e08554da3389773cf4333edefa1b53"
SHAPES: tuple[tuple[str, Callable[..., Json]], ...] = (
    ("full", render.order_object),
    ("short", render.order_short_object),
    ("simple", render.order_simple_object),
)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=21, orders=400)


def moments(world: World) -> tuple[int, ...]:
    """Early, middle and end of the horizon, and long after it (every lifecycle complete)."""
    middle = world.start_us + (world.end_us - world.start_us) // 2
    return (world.start_us + 20 * DAY, middle, world.end_us, world.end_us + 120 * DAY)


def rendered(world: World, **options: bool) -> Iterator[bytes]:
    """Every visible order in every shape and every third event, at every moment, as bytes."""
    for now in moments(world):
        for i in range(world.visible_orders(now)):
            for _shape, function in SHAPES:
                yield orjson.dumps(function(world, i, now, **options))
        for e in range(0, world.visible_events(now), 3):
            yield orjson.dumps(render.event_object(world, e, now, **options))
            yield orjson.dumps(render.event_object(world, e, now, with_payload=False, **options))


def digest(chunks: Iterator[bytes]) -> str:
    sha = hashlib.sha256()
    for chunk in chunks:
        sha.update(len(chunk).to_bytes(8, "little"))
        sha.update(chunk)
    return sha.hexdigest()


def containers(value: Any) -> Iterator[dict[str, Any] | list[Any]]:
    """Every dict and list inside ``value`` (itself included)."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from containers(item)
    elif isinstance(value, list):
        yield value
        for item in value:
            yield from containers(item)


def vandalize(value: Any) -> None:
    """Change every dict and list inside ``value`` in place."""
    for container in list(containers(value)):
        if isinstance(container, dict):
            container["vandal"] = True
            container.pop("id", None)
        else:
            container.append("vandal")


def test_rendering_is_byte_identical_to_before_parts_were_kept(world: World) -> None:
    assert digest(rendered(world)) == PINNED


def test_shared_rendering_is_byte_identical_to_copied_rendering(world: World) -> None:
    for shared, copied in zip(rendered(world, shared=True), rendered(world), strict=True):
        assert shared == copied


def test_copies_are_independent_of_the_kept_parts(world: World) -> None:
    now = world.end_us
    before = [orjson.dumps(render.order_object(world, i, now)) for i in range(60)]
    for i in range(60):
        for _shape, function in SHAPES:
            vandalize(function(world, i, now))
        vandalize(render.event_object(world, i, now))
    for function in (render.product_object, render.customer_object, render.address_object):
        vandalize(function(world, 0))
    vandalize(render.channel_object(world, 0))
    vandalize(render.state_object(400))
    after = [orjson.dumps(render.order_object(world, i, now)) for i in range(60)]
    assert after == before
    shared = [orjson.dumps(render.order_object(world, i, now, shared=True)) for i in range(60)]
    assert shared == before


def test_copied_objects_share_no_container_with_each_other(world: World) -> None:
    now = world.end_us
    kept = [function(world, i, now) for i in range(40) for _shape, function in SHAPES]
    kept += [render.event_object(world, e, now) for e in range(40)]
    every = [id(container) for order in kept for container in containers(order)]
    assert len(every) == len(set(every))  # all alive at once: equal ids would be one object


def test_shared_rendering_hands_out_the_kept_parts(world: World) -> None:
    now = world.end_us
    first = render.order_object(world, 0, now, shared=True)
    again = render.order_object(world, 0, now, shared=True)
    assert first == again and first is not again
    assert first["orderitem_set"][0]["product"] is again["orderitem_set"][0]["product"]
    assert first["channel"] is again["channel"]
    assert first["orderitem_set"] is not again["orderitem_set"]  # items are always new
    copied = render.order_object(world, 0, now)
    assert copied["orderitem_set"][0]["product"] is not first["orderitem_set"][0]["product"]


def test_drift_on_shared_orders_does_not_leak_into_later_renderings(world: World) -> None:
    faults = flt.Faults(rate_drift=1.0, seed=4)
    now = world.end_us
    clean = digest(rendered(world))
    drifted_bytes = []
    for i in range(world.visible_orders(now)):
        for shape, function in SHAPES:
            order = function(world, i, now, shared=True)
            assert flt.apply_drift(order, faults, shape)
            drifted_bytes.append(orjson.dumps(order))
            copy = function(world, i, now)
            flt.apply_drift(copy, faults, shape)
            assert orjson.dumps(copy) == drifted_bytes[-1]
        event = render.event_object(world, i, now, shared=True)
        flt.apply_drift(event["request_payload"]["payload"], faults, "full")
    assert digest(rendered(world)) == clean
    assert digest(rendered(world, shared=True)) == clean


def test_item_object_is_the_item_of_its_order(world: World) -> None:
    now = world.end_us
    for i in range(50):
        order = render.order_object(world, i, now)
        code = int(order["state"]["enum_value"])
        lo, hi = int(world.item_ptr[i]), int(world.item_ptr[i + 1])
        items = [render.item_object(world, i, k, code, now) for k in range(lo, hi)]
        assert items == order["orderitem_set"]


def test_iso_formats_as_datetime_does() -> None:
    def reference(us: int) -> str:
        moment = EPOCH + dt.timedelta(microseconds=us)
        return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"

    rng = random.Random(3)
    edges = [0, -1, 1, DAY - 1, DAY, -DAY, 951_782_400 * 10**6 - 1, 4_102_444_800 * 10**6]
    values = edges + [rng.randrange(-(10**16), 10**16) for _ in range(20_000)]
    for us in values:
        assert iso(us) == reference(us), us


def test_money_formats_cents() -> None:
    cases = {0: "0.00", 5: "0.05", 100: "1.00", 123456: "1234.56", -5: "-0.05", -250: "-2.50"}
    for cents, text in cases.items():
        assert render.money(cents) == text


def test_fresh_copies_deeply() -> None:
    shared = {"a": [{"b": 1}, [2]], "c": {"d": None}, "e": "x"}
    copy = fresh(shared)
    assert copy == shared
    assert all(id(x) not in {id(y) for y in containers(shared)} for x in containers(copy))
