"""Turn chosen keys of a JSON-text column (``attributes``, ``attributes_kwargs``...) into columns.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"sku": ["A", "B"], "attributes": ['{"color": "Red"}', None]})
    >>> expand_attributes(df, keys=["color"])["attr_color"].tolist()
    ['Red', None]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

import orjson
import pandas as pd

#: a pandas or polars DataFrame
FrameT = TypeVar("FrameT")


def expand_attributes(
    df: FrameT,
    keys: Sequence[str],
    *,
    column: str = "attributes",
    prefix: str = "attr_",
    field: str | None = None,
) -> FrameT:
    """Return a copy of ``df`` with one column per chosen key of a JSON-text column.

    The input is not modified. Rows whose JSON is null, not an object, or lacks the key get
    null. Values are returned as they are in the JSON (text, number, ...).

    Args:
        df: A table with a JSON-text column, e.g. ``order_items`` or ``products``.
        keys: The keys to turn into columns (one key may be given as a text).
        column: The JSON-text column (``attributes``, ``attributes_kwargs``, ``extra_field``...).
        prefix: Prefix of the new column names (``attr_color``).
        field: For nested values such as ``attributes_kwargs`` (``{"label", "value",
            "data_type"}``), the field of the nested object to take, e.g. ``"label"``.

    Returns:
        A new DataFrame with the added columns: pandas, or polars for a polars ``df`` (whose
        new columns hold the values as JSON text: ``"Red"`` as ``Red``, ``3`` as ``3``).

    Raises:
        KeyError: If ``column`` is not in ``df``.

    Example:
        >>> df = pd.DataFrame({"attributes_kwargs": ['{"size": {"label": "M", "value": "m"}}']})
        >>> out = expand_attributes(df, ["size"], column="attributes_kwargs", field="label")
        >>> out["attr_size"][0]
        'M'
    """
    polars = type(df).__module__.startswith("polars")
    if not isinstance(df, pd.DataFrame) and not polars:
        raise TypeError(f"expand_attributes takes a pandas or polars DataFrame, not {type(df)}")
    columns = list(cast(Any, df).columns)
    if column not in columns:
        raise KeyError(
            f"no column {column!r} to expand; pass column= one of {', '.join(map(str, columns))}"
        )
    keys = [keys] if isinstance(keys, str) else list(keys)
    if polars:
        return cast(FrameT, _expand_polars(df, keys, column, prefix, field))
    frame = cast(pd.DataFrame, df)
    parsed: dict[str, Any] = {}

    def parse(text: Any) -> Any:
        if not isinstance(text, str):
            return None
        if text not in parsed:
            try:
                parsed[text] = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed[text] = None
        return parsed[text]

    objects = [parse(text) for text in frame[column].tolist()]
    result = frame.copy()
    for key in keys:
        values: list[Any] = []
        for obj in objects:
            value = obj.get(key) if isinstance(obj, dict) else None
            if field is not None:
                value = value.get(field) if isinstance(value, dict) else None
            values.append(value)
        result[f"{prefix}{key}"] = pd.Series(values, index=frame.index, dtype=object)
    return cast(FrameT, result)


def _expand_polars(df: Any, keys: list[str], column: str, prefix: str, field: str | None) -> Any:
    """:func:`expand_attributes` of a polars DataFrame (values come as text)."""
    import polars as pl

    def path(key: str) -> str:
        steps = [key] if field is None else [key, field]
        return "$" + "".join("[" + orjson.dumps(step).decode() + "]" for step in steps)

    return df.with_columns(
        pl.col(column).str.json_path_match(path(key)).alias(f"{prefix}{key}") for key in keys
    )
