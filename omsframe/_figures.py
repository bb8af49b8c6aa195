"""What every chart shares: labels, the template, a panel per currency, floats for drawing.

Charts draw money as floats (display only: the frames keep exact decimals) and never put two
currencies on one money axis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import narwhals as nw
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from omsframe.analysis._frames import Frame, as_frame
from omsframe.analysis.errors import AnalysisError

TEMPLATE = "plotly_white"
COLOURS: list[str] = list(qualitative.Plotly)
"""The template's colours, in its order (for traces that must share one colour)."""
PANEL_HEIGHT = 240
"""Pixels of one panel's plot area on a time axis."""
BAR_HEIGHT = 24
"""Pixels per horizontal bar: enough for its label at plotly's font size, so none is skipped."""
MIN_BAR_PANEL = 160
SHARED_GAP = 60
"""Pixels between panels sharing an x axis: the next panel's heading."""
OWN_AXIS_GAP = 110
"""Pixels between panels with x axes of their own: tick labels, axis title, next heading."""
MARGIN = {"t": 100, "b": 80}


@dataclass(frozen=True)
class Takes:
    """What a chart draws: the frame of one analysis; its errors say which call makes that.

    An analysis' own errors speak of *its* input (the loaded tables or a ledger); a chart's
    input is that analysis' output, so a chart checks its frame here and names the call.

    Attributes:
        chart: The chart function's name (``"revenue_chart"``).
        analysis: The analysis whose frame it draws (``"revenue"``).
        call: A call that makes such a frame (``"of.revenue(tables, by='week')"``).

    Example:
        >>> takes = Takes("rfm_chart", "rfm", "of.rfm(tables)")
        >>> try:
        ...     takes.frame({"orders": None})  # the loaded tables, not the frame of rfm
        ... except AnalysisError as error:
        ...     print(error)
        rfm_chart takes the frame of omsframe.rfm(...), got dict; e.g. rfm_chart(of.rfm(tables))
    """

    chart: str
    analysis: str
    call: str

    @property
    def example(self) -> str:
        """The chart called on a frame it takes: ``revenue_chart(of.revenue(...))``."""
        return f"{self.chart}({self.call})"

    def frame(self, data: Any) -> Frame:
        """``data`` as a narwhals frame, or an error naming the analysis to call for one."""
        try:
            return as_frame(data, self.analysis)
        except AnalysisError:
            raise AnalysisError(
                f"{self.chart} takes the frame of omsframe.{self.analysis}(...), "
                f"got {type(data).__name__}; e.g. {self.example}"
            ) from None

    def need(self, frame: Frame, columns: Iterable[str], hint: str | None = None) -> None:
        """Refuse a frame without ``columns``: say which, and how to make a frame with them."""
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise AnalysisError(
                f"{self.chart} needs column(s) {', '.join(missing)}, which the frame lacks; "
                + (
                    hint
                    or f"pass it the frame of omsframe.{self.analysis}(...) as it comes, "
                    f"e.g. {self.example}"
                )
            )

    def dimension(self, frame: Frame, argument: str, name: str, dims: str = "dims") -> None:
        """Refuse a dimension (``color=``, ``by=``...) that is not a column of the frame."""
        if name not in frame.columns:
            raise AnalysisError(
                f"{self.chart}: {argument}={name!r} is not a column of the frame; make the "
                f"frame with it, e.g. of.{self.analysis}(tables, ..., {dims}=[{name!r}])"
            )

    def choice(
        self,
        frame: Frame,
        argument: str,
        name: str,
        choices: Sequence[str],
        hint: str | None = None,
    ) -> None:
        """Refuse a column to draw (``measure=``, ``value=``...) that the frame lacks."""
        if name not in frame.columns:
            offered = [c for c in choices if c in frame.columns] or list(choices)
            raise AnalysisError(
                f"{self.chart}: {argument}={name!r} is not a column of the frame; "
                f"{f'{hint}, or ' if hint else ''}choose one of {', '.join(offered)}"
            )


def numeric(frame: Frame) -> list[str]:
    """The frame's number columns (money, counts, ratios: what a chart could draw)."""
    return [name for name, dtype in frame.schema.items() if dtype.is_numeric()]


NONE = "(none)"
"""The name of the series of the rows without a value of its dimension (drawn, never dropped)."""


def split(frame: Frame, column: str) -> list[tuple[str, Frame]]:
    """The rows per value of ``column``, named as text, sorted; those without one last.

    The rows whose value is missing are a series of their own, :data:`NONE`, so what a
    chart draws adds up to the whole frame (no money silently left out).

    Example:
        >>> import polars as pl
        >>> cities = pl.DataFrame({"city": ["Izmir", None, "Ankara"], "n": [1, 2, 3]})
        >>> frame = nw.from_native(cities)
        >>> [(name, part.get_column("n").to_list()) for name, part in split(frame, "city")]
        [('Ankara', [3]), ('Izmir', [1]), ('(none)', [2])]
    """
    values = frame.get_column(column).drop_nulls().unique().to_list()
    try:
        ordered = sorted(values)
    except TypeError:  # values of mixed kinds: as text
        ordered = sorted(values, key=str)
    groups = [(str(value), frame.filter(nw.col(column) == value)) for value in ordered]
    missing = frame.filter(nw.col(column).is_null())
    if missing.shape[0]:
        groups.append((NONE, missing))
    return groups


def label(name: str) -> str:
    """A column name as an axis label: ``net_sales`` -> ``Net sales``.

    Example:
        >>> label("average_order_value")
        'Average order value'
    """
    return name.replace("_", " ").capitalize()


