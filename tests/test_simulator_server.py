"""The simulator's HTTP API over real loopback HTTP: auth, paging, filters, faults, clock."""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import http.client
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from omsframe.simulator import catalogue as cat
from omsframe.simulator import render
from omsframe.simulator.faults import Faults
from omsframe.simulator.server import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    Clock,
    Dialect,
    SimulatorServer,
    serve,
)
from omsframe.simulator.world import DAY, World, from_us, iso

ORDERS = "/api/v1/oms/orders/"
EVENTS = "/api/v1/oms/orders/webhook-events/"
ENUMS = "/api/v1/oms/orders/payment-types/"
Json = dict[str, Any]


# --- fixtures and helpers ------------------------------------------------------------------
@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=3, orders=300)


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[SimulatorServer]:
    with serve(world) as running:
        yield running


def client_for(server: SimulatorServer, **headers: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Token {server.token}", **headers},
        timeout=10,
    )


@pytest.fixture(scope="module")
def client(server: SimulatorServer) -> Iterator[httpx.Client]:
    with client_for(server) as c:
        yield c


@pytest.fixture(scope="module")
def truth_orders(world: World, server: SimulatorServer) -> list[Json]:
    """Every visible order, rendered directly (not through the server's numpy paths)."""
    now = server.now_us
    return [render.order_short_object(world, i, now) for i in range(world.visible_orders(now))]


@pytest.fixture(scope="module")
def truth_events(world: World, server: SimulatorServer) -> list[Json]:
    now = server.now_us
    return [
        render.event_object(world, e, now, with_payload=False)
        for e in range(world.visible_events(now))
    ]


def fetch_all(c: httpx.Client, path: str, **params: Any) -> tuple[list[Json], list[Json]]:
    """Follow ``next`` links from page 1; return all results and every page envelope."""
    response = c.get(path, params=params)
    assert response.status_code == 200, response.text
    pages = [response.json()]
    while pages[-1]["next"]:
        response = c.get(pages[-1]["next"])
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return [row for page in pages for row in page["results"]], pages


def ids(rows: list[Json]) -> list[int]:
    return [int(row["id"]) for row in rows]


def stable_sort(rows: list[Json], keys: list[tuple[Callable[[Json], Any], bool]]) -> list[Json]:
    """Sort by keys (most significant first), ties by id ascending, with stable sorts."""
    out = sorted(rows, key=lambda r: int(r["id"]))
    for key, descending in reversed(keys):
        out = sorted(out, key=key, reverse=descending)
    return out


def when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- auth ----------------------------------------------------------------------------------
def test_missing_and_wrong_tokens_are_401(server: SimulatorServer) -> None:
    with httpx.Client(base_url=server.url) as c:
        missing = c.get(ORDERS)
        wrong = c.get(ORDERS, headers={"Authorization": "Token nope"})
        bare = c.get(ORDERS, headers={"Authorization": "Token"})
        bearer = c.get(ORDERS, headers={"Authorization": f"Bearer {server.token}"})
        ok = c.get(ORDERS, headers={"Authorization": f"token {server.token}"})
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    assert missing.headers["WWW-Authenticate"] == "Token"
    assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid token."}
    assert bare.status_code == 401 and "No credentials provided" in bare.json()["detail"]
    assert bearer.status_code == 401
    assert ok.status_code == 200  # the keyword is case-insensitive, as in DRF


