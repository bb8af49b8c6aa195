"""Flattening raw OMS JSON into exact, typed, protected tables."""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from omsframe.flatten import flatten_events, flatten_orders, iter_flatten_orders
from omsframe.privacy import Privacy
from omsframe.schema import TABLES, arrow_schema
from omsframe.simulator import render
from omsframe.simulator.world import World

FIXTURE = Path(__file__).parent / "fixtures" / "order-list-page.json"
EXAMPLE_SECRETS = ("c44a3qSzp56TRwEu", "e8f9971734a0878e4359e9e57d3af3a4172d6e28")
KEY = b"k" * 32


def example_copy() -> list[dict[str, Any]]:
    return orjson.loads(FIXTURE.read_bytes())["results"]


def make_order(**changes: Any) -> dict[str, Any]:
    """The example's first order under id 1, with top-level fields replaced."""
    order = copy.deepcopy(example_copy()[0])
    order.update({"id": 1, **changes})
    return order


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=11, orders=400)


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.to_pylist()


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


# --- the published example, field by field --------------------------------------------------
def test_example_orders_read_as_an_analyst_reads_them() -> None:
    result = flatten_orders(example_copy(), privacy=Privacy("keep"))
    assert result.quarantine == []
    orders = {r["order_id"]: r for r in rows(result.tables["orders"])}
    assert set(orders) == {6998, 6997}
    order = orders[6998]
    assert order["number"] == "2291090711512921"
    assert order["omnitron_id"] == 63461
    assert (order["state_code"], order["state_name"]) == ("400", "Approved")
    assert (order["channel_id"], order["channel_name"]) == (1, "PZ Shop")
    assert order["customer_id"] == 3433
    assert order["shipping_address_id"] == order["billing_address_id"] == 5908
    assert (order["shipping_country_code"], order["shipping_city"]) == ("it", "MILANO")
    assert (order["shipping_township"], order["shipping_district"]) == (
        "20158 Milano MI",
        "Lorem Ipsum",
    )
    assert (order["payment_type"], order["delivery_type"], order["client_type"]) == (
        "credit_card",
        "standard",
        "default",
    )
    assert order["cargo_company"] == 34
    assert order["tracking_number"] is None and order["retail_store"] is None
    assert order["has_gift_box"] is False
    assert order["commands"] == "[]"
    assert order["date_placed"] == utc("2023-05-17T13:45:20.568681+00:00")
    assert order["created_date"] == utc("2023-05-17T13:45:55.657199+00:00")
    assert order["modified_date"] == utc("2023-05-17T13:45:55.657222+00:00")
    assert order["currency"] == "try"
    assert order["item_count"] == 1
    assert order["price_total"] == Decimal("250.00")
    assert order["discount_total"] == Decimal("125.00")
    assert order["net_total"] == Decimal("250.00")
    assert order["tax_total"] is None  # the example's tax_amount is null

    items = {r["item_id"]: r for r in rows(result.tables["order_items"])}
    item = items[6899]
    assert item["order_id"] == 6998
    assert (item["state_code"], item["state_name"]) == ("425", "Inactive")
    assert (item["product_id"], item["sku"], item["base_code"]) == (365, "AKN-008", "AKN-008")
    assert item["product_name"] == "Ultimate Organic Cotton T Shirt With Crew Neck"
    assert item["barcode"] is None
    assert item["price"] == Decimal("250.00")
    assert item["retail_price"] == Decimal("1000.00")
    assert item["discount_amount"] == Decimal("125.00")
    assert item["net_amount"] == Decimal("250.00")
    assert item["tax_rate"] == Decimal("8.00")
    assert item["tax_amount"] is None and item["without_net_amount"] is None
    assert item["price_currency"] == "try"
    assert (item["price_list_id"], item["price_list_code"]) == (34, "pz_fiyat_list")
    assert (item["stock_list_code"], item["stock_list_name"]) == (None, "pz_stok_list")
    assert json.loads(item["extra_field"]) == {"price_extra_field": {}, "stock_extra_field": {}}
    assert item["date_placed"] == order["date_placed"]
    assert item["channel_id"] == 1

    addresses = rows(result.tables["addresses"])
    assert sorted((a["order_id"], a["role"]) for a in addresses) == [
        (6997, "billing"),
        (6997, "shipping"),
        (6998, "billing"),
        (6998, "shipping"),
    ]
    address = addresses[0]
    assert (address["address_id"], address["customer_id"]) == (5908, 3433)
    assert (address["country_code"], address["country_name"], address["city_name"]) == (
        "it",
        "Italy",
        "MILANO",
    )
    assert (address["township_id"], address["district_id"], address["district_name"]) == (
        84,
        6245,
        "Lorem Ipsum",
    )
    assert address["city_latitude"] == pytest.approx(39.920763)
    assert (address["first_name"], address["line"], address["postcode"]) == (
        "John",
        "Viale Edoardo Jenner",
        "06290",
    )

    (customer,) = rows(result.tables["customers"])
    assert (customer["customer_id"], customer["first_name"], customer["channel_id"]) == (
        3433,
        "John",
        1,
    )
    (product,) = rows(result.tables["products"])
    assert product["product_id"] == 365 and product["omnitron_id"] == 8362
    assert json.loads(product["attributes"]) == {
        "hallo": "Voorbeeld",
        "integration_kol_boyu": "kısa",
    }
    assert product["image_urls"] == [
        "{cdn_url}/products/2022/09/07/8362/38f3cfef-d582-489e-bcc2-324cd0455c72.jpg"
    ]
    (channel,) = rows(result.tables["channels"])
    assert (channel["channel_id"], channel["name"], channel["channel_type"]) == (
        1,
        "PZ Shop",
        "web",
    )
    states = {(s["code"], s["name_en"], s["name_tr"]) for s in rows(result.tables["states"])}
    assert states == {("400", "Approved", "Onaylanmış"), ("425", "Inactive", "Aktif Olmayan")}


