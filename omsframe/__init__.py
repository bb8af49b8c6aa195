"""omsframe: Akinon OMS orders as exact, tidy pandas tables and the standard order analyses.

Example:
    >>> import tempfile
    >>> import omsframe as of
    >>> from omsframe.simulator.server import serve
    >>> cache = tempfile.mkdtemp()
    >>> with serve() as oms:  # the built-in simulator, on loopback
    ...     report = of.sync(oms.url, token=oms.token, cache=cache, progress=False)
    >>> tables = of.load(cache)
    >>> len(tables.orders) == report.orders_new
    True

The public API (nothing runs at import):

- connect and read: :class:`Client` (the 11 endpoints), :func:`sync`, :func:`load`,
  :func:`cache_info`, :func:`export`, :func:`rebuild`, :func:`write_report` (the HTML report);
- tables: :func:`flatten_orders`, :func:`flatten_events`, :func:`iter_flatten_orders`,
  :func:`expand_attributes`, :class:`Privacy`, :data:`TABLES`;
- the built-in OMS simulator: :func:`simulate` (a shop served on loopback);
- analyses: :func:`ledger`, :func:`revenue`, :func:`discounts`, :func:`discount_depth`,
  :func:`campaign_days`, :func:`top_discounted_products`, :func:`explain`; charts in
  ``omsframe.charts`` (loaded on first use: plotly is not imported with omsframe);
- errors: :class:`OmsframeError` and its subclasses.
"""

from typing import Any

from omsframe._version import __version__
from omsframe.analysis import (
    AnalysisError,
    CurrencyError,
    campaign_days,
    discount_depth,
    discounts,
    explain,
    ledger,
    revenue,
    top_discounted_products,
)
from omsframe.attributes import expand_attributes
from omsframe.client import Client
from omsframe.config import EndpointPaths, RetryPolicy, Settings
from omsframe.drift import DriftReport
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
)
from omsframe.export import export, rebuild
from omsframe.flatten import (
    Flattened,
    QuarantinedRecord,
    flatten_events,
    flatten_orders,
    iter_flatten_orders,
)
from omsframe.load import CacheInfo, Tables, cache_info, load
from omsframe.paging import Listing, PagingStats, ProbeResult
from omsframe.privacy import Privacy
from omsframe.report import write_report
from omsframe.schema import TABLES
from omsframe.simulator.server import simulate
from omsframe.sync import SyncReport, sync

__all__ = [
    "TABLES",
    "AnalysisError",
    "ApiError",
    "AuthError",
    "CacheError",
    "CacheInfo",
    "Client",
    "ConfigError",
    "CurrencyError",
    "DriftReport",
    "EndpointPaths",
    "Flattened",
    "Listing",
    "NotFoundError",
    "OmsframeError",
    "PagingStats",
    "Privacy",
    "ProbeResult",
    "QuarantinedRecord",
    "RateLimitError",
    "ResponseError",
    "RetryPolicy",
    "ServerError",
    "Settings",
    "SyncReport",
    "Tables",
    "__version__",
    "cache_info",
    "campaign_days",
    "charts",
    "discount_depth",
    "discounts",
    "expand_attributes",
    "explain",
    "export",
    "flatten_events",
    "flatten_orders",
    "iter_flatten_orders",
    "ledger",
    "load",
    "rebuild",
    "revenue",
    "simulate",
    "sync",
    "top_discounted_products",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Load ``omsframe.charts`` on first use, so importing omsframe does not import plotly."""
    if name == "charts":
        import importlib

        return importlib.import_module("omsframe.charts")
    raise AttributeError(f"module 'omsframe' has no attribute {name!r}")
