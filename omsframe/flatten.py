"""Raw OMS JSON (orders, webhook events) in, exact typed Arrow tables out.

One pass per batch: secrets are stripped first, then each order's rows for every table are
extracted with compiled extractors (see :mod:`omsframe.extract`); a record that cannot be
flattened goes whole to the quarantine with the reason, never silently dropped. Then each column
is converted by Arrow in one call (see :mod:`omsframe.convert`), personal data follows the
:class:`~omsframe.privacy.Privacy` policy, and order totals are summed exactly in decimal.

Example:
    >>> import orjson
    >>> page = orjson.loads(open("tests/fixtures/order-list-page.json", "rb").read())
    >>> result = flatten_orders(page["results"])
    >>> result.tables["order_items"].num_rows, len(result.quarantine)
    (2, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from omsframe.convert import dumps, to_arrow
from omsframe.drift import KNOWN_STATE_CODES, DriftReport, check_fields
from omsframe.extract import ShapeError, compile_extractor, sourced_names
from omsframe.privacy import (
    PiiKind,
    Privacy,
    strip_event_secrets,
    strip_order_secrets,
)
from omsframe.schema import TABLES, Table, arrow_schema

ORDER_TABLES = ("orders", "order_items", "addresses", "customers", "products", "channels", "states")
_PII_KIND: dict[str, PiiKind] = {"email": "email", "phone_number": "phone"}


@dataclass
class QuarantinedRecord:
    """A record that could not be flattened, kept with the reason (secrets already removed)."""

    kind: str
    position: int
    record_id: Any
    reason: str
    record: str | None


@dataclass
class Flattened:
    """The result of flattening a batch: tables, quarantine, drift and the PII policy."""

    tables: dict[str, pa.Table]
    quarantine: list[QuarantinedRecord]
    drift: DriftReport
    pii_policy: str

    def to_pandas(self) -> dict[str, Any]:
        """The tables as pandas DataFrames (Arrow-backed decimals stay exact)."""
        return {name: table.to_pandas() for name, table in self.tables.items()}


_EXTRACTORS = {name: compile_extractor(TABLES[name]) for name in TABLES}
_SOURCED = {name: sourced_names(TABLES[name]) for name in TABLES}


class _Rows:
    """Rows of one table being built: extracted tuples plus computed columns."""

    def __init__(self, name: str) -> None:
        self.table: Table = TABLES[name]
        self.rows: list[tuple[Any, ...]] = []
        self.computed: dict[str, list[Any]] = {
            c.name: [] for c in self.table.columns if c.source is None
        }
        self.owner: list[int] = []  # position of the input record each row came from

    def __len__(self) -> int:
        return len(self.rows)


def _latest(
    store: dict[Any, tuple[str, tuple[Any, ...]]], key: Any, stamp: Any, row: tuple[Any, ...]
) -> None:
    """Keep, per key, the row with the latest ``stamp`` (ISO strings compare in time order)."""
    previous = store.get(key)
    if previous is None or (isinstance(stamp, str) and stamp >= previous[0]):
        store[key] = (stamp if isinstance(stamp, str) else "", row)


def flatten_orders(records: Iterable[Any], *, privacy: Privacy | None = None) -> Flattened:
    """Flatten full orders (the shape of the order list and order detail) into tables.

    Args:
        records: Orders as parsed JSON (dicts). They are modified in place: secrets removed.
        privacy: The PII policy; by default pseudonymize with a fresh key (stable within
            this call only: the cache passes its own key).

    Returns:
        :class:`Flattened` with tables ``orders, order_items, addresses, customers, products,
        channels, states``, the quarantine and the drift report.

    Example:
        >>> flatten_orders([{"id": 1, "orderitem_set": []}]).tables["orders"].num_rows
        1
    """
    privacy = privacy or Privacy()
    batch = list(records)
    drift = DriftReport()
    quarantine: list[QuarantinedRecord] = []
    orders, items, addresses = _Rows("orders"), _Rows("order_items"), _Rows("addresses")
    customers: dict[Any, tuple[str, tuple[Any, ...]]] = {}
    products: dict[Any, tuple[str, tuple[Any, ...]]] = {}
    product_images: dict[Any, list[str]] = {}
    channels: dict[Any, tuple[str, tuple[Any, ...]]] = {}
    states: dict[Any, tuple[str, tuple[Any, ...]]] = {}
    ext = _EXTRACTORS
    for position, record in enumerate(batch):
        try:
            rows = _order_rows(record, drift, ext)
        except ShapeError as error:
            quarantine.append(_quarantined("order", position, record, str(error), privacy))
            continue
        order_row, item_rows, address_rows, entity_rows = rows
        orders.rows.append(order_row)
        orders.owner.append(position)
        orders.computed["item_count"].append(len(item_rows))
        placed, channel_id = record.get("date_placed"), (record.get("channel") or {}).get("id")
        for item_row in item_rows:
            items.rows.append(item_row)
            items.owner.append(position)
            items.computed["order_id"].append(record["id"])
            items.computed["date_placed"].append(placed)
            items.computed["channel_id"].append(channel_id)
        for role, address_row in address_rows:
            addresses.rows.append(address_row)
            addresses.owner.append(position)
            addresses.computed["order_id"].append(record["id"])
            addresses.computed["role"].append(role)
            addresses.computed["date_placed"].append(placed)
        modified = record.get("modified_date")
        for kind, key, stamp, row, extra in entity_rows:
            if kind == "customer":
                _latest(customers, key, modified, (*row, modified))
            elif kind == "product":
                _latest(products, key, stamp, row)
                product_images[key] = extra
            elif kind == "channel":
                _latest(channels, key, stamp, row)
            else:
                _latest(states, key, "", row)
    order_table, item_table, address_table = _convert_owned(
        batch, (orders, items, addresses), privacy, drift, quarantine
    )
    order_table = _with_totals(order_table, item_table)
    tables = {
        "orders": order_table,
        "order_items": item_table,
        "addresses": address_table,
        "customers": _entity_table(
            "customers", [r for _, r in customers.values()], {}, privacy, drift, quarantine
        ),
        "products": _entity_table(
            "products",
            [r for _, r in products.values()],
            {"image_urls": [product_images[k] for k in products]},
            privacy,
            drift,
            quarantine,
        ),
        "channels": _entity_table(
            "channels", [r for _, r in channels.values()], {}, privacy, drift, quarantine
        ),
        "states": _entity_table(
            "states", [r for _, r in states.values()], {}, privacy, drift, quarantine
        ),
    }
    codes = tables["states"].column("code").to_pylist()
    for code in codes:
        if code not in KNOWN_STATE_CODES:
            drift.new_state_codes[str(code)] += 1
    return Flattened(_stamp(tables, privacy), quarantine, drift, privacy.describe())


def iter_flatten_orders(
    records: Iterable[Any], *, privacy: Privacy | None = None, batch_size: int = 5_000
) -> Iterator[Flattened]:
    """Flatten in batches of ``batch_size`` orders, so memory stays bounded.

    Example:
        >>> batches = list(iter_flatten_orders(({"id": i} for i in range(5)), batch_size=2))
        >>> [b.tables["orders"].num_rows for b in batches]
        [2, 2, 1]
    """
    privacy = privacy or Privacy()
    batch: list[Any] = []
    for record in records:
        batch.append(record)
        if len(batch) >= batch_size:
            yield flatten_orders(batch, privacy=privacy)
            batch = []
    if batch:
        yield flatten_orders(batch, privacy=privacy)


def _order_rows(record: Any, drift: DriftReport, ext: dict[str, Any]) -> tuple[Any, ...]:
    """Every row one order contributes; raises ShapeError when it cannot be flattened."""
    if record.__class__ is not dict:
        raise ShapeError(f"the order is {type(record).__name__}, expected an object")
    strip_order_secrets(record)
    order_id = record.get("id")
    if order_id.__class__ is not int:
        raise ShapeError(f"the order has no integer `id` (got {order_id!r:.40})")
    check_fields(record, "order", drift)
    order_row = ext["orders"](record)
    item_list = record.get("orderitem_set")
    if item_list is None:
        item_list = []
    elif item_list.__class__ is not list:
        raise ShapeError("`orderitem_set` is not a list")
    entities: list[tuple[str, Any, Any, tuple[Any, ...], Any]] = []
    state = record.get("state")
    if state.__class__ is dict:
        check_fields(state, "state", drift)
        entities.append(
            (
                "state",
                (state.get("enum_class"), state.get("enum_value")),
                None,
                ext["states"](state),
                None,
            )
        )
    item_rows = []
    for item in item_list:
        if item.__class__ is not dict:
            raise ShapeError(
                f"an item of `orderitem_set` is {type(item).__name__}, expected an object"
            )
        check_fields(item, "item", drift)
        item_rows.append(ext["order_items"](item))
        product = item.get("product")
        if product.__class__ is dict:
            check_fields(product, "product", drift)
            images = product.get("productimage_set") or []
            if images.__class__ is not list:
                raise ShapeError("`product.productimage_set` is not a list")
            urls = [
                i.get("url") for i in images if i.__class__ is dict and i.get("url") is not None
            ]
            entities.append(
                (
                    "product",
                    product.get("id"),
                    product.get("modified_date"),
                    ext["products"](product),
                    urls,
                )
            )
        item_state = item.get("state")
        if item_state.__class__ is dict:
            entities.append(
                (
                    "state",
                    (item_state.get("enum_class"), item_state.get("enum_value")),
                    None,
                    ext["states"](item_state),
                    None,
                )
            )
    address_rows = []
    for role in ("shipping", "billing"):
        address = record.get(f"{role}_address")
        if address.__class__ is dict:
            check_fields(address, "address", drift)
            address_rows.append((role, ext["addresses"](address)))
        elif address is not None and address.__class__ is not int:
            raise ShapeError(f"`{role}_address` is {type(address).__name__}, expected an object")
    customer = record.get("customer")
    if customer.__class__ is dict:
        check_fields(customer, "customer", drift)
        entities.append(("customer", customer.get("pk"), None, ext["customers"](customer), None))
    channel = record.get("channel")
    if channel.__class__ is dict:
        check_fields(channel, "channel", drift)
        entities.append(
            (
                "channel",
                channel.get("id"),
                channel.get("modified_date"),
                ext["channels"](channel),
                None,
            )
        )
    return order_row, item_rows, address_rows, entities


def _quarantined(
    kind: str, position: int, record: Any, reason: str, privacy: Privacy
) -> QuarantinedRecord:
    record_id = record.get("id") if isinstance(record, dict) else None
    if isinstance(record, dict):
        if kind == "order":
            strip_order_secrets(record)
            privacy.scrub_order(record)
        else:
            strip_event_secrets(record)
            request = record.get("request_payload")
            if isinstance(request, dict) and isinstance(request.get("payload"), dict):
                privacy.scrub_order(request["payload"])
    return QuarantinedRecord(kind, position, record_id, reason, dumps(record))


def _columns(
    rows: _Rows | tuple[Table, list[tuple[Any, ...]], dict[str, list[Any]]],
) -> dict[str, list[Any]]:
    if isinstance(rows, _Rows):
        table, tuples, computed = rows.table, rows.rows, rows.computed
    else:
        table, tuples, computed = rows
    sourced = _SOURCED[table.name]
    if tuples:
        transposed = list(zip(*tuples, strict=True))
        values = {name: list(transposed[k]) for k, name in enumerate(sourced)}
    else:
        values = {name: [] for name in sourced}
    for name, computed_values in computed.items():
        # computed columns filled after conversion (order totals) start as nulls
        values[name] = computed_values if computed_values or not tuples else [None] * len(tuples)
    return values


def _arrays(
    table: Table, values: dict[str, list[Any]], privacy: Privacy, drift: DriftReport
) -> tuple[list[pa.Array], dict[int, str]]:
    arrays: list[pa.Array] = []
    bad: dict[int, str] = {}
    for column in table.columns:
        column_values = values[column.name]
        if column.pii:
            column_values = privacy.transform(column_values, _PII_KIND.get(column.name, "text"))
        converted = to_arrow(column_values, column)
        for change in converted.type_changes:
            drift.type_changes[f"{table.name}.{change}"] += 1
        for row, reason in converted.bad.items():
            bad.setdefault(row, reason)
        array = converted.array
        if not column.nullable and array.null_count:
            for row in pc.indices_nonzero(array.is_null()).to_pylist():
                bad.setdefault(row, f"{column.name}: missing (the OMS always sends it)")
        arrays.append(array)
    return arrays, bad


def _convert_owned(
    batch: list[Any],
    parts: tuple[_Rows, ...],
    privacy: Privacy,
    drift: DriftReport,
    quarantine: list[QuarantinedRecord],
) -> list[pa.Table]:
    """Convert the per-order tables; an order with any bad row is quarantined whole."""
    converted = []
    bad_positions: dict[int, str] = {}
    for rows in parts:
        arrays, bad = _arrays(rows.table, _columns(rows), privacy, drift)
        for row, reason in bad.items():
            bad_positions.setdefault(rows.owner[row], f"{rows.table.name}.{reason}")
        converted.append((rows, arrays))
    tables = []
    for rows, arrays in converted:
        table = pa.Table.from_arrays(arrays, schema=arrow_schema(rows.table.name))
        if bad_positions:
            keep = pa.array([owner not in bad_positions for owner in rows.owner], pa.bool_())
            table = table.filter(keep)
        tables.append(table)
    for position in sorted(bad_positions):
        quarantine.append(
            _quarantined("order", position, batch[position], bad_positions[position], privacy)
        )
    return tables


def _entity_table(
    name: str,
    rows: list[tuple[Any, ...]],
    computed: dict[str, list[Any]],
    privacy: Privacy,
    drift: DriftReport,
    quarantine: list[QuarantinedRecord],
) -> pa.Table:
    """Tables of things seen on orders (customers, products ...): bad rows quarantined alone."""
    spec = TABLES[name]
    sourced = _SOURCED[name]
    n_sourced = len(sourced)
    computed_names = [c.name for c in spec.columns if c.source is None]
    split_rows = [row[:n_sourced] for row in rows]
    values = _columns((spec, split_rows, {}))
    for k, extra in enumerate(computed_names):
        values[extra] = computed.get(extra) or [
            row[n_sourced + k] if len(row) > n_sourced + k else None for row in rows
        ]
    arrays, bad = _arrays(spec, values, privacy, drift)
    table = pa.Table.from_arrays(arrays, schema=arrow_schema(name))
    if bad:
        table = table.filter(pa.array([k not in bad for k in range(len(rows))], pa.bool_()))
        for row, reason in sorted(bad.items()):
            quarantine.append(QuarantinedRecord(name, row, rows[row][0], reason, None))
    return table


def _with_totals(orders: pa.Table, items: pa.Table) -> pa.Table:
    """Fill the orders' item count, currency and exact money totals from their items."""
    n = orders.num_rows
    totals: dict[str, pa.Array] = {}
    if items.num_rows:
        grouped = items.group_by("order_id", use_threads=False).aggregate(
            [
                ("item_id", "count"),
                ("price", "sum"),
                ("discount_amount", "sum"),
                ("net_amount", "sum"),
                ("tax_amount", "sum"),
                ("tax_amount", "count", pc.CountOptions(mode="only_null")),
                ("price_currency", "min"),
                ("price_currency", "max"),
            ]
        )
        index = pc.index_in(orders.column("order_id"), grouped.column("order_id"))
        taken = grouped.take(index)
        same_currency = pc.equal(
            taken.column("price_currency_min"), taken.column("price_currency_max")
        )
        totals["currency"] = pc.if_else(same_currency, taken.column("price_currency_min"), None)
        totals["item_count"] = pc.coalesce(taken.column("item_id_count"), 0).cast(pa.int32())
        for source, target in (
            ("price", "price_total"),
            ("discount_amount", "discount_total"),
            ("net_amount", "net_total"),
        ):
            totals[target] = taken.column(f"{source}_sum").cast(pa.decimal128(18, 2))
        has_null_tax = pc.greater(pc.coalesce(taken.column("tax_amount_count"), 0), 0)
        tax_sum = taken.column("tax_amount_sum").cast(pa.decimal128(18, 2))
        totals["tax_total"] = pc.if_else(
            has_null_tax, pa.scalar(None, pa.decimal128(18, 2)), tax_sum
        )
    else:
        totals["item_count"] = pa.array([0] * n, pa.int32())
    schema = orders.schema
    for name, values in totals.items():
        index_of = schema.get_field_index(name)
        orders = orders.set_column(index_of, schema.field(name), values)
    return orders


