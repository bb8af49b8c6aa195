"""The sales ledger: one row per unit sold and per unit cancelled or refunded, event-dated.

Example:
    ``tables`` are a loaded cache, as from ``tables = of.load("data/demo")`` (in these
    doctests, a small simulated shop):

    >>> import omsframe as of
    >>> book = of.ledger(tables, tz="Europe/Istanbul")
    >>> book.groupby("currency")["net_sales"].sum()
    currency
    eur      1878.67
    try    604877.20
    usd      1520.25
    Name: net_sales, dtype: decimal128(38, 2)[pyarrow]
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import narwhals as nw

from omsframe.analysis._frames import (
    DEFAULT_TZ,
    MONEY,
    Frame,
    as_frame,
    cents,
    check_tz,
    is_tables,
    money_from_cents,
    require,
    to_native,
    zero_money,
)
from omsframe.analysis.errors import AnalysisError
from omsframe.analysis.measures import MEASURES

__all__ = ["DIMENSIONS", "LEDGER_COLUMNS", "RETURN_STATES", "ledger"]

RETURN_STATES: dict[str, str] = {"100": "cancellation", "600": "refund"}
"""The OMS states that reverse a sale (``enum_value``), and the ledger ``kind`` they make."""

DIMENSIONS: tuple[str, ...] = (
    "channel",
    "channel_id",
    "payment_type",
    "delivery_type",
    "client_type",
    "country",
    "city",
    "product_id",
    "sku",
    "product_name",
    "customer_id",
)
"""The ledger columns analysts slice by (any other ledger column works too)."""

LEDGER_COLUMNS: tuple[str, ...] = (
    "kind",
    "booked_at",
    "order_id",
    "item_id",
    "currency",
    *MEASURES,
)
"""The columns every analysis needs from a ledger frame."""

_ITEM_COLUMNS = (
    "item_id",
    "order_id",
    "state_code",
    "modified_date",
    "product_id",
    "sku",
    "product_name",
    "price",
    "retail_price",
    "discount_amount",
    "tax_rate",
    "tax_amount",
    "price_currency",
    "date_placed",
)
_ORDER_COLUMNS = (
    "order_id",
    "state_code",
    "modified_date",
    "date_placed",
    "channel_id",
    "channel_name",
    "customer_id",
    "payment_type",
    "delivery_type",
    "client_type",
    "shipping_country_code",
    "shipping_city",
)


def ledger(tables: Mapping[str, Any], tz: str = DEFAULT_TZ) -> Any:
    """The sales ledger: a row per unit sold, and a negative row per unit cancelled or refunded.

    Dated the way the published Shopify sales definitions date them: a sale on the order's
    ``date_placed``; a cancellation (state ``100``) or refund (state ``600``) of the item, or
    of its whole order, on the moment it happened, so a cancelled order nets to zero over
    time. Orders waiting for a cancellation or refund (``50``, ``544``) are not reversed yet.

    When a unit was reversed: the item's own ``modified_date`` when the item is in ``100`` or
    ``600`` (the time of the item's own change; a single item's cancellation or refund is
    known only from the item). When only the order is in
    ``100``/``600``, the earliest webhook event that carries that order state
    (``events.created_date``); without one, the earliest state-history row entering it
    (``state_history.changed_at``); without either, the order's ``modified_date``. When both
    events and state history exist, the event wins: the OMS stamps it at the change, while the
    state history is only as precise as the syncs that observed it. An item in ``100`` whose
    order is refunded later is reversed once, as a cancellation.

    Prices include tax, as the OMS sends them. The measures (``gross_sales``, ``discounts``,
    ``returns``, ``net_sales``, ``taxes``, ``net_sales_excl_tax``, ``total_sales``,
    ``markdown``, ``units``) are signed and add up over any rows; :func:`omsframe.explain`
    prints each formula. ``unit_*`` are the item's amounts as sent, unsigned: do not sum them.
    ``unit_tax`` is ``tax_amount``, or, where the OMS sent none, the tax share of the net
    derived from ``tax_rate``: ``round_half_up(net * rate / (100 + rate), 2)``; ``tax_source``
    says ``"oms"``, ``"rate"`` or ``"none"`` (no amount and no rate: 0).

    Args:
        tables: The loaded tables (:func:`omsframe.load`), pandas or polars; uses
            ``order_items`` and ``orders``, and ``events`` and ``state_history`` if present.
        tz: The business time zone of ``booked_local`` (IANA name); bucketing analyses
            given this ledger use it unless told otherwise.

    Returns:
        A frame of the tables' kind, sorted by ``booked_at``: ``kind`` (``"sale"``,
        ``"cancellation"``, ``"refund"``), ``booked_at`` (UTC), ``booked_local`` (in ``tz``),
        ``order_id``, ``item_id``, ``currency``, the measures, the ``unit_*`` amounts,
        ``tax_source``, the dimensions (:data:`DIMENSIONS`), ``date_placed``,
        ``order_state`` and ``item_state``. The tables are not changed.

    Raises:
        AnalysisError: ``order_items`` or ``orders`` is missing or lacks a column.

    Warns:
        WindowWarning: The tables were loaded with ``since``/``until`` (see the README: load
            the whole cache for net sales by period).

    Example:
        >>> book = ledger(tables)
        >>> book["kind"].value_counts().to_dict()
        {'sale': 648, 'cancellation': 58, 'refund': 48}
        >>> book[book.kind == "sale"].groupby("currency")["gross_sales"].sum().to_dict()
        {'eur': Decimal('2608.68'), 'try': Decimal('762020.11'), 'usd': Decimal('1807.09')}
    """
    check_tz(tz)
    if not isinstance(tables, Mapping):
        raise AnalysisError(
            f"ledger takes the loaded tables (omsframe.load(path)) or a dict of frames "
            f"{{'orders': ..., 'order_items': ...}}, got {type(tables).__name__}"
        )
    _warn_if_windowed(tables)
    for name in ("order_items", "orders"):
        if name not in tables:
            raise AnalysisError(f"the tables have no {name!r}; load it: omsframe.load(path)")
    items = as_frame(tables["order_items"], "order_items")
    orders = as_frame(tables["orders"], "orders")
    require(items, _ITEM_COLUMNS, "order_items")
    require(orders, _ORDER_COLUMNS, "orders")
    units = _units(items).join(_orders(orders), on="order_id", how="left")
    units = _when_reversed(units, tables)
    sales = units.with_columns(
        kind=nw.lit("sale"), booked_at=nw.coalesce(nw.col("date_placed"), nw.col("item_placed"))
    )
    reversals = units.filter(~nw.col("return_state").is_null()).with_columns(
        kind=nw.when(nw.col("return_state") == "100")
        .then(nw.lit("cancellation"))
        .otherwise(nw.lit("refund")),
        booked_at=nw.col("returned_at"),
    )
    rows = nw.concat([_shape(sales), _shape(reversals)], how="vertical")
    rows = rows.with_columns(*[m().alias(name) for name, m in MEASURES.items()]).with_columns(
        booked_local=nw.col("booked_at").dt.convert_time_zone(tz)
    )
    order = ["kind", "booked_at", "booked_local", "order_id", "item_id", "currency", *MEASURES]
    rest = [c for c in rows.columns if c not in order]
    rows = rows.select(*order, *rest).sort("booked_at", "item_id", "kind")
    return to_native(rows)


def _callers_level() -> int:
    """The ``stacklevel`` of the first frame outside omsframe (where the analysis was called)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("omsframe"):
        frame, level = frame.f_back, level + 1
    return level