def test_login_gives_a_working_token_and_revocation_forces_relogin(world: World) -> None:
    with serve(world, token="static-token") as srv, httpx.Client(base_url=srv.url) as c:
        login = "/api/v1/auth/login/"
        bad = c.post(login, json={"username": DEFAULT_USERNAME, "password": "wrong"})
        assert bad.status_code == 400
        assert bad.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}
        missing = c.post(login, json={"username": DEFAULT_USERNAME})
        assert missing.status_code == 400
        assert missing.json() == {"password": ["This field is required."]}
        assert c.get(login).status_code == 405

        good = c.post(login, json={"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD})
        assert good.status_code == 200
        key = good.json()["key"]
        assert key != "static-token"
        assert c.get(ENUMS, headers={"Authorization": f"Token {key}"}).status_code == 200

        srv.revoke_tokens()
        revoked = c.get(ENUMS, headers={"Authorization": f"Token {key}"})
        assert revoked.status_code == 401 and revoked.json() == {"detail": "Invalid token."}
        assert c.get(ENUMS, headers={"Authorization": "Token static-token"}).status_code == 200

        again = c.post(login, json={"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD})
        new_key = again.json()["key"]
        assert new_key != key
        assert c.get(ENUMS, headers={"Authorization": f"Token {new_key}"}).status_code == 200


# --- pagination ----------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [7, 50, 299, 1000])
def test_pagination_walks_every_order_exactly_once(
    client: httpx.Client, world: World, server: SimulatorServer, limit: int
) -> None:
    rows, pages = fetch_all(client, ORDERS + "short/", limit=limit)
    visible = [int(i) for i in world.order_id[: world.visible_orders(server.now_us)]]
    assert pages[0]["count"] == len(visible) > 250
    assert len(pages) == math.ceil(len(visible) / limit)
    assert ids(rows) == sorted(visible, reverse=True)  # default ordering: -id
    assert all(len(p["results"]) == limit for p in pages[:-1])


def test_next_and_previous_links_are_drf_like(
    client: httpx.Client, world: World, server: SimulatorServer
) -> None:
    base = f"{server.url}{ORDERS}"
    n = world.visible_orders(server.now_us)
    first = client.get(ORDERS, params={"ordering": "id", "limit": 10}).json()
    assert first["previous"] is None
    assert first["next"] == f"{base}?limit=10&ordering=id&page=2"
    second = client.get(first["next"]).json()
    assert second["previous"] == f"{base}?limit=10&ordering=id"  # page 1 drops `page`
    assert second["next"] == f"{base}?limit=10&ordering=id&page=3"
    third = client.get(second["next"]).json()
    assert third["previous"] == f"{base}?limit=10&ordering=id&page=2"
    assert ids(third["results"]) == [int(i) for i in world.order_id[20:30]]

    last = client.get(ORDERS, params={"limit": 40, "page": "last"}).json()
    pages = math.ceil(n / 40)
    assert last["next"] is None and len(last["results"]) == n - (pages - 1) * 40
    assert last["previous"] == f"{base}?limit=40&page={pages - 1}"

    hosted = client.get(ORDERS, params={"limit": 5}, headers={"Host": "shop-oms.example.test"})
    assert hosted.json()["next"] == f"http://shop-oms.example.test{ORDERS}?limit=5&page=2"


@pytest.mark.parametrize("page", ["0", "-1", "abc", "2.5", "past", "9999"])
def test_invalid_pages_are_404(
    client: httpx.Client, world: World, server: SimulatorServer, page: str
) -> None:
    if page == "past":
        page = str(math.ceil(world.visible_orders(server.now_us) / 5) + 1)
    response = client.get(ORDERS, params={"limit": 5, "page": page})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_empty_result_has_a_valid_first_page_only(
    client: httpx.Client, world: World, server: SimulatorServer
) -> None:
    last = math.ceil(world.visible_orders(server.now_us) / 5)
    empty = client.get(ORDERS, params={"id__gt": 10**9})
    assert empty.status_code == 200
    assert empty.json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert client.get(ORDERS, params={"id__gt": 10**9, "page": "last"}).status_code == 200
    assert client.get(ORDERS, params={"id__gt": 10**9, "page": 2}).status_code == 404
    assert client.get(ORDERS, params={"page": last, "limit": 5}).status_code == 200


@pytest.mark.parametrize(("limit", "expected"), [("abc", 20), ("0", 20), ("-5", 20), ("", 20)])
def test_bad_limit_falls_back_to_default(client: httpx.Client, limit: str, expected: int) -> None:
    page = client.get(ORDERS + "list-simple/", params={"limit": limit}).json()
    assert len(page["results"]) == expected


def test_page_size_settings_of_the_dialect(world: World) -> None:
    dialect = Dialect(default_page_size=7, max_page_size=50)
    with serve(world, dialect=dialect) as srv, client_for(srv) as c:
        assert len(c.get(ORDERS + "short/").json()["results"]) == 7
        capped = c.get(ORDERS + "short/", params={"limit": 5000}).json()
        assert len(capped["results"]) == 50
        assert "limit=5000" in capped["next"]  # the asked limit stays in the link
    with pytest.raises(ValueError):
        Dialect(default_page_size=10, max_page_size=5)


# --- filters -------------------------------------------------------------------------------
def _order_cases(world: World) -> list[tuple[dict[str, str], Callable[[Json], bool]]]:
    number = world.order_number[17]
    t1, t2 = "2024-06-01T00:00:00Z", "2025-03-15T12:30:00+03:00"
    d1, d2 = when(t1), when(t2)
    return [
        ({"id__gt": "1100"}, lambda o: o["id"] > 1100),
        ({"id__gte": "1100"}, lambda o: o["id"] >= 1100),
        ({"id__lt": "1050"}, lambda o: o["id"] < 1050),
        ({"id__lte": "1050.5"}, lambda o: o["id"] <= 1050),
        ({"id__gt": "1050.5"}, lambda o: o["id"] > 1050),
        ({"number": number}, lambda o: o["number"] == number),
        ({"number": "2291000000000000"}, lambda o: False),
        ({"channel": "2"}, lambda o: o["channel"]["id"] == 2),
        ({"state__enum_value": "550"}, lambda o: o["state"]["enum_value"] == "550"),
        ({"state__enum_value": "100"}, lambda o: o["state"]["enum_value"] == "100"),
        ({"created_date__gte": t1}, lambda o: when(o["created_date"]) >= d1),
        ({"created_date__lte": t2}, lambda o: when(o["created_date"]) <= d2),
        ({"modified_date__gte": t2}, lambda o: when(o["modified_date"]) >= d2),
        ({"modified_date__lte": "2024-09-01"}, lambda o: o["modified_date"] <= "2024-09-01"),
        ({"date_placed__gte": "2025-01-01 00:00:00"}, lambda o: o["date_placed"] >= "2025"),
        ({"date_placed__lte": t1}, lambda o: when(o["date_placed"]) <= d1),
        (
            {"channel": "1", "state__enum_value": "550", "date_placed__gte": t1},
            lambda o: (
                o["channel"]["id"] == 1
                and o["state"]["enum_value"] == "550"
                and when(o["date_placed"]) >= d1
            ),
        ),
    ]


def test_order_filters_match_the_rendered_truth(
    client: httpx.Client, world: World, truth_orders: list[Json]
) -> None:
    for params, predicate in _order_cases(world):
        expected = sorted((o["id"] for o in truth_orders if predicate(o)), reverse=True)
        rows, pages = fetch_all(client, ORDERS + "list-simple/", limit=1000, **params)
        assert ids(rows) == expected, params
        assert pages[0]["count"] == len(expected), params
    # the filters must actually narrow things down somewhere
    assert 0 < len([o for o in truth_orders if o["state"]["enum_value"] == "550"]) < 300


def test_event_filters_match_the_rendered_truth(
    client: httpx.Client, world: World, truth_events: list[Json], truth_orders: list[Json]
) -> None:
    channel_of = {o["id"]: o["channel"]["id"] for o in truth_orders}
    state_of = {e + 1: str(int(world.event_state[e])) for e in range(len(truth_events))}
    some_order = truth_events[100]["order"]
    cases: list[tuple[dict[str, str], Callable[[Json], bool]]] = [
        ({"event_type": "order.created"}, lambda e: e["event_type"] == "order.created"),
        ({"event_type": "order.status.changed"}, lambda e: e["event_type"].endswith("changed")),
        ({"event_type": "nope"}, lambda e: False),
        ({"delivered": "true"}, lambda e: e["delivered"]),
        ({"delivered": "False"}, lambda e: not e["delivered"]),
        ({"delivered": "0"}, lambda e: not e["delivered"]),
        ({"delivered": "maybe"}, lambda e: True),  # django-filter's BooleanWidget ignores it
        ({"order": str(some_order)}, lambda e: e["order"] == some_order),
        (
            {"number": truth_events[5]["order_number"]},
            lambda e: e["order_number"] == truth_events[5]["order_number"],
        ),
        ({"channel": "3"}, lambda e: channel_of[e["order"]] == 3),
        ({"state__enum_value": "500"}, lambda e: state_of[e["id"]] == "500"),
        ({"id__gt": "1400", "id__lte": "1450"}, lambda e: 1400 < e["id"] <= 1450),
        (
            {"created_date__gte": "2025-06-01T00:00:00Z"},
            lambda e: e["created_date"] >= "2025-06-01",
        ),
        (
            {"modified_date__lte": "2024-05-01T00:00:00Z"},
            lambda e: e["modified_date"] <= "2024-05-01",
        ),
    ]
    for params, predicate in cases:
        expected = sorted((e["id"] for e in truth_events if predicate(e)), reverse=True)
        rows, pages = fetch_all(client, EVENTS + "short/", limit=1000, **params)
        assert ids(rows) == expected, params
        assert pages[0]["count"] == len(expected), params
    assert 0 < sum(e["delivered"] for e in truth_events) < len(truth_events)


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"id__gt": "abc"}, {"id__gt": ["Enter a number."]}),
        ({"modified_date__gte": "yesterday"}, {"modified_date__gte": ["Enter a valid date/time."]}),
        (
            {"id__lte": "x", "created_date__lte": "2024-13-01"},
            {"id__lte": ["Enter a number."], "created_date__lte": ["Enter a valid date/time."]},
        ),
        (
            {"channel": "99"},
            {
                "channel": [
                    "Select a valid choice. That choice is not one of the available choices."
                ]
            },
        ),
    ],
)
def test_invalid_filter_values_are_400(
    client: httpx.Client, params: dict[str, str], errors: dict[str, list[str]]
) -> None:
    response = client.get(ORDERS, params=params)
    assert response.status_code == 400
    assert response.json() == errors
    assert client.get(EVENTS, params={"order": "x"}).json() == {"order": ["Enter a number."]}


