"""The client against a fake DRF-paginated OMS behind ``httpx.MockTransport``.

No test waits for real: the client gets a fake ``sleep`` and ``clock`` (:class:`FakeTime`).
"""

from __future__ import annotations

import datetime as dt
import gzip as gzip_module
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from omsframe.client import Client
from omsframe.config import EndpointPaths, RetryPolicy
from omsframe.errors import (
    ApiError,
    AuthError,
    ConfigError,
    NotFoundError,
    RateLimitError,
    ResponseError,
    ServerError,
)
from omsframe.paging import ProbeResult
from tests.fakes import FakeTime, clear_environment

BASE = "https://oms.example"
PATHS = EndpointPaths()
TOKEN = "tok-3f9a1c77e2"
USER, PASSWORD = "analyst", "pw-Zx81!kq"
Record = dict[str, Any]
Fault = Callable[[httpx.Request, int], httpx.Response | None]


@pytest.fixture(autouse=True)
def _no_omsframe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)


# --- a fake OMS -----------------------------------------------------------------------------
def order(order_id: int) -> Record:
    created = dt.datetime(2025, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=order_id)
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    return {
        "id": order_id,
        "number": f"N{order_id:06d}",
        "created_date": stamp,
        "modified_date": stamp,
        "date_placed": stamp,
    }


def json_response(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=orjson.dumps(body), headers={"Content-Type": "application/json", **headers}
    )


