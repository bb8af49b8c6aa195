"""Turn a column of raw JSON values into an Arrow array of the column's declared type.

The fast path hands the whole column to Arrow (``pa.array`` and Arrow's own string-to-decimal
and string-to-timestamp casts, which are exact and strict). Only when Arrow refuses does the
slow path look at each value, to say which rows are bad and why, and to coerce harmless type
changes (an id sent as a string, a number where text was expected), which are reported as drift.

Example:
    >>> from omsframe.schema import Column
    >>> result = to_arrow(["1.50", "abc", None], Column("price", "money", ""))
    >>> result.array.to_pylist()
    [Decimal('1.50'), None, None]
    >>> result.bad
    {1: "price: 'abc' is not a decimal amount"}
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from omsframe.schema import Column

_CAST_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    TypeError,
    OverflowError,
    ValueError,
)
_TEXT_TYPES = (str,)
_MONEY_LIMIT = decimal.Decimal(10) ** 16
# plain ASCII decimals only: Decimal() would also take "1_000.00" and non-ASCII digits
_DECIMAL_TEXT = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|[+-]?\.[0-9]+")
_FLOAT_DIGITS = 15  # a decimal of up to 15 significant digits survives a float round trip


def _significant_digits(text: str) -> int:
    mantissa = text.lower().split("e")[0].lstrip("+-").replace(".", "")
    return len(mantissa.lstrip("0")) or 1


@dataclass
class Converted:
    """An Arrow array, the rows that could not be converted, and harmless type changes."""

    array: pa.Array
    bad: dict[int, str] = field(default_factory=dict)
    type_changes: set[str] = field(default_factory=set)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def dumps(value: Any) -> str | None:
    """JSON text of a free-form value (``None`` stays null)."""
    text = _json_bytes(value)
    return None if text is None else text.decode()


def _json_bytes(value: Any) -> bytes | None:
    """JSON of a free-form value as UTF-8 bytes (``None`` stays null)."""
    if value is None:
        return None
    try:
        return orjson.dumps(value)
    except TypeError:  # e.g. integers beyond 64 bits, which orjson refuses
        return json.dumps(value, ensure_ascii=False).encode()


def json_texts(values: Iterable[Any]) -> pa.Array:
    """An Arrow string array of the JSON text of each value (``None`` stays null).

    The UTF-8 bytes go into Arrow as they are (no Python strings made, then encoded again):
    half the time of ``pa.array([dumps(v) for v in values])``.

    Example:
        >>> json_texts([{"a": 1}, None, [2]]).to_pylist()
        ['{"a":1}', None, '[2]']
    """
    return pa.array([_json_bytes(v) for v in values], pa.binary()).view(pa.string())


def stamp_key(value: Any) -> str:
    """A key that sorts ISO 8601 timestamps by time, whatever their form (``""`` if unreadable).

    String comparison is wrong for timestamps: ``"...10:00:00Z"`` sorts after
    ``"...10:00:00.500000Z"``, and offsets other than ``Z`` sort anyhow.

    Example:
        >>> stamp_key("2025-01-01T10:00:00Z") < stamp_key("2025-01-01T10:00:00.500000Z")
        True
        >>> stamp_key("2025-01-01T13:00:00+03:00") == stamp_key("2025-01-01T10:00:00Z")
        True
    """
    return _stamp_key(value) if isinstance(value, str) else ""


@functools.lru_cache(maxsize=65_536)
def _stamp_key(value: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def to_arrow(values: list[Any], column: Column) -> Converted:
    """Convert ``values`` to the Arrow type of ``column``.

    Args:
        values: Raw JSON values, one per row.
        column: The column spec (its ``kind`` fixes the type).

    Returns:
        A :class:`Converted`; rows listed in ``bad`` hold null in the array and must be
        quarantined by the caller.
    """
    kind = column.kind
    target = column.type
    if kind == "json":
        return Converted(json_texts(values))
    try:
        if kind in ("money", "rate", "time", "coord"):
            strings = pa.array(values, pa.string())
            return Converted(pc.cast(strings, target))
        return Converted(pa.array(values, target))
    except _CAST_ERRORS:
        return _slow(values, column)


def _slow(values: list[Any], column: Column) -> Converted:
    kind, name = column.kind, column.name
    out: list[Any] = []
    bad: dict[int, str] = {}
    changes: set[str] = set()
    for row, value in enumerate(values):
        try:
            out.append(_one(value, kind, name, changes))
        except ValueError as error:
            bad[row] = f"{name}: {error}"
            out.append(None)
    if kind == "coord":  # coordinates are for maps: a bad one becomes null, not a lost order
        if bad:
            changes.add(f"{name}: unreadable coordinate set to null")
        bad = {}
    return Converted(pa.array(out, column.type), bad, changes)


def _one(value: Any, kind: str, name: str, changes: set[str]) -> Any:
    if value is None:
        return None
    if kind in ("id", "int"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"{_preview(value)} is not an integer id")
        if isinstance(value, str):
            if not value.strip().lstrip("-").isdigit():
                raise ValueError(f"{_preview(value)} is not an integer id")
            changes.add(f"{name}: string where an integer was expected")
            value = int(value)
        limit = 2**63 if kind == "id" else 2**31
        if not -limit <= value < limit:
            raise ValueError(f"{_preview(value)} is out of range")
        return value
    if kind == "text":
        if isinstance(value, str):
            return value
        changes.add(f"{name}: {type(value).__name__} where text was expected")
        return dumps(value) if isinstance(value, dict | list) else str(value)
    if kind == "flag":
        if isinstance(value, bool):
            return value
        if value in ("true", "True", "false", "False"):
            changes.add(f"{name}: string where a boolean was expected")
            return value in ("true", "True")
        raise ValueError(f"{_preview(value)} is not a boolean")
    if kind in ("money", "rate"):
        return _decimal(value, kind, name, changes)
    if kind == "time":
        return _timestamp(value)
    if kind == "coord":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"{_preview(value)} is not a coordinate")
        return float(value)
    if kind == "text_list":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{_preview(value)} is not a list of text")
        return value
    raise ValueError(f"unknown column kind {kind}")  # pragma: no cover - schema is static


def _decimal(value: Any, kind: str, name: str, changes: set[str]) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{_preview(value)} is not a decimal amount")
    if isinstance(value, float) and _significant_digits(repr(value)) > _FLOAT_DIGITS:
        raise ValueError(
            f"{_preview(value)} is a JSON number with more digits than a float keeps "
            "(amounts must come as decimal strings)"
        )
    if not isinstance(value, str):
        changes.add(f"{name}: JSON number where a decimal string was expected")
    text = str(value).strip()
    if not _DECIMAL_TEXT.fullmatch(text):
        raise ValueError(f"{_preview(value)} is not a decimal amount")
    try:
        amount = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(f"{_preview(value)} is not a decimal amount") from None
    if not amount.is_finite():
        raise ValueError(f"{_preview(value)} is not a finite amount")
    limit = _MONEY_LIMIT if kind == "money" else decimal.Decimal(100_000)
    if abs(amount) >= limit:
        raise ValueError(f"{_preview(value)} is out of range")
    quantum = decimal.Decimal("0.01")
    if amount != amount.quantize(quantum, rounding=decimal.ROUND_DOWN):
        raise ValueError(f"{_preview(value)} has more than 2 decimal places")
    return amount.quantize(quantum)


def _timestamp(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError(f"{_preview(value)} is not a timestamp")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{_preview(value)} is not an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        raise ValueError(f"{_preview(value)} has no time zone")
    return moment.astimezone(dt.UTC)