def test_tables_have_the_declared_schema_and_policy_metadata() -> None:
    result = flatten_orders(example_copy(), privacy=Privacy("drop"))
    for name, table in result.tables.items():
        assert table.schema.equals(arrow_schema(name)), name
        assert table.schema.metadata[b"omsframe.pii_policy"] == b"drop"
    assert result.pii_policy.startswith("drop")


# --- secrets and personal data ---------------------------------------------------------------
def all_text(result: Any) -> str:
    parts = [json.dumps(rows(t), default=str, ensure_ascii=False) for t in result.tables.values()]
    parts += [repr(q) for q in result.quarantine]
    return "\n".join(parts)


def test_no_secret_survives_flattening_of_orders_and_events(world: World) -> None:
    now = world.end_us
    orders = [render.order_object(world, i, now) for i in range(world.visible_orders(now))]
    events = [render.event_object(world, e, now) for e in range(0, world.visible_events(now), 7)]
    broken = make_order(id="not-an-id")  # quarantined records are scrubbed too
    text = all_text(flatten_orders([*example_copy(), *orders, broken]))
    text += all_text(flatten_events(events))
    for secret in (*EXAMPLE_SECRETS, *world.secrets()):
        assert secret not in text


def test_default_policy_pseudonymizes_personal_data_stably(world: World) -> None:
    now = world.end_us
    orders = [render.order_object(world, i, now) for i in range(50)]
    raw_emails = {o["customer"]["email"] for o in orders}
    raw_lines = {o["shipping_address"]["line"] for o in orders}
    first = flatten_orders(copy.deepcopy(orders), privacy=Privacy(key=KEY))
    again = flatten_orders(copy.deepcopy(orders), privacy=Privacy(key=KEY))
    other_key = flatten_orders(copy.deepcopy(orders), privacy=Privacy(key=b"x" * 32))
    emails = first.tables["customers"].column("email").to_pylist()
    assert not raw_emails & set(emails)
    assert not raw_lines & set(first.tables["addresses"].column("line").to_pylist())
    assert emails == again.tables["customers"].column("email").to_pylist()
    assert set(emails).isdisjoint(other_key.tables["customers"].column("email").to_pylist())
    # the same person joins: the customer's e-mail equals the address e-mail pseudonym
    assert set(emails) <= set(first.tables["addresses"].column("email").to_pylist())


