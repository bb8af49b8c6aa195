"""Turn chosen keys of a JSON-text column (``attributes``, ``attributes_kwargs``...) into columns.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"sku": ["A", "B"], "attributes": ['{"color": "Red"}', None]})
    >>> expand_attributes(df, keys=["color"])["attr_color"].tolist()
    ['Red', None]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pandas as pd


def expand_attributes(
    df: pd.DataFrame,
    keys: Sequence[str],
    *,
    column: str = "attributes",
    prefix: str = "attr_",
    field: str | None = None,
) -> pd.DataFrame:
    """Return a copy of ``df`` with one column per chosen key of a JSON-text column.

    The input is not modified. Rows whose JSON is null, not an object, or lacks the key get
    null. Values are returned as they are in the JSON (text, number, ...).

    Args:
        df: A table with a JSON-text column, e.g. ``order_items`` or ``products``.
        keys: The keys to turn into columns.
        column: The JSON-text column (``attributes``, ``attributes_kwargs``, ``extra_field``...).
        prefix: Prefix of the new column names (``attr_color``).
        field: For nested values such as ``attributes_kwargs`` (``{"label", "value",
            "data_type"}``), the field of the nested object to take, e.g. ``"label"``.

    Returns:
        A new DataFrame with the added columns.

    Raises:
        KeyError: If ``column`` is not in ``df``.

    Example:
        >>> df = pd.DataFrame({"attributes_kwargs": ['{"size": {"label": "M", "value": "m"}}']})
        >>> out = expand_attributes(df, ["size"], column="attributes_kwargs", field="label")
        >>> out["attr_size"][0]
        'M'
    """
    if column not in df.columns:
        raise KeyError(
            f"no column {column!r} to expand; pass column= one of {', '.join(map(str, df.columns))}"
        )
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

    objects = [parse(text) for text in df[column].tolist()]
    result = df.copy()
    for key in keys:
        values: list[Any] = []
        for obj in objects:
            value = obj.get(key) if isinstance(obj, dict) else None
            if field is not None:
                value = value.get(field) if isinstance(value, dict) else None
            values.append(value)
        result[f"{prefix}{key}"] = pd.Series(values, index=df.index, dtype=object)
    return result
