"""Connection, retry and paging settings.

Precedence, for every setting: an explicit argument wins over an ``OMSFRAME_*`` environment
variable, which wins over the default. The environment is read when a :class:`Settings` is
resolved (when a client is built), never at import.

===========================  ==============================  ====================
setting                      environment variable            default
===========================  ==============================  ====================
``url``                      ``OMSFRAME_URL``                (required)
``token``                    ``OMSFRAME_TOKEN``              none
``username``                 ``OMSFRAME_USERNAME``           none
``password``                 ``OMSFRAME_PASSWORD``           none
``concurrency``              ``OMSFRAME_CONCURRENCY``        8 requests in flight
``page_size``                ``OMSFRAME_PAGE_SIZE``          250 records a page
``timeout``                  ``OMSFRAME_TIMEOUT``            30 seconds
``compress``                 ``OMSFRAME_COMPRESS``           gzip (see below)
``max_passes``               (argument only)                 2 passes over a list
``allow_http``               (argument only)                 ``False``
``retry``                    ``OMSFRAME_MAX_ATTEMPTS``       :class:`RetryPolicy` (6
                                                             attempts a request)
``paths``                    (argument only)                 :class:`EndpointPaths`
===========================  ==============================  ====================

The token and the password are kept out of ``repr`` and are never logged.

Example:
    >>> s = Settings.resolve(url="https://acme-oms.akinon.net", token="t0k3n", environ={})
    >>> "t0k3n" in repr(s)
    False
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from omsframe.errors import ConfigError

__all__ = ["EndpointPaths", "RetryPolicy", "Settings"]

_Number = TypeVar("_Number", int, float)
_Value = TypeVar("_Value")

ENV_PREFIX = "OMSFRAME_"
DEFAULT_CONCURRENCY = 8  # from bench/client_paging.py: see BENCHMARKS.md, "Client"
#: pages of 250 orders against 100 (a DRF server sends fewer where it caps ``limit``, and then
#: that counts): a full sync of 100,000 simulator orders ~5 % less time and ~15 % less CPU in
#: the sync process, an incremental of 2,736 ~6 % (A/B pairs; BENCHMARKS.md "Sync"); 500 was
#: slower for the incremental (fewer, larger pages to share between its two flattening sides)
DEFAULT_PAGE_SIZE = 250
DEFAULT_TIMEOUT = 30.0
CREDENTIALS_HINT = (
    "give token= or OMSFRAME_TOKEN, or username= and password= "
    "or OMSFRAME_USERNAME and OMSFRAME_PASSWORD"
)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry a failed request.

    Retried: 429, 500, 502, 503, 504, timeouts, connection errors and truncated or invalid
    JSON bodies. Never retried: 400, 403, 404 (and other 4xx). The wait before attempt ``n+1``
    is ``min(backoff_max, backoff_initial * 2**(n-1))``, of which a random part (up to
    ``jitter``, a fraction) is taken off so that concurrent clients spread out. A 429's
    ``Retry-After`` is honoured exactly instead; one longer than ``max_retry_after`` seconds
    raises :class:`~omsframe.errors.RateLimitError` rather than blocking for that long.

    Example:
        >>> RetryPolicy(max_attempts=3, backoff_initial=0.1).max_attempts
        3
    """

    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.backoff_initial < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise ConfigError("backoff_initial, backoff_max and max_retry_after must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter is a fraction between 0 and 1, not {self.jitter}")


@dataclass(frozen=True)
class EndpointPaths:
    """The path of every endpoint, relative to the base URL; defaults follow ``oms-api.md``.

    Paths with ``{id}`` are formatted with the record's id. Override any path that differs on
    your server: ``EndpointPaths(orders_simple="/api/v1/oms/orders/simple/")``.

    Example:
        >>> paths = EndpointPaths(orders_simple="/api/v1/oms/orders/simple/")
        >>> paths.orders_simple, paths.order.format(id=7)
        ('/api/v1/oms/orders/simple/', '/api/v1/oms/orders/7/')
        >>> EndpointPaths(orders="api/v1/oms/orders/")
        Traceback (most recent call last):
        ...
        omsframe.errors.ConfigError: endpoint path orders='api/v1/oms/orders/' must start with '/'
    """

    login: str = "/api/v1/auth/login/"
    orders: str = "/api/v1/oms/orders/"
    orders_short: str = "/api/v1/oms/orders/short/"
    orders_simple: str = "/api/v1/oms/orders/list-simple/"
    order: str = "/api/v1/oms/orders/{id}/"
    order_short: str = "/api/v1/oms/orders/{id}/short/"
    webhook_events: str = "/api/v1/oms/orders/webhook-events/"
    webhook_events_short: str = "/api/v1/oms/orders/webhook-events/short/"
    webhook_event: str = "/api/v1/oms/orders/webhook-events/{id}/"
    delivery_types: str = "/api/v1/oms/orders/delivery-types/"
    payment_types: str = "/api/v1/oms/orders/payment-types/"
    pull_from_omnitron: str = "/api/v1/oms/orders/pull-from-omnitron/"

    def __post_init__(self) -> None:
        for name, path in asdict(self).items():
            if not path.startswith("/"):
                raise ConfigError(f"endpoint path {name}={path!r} must start with '/'")