def test_drop_policy_removes_personal_data() -> None:
    result = flatten_orders(example_copy(), privacy=Privacy("drop"))
    for table in ("customers", "addresses"):
        for column in TABLES[table].columns:
            if column.pii:
                assert (
                    result.tables[table].column(column.name).null_count
                    == result.tables[table].num_rows
                )


def test_events_keep_payload_state_and_scrub_it(world: World) -> None:
    now = world.end_us
    events = [render.event_object(world, e, now) for e in range(200)]
    expected_states = [e["request_payload"]["payload"]["state"]["enum_value"] for e in events]
    raw_emails = {e["request_payload"]["payload"]["customer"]["email"] for e in events}
    result = flatten_events(events, privacy=Privacy(key=KEY))
    table = result.tables["events"]
    assert table.column("event_id").to_pylist() == list(range(1, 201))
    assert table.column("state_code").to_pylist() == expected_states
    assert table.column("attempt_count").to_pylist() == [
        len(e["request_datetimes"]) for e in events
    ]
    assert table.column("delivered").to_pylist() == [e["delivered"] for e in events]
    payloads = "\n".join(table.column("payload").to_pylist())
    assert not any(email in payloads for email in raw_emails)
    assert "configuration" not in payloads and "secret_key" not in payloads


# --- exactness against the simulator's truth -------------------------------------------------
def test_item_amounts_and_order_totals_equal_the_world_to_the_cent(world: World) -> None:
    now = world.end_us
    n = world.visible_orders(now)
    result = flatten_orders([render.order_object(world, i, now) for i in range(n)])
    items = result.tables["order_items"]
    assert items.column("item_id").to_pylist() == world.item_id[: world.item_ptr[n]].tolist()
    cents = [int(d * 100) for d in items.column("price").to_pylist()]
    assert cents == world.item_price[: world.item_ptr[n]].tolist()
    discounts = [int(d * 100) for d in items.column("discount_amount").to_pylist()]
    assert discounts == world.item_discount[: world.item_ptr[n]].tolist()
    orders = result.tables["orders"]
    for order in rows(orders)[:100]:
        index = world.index_of_order_id[order["order_id"]]
        lo, hi = int(world.item_ptr[index]), int(world.item_ptr[index + 1])
        assert order["item_count"] == hi - lo
        assert order["price_total"] == Decimal(int(world.item_price[lo:hi].sum())) / 100
        net = world.item_price[lo:hi] - world.item_discount[lo:hi]
        assert order["net_total"] == Decimal(int(net.sum())) / 100


def test_batches_give_the_same_tables_as_one_call(world: World) -> None:
    now = world.end_us
    orders = [render.order_object(world, i, now) for i in range(300)]
    whole = flatten_orders(copy.deepcopy(orders), privacy=Privacy(key=KEY))
    batches = list(
        iter_flatten_orders(copy.deepcopy(orders), privacy=Privacy(key=KEY), batch_size=64)
    )
    assert [b.tables["orders"].num_rows for b in batches] == [64, 64, 64, 64, 44]
    for name in ("orders", "order_items", "addresses"):
        joined = pa.concat_tables([b.tables[name] for b in batches])
        assert joined.equals(whole.tables[name]), name