def test_filters_are_ignored_when_the_dialect_says_so(world: World) -> None:
    ignore_all = Dialect(honour_filters=False)
    with serve(world, dialect=ignore_all) as srv, client_for(srv) as c:
        page = c.get(ORDERS + "short/", params={"id__gt": 1290, "channel": 2}).json()
        assert page["count"] == world.visible_orders(srv.now_us)
        assert c.get(ORDERS, params={"id__gt": "abc"}).status_code == 200
        events = c.get(EVENTS + "short/", params={"delivered": "true"}).json()
        assert events["count"] == world.visible_events(srv.now_us)
    ignore_one = Dialect(ignored_filters=frozenset({"modified_date__gte"}))
    with serve(world, dialect=ignore_one) as srv, client_for(srv) as c:
        both = {"modified_date__gte": "2030-01-01T00:00:00Z", "id__gt": "1290"}
        above = world.order_id[: world.visible_orders(srv.now_us)] > 1290
        assert c.get(ORDERS + "short/", params=both).json()["count"] == int(above.sum()) > 0


# --- ordering ------------------------------------------------------------------------------
ORDER_KEYS: dict[str, Callable[[Json], Any]] = {
    "id": lambda o: o["id"],
    "created_date": lambda o: o["created_date"],
    "modified_date": lambda o: o["modified_date"],
    "date_placed": lambda o: o["date_placed"],
    "number": lambda o: o["number"],
}


