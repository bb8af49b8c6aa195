"""The error tree, message format, URL sanitizing and body excerpts."""

from __future__ import annotations

import pytest

from omsframe.errors import (
    ApiError,
    AuthError,
    CacheError,
    ConfigError,
    NotFoundError,
    OmsframeError,
    RateLimitError,
    ResponseError,
    ServerError,
    body_excerpt,
    redact,
    sanitize_url,
)


@pytest.mark.parametrize(
    ("kind", "parent"),
    [
        (ApiError, OmsframeError),
        (AuthError, ApiError),
        (NotFoundError, ApiError),
        (RateLimitError, ApiError),
        (ServerError, ApiError),
        (ResponseError, OmsframeError),
        (CacheError, OmsframeError),
        (ConfigError, OmsframeError),
    ],
)
def test_the_tree_of_design_md(kind: type[Exception], parent: type[Exception]) -> None:
    assert issubclass(kind, parent)


def test_response_error_is_not_an_api_error() -> None:
    assert not issubclass(ResponseError, ApiError)


def test_docstring_draws_the_tree() -> None:
    import omsframe.errors

    doc = omsframe.errors.__doc__ or ""
    for name in ("OmsframeError", "ApiError", "AuthError", "ResponseError", "ConfigError"):
        assert name in doc


def test_message_is_one_line_with_endpoint_url_status_detail_and_advice() -> None:
    error = NotFoundError(
        endpoint="order",
        url="https://u:secretpw@oms.example/api/v1/oms/orders/9/?token=abc",
        status=404,
        detail='"Not\nfound."',
    )
    text = str(error)
    assert "\n" not in text
    assert text.startswith("order: HTTP 404 from https://oms.example/api/v1/oms/orders/9/")
    assert "token=***" in text
    assert "secretpw" not in text and "abc" not in text
    assert '"Not found."' in text
    assert "check the id" in text
    assert (error.endpoint, error.status) == ("order", 404)
    assert error.url == "https://oms.example/api/v1/oms/orders/9/?token=***"


def test_auth_error_names_every_way_to_give_credentials() -> None:
    text = str(AuthError(endpoint="orders", url="https://oms.example/", status=401))
    for way in ("token=", "OMSFRAME_TOKEN", "username=", "password=", "OMSFRAME_USERNAME"):
        assert way in text
    assert "OMSFRAME_PASSWORD" in text


def test_no_response_reads_as_such() -> None:
    text = str(ServerError(endpoint="orders", url="https://oms.example/", detail="ReadTimeout"))
    assert "no response" in text and "ReadTimeout" in text


def test_rate_limit_error_carries_retry_after() -> None:
    error = RateLimitError(endpoint="orders", url="https://oms.example/", retry_after=12.0)
    assert error.retry_after == 12.0 and error.status == 429


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://oms.example/a/?page=2", "https://oms.example/a/?page=2"),
        ("https://me:pw@oms.example/a/", "https://oms.example/a/"),
        (
            "https://oms.example/?key=k&password=p&Token=t&x=1",
            "https://oms.example/?key=***&password=***&Token=***&x=1",
        ),
        ("http://127.0.0.1:8000/x/#frag", "http://127.0.0.1:8000/x/"),
    ],
)
def test_sanitize_url(url: str, expected: str) -> None:
    assert sanitize_url(url) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"detail": "Invalid token."}', "application/json", '"Invalid token."'),
        (b'{"non_field_errors": ["Unable to log in."], "code": "x"}', "", '"Unable to log in."'),
        (
            b'{"created_date__gte": ["Enter a valid date/time."]}',
            "",
            'created_date__gte: "Enter a valid date/time."',
        ),
        (
            b"<html><head><style>p{}</style></head><body><h1>502 Bad Gateway</h1>"
            b"<p>nginx &amp; co</p></body></html>",
            "text/html",
            "502 Bad Gateway nginx & co",
        ),
        (b"", "", ""),
        (b"plain failure", "text/plain", "plain failure"),
    ],
)
def test_body_excerpt(body: bytes, content_type: str, expected: str) -> None:
    assert body_excerpt(body, content_type) == expected


def test_body_excerpt_is_short() -> None:
    excerpt = body_excerpt(b"x" * 10_000, "text/plain", limit=50)
    assert len(excerpt) == 50 and excerpt.endswith("…")


def test_redact() -> None:
    assert redact("a s3cret b s3cret", ["s3cret", None, ""]) == "a *** b ***"
