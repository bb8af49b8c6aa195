"""The self-contained HTML report: one file, plotly.js embedded, opens offline.

Sections: the cache (source, freshness, PII policy), revenue, discounts, and the order-state,
customer and product analyses. Each chart is a plotly figure placed with ``Plotly.newPlot``;
a few lines of script record, on the ``<body>`` element, how many charts rendered and how many
errors the page met (``data-charts-rendered``, ``data-errors``), so a headless browser can
check the report the way a reader would see it.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from omsframe.atomic import write_atomic
from omsframe.errors import CacheError
from omsframe.load import Tables, _human, cache_info, load

_GUARD = """
<script>
(function () {
  var errors = 0, rendered = 0;
  function mark() {
    document.body.setAttribute("data-errors", String(errors));
    document.body.setAttribute("data-charts-rendered", String(rendered));
  }
  window.addEventListener("error", function () { errors += 1; mark(); });
  var original = console.error;
  console.error = function () { errors += 1; mark(); return original.apply(console, arguments); };
  window.omsframeRendered = function () { rendered += 1; mark(); };
  window.omsframeFailed = function (error) { errors += 1; mark(); original.call(console, error); };
  document.addEventListener("DOMContentLoaded", mark);
})();
</script>
"""
_STYLE = """
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
table.meta td, table.meta th { text-align: left; padding: 0.15rem 1rem 0.15rem 0; }
.note { color: #666; font-size: 0.9rem; } .omsframe-chart { min-height: 420px; }
</style>
"""


@dataclass
class Section:
    """A titled part of the report: some HTML and the figures under it."""

    title: str
    intro: str
    figures: list[Any]


def _figure_html(figure: Any, index: int) -> str:
    spec = orjson.dumps(figure.to_plotly_json(), option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    div = f"omsframe-chart-{index}"
    return (
        f'<div id="{div}" class="omsframe-chart"></div>\n'
        f"<script>(function () {{ var f = {spec.decode()};"
        f' Plotly.newPlot("{div}", f.data, f.layout, {{responsive: true}})'
        f".then(window.omsframeRendered, window.omsframeFailed); }})();</script>"
    )


def _sections(tables: Tables, tz: str) -> list[Section]:
    from omsframe import charts
    from omsframe.analysis import (
        abc_classes,
        campaign_days,
        cohorts,
        discount_depth,
        funnel,
        lead_times,
        ledger,
        new_vs_returning,
        revenue,
        rfm,
        state_counts,
        top_products,
        transitions,
        webhook_health,
    )
    from omsframe.analysis import top_discounted_products as top_discounted

    book = ledger(tables, tz=tz)
    weekly = revenue(book, by="week", tz=tz)
    by_channel = revenue(book, by="month", dims=["channel"], tz=tz)
    sections = [
        Section(
            "Revenue",
            "Net sales per week, net sales per month by channel, and the average order value "
            "per week: tax included, a panel per currency (currencies are never added "
            "together). Sales count on the day placed; cancellations and refunds on the day "
            "they happened. A week without sales shows as 0 net sales and as a gap in the "
            "average order value; the week or month the data ends in is drawn dotted, with a "
            "hollow marker: it is not over.",
            [
                charts.revenue_chart(weekly, by="week", tz=tz),
                charts.revenue_chart(by_channel, color="channel", by="month", tz=tz),
                charts.aov_chart(weekly, by="week", tz=tz),
            ],
        ),
        Section(
            "Discounts",
            "How deep the basket discounts and markdowns go each month (the share of items "
            "sold in each depth bucket), the discount rate against the units sold each day "
            "with the campaign days marked, and the products most sold on discount (a panel "
            "per currency).",
            [
                charts.discount_depth_chart(
                    discount_depth(book, by="month", tz=tz), by="month", tz=tz
                ),
                charts.campaign_days_chart(campaign_days(book, tz=tz)),
                charts.top_discounted_products_chart(top_discounted(book)),
            ],
        ),
        Section(
            "Order states",
            "Where the orders are now (their current state), how far all the orders placed "
            "got (every month together; the cancelled and refunded under the title), how they "
            "move between states, how many hours they take from placed to shipped by delivery "
            "type, and the webhook deliveries per week. State changes come from the webhook "
            "events, else from the state changes the syncs observed.",
            [
                charts.state_counts_chart(state_counts(tables, of="orders")),
                charts.funnel_chart(funnel(tables, by=None), title="Order funnel: all orders"),
                charts.transition_heatmap(transitions(tables)),
                charts.lead_time_chart(lead_times(tables), by="delivery_type"),
                charts.webhook_health_chart(
                    webhook_health(tables, by="week", tz=tz), by="week", tz=tz
                ),
            ],
        ),
        Section(
            "Customers",
            "New and returning customers per month and how each month's new customers come "
            "back (customers of every currency counted together), and the customers in each "
            "RFM segment (a bar per currency).",
            [
                charts.new_vs_returning_chart(
                    new_vs_returning(book, by="month", tz=tz), by="month", tz=tz
                ),
                charts.cohort_heatmap(cohorts(book, tz=tz), by="month"),
                charts.rfm_chart(rfm(book, tz=tz)),
            ],
        ),
        Section(
            "Products",
            "The products that sell most by net sales (a panel per currency), and the "
            "cumulative share of net sales by product rank with the ABC classes (a line per "
            "currency).",
            [
                charts.top_products_chart(top_products(book, n=10)),
                charts.abc_chart(abc_classes(book)),
            ],
        ),
    ]
    return sections


def render(tables: Tables, *, meta: dict[str, str], tz: str, title: str) -> str:
    """The report's HTML for loaded tables."""
    from plotly.offline import get_plotlyjs

    body: list[str] = []
    index = 0
    for section in _sections(tables, tz):
        body.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.intro)}</p>")
        for figure in section.figures:
            body.append(_figure_html(figure, index))
            index += 1
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in meta.items()
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>{_STYLE}{_GUARD}"
        f"<script>{get_plotlyjs()}</script></head>"
        f"<body data-charts='{index}'><h1>{html.escape(title)}</h1>"
        f"<table class='meta'>{rows}</table>{''.join(body)}"
        "<p class='note'>Made by omsframe. Money is exact; amounts in different currencies are "
        "shown apart.</p></body></html>"
    )