@pytest.mark.parametrize(
    "ordering",
    [
        "id",
        "-id",
        "created_date",
        "-created_date",
        "modified_date",
        "-modified_date",
        "date_placed",
        "-date_placed",
        "number",
        "-number",
        "-modified_date,id",
        "date_placed,-number",
    ],
)
def test_order_ordering(client: httpx.Client, truth_orders: list[Json], ordering: str) -> None:
    keys = [(ORDER_KEYS[term.lstrip("-")], term.startswith("-")) for term in ordering.split(",")]
    expected = ids(stable_sort(truth_orders, keys))
    rows, _ = fetch_all(client, ORDERS + "short/", limit=120, ordering=ordering)
    assert ids(rows) == expected


@pytest.mark.parametrize("ordering", ["date_placed", "-date_placed", "-date_placed,-id"])
def test_ties_are_broken_by_id(ordering: str) -> None:
    coarse = World.generate(seed=3, orders=300)
    coarse.order_placed = coarse.order_placed // (30 * DAY) * (30 * DAY)  # many equal values
    with serve(coarse) as srv, client_for(srv) as c:
        truth = [
            render.order_short_object(coarse, i, srv.now_us)
            for i in range(coarse.visible_orders(srv.now_us))
        ]
        rows, _ = fetch_all(c, ORDERS + "short/", limit=1000, ordering=ordering)
    keys = [(ORDER_KEYS[term.lstrip("-")], term.startswith("-")) for term in ordering.split(",")]
    assert ids(rows) == ids(stable_sort(truth, keys))
    assert len({o["date_placed"] for o in truth}) < len(truth) / 5


def test_modified_date_ordering_is_not_id_ordering(truth_orders: list[Json]) -> None:
    by_modified = stable_sort(truth_orders, [(ORDER_KEYS["modified_date"], False)])
    assert ids(by_modified) != sorted(ids(truth_orders))  # else the ordering tests prove little


@pytest.mark.parametrize("ordering", ["modified_date", "-created_date", "id", "-modified_date,-id"])
def test_event_ordering(client: httpx.Client, truth_events: list[Json], ordering: str) -> None:
    keys = [(ORDER_KEYS[term.lstrip("-")], term.startswith("-")) for term in ordering.split(",")]
    rows, _ = fetch_all(client, EVENTS + "short/", limit=1000, ordering=ordering)
    assert ids(rows) == ids(stable_sort(truth_events, keys))