@dataclass
class FakeOms:
    """A small DRF-style OMS: page/limit paging, 404 "Invalid page.", filters, faults."""

    records: list[Record] = field(default_factory=lambda: [order(i) for i in range(1, 101)])
    token: str = TOKEN
    honour_ordering: bool = True
    honour_filters: bool = True
    default_order: str = "-id"  # what an ignored ordering falls back to
    max_limit: int = 1000
    delay: float = 0.0  # real seconds per request, to make concurrency observable
    fault: Fault | None = None  # may answer instead of the API (request, call number)
    before_page: Callable[[FakeOms, int], None] | None = None  # mutate data between pages
    requests: list[httpx.Request] = field(default_factory=list)
    logins: int = 0
    pulls: list[Record] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.fault is not None:
                answer = self.fault(request, number)
                if answer is not None:
                    return answer
            return self.route(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == PATHS.login:
            body = orjson.loads(request.content)
            if body != {"username": USER, "password": PASSWORD}:
                return json_response(
                    400, {"non_field_errors": ["Unable to log in with provided credentials."]}
                )
            with self._lock:
                self.logins += 1
                self.token = f"key-{self.logins}-9d2e"
            return json_response(200, {"key": self.token})
        if request.headers.get("Authorization") != f"Token {self.token}":
            return json_response(401, {"detail": "Invalid token."})
        lists = (PATHS.orders, PATHS.orders_short, PATHS.orders_simple)
        if path in (*lists, PATHS.webhook_events, PATHS.webhook_events_short):
            return self.page(request)
        if path == PATHS.delivery_types:
            return json_response(200, [{"value": "standard", "label": "Standard"}])
        if path == PATHS.payment_types:
            return json_response(200, [{"value": "credit_card", "label": "Credit Card"}])
        if path == PATHS.pull_from_omnitron and request.method == "POST":
            self.pulls.append(orjson.loads(request.content))
            return json_response(200, {"detail": "queued"})
        found = re.fullmatch(r"/api/v1/oms/orders/(?:webhook-events/)?(\d+)/(?:short/)?", path)
        if found:
            for record in self.records:
                if record["id"] == int(found.group(1)):
                    return json_response(200, record)
            return json_response(404, {"detail": "Not found."})
        return httpx.Response(404, text="<html><body><h1>Not Found</h1></body></html>")

    def page(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        number = int(params.get("page", "1"))
        if self.before_page is not None:
            self.before_page(self, number)
        rows = list(self.records)
        if self.honour_filters:
            rows = [r for r in rows if all(self._keep(r, k, v) for k, v in params.items())]
        ordering = params.get("ordering", "id") if self.honour_ordering else self.default_order
        rows.sort(key=lambda r: r["id"], reverse=ordering.startswith("-"))
        limit = min(int(params.get("limit", "20")), self.max_limit)
        pages = max(1, math.ceil(len(rows) / limit))
        if number > pages:
            return json_response(404, {"detail": "Invalid page."})
        after = (
            f"https://evil.example{request.url.path}?page={number + 1}" if number < pages else None
        )
        body = {
            "count": len(rows),
            "next": after,
            "previous": None,
            "results": rows[(number - 1) * limit : number * limit],
        }
        return json_response(200, body)

    @staticmethod
    def _keep(record: Record, name: str, value: str) -> bool:
        field_name, _, op = name.rpartition("__")
        if op not in ("gt", "gte", "lt", "lte") or field_name not in record:
            return True
        have: Any = record[field_name]
        want: Any = int(value) if field_name == "id" else dt.datetime.fromisoformat(value)
        if field_name != "id":
            have = dt.datetime.fromisoformat(have)
        return bool(
            {"gt": have > want, "gte": have >= want, "lt": have < want, "lte": have <= want}[op]
        )

    def paths_called(self) -> list[str]:
        return [r.url.path for r in self.requests]


def make_client(api: FakeOms, fake: FakeTime | None = None, **options: Any) -> Client:
    fake = fake or FakeTime()
    options.setdefault("token", TOKEN)
    options.setdefault("retry", RetryPolicy(max_attempts=4, backoff_initial=0.1, jitter=0))
    return Client(BASE, transport=api.transport(), sleep=fake.sleep, clock=fake.clock, **options)


def fail_first(times: int, answer: Callable[[], httpx.Response], path: str | None = None) -> Fault:
    """A fault that answers the first ``times`` matching requests with ``answer()``."""
    left = [times]

    def fault(request: httpx.Request, number: int) -> httpx.Response | None:
        if path is not None and request.url.path != path:
            return None
        if left[0] > 0:
            left[0] -= 1
            return answer()
        return None

    return fault


# --- auth -----------------------------------------------------------------------------------
def test_sends_the_token_header_and_builds_urls_from_the_base() -> None:
    api = FakeOms()
    with make_client(api) as oms:
        assert oms.order(7)["number"] == "N000007"
    [request] = api.requests
    assert request.headers["Authorization"] == f"Token {TOKEN}"
    assert str(request.url) == f"{BASE}/api/v1/oms/orders/7/"


def test_logs_in_with_username_and_password() -> None:
    api = FakeOms(token="unknown-yet")
    oms = make_client(api, token=None, username=USER, password=PASSWORD)
    assert oms.delivery_types() == [{"value": "standard", "label": "Standard"}]
    login, call = api.requests
    assert (login.method, login.url.path) == ("POST", PATHS.login)
    assert orjson.loads(login.content) == {"username": USER, "password": PASSWORD}
    assert "Authorization" not in login.headers
    assert call.headers["Authorization"] == "Token key-1-9d2e"


def test_logs_in_again_exactly_once_on_401_then_retries() -> None:
    api = FakeOms()
    oms = make_client(api, username=USER, password=PASSWORD)
    api.token = "rotated"  # the given token expired
    assert oms.order(3)["id"] == 3
    assert api.logins == 1
    assert api.paths_called() == ["/api/v1/oms/orders/3/", PATHS.login, "/api/v1/oms/orders/3/"]
    assert oms.stats.logins == 1


def test_concurrent_401s_cause_a_single_re_login() -> None:
    api = FakeOms(delay=0.005)

    def revoke_once(api: FakeOms, number: int) -> None:
        if number == 2 and api.logins == 0:
            api.token = "revoked"

    api.before_page = revoke_once
    oms = make_client(api, username=USER, password=PASSWORD, concurrency=4)
    assert [r["id"] for r in oms.orders(page_size=10)] == list(range(1, 101))
    assert api.logins == 1


def test_a_second_401_after_re_login_is_an_auth_error_without_secrets() -> None:
    api = FakeOms()
    api.fault = lambda request, n: (
        None
        if request.url.path == PATHS.login
        else json_response(401, {"detail": "Invalid token."})
    )
    oms = make_client(api, username=USER, password=PASSWORD)
    with pytest.raises(AuthError) as caught:
        oms.order(1)
    assert api.paths_called().count(PATHS.login) == 1
    text = str(caught.value)
    assert "Invalid token." in text and "HTTP 401" in text and "order" in text
    assert TOKEN not in text and PASSWORD not in text and "key-1-9d2e" not in text
    for way in (
        "token=",
        "OMSFRAME_TOKEN",
        "username=",
        "password=",
        "OMSFRAME_USERNAME",
        "OMSFRAME_PASSWORD",
    ):
        assert way in text


def test_a_token_alone_fails_at_once_on_401() -> None:
    api = FakeOms(token="someone-else")
    oms = make_client(api)
    with pytest.raises(AuthError) as caught:
        list(oms.orders())
    assert len(api.requests) == 1
    assert caught.value.status == 401 and caught.value.endpoint == "orders"
    assert TOKEN not in str(caught.value)


def test_wrong_password_is_an_auth_error_that_does_not_quote_it() -> None:
    api = FakeOms()
    oms = make_client(api, token=None, username=USER, password="wrong-" + PASSWORD)
    with pytest.raises(AuthError) as caught:
        oms.payment_types()
    assert "Unable to log in" in str(caught.value)
    assert PASSWORD not in str(caught.value) and caught.value.endpoint == "login"


def test_a_body_echoing_the_token_is_redacted() -> None:
    api = FakeOms()
    api.fault = lambda request, n: json_response(400, {"detail": f"bad token {TOKEN}"})
    with pytest.raises(ApiError) as caught:
        make_client(api).order(1)
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)


# --- configuration --------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://oms.example", "http://10.0.0.8:8000"])
def test_plain_http_is_refused_for_remote_hosts(url: str) -> None:
    with pytest.raises(ConfigError, match="allow_http=True"):
        Client(url, token=TOKEN)
    Client(url, token=TOKEN, allow_http=True).close()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000", "http://127.9.9.9", "http://[::1]:80", "http://localhost:8000/"],
)
def test_plain_http_is_fine_on_loopback(url: str) -> None:
    Client(url, token=TOKEN).close()


