"""The client against the simulator over real loopback HTTP: records, faults, live data, auth."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from omsframe.client import Client
from omsframe.config import RetryPolicy
from omsframe.errors import AuthError, NotFoundError
from omsframe.simulator import catalogue as cat
from omsframe.simulator import render
from omsframe.simulator.faults import Faults
from omsframe.simulator.server import Clock, Dialect, SimulatorServer, serve
from omsframe.simulator.world import World, from_us, number_of
from tests.fakes import FakeTime, clear_environment

LOGIN = "/api/v1/auth/login/"
# Fast retries: the simulator's faults are immediate and Retry-After is 0 unless a test says so.
FAST = RetryPolicy(max_attempts=10, backoff_initial=0.001, backoff_max=0.02)
Record = dict[str, Any]


@pytest.fixture(autouse=True)
def _no_omsframe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(seed=3, orders=300)


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[SimulatorServer]:
    with serve(world) as running:
        yield running


def client_for(server: SimulatorServer, **options: Any) -> Client:
    options.setdefault("token", server.token)
    options.setdefault("retry", FAST)
    options.setdefault("page_size", 25)
    options.setdefault("concurrency", 4)
    return Client(server.url, timeout=10, **options)


# --- every endpoint -------------------------------------------------------------------------
def test_order_lists_return_the_worlds_orders(server: SimulatorServer, world: World) -> None:
    now = server.now_us
    visible = range(world.visible_orders(now))
    with client_for(server) as oms:
        assert list(oms.orders()) == [render.order_object(world, i, now) for i in visible]
        assert list(oms.orders_short()) == [
            render.order_short_object(world, i, now) for i in visible
        ]
        assert list(oms.orders_simple()) == [
            render.order_simple_object(world, i, now) for i in visible
        ]


def test_event_lists_return_the_worlds_events(server: SimulatorServer, world: World) -> None:
    now = server.now_us
    visible = range(min(300, world.visible_events(now)))  # event id = index + 1
    with client_for(server, page_size=50) as oms:
        full = [render.event_object(world, e, now) for e in visible]
        assert list(oms.webhook_events(id__lte=300)) == full
        short = [render.event_object(world, e, now, with_payload=False) for e in visible]
        assert list(oms.webhook_events_short(id__lte=300)) == short


def test_details_enums_and_pull(server: SimulatorServer, world: World) -> None:
    now = server.now_us
    i = world.visible_orders(now) // 2
    order_id = int(world.order_id[i])
    with client_for(server) as oms:
        assert oms.order(order_id) == render.order_object(world, i, now)
        assert oms.order_short(order_id) == render.order_short_object(world, i, now)
        assert oms.webhook_event(7) == render.event_object(world, 6, now)
        assert oms.delivery_types() == [
            {"value": v, "label": label} for v, label, _ in cat.DELIVERY_TYPES
        ]
        assert oms.payment_types() == [
            {"value": v, "label": label} for v, label, _ in cat.PAYMENT_TYPES
        ]
        with pytest.raises(NotFoundError, match="No Order matches"):
            oms.order(10**9)
        before = server.pulls
        number = number_of(order_id)
        assert oms.pull_from_omnitron(number)["number"] == number
        assert server.pulls == [*before, number]


def test_filters_reach_the_server_in_utc(server: SimulatorServer, world: World) -> None:
    now = server.now_us
    visible = world.visible_orders(now)
    since = from_us(int(world.order_created[visible // 2])).astimezone(
        dt.timezone(dt.timedelta(hours=3))
    )
    with client_for(server) as oms:
        got = [o["id"] for o in oms.orders_simple(created_date__gte=since)]
    expected = [
        int(world.order_id[i])
        for i in range(visible)
        if world.order_created[i] >= world.order_created[visible // 2]
    ]
    assert got == expected and 0 < len(got) < visible


# --- faults ---------------------------------------------------------------------------------
def test_every_order_arrives_exactly_once_through_faults(world: World) -> None:
    faults = Faults(
        seed=11,
        rate_5xx=0.1,
        rate_429=0.05,
        rate_truncated=0.01,
        rate_dropped=0.01,
        rate_invalid_json=0.01,
        retry_after="seconds",
        retry_after_seconds=0,
    )
    with serve(world, faults=faults) as server, client_for(server, page_size=10) as oms:
        expected = [int(i) for i in world.order_id[: world.visible_orders(server.now_us)]]
        for listing in (oms.orders_simple(), oms.orders_short()):
            assert [o["id"] for o in listing] == expected
        stats = server.stats
        assert stats.faults.get("5xx", 0) > 0 and stats.faults.get("429", 0) > 0
        assert oms.stats.retries >= sum(stats.faults.get(k, 0) for k in ("5xx", "429", "dropped"))


def test_retry_after_dates_from_the_server_are_honoured(world: World) -> None:
    # An HTTP date has whole seconds: "now + 0 s, rounded up" against the Date header reads as
    # a wait of about a second. Time is faked so that the test does not wait for it.
    faults = Faults(seed=2, rate_429=0.4, retry_after="date", retry_after_seconds=0)
    fake = FakeTime()
    with (
        serve(world, faults=faults) as server,
        client_for(server, sleep=fake.sleep, clock=fake.clock, page_size=5) as oms,
    ):
        assert len(list(oms.orders_simple(id__lte=int(world.order_id[39])))) == 40
        throttled = server.stats.faults.get("429", 0)
    assert throttled > 0 and oms.stats.throttled == throttled
    assert 0.9 <= max(fake.sleeps) <= 2.1


# --- live data ------------------------------------------------------------------------------
LIVE_DIALECTS = [
    Dialect(),
    Dialect(honour_ordering=False),  # newest first whatever is asked: pages shift as orders arrive
    Dialect(honour_ordering=False, default_ordering="id"),
]


@pytest.mark.parametrize(
    "dialect", LIVE_DIALECTS, ids=["ordering", "ignored-newest-first", "ignored-oldest-first"]
)
def test_no_order_is_lost_or_doubled_while_the_shop_moves(dialect: Dialect) -> None:
    # a busy fortnight: about one new order every half hour of shop time
    world = World.generate(seed=5, orders=600, start=dt.date(2025, 3, 1), end=dt.date(2025, 3, 15))
    start = from_us((world.start_us + world.end_us) // 2)  # mid-way: orders keep arriving
    clock = Clock(start=start, step_per_request=dt.timedelta(minutes=30))
    with serve(world, dialect=dialect, clock=clock) as server:
        at_start = {int(i) for i in world.order_id[: world.visible_orders(server.now_us)]}
        with client_for(server, page_size=10, concurrency=3) as oms:
            probed = oms.probe()
            listing = oms.orders_simple(probed=probed)
            ids = [o["id"] for o in listing]
        at_end = {int(i) for i in world.order_id[: world.visible_orders(server.now_us)]}
    assert len(ids) == len(set(ids)), "an order came twice"
    assert at_start <= set(ids), f"lost: {sorted(at_start - set(ids))[:10]}"
    assert set(ids) <= at_end
    assert len(at_end) > len(at_start)  # the shop did move
    assert probed.ordering is dialect.honour_ordering


# --- probe ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dialect", "ordering", "ignored"),
    [
        (Dialect(), True, set()),
        (Dialect(honour_ordering=False), False, set()),
        (Dialect(honour_filters=False), True, {"all"}),
        (
            Dialect(ignored_filters=frozenset({"modified_date__gte", "id__lt"})),
            True,
            {"modified_date__gte", "id__lt"},
        ),
    ],
)
def test_probe_detects_what_the_server_ignores(
    world: World, dialect: Dialect, ordering: bool, ignored: set[str]
) -> None:
    with serve(world, dialect=dialect) as server, client_for(server) as oms:
        result = oms.probe()
        events = oms.probe("webhook_events")
    assert result.ordering is ordering
    for name, honoured in result.filters.items():
        assert honoured is not ("all" in ignored or name in ignored), name
    assert "date_placed__gte" in result.filters and "date_placed__gte" not in events.filters
    assert result.requests <= 12 and server.pulls == []


# --- auth -----------------------------------------------------------------------------------
def test_a_wrong_token_is_an_auth_error_without_secrets(server: SimulatorServer) -> None:
    wrong = "wrong-" + server.token[::-1]
    with client_for(server, token=wrong) as oms, pytest.raises(AuthError) as caught:
        list(oms.orders())
    text = str(caught.value)
    assert "Invalid token." in text and "OMSFRAME_TOKEN" in text and server.url in text
    for secret in (wrong, server.token, server.password):
        assert secret not in text
    assert secret not in repr(oms)


def test_login_and_a_single_re_login_after_tokens_are_revoked(world: World) -> None:
    with serve(world) as server:
        oms = client_for(
            server, token=None, username=server.username, password=server.password, concurrency=3
        )
        pages = oms.orders_simple(page_size=10).pages()
        first = next(pages)
        server.revoke_tokens()
        rest = [record["id"] for page in pages for record in page.records]
        logins = server.stats.requests.get(LOGIN, 0)
        oms.close()
    assert len(first.records) + len(rest) == world.visible_orders(server.now_us)
    assert logins == 2 and oms.stats.logins == 2