def test_unknown_ordering_fields_fall_back_to_default(
    client: httpx.Client, truth_orders: list[Json]
) -> None:
    default = sorted(ids(truth_orders), reverse=True)
    for ordering in ("state", "--id", "+id", "foo,bar"):
        rows, _ = fetch_all(client, ORDERS + "short/", limit=1000, ordering=ordering)
        assert ids(rows) == default, ordering
    rows, _ = fetch_all(client, ORDERS + "short/", limit=1000, ordering="foo,date_placed")
    assert ids(rows) == ids(stable_sort(truth_orders, [(ORDER_KEYS["date_placed"], False)]))


def test_ordering_ignored_and_default_ordering_of_the_dialect(
    world: World, truth_orders: list[Json]
) -> None:
    dialect = Dialect(honour_ordering=False, default_ordering="modified_date")
    expected = ids(stable_sort(truth_orders, [(ORDER_KEYS["modified_date"], False)]))
    with serve(world, dialect=dialect) as srv, client_for(srv) as c:
        for ordering in ("", "id", "-date_placed"):
            rows, _ = fetch_all(c, ORDERS + "short/", limit=1000, ordering=ordering)
            assert ids(rows) == expected, ordering
        events, _ = fetch_all(c, EVENTS + "short/", limit=1000, ordering="-id")
        assert ids(events) == sorted(ids(events), key=lambda i: (events_modified(events)[i], i))


def events_modified(events: list[Json]) -> dict[int, str]:
    return {e["id"]: e["modified_date"] for e in events}


# --- shapes, details, events, enums, pulls ----------------------------------------------------
def test_order_details_and_shapes(
    client: httpx.Client, world: World, server: SimulatorServer
) -> None:
    now, index = server.now_us, 42
    order_id = int(world.order_id[index])
    full = client.get(f"{ORDERS}{order_id}/").json()
    assert full == render.order_object(world, index, now)
    assert full["orderitem_set"] and "configuration" in full["channel"]
    short = client.get(f"{ORDERS}{order_id}/short/").json()
    assert short == render.order_short_object(world, index, now)
    assert "orderitem_set" not in short and "configuration" not in short["channel"]

    listed_short = client.get(ORDERS + "short/", params={"number": full["number"]}).json()
    assert listed_short["results"] == [short]
    simple = client.get(ORDERS + "list-simple/", params={"number": full["number"]}).json()
    row = simple["results"][0]
    assert row["channel"] == full["channel"]["id"] and row["state"] == full["state"]["id"]
    assert isinstance(row["customer"], int) and isinstance(row["shipping_address"], int)
    listed_full = client.get(ORDERS, params={"id__gte": order_id, "id__lte": order_id}).json()
    assert listed_full["results"] == [full]

    missing = client.get(f"{ORDERS}999999/")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "No Order matches the given query."}
    assert client.get(f"{ORDERS}abc/").json() == {"detail": "Not found."}


def test_orders_after_now_do_not_exist_yet(world: World) -> None:
    start = from_us(int(world.order_created[150]))
    with serve(world, clock=Clock(start=start)) as srv, client_for(srv) as c:
        assert c.get(f"{ORDERS}{int(world.order_id[150])}/").status_code == 200
        later = c.get(f"{ORDERS}{int(world.order_id[151])}/")
        assert later.status_code == 404
        assert c.get(ORDERS).json()["count"] == 151


def test_events_full_short_and_detail(
    client: httpx.Client, world: World, server: SimulatorServer
) -> None:
    now = server.now_us
    full = client.get(EVENTS, params={"limit": 3}).json()
    short = client.get(EVENTS + "short/", params={"limit": 3}).json()
    n = world.visible_events(now)
    assert full["count"] == short["count"] == n > 1000
    assert [e["id"] for e in full["results"]] == [n, n - 1, n - 2]
    assert all("request_payload" in e for e in full["results"])
    assert all("request_payload" not in e for e in short["results"])
    assert full["results"][0] == render.event_object(world, n - 1, now)
    detail = client.get(f"{EVENTS}17/").json()
    assert detail == render.event_object(world, 16, now)
    assert detail["request_payload"]["payload"]["number"] == detail["order_number"]
    gone = client.get(f"{EVENTS}{n + 1}/")
    assert gone.status_code == 404 and "No WebhookEvent" in gone.json()["detail"]


