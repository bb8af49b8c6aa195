"""The tables omsframe builds, declared once, with where each column comes from.

Every column has a name, an Arrow type, a nullability, a one-line meaning and its JSON source.

This module is the single source: :mod:`omsframe.flatten` compiles its extractors from the
``source`` paths here, the parquet cache stores these schemas, and ``docs/tables.md`` is
generated from it (``python -m omsframe.schema > docs/tables.md``).

Conventions:

- keys are the OMS's own ids; timestamps are ``timestamp[us, UTC]``;
- money is ``decimal128(18, 2)`` and tax rates ``decimal128(7, 2)``, parsed from the API's
  decimal strings without ever passing through float;
- coordinates are ``float64`` (they are for maps, not for sums);
- free-form dicts (``attributes``, ``attributes_kwargs``, ``extra_field`` ...) are kept whole as
  JSON text; ``omsframe.expand_attributes`` turns chosen keys into columns;
- columns marked PII hold personal data and follow the PII policy (see :mod:`omsframe.privacy`).

Example:
    >>> from omsframe.schema import TABLES, arrow_schema
    >>> TABLES["order_items"].key
    ('item_id',)
    >>> arrow_schema("order_items").field("price").type
    Decimal128Type(decimal128(18, 2))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

SCHEMA_VERSION = 1

MONEY = pa.decimal128(18, 2)
RATE = pa.decimal128(7, 2)
TIME = pa.timestamp("us", tz="UTC")
ID = pa.int64()
TEXT = pa.string()
JSON_TEXT = pa.string()
FLAG = pa.bool_()
COORD = pa.float64()

Kind = Literal["id", "int", "text", "json", "money", "rate", "time", "flag", "coord", "text_list"]
_TYPES: dict[str, pa.DataType] = {
    "id": ID,
    "int": pa.int32(),
    "text": TEXT,
    "json": JSON_TEXT,
    "money": MONEY,
    "rate": RATE,
    "time": TIME,
    "flag": FLAG,
    "coord": COORD,
    "text_list": pa.list_(TEXT),
}


@dataclass(frozen=True)
class Column:
    """One column: its name, kind (which fixes the Arrow type), meaning and JSON source.

    ``source`` is a dotted path in the record the table is built from (``"state.enum_value"``);
    ``None`` means the value is computed by :mod:`omsframe.flatten`.
    """

    name: str
    kind: Kind
    doc: str
    source: str | None = None
    nullable: bool = True
    pii: bool = False

    @property
    def type(self) -> pa.DataType:
        """The Arrow type of the column."""
        return _TYPES[self.kind]


@dataclass(frozen=True)
class Table:
    """A table: what one row is, its key and its columns."""

    name: str
    one_row_per: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        """Return the column called ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """Column names in order."""
        return tuple(c.name for c in self.columns)


def _c(name: str, kind: Kind, doc: str, source: str | None = None, **flags: bool) -> Column:
    return Column(name, kind, doc, source, **flags)


def _state(prefix: str = "") -> tuple[Column, ...]:
    return (
        _c(
            f"{prefix}state_code",
            "text",
            "State code (`enum_value`, e.g. `400`); unknown codes kept.",
            "state.enum_value",
        ),
        _c(
            f"{prefix}state_name",
            "text",
            "State name as the OMS sends it (e.g. `Approved`).",
            "state.name",
        ),
    )


_TIMES = (
    _c("created_date", "time", "When the OMS created the record (UTC).", "created_date"),
    _c("modified_date", "time", "When the OMS last changed the record (UTC).", "modified_date"),
)

