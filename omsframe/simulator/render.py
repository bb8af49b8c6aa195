"""Render the world's orders and events as the OMS API's JSON objects, at a moment ``now``.

The shapes follow the published order-list example key for key (see
``tests/fixtures/order-list-page.json``); the short and simple shapes and the webhook event
follow ``oms-api.md``. Rendering is on demand, one object at a time.
"""

from __future__ import annotations

from typing import Any

from omsframe.simulator import catalogue as cat
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


def money(cents: int) -> str:
    """Format integer cents as the API's decimal string (``"1250.00"``)."""
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def state_object(code: int, content_type: int = cat.ORDER_CONTENT_TYPE) -> Json:
    """The nested ``state`` object for a state code (unknown codes get a generated row)."""
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
    # a fresh copy each time: callers (fault injection) may change what they get
    return {**cached, "translations": {k: dict(v) for k, v in cached["translations"].items()}}


def customer_object(world: World, c: int) -> Json:
    """The nested ``customer`` object."""
    spec = cat.CHANNELS[int(world.customer_channel[c])]
    lang = "tr" if spec.language == "tr" else "en"
    first = cat.FIRST_NAMES[lang][int(world.customer_first[c])]
    last = cat.LAST_NAMES[lang][int(world.customer_last[c])]
    phone = int(world.customer_phone[c])
    pk = 3000 + c
    return {
        "email": f"{_ascii(first)}.{_ascii(last)}.{pk}@example.com".lower(),
        "first_name": first,
        "last_name": last,
        "phone_number": f"+90{phone}" if phone >= 0 else None,
        "erp_code": f"ERP{pk:07d}" if pk % 3 == 0 else None,
        "pk": pk,
        "channel": spec.id,
    }


def _ascii(text: str) -> str:
    table = str.maketrans("çğıöşüÇĞİÖŞÜ ", "cgiosuCGIOSU-")
    return text.translate(table)


def address_object(world: World, a: int) -> Json:
    """A shipping or billing address with its city, country, township and district."""
    place = world.places[int(world.address_place[a])]
    customer = customer_object(world, int(world.address_customer[a]))
    street = cat.STREET_NAMES[place.country.code]
    corporate = bool(world.address_corporate[a])
    created = int(world.address_created[a])
    number = int(world.address_number[a])
    return {
        "id": 9000 + a,
        "city": {
            "pk": place.city_pk,
            "name": place.city,
            "country": place.country.pk,
            "is_active": True,
            "longitude": place.city_lon,
            "latitude": place.city_lat,
        },
        "country": {
            "pk": place.country.pk,
            "name": place.country.name,
            "code": place.country.code,
            "is_active": True,
            "longitude": place.country.longitude,
            "latitude": place.country.latitude,
        },
        "township": {
            "pk": place.township_pk,
            "name": place.township,
            "city": place.city_pk,
            "is_active": True,
            "longitude": place.lon,
            "latitude": place.lat,
        },
        "district": {
            "pk": place.district_pk,
            "name": place.district,
            "city": place.city_pk,
            "township": place.township_pk,
            "is_active": True,
            "longitude": place.lon,
            "latitude": place.lat,
        },
        "customer": customer,
        "address_type": "customer",
        "created_date": iso(created),
        "modified_date": iso(created + 3 * US),
        "omnitron_id": 20000 + a,
        "mapping": None,
        "title": ("Ev", "İş", "Yazlık")[a % 3] if place.country.code == "tr" else "Home",
        "is_active": True,
        "line": f"{street[int(world.address_street[a]) % len(street)]} No:{number}",
        "postcode": place.postcode,
        "notes": None,
        "email": customer["email"],
        "phone_number": customer["phone_number"] or "",
        "first_name": customer["first_name"],
        "last_name": customer["last_name"],
        "company_name": f"{customer['last_name']} Ltd." if corporate else "",
        "tax_office": "Kadıköy" if corporate else "",
        "tax_no": f"{(a * 7919) % 10**10:010d}" if corporate else "",
        "e_bill_taxpayer": corporate,
    }


def channel_object(world: World, channel_index: int, *, with_configuration: bool = True) -> Json:
    """The nested ``channel``; ``configuration`` carries (fake) live credentials."""
    spec = cat.CHANNELS[channel_index]
    channel: Json = {
        "id": spec.id,
        "channel_type": spec.channel_type,
        "created_date": "2021-07-06T09:49:30.220001Z",
        "modified_date": "2023-02-16T15:16:54.433413Z",
        "omnitron_id": spec.id,
        "name": spec.name,
    }
    if with_configuration:
        secrets = world.channel_secrets[spec.id]
        channel["configuration"] = {
            "server": f"https://shop{spec.id}.example.com/api/v1",
            "password": secrets["password"],
            "username": "omnitron",
            "sales_url": f"https://shop{spec.id}.example.com/",
            "auth_token": secrets["auth_token"],
            "feature_flags": {},
            "cancel_mail_subject": "{}",
            "cancel_mail_template_url": "{}",
            "localized_cancel_mail_subject": {},
            "direct_cancel_mail_template_url": "{}",
        }
    channel["is_active"] = True
    return channel