def test_enums(client: httpx.Client) -> None:
    payment = client.get(ENUMS).json()
    delivery = client.get(ORDERS + "delivery-types/").json()
    assert payment == [{"value": v, "label": label} for v, label, _ in cat.PAYMENT_TYPES]
    assert delivery == [{"value": v, "label": label} for v, label, _ in cat.DELIVERY_TYPES]
    assert {"value": "standard", "label": "Standard"} in delivery


def test_pull_from_omnitron_is_validated_and_recorded(world: World) -> None:
    path = ORDERS + "pull-from-omnitron/"
    with serve(world) as srv, client_for(srv) as c:
        number = world.order_number[3]
        ok = c.post(path, json={"number": number})
        assert ok.status_code == 200
        assert ok.json() == {"number": number, "detail": "Order pull from Omnitron queued."}
        missing = c.post(path, json={})
        assert missing.status_code == 400
        assert missing.json() == {"number": ["This field is required."]}
        unknown = c.post(path, json={"number": "2291999999999999"})
        assert unknown.status_code == 404 and unknown.json() == {"detail": "Not found."}
        assert c.get(path).json() == {"detail": 'Method "GET" not allowed.'}
        assert (
            c.post(path, content=b"{nope", headers={"Content-Type": "application/json"}).status_code
            == 400
        )
        assert srv.pulls == [number]
        assert srv.stats.requests[path] == 5


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    assert client.get("/api/v1/oms/nothing/").json() == {"detail": "Not found."}
    assert client.get("/api/v1/oms/nothing/").status_code == 404
    wrong = client.delete(ORDERS)
    assert wrong.status_code == 405
    assert wrong.json() == {"detail": 'Method "DELETE" not allowed.'}
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS"
    no_slash = client.get("/api/v1/oms/orders/short", params={"limit": 2})
    assert no_slash.status_code == 301
    assert no_slash.headers["Location"] == "/api/v1/oms/orders/short/?limit=2"
    head = client.head(ORDERS)
    assert head.status_code == 200 and head.content == b""


# --- faults --------------------------------------------------------------------------------
def _hammer(srv: SimulatorServer, n: int, path: str = ENUMS, **headers: str) -> list[Any]:
    """``n`` sequential requests; each outcome is a response or the exception raised."""
    outcomes: list[Any] = []
    with client_for(srv, **headers) as c:
        for _ in range(n):
            try:
                outcomes.append(c.get(path))
            except httpx.HTTPError as exc:
                outcomes.append(exc)
    return outcomes


def _statuses(outcomes: list[Any]) -> list[object]:
    return [o.status_code if isinstance(o, httpx.Response) else type(o).__name__ for o in outcomes]


@pytest.mark.parametrize("form", ["seconds", "date", "mixed"])
def test_429_at_its_rate_with_retry_after(world: World, form: str) -> None:
    faults = Faults(seed=11, rate_429=0.3, retry_after=form, retry_after_seconds=2.2)  # type: ignore[arg-type]
    with serve(world, faults=faults) as srv:
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)
        outcomes = _hammer(srv, 200)
        throttled = [o for o in outcomes if o.status_code == 429]
        assert 40 <= len(throttled) <= 80
        assert srv.stats.faults["429"] == len(throttled)
        assert srv.stats.statuses[200] == 200 - len(throttled)
    kinds: Counter[str] = Counter()
    for response in throttled:
        assert response.json() == {
            "detail": "Request was throttled. Expected available in 3 seconds."
        }
        value = response.headers["Retry-After"]
        if value.isdigit():
            kinds["seconds"] += 1
            assert int(value) == 3
        else:
            kinds["date"] += 1
            moment = email.utils.parsedate_to_datetime(value)
            assert value.endswith(" GMT") and moment.tzinfo is not None
            assert started + dt.timedelta(seconds=2) <= moment
            assert moment <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    if form == "mixed":
        assert kinds["seconds"] > 5 and kinds["date"] > 5
    else:
        assert set(kinds) == {form}


def test_fault_draws_are_deterministic_per_seed(world: World) -> None:
    faults = Faults(seed=5, rate_429=0.2, rate_5xx=0.2)
    runs = []
    for seed in (5, 5, 6):
        with serve(world, faults=Faults(**{**faults.__dict__, "seed": seed})) as srv:
            runs.append(_statuses(_hammer(srv, 60)))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert Counter(runs[0])[429] > 0