def test_credentials_and_url_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMSFRAME_URL", BASE)
    monkeypatch.setenv("OMSFRAME_USERNAME", USER)
    monkeypatch.setenv("OMSFRAME_PASSWORD", PASSWORD)
    monkeypatch.setenv("OMSFRAME_CONCURRENCY", "7")
    api = FakeOms(token="unknown")
    oms = Client(transport=api.transport(), token=None)
    assert oms.settings.url == BASE and oms.settings.concurrency == 7
    oms.payment_types()
    assert api.logins == 1
    assert Client(token="explicit", concurrency=2).settings.concurrency == 2


def test_missing_credentials_say_how_to_give_them() -> None:
    with pytest.raises(ConfigError, match="OMSFRAME_TOKEN") as caught:
        Client(BASE)
    assert "OMSFRAME_USERNAME" in str(caught.value)
    with pytest.raises(ConfigError, match="password"):
        Client(BASE, username=USER)
    with pytest.raises(ConfigError, match="OMSFRAME_URL"):
        Client(token=TOKEN)
    with pytest.raises(ConfigError, match="credentials"):
        Client(f"https://{USER}:{PASSWORD}@oms.example", token=TOKEN)


def test_repr_shows_no_secret() -> None:
    oms = Client(BASE, token=TOKEN, username=USER, password=PASSWORD)
    for text in (repr(oms), repr(oms.settings), str(oms.settings.to_dict())):
        assert TOKEN not in text and PASSWORD not in text
    assert "oms.example" in repr(oms)


def test_endpoint_paths_are_configurable() -> None:
    api = FakeOms()
    api.fault = lambda request, n: (
        json_response(200, []) if request.url.path == "/custom/delivery/" else None
    )
    oms = make_client(api, paths=EndpointPaths(delivery_types="/custom/delivery/"))
    assert oms.delivery_types() == []
    assert api.paths_called() == ["/custom/delivery/"]


# --- retries --------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_growing_backoff(status: int) -> None:
    api = FakeOms(fault=fail_first(3, lambda: httpx.Response(status, text="<h1>busy</h1>")))
    fake = FakeTime()
    oms = make_client(api, fake)
    assert oms.order(5)["id"] == 5
    assert len(api.requests) == 4
    assert fake.sleeps == pytest.approx([0.1, 0.2, 0.4])
    assert oms.stats.retries == 3


def test_backoff_is_capped_and_jittered() -> None:
    api = FakeOms(fault=fail_first(5, lambda: httpx.Response(503)))
    fake = FakeTime()
    policy = RetryPolicy(max_attempts=6, backoff_initial=1, backoff_max=3, jitter=0.5)
    make_client(api, fake, retry=policy).order(5)
    assert all(0.5 <= s <= 3 for s in fake.sleeps)
    assert max(fake.sleeps[2:]) <= 3 and min(fake.sleeps[2:]) >= 1.5