ORDERS = Table(
    "orders",
    "order",
    ("order_id",),
    (
        _c("order_id", "id", "OMS order id.", "id", nullable=False),
        _c("number", "text", "Order number (unique per channel).", "number"),
        _c("omnitron_id", "id", "Order id in Omnitron.", "omnitron_id"),
        *_state(),
        _c("channel_id", "id", "Sales channel (-> channels).", "channel.id"),
        _c("channel_name", "text", "Sales channel name.", "channel.name"),
        _c("customer_id", "id", "Customer (-> customers).", "customer.pk"),
        _c("shipping_address_id", "id", "Shipping address id.", "shipping_address.id"),
        _c("billing_address_id", "id", "Billing address id.", "billing_address.id"),
        _c(
            "shipping_country_code",
            "text",
            "Shipping country code.",
            "shipping_address.country.code",
        ),
        _c("shipping_city", "text", "Shipping city name.", "shipping_address.city.name"),
        _c(
            "shipping_township", "text", "Shipping township name.", "shipping_address.township.name"
        ),
        _c(
            "shipping_district", "text", "Shipping district name.", "shipping_address.district.name"
        ),
        _c("payment_type", "text", "Payment type (e.g. `credit_card`).", "payment_type"),
        _c("delivery_type", "text", "Delivery type (e.g. `standard`).", "delivery_type"),
        _c("client_type", "text", "Client type (e.g. `default`, `ios`).", "client_type"),
        _c("cargo_company", "id", "Cargo company id.", "cargo_company"),
        _c("tracking_number", "text", "Cargo tracking number, once shipped.", "tracking_number"),
        _c("retail_store", "json", "Retail store (JSON) for store orders.", "retail_store"),
        _c("delivery_range", "json", "Delivery range (JSON).", "delivery_range"),
        _c("has_gift_box", "flag", "Gift box requested.", "has_gift_box"),
        _c("gift_box_note", "text", "Gift box note.", "gift_box_note"),
        _c("notes", "text", "Order notes.", "notes"),
        _c("segment", "text", "Customer segment.", "segment"),
        _c("commands", "json", "Pending OMS commands (JSON list).", "commands"),
        _c("date_placed", "time", "When the customer placed the order (UTC).", "date_placed"),
        *_TIMES,
        _c("currency", "text", "Currency of the order's items (`try`, `eur`...); null if mixed."),
        _c("item_count", "int", "Number of items (units) in the order.", nullable=False),
        _c("price_total", "money", "Sum of item `price` (sale price, tax included)."),
        _c("discount_total", "money", "Sum of item `discount_amount`."),
        _c("net_total", "money", "Sum of item `net_amount`."),
        _c("tax_total", "money", "Sum of item `tax_amount`; null if any item's is null."),
    ),
)

ORDER_ITEMS = Table(
    "order_items",
    "order item (one unit: the OMS has no quantity)",
    ("item_id",),
    (
        _c("item_id", "id", "OMS order item id.", "id", nullable=False),
        _c("order_id", "id", "Order (-> orders).", nullable=False),
        _c("omnitron_id", "id", "Item id in Omnitron.", "omnitron_id"),
        _c(
            "parent_omnitron_id",
            "id",
            "Parent item id in Omnitron (bundles).",
            "parent_omnitron_id",
        ),
        *_state(),
        _c("product_id", "id", "Product (-> products).", "product.id"),
        _c("sku", "text", "Product SKU.", "product.sku"),
        _c("product_name", "text", "Product name.", "product.name"),
        _c("base_code", "text", "Product base code (groups variants).", "product.base_code"),
        _c("barcode", "text", "Product barcode.", "product.barcode"),
        _c("price", "money", "Sale price of the unit, tax included.", "price"),
        _c(
            "retail_price",
            "money",
            "List price of the unit (markdown = retail_price - price).",
            "retail_price",
        ),
        _c(
            "discount_amount",
            "money",
            "The item's share of the basket discount.",
            "discount_amount",
        ),
        _c("net_amount", "money", "price - discount_amount, as the OMS sends it.", "net_amount"),
        _c("tax_rate", "rate", "Tax rate in percent (`20.00`).", "tax_rate"),
        _c("tax_amount", "money", "Tax included in the net amount; often null.", "tax_amount"),
        _c("without_net_amount", "money", "`without_net_amount` as sent.", "without_net_amount"),
        _c(
            "installment_interest_amount",
            "money",
            "Installment interest.",
            "installment_interest_amount",
        ),
        _c(
            "price_currency",
            "text",
            "Currency, lower case as sent (`try`, `eur`).",
            "price_currency",
        ),
        _c("price_list_id", "id", "Price list id.", "price_list.pk"),
        _c("price_list_code", "text", "Price list code.", "price_list.code"),
        _c("price_list_name", "text", "Price list name.", "price_list.name"),
        _c("stock_list_id", "id", "Stock list id.", "stock_list.pk"),
        _c("stock_list_code", "text", "Stock list code.", "stock_list.code"),
        _c("stock_list_name", "text", "Stock list name.", "stock_list.name"),
        _c("attributes", "json", "Item attributes (JSON).", "attributes"),
        _c("attributes_kwargs", "json", "Item attribute details (JSON).", "attributes_kwargs"),
        _c("extra_field", "json", "Extra fields (JSON).", "extra_field"),
        _c("image", "text", "Item image URL.", "image"),
        *_TIMES,
        _c("date_placed", "time", "The order's `date_placed` (for slicing and partitions)."),
        _c("channel_id", "id", "The order's channel."),
    ),
)