def test_5xx_at_its_rate_some_as_html(world: World) -> None:
    with serve(world, faults=Faults(seed=2, rate_5xx=0.3)) as srv:
        outcomes = _hammer(srv, 200)
        failed = [o for o in outcomes if o.status_code >= 500]
        assert 40 <= len(failed) <= 80
        assert srv.stats.faults["5xx"] == len(failed)
    assert {o.status_code for o in failed} == {500, 502, 503, 504}
    html = [o for o in failed if o.headers["content-type"].startswith("text/html")]
    as_json = [o for o in failed if o.headers["content-type"] == "application/json"]
    assert len(html) + len(as_json) == len(failed)
    assert 0.25 < len(html) / len(failed) < 0.75
    assert all(o.text.startswith("<html>") and "nginx" in o.text for o in html)
    assert all(isinstance(o.json()["detail"], str) for o in as_json)
    with pytest.raises(json.JSONDecodeError):
        html[0].json()


def test_truncated_bodies_raise_in_the_client(world: World) -> None:
    with serve(world, faults=Faults(seed=3, rate_truncated=0.3)) as srv:
        outcomes = _hammer(srv, 200, path=ORDERS + "short/")
        broken = [o for o in outcomes if isinstance(o, Exception)]
        assert 40 <= len(broken) <= 80
        assert all(isinstance(o, httpx.RemoteProtocolError) for o in broken)
        assert srv.stats.faults["truncated"] == len(broken)
        assert all(o.status_code == 200 for o in outcomes if isinstance(o, httpx.Response))


def test_dropped_connections(world: World) -> None:
    with serve(world, faults=Faults(seed=4, rate_dropped=0.3)) as srv:
        outcomes = _hammer(srv, 200)
        dropped = [o for o in outcomes if isinstance(o, Exception)]
        assert 40 <= len(dropped) <= 80
        assert all(isinstance(o, httpx.RemoteProtocolError) for o in dropped)
        assert "without sending a response" in str(dropped[0])
        assert srv.stats.faults["dropped"] == len(dropped)


def test_invalid_json_bodies(world: World) -> None:
    with serve(world, faults=Faults(seed=8, rate_invalid_json=0.3)) as srv:
        outcomes = _hammer(srv, 200, path=ORDERS + "list-simple/?limit=3")
    assert all(o.status_code == 200 for o in outcomes)
    invalid = 0
    for response in outcomes:
        try:
            response.json()
        except json.JSONDecodeError:
            invalid += 1
    assert 40 <= invalid <= 80
    assert srv.stats.faults["invalid_json"] == invalid


def test_slow_responses(world: World) -> None:
    with serve(world, faults=Faults(seed=9, rate_slow=0.3, slow_seconds=0.08)) as srv:
        outcomes = _hammer(srv, 40)
        slow = [o for o in outcomes if o.elapsed.total_seconds() >= 0.08]
        injected = srv.stats.faults["slow"]
    assert 4 <= injected <= 22
    assert injected <= len(slow) <= injected + 2  # a busy machine may add a slow one
    assert all(o.status_code == 200 for o in outcomes)


def test_fault_rates_are_validated() -> None:
    with pytest.raises(ValueError):
        Faults(rate_429=0.7, rate_5xx=0.5)
    with pytest.raises(ValueError):
        Faults(rate_slow=1.5)


def test_schema_drift(world: World, truth_orders: list[Json]) -> None:
    with serve(world, faults=Faults(seed=1, rate_drift=0.5)) as srv, client_for(srv) as c:
        now = srv.now_us
        first, _ = fetch_all(c, ORDERS, limit=300)
        again, _ = fetch_all(c, ORDERS, limit=300)
        assert first == again  # drift is a property of the order, not of the request
        drifted = 0
        kinds: Counter[str] = Counter()
        for order in first:
            index = int(order["id"]) - int(world.order_id[0])
            truth = render.order_object(world, index, now)
            if order == truth:
                continue
            drifted += 1
            if set(order) - set(truth):
                kinds["unknown"] += 1
            if set(truth) - set(order):
                kinds["missing"] += 1
            if order.get("shipping_address", 0) is None:
                kinds["null"] += 1
                assert any(item["price_list"] is None for item in order["orderitem_set"])
            if order["state"]["enum_value"] not in {str(code) for code in cat.STATE_NAMES}:
                kinds["state"] += 1
                assert int(order["state"]["enum_value"]) in cat.UNKNOWN_STATES
        assert 100 <= drifted <= 200
        assert srv.stats.faults["drift"] == 2 * drifted
        assert all(kinds[k] > 10 for k in ("unknown", "missing", "null", "state")), kinds
    shorts = {o["id"]: o for o in truth_orders}
    with serve(world, faults=Faults(seed=1, rate_drift=0.0)) as srv, client_for(srv) as c:
        plain, _ = fetch_all(c, ORDERS + "short/", limit=300)
        assert all(o == shorts[o["id"]] for o in plain)


