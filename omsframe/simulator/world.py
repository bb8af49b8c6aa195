"""A deterministic synthetic shop: the ground truth that the simulator serves.

A :class:`World` is generated once from a seed, a number of orders and a date range. It holds
compact numpy arrays (no per-order Python objects), so a million orders fit in a few hundred
megabytes; JSON is rendered only when a page is asked for (see :mod:`render`).

Every order carries its whole lifecycle — the timestamped state changes of the order and of
single items — including changes that lie after the shop's clock. What a client sees is the
world *at* a moment ``now``: orders created after ``now`` do not exist yet, and each order is in
the last state reached by ``now``. Moving ``now`` forward is the simulator's "live clock".

Amounts follow one documented model, in integer cents so that they are exact:

- ``price`` is the sale price of one unit (one item), tax included, ``price <= retail_price``;
- ``discount_amount`` is the item's share of the basket discount (coupons, campaign days);
- ``net_amount = price - discount_amount``;
- ``tax_amount`` is the tax share of the net, ``round_half_up(net * rate / (100 + rate))``, and
  is null on about one order in ten (as in the published example);
- ``without_net_amount`` and ``installment_interest_amount`` are always null.

Example:
    >>> world = World.generate(seed=7, orders=200)
    >>> world.n_orders
    200
    >>> bool((world.item_price <= world.item_retail).all())
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from omsframe.simulator import catalogue as cat

if TYPE_CHECKING:
    from omsframe.simulator.parts import Parts

US = 1_000_000  # microseconds per second
HOUR = 3600 * US
DAY = 24 * HOUR
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
I16 = NDArray[np.int16]
BOOL = NDArray[np.bool_]

# Cumulative offsets (seconds) of webhook delivery attempts after the event: 1 min, 6 min, ...
RETRY_OFFSETS_S: tuple[int, ...] = (0, 60, 360, 2160, 9360, 30960)

EVENT_CREATED, EVENT_STATUS, EVENT_ITEM = 0, 1, 2
EVENT_TYPES: tuple[str, ...] = ("order.created", "order.status.changed", "order.updated")


def to_us(value: dt.datetime | dt.date) -> int:
    """Convert a datetime (naive means UTC) or a date to microseconds since the epoch."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(us: int) -> dt.datetime:
    """Convert microseconds since the epoch to a tz-aware UTC datetime."""
    return EPOCH + dt.timedelta(microseconds=int(us))


_DAY_PREFIX: dict[int, str] = {}  # days since the epoch -> "YYYY-MM-DDT" (a few thousand)
_HOUR_MINUTE = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_MINUTE = 60 * US


def iso(us: int) -> str:
    """Format microseconds since the epoch as the OMS does: ``2023-05-17T13:45:55.677011Z``.

    Equal to ``f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}Z"``, three to four times
    faster: the date part is formatted once per day, the rest with integer arithmetic.

    Example:
        >>> iso(1_684_331_155_677_011)
        '2023-05-17T13:45:55.677011Z'
    """
    day, rest = divmod(int(us), DAY)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = f"{EPOCH + dt.timedelta(days=day):%Y-%m-%d}T"
    minute, micro = divmod(rest, _MINUTE)
    return f"{prefix}{_HOUR_MINUTE[minute]}{micro // US:02d}.{micro % US:06d}Z"


def secret_token(seed: int, label: str, length: int = 40) -> str:
    """A fake but realistic secret derived from the seed, recognisable in secret scans."""
    digest = hashlib.sha256(f"omsframe-sim:{seed}:{label}".encode()).hexdigest()
    return digest[:length]


@dataclass(frozen=True)
class Webhook:
    """A webhook subscription; ``secret_key``, ``auth`` and ``headers`` are secrets."""

    id: int
    target_url: str
    event_type: str
    secret_key: str
    auth_username: str
    auth_password: str
    header_value: str


