"""What every chart shares: labels, the template, a panel per currency, floats for drawing.

Charts draw money as floats (display only: the frames keep exact decimals) and never put two
currencies on one money axis.
"""

from __future__ import annotations

from typing import Any

import narwhals as nw
from plotly.subplots import make_subplots

from omsframe.analysis._frames import Frame

TEMPLATE = "plotly_white"


def label(name: str) -> str:
    """A column name as an axis label: ``net_sales`` -> ``Net sales``.

    Example:
        >>> label("average_order_value")
        'Average order value'
    """
    return name.replace("_", " ").capitalize()


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


def panels(names: list[str], shared_x: bool = True) -> Any:
    """One row of subplots per currency, titled with it when there are several."""
    rows = max(len(names), 1)
    titles = [c.upper() for c in names] if len(names) > 1 else None
    return make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=shared_x,
        vertical_spacing=0.08 if rows > 1 else 0.0,
        subplot_titles=titles,
    )


def rows(frame: Frame, *columns: str) -> list[tuple[Any, ...]]:
    """The rows of some columns as tuples of Python values (nulls as ``None``, any engine)."""
    table = frame.select(*columns).to_arrow()
    return list(zip(*[table.column(c).to_pylist() for c in columns], strict=True))


def column(frame: Frame, name: str) -> list[Any]:
    """A column as Python values (nulls as ``None``, any engine)."""
    return [value for (value,) in rows(frame, name)]