def _stamp(tables: dict[str, pa.Table], privacy: Privacy) -> dict[str, pa.Table]:
    """Record the PII policy in every table's metadata."""
    stamped = {}
    for name, table in tables.items():
        metadata = dict(table.schema.metadata or {})
        metadata[b"omsframe.pii_policy"] = privacy.mode.encode()
        stamped[name] = table.replace_schema_metadata(metadata)
    return stamped


def flatten_events(records: Iterable[Any], *, privacy: Privacy | None = None) -> Flattened:
    """Flatten webhook events into the ``events`` table (payload kept as JSON, secrets removed).

    Args:
        records: Events as parsed JSON (dicts); modified in place (secrets removed).
        privacy: The PII policy applied to the order snapshot in each payload.

    Returns:
        :class:`Flattened` with one table, ``events``.

    Example:
        >>> events = flatten_events([{"id": 1, "order": 5, "request_datetimes": []}])
        >>> events.tables["events"].num_rows
        1
    """
    privacy = privacy or Privacy()
    drift = DriftReport()
    quarantine: list[QuarantinedRecord] = []
    rows = _Rows("events")
    batch = list(records)
    extract = _EXTRACTORS["events"]
    for position, event in enumerate(batch):
        try:
            if event.__class__ is not dict:
                raise ShapeError(f"the event is {type(event).__name__}, expected an object")
            strip_event_secrets(event)
            if event.get("id").__class__ is not int:
                raise ShapeError("the event has no integer `id`")
            row = extract(event)
            attempts = event.get("request_datetimes") or []
            if attempts.__class__ is not list:
                raise ShapeError("`request_datetimes` is not a list")
            request = event.get("request_payload")
            if isinstance(request, dict) and isinstance(request.get("payload"), dict):
                privacy.scrub_order(request["payload"])
        except ShapeError as error:
            quarantine.append(_quarantined("event", position, event, str(error), privacy))
            continue
        rows.rows.append(row)
        rows.owner.append(position)
        rows.computed["attempt_count"].append(len(attempts))
        rows.computed["last_attempt"].append(attempts[-1] if attempts else None)
        rows.computed["payload"].append(request)
    (table,) = _convert_owned(batch, (rows,), privacy, drift, quarantine)
    for code in pc.unique(table.column("state_code")).to_pylist():
        if code is not None and code not in KNOWN_STATE_CODES:
            drift.new_state_codes[str(code)] += 1
    return Flattened(_stamp({"events": table}, privacy), quarantine, drift, privacy.describe())
