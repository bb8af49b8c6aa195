"""The standard order analyses: pure functions over the loaded tables.

Written once against narwhals, so they take pandas (the default) or polars frames and hand
back the same kind; exact with money, never mixing currencies, inputs never changed.

- :func:`ledger`: one row per unit sold and per unit cancelled or refunded, event-dated;
- :func:`revenue`: gross, discounts, returns, net, taxes, orders, AOV by period and dimensions;
- :func:`discounts`, :func:`discount_depth`, :func:`campaign_days`,
  :func:`top_discounted_products`: how much is sold on discount, how deep, and when;
- :func:`state_counts`, :func:`funnel`: where the orders are, and how far they got;
- :func:`state_changes`, :func:`transitions`, :func:`time_in_state`: how orders move between
  states (webhook events, else the cache's state history);
- :func:`lead_times`, :func:`lead_time_summary`: placed→shipped→delivered, per order and
  in percentiles;
- :func:`return_rates`: cancellation and refund rates by any dimension, hour or weekday;
- :func:`webhook_health`: delivered and failed webhook events, retries;
- :func:`new_vs_returning`, :func:`cohorts`, :func:`transactions`, :func:`rfm`: customers;
- :func:`product_sales`, :func:`top_products`, :func:`abc_classes`: products;
- :func:`explain`: what a measure means, its formula.

Example:
    >>> explain("units")
    units = 1 on a sale row; -1 on a return row.
    <BLANKLINE>
    Net units (an OMS item is one unit): units sold less units cancelled or refunded.
    Integer.
"""

from omsframe.analysis._frames import DEFAULT_TZ, PERIODS
from omsframe.analysis._orders import ORDER_DIMENSIONS
from omsframe.analysis.customers import cohorts, new_vs_returning, transactions
from omsframe.analysis.discounts import DEPTH_EDGES, discount_depth, discounts
from omsframe.analysis.errors import AnalysisError, CurrencyError
from omsframe.analysis.lead_times import (
    DELIVERED_STATES,
    SHIPPED_STATES,
    lead_time_summary,
    lead_times,
)
from omsframe.analysis.ledger import DIMENSIONS, WindowWarning, ledger
from omsframe.analysis.lifecycle import state_changes, time_in_state, transitions
from omsframe.analysis.measures import MEASURES, RATIOS, explain
from omsframe.analysis.products import abc_classes, product_sales, top_products
from omsframe.analysis.promotions import campaign_days, top_discounted_products
from omsframe.analysis.returns import return_rates
from omsframe.analysis.revenue import DEFAULT_MEASURES, revenue
from omsframe.analysis.rfm import RFM_SEGMENTS, rfm
from omsframe.analysis.states import FUNNEL_STAGES, funnel, state_counts
from omsframe.analysis.webhooks import webhook_health

__all__ = [
    "DEFAULT_MEASURES",
    "DEFAULT_TZ",
    "DELIVERED_STATES",
    "DEPTH_EDGES",
    "DIMENSIONS",
    "FUNNEL_STAGES",
    "MEASURES",
    "ORDER_DIMENSIONS",
    "PERIODS",
    "RATIOS",
    "RFM_SEGMENTS",
    "SHIPPED_STATES",
    "AnalysisError",
    "CurrencyError",
    "WindowWarning",
    "abc_classes",
    "campaign_days",
    "cohorts",
    "discount_depth",
    "discounts",
    "explain",
    "funnel",
    "lead_time_summary",
    "lead_times",
    "ledger",
    "new_vs_returning",
    "product_sales",
    "return_rates",
    "revenue",
    "rfm",
    "state_changes",
    "state_counts",
    "time_in_state",
    "top_discounted_products",
    "top_products",
    "transactions",
    "transitions",
    "webhook_health",
]