class WindowWarning(UserWarning):
    """A ledger of tables loaded for a window of order dates (see :func:`ledger`).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():  # or warnings.simplefilter(...) for a session
        ...     warnings.simplefilter("ignore", WindowWarning)
        ...     book = ledger(tables)
        >>> len(book) > 0
        True
    """


def _warn_if_windowed(tables: Mapping[str, Any]) -> None:
    """Warn (:class:`WindowWarning`) when ``tables`` were loaded with ``since``/``until``."""
    since, until = getattr(tables, "window", (None, None))
    if since is None and until is None:
        return
    if until is None and since == getattr(tables, "held_since", None):
        warnings.warn(
            "these tables come from a cache that holds only the orders placed since "
            f"{since:%Y-%m-%d %H:%M} UTC (it was synced with since=): cancellations and refunds "
            "of orders placed before then are not in it, so net sales of the weeks after it "
            "are overstated; for exact net sales of a period, sync a cache whose window starts "
            "well before it",
            WindowWarning,
            stacklevel=_callers_level(),
        )
        return
    warnings.warn(
        f"these tables were loaded for orders placed in a window ({since} .. {until}, UTC): "
        "cancellations and refunds in it of orders placed before it are not in them, and "
        "those after it of orders placed in it are; and its edges are UTC midnights, not "
        "those of the business days; for exact net sales by period, load without "
        "since=/until= and keep the periods you need",
        WindowWarning,
        stacklevel=_callers_level(),
    )