def test_retries_stop_at_max_attempts_with_a_server_error() -> None:
    api = FakeOms(
        fault=lambda request, n: httpx.Response(502, text="<html><h1>502 Bad Gateway</h1></html>")
    )
    with pytest.raises(ServerError) as caught:
        make_client(api).order(5)
    assert len(api.requests) == 4
    assert caught.value.status == 502 and "502 Bad Gateway" in str(caught.value)


@pytest.mark.parametrize(
    "exception",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")],
)
def test_transport_failures_are_retried(exception: Exception) -> None:
    def fault(request: httpx.Request, number: int) -> httpx.Response | None:
        if number <= 2:
            raise exception
        return None

    api = FakeOms(fault=fault)
    assert make_client(api).order(9)["id"] == 9
    assert len(api.requests) == 3


def test_a_server_that_never_answers_is_a_server_error() -> None:
    def fault(request: httpx.Request, number: int) -> httpx.Response | None:
        raise httpx.ReadTimeout("slow")

    with pytest.raises(ServerError, match=r"no response.*ReadTimeout") as caught:
        make_client(FakeOms(fault=fault)).order(9)
    assert caught.value.status is None


def test_an_unknown_host_fails_at_once_and_a_refused_one_says_what_to_check() -> None:
    def unknown(request: httpx.Request, number: int) -> httpx.Response | None:
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    api = FakeOms(fault=unknown)
    with pytest.raises(ServerError, match=r"host name is not known.*check the URL"):
        make_client(api).order(9)
    assert len(api.requests) == 1  # a typo is not retried

    def refused(request: httpx.Request, number: int) -> httpx.Response | None:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    api = FakeOms(fault=refused)
    with pytest.raises(ServerError, match=r"nothing accepts connections at .*:443") as caught:
        make_client(api).order(9)
    assert len(api.requests) == 4 and TOKEN not in str(caught.value)


def test_truncated_json_is_retried_then_a_response_error() -> None:
    def truncated() -> httpx.Response:
        return httpx.Response(200, content=b'{"count": 3, "results": [{"id"')

    api = FakeOms(fault=fail_first(2, truncated))
    assert make_client(api).order(2)["id"] == 2
    api = FakeOms(fault=lambda request, n: truncated())
    with pytest.raises(ResponseError, match="truncated"):
        make_client(api).order(2)
    assert len(api.requests) == 4


def test_a_gzip_body_is_handed_as_it_came_to_a_decoder_that_asks_for_it() -> None:
    def gzipped(body: bytes) -> httpx.Response:
        return httpx.Response(  # a stream, as from the network (content= would inflate it)
            200,
            stream=httpx.ByteStream(gzip_module.compress(body)),
            headers={"Content-Encoding": "gzip"},
        )

    seen: list[tuple[bytes, bool]] = []

    def decode(content: bytes, *, gzip: bool = False) -> Any:
        seen.append((content, gzip))
        return orjson.loads(gzip_module.decompress(content) if gzip else content)

    api = FakeOms(fault=lambda request, n: gzipped(b'{"id": 4}'))
    session = make_client(api)._session
    assert session.request("order", "GET", "/x/", decode=decode) == {"id": 4}
    assert seen == [(gzip_module.compress(b'{"id": 4}'), True)]  # not inflated here
    assert session.request("order", "GET", "/x/") == {"id": 4}  # no decoder: inflated here
    plain = FakeOms(fault=lambda request, n: httpx.Response(200, content=b'{"id": 5}'))
    assert make_client(plain)._session.request("order", "GET", "/x/", decode=decode) == {"id": 5}
    assert seen[-1] == (b'{"id": 5}', False)


def test_a_damaged_gzip_body_is_retried_then_a_response_error() -> None:
    from omsframe.pageflat import PageDecoder
    from omsframe.privacy import Privacy

    def damaged() -> httpx.Response:
        body = gzip_module.compress(orjson.dumps({"count": 0, "results": []}))[:-9]
        return httpx.Response(
            200, stream=httpx.ByteStream(body), headers={"Content-Encoding": "gzip"}
        )

    api = FakeOms(fault=lambda request, n: damaged())
    with (
        PageDecoder(Privacy(), workers=0) as decode,
        pytest.raises(ResponseError, match="truncated"),
    ):
        make_client(api)._session.request("orders", "GET", "/x/", decode=decode)
    assert len(api.requests) == 4