# --- bad records and drift ------------------------------------------------------------------
def bad_item(**changes: Any) -> dict[str, Any]:
    order = make_order(id=1)
    order["orderitem_set"][0].update(changes)
    return order


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (make_order(id=None), "no integer `id`"),
        (make_order(id="6998"), "no integer `id`"),
        ("just text", "expected an object"),
        (make_order(state="approved"), "`state` is str"),
        (make_order(orderitem_set={"id": 1}), "not a list"),
        (make_order(shipping_address=["x"]), "`shipping_address` is list"),
        (bad_item(price="abc"), "price"),
        (bad_item(price="NaN"), "price"),
        (bad_item(discount_amount="1.005"), "more than 2 decimal places"),
        (bad_item(net_amount={"amount": 1}), "net_amount"),
        (bad_item(created_date="2023-05-17T13:45:55"), "no time zone"),
        (bad_item(id=None), "item_id: missing"),
        (make_order(date_placed="yesterday"), "not an ISO 8601 timestamp"),
    ],
)
def test_a_bad_record_is_quarantined_whole_and_the_batch_survives(record: Any, reason: str) -> None:
    good = example_copy()
    result = flatten_orders([good[0], record, good[1]], privacy=Privacy(key=KEY))
    assert len(result.quarantine) == 1
    entry = result.quarantine[0]
    assert entry.position == 1
    assert reason in entry.reason
    assert result.tables["orders"].column("order_id").to_pylist() == [6998, 6997]
    assert result.tables["order_items"].column("order_id").to_pylist() == [6998, 6997]
    assert set(result.tables["addresses"].column("order_id").to_pylist()) == {6998, 6997}


def test_the_latest_copy_of_a_repeated_order_wins() -> None:
    older = make_order(modified_date="2023-05-17T10:00:00.000000Z", notes="old")
    newer = make_order(modified_date="2023-05-18T10:00:00.000000Z", notes="new")
    result = flatten_orders([newer, older, make_order(id=2)])
    assert result.duplicates == 1
    assert result.tables["orders"].column("notes").to_pylist() == ["new", None]
    assert result.tables["order_items"].column("order_id").to_pylist() == [1, 2]


def test_harmless_type_changes_are_read_and_reported() -> None:
    order = make_order(cargo_company="34", number=2291090711512921)
    result = flatten_orders([order])
    assert result.quarantine == []
    row = rows(result.tables["orders"])[0]
    assert (row["cargo_company"], row["number"]) == (34, "2291090711512921")
    assert set(result.drift.type_changes) == {
        "orders.cargo_company: string where an integer was expected",
        "orders.number: int where text was expected",
    }


def test_drift_names_new_and_missing_fields_and_new_state_codes() -> None:
    order = make_order(loyalty_points=12, partner_api_token="tok-123")
    del order["segment"]
    order["state"]["enum_value"] = "700"
    order["orderitem_set"][0]["gift_wrap"] = True
    result = flatten_orders([order])
    assert result.quarantine == []
    drift = result.drift
    assert drift.new_fields == {
        "order.loyalty_points": 1,
        "order.partner_api_token": 1,
        "item.gift_wrap": 1,
    }
    assert drift.missing_fields == {"order.segment": 1}
    assert drift.new_state_codes == {"700": 1}
    assert rows(result.tables["orders"])[0]["state_code"] == "700"  # unknown codes are kept
    assert rows(result.tables["orders"])[0]["segment"] is None
    assert "partner_api_token" not in order  # a credential-like unknown field is never kept


def test_nulls_in_place_of_objects_become_null_columns() -> None:
    order = make_order(shipping_address=None, customer=None, channel=None, state=None)
    order["orderitem_set"][0]["price_list"] = None
    order["orderitem_set"][0]["product"] = None
    result = flatten_orders([order])
    assert result.quarantine == []
    row = rows(result.tables["orders"])[0]
    assert row["shipping_city"] is None and row["customer_id"] is None and row["state_code"] is None
    assert result.tables["addresses"].column("role").to_pylist() == ["billing"]
    item = rows(result.tables["order_items"])[0]
    assert item["price_list_code"] is None and item["sku"] is None
    assert result.tables["customers"].num_rows == 0 and result.tables["products"].num_rows == 0


