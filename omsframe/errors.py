"""Every error omsframe raises, in one module.

The tree::

    OmsframeError                 anything omsframe raises on purpose
    ├── ApiError                  the OMS answered with an error (400, other 4xx) or not at all
    │   ├── AuthError             401 (no / wrong / expired credentials), 403 (no permission)
    │   ├── NotFoundError         404 (wrong path or id)
    │   ├── RateLimitError        429 that outlasted the retries (or asked for too long a wait)
    │   └── ServerError           5xx, timeouts, dropped connections that outlasted the retries
    ├── ResponseError             a 2xx body that is not valid JSON or not the expected shape
    ├── CacheError                the local parquet cache is missing, locked or inconsistent
    └── ConfigError               a setting is missing or refused (e.g. http:// to a remote host)

Errors that come from a request carry ``endpoint`` (the client method's name, e.g. ``"orders"``),
``url`` (sanitized: no user info, no ``key``/``token``/``password`` query values), ``status``
(``None`` when no response arrived) and ``detail`` (a short excerpt of the body). Their message
is one line: what failed, where, the status, what the server said, and what to do. Secrets (the
token, the password) never appear in a message: :func:`redact` removes them as a last guard.

Example:
    >>> try:
    ...     raise NotFoundError(endpoint="order", url="https://x/api/v1/oms/orders/9/", status=404)
    ... except ApiError as error:
    ...     print(error.status, error.endpoint)
    404 order
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

__all__ = [
    "ApiError",
    "AuthError",
    "CacheError",
    "ConfigError",
    "NotFoundError",
    "OmsframeError",
    "RateLimitError",
    "ResponseError",
    "ServerError",
    "body_excerpt",
    "redact",
    "sanitize_url",
]

# Query parameters whose values are secrets wherever they appear.
SECRET_PARAMS = frozenset({"key", "token", "password", "auth_token", "api_key", "secret"})
EXCERPT_LENGTH = 160

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


class OmsframeError(Exception):
    """Base class of every error omsframe raises on purpose.

    Example:
        >>> import omsframe as of
        >>> try:
        ...     of.Client("ftp://acme-oms.akinon.net", token="t")
        ... except of.OmsframeError as error:  # one except for every error of omsframe
        ...     print(type(error).__name__, "-", error)
        ConfigError - the OMS URL must be https://<host>, not a ftp URL
    """


class ConfigError(OmsframeError):
    """A setting is missing, malformed or refused."""


class CacheError(OmsframeError):
    """The local cache cannot be read or written as expected."""


class _RequestError(OmsframeError):
    """Shared shape of errors raised for one request (not public: use the subclasses)."""

    hint = ""

    def __init__(
        self,
        message: str | None = None,
        *,
        endpoint: str,
        url: str,
        status: int | None = None,
        detail: str = "",
        hint: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.url = sanitize_url(url)
        self.status = status
        self.detail = detail
        if message is None:
            message = _compose(
                endpoint, self.url, status, detail, self.hint if hint is None else hint
            )
        super().__init__(_one_line(message))


class ApiError(_RequestError):
    """The OMS answered with an error status, or did not answer at all."""

    hint = "check the filter values and the endpoint path"


class AuthError(ApiError):
    """401 (missing, wrong or expired credentials) or 403 (the user may not do this)."""

    hint = (
        "give credentials as token= or OMSFRAME_TOKEN, or as username= and password= "
        "or OMSFRAME_USERNAME and OMSFRAME_PASSWORD"
    )


class NotFoundError(ApiError):
    """404: the path or the id does not exist on this server."""

    hint = "check the id, the base URL and the endpoint path (Client(paths=...))"


class RateLimitError(ApiError):
    """429 that outlasted the retries, or a Retry-After longer than the client will wait."""

    hint = "the server asks to slow down: lower concurrency= or try again later"

    def __init__(
        self,
        message: str | None = None,
        *,
        endpoint: str,
        url: str,
        status: int | None = 429,
        detail: str = "",
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message, endpoint=endpoint, url=url, status=status, detail=detail, hint=hint
        )


class ServerError(ApiError):
    """5xx, a timeout or a dropped connection that outlasted the retries."""

    hint = (
        "the server failed repeatedly: try again later, or allow more attempts "
        "(OMSFRAME_MAX_ATTEMPTS, default 6)"
    )


class ResponseError(_RequestError):
    """A successful status with a body that is not valid JSON or not the expected shape."""

    hint = (
        "the server sent something that is not the OMS API's JSON: check the base URL; if it "
        "is right, the server is failing: try again later"
    )


def _compose(endpoint: str, url: str, status: int | None, detail: str, hint: str) -> str:
    what = f"HTTP {status}" if status is not None else "no response"
    text = f"{endpoint}: {what} from {url}"
    if detail:
        text += f": {detail}"
    if hint:
        text += f" ({hint})"
    return text


def _one_line(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def sanitize_url(url: str) -> str:
    """Remove user info and secret query values from a URL, for messages and logs.

    Args:
        url: Any URL.

    Returns:
        The URL without ``user:password@`` and with the values of ``key``, ``token``,
        ``password`` (and similar) query parameters replaced by ``***``.

    Example:
        >>> sanitize_url("https://u:p@oms.example/api/?token=abc&page=2")
        'https://oms.example/api/?token=***&page=2'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = [
            (name, "***" if name.lower() in SECRET_PARAMS else value)
            for name, value in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="*:,")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def body_excerpt(content: bytes, content_type: str = "", limit: int = EXCERPT_LENGTH) -> str:
    """A short, one-line excerpt of an error body.

    JSON bodies give their ``detail`` (or ``non_field_errors``, or the field errors, as Django
    REST framework writes them); HTML pages give their text with tags stripped; anything else
    gives its start.

    Args:
        content: The raw body.
        content_type: The response's ``Content-Type`` header.
        limit: Maximum number of characters.

    Returns:
        The excerpt, possibly empty.

    Example:
        >>> body_excerpt(b'{"detail": "Invalid page."}')
        '"Invalid page."'
        >>> body_excerpt(b"<html><h1>502 Bad Gateway</h1></html>", "text/html")
        '502 Bad Gateway'
    """
    if not content:
        return ""
    text: str
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
        raw = content[: limit * 20].decode("utf-8", errors="replace")
        if "html" in content_type.lower() or raw.lstrip().startswith("<"):
            raw = html.unescape(_TAG.sub(" ", raw))
        text = raw
    else:
        text = _json_excerpt(data)
    text = _one_line(text)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _json_excerpt(data: object) -> str:
    if isinstance(data, dict):
        for key in ("detail", "non_field_errors"):
            if key in data:
                return _json_text(data[key])
        fields = [f"{key}: {_json_text(value)}" for key, value in data.items() if key != "code"]
        return "; ".join(fields)
    return _json_text(data)


def _json_text(value: object) -> str:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(f'"{item}"' for item in value)
    return orjson.dumps(value).decode()


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each (non-empty) secret in ``text`` by ``***``.

    Example:
        >>> redact("token abc123 rejected", ["abc123", None])
        'token *** rejected'
    """
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
