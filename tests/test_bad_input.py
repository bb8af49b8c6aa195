"""The bad-input catalogue: each kind of bad answer gets one clear line or a quarantine entry.

Never a traceback to the user, never a silent wrong number.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from omsframe.errors import OmsframeError, ResponseError
from omsframe.flatten import flatten_orders
from omsframe.load import load
from omsframe.sync import sync
from tests.fakes import FakeTime
from tests.test_client import FakeOms, fail_first, json_response, make_client, order
from tests.test_flatten import example_copy


def body(content: bytes, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=content, headers={"Content-Type": "application/json"})


NESTED = b'{"count": 1, "results": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
ANSWERS: dict[str, httpx.Response] = {
    "HTML with status 200": httpx.Response(200, text="<html><body>Maintenance</body></html>"),
    "results not a list": json_response(200, {"count": 3, "next": None, "results": {"id": 1}}),
    "count missing": json_response(200, {"next": None, "results": [order(1)]}),
    "NaN and Infinity": body(b'{"count": NaN, "next": null, "results": [{"id": Infinity}]}'),
    "invalid UTF-8": body(b'{"count": 1, "next": null, "results": [{"id": 1, "n": "\xff\xfe"}]}'),
    "nested 5000 deep": body(NESTED),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_a_bad_answer_is_one_clear_line(name: str) -> None:
    api = FakeOms(fault=lambda request, number: ANSWERS[name])
    client = make_client(api, FakeTime())
    with pytest.raises(ResponseError) as error:
        list(client.orders())
    message = str(error.value)
    assert "\n" not in message and "orders" in message and "https://oms.example" in message
    assert len(message) < 600


def test_a_bad_answer_in_a_sync_leaves_the_cache_as_it_was(tmp_path: Path) -> None:
    api = FakeOms(records=[order(i) for i in range(1, 41)])
    client = make_client(api, FakeTime())
    sync(client=client, cache=tmp_path, progress=False, events=False)
    before = load(tmp_path, engine="pyarrow").orders
    api.fault = lambda request, number: ANSWERS["results not a list"]
    with pytest.raises(OmsframeError):
        sync(client=client, cache=tmp_path, progress=False, events=False, full=True)
    assert load(tmp_path, engine="pyarrow").orders.equals(before)


def test_a_page_much_larger_than_asked_still_gives_each_order_once() -> None:
    api = FakeOms(records=[order(i) for i in range(1, 501)])
    real_page = api.page

    def generous(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        params["limit"] = str(int(params.get("limit", "20")) * 10)  # ten times what was asked
        return real_page(request.__class__(request.method, request.url.copy_with(params=params)))

    api.page = generous  # type: ignore[method-assign]
    client = make_client(api, FakeTime(), page_size=20)
    ids = [record["id"] for record in client.orders()]
    assert sorted(ids) == list(range(1, 501)) and len(ids) == len(set(ids))


def test_a_wrong_count_never_doubles_an_order() -> None:
    api = FakeOms(records=[order(i) for i in range(1, 121)])
    real_page = api.page

    def understated(request: httpx.Request) -> httpx.Response:
        answer = real_page(request)
        data: dict[str, Any] = orjson.loads(answer.content)
        if "count" in data:
            data["count"] = 60  # the server says 60 but pages on to 120
        return json_response(answer.status_code, data)

    api.page = understated  # type: ignore[method-assign]
    ids = [record["id"] for record in make_client(api, FakeTime(), page_size=20).orders()]
    assert len(ids) == len(set(ids)) and set(ids) <= set(range(1, 121)) and len(ids) >= 60


def test_transfer_faults_then_a_good_answer_are_retried() -> None:
    bad = ANSWERS["invalid UTF-8"]
    api = FakeOms(fault=fail_first(2, lambda: bad))
    ids = [record["id"] for record in make_client(api, FakeTime()).orders()]
    assert ids == list(range(1, 101))


# --- record-level bad input: quarantine, drift, or exactly kept --------------------------------
def item_order(**item: Any) -> dict[str, Any]:
    record = copy.deepcopy(example_copy()[0])
    record["orderitem_set"][0].update(item)
    return record


def test_negative_amounts_are_kept_exactly() -> None:
    result = flatten_orders([item_order(price="-250.00", net_amount="-375.00")])
    assert result.quarantine == []
    (item,) = result.tables["order_items"].to_pylist()
    assert str(item["price"]) == "-250.00" and str(item["net_amount"]) == "-375.00"


def test_an_unknown_currency_is_kept_apart_never_added_to_another() -> None:
    import omsframe as of
    from omsframe.load import to_pandas
    from omsframe.schema import arrow_schema

    orders = example_copy()
    orders[1]["orderitem_set"][0]["price_currency"] = "xyz"
    tables = {k: to_pandas(v) for k, v in flatten_orders(orders).tables.items()}
    for name in ("events", "state_history"):
        tables[name] = to_pandas(arrow_schema(name).empty_table())
    yearly = of.revenue(of.ledger(tables), by="year")
    totals = dict(zip(yearly["currency"], yearly["net_sales"], strict=True))
    # net sales = price - discount (250 - 125) per order, each in its own currency
    assert {k: str(v) for k, v in totals.items()} == {"try": "125.00", "xyz": "125.00"}


def test_duplicate_ids_inside_a_page_keep_the_latest_copy() -> None:
    old = copy.deepcopy(example_copy()[0])
    new = copy.deepcopy(old)
    new["modified_date"] = "2023-06-01T00:00:00.000000Z"
    new["state"]["enum_value"] = "550"
    result = flatten_orders([new, old])
    assert result.duplicates == 1
    assert result.tables["orders"].column("state_code").to_pylist() == ["550"]


def test_a_short_read_keeps_the_cursor_so_the_next_sync_reads_it_again(tmp_path: Path) -> None:
    from omsframe.manifest import load_manifest

    api = FakeOms(records=[order(i) for i in range(1, 61)])
    real_page = api.page

    def overstated(request: httpx.Request) -> httpx.Response:
        answer = real_page(request)
        data: dict[str, Any] = orjson.loads(answer.content)
        if "count" in data:
            data["count"] += 5  # five orders the pages never deliver
        return json_response(answer.status_code, data)

    api.page = overstated  # type: ignore[method-assign]
    client = make_client(api, FakeTime(), page_size=20)
    report = sync(client=client, cache=tmp_path, progress=False, events=False)
    assert not report.complete
    assert any("cursor stays" in note for note in report.notes)
    assert "orders" not in load_manifest(tmp_path)["cursors"]
    again = sync(client=client, cache=tmp_path, progress=False, events=False)
    assert again.plan == "full"  # no cursor yet: the whole window is read again


def test_amounts_that_cannot_be_exact_are_quarantined_not_rounded() -> None:
    for amount in ("1_000.00", "١٢.٥٠", 99999999999999.99, 1234567890123456.78):
        result = flatten_orders([item_order(price=amount)])
        assert len(result.quarantine) == 1, amount
        assert result.tables["order_items"].num_rows == 0
    exact = flatten_orders([item_order(price=12.5)])  # a short JSON number is read exactly
    assert str(exact.tables["order_items"].column("price")[0]) == "12.50"


def deep(depth: int) -> bytes:
    """JSON nested ``depth`` objects deep: within orjson's 1,024 levels, beyond Python's walks."""
    return b'{"a":' * depth + b"1" + b"}" * depth


#: where the deeply nested value goes in an order: the field, and its value holding "PLACE"
DEEP_PLACES: dict[str, tuple[str, object]] = {
    "an unknown field": ("deep", "PLACE"),
    "a JSON column": ("extra_field", "PLACE"),
    "an item's attributes": ("orderitem_set", [{"id": 1, "attributes": "PLACE"}]),
}


@pytest.mark.parametrize("where", list(DEEP_PLACES))
def test_a_record_nested_too_deep_to_take_apart_is_one_clear_line_in_a_sync(
    tmp_path: Path, where: str
) -> None:
    # (a worker that meets such a page answers "failed", and the page is flattened here: the
    # same error; tests/test_pageflat.py covers a worker's failed page)
    api = FakeOms(records=[order(i) for i in range(1, 41)])
    client = make_client(api, FakeTime())
    sync(client=client, cache=tmp_path, progress=False, events=False)
    before = load(tmp_path, engine="pyarrow").orders
    field, value = DEEP_PLACES[where]
    api.records[7][field] = value

    def deepen(request: httpx.Request, number: int) -> httpx.Response | None:
        if request.url.path != "/api/v1/oms/orders/":
            return None
        answer = api.route(request)
        return body(answer.content.replace(b'"PLACE"', deep(1000)))

    api.fault = deepen
    with pytest.raises(ResponseError) as error:
        sync(client=client, cache=tmp_path, progress=False, events=False, full=True, workers=0)
    message = str(error.value)
    assert "\n" not in message and "nested too deeply" in message, message
    assert load(tmp_path, engine="pyarrow").orders.equals(before)
