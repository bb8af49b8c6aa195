"""Render the world's orders and events as the OMS API's JSON objects, at a moment ``now``.

The shapes follow the published order-list example key for key (see
``tests/fixtures/order-list-page.json``); the short and simple shapes and the webhook event
follow ``oms-api.md``. Rendering is on demand, one object at a time; the parts that do not
change with the clock come from the world's :class:`~omsframe.simulator.parts.Parts`. Every
function hands out new objects that the caller may change, unless asked for ``shared`` ones.
"""

from __future__ import annotations

from typing import Any

from omsframe.simulator import catalogue as cat
from omsframe.simulator.parts import fresh
from omsframe.simulator.world import (
    EVENT_TYPES,
    RETRY_OFFSETS_S,
    US,
    World,
    iso,
    number_of,
)

Json = dict[str, Any]
_STATE_CACHE: dict[tuple[int, int], Json] = {}
CURRENCIES = ("try", "eur", "usd")
_CENTS = tuple(f".{cents:02d}" for cents in range(100))


def money(cents: int) -> str:
    """Format integer cents as the API's decimal string (``"1250.00"``)."""
    if cents < 0:
        return f"-{money(-cents)}"
    units, rest = divmod(cents, 100)
    return f"{units}{_CENTS[rest]}"


def _state(code: int, content_type: int) -> Json:
    """The kept ``state`` object of a state code (shared: never change it)."""
    key = (code, content_type)
    cached = _STATE_CACHE.get(key)
    if cached is None:
        en, tr = cat.STATE_NAMES.get(code) or cat.UNKNOWN_STATES[code]
        cached = {
            "id": cat.state_id(code, content_type),
            "created_date": cat.STATE_CATALOGUE_CREATED,
            "modified_date": cat.STATE_CATALOGUE_MODIFIED,
            "translations": {"en-us": {"name": en}, "tr-tr": {"name": tr}},
            "name": en,
            "config": {},
            "enum_class": "OrderStatus",
            "enum_value": str(code),
            "content_type": content_type,
        }
        _STATE_CACHE[key] = cached
    return cached


def state_object(code: int, content_type: int = cat.ORDER_CONTENT_TYPE) -> Json:
    """The nested ``state`` object for a state code (unknown codes get a generated row)."""
    # a fresh copy each time: callers (fault injection) may change what they get
    return fresh(_state(code, content_type))


def customer_object(world: World, c: int) -> Json:
    """The nested ``customer`` object."""
    return world.parts.customer(c)


def address_object(world: World, a: int) -> Json:
    """A shipping or billing address with its city, country, township and district."""
    return world.parts.address(a, shared=False)


def channel_object(world: World, channel_index: int, *, with_configuration: bool = True) -> Json:
    """The nested ``channel``; ``configuration`` carries (fake) live credentials."""
    return fresh(world.parts.channel(channel_index, with_configuration))


def product_object(world: World, p: int) -> Json:
    """The nested ``product`` of an item, with attributes and images."""
    return fresh(world.parts.product(p))


def item_object(world: World, order: int, k: int, order_state: int, now_us: int) -> Json:
    """One order item (one unit) as of ``now_us``.

    The item is in the order's state (and was modified with it) unless it had a change of its
    own (a single item cancelled or refunded) by ``now_us``.
    """
    changed = world.order_transitions(order, now_us)[-1][0]
    rendering = _Order(world, order, now_us, shared=False)
    return rendering.items(order_state, changed, range(k, k + 1))[0]