@dataclass
class World:
    """The whole simulated shop as arrays; build it with :meth:`World.generate`.

    Orders are indexed ``0..n_orders-1`` in creation order; the OMS id of order ``i`` is
    ``order_id[i]``. Items, transitions and customer addresses are stored CSR-style: the items
    of order ``i`` are ``item_*[item_ptr[i]:item_ptr[i+1]]``.
    """

    seed: int
    start_us: int
    end_us: int
    campaign_days: tuple[dt.date, ...]
    channel_secrets: dict[int, dict[str, str]]
    webhooks: tuple[Webhook, ...]
    places: tuple[cat.Place, ...]
    # products
    product_category: I16
    product_name: tuple[str, ...]
    product_color: I16
    product_size: I16
    product_material: I16
    product_barcode: tuple[str | None, ...]
    product_retail: I64  # [currency (try, eur, usd), product] list price in cents
    product_sale: I64  # [currency, product] sale price in cents (<= retail)
    # customers
    customer_channel: I16
    customer_first: I16
    customer_last: I16
    customer_phone: I64  # -1 when unknown
    customer_created: I64
    customer_address_ptr: I64
    # addresses (one per customer address)
    address_customer: I32
    address_place: I16
    address_street: I16
    address_number: I16
    address_corporate: BOOL
    address_created: I64
    # orders
    order_id: I64
    order_placed: I64
    order_created: I64
    order_channel: I16
    order_customer: I32
    order_shipping: I32
    order_billing: I32
    order_payment: I16
    order_delivery: I16
    order_cargo: I16
    order_client: I16
    order_gift: BOOL
    order_tax_null: BOOL
    # items
    item_ptr: I64
    item_id: I64
    item_product: I32
    item_price: I64
    item_retail: I64
    item_discount: I64
    item_tax_rate: I16  # hundredths of a percent: 2000 means "20.00"
    item_change_time: I64  # time of the item's own state change, or -1
    item_change_state: I16  # state code of that change, or 0
    # order lifecycle
    transition_ptr: I64
    transition_time: I64
    transition_state: I16
    # webhook events, sorted by time; event id = index + 1
    event_time: I64
    event_order: I32
    event_kind: I16
    event_state: I16
    event_item: I32  # item index for EVENT_ITEM, else -1
    event_attempts: I16
    event_ok: BOOL
    event_webhook: I16
    _cache: dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def n_orders(self) -> int:
        """Number of orders over the whole horizon (some may lie after ``now``)."""
        return int(self.order_id.shape[0])

    @property
    def n_events(self) -> int:
        """Number of webhook events over the whole horizon."""
        return int(self.event_time.shape[0])

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        orders: int = 2_000,
        start: dt.datetime | dt.date = dt.date(2024, 1, 1),
        end: dt.datetime | dt.date = dt.date(2025, 12, 1),
    ) -> World:
        """Generate a shop deterministically: the same arguments give the same world.

        Args:
            seed: Random seed.
            orders: Number of orders placed between ``start`` and ``end``; every one of them
                exists (is created in the OMS) by ``end``.
            start: First moment an order can be placed (UTC).
            end: The default clock of the server; orders are placed up to ten minutes before
                it, so that their OMS records are created by then. Campaign days, seasonality
                and the state lifecycles follow the business day in Europe/Istanbul (UTC+3).

        Returns:
            The generated world.

        Example:
            >>> World.generate(seed=1, orders=50).n_orders
            50
        """
        from omsframe.simulator.generate import generate_world

        return generate_world(
            cls, seed=seed, orders=orders, start_us=to_us(start), end_us=to_us(end)
        )

    # --- the world at a moment --------------------------------------------------------------
    def visible_orders(self, now_us: int) -> int:
        """Number of orders that exist at ``now_us`` (they are a prefix of the index)."""
        return int(np.searchsorted(self.order_created, now_us, side="right"))

    def visible_events(self, now_us: int) -> int:
        """Number of webhook events that exist at ``now_us`` (a prefix, by time)."""
        return int(np.searchsorted(self.event_time, now_us, side="right"))

    def order_status(self, now_us: int) -> tuple[I16, I64]:
        """State code and ``modified_date`` of every visible order at ``now_us``.

        Returns:
            ``(state_code, modified_us)``, arrays over the visible prefix of orders.
        """
        key = f"status:{now_us}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        n = self.visible_orders(now_us)
        ptr = self.transition_ptr[: n + 1]
        reached = (self.transition_time[: ptr[-1]] <= now_us).astype(np.int64)
        counts = np.add.reduceat(reached, ptr[:-1]) if n else np.zeros(0, np.int64)
        last = ptr[:-1] + np.maximum(counts, 1) - 1
        state = self.transition_state[last]
        modified = self.transition_time[last].copy()
        item_times = np.where(
            self.item_change_time[: self.item_ptr[n]] <= now_us,
            self.item_change_time[: self.item_ptr[n]],
            -1,
        )
        if n:
            item_max = np.maximum.reduceat(item_times, self.item_ptr[:n])
            modified = np.maximum(modified, item_max)
        self._cache.clear()  # keep one moment only: the clock only moves forward
        self._cache[key] = (state, modified)
        return state, modified

    def order_transitions(self, index: int, now_us: int) -> list[tuple[int, int]]:
        """The ``(time_us, state_code)`` changes of one order reached by ``now_us``."""
        lo, hi = int(self.transition_ptr[index]), int(self.transition_ptr[index + 1])
        times: list[int] = self.transition_time[lo:hi].tolist()
        states: list[int] = self.transition_state[lo:hi].tolist()
        return [(t, s) for t, s in zip(times, states, strict=True) if t <= now_us]

    def event_status(self, now_us: int) -> tuple[I64, I16, BOOL]:
        """``modified_date``, retry count and delivered flag of each visible event at ``now_us``."""
        n = self.visible_events(now_us)
        offsets = np.asarray(RETRY_OFFSETS_S, dtype=np.int64) * US
        elapsed = now_us - self.event_time[:n]
        seen = np.minimum(
            np.searchsorted(offsets, elapsed, side="right"), self.event_attempts[:n]
        ).astype(np.int16)
        modified = self.event_time[:n] + offsets[np.maximum(seen, 1) - 1]
        delivered = self.event_ok[:n] & (seen == self.event_attempts[:n])
        return modified, (seen - 1).astype(np.int16), delivered

    @cached_property
    def parts(self) -> Parts:
        """The rendered objects that do not change with the clock, built on first use."""
        from omsframe.simulator.parts import Parts

        return Parts(self)

    @cached_property
    def order_number(self) -> tuple[str, ...]:
        """The order numbers (16 digits, unique), by order index."""
        return tuple(number_of(int(i)) for i in self.order_id)

    @cached_property
    def index_of_order_id(self) -> dict[int, int]:
        """Map an OMS order id to its index."""
        return {int(i): k for k, i in enumerate(self.order_id)}

    def secrets(self) -> list[str]:
        """Every secret value the shop serves (channel configuration, webhook secrets).

        Tests scan caches, logs and exports for these: none may ever be found there.
        """
        values: list[str] = []
        for config in self.channel_secrets.values():
            values.extend(config.values())
        for hook in self.webhooks:
            values.extend((hook.secret_key, hook.auth_password, hook.header_value))
        return values


def number_of(order_id: int) -> str:
    """The order number of an order id: 16 digits, a bijection of the id."""
    return f"2291{order_id * 1_000_003 % 10**12:012d}"