def test_tables_doc_is_current() -> None:
    from omsframe.schema import tables_markdown

    doc = Path(__file__).parent.parent / "docs" / "tables.md"
    assert doc.read_text(encoding="utf-8") == tables_markdown(), (
        "docs/tables.md is stale: run `python -m omsframe.schema > docs/tables.md`"
    )


def test_the_newer_copy_wins_whatever_the_timestamp_form() -> None:
    # "...10:00:00Z" sorts after "...10:00:00.500000Z" as text, but is half a second older
    older = make_order(modified_date="2023-05-18T10:00:00Z", notes="older")
    newer = make_order(modified_date="2023-05-18T13:00:00.500000+03:00", notes="newer")
    for batch in ([newer, older], [older, newer]):
        result = flatten_orders(copy.deepcopy(batch))
        assert result.tables["orders"].column("notes").to_pylist() == ["newer"]


def test_a_superseded_copy_leaves_without_its_secrets() -> None:
    older = make_order(modified_date="2023-05-17T10:00:00.000000Z")
    newer = make_order(modified_date="2023-05-18T10:00:00.000000Z")
    flatten_orders([newer, older])
    assert "configuration" not in older["channel"]


def test_credential_like_keys_never_survive_wherever_they_hide(world: World) -> None:
    first = make_order(id=1, loyalty={"program": "gold", "partner_token": "tok-1"})
    second = make_order(id=2)
    second["shipping_address"]["api_key"] = "key-2"  # a later copy of an address seen before
    second["channel"]["auth_password"] = "pw-3"
    flatten_orders([first, second])
    assert first["loyalty"] == {"program": "gold"}
    assert "api_key" not in second["shipping_address"]
    assert "auth_password" not in second["channel"]
    event = render.event_object(world, 0, world.end_us)
    event["webhook"]["config"]["token"] = "tok-4"
    event["request_payload"]["payload"]["customer"]["session_token"] = "tok-5"
    text = all_text(flatten_events([event]))
    assert "tok-4" not in text and "tok-5" not in text


@pytest.mark.parametrize("big", [False, True])
def test_an_event_is_made_json_once_and_keeps_no_credential_anywhere(big: bool) -> None:
    from omsframe.flatten import flatten_events_json
    from omsframe.pageflat import raw_events_table

    payload: dict[str, Any] = {
        "id": 9,
        "customer": {"pk": 1, "email": "ayse@example.com"},
        "extra": {"Partner_API_Key": "k-1", "note": "kept"},
    }
    if big:  # beyond 64 bits: orjson refuses it, so the event is walked and made JSON apart
        payload["serial"] = 2**70
    event = {
        "id": 3,
        "created_date": "2025-03-01T10:00:00Z",
        "modified_date": "2025-03-01T10:00:00Z",
        "request_payload": {"payload": payload},
        "webhook": {"id": 1, "secret_key": "s-1"},
        "x_auth_header": "h-1",
        "request_datetimes": [],
    }
    flat, texts, _ = flatten_events_json([event], Privacy(key=KEY))
    raw = raw_events_table(flat.tables["events"], texts).column("record").to_pylist()
    column = flat.tables["events"].column("payload").to_pylist()
    for text in (*raw, *column):
        for secret in ("k-1", "s-1", "h-1", "ayse@example.com", "Partner_API_Key"):
            assert secret not in text
    stored = json.loads(raw[0])
    assert stored["request_payload"] == json.loads(column[0])  # the same payload in both
    assert stored["request_payload"]["payload"]["extra"] == {"note": "kept"}
    assert stored["request_payload"]["payload"].get("serial") == (2**70 if big else None)
    # the event itself is left as flattened: secrets out, its payload an object again, in place
    assert event["request_payload"] == stored["request_payload"] and "x_auth_header" not in event
    assert list(event) == [
        "id",
        "created_date",
        "modified_date",
        "request_payload",
        "webhook",
        "request_datetimes",
    ]
    assert list(stored) == list(event)  # the raw JSON keeps the order too