COUNTS = frozenset(
    {"orders", "customers", "cohort_customers", "items", "count", "stays", "open", "variants"}
)
"""Columns that count things (with the ``units...`` ones): no currency on their axis."""


def kind(name: str) -> Literal["share", "count", "money"]:
    """What a column holds, for its axis: a share (a fraction), a count, or money.

    Shares are the ``..._pct``, ``..._rate`` and ``..._share`` columns (fractions: 0.46 is
    46 %); counts are :data:`COUNTS` and the ``units...`` columns; anything else is money.

    Example:
        >>> [kind(n) for n in ("net_sales_change_pct", "cancel_rate", "orders", "units_sold")]
        ['share', 'share', 'count', 'count']
        >>> kind("net_sales"), kind("average_order_value")
        ('money', 'money')
    """
    if name.endswith(("_pct", "_rate", "_share")) or name == "share":
        return "share"
    if name in COUNTS or name.startswith("units"):
        return "count"
    return "money"


def value_axis(name: str, currency: str) -> dict[str, Any]:
    """The title and number format of an axis drawing a column: %, a count, or money.

    A share is drawn as a percentage (its fractions as ``46%``) and money with its currency
    (``currency``: as :func:`unit` gives it); neither a share nor a count has a currency.

    Example:
        >>> value_axis("net_sales_change_pct", "TRY")
        {'title_text': 'Net sales change (%)', 'tickformat': '.0%', 'hoverformat': '.1%'}
        >>> value_axis("net_sales", "TRY")["title_text"], value_axis("orders", "TRY")
        ('Net sales (TRY)', {'title_text': 'Orders'})
    """
    what = kind(name)
    if what == "share":
        title = label(name.removesuffix("_pct"))
        return {"title_text": f"{title} (%)", "tickformat": ".0%", "hoverformat": ".1%"}
    if what == "count":
        return {"title_text": label(name)}
    return {"title_text": f"{label(name)} ({currency})", "hoverformat": ",.2f"}


def currencies(frame: Frame) -> list[str]:
    """The frame's currencies, sorted (nulls left out)."""
    values = frame.get_column("currency").unique().to_list()
    return sorted((str(v) for v in values if v is not None), key=str)


def unit(frame: Frame, currency: str) -> str:
    """``TRY``, or ``TRY, converted`` when the frame was converted with ``fx``."""
    converted = "converted" in frame.columns and bool(frame.filter(nw.col("converted")).shape[0])
    return f"{currency.upper()}, converted" if converted else currency.upper()


def floats(frame: Frame, column: str) -> list[Any]:
    """A column as a list of floats (for drawing only)."""
    return frame.get_column(column).cast(nw.Float64).to_list()


def panels(
    names: list[str],
    shared_x: bool = True,
    heights: list[int] | None = None,
    headings: list[str] | None = None,
) -> go.Figure:
    """One row of subplots per currency, titled with it when there are several, sized to fit.

    The figure's height is the panels' plus room between them (for an x axis of its own:
    tick labels, its title, the next panel's heading) and plotly's margins, so a panel
    never shrinks below ``heights`` however many currencies there are.

    Args:
        names: The currencies, one panel each.
        shared_x: One x axis for all panels (a time axis), labelled under the last.
        heights: Each panel's plot height in pixels (default :data:`PANEL_HEIGHT` each).
        headings: The panels' headings (default: the currencies, upper case, if several).

    Example:
        >>> fig = panels(["eur", "try"], heights=[200, 300])
        >>> fig.layout.height, [a.text for a in fig.layout.annotations]
        (740, ['EUR', 'TRY'])
    """
    count = max(len(names), 1)
    heights = heights or [PANEL_HEIGHT] * count
    gap = SHARED_GAP if shared_x else OWN_AXIS_GAP
    plot = sum(heights) + gap * (count - 1)
    fig = make_subplots(
        rows=count,
        cols=1,
        shared_xaxes=shared_x,
        vertical_spacing=gap / plot if count > 1 else 0.0,
        row_heights=[h / sum(heights) for h in heights],
        subplot_titles=headings or ([c.upper() for c in names] if len(names) > 1 else None),
    )
    fig.update_layout(height=plot + MARGIN["t"] + MARGIN["b"], margin=MARGIN)
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def bar_heights(bars: list[int]) -> list[int]:
    """Panel heights for horizontal bars: room for every bar's label, at least a small panel.

    Example:
        >>> bar_heights([10, 3])
        [300, 160]
    """
    return [max(MIN_BAR_PANEL, BAR_HEIGHT * n + 60) for n in bars]


def count_axis(maximum: float) -> dict[str, Any]:
    """Axis settings for a count: whole-number ticks from zero up, never below it.

    Up to 10 a tick per unit; above, plotly's own steps (whole numbers there), shown as
    integers. Without this an axis drawn over another (``overlaying``, a second y axis)
    syncs its ticks to the first one's and shows fractions and negative counts.

    Example:
        >>> count_axis(3)["dtick"], count_axis(250)["tickmode"]
        (1, 'auto')
    """
    ticks = (
        {"tickmode": "linear", "tick0": 0, "dtick": 1} if maximum <= 10 else {"tickmode": "auto"}
    )
    return {"rangemode": "nonnegative", "tickformat": ",d", **ticks}


def rows(frame: Frame, *columns: str) -> list[tuple[Any, ...]]:
    """The rows of some columns as tuples of Python values (nulls as ``None``, any engine)."""
    table = frame.select(*columns).to_arrow()
    return list(zip(*[table.column(c).to_pylist() for c in columns], strict=True))


def column(frame: Frame, name: str) -> list[Any]:
    """A column as Python values (nulls as ``None``, any engine)."""
    return [value for (value,) in rows(frame, name)]