def write_report(
    path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    tz: str = "Europe/Istanbul",
    title: str = "omsframe report",
) -> Path:
    """Write the HTML report of a cache: one self-contained file that opens offline.

    Args:
        path: The cache folder.
        out: The file to write (default ``<cache>/report.html``).
        tz: Business time zone of the periods.
        title: The report's title.

    Returns:
        The path of the written file.

    Raises:
        CacheError: There is no cache at ``path``, or it holds no orders yet.

    Example:
        >>> import tempfile
        >>> from omsframe.simulator.server import serve
        >>> from omsframe.sync import sync
        >>> cache = tempfile.mkdtemp()
        >>> with serve() as oms:
        ...     _ = sync(oms.url, token=oms.token, cache=cache, progress=False)
        >>> page = write_report(cache).read_text()
        >>> page.count('class="omsframe-chart"') >= 6
        True
    """
    root = Path(path)
    tables = load(root)
    if len(tables.orders) == 0:
        raise CacheError(f"cache {root} holds no orders yet: run `omsframe sync` first")
    info = cache_info(root)
    age = f"{info.last_sync} ({_human(info.age)} ago)" if info.age else str(info.last_sync)
    meta = {
        "source": info.source or "-",
        "last sync": age,
        "orders": f"{info.rows.get('orders', 0):,}"
        + (f" placed {info.months[0]} .. {info.months[-1]}" if info.months else ""),
        **(
            {
                "window": f"only the orders placed since {info.since} (cancellations and "
                "refunds of earlier orders are not in it)"
            }
            if info.since
            else {}
        ),
        "PII policy": info.pii_policy or "-",
        "time zone": tz,
        "made": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    target = Path(out) if out is not None else root / "report.html"
    with warnings.catch_warnings():  # (a cache's window: said above, in the report itself)
        if info.since:
            from omsframe.analysis import WindowWarning

            warnings.simplefilter("ignore", WindowWarning)
        page = render(tables, meta=meta, tz=tz, title=title)
    write_atomic(target, page.encode("utf-8"))
    return target