def test_a_response_is_freed_as_soon_as_it_is_read_without_the_cyclic_collector() -> None:
    import gc
    import weakref

    from omsframe.session import Session

    session = make_client(FakeOms())._session
    seen: list[weakref.ref[httpx.Response]] = []
    send = Session._send

    def watched(self: Session, *args: Any, **kwargs: Any) -> Any:
        answer = send(self, *args, **kwargs)
        seen.append(weakref.ref(answer[0]))
        return answer

    was_enabled = gc.isenabled()
    gc.disable()  # as during a sync: only reference counting frees
    try:
        Session._send = watched  # type: ignore[method-assign]
        assert session.request("order", "GET", "/api/v1/oms/orders/2/")["id"] == 2
    finally:
        Session._send = send  # type: ignore[method-assign]
        if was_enabled:
            gc.enable()
    assert len(seen) == 1 and seen[0]() is None  # no cycle kept it


def test_a_wrong_shape_is_a_response_error() -> None:
    api = FakeOms(fault=lambda request, n: json_response(200, {"items": []}))
    with pytest.raises(ResponseError, match="orders_simple"):
        list(make_client(api).orders_simple())


@pytest.mark.parametrize(
    ("status", "kind"), [(400, ApiError), (403, AuthError), (404, NotFoundError)]
)
def test_client_errors_are_not_retried(status: int, kind: type[ApiError]) -> None:
    api = FakeOms(fault=lambda request, n: json_response(status, {"detail": "no."}))
    with pytest.raises(kind) as caught:
        make_client(api).order(1)
    assert len(api.requests) == 1 and caught.value.status == status


def test_an_unknown_id_is_not_found_naming_the_url() -> None:
    with pytest.raises(
        NotFoundError,
        match=r"order_short: HTTP 404 from https://oms.example/api/v1/oms/orders/999/short/",
    ):
        make_client(FakeOms()).order_short(999)


# --- 429 and the rate budget ----------------------------------------------------------------
def test_retry_after_in_seconds_is_honoured() -> None:
    api = FakeOms(
        fault=fail_first(
            1, lambda: json_response(429, {"detail": "slow down"}, **{"Retry-After": "7"})
        )
    )
    fake = FakeTime()
    oms = make_client(api, fake)
    assert oms.order(4)["id"] == 4
    assert sum(fake.sleeps) >= 7
    assert oms.stats.throttled == 1


def test_retry_after_as_an_http_date_is_honoured() -> None:
    headers = {
        "Retry-After": "Wed, 21 Oct 2025 07:28:30 GMT",
        "Date": "Wed, 21 Oct 2025 07:28:18 GMT",
    }
    api = FakeOms(fault=fail_first(1, lambda: json_response(429, {}, **headers)))
    fake = FakeTime()
    make_client(api, fake).order(4)
    assert sum(fake.sleeps) == pytest.approx(12)


def test_a_retry_after_beyond_the_cap_raises_instead_of_blocking() -> None:
    api = FakeOms(fault=lambda request, n: json_response(429, {}, **{"Retry-After": "3600"}))
    with pytest.raises(RateLimitError, match="3600 s") as caught:
        make_client(api).order(4)
    assert caught.value.retry_after == 3600 and len(api.requests) == 1


def test_after_a_long_retry_after_the_client_fails_fast_instead_of_hanging() -> None:
    api = FakeOms(fault=fail_first(1, lambda: json_response(429, {}, **{"Retry-After": "3600"})))
    fake = FakeTime()
    oms = make_client(api, fake)
    with pytest.raises(RateLimitError):
        oms.order(4)
    with pytest.raises(RateLimitError, match="not sent") as caught:
        oms.order(5)  # the server's hour is not over: nothing is sent, nothing blocks
    assert len(api.requests) == 1 and fake.sleeps == []
    assert caught.value.retry_after == pytest.approx(3600)
    fake.now += 3600
    assert oms.order(5)["id"] == 5


def test_a_redirect_is_not_followed() -> None:
    api = FakeOms(
        fault=lambda request, n: httpx.Response(
            301, headers={"Location": "https://evil.example/x/"}
        )
    )
    with pytest.raises(ApiError, match=r"redirects to https://evil.example/x/") as caught:
        make_client(api).order(1)
    assert len(api.requests) == 1 and caught.value.status == 301