class _Order:
    """What the objects of one order at one moment share: computed once per order."""

    def __init__(self, world: World, i: int, now_us: int, *, shared: bool) -> None:
        self.world, self.i, self.now_us, self.shared = world, i, now_us, shared
        self.parts = world.parts
        self.id = int(world.order_id[i])
        self.created = int(world.order_created[i])
        self.channel = int(world.order_channel[i])
        self.lo, self.hi = int(world.item_ptr[i]), int(world.item_ptr[i + 1])

    def head(self) -> tuple[int, int, int, bool]:
        """State code, last transition time, ``modified_date`` and whether it shipped."""
        world, now_us = self.world, self.now_us
        transitions = world.order_transitions(self.i, now_us)
        changed, code = transitions[-1]
        modified = changed
        for change in world.item_change_time[self.lo : self.hi].tolist():
            if modified < change <= now_us:
                modified = change
        shipped = any(s in (500, 520) for _, s in transitions)
        return code, changed, modified, shipped

    def state(self, code: int, content_type: int = cat.ORDER_CONTENT_TYPE) -> Json:
        """A state object: the kept one when shared, else a copy."""
        if self.shared:
            return _state(code, content_type)
        return state_object(code, content_type)

    def items(self, order_state: int, changed: int, ks: range) -> list[Json]:
        """Items ``ks`` of this order; ``changed`` is the time of the order's last transition.

        An item is in the order's state (and was modified with it) unless it had a change of
        its own (a single item cancelled or refunded) by ``now_us``.
        """
        world, parts, shared, now_us = self.world, self.parts, self.shared, self.now_us
        created = iso(self.created + 20)
        order_modified = max(self.created + 20, changed)
        order_modified_iso = iso(order_modified)
        currency = cat.CHANNELS[self.channel].currency
        tax_null = bool(world.order_tax_null[self.i])
        price_list, stock_list = parts.price_stock_lists(self.channel)
        items = []
        for k in ks:
            state, modified = order_state, order_modified_iso
            change_time = int(world.item_change_time[k])
            if 0 <= change_time <= now_us:
                state, modified = int(world.item_change_state[k]), iso(change_time)
            price, discount = int(world.item_price[k]), int(world.item_discount[k])
            net = price - discount
            rate = int(world.item_tax_rate[k])
            tax = (
                None if tax_null else money((2 * net * rate + 10000 + rate) // (2 * (10000 + rate)))
            )
            item_id = int(world.item_id[k])
            product = parts.product(int(world.item_product[k]))
            items.append(
                {
                    "id": item_id,
                    "state": self.state(state, cat.ITEM_CONTENT_TYPE),
                    "product": product if shared else fresh(product),
                    "created_date": created,
                    "modified_date": modified,
                    "omnitron_id": 70000 + item_id,
                    "net_amount": money(net),
                    "price": money(price),
                    "price_currency": currency,
                    "retail_price": money(int(world.item_retail[k])),
                    "tax_rate": money(rate),
                    "tax_amount": tax,
                    "discount_amount": money(discount),
                    "without_net_amount": None,
                    "installment_interest_amount": None,
                    "attributes": {},
                    "attributes_kwargs": {},
                    "image": None,
                    "price_list": price_list if shared else dict(price_list),
                    "stock_list": stock_list if shared else dict(stock_list),
                    "extra_field": {"price_extra_field": {}, "stock_extra_field": {}},
                    "parent_omnitron_id": None,
                    "order": self.id,
                }
            )
        return items

    def customer(self) -> Json:
        """The order's customer (a new dict)."""
        return self.parts.customer(int(self.world.order_customer[self.i]))

    def addresses(self, customer: Json) -> tuple[Json, Json]:
        """The shipping and billing addresses (one dict twice if shared and the same).

        ``customer`` is the order's customer: an address of that customer gets it (a copy
        unless shared) rather than building it again.
        """
        world, parts, shared = self.world, self.parts, self.shared
        shipping, billing = int(world.order_shipping[self.i]), int(world.order_billing[self.i])
        c = int(world.order_customer[self.i])
        first = parts.address(shipping, shared=shared, customer=customer, customer_index=c)
        if billing != shipping:
            second = parts.address(billing, shared=shared, customer=customer, customer_index=c)
            return first, second
        return first, first if shared else _address_copy(first)

    def fields(self, modified: int, shipped: bool) -> Json:
        """The flat fields that every shape ends with."""
        world, i = self.world, self.i
        order_id = self.id
        gift = bool(world.order_gift[i])
        return {
            "payment_type": cat.PAYMENT_TYPES[int(world.order_payment[i])][0],
            "retail_store": None,
            "delivery_range": None,
            "client_type": cat.CLIENT_TYPES[int(world.order_client[i])][0],
            "delivery_type": cat.DELIVERY_TYPES[int(world.order_delivery[i])][0],
            "created_date": iso(self.created),
            "modified_date": iso(modified),
            "omnitron_id": 60000 + order_id,
            "number": number_of(order_id),
            "date_placed": iso(int(world.order_placed[i])),
            "tracking_number": f"TRK{order_id * 37 % 10**9:09d}" if shipped else None,
            "has_gift_box": gift,
            "gift_box_note": "İyi ki doğdun!" if gift else None,
            "notes": None,
            "segment": None,
            "cargo_company": int(world.order_cargo[i]),
        }


def _address_copy(address: Json) -> Json:
    """An independent copy of an address built with fresh place objects."""
    copy = {**address, "customer": dict(address["customer"])}
    for key in ("city", "country", "township", "district"):
        copy[key] = dict(address[key])
    return copy


def order_object(world: World, i: int, now_us: int, *, shared: bool = False) -> Json:
    """The full order (list and detail shape) of order index ``i`` as of ``now_us``.

    Args:
        world: The shop.
        i: Order index.
        now_us: The moment.
        shared: Let nested objects that do not change with the clock (products, places,
            channel, price and stock lists, states) be the ones kept by ``world.parts``:
            faster, for callers that serialize the order at once and change at most the
            order's own keys and its item dicts (the server and its fault injection). By
            default every nested object is new.
    """
    order = _Order(world, i, now_us, shared=shared)
    code, changed, modified, shipped = order.head()
    customer = order.customer()
    shipping, billing = order.addresses(customer)
    channel = world.parts.channel(order.channel, True)
    return {
        "id": order.id,
        "state": order.state(code),
        "commands": [],
        "orderitem_set": order.items(code, changed, range(order.lo, order.hi)),
        "customer": customer,
        "shipping_address": shipping,
        "billing_address": billing,
        "channel": channel if shared else fresh(channel),
        **order.fields(modified, shipped),
    }


def order_short_object(world: World, i: int, now_us: int, *, shared: bool = False) -> Json:
    """The short shape: order fields, no items, no addresses, channel without configuration.

    ``shared`` as for :func:`order_object`.
    """
    order = _Order(world, i, now_us, shared=shared)
    code, _changed, modified, shipped = order.head()
    channel = world.parts.channel(order.channel, False)
    return {
        "id": order.id,
        "state": order.state(code),
        "customer": order.customer(),
        "shipping_address": 9000 + int(world.order_shipping[i]),
        "billing_address": 9000 + int(world.order_billing[i]),
        "channel": channel if shared else dict(channel),
        **order.fields(modified, shipped),
    }


def order_simple_object(world: World, i: int, now_us: int, *, shared: bool = False) -> Json:
    """The simple shape: flat, ids in place of nested objects (``shared`` changes nothing)."""
    order = _Order(world, i, now_us, shared=shared)
    code, _changed, modified, shipped = order.head()
    return {
        "id": order.id,
        "state": cat.state_id(code, cat.ORDER_CONTENT_TYPE),
        "customer": 3000 + int(world.order_customer[i]),
        "shipping_address": 9000 + int(world.order_shipping[i]),
        "billing_address": 9000 + int(world.order_billing[i]),
        "channel": cat.CHANNELS[order.channel].id,
        **order.fields(modified, shipped),
    }


def event_object(
    world: World, e: int, now_us: int, *, with_payload: bool = True, shared: bool = False
) -> Json:
    """Webhook event ``e`` (index; id ``e + 1``) as of ``now_us``.

    ``shared`` as for :func:`order_object` (it applies to the payload and the webhook).
    """
    time = int(world.event_time[e])
    order = int(world.event_order[e])
    attempts = int(world.event_attempts[e])
    seen = [time + s * US for s in RETRY_OFFSETS_S[:attempts] if time + s * US <= now_us]
    delivered = bool(world.event_ok[e]) and len(seen) == attempts
    webhook = world.parts.webhook(int(world.event_webhook[e]))
    failure_status = (500, 502, 503, 504)[e % 4]
    uuid = f"{world.seed % 10**8:08x}-{e >> 16 & 0xFFFF:04x}-4{e & 0xFFF:03x}-8000-{e:012x}"
    order_id = int(world.order_id[order])
    event: Json = {
        "id": e + 1,
        "uuid": uuid,
        "event_type": EVENT_TYPES[int(world.event_kind[e])],
        "order": order_id,
        "order_number": number_of(order_id),
    }
    if with_payload:
        event["request_payload"] = {
            "event": {"type": event["event_type"], "uuid": uuid},
            "payload": order_object(world, order, time, shared=shared),
        }
    event["response_http_status"] = 200 if delivered else failure_status
    event["response_content"] = '{"ok": true}' if delivered else "Service Unavailable"
    event["delivered"] = delivered
    event["retry_count"] = max(0, len(seen) - 1)
    event["request_datetimes"] = [iso(t) for t in seen]
    event["webhook"] = webhook if shared else fresh(webhook)
    event["created_date"] = iso(time)
    event["modified_date"] = iso(seen[-1])
    return event