_PLACE = (
    _c("country_id", "id", "Country id.", "country.pk"),
    _c("country_code", "text", "Country code (`tr`).", "country.code"),
    _c("country_name", "text", "Country name.", "country.name"),
    _c("city_id", "id", "City id.", "city.pk"),
    _c("city_name", "text", "City name.", "city.name"),
    _c("township_id", "id", "Township id.", "township.pk"),
    _c("township_name", "text", "Township name.", "township.name"),
    _c("district_id", "id", "District id.", "district.pk"),
    _c("district_name", "text", "District name.", "district.name"),
    _c("city_latitude", "coord", "City latitude (float).", "city.latitude"),
    _c("city_longitude", "coord", "City longitude (float).", "city.longitude"),
    _c("district_latitude", "coord", "District latitude (float).", "district.latitude"),
    _c("district_longitude", "coord", "District longitude (float).", "district.longitude"),
)

ADDRESSES = Table(
    "addresses",
    "address used by an order, per role",
    ("order_id", "role"),
    (
        _c("order_id", "id", "Order (-> orders).", nullable=False),
        _c("role", "text", "`shipping` or `billing`.", nullable=False),
        _c("address_id", "id", "OMS address id (shared by orders that reuse it).", "id"),
        _c("omnitron_id", "id", "Address id in Omnitron.", "omnitron_id"),
        _c("customer_id", "id", "Customer the address belongs to.", "customer.pk"),
        _c("address_type", "text", "Address type (e.g. `customer`).", "address_type"),
        _c("title", "text", "Address title (e.g. `Home`).", "title"),
        _c("first_name", "text", "First name.", "first_name", pii=True),
        _c("last_name", "text", "Last name.", "last_name", pii=True),
        _c("email", "text", "E-mail.", "email", pii=True),
        _c("phone_number", "text", "Phone number.", "phone_number", pii=True),
        _c("line", "text", "Street line.", "line", pii=True),
        _c("postcode", "text", "Postcode.", "postcode"),
        _c("notes", "text", "Address notes.", "notes"),
        _c("company_name", "text", "Company name.", "company_name", pii=True),
        _c("tax_office", "text", "Tax office.", "tax_office"),
        _c("tax_no", "text", "Tax number.", "tax_no", pii=True),
        _c("e_bill_taxpayer", "flag", "E-invoice taxpayer.", "e_bill_taxpayer"),
        _c("is_active", "flag", "Address active.", "is_active"),
        _c("mapping", "json", "Mapping (JSON).", "mapping"),
        *_PLACE,
        *_TIMES,
        _c("date_placed", "time", "The order's `date_placed`."),
    ),
)

CUSTOMERS = Table(
    "customers",
    "customer, as last seen on an order",
    ("customer_id",),
    (
        _c("customer_id", "id", "OMS customer id (`pk`).", "pk", nullable=False),
        _c("email", "text", "E-mail.", "email", pii=True),
        _c("first_name", "text", "First name.", "first_name", pii=True),
        _c("last_name", "text", "Last name.", "last_name", pii=True),
        _c("phone_number", "text", "Phone number.", "phone_number", pii=True),
        _c("erp_code", "text", "ERP code.", "erp_code"),
        _c("channel_id", "id", "Channel the customer belongs to.", "channel"),
        _c("last_order_modified", "time", "`modified_date` of the order this row was taken from."),
    ),
)

PRODUCTS = Table(
    "products",
    "product, as last seen on an order item",
    ("product_id",),
    (
        _c("product_id", "id", "OMS product id.", "id", nullable=False),
        _c("omnitron_id", "id", "Product id in Omnitron.", "omnitron_id"),
        _c("name", "text", "Product name.", "name"),
        _c("sku", "text", "SKU.", "sku"),
        _c("base_code", "text", "Base code (groups variants).", "base_code"),
        _c("barcode", "text", "Barcode.", "barcode"),
        _c("attributes", "json", "Product attributes (JSON).", "attributes"),
        _c(
            "attributes_kwargs",
            "json",
            "Attribute labels and data types (JSON).",
            "attributes_kwargs",
        ),
        _c("extra_attributes", "json", "Extra attributes (JSON).", "extra_attributes"),
        _c("image_urls", "text_list", "Image URLs in display order."),
        *_TIMES,
        _c("remote_modified_date", "time", "Last change in Omnitron.", "remote_modified_date"),
    ),
)

CHANNELS = Table(
    "channels",
    "sales channel (its `configuration`, which holds credentials, is never kept)",
    ("channel_id",),
    (
        _c("channel_id", "id", "OMS channel id.", "id", nullable=False),
        _c("name", "text", "Channel name.", "name"),
        _c("channel_type", "text", "Channel type (e.g. `web`).", "channel_type"),
        _c("omnitron_id", "id", "Channel id in Omnitron.", "omnitron_id"),
        _c("is_active", "flag", "Channel active.", "is_active"),
        *_TIMES,
    ),
)

