"""How omsframe's results show themselves: aligned lines in a terminal, a table in Jupyter.

Example:
    >>> print(aligned([("plan", "full"), ("orders", "12")]))
    plan    full
    orders  12
"""

from __future__ import annotations

import html
from collections.abc import Sequence

Rows = Sequence[tuple[str, str]]


def aligned(rows: Rows) -> str:
    """``name  value`` lines, the values lined up."""
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def html_table(rows: Rows, caption: str) -> str:
    """An HTML table of ``name | value`` rows under a caption (everything escaped)."""
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
        f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    return f"<table><caption>{html.escape(caption)}</caption>{body}</table>"