def test_persistent_429_is_a_rate_limit_error() -> None:
    api = FakeOms(
        fault=lambda request, n: json_response(
            429, {"detail": "Throttled."}, **{"Retry-After": "1"}
        )
    )
    with pytest.raises(RateLimitError, match="Throttled"):
        make_client(api).order(4)
    assert len(api.requests) == 4


def test_no_request_starts_before_retry_after_across_threads() -> None:
    fake = FakeTime()
    starts: list[tuple[float, int]] = []
    throttled_at: list[float] = []

    def fault(request: httpx.Request, number: int) -> httpx.Response | None:
        starts.append((fake.now, number))
        if number == 5:
            throttled_at.append(fake.now)
            return json_response(429, {}, **{"Retry-After": "30"})
        return None

    api = FakeOms(fault=fault, delay=0.01)
    oms = make_client(api, fake, concurrency=4)
    assert len(list(oms.orders(page_size=5))) == 100
    [when] = throttled_at
    later = [t for t, n in starts if n > 5 + 4]  # after the requests already in flight
    assert later and min(later) >= when + 30
    assert oms._session.budget.allowed < 4 or oms.stats.throttled == 1  # it slowed down


# --- endpoints ------------------------------------------------------------------------------
def test_every_endpoint_hits_its_path() -> None:
    api = FakeOms()
    oms = make_client(api)
    oms.order(1), oms.order_short(1), oms.webhook_event(1)
    lists = (oms.orders, oms.orders_short, oms.orders_simple)
    for listing in (*lists, oms.webhook_events, oms.webhook_events_short):
        assert len(list(listing())) == 100
    oms.delivery_types(), oms.payment_types(), oms.pull_from_omnitron("N000001")
    paths = api.paths_called()
    for path in (
        "/api/v1/oms/orders/1/",
        "/api/v1/oms/orders/1/short/",
        "/api/v1/oms/orders/webhook-events/1/",
        PATHS.orders,
        PATHS.orders_short,
        PATHS.orders_simple,
        PATHS.webhook_events,
        PATHS.webhook_events_short,
        PATHS.delivery_types,
        PATHS.payment_types,
        PATHS.pull_from_omnitron,
    ):
        assert path in paths


def test_pull_from_omnitron_posts_the_number_and_is_not_retried_after_a_5xx() -> None:
    api = FakeOms()
    assert make_client(api).pull_from_omnitron("2291000000012345") == {"detail": "queued"}
    assert api.pulls == [{"number": "2291000000012345"}]
    assert api.requests[0].method == "POST"
    api = FakeOms(fault=fail_first(1, lambda: httpx.Response(503)))
    with pytest.raises(ServerError):
        make_client(api).pull_from_omnitron("2291000000012345")
    assert len(api.requests) == 1


def test_nothing_calls_pull_from_omnitron_implicitly() -> None:
    api = FakeOms()
    oms = make_client(api)
    list(oms.orders()), oms.probe(), oms.order(1)
    assert PATHS.pull_from_omnitron not in api.paths_called()


def test_detail_ids_must_be_integers() -> None:
    with pytest.raises(TypeError):
        make_client(FakeOms()).order("1/../../auth")  # type: ignore[arg-type]


# --- lists ----------------------------------------------------------------------------------
def test_date_filters_are_sent_in_utc_with_z_and_ordering_defaults_to_id() -> None:
    api = FakeOms()
    istanbul = dt.timezone(dt.timedelta(hours=3))
    oms = make_client(api)
    list(
        oms.orders(
            created_date__gte=dt.datetime(2025, 1, 2, 3, 0, tzinfo=istanbul),
            modified_date__lte="2025-01-03T00:00:00+03:00",
            date_placed__gte=dt.date(2025, 1, 1),
            state__enum_value=400,
        )
    )
    params = api.requests[0].url.params
    assert params["created_date__gte"] == "2025-01-02T00:00:00Z"
    assert params["modified_date__lte"] == "2025-01-02T21:00:00Z"
    assert params["date_placed__gte"] == "2025-01-01T00:00:00Z"
    assert params["state__enum_value"] == "400"
    assert params["ordering"] == "id"


def test_unknown_filters_are_refused() -> None:
    with pytest.raises(TypeError, match="created__gte"):
        make_client(FakeOms()).orders(created__gte="2025-01-01")  # type: ignore[call-arg]


def test_filters_narrow_the_records() -> None:
    oms = make_client(FakeOms())
    assert [r["id"] for r in oms.orders(id__gt=95)] == [96, 97, 98, 99, 100]