STATES = Table(
    "states",
    "state code, with its names",
    ("enum_class", "code"),
    (
        _c("enum_class", "text", "State family (`OrderStatus`).", "enum_class", nullable=False),
        _c("code", "text", "State code (`enum_value`).", "enum_value", nullable=False),
        _c("name", "text", "Name as sent.", "name"),
        _c("name_en", "text", "English name (`translations.en-us`).", "translations.en-us.name"),
        _c("name_tr", "text", "Turkish name (`translations.tr-tr`).", "translations.tr-tr.name"),
        _c("translations", "json", "All translations (JSON).", "translations"),
    ),
)

EVENTS = Table(
    "events",
    "order webhook event",
    ("event_id",),
    (
        _c("event_id", "id", "OMS webhook event id.", "id", nullable=False),
        _c("uuid", "text", "Event UUID.", "uuid"),
        _c("event_type", "text", "Event type (e.g. `order.status.changed`).", "event_type"),
        _c("order_id", "id", "Order (-> orders).", "order"),
        _c("order_number", "text", "Order number.", "order_number"),
        _c(
            "state_code",
            "text",
            "State carried in the payload, when present.",
            "request_payload.payload.state.enum_value",
        ),
        _c("state_name", "text", "Name of that state.", "request_payload.payload.state.name"),
        _c(
            "payload_modified_date",
            "time",
            "`modified_date` of the order in the payload.",
            "request_payload.payload.modified_date",
        ),
        _c("delivered", "flag", "Delivered to the webhook target.", "delivered"),
        _c("retry_count", "int", "Delivery retries.", "retry_count"),
        _c(
            "response_http_status",
            "int",
            "HTTP status of the last delivery attempt.",
            "response_http_status",
        ),
        _c("attempt_count", "int", "Number of delivery attempts (`request_datetimes`)."),
        _c("last_attempt", "time", "Time of the last delivery attempt."),
        _c("webhook_id", "id", "Webhook subscription id.", "webhook.id"),
        _c(
            "webhook_event_type",
            "text",
            "Event type the webhook subscribes to.",
            "webhook.event_type",
        ),
        _c("payload", "json", "The request payload (JSON), secrets removed, PII per policy."),
        *_TIMES,
    ),
)

STATE_HISTORY = Table(
    "state_history",
    "state change of an order observed by a sync (kept by the cache, not by the OMS)",
    ("order_id", "changed_at"),
    (
        _c("order_id", "id", "Order (-> orders).", nullable=False),
        _c("from_state_code", "text", "State code before the change."),
        _c("to_state_code", "text", "State code after the change."),
        _c(
            "changed_at",
            "time",
            "`modified_date` of the order when the new state was seen.",
            nullable=False,
        ),
        _c("observed_at", "time", "When the sync saw it."),
        _c("date_placed", "time", "The order's `date_placed`."),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        ORDERS,
        ORDER_ITEMS,
        ADDRESSES,
        CUSTOMERS,
        PRODUCTS,
        CHANNELS,
        STATES,
        EVENTS,
        STATE_HISTORY,
    )
}


@functools.cache  # built once per table: an Arrow schema is immutable
def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of a table, with each column's meaning in the field metadata.

    Args:
        table: A table name from :data:`TABLES`.

    Returns:
        The schema; ``schema.metadata[b"omsframe.schema_version"]`` holds the version.

    Example:
        >>> arrow_schema("orders").field("order_id").nullable
        False
    """
    spec = TABLES[table]
    return pa.schema(
        [
            pa.field(c.name, c.type, nullable=c.nullable, metadata={"doc": c.doc})
            for c in spec.columns
        ],
        metadata={"omsframe.table": spec.name, "omsframe.schema_version": str(SCHEMA_VERSION)},
    )


def tables_markdown() -> str:
    """Render every table as Markdown: the text of ``docs/tables.md``.

    Example:
        >>> tables_markdown().splitlines()[0]
        '# omsframe tables'
    """
    lines = [
        "# omsframe tables",
        "",
        f"Generated from `omsframe/schema.py` (schema version {SCHEMA_VERSION}) by "
        "`python -m omsframe.schema > docs/tables.md`; do not edit by hand.",
        "",
        "Money is `decimal128(18, 2)` parsed from the API's decimal strings (never via float); "
        "timestamps are UTC; coordinates are float64; PII columns follow the PII policy.",
    ]
    for spec in TABLES.values():
        lines += [
            "",
            f"## {spec.name}",
            "",
            f"One row per {spec.one_row_per}. Key: {', '.join(f'`{k}`' for k in spec.key)}.",
            "",
            "| column | type | null | PII | source | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for c in spec.columns:
            lines.append(
                f"| `{c.name}` | {c.type} | {'yes' if c.nullable else 'no'} | "
                f"{'yes' if c.pii else ''} | {f'`{c.source}`' if c.source else '(computed)'} | "
                f"{c.doc} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(tables_markdown(), end="")