def product_object(world: World, p: int) -> Json:
    """The nested ``product`` of an item, with attributes and images."""
    category, _base, _clothing, _names = cat.CATEGORIES[int(world.product_category[p])]
    color = cat.COLORS[int(world.product_color[p])]
    size = cat.SIZES[int(world.product_size[p])]
    material = cat.MATERIALS[int(world.product_material[p])]
    base_code = f"AKN-{100 + p // 5:04d}"
    attributes = {"category": category, "color": color, "size": size, "material": material}
    kinds = {"category": "dropdown", "color": "valuelabel", "size": "dropdown", "material": "text"}
    return {
        "id": 300 + p,
        "productimage_set": [
            {
                "order": k,
                "id": 400 + 3 * p + k,
                "url": f"https://cdn.example.com/products/{p}/{k}.jpg",
                "product": 300 + p,
            }
            for k in range(1 + p % 3)
        ],
        "created_date": "2022-11-10T06:57:37.198392Z",
        "modified_date": "2022-11-10T06:57:37.198402Z",
        "omnitron_id": 8000 + p,
        "name": world.product_name[p],
        "base_code": base_code,
        "sku": f"{base_code}-{color[:3].upper()}-{size}",
        "barcode": world.product_barcode[p],
        "attributes": attributes,
        "attributes_kwargs": {
            key: {"label": value, "value": value, "data_type": kinds[key]}
            for key, value in attributes.items()
        },
        "extra_attributes": {},
        "remote_modified_date": "2022-09-07T11:49:23.777608Z",
    }


def _price_list(channel_index: int) -> Json:
    spec = cat.CHANNELS[channel_index]
    return {
        "pk": 30 + spec.id,
        "code": f"{spec.currency}_price_list",
        "name": f"{spec.name} price list",
        "currency": spec.currency,
        "created_date": "2021-02-25T13:41:08.252536Z",
        "is_auto_sync": False,
        "modified_date": "2023-02-02T13:27:03.825072Z",
    }


def _stock_list(channel_index: int) -> Json:
    spec = cat.CHANNELS[channel_index]
    return {
        "pk": 30 + spec.id,
        "code": None if spec.id % 2 else f"stock_{spec.id}",
        "name": f"{spec.name} stock list",
        "created_date": "2021-02-25T13:41:20.523128Z",
        "is_auto_sync": False,
        "modified_date": "2021-02-25T13:41:20.523152Z",
    }