def test_pages_come_in_order_with_bounded_concurrency() -> None:
    api = FakeOms(records=[order(i) for i in range(1, 501)], delay=0.003)
    oms = make_client(api, concurrency=3)
    listing = oms.orders(page_size=10)
    ids = [r["id"] for r in listing]
    assert ids == list(range(1, 501))
    assert 2 <= api.max_in_flight <= 3
    assert listing.stats.pages == 50 and listing.stats.complete


def test_pages_are_read_lazily_and_never_all_at_once() -> None:
    api = FakeOms(records=[order(i) for i in range(1, 501)])
    oms = make_client(api, concurrency=3)
    pages = oms.orders(page_size=10).pages()
    first = next(pages)
    assert first.number == 1 and len(first.records) == 10
    second = next(pages)
    assert second.number == 2
    time.sleep(0.05)
    assert len(api.requests) <= 2 + 3  # the two handed out plus the window
    pages.close()


def test_next_links_to_other_hosts_are_never_followed() -> None:
    api = FakeOms()
    list(make_client(api).orders(page_size=7))
    assert {r.url.host for r in api.requests} == {"oms.example"}


def test_a_server_capping_limit_is_still_read_whole() -> None:
    api = FakeOms(max_limit=15)
    assert [r["id"] for r in make_client(api).orders(page_size=50)] == list(range(1, 101))


def test_duplicates_from_shifting_pages_are_dropped() -> None:
    api = FakeOms(honour_ordering=False)  # newest first, and new orders keep arriving
    next_id = [101]

    def grow(api: FakeOms, number: int) -> None:
        if number > 1:
            api.records.append(order(next_id[0]))
            next_id[0] += 1

    api.before_page = grow
    listing = make_client(api, concurrency=1).orders(page_size=10)
    ids = [r["id"] for r in listing]
    assert len(ids) == len(set(ids))
    assert set(range(1, 101)) <= set(ids)
    assert listing.stats.duplicates > 0


def test_a_deletion_between_pages_is_re_read_in_a_second_pass() -> None:
    api = FakeOms()

    def delete_once(api: FakeOms, number: int) -> None:
        if number == 3 and any(r["id"] == 5 for r in api.records):
            api.records = [r for r in api.records if r["id"] != 5]

    api.before_page = delete_once
    listing = make_client(api, concurrency=1).orders(page_size=10)
    ids = [r["id"] for r in listing]
    # 5 was handed out before it went; 21 slid onto page 2 after page 2 was read
    assert sorted(ids) == list(range(1, 101))
    assert ids.index(21) > ids.index(100)
    assert listing.stats.passes == 2 and listing.stats.complete


@pytest.mark.parametrize(("ordering_known", "passes"), [(True, 1), (False, 2)])
def test_a_growing_list_is_read_to_its_new_end(ordering_known: bool, passes: int) -> None:
    api = FakeOms()

    def add_while_reading(api: FakeOms, number: int) -> None:
        if number == 5 and len(api.records) == 100:
            api.records += [order(101), order(102)]

    api.before_page = add_while_reading
    probed = ProbeResult("orders", 100, ordering=ordering_known, filters={})
    listing = make_client(api, concurrency=2).orders(page_size=10, probed=probed)
    ids = [r["id"] for r in listing]
    assert ids == list(range(1, 103))
    assert listing.stats.passes == passes and listing.stats.complete


def test_a_page_vanished_by_shrinking_data_is_not_an_error() -> None:
    api = FakeOms()

    def shrink(api: FakeOms, number: int) -> None:
        if number == 2:
            api.records = api.records[:15]

    api.before_page = shrink
    listing = make_client(api, concurrency=4).orders(page_size=10)
    ids = [r["id"] for r in listing]
    assert ids == list(range(1, 16))
    assert listing.stats.vanished_pages >= 1 and listing.stats.count == 15


def test_a_page_that_never_answers_is_an_error() -> None:
    def fault(request: httpx.Request, number: int) -> httpx.Response | None:
        return httpx.Response(503) if request.url.params.get("page") == "3" else None

    with pytest.raises(ServerError):
        list(make_client(FakeOms(fault=fault)).orders(page_size=10))


def test_progress_bar_is_optional(capsys: pytest.CaptureFixture[str]) -> None:
    oms = make_client(FakeOms())
    assert len(list(oms.orders(progress=True, page_size=25))) == 100
    assert "100/100" in capsys.readouterr().err


