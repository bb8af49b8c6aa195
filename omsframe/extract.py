"""Compile a table's declared columns into one fast row extractor.

:mod:`omsframe.schema` declares where each column comes from (``"state.enum_value"``). Walking
those paths with a generic helper for every value would cost a function call per field; instead
this module generates, once per table, a Python function that fetches every declared path of a
record with plain ``dict.get`` calls, sharing the lookups of common prefixes, and returns one
tuple. It raises :class:`ShapeError` when a value that must be an object is something else.

Example:
    >>> from omsframe.schema import Column, Table
    >>> t = Table("t", "row", ("id",), (Column("id", "id", "", "id"),
    ...                                Column("state_code", "text", "", "state.enum_value")))
    >>> compile_extractor(t)({"id": 7, "state": {"enum_value": "400"}})
    (7, '400')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omsframe.schema import Table

Extractor = Callable[[dict[str, Any]], tuple[Any, ...]]


class ShapeError(Exception):
    """A record has a value of the wrong JSON type where an object is required."""


_EMPTY: dict[str, Any] = {}


def _object_or_empty(value: Any, path: str) -> Any:
    if value.__class__ is dict:
        return value
    if value is None:
        return _EMPTY
    raise ShapeError(f"`{path}` is {type(value).__name__}, expected an object or null")


def compile_extractor(table: Table, computed: tuple[str, ...] = ()) -> Extractor:
    """Generate the extractor of ``table``: record -> tuple of its sourced columns.

    Args:
        table: The table spec; columns without a ``source`` are skipped (computed later).
        computed: Unused placeholder names (kept for symmetry with the caller's layout).

    Returns:
        A function taking one record (a dict) and returning the values of the table's
        sourced columns, in column order.
    """
    lines = ["def extract(r):"]
    names: dict[str, str] = {"": "r"}
    values: list[str] = []

    def object_var(path: str) -> str:
        if path in names:
            return names[path]
        parent, _, key = path.rpartition(".")
        parent_var = object_var(parent)
        var = f"o{len(names)}"
        names[path] = var
        lines.append(f"    {var} = obj({parent_var}.get({key!r}), {path!r})")
        return var

    for column in table.columns:
        if column.source is None:
            continue
        parent, _, key = column.source.rpartition(".")
        values.append(f"{object_var(parent)}.get({key!r})")
    lines.append("    return (" + ", ".join(values) + ("," if len(values) == 1 else "") + ")")
    namespace: dict[str, Any] = {"obj": _object_or_empty}
    exec("\n".join(lines), namespace)  # generated from the static schema, not from input
    extractor: Extractor = namespace["extract"]
    return extractor


def sourced_names(table: Table) -> tuple[str, ...]:
    """Names of the columns an extractor of ``table`` returns, in order."""
    return tuple(c.name for c in table.columns if c.source is not None)
