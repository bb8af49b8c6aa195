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
  :func:`iter_flatten_json` (JSON text on every core), :func:`expand_attributes`,
  :class:`Privacy`, :data:`TABLES`;
- the built-in OMS simulator: :func:`simulate` (a shop served on loopback);
- analyses: :func:`ledger`, :func:`revenue`, :func:`discounts`, :func:`discount_depth`,
  :func:`campaign_days`, :func:`top_discounted_products`, :func:`explain`;
  :func:`state_counts`, :func:`funnel`, :func:`state_changes`, :func:`transitions`,
  :func:`time_in_state`, :func:`lead_times`, :func:`lead_time_summary`, :func:`return_rates`,
  :func:`webhook_health`, :func:`new_vs_returning`, :func:`cohorts`, :func:`transactions`,
  :func:`rfm`, :func:`product_sales`, :func:`top_products`, :func:`abc_classes`; charts in
  ``omsframe.charts`` (loaded on first use: plotly is not imported with omsframe);
- errors: :class:`OmsframeError` and its subclasses.
"""

from typing import Any

from omsframe._version import __version__
from omsframe.analysis import (
    FUNNEL_STAGES,
    ORDER_DIMENSIONS,
    RFM_SEGMENTS,
    AnalysisError,
    CurrencyError,
    WindowWarning,
    abc_classes,
    campaign_days,
    cohorts,
    discount_depth,
    discounts,
    explain,
    funnel,
    lead_time_summary,
    lead_times,
    ledger,
    new_vs_returning,
    product_sales,
    return_rates,
    revenue,
    rfm,
    state_changes,
    state_counts,
    time_in_state,
    top_discounted_products,
    top_products,
    transactions,
    transitions,
    webhook_health,
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
from omsframe.parallel import iter_flatten_json
from omsframe.privacy import Privacy
from omsframe.report import write_report
from omsframe.schema import TABLES
from omsframe.simulator.server import simulate
from omsframe.sync import sync
from omsframe.sync_report import SyncReport

__all__ = [
    "FUNNEL_STAGES",
    "ORDER_DIMENSIONS",
    "RFM_SEGMENTS",
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
    "WindowWarning",
    "__version__",
    "abc_classes",
    "cache_info",
    "campaign_days",
    "charts",
    "cohorts",
    "discount_depth",
    "discounts",
    "expand_attributes",
    "explain",
    "export",
    "flatten_events",
    "flatten_orders",
    "funnel",
    "iter_flatten_json",
    "iter_flatten_orders",
    "lead_time_summary",
    "lead_times",
    "ledger",
    "load",
    "new_vs_returning",
    "product_sales",
    "rebuild",
    "return_rates",
    "revenue",
    "rfm",
    "simulate",
    "state_changes",
    "state_counts",
    "sync",
    "time_in_state",
    "top_discounted_products",
    "top_products",
    "transactions",
    "transitions",
    "webhook_health",
    "write_report",
]


def __getattr__(name: str) -> Any:
    """Load ``omsframe.charts`` on first use, so importing omsframe does not import plotly."""
    if name == "charts":
        import importlib

        return importlib.import_module("omsframe.charts")
    raise AttributeError(f"module 'omsframe' has no attribute {name!r}")
