"""How a :class:`~omsframe.simulator.world.World` is drawn from its seed.

The draw is one pass in creation order: calendar (growth, weekly and yearly seasonality,
campaign days), customers (new or returning), baskets and amounts, then each order's
lifecycle and the webhook events it emits. Vectorised with numpy where it can be; the per-order
loop uses pre-drawn uniforms so that the result depends on the seed alone.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from omsframe.simulator import catalogue as cat
from omsframe.simulator.world import (
    DAY,
    EVENT_CREATED,
    EVENT_ITEM,
    EVENT_STATUS,
    HOUR,
    US,
    Webhook,
    secret_token,
)

if TYPE_CHECKING:
    from omsframe.simulator.world import World

MINUTE = 60 * US
LOCAL_OFFSET = 3 * HOUR  # the shop's business time zone, Europe/Istanbul (UTC+3, no DST)
CREATION_DELAY_MAX = 600 * US  # an order's OMS record is created 5 s to 10 min after placing
CURRENCIES = ("try", "eur", "usd")
WEEKDAY_WEIGHT = (1.0, 0.95, 0.95, 1.0, 1.05, 1.15, 1.25)  # Monday first
# Orders by local hour (Istanbul, UTC+3), evening peak.
HOUR_WEIGHT = np.array(
    [3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 9, 10, 12, 13, 13, 10, 6], dtype=float
)


def campaign_calendar(
    start: dt.date, end: dt.date, rng: np.random.Generator
) -> dict[dt.date, float]:
    """Campaign days and their volume multiplier: Black Friday, 11.11, and seeded flash sales."""
    days: dict[dt.date, float] = {}
    for year in range(start.year, end.year + 1):
        november_last = dt.date(year, 11, 30)
        black_friday = november_last - dt.timedelta(days=(november_last.weekday() - 4) % 7)
        days[black_friday] = 4.0
        for k in (1, 2, 3):
            days[black_friday + dt.timedelta(days=k)] = 2.0
        days[dt.date(year, 11, 11)] = 3.0
        for offset in rng.choice(365, size=6, replace=False):
            day = dt.date(year, 1, 1) + dt.timedelta(days=int(offset))
            days.setdefault(day, 2.5)
    return {d: m for d, m in days.items() if start <= d <= end}


def local_date(us: int) -> dt.date:
    """The business (Istanbul, UTC+3) date of a moment in microseconds since the epoch."""
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us + LOCAL_OFFSET)).date()


def placement_window(start_us: int, end_us: int) -> tuple[int, int]:
    """First and last moment an order can be placed: its OMS record must exist by ``end``."""
    return start_us, max(start_us, end_us - CREATION_DELAY_MAX)


def _draw_times(
    rng: np.random.Generator, n: int, start_us: int, end_us: int, campaign: dict[dt.date, float]
) -> np.ndarray:
    """Placement times: growth, weekly and yearly seasonality and campaign days by local day.

    Days are business (Istanbul) days; draws that fall outside the placement window (the
    partial first and last day) are rejected and drawn again, so the window's edges are not
    piled up with clipped orders.
    """
    lo, hi = placement_window(start_us, end_us)
    if hi - lo < HOUR:  # too short for a daily profile
        return np.sort(rng.integers(lo, hi + 1, size=n))
    first = local_date(lo)
    n_days = (local_date(hi) - first).days + 1
    days = [first + dt.timedelta(days=k) for k in range(n_days)]
    growth = np.exp(0.6 * np.arange(n_days) / max(n_days, 1))
    weekly = np.array([WEEKDAY_WEIGHT[d.weekday()] for d in days])
    yearly = np.array(
        [1 + 0.2 * math.cos(2 * math.pi * (d.timetuple().tm_yday - 355) / 365) for d in days]
    )
    boost = np.array([campaign.get(d, 1.0) for d in days])
    weight = growth * weekly * yearly * boost
    day_p = weight / weight.sum()
    hour_p = HOUR_WEIGHT / HOUR_WEIGHT.sum()
    day0 = (dt.datetime.combine(first, dt.time()) - dt.datetime(1970, 1, 1)) // dt.timedelta(
        microseconds=1
    ) - LOCAL_OFFSET  # local midnight of the first day, in UTC microseconds
    accepted: list[np.ndarray] = []
    need = n
    share = min(1.0, max(0.02, (hi - lo) / (n_days * DAY)))
    while need > 0:
        m = int(need / share * 1.1) + 16
        day_index = np.repeat(np.arange(n_days), rng.multinomial(m, day_p))
        local_hour = rng.choice(24, size=m, p=hour_p)
        times = day0 + day_index * DAY + local_hour * HOUR + rng.integers(0, HOUR, size=m)
        inside = times[(times >= lo) & (times <= hi)]
        accepted.append(inside)
        need -= len(inside)
    pool = np.concatenate([np.zeros(0, dtype=np.int64), *accepted])
    return np.sort(pool[rng.permutation(len(pool))[:n]])


def _products(rng: np.random.Generator, n_products: int) -> dict[str, Any]:
    category = rng.integers(0, len(cat.CATEGORIES), size=n_products).astype(np.int16)
    names: list[str] = []
    barcodes: list[str | None] = []
    color = rng.integers(0, len(cat.COLORS), size=n_products).astype(np.int16)
    size = rng.integers(0, len(cat.SIZES), size=n_products).astype(np.int16)
    material = rng.integers(0, len(cat.MATERIALS), size=n_products).astype(np.int16)
    name_pick = rng.integers(0, 3, size=n_products)
    no_barcode = rng.random(n_products) < 0.1
    retail_try = np.zeros(n_products, dtype=np.int64)
    spread = rng.uniform(0.7, 1.6, size=n_products)
    for p in range(n_products):
        _label, base, _clothing, titles = cat.CATEGORIES[category[p]]
        names.append(f"{titles[name_pick[p] % len(titles)]} {cat.COLORS[color[p]]}")
        barcodes.append(None if no_barcode[p] else f"869{p * 7919 % 10**10:010d}")
        # list prices end in .90 or .99, as shops set them
        lira = max(49, round(base * spread[p] / 10) * 10 - 1)
        retail_try[p] = lira * 100 + (90 if p % 2 else 99) - 100
    retail = np.zeros((3, n_products), dtype=np.int64)
    retail[0] = retail_try
    for c, factor in ((1, 36.0), (2, 33.0)):
        retail[c] = np.maximum(
            499, (np.round(retail_try / factor / 100) * 100 - 1).astype(np.int64)
        )
    markdown = np.where(rng.random(n_products) < 0.35, rng.uniform(0.1, 0.4, n_products), 0.0)
    sale = np.minimum(retail, np.round(retail * (1 - markdown)).astype(np.int64))
    return {
        "product_category": category,
        "product_name": tuple(names),
        "product_color": color,
        "product_size": size,
        "product_material": material,
        "product_barcode": tuple(barcodes),
        "product_retail": retail,
        "product_sale": sale,
    }


def _tax_cents(net: int, rate: int) -> int:
    """Tax share of a tax-inclusive amount, rounded half up to the cent (integers only)."""
    numerator = 2 * net * rate
    denominator = 10000 + rate
    return (numerator + denominator) // (2 * denominator)


def generate_world(
    cls: type[World], *, seed: int, orders: int, start_us: int, end_us: int
) -> World:
    """Draw a world; see :meth:`World.generate` for the arguments."""
    if orders < 0:
        raise ValueError(f"orders must be >= 0, got {orders}; pass a positive number of orders")
    if end_us <= start_us:
        raise ValueError("end must be after start; pass a later end date")
    rng = np.random.default_rng(seed)
    n = orders
    window = placement_window(start_us, end_us)
    campaign = campaign_calendar(local_date(window[0]), local_date(window[1]), rng)
    placed = _draw_times(rng, n, start_us, end_us, campaign)
    created = placed + rng.integers(5 * US, CREATION_DELAY_MAX, size=n)
    order_sort = np.argsort(created, kind="stable")
    placed, created = placed[order_sort], created[order_sort]
    products = _products(rng, 320)
    n_products = len(products["product_name"])
    popularity = 1.0 / np.arange(1, n_products + 1) ** 0.8
    popularity = rng.permutation(popularity / popularity.sum())
    places = cat.build_places()
    place_weight = np.array([p.weight for p in places])
    channel_share = np.array([c.share for c in cat.CHANNELS])
    payment_share = np.array([p[2] for p in cat.PAYMENT_TYPES])
    delivery_share = np.array([d[2] for d in cat.DELIVERY_TYPES])
    client_share = np.array([c[1] for c in cat.CLIENT_TYPES])
    places_by_country: dict[str, np.ndarray] = {}
    for code in dict.fromkeys(p.country.code for p in places):  # a fixed order: determinism
        idx = np.array([k for k, p in enumerate(places) if p.country.code == code])
        places_by_country[code] = idx

    # --- customers: new or returning, in creation order -----------------------------------
    u_customer = rng.random((n, 3))
    new_channel = rng.choice(len(cat.CHANNELS), size=n, p=channel_share)
    order_customer = np.zeros(n, dtype=np.int32)
    customer_channel: list[int] = []
    customer_created: list[int] = []
    horizon = max(end_us - start_us, 1)
    for i in range(n):
        age = (created[i] - start_us) / horizon
        p_return = 0.15 + 0.3 * age
        if i == 0 or u_customer[i, 0] >= p_return:
            order_customer[i] = len(customer_channel)
            customer_channel.append(int(new_channel[i]))
            customer_created.append(int(created[i]) - int(u_customer[i, 2] * 30 * DAY))
        elif u_customer[i, 1] < 0.5:  # preferential: loyal customers come back more
            order_customer[i] = order_customer[int(u_customer[i, 2] * i)]
        else:  # recency: customers who just bought come back soon
            back = 1 + int(-math.log(1 - u_customer[i, 2]) * max(1.0, 0.05 * i))
            order_customer[i] = order_customer[max(0, i - back)]
    n_customers = len(customer_channel)
    cust_channel = np.array(customer_channel, dtype=np.int16)
    order_channel = cust_channel[order_customer]
    lang = np.array([0 if cat.CHANNELS[c].language == "tr" else 1 for c in cust_channel])
    first = np.where(
        lang == 0,
        rng.integers(0, len(cat.FIRST_NAMES["tr"]), n_customers),
        rng.integers(0, len(cat.FIRST_NAMES["en"]), n_customers),
    ).astype(np.int16)
    last = np.where(
        lang == 0,
        rng.integers(0, len(cat.LAST_NAMES["tr"]), n_customers),
        rng.integers(0, len(cat.LAST_NAMES["en"]), n_customers),
    ).astype(np.int16)
    phone = np.where(
        rng.random(n_customers) < 0.7, rng.integers(5_300_000_000, 5_599_999_999, n_customers), -1
    ).astype(np.int64)
    n_addresses = np.where(rng.random(n_customers) < 0.2, 2, 1)
    address_ptr = np.concatenate([[0], np.cumsum(n_addresses)]).astype(np.int64)
    address_customer = np.repeat(np.arange(n_customers), n_addresses).astype(np.int32)
    n_addr = int(address_ptr[-1])
    address_place = np.zeros(n_addr, dtype=np.int16)
    for code, idx in places_by_country.items():
        countries_of = [c for c, ch in enumerate(cat.CHANNELS) if code in ch.country_codes]
        mask = np.isin(cust_channel[address_customer], countries_of)
        if code != "tr" and len(cat.CHANNELS[countries_of[0]].country_codes) > 1:
            # multi-country channel: split its addresses across its countries
            codes = cat.CHANNELS[countries_of[0]].country_codes
            mask &= (address_customer % len(codes)) == codes.index(code)
        w = place_weight[idx] / place_weight[idx].sum()
        address_place[mask] = rng.choice(idx, size=int(mask.sum()), p=w)
    customer_created_arr = np.array(customer_created, dtype=np.int64)

    # --- order attributes -------------------------------------------------------------------
    payment = rng.choice(len(cat.PAYMENT_TYPES), size=n, p=payment_share).astype(np.int16)
    delivery = rng.choice(len(cat.DELIVERY_TYPES), size=n, p=delivery_share).astype(np.int16)
    cargo = rng.choice(np.array(cat.CARGO_COMPANIES), size=n).astype(np.int16)
    client = rng.choice(len(cat.CLIENT_TYPES), size=n, p=client_share).astype(np.int16)
    u_addr = rng.random((n, 2))
    own_lo, own_n = address_ptr[order_customer], n_addresses[order_customer]
    shipping = (own_lo + (u_addr[:, 0] * own_n).astype(np.int64)).astype(np.int32)
    other = own_lo + (own_n - 1) - (shipping - own_lo)
    billing = np.where(u_addr[:, 1] < 0.9, shipping, other).astype(np.int32)

    # --- baskets and money ------------------------------------------------------------------
    n_items = rng.choice(np.arange(1, 7), size=n, p=[0.42, 0.27, 0.14, 0.09, 0.05, 0.03])
    item_ptr = np.concatenate([[0], np.cumsum(n_items)]).astype(np.int64)
    n_total = int(item_ptr[-1])
    item_order = np.repeat(np.arange(n), n_items)
    item_product = rng.choice(n_products, size=n_total, p=popularity).astype(np.int32)
    currency = np.array([CURRENCIES.index(c.currency) for c in cat.CHANNELS])[order_channel]
    item_currency = currency[item_order]
    item_retail = products["product_retail"][item_currency, item_product]
    item_price = products["product_sale"][item_currency, item_product]
    # campaign days are business (local) days, like the volume boost in _draw_times
    campaign_day = np.array([(d - dt.date(1970, 1, 1)).days for d in campaign], dtype=np.int64)
    is_campaign = np.isin((placed + LOCAL_OFFSET) // DAY, campaign_day)
    coupon = rng.random(n) < 0.15
    rate = np.where(
        is_campaign,
        rng.uniform(0.2, 0.5, n),
        np.where(coupon, rng.uniform(0.05, 0.15, n), 0.0),
    )
    item_discount = np.round(item_price * rate[item_order]).astype(np.int64)
    clothing = np.array([c[2] for c in cat.CATEGORIES])[products["product_category"][item_product]]
    vat = np.array([c.vat for c in cat.CHANNELS])[order_channel[item_order]]
    item_tax_rate = np.where(clothing, vat[:, 0], vat[:, 1]).astype(np.int16)

    lifecycle = _lifecycles(rng, created, payment, delivery, item_ptr)
    world = cls(
        seed=seed,
        start_us=start_us,
        end_us=end_us,
        campaign_days=tuple(sorted(campaign)),
        channel_secrets={
            c.id: {
                "password": secret_token(seed, f"channel-{c.id}-password", 16),
                "auth_token": secret_token(seed, f"channel-{c.id}-token"),
            }
            for c in cat.CHANNELS
        },
        webhooks=tuple(
            Webhook(
                id=k + 1,
                target_url=f"https://hooks.example.com/oms/{k + 1}/",
                event_type=event_type,
                secret_key=secret_token(seed, f"webhook-{k}-secret", 32),
                auth_username=f"hook{k + 1}",
                auth_password=secret_token(seed, f"webhook-{k}-password", 20),
                header_value=secret_token(seed, f"webhook-{k}-header", 24),
            )
            for k, event_type in enumerate(
                ("order.created", "order.status.changed", "order.updated")
            )
        ),
        places=places,
        **products,
        customer_channel=cust_channel,
        customer_first=first,
        customer_last=last,
        customer_phone=phone,
        customer_created=customer_created_arr,
        customer_address_ptr=address_ptr,
        address_customer=address_customer,
        address_place=address_place,
        address_street=rng.integers(0, 3, n_addr).astype(np.int16),
        address_number=rng.integers(1, 180, n_addr).astype(np.int16),
        address_corporate=rng.random(n_addr) < 0.05,
        address_created=customer_created_arr[address_customer],
        order_id=np.arange(1, n + 1, dtype=np.int64) + 1000,
        order_placed=placed,
        order_created=created,
        order_channel=order_channel,
        order_customer=order_customer,
        order_shipping=shipping,
        order_billing=billing,
        order_payment=payment,
        order_delivery=delivery,
        order_cargo=cargo,
        order_client=client,
        order_gift=rng.random(n) < 0.04,
        order_tax_null=rng.random(n) < 0.1,
        item_ptr=item_ptr,
        item_id=np.arange(1, n_total + 1, dtype=np.int64) + 5000,
        item_product=item_product,
        item_price=item_price,
        item_retail=item_retail,
        item_discount=item_discount,
        item_tax_rate=item_tax_rate,
        **lifecycle,
    )
    return world


def _lifecycles(
    rng: np.random.Generator,
    created: np.ndarray,
    payment: np.ndarray,
    delivery: np.ndarray,
    item_ptr: np.ndarray,
) -> dict[str, Any]:
    """Each order's state changes, single-item changes and the webhook events they emit.

    The first state is entered when the OMS creates the order (``created``, not the earlier
    ``date_placed``), so that ``order.created`` never precedes the order it announces and
    ``modified_date`` is never before ``created_date``.
    """
    n = len(created)
    u = rng.random((n, 14))
    funds = cat.PAYMENT_TYPES.index(next(p for p in cat.PAYMENT_TYPES if p[0] == "funds_transfer"))
    kinds = [d[0] for d in cat.DELIVERY_TYPES]
    express, same_day, pickup = (
        kinds.index("express"),
        kinds.index("same_day"),
        kinds.index("click_and_collect"),
    )
    t_time: list[int] = []
    t_state: list[int] = []
    t_ptr = [0]
    n_items_total = int(item_ptr[-1])
    change_time = np.full(n_items_total, -1, dtype=np.int64)
    change_state = np.zeros(n_items_total, dtype=np.int16)

    def span(lo_h: float, hi_h: float, x: float) -> int:
        # skewed towards the short end, like real handling times
        return int((lo_h + (hi_h - lo_h) * x * x) * HOUR)

    for i in range(n):
        r = u[i]
        t = int(created[i])
        steps: list[tuple[int, int]] = []
        if payment[i] == funds:
            steps.append((t, 300))
            if r[0] < 0.15:  # never paid: cancelled when the three-day payment term ends
                steps.append((t + 72 * HOUR + span(0, 6, r[1]), 100))
                _append(t_time, t_state, t_ptr, steps)
                continue
            t += span(0.5, 72, r[1])  # the customer pays by bank transfer within the term
        else:
            steps.append((t, 200))
            t += int((1 + 29 * r[1]) * MINUTE)
        steps.append((t, 400))
        approved = t
        t += span(1, 20, r[2])
        preparing = t
        if r[3] < 0.07:  # cancelled before shipping
            cancel_at = approved + span(0.2, 30, r[4])
            if cancel_at > preparing:
                steps.append((preparing, 450))
            if r[5] < 0.3:
                steps.append((cancel_at, 50))
                cancel_at += span(1, 24, r[6])
            steps.append((cancel_at, 100))
            _append(t_time, t_state, t_ptr, steps)
            continue
        steps.append((preparing, 450))
        lo, hi = int(item_ptr[i]), int(item_ptr[i + 1])
        if hi - lo >= 2 and r[7] < 0.05:  # one item cancelled while preparing
            k = lo + int(r[8] * (hi - lo))
            change_time[k] = approved + int((preparing - approved) * r[9]) + MINUTE
            change_state[k] = 100
        if delivery[i] == same_day:
            t += span(1, 4, r[10])
        elif delivery[i] == express:
            t += span(2, 12, r[10])
        else:
            t += span(4, 48, r[10])
        steps.append((t, 520 if delivery[i] == pickup else 500))
        if delivery[i] == pickup:
            t += span(2, 120, r[11])
        elif r[11] < 0.03:
            t += span(20, 40, r[12])
            steps.append((t, 540))
            t += span(20, 30, r[12])
        elif delivery[i] == same_day:
            t += span(2, 8, r[11])
        elif delivery[i] == express:
            t += span(6, 24, r[11])
        else:
            t += span(12, 96, r[11])
        steps.append((t, 550))
        if r[13] < 0.06:  # refunded after delivery, after a review
            t += span(24, 12 * 24, r[12])
            steps.append((t, 544))
            t += span(24, 5 * 24, r[8])
            steps.append((t, 600))
        elif hi - lo >= 2 and r[13] > 0.95 and change_state[lo:hi].max() == 0:
            k = lo + int(r[9] * (hi - lo))  # one item refunded, the order stays delivered
            change_time[k] = t + span(48, 14 * 24, r[12])
            change_state[k] = 600
        _append(t_time, t_state, t_ptr, steps)

    transition_ptr = np.array(t_ptr, dtype=np.int64)
    transition_time = np.array(t_time, dtype=np.int64)
    transition_state = np.array(t_state, dtype=np.int16)
    # --- webhook events: one per order change and per single-item change --------------------
    per_order = np.diff(transition_ptr)
    ev_order = np.repeat(np.arange(n, dtype=np.int32), per_order)
    ev_kind = np.full(len(transition_time), EVENT_STATUS, dtype=np.int16)
    ev_kind[transition_ptr[:-1]] = EVENT_CREATED
    item_rows = np.flatnonzero(change_time >= 0)
    item_order = np.searchsorted(item_ptr, item_rows, side="right") - 1
    time = np.concatenate([transition_time, change_time[item_rows]])
    order = np.concatenate([ev_order, item_order.astype(np.int32)])
    kind = np.concatenate([ev_kind, np.full(len(item_rows), EVENT_ITEM, dtype=np.int16)])
    state = np.concatenate([transition_state, change_state[item_rows]])
    item = np.concatenate([np.full(len(transition_time), -1, np.int32), item_rows.astype(np.int32)])
    by_time = np.lexsort((order, time))
    m = len(time)
    failed = rng.random(m) < 0.06
    attempts = np.where(failed, rng.integers(2, 7, m), 1).astype(np.int16)
    ok = ~(failed & (rng.random(m) < 0.3))
    return {
        "item_change_time": change_time,
        "item_change_state": change_state,
        "transition_ptr": transition_ptr,
        "transition_time": transition_time,
        "transition_state": transition_state,
        "event_time": time[by_time],
        "event_order": order[by_time],
        "event_kind": kind[by_time],
        "event_state": state[by_time],
        "event_item": item[by_time],
        "event_attempts": attempts,
        "event_ok": ok,
        "event_webhook": kind[by_time].astype(np.int16),
    }


def _append(
    times: list[int], states: list[int], ptr: list[int], steps: list[tuple[int, int]]
) -> None:
    for t, s in steps:
        times.append(t)
        states.append(s)
    ptr.append(len(times))