def item_object(world: World, order: int, k: int, order_state: int, now_us: int) -> Json:
    """One order item (one unit) as of ``now_us``.

    The item is in the order's state (and was modified with it) unless it had a change of its
    own (a single item cancelled or refunded) by ``now_us``.
    """
    channel = int(world.order_channel[order])
    order_changed = world.order_transitions(order, now_us)[-1][0]
    state, modified = order_state, max(int(world.order_created[order]) + 20, order_changed)
    change_time = int(world.item_change_time[k])
    if 0 <= change_time <= now_us:
        state, modified = int(world.item_change_state[k]), change_time
    price, discount = int(world.item_price[k]), int(world.item_discount[k])
    net = price - discount
    rate = int(world.item_tax_rate[k])
    tax = (
        None
        if world.order_tax_null[order]
        else money((2 * net * rate + 10000 + rate) // (2 * (10000 + rate)))
    )
    order_id = int(world.order_id[order])
    return {
        "id": int(world.item_id[k]),
        "state": state_object(state, cat.ITEM_CONTENT_TYPE),
        "product": product_object(world, int(world.item_product[k])),
        "created_date": iso(int(world.order_created[order]) + 20),
        "modified_date": iso(modified),
        "omnitron_id": 70000 + int(world.item_id[k]),
        "net_amount": money(net),
        "price": money(price),
        "price_currency": cat.CHANNELS[channel].currency,
        "retail_price": money(int(world.item_retail[k])),
        "tax_rate": money(rate),
        "tax_amount": tax,
        "discount_amount": money(discount),
        "without_net_amount": None,
        "installment_interest_amount": None,
        "attributes": {},
        "attributes_kwargs": {},
        "image": None,
        "price_list": _price_list(channel),
        "stock_list": _stock_list(channel),
        "extra_field": {"price_extra_field": {}, "stock_extra_field": {}},
        "parent_omnitron_id": None,
        "order": order_id,
    }


def _order_head(world: World, i: int, now_us: int) -> tuple[Json, int, int]:
    """State object, state code and modified time of order ``i`` at ``now_us``."""
    transitions = world.order_transitions(i, now_us)
    time, code = transitions[-1]
    lo, hi = int(world.item_ptr[i]), int(world.item_ptr[i + 1])
    for k in range(lo, hi):
        change = int(world.item_change_time[k])
        if time < change <= now_us:
            time = change
    return state_object(code), code, time


def _order_fields(world: World, i: int, now_us: int, code: int, modified: int) -> Json:
    shipped = any(s in (500, 520) for _, s in world.order_transitions(i, now_us))
    order_id = int(world.order_id[i])
    return {
        "payment_type": cat.PAYMENT_TYPES[int(world.order_payment[i])][0],
        "retail_store": None,
        "delivery_range": None,
        "client_type": cat.CLIENT_TYPES[int(world.order_client[i])][0],
        "delivery_type": cat.DELIVERY_TYPES[int(world.order_delivery[i])][0],
        "created_date": iso(int(world.order_created[i])),
        "modified_date": iso(modified),
        "omnitron_id": 60000 + order_id,
        "number": number_of(order_id),
        "date_placed": iso(int(world.order_placed[i])),
        "tracking_number": f"TRK{order_id * 37 % 10**9:09d}" if shipped else None,
        "has_gift_box": bool(world.order_gift[i]),
        "gift_box_note": "İyi ki doğdun!" if world.order_gift[i] else None,
        "notes": None,
        "segment": None,
        "cargo_company": int(world.order_cargo[i]),
    }


def order_object(world: World, i: int, now_us: int) -> Json:
    """The full order (list and detail shape) of order index ``i`` as of ``now_us``."""
    state, code, modified = _order_head(world, i, now_us)
    lo, hi = int(world.item_ptr[i]), int(world.item_ptr[i + 1])
    return {
        "id": int(world.order_id[i]),
        "state": state,
        "commands": [],
        "orderitem_set": [item_object(world, i, k, code, now_us) for k in range(lo, hi)],
        "customer": customer_object(world, int(world.order_customer[i])),
        "shipping_address": address_object(world, int(world.order_shipping[i])),
        "billing_address": address_object(world, int(world.order_billing[i])),
        "channel": channel_object(world, int(world.order_channel[i])),
        **_order_fields(world, i, now_us, code, modified),
    }


def order_short_object(world: World, i: int, now_us: int) -> Json:
    """The short shape: order fields, no items, no addresses, channel without configuration."""
    state, code, modified = _order_head(world, i, now_us)
    return {
        "id": int(world.order_id[i]),
        "state": state,
        "customer": customer_object(world, int(world.order_customer[i])),
        "shipping_address": 9000 + int(world.order_shipping[i]),
        "billing_address": 9000 + int(world.order_billing[i]),
        "channel": channel_object(world, int(world.order_channel[i]), with_configuration=False),
        **_order_fields(world, i, now_us, code, modified),
    }


def order_simple_object(world: World, i: int, now_us: int) -> Json:
    """The simple shape: flat, ids in place of nested objects."""
    _state, code, modified = _order_head(world, i, now_us)
    return {
        "id": int(world.order_id[i]),
        "state": cat.state_id(code, cat.ORDER_CONTENT_TYPE),
        "customer": 3000 + int(world.order_customer[i]),
        "shipping_address": 9000 + int(world.order_shipping[i]),
        "billing_address": 9000 + int(world.order_billing[i]),
        "channel": cat.CHANNELS[int(world.order_channel[i])].id,
        **_order_fields(world, i, now_us, code, modified),
    }


def event_object(world: World, e: int, now_us: int, *, with_payload: bool = True) -> Json:
    """Webhook event ``e`` (index; id ``e + 1``) as of ``now_us``."""
    time = int(world.event_time[e])
    order = int(world.event_order[e])
    attempts = int(world.event_attempts[e])
    seen = [time + s * US for s in RETRY_OFFSETS_S[:attempts] if time + s * US <= now_us]
    delivered = bool(world.event_ok[e]) and len(seen) == attempts
    hook = world.webhooks[int(world.event_webhook[e])]
    failure_status = (500, 502, 503, 504)[e % 4]
    uuid = f"{world.seed % 10**8:08x}-{e >> 16 & 0xFFFF:04x}-4{e & 0xFFF:03x}-8000-{e:012x}"
    event: Json = {
        "id": e + 1,
        "uuid": uuid,
        "event_type": EVENT_TYPES[int(world.event_kind[e])],
        "order": int(world.order_id[order]),
        "order_number": number_of(int(world.order_id[order])),
    }
    if with_payload:
        event["request_payload"] = {
            "event": {"type": event["event_type"], "uuid": uuid},
            "payload": order_object(world, order, time),
        }
    event.update(
        {
            "response_http_status": 200 if delivered else failure_status,
            "response_content": '{"ok": true}' if delivered else "Service Unavailable",
            "delivered": delivered,
            "retry_count": max(0, len(seen) - 1),
            "request_datetimes": [iso(t) for t in seen],
            "webhook": {
                "id": hook.id,
                "target_url": hook.target_url,
                "event_type": hook.event_type,
                "secret_key": hook.secret_key,
                "config": {
                    "auth": {"username": hook.auth_username, "password": hook.auth_password}
                },
                "additional_headers": {"X-Api-Key": hook.header_value},
            },
            "created_date": iso(time),
            "modified_date": iso(seen[-1]),
        }
    )
    return event