def ledger_frame(data: Any, tz: str | None) -> tuple[Frame, str]:
    """The ledger of ``data`` (loaded tables, or a ledger frame) and the time zone to use.

    ``tz=None`` means the ledger's own (that of its ``booked_local`` column), or
    :data:`~omsframe.analysis.DEFAULT_TZ` for tables.

    Raises:
        AnalysisError: ``data`` is neither tables nor a frame with the ledger's columns.

    Example:
        >>> frame, tz = ledger_frame(tables, None)
        >>> tz, frame.shape
        ('Europe/Istanbul', (754, 34))
    """
    if is_tables(data):
        zone = check_tz(tz or DEFAULT_TZ)
        return as_frame(ledger(data, zone), "the ledger"), zone
    frame = as_frame(data, "data")
    require(frame, LEDGER_COLUMNS, "the frame")
    if tz is None:
        local = frame.schema.get("booked_local")
        tz = getattr(local, "time_zone", None) or DEFAULT_TZ
    return frame, check_tz(tz)


def _units(items: Frame) -> Frame:
    """One row per item with the unit amounts, the derived tax and the item's state."""
    price = nw.col("price")
    discount = nw.col("discount_amount").fill_null(zero_money()).cast(MONEY)
    rate = (nw.col("tax_rate") * nw.lit(Decimal(100))).cast(nw.Int64)  # hundredths of a %
    net = cents(price - discount)
    # the tax share of a tax-included amount, half up, in integer cents (exact)
    derived = (2 * net * rate + 10000 + rate) // (2 * (10000 + rate))
    return items.select(
        "item_id",
        "order_id",
        "product_id",
        "sku",
        "product_name",
        item_state=nw.col("state_code"),
        item_modified=nw.col("modified_date"),
        item_placed=nw.col("date_placed"),
        currency=nw.col("price_currency").str.to_lowercase(),
        unit_price=price.cast(MONEY),
        unit_discount=discount,
        unit_retail_price=nw.coalesce(nw.col("retail_price"), price).cast(MONEY),
        unit_tax=nw.coalesce(nw.col("tax_amount"), money_from_cents(derived), zero_money()).cast(
            MONEY
        ),
        tax_source=nw.when(~nw.col("tax_amount").is_null())
        .then(nw.lit("oms"))
        .when(~nw.col("tax_rate").is_null())
        .then(nw.lit("rate"))
        .otherwise(nw.lit("none")),
    )


def _orders(orders: Frame) -> Frame:
    """The order columns the ledger keeps, renamed so they never collide with the items'."""
    return orders.select(
        "order_id",
        "date_placed",
        "channel_id",
        "customer_id",
        "payment_type",
        "delivery_type",
        "client_type",
        order_state=nw.col("state_code"),
        order_modified=nw.col("modified_date"),
        channel=nw.col("channel_name"),
        country=nw.col("shipping_country_code"),
        city=nw.col("shipping_city"),
    )


def _when_reversed(units: Frame, tables: Mapping[str, Any]) -> Frame:
    """Add ``return_state`` (``100``/``600`` or null) and ``returned_at`` to each unit."""
    states = list(RETURN_STATES)
    item_reversed = nw.col("item_state").is_in(states)
    units = units.with_columns(
        return_state=nw.when(item_reversed)
        .then(nw.col("item_state"))
        .when(nw.col("order_state").is_in(states))
        .then(nw.col("order_state")),
        item_returned=nw.when(item_reversed).then(nw.col("item_modified")),
    )
    found = ["item_returned"]
    sources = (
        ("events", "state_code", "created_date"),
        ("state_history", "to_state_code", "changed_at"),
    )
    for name, state, time in sources:
        if name not in tables:
            continue
        table = as_frame(tables[name], name)
        require(table, ("order_id", state, time), name)
        first = (
            table.filter(nw.col(state).is_in(states))
            .group_by("order_id", state)
            .agg(nw.col(time).min().alias(f"{name}_at"))
            .rename({state: "return_state"})
        )
        units = units.join(first, on=["order_id", "return_state"], how="left")
        found.append(f"{name}_at")
    return units.with_columns(
        returned_at=nw.coalesce(*[nw.col(c) for c in found], nw.col("order_modified"))
    )


def _shape(rows: Frame) -> Frame:
    """The columns every ledger row has, in one order (sales and reversals alike)."""
    return rows.select(
        "kind",
        "booked_at",
        "order_id",
        "item_id",
        "currency",
        "unit_price",
        "unit_discount",
        "unit_retail_price",
        "unit_tax",
        "tax_source",
        *DIMENSIONS,
        "date_placed",
        "order_state",
        "item_state",
    )
