"""The standard order analyses: pure functions over the loaded tables.

Written once against narwhals, so they take pandas (the default) or polars frames and hand
back the same kind; exact with money, never mixing currencies, inputs never changed.

- :func:`ledger`: one row per unit sold and per unit cancelled or refunded, event-dated;
- :func:`revenue`: gross, discounts, returns, net, taxes, orders, AOV by period and dimensions;
- :func:`discounts`, :func:`discount_depth`, :func:`campaign_days`,
  :func:`top_discounted_products`: how much is sold on discount, how deep, and when;
- :func:`explain`: what a measure means, its formula.

Example:
    >>> explain("units")
    units = 1 on a sale row; -1 on a return row.
    <BLANKLINE>
    Net units (an OMS item is one unit): units sold less units cancelled or refunded.
    Integer.
"""

from omsframe.analysis._frames import DEFAULT_TZ, PERIODS
from omsframe.analysis.discounts import DEPTH_EDGES, discount_depth, discounts
from omsframe.analysis.errors import AnalysisError, CurrencyError
from omsframe.analysis.ledger import DIMENSIONS, ledger
from omsframe.analysis.measures import MEASURES, RATIOS, explain
from omsframe.analysis.promotions import campaign_days, top_discounted_products
from omsframe.analysis.revenue import DEFAULT_MEASURES, revenue

__all__ = [
    "DEFAULT_MEASURES",
    "DEFAULT_TZ",
    "DEPTH_EDGES",
    "DIMENSIONS",
    "MEASURES",
    "PERIODS",
    "RATIOS",
    "AnalysisError",
    "CurrencyError",
    "campaign_days",
    "discount_depth",
    "discounts",
    "explain",
    "ledger",
    "revenue",
    "top_discounted_products",
]