# --- transport -----------------------------------------------------------------------------
def test_gzip_only_when_asked(server: SimulatorServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    auth = {"Authorization": f"Token {server.token}"}
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", ORDERS + "?limit=5", headers={**auth, "Accept-Encoding": "gzip"})
    zipped = conn.getresponse()
    zipped_body = zipped.read()
    assert zipped.getheader("Content-Encoding") == "gzip"
    assert zipped_body[:2] == b"\x1f\x8b"
    conn.request("GET", ORDERS + "?limit=5", headers={**auth, "Accept-Encoding": "identity"})
    plain = conn.getresponse()  # same keep-alive connection
    plain_body = plain.read()
    assert plain.getheader("Content-Encoding") is None
    assert gzip.decompress(zipped_body) == plain_body
    assert len(zipped_body) < len(plain_body) / 3
    assert json.loads(plain_body)["count"] == server.world.visible_orders(server.now_us)
    conn.close()


def test_live_clock_steps_per_request(world: World) -> None:
    start = from_us(int(world.order_created[100]))
    step = dt.timedelta(days=20)
    with serve(world, clock=Clock(start=start, step_per_request=step)) as srv, client_for(srv) as c:
        first = c.get(ORDERS + "short/", params={"limit": 1}).json()
        second = c.get(ORDERS + "short/", params={"limit": 1}).json()
        moment = int(world.order_created[100]) + 20 * 86_400_000_000
        assert first["count"] == 101
        assert second["count"] == world.visible_orders(moment) > 101
        assert second["results"][0]["id"] > first["results"][0]["id"]
        assert srv.now == start + 2 * step
        srv.advance(dt.timedelta(days=30))
        third = c.get(ORDERS + "short/", params={"limit": 1}).json()
        assert third["count"] == world.visible_orders(moment + 50 * 86_400_000_000)
        assert c.get("/api/v1/oms/nothing/").status_code == 404  # does not step the clock
        assert srv.now == start + 3 * step + dt.timedelta(days=30)


def test_live_clock_speed(world: World) -> None:
    start = from_us(int(world.order_created[100]))
    speed = 86_400.0 * 100  # a hundred shop days per wall second
    began = time.monotonic()
    with serve(world, clock=Clock(start=start, speed=speed)) as srv:
        time.sleep(0.1)
        shift = srv.now - start
        wall = time.monotonic() - began
        assert dt.timedelta(days=10) <= shift <= dt.timedelta(seconds=speed * wall)
        with client_for(srv) as c:
            assert c.get(ORDERS + "short/").json()["count"] > 101
    assert iso(world.end_us).endswith("Z")


def test_stop_closes_keep_alive_connections(world: World) -> None:
    srv = SimulatorServer(world).start()
    with client_for(srv) as c:
        assert c.get(ENUMS).status_code == 200
        srv.stop()
        with pytest.raises(httpx.TransportError):
            c.get(ENUMS)
    with pytest.raises(RuntimeError):
        _ = srv.url


def test_serve_defaults() -> None:
    with serve() as srv, client_for(srv) as c:
        page = c.get(ORDERS + "list-simple/").json()
        assert page["count"] == World.generate(seed=0, orders=500).visible_orders(srv.now_us)
        assert len(page["results"]) == 20
        assert srv.stats.requests == {ORDERS + "list-simple/": 1}


def test_concurrent_clients_get_consistent_pages(
    server: SimulatorServer, truth_orders: list[Json]
) -> None:
    pages = math.ceil(len(truth_orders) / 10)
    found: dict[int, list[int]] = {}

    def worker(start: int) -> None:
        with client_for(server) as c:
            for page in range(start, pages + 1, 4):
                params: dict[str, str | int] = {
                    "limit": 10,
                    "page": page,
                    "ordering": "modified_date",
                }
                found[page] = ids(c.get(ORDERS + "short/", params=params).json()["results"])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    walked = [i for page in sorted(found) for i in found[page]]
    assert walked == ids(stable_sort(truth_orders, [(ORDER_KEYS["modified_date"], False)]))
