"""Schema drift: what the OMS sends that the published shape does not have, and vice versa.

Fields omsframe does not know are never an error: they are counted and named here (and kept in
the raw layer); missing optional fields become nulls and are counted too; values of an
unexpected type that could be read are counted as type changes; unknown state codes are kept
and counted.

Example:
    >>> report = DriftReport()
    >>> check_fields({"email": "a", "pk": 1, "loyalty": 3}, "customer", report)
    >>> report.new_fields["customer.loyalty"], report.missing_fields["customer.channel"]
    (1, 1)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from omsframe.privacy import drop_credentials, looks_secret

KNOWN_STATE_CODES = frozenset(
    {
        "50",
        "100",
        "200",
        "300",
        "350",
        "400",
        "425",
        "450",
        "500",
        "510",
        "520",
        "540",
        "544",
        "545",
        "550",
        "600",
    }
)
# The fields of each object as the published example has them: anything else is drift.
KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "order": frozenset(
        [
            "id",
            "state",
            "commands",
            "orderitem_set",
            "customer",
            "shipping_address",
            "billing_address",
            "channel",
            "payment_type",
            "retail_store",
            "delivery_range",
            "client_type",
            "delivery_type",
            "created_date",
            "modified_date",
            "omnitron_id",
            "number",
            "date_placed",
            "tracking_number",
            "has_gift_box",
            "gift_box_note",
            "notes",
            "segment",
            "cargo_company",
        ]
    ),
    "item": frozenset(
        [
            "id",
            "state",
            "product",
            "created_date",
            "modified_date",
            "omnitron_id",
            "net_amount",
            "price",
            "price_currency",
            "retail_price",
            "tax_rate",
            "tax_amount",
            "discount_amount",
            "without_net_amount",
            "installment_interest_amount",
            "attributes",
            "attributes_kwargs",
            "image",
            "price_list",
            "stock_list",
            "extra_field",
            "parent_omnitron_id",
            "order",
        ]
    ),
    "product": frozenset(
        [
            "id",
            "productimage_set",
            "created_date",
            "modified_date",
            "omnitron_id",
            "name",
            "base_code",
            "sku",
            "barcode",
            "attributes",
            "attributes_kwargs",
            "extra_attributes",
            "remote_modified_date",
        ]
    ),
    "customer": frozenset(
        ["email", "first_name", "last_name", "phone_number", "erp_code", "pk", "channel"]
    ),
    "address": frozenset(
        [
            "id",
            "city",
            "country",
            "township",
            "district",
            "customer",
            "address_type",
            "created_date",
            "modified_date",
            "omnitron_id",
            "mapping",
            "title",
            "is_active",
            "line",
            "postcode",
            "notes",
            "email",
            "phone_number",
            "first_name",
            "last_name",
            "company_name",
            "tax_office",
            "tax_no",
            "e_bill_taxpayer",
        ]
    ),
    "channel": frozenset(
        ["id", "channel_type", "created_date", "modified_date", "omnitron_id", "name", "is_active"]
    ),
    "state": frozenset(
        [
            "id",
            "created_date",
            "modified_date",
            "translations",
            "name",
            "config",
            "enum_class",
            "enum_value",
            "content_type",
        ]
    ),
}


@dataclass
class DriftReport:
    """What the input had that the published shape does not, and vice versa, with counts.

    Example:
        >>> import omsframe as of
        >>> flat = of.flatten_orders([{"id": 1, "orderitem_set": [], "gift_note": "hi"}])
        >>> flat.drift.new_fields["order.gift_note"], bool(flat.drift)
        (1, True)
        >>> total = of.DriftReport()
        >>> total.merge(flat.drift)
        >>> total.merge(flat.drift)
        >>> total.to_dict()["new_fields"]
        {'order.gift_note': 2}
    """

    new_fields: Counter[str] = field(default_factory=Counter)
    missing_fields: Counter[str] = field(default_factory=Counter)
    type_changes: Counter[str] = field(default_factory=Counter)
    new_state_codes: Counter[str] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(
            self.new_fields or self.missing_fields or self.type_changes or self.new_state_codes
        )

    def merge(self, other: DriftReport) -> None:
        """Add ``other``'s counts to this report."""
        self.new_fields.update(other.new_fields)
        self.missing_fields.update(other.missing_fields)
        self.type_changes.update(other.type_changes)
        self.new_state_codes.update(other.new_state_codes)

    def to_dict(self) -> dict[str, dict[str, int]]:
        """A JSON-friendly form, for manifests and reports."""
        return {
            "new_fields": dict(self.new_fields),
            "missing_fields": dict(self.missing_fields),
            "type_changes": dict(self.type_changes),
            "new_state_codes": dict(self.new_state_codes),
        }


def check_fields(obj: dict[str, Any], kind: str, drift: DriftReport) -> None:
    """Count the fields of ``obj`` (a ``kind`` of object) that are new or missing.

    Unknown fields whose names suggest a credential are removed from ``obj``.
    """
    known = KNOWN_FIELDS[kind]
    if obj.keys() == known:
        return
    keys = obj.keys()
    for name in keys - known:
        drift.new_fields[f"{kind}.{name}"] += 1
        if looks_secret(name):  # an unknown field that smells like a credential: never keep it
            obj.pop(name)
        else:  # nor one hidden inside an unknown field
            drop_credentials(obj[name])
    for name in known - keys:
        drift.missing_fields[f"{kind}.{name}"] += 1
