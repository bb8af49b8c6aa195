"""Rows in, Arrow tables out: the column-wise half of flattening.

:mod:`omsframe.flatten` walks the records and collects each table's rows as tuples; this module
turns them into Arrow tables of the declared schemas (one Arrow conversion per column, see
:mod:`omsframe.convert`), applies the PII policy to the PII columns, finds the rows Arrow
refused, and sums the order totals exactly in decimal.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from omsframe.convert import to_arrow
from omsframe.drift import DriftReport
from omsframe.extract import sourced_names
from omsframe.privacy import PiiKind, Privacy
from omsframe.schema import TABLES, Table, arrow_schema

_SOURCED = {name: sourced_names(TABLES[name]) for name in TABLES}
_PII_KIND: dict[str, PiiKind] = {"email": "email", "phone_number": "phone"}


class Rows:
    """Rows of one table being built: extracted tuples plus computed columns."""

    def __init__(self, name: str) -> None:
        self.table: Table = TABLES[name]
        self.rows: list[tuple[Any, ...]] = []
        self.computed: dict[str, list[Any]] = {
            c.name: [] for c in self.table.columns if c.source is None
        }
        self.owner: list[int] = []  # position of the input record each row came from

    def __len__(self) -> int:
        return len(self.rows)

    def drop_owners(self, owners: set[int]) -> None:
        """Forget the rows of the given input records."""
        keep = [owner not in owners for owner in self.owner]
        self.rows = [row for row, kept in zip(self.rows, keep, strict=True) if kept]
        self.owner = [owner for owner, kept in zip(self.owner, keep, strict=True) if kept]
        for name, values in self.computed.items():
            if values:
                self.computed[name] = [v for v, kept in zip(values, keep, strict=True) if kept]


def _columns(
    rows: Rows | tuple[Table, list[tuple[Any, ...]], dict[str, list[Any]]],
) -> dict[str, list[Any]]:
    if isinstance(rows, Rows):
        table, tuples, computed = rows.table, rows.rows, rows.computed
    else:
        table, tuples, computed = rows
    sourced = _SOURCED[table.name]
    if tuples:
        transposed = list(zip(*tuples, strict=True))
        values = {name: list(transposed[k]) for k, name in enumerate(sourced)}
    else:
        values = {name: [] for name in sourced}
    for name, computed_values in computed.items():
        # computed columns filled after conversion (order totals) start as nulls
        values[name] = computed_values if computed_values or not tuples else [None] * len(tuples)
    return values


def _arrays(
    table: Table, values: dict[str, list[Any]], privacy: Privacy, drift: DriftReport
) -> tuple[list[pa.Array], dict[int, str]]:
    arrays: list[pa.Array] = []
    bad: dict[int, str] = {}
    for column in table.columns:
        column_values = values[column.name]
        if column.pii:
            column_values = privacy.transform(column_values, _PII_KIND.get(column.name, "text"))
        converted = to_arrow(column_values, column)
        for change in converted.type_changes:
            drift.type_changes[f"{table.name}.{change}"] += 1
        for row, reason in converted.bad.items():
            bad.setdefault(row, reason)
        array = converted.array
        if not column.nullable and array.null_count:
            for row in pc.indices_nonzero(array.is_null()).to_pylist():
                bad.setdefault(row, f"{column.name}: missing (the OMS always sends it)")
        arrays.append(array)
    return arrays, bad


def owned_tables(
    parts: tuple[Rows, ...], privacy: Privacy, drift: DriftReport
) -> tuple[list[pa.Table], dict[int, str]]:
    """Convert tables whose rows belong to input records; drop every row of a bad record.

    Returns:
        The tables, and the positions of the records that had a bad row, with the reason.
    """
    converted = []
    bad_positions: dict[int, str] = {}
    for rows in parts:
        arrays, bad = _arrays(rows.table, _columns(rows), privacy, drift)
        for row, reason in bad.items():
            bad_positions.setdefault(rows.owner[row], f"{rows.table.name}.{reason}")
        converted.append((rows, arrays))
    tables = []
    for rows, arrays in converted:
        table = pa.Table.from_arrays(arrays, schema=arrow_schema(rows.table.name))
        if bad_positions:
            keep = pa.array([owner not in bad_positions for owner in rows.owner], pa.bool_())
            table = table.filter(keep)
        tables.append(table)
    return tables, bad_positions


def entity_table(
    name: str,
    rows: list[tuple[Any, ...]],
    computed: dict[str, list[Any]],
    privacy: Privacy,
    drift: DriftReport,
) -> tuple[pa.Table, dict[int, str]]:
    """A table of things seen on orders (customers, products...), without its bad rows.

    ``rows`` hold the sourced columns, optionally followed by the computed ones; ``computed``
    gives computed columns as whole lists instead.

    Returns:
        The table, and the bad rows (index in ``rows``) with the reason.
    """
    spec = TABLES[name]
    n_sourced = len(_SOURCED[name])
    computed_names = [c.name for c in spec.columns if c.source is None]
    values = _columns((spec, [row[:n_sourced] for row in rows], {}))
    for k, extra in enumerate(computed_names):
        values[extra] = computed.get(extra) or [
            row[n_sourced + k] if len(row) > n_sourced + k else None for row in rows
        ]
    arrays, bad = _arrays(spec, values, privacy, drift)
    table = pa.Table.from_arrays(arrays, schema=arrow_schema(name))
    if bad:
        table = table.filter(pa.array([k not in bad for k in range(len(rows))], pa.bool_()))
    return table, bad


def group_by(
    table: pa.Table, key: str, aggregates: list[tuple[str, str, pc.FunctionOptions | None]]
) -> pa.Table:
    """``table.group_by(key, use_threads=False).aggregate(aggregates)``, lighter to start.

    The same plan run by the same engine (Arrow's Acero, one thread), built from its compiled
    module. ``Table.group_by`` imports the ``pyarrow.acero`` module first, which imports
    ``pyarrow.dataset`` and with it the file systems (S3, GCS, Azure, HDFS) and SSL: 18-58 ms
    a process spent on its first page, a flattening worker's start included, for nothing a
    flattening uses (BENCHMARKS.md "Sync"). Columns are named as ``aggregate`` names them
    (``price_sum``), after the key.

    Example:
        >>> t = pa.table({"k": [1, 1, 2], "v": [1, 2, 3]})
        >>> group_by(t, "k", [("v", "sum", None)]).to_pydict()
        {'k': [1, 2], 'v_sum': [3, 3]}
    """
    try:
        from pyarrow._acero import AggregateNodeOptions, Declaration, TableSourceNodeOptions
    except ImportError:  # pragma: no cover - a pyarrow without it: the public way
        return table.group_by(key, use_threads=False).aggregate(aggregates)
    specs = [
        ([column], f"hash_{function}", options, f"{column}_{function}")
        for column, function, options in aggregates
    ]
    plan = Declaration.from_sequence(
        [
            Declaration("table_source", TableSourceNodeOptions(table)),
            Declaration("aggregate", AggregateNodeOptions(specs, keys=[key])),
        ]
    )
    result: pa.Table = plan.to_table(use_threads=False)
    return result


def with_totals(orders: pa.Table, items: pa.Table) -> pa.Table:
    """Fill the orders' item count, currency and exact money totals from their items."""
    n = orders.num_rows
    totals: dict[str, pa.Array] = {}
    if items.num_rows:
        grouped = group_by(
            items,
            "order_id",
            [
                ("item_id", "count", None),
                ("price", "sum", None),
                ("discount_amount", "sum", None),
                ("net_amount", "sum", None),
                ("tax_amount", "sum", None),
                ("tax_amount", "count", pc.CountOptions(mode="only_null")),
                ("price_currency", "min", None),
                ("price_currency", "max", None),
            ],
        )
        index = pc.index_in(orders.column("order_id"), grouped.column("order_id"))
        taken = grouped.take(index)
        same_currency = pc.equal(
            taken.column("price_currency_min"), taken.column("price_currency_max")
        )
        totals["currency"] = pc.if_else(same_currency, taken.column("price_currency_min"), None)
        totals["item_count"] = pc.coalesce(taken.column("item_id_count"), 0).cast(pa.int32())
        for source, target in (
            ("price", "price_total"),
            ("discount_amount", "discount_total"),
            ("net_amount", "net_total"),
        ):
            totals[target] = taken.column(f"{source}_sum").cast(pa.decimal128(18, 2))
        has_null_tax = pc.greater(pc.coalesce(taken.column("tax_amount_count"), 0), 0)
        tax_sum = taken.column("tax_amount_sum").cast(pa.decimal128(18, 2))
        totals["tax_total"] = pc.if_else(
            has_null_tax, pa.scalar(None, pa.decimal128(18, 2)), tax_sum
        )
    else:
        totals["item_count"] = pa.array([0] * n, pa.int32())
    schema = orders.schema
    for name, values in totals.items():
        index_of = schema.get_field_index(name)
        orders = orders.set_column(index_of, schema.field(name), values)
    return orders


def stamp_policy(tables: dict[str, pa.Table], privacy: Privacy) -> dict[str, pa.Table]:
    """Record the PII policy in every table's metadata."""
    stamped = {}
    for name, table in tables.items():
        metadata = dict(table.schema.metadata or {})
        metadata[b"omsframe.pii_policy"] = privacy.mode.encode()
        stamped[name] = table.replace_schema_metadata(metadata)
    return stamped
