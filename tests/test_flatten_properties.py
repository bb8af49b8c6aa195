"""Property tests: whatever the orders, nothing crashes, nothing is lost, money is exact."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omsframe.flatten import flatten_orders
from omsframe.privacy import ADDRESS_PII, CUSTOMER_PII, Privacy

FIXTURE = Path(__file__).parent / "fixtures" / "order-list-page.json"
TEMPLATE = orjson.loads(FIXTURE.read_bytes())["results"][0]
MONEY_FIELDS = ("price", "retail_price", "discount_amount", "net_amount", "tax_amount")

amounts = st.decimals(
    min_value=Decimal("-999999999999999.99"),
    max_value=Decimal("999999999999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
).map(lambda d: f"{d:.2f}")
bad_amounts = st.sampled_from(["abc", "NaN", "Infinity", "1.001", "", "1e400", {"x": 1}, [1]])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def unknown_fields(known: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Fields a record does not have (never one it has: Hypothesis draws names it finds in
    the project's modules, such as ``retail_price``, which would replace a known field)."""
    return st.dictionaries(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=3, max_size=12).filter(
            lambda k: k not in known
        ),
        json_values,
        max_size=3,
    )


extra_fields = unknown_fields(TEMPLATE)
extra_item_fields = unknown_fields(TEMPLATE["orderitem_set"][0])


@st.composite
def items(draw: st.DrawFn, bad: bool) -> dict[str, Any]:
    item = copy.deepcopy(TEMPLATE["orderitem_set"][0])
    item["id"] = draw(st.integers(1, 2**62))
    for name in MONEY_FIELDS:
        item[name] = draw(st.none() | amounts)
    if bad:
        item[draw(st.sampled_from(MONEY_FIELDS))] = draw(bad_amounts)
    if draw(st.booleans()):
        item["product"] = draw(st.none() | st.just(item["product"]))
    item["product"] and item["product"].update(name=draw(st.text(max_size=30)))
    item.update(draw(extra_item_fields))
    return item


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    order = copy.deepcopy(TEMPLATE)
    order["id"] = draw(st.integers(1, 2**62))
    bad = draw(st.integers(0, 9)) == 0
    order["orderitem_set"] = [
        draw(items(bad=bad and k == 0)) for k in range(draw(st.integers(0, 6)))
    ]
    order["notes"] = draw(st.none() | st.text(max_size=50))
    order["number"] = draw(st.text(min_size=1, max_size=20))
    for name in ("shipping_address", "customer", "channel", "segment", "delivery_range"):
        if draw(st.integers(0, 4)) == 0:
            order[name] = None
    if draw(st.integers(0, 19)) == 0:
        order["id"] = draw(st.none() | st.text(max_size=5))
    order.update(draw(extra_fields))
    return order


def decimal_sum(values: list[Any]) -> Decimal:
    return sum((Decimal(v) for v in values if v is not None), Decimal(0))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(orders(), max_size=8))
def test_nothing_crashes_nothing_is_lost_and_money_is_exact(batch: list[dict[str, Any]]) -> None:
    original = copy.deepcopy(batch)
    result = flatten_orders(batch, privacy=Privacy(key=b"k" * 32))
    quarantined = {q.position for q in result.quarantine}
    last_copy = {o["id"]: k for k, o in enumerate(original) if isinstance(o["id"], int)}
    superseded = {
        k for k, o in enumerate(original) if isinstance(o["id"], int) and last_copy[o["id"]] != k
    }
    assert result.duplicates == len(superseded)
    considered = [k for k in range(len(original)) if k not in superseded]
    kept = [original[k] for k in considered if k not in quarantined]

    assert result.tables["orders"].num_rows + len(quarantined) == len(considered)
    items_in = sum(len(original[k]["orderitem_set"]) for k in considered)
    items_quarantined = sum(len(original[k]["orderitem_set"]) for k in quarantined)
    assert result.tables["order_items"].num_rows + items_quarantined == items_in
    assert result.tables["order_items"].column("order_id").to_pylist() == [
        o["id"] for o in kept for _ in o["orderitem_set"]
    ]
    for name in MONEY_FIELDS:
        expected = decimal_sum([i[name] for o in kept for i in o["orderitem_set"]])
        assert decimal_sum(result.tables["order_items"].column(name).to_pylist()) == expected
    for position in considered:
        order = original[position]
        bad_money = any(
            not isinstance(i[f], str | None) or (isinstance(i[f], str) and not _is_money(i[f]))
            for i in order["orderitem_set"]
            for f in MONEY_FIELDS
        )
        if bad_money or not isinstance(order["id"], int):
            assert position in quarantined