@dataclass(frozen=True)
class Settings:
    """Everything a :class:`~omsframe.client.Client` needs to talk to one OMS.

    Build it with :meth:`resolve`, which applies the precedence argument > environment >
    default and validates the result.

    Attributes:
        url: Base URL of the OMS, e.g. ``https://acme-oms.akinon.net`` (no trailing path needed).
        token: API key sent as ``Authorization: Token <key>``; hidden from ``repr``.
        username: User to log in with when there is no token or it expired.
        password: Password for ``username``; hidden from ``repr``.
        allow_http: Allow plain ``http://`` to a host that is not loopback.
        concurrency: Maximum number of requests in flight.
        page_size: Records asked for per page (``limit``); the server may send fewer.
        timeout: Seconds to wait for connect, read and write.
        compress: Ask for gzip-compressed answers. ``None`` (the default): yes, except for
            the pages a sync hands to its worker processes when the host is loopback (a
            simulator, a server on this machine): there compressing and inflating them costs
            both sides CPU and saves no time. ``True``: always (for a tunnel such as
            ``ssh -L`` or ``kubectl port-forward`` to a remote server); ``False``: never.
        max_passes: Whole passes over a list at most, when records fall short of ``count``.
        retry: The retry policy.
        paths: The endpoint paths.

    Example:
        >>> env = {"OMSFRAME_URL": "https://acme-oms.akinon.net", "OMSFRAME_TOKEN": "s3cret",
        ...        "OMSFRAME_PAGE_SIZE": "50"}
        >>> settings = Settings.resolve(concurrency=4, environ=env)
        >>> settings.page_size, settings.concurrency, "s3cret" in repr(settings)
        (50, 4, False)
        >>> sorted(set(settings.to_dict()) & {"url", "token", "password"})
        ['url']
    """

    url: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    allow_http: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    page_size: int = DEFAULT_PAGE_SIZE
    timeout: float = DEFAULT_TIMEOUT
    compress: bool | None = None
    max_passes: int = 2
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    paths: EndpointPaths = field(default_factory=EndpointPaths)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _check_url(self.url, self.allow_http))
        if bool(self.username) != bool(self.password):
            given = "username" if self.username else "password"
            raise ConfigError(f"{given} given without the other: {CREDENTIALS_HINT}")
        if not self.token and not self.username:
            raise ConfigError(f"no credentials: {CREDENTIALS_HINT}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.page_size < 1:
            raise ConfigError(f"page_size must be at least 1, not {self.page_size}")
        if self.max_passes < 1:
            raise ConfigError(f"max_passes must be at least 1, not {self.max_passes}")
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, not {self.timeout}")

    @property
    def loopback(self) -> bool:
        """Whether the OMS is on this machine (its host is loopback).

        Example:
            >>> Settings(url="http://127.0.0.1:8000", token="k").loopback
            True
        """
        return is_loopback(urlsplit(self.url).hostname or "")

    @classmethod
    def resolve(
        cls,
        *,
        url: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        allow_http: bool = False,
        concurrency: int | None = None,
        page_size: int | None = None,
        timeout: float | None = None,
        compress: bool | None = None,
        max_passes: int = 2,
        retry: RetryPolicy | None = None,
        paths: EndpointPaths | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Combine explicit arguments, ``OMSFRAME_*`` environment variables and defaults.

        Args:
            url: Base URL; falls back to ``OMSFRAME_URL``.
            token: API key; falls back to ``OMSFRAME_TOKEN``.
            username: Login user; falls back to ``OMSFRAME_USERNAME``.
            password: Login password; falls back to ``OMSFRAME_PASSWORD``.
            allow_http: Allow plain ``http://`` to a non-loopback host.
            concurrency: Requests in flight; falls back to ``OMSFRAME_CONCURRENCY``.
            page_size: Records a page; falls back to ``OMSFRAME_PAGE_SIZE``.
            timeout: Seconds; falls back to ``OMSFRAME_TIMEOUT``.
            compress: Ask for gzip; falls back to ``OMSFRAME_COMPRESS`` (``1`` or ``0``),
                then to ``None`` (see the attribute).
            max_passes: Whole passes over a list at most.
            retry: Retry policy (default :class:`RetryPolicy`).
            paths: Endpoint paths (default :class:`EndpointPaths`).
            environ: The environment to read (default ``os.environ``).

        Returns:
            Validated settings.

        Raises:
            ConfigError: A value is missing, malformed or refused (the message says which).

        Example:
            >>> env = {"OMSFRAME_URL": "https://acme-oms.akinon.net", "OMSFRAME_TOKEN": "k"}
            >>> Settings.resolve(concurrency=8, environ=env).concurrency
            8
        """
        env = os.environ if environ is None else environ

        def text(value: str | None, name: str) -> str | None:
            return value if value is not None else (env.get(ENV_PREFIX + name) or None)

        resolved_url = text(url, "URL")
        if not resolved_url:
            raise ConfigError("no OMS URL: pass url= or set OMSFRAME_URL")
        return cls(
            url=resolved_url,
            token=text(token, "TOKEN"),
            username=text(username, "USERNAME"),
            password=text(password, "PASSWORD"),
            allow_http=allow_http,
            concurrency=_number(concurrency, env, "CONCURRENCY", int, DEFAULT_CONCURRENCY),
            page_size=_number(page_size, env, "PAGE_SIZE", int, DEFAULT_PAGE_SIZE),
            timeout=_number(timeout, env, "TIMEOUT", float, DEFAULT_TIMEOUT),
            compress=_switch(compress, env, "COMPRESS"),
            max_passes=max_passes,
            retry=retry or RetryPolicy(max_attempts=_number(None, env, "MAX_ATTEMPTS", int, 6)),
            paths=paths or EndpointPaths(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data, without the token and the password."""
        data = asdict(self)
        data.pop("token")
        data.pop("password")
        return data


_SWITCH = {word: True for word in ("1", "true", "yes", "on")} | {
    word: False for word in ("0", "false", "no", "off")
}


def _switch(value: bool | None, env: Mapping[str, str], name: str) -> bool | None:
    def parse(raw: str) -> bool:
        return _SWITCH[raw.strip().lower()]  # (KeyError: not a switch)

    return _setting(value, env, name, parse, None, "a switch: use 1 or 0")


def _number(
    value: _Number | None, env: Mapping[str, str], name: str, kind: type[_Number], default: _Number
) -> _Number:
    return _setting(value, env, name, kind, default, f"a valid {kind.__name__}")


def _setting(
    value: _Value | None,
    env: Mapping[str, str],
    name: str,
    parse: Callable[[str], _Value],
    default: _Value,
    what: str,
) -> _Value:
    """``value``, else ``OMSFRAME_<name>`` parsed, else ``default``; a bad one: ConfigError."""
    if value is not None:
        return value
    raw = env.get(ENV_PREFIX + name)
    if not raw:
        return default
    try:
        return parse(raw)
    except (ValueError, KeyError):
        raise ConfigError(f"{ENV_PREFIX}{name}={raw!r} is not {what}") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost``, in 127.0.0.0/8 or ``::1``.

    Example:
        >>> is_loopback("127.0.0.2"), is_loopback("[::1]"), is_loopback("oms.example")
        (True, True, False)
    """
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str, allow_http: bool) -> str:
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:
        raise ConfigError("the OMS URL cannot be parsed: pass https://<host>") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"the OMS URL must be https://<host>, not a {parts.scheme or 'bare'} URL")
    if "@" in parts.netloc:
        raise ConfigError(f"the OMS URL contains credentials: remove them and {CREDENTIALS_HINT}")
    if parts.query or parts.fragment:
        raise ConfigError("the OMS URL must not carry a query or fragment: pass the base URL only")
    if parts.scheme == "http" and not allow_http and not is_loopback(host):
        raise ConfigError(
            f"refusing plain http:// to {host}: the token would travel in clear text; "
            "use https:// or pass allow_http=True"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