# --- probe ----------------------------------------------------------------------------------
def test_probe_finds_an_honest_server() -> None:
    api = FakeOms()
    result = make_client(api).probe()
    assert result.ordering is True and result.count == 100
    assert all(result.filters.values()) and "date_placed__lte" in result.filters
    assert result.honours("id__gt") and result.honours("ordering")
    assert all(int(r.url.params["limit"]) <= 5 for r in api.requests)
    assert len(api.requests) == result.requests <= 12


def test_probe_detects_ignored_ordering_and_filters() -> None:
    result = make_client(FakeOms(honour_ordering=False, honour_filters=False)).probe()
    assert result.ordering is False
    assert not any(result.filters.values())
    assert not result.honours("id__gt")


def test_probe_of_an_empty_list_cannot_tell() -> None:
    result = make_client(FakeOms(records=[])).probe("webhook_events")
    assert result.ordering is None and set(result.filters.values()) == {None}
    assert "date_placed__gte" not in result.filters


@pytest.mark.parametrize(
    ("url", "verified"),
    [("https://acme-oms.akinon.net", True), ("http://127.0.0.1:8765", False)],
)
def test_https_is_always_verified_and_plain_http_builds_no_tls_context(
    url: str, verified: bool
) -> None:
    import ssl

    with Client(url, token="t") as client:
        pool = client._session._http._transport._pool  # type: ignore[attr-defined]
        mode = pool._ssl_context.verify_mode
    assert mode == (ssl.CERT_REQUIRED if verified else ssl.CERT_NONE)


@pytest.mark.parametrize(
    ("url", "compress", "environment", "plain_decoder", "gzip"),
    [
        ("https://acme-oms.akinon.net", None, None, False, True),
        ("https://acme-oms.akinon.net", None, None, True, True),  # remote: always compressed
        ("http://127.0.0.1:8765", None, None, False, True),
        ("http://127.0.0.1:8765", None, None, True, False),  # loopback, pages to workers
        ("http://localhost:8765", None, None, True, False),
        ("http://127.0.0.1:8765", True, None, True, True),  # a tunnel to a remote server
        ("http://127.0.0.1:8765", None, "1", True, True),
        ("https://acme-oms.akinon.net", None, "off", False, False),
        ("https://acme-oms.akinon.net", True, "0", False, True),  # the argument wins
    ],
)
def test_gzip_is_asked_for_except_for_worker_pages_from_a_loopback_host(
    url: str,
    compress: bool | None,
    environment: str | None,
    plain_decoder: bool,
    gzip: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if environment is not None:
        monkeypatch.setenv("OMSFRAME_COMPRESS", environment)
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        return httpx.Response(200, json={"id": 1})

    class Decoder:
        plain = plain_decoder

        def __call__(self, content: bytes, *, gzip: bool = False) -> Any:
            return orjson.loads(gzip_module.decompress(content) if gzip else content)

    transport = httpx.MockTransport(answer)
    with Client(url, token="t", compress=compress, transport=transport) as client:
        result = client._session.request("order", "GET", "/api/v1/oms/orders/1/", decode=Decoder())
    assert result == {"id": 1}
    assert ("gzip" in {part.strip() for part in seen[0].split(",")}) is gzip
    if not gzip:
        assert seen[0] == "identity"


def test_a_compress_switch_that_is_not_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMSFRAME_COMPRESS", "maybe")
    with pytest.raises(ConfigError, match=r"OMSFRAME_COMPRESS='maybe' is not a switch: use 1 or 0"):
        Client("https://acme-oms.akinon.net", token="t")


def test_more_attempts_may_be_allowed_from_the_environment() -> None:
    from omsframe.config import Settings

    env = {"OMSFRAME_URL": "https://acme-oms.akinon.net", "OMSFRAME_TOKEN": "k"}
    assert Settings.resolve(environ=env).retry.max_attempts == 6
    more = Settings.resolve(environ={**env, "OMSFRAME_MAX_ATTEMPTS": "12"})
    assert more.retry.max_attempts == 12
    with pytest.raises(ConfigError, match="OMSFRAME_MAX_ATTEMPTS='x' is not a valid int"):
        Settings.resolve(environ={**env, "OMSFRAME_MAX_ATTEMPTS": "x"})
    with pytest.raises(ConfigError, match="max_attempts must be at least 1"):
        Settings.resolve(environ={**env, "OMSFRAME_MAX_ATTEMPTS": "0"})