def _is_money(text: str) -> bool:
    try:
        value = Decimal(text)
        return (
            value.is_finite() and abs(value) < 10**16 and value == value.quantize(Decimal("0.01"))
        )
    except ArithmeticError:
        return False


_KEYS = st.one_of(
    st.sampled_from(
        [
            "id",
            "name",
            "Token",
            "api_KEY",
            "x_password_y",
            "Auth",
            "secretive",
            "credentials",
            "to\u212aen",
            "na\u0130me",
            "author",
            "tokens",
            "state",
        ]
    ),
    st.text(max_size=6),
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_credentials_are_dropped_as_by_walking_every_key(value: Any) -> None:
    from omsframe.privacy import _drop_credentials, drop_credentials

    walked = _drop_credentials(copy.deepcopy(value))
    assert drop_credentials(copy.deepcopy(value)) == walked  # the text check skips no key


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 6),
            st.one_of(st.none(), st.decimals(-999, 999, places=2, allow_nan=False)),
            st.one_of(st.none(), st.sampled_from(["TRY", "USD", "EUR"])),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_group_by_is_arrows_group_by(rows: list[tuple[int, Decimal | None, str | None]]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from omsframe.assemble import group_by

    table = pa.table(
        {
            "order_id": pa.array([r[0] for r in rows], pa.int64()),
            "price": pa.array([r[1] for r in rows], pa.decimal128(18, 2)),
            "price_currency": pa.array([r[2] for r in rows], pa.string()),
        }
    )
    aggregates = [
        ("price", "sum", None),
        ("price", "count", pc.CountOptions(mode="only_null")),
        ("price_currency", "min", None),
        ("price_currency", "max", None),
    ]
    expected = table.group_by("order_id", use_threads=False).aggregate(aggregates)
    assert group_by(table, "order_id", aggregates).equals(expected)


_PII_VALUES = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=12),
    st.integers(),
    st.sampled_from(["pii:0123456789abcdef", " Ayse@Example.com ", "+90 (532) 000 00 00"]),
)
_PERSON = st.dictionaries(
    st.sampled_from(["email", "first_name", "last_name", "phone_number", "pk"]), _PII_VALUES
)
_ADDRESS = st.fixed_dictionaries({}, optional={"customer": st.one_of(_PERSON, st.none())}).flatmap(
    lambda base: st.dictionaries(
        st.sampled_from(["line", "company_name", "tax_no", "email", "phone_number", "city"]),
        _PII_VALUES,
    ).map(lambda fields: {**fields, **base})
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["pseudonymize", "keep", "drop"]),
    st.fixed_dictionaries(
        {},
        optional={
            "customer": st.one_of(_PERSON, st.none(), st.integers()),
            "shipping_address": st.one_of(_ADDRESS, st.none(), st.integers()),
            "billing_address": _ADDRESS,
        },
    ),
)
def test_scrub_order_is_value_applied_to_every_personal_field(
    mode: Any, order: dict[str, Any]
) -> None:
    """scrub_order (inlined for speed) does what value() does, field by field, in place."""
    privacy = Privacy(mode=mode, key=b"k" * 32)
    expected = copy.deepcopy(order)
    people = [(expected.get("customer"), CUSTOMER_PII)]
    for role in ("shipping_address", "billing_address"):
        address = expected.get(role)
        people.append((address, ADDRESS_PII))
        if isinstance(address, dict):
            people.append((address.get("customer"), CUSTOMER_PII))
    for obj, fields in people:
        if isinstance(obj, dict):
            for name, kind in fields.items():
                if name in obj:
                    obj[name] = privacy.value(obj[name], kind)
    privacy.scrub_order(order)  # twice: known pseudonyms, then from scratch in a new object
    assert order == expected
    assert Privacy(mode=mode, key=b"k" * 32).scrub_order(copy.deepcopy(order)) == expected
