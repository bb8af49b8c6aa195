"""The parquet cache: layout, atomic writes, upsert by key, reading by date.

Layout of a cache folder (``data/<profile>/``)::

    manifest.json                      source, versions, cursors, probe, counts, policy, last sync
    .pii-key                           the pseudonymization key (owner-only; never exported)
    .lock                              the writer lock (see omsframe.lock)
    tables/orders/month=2024-05/part.parquet       per-order tables, by month of date_placed
    tables/order_items/month=.../part.parquet
    tables/addresses/month=.../part.parquet
    tables/state_history/month=.../part.parquet
    tables/events/month=.../part.parquet           by month of the event's created_date
    tables/customers/part.parquet                  one file each: customers, products, channels,
    ...                                            states
    raw/orders/month=.../part.parquet              the stripped raw JSON, to rebuild offline
    raw/events/month=.../part.parquet
    quarantine/part.parquet                        records that could not be flattened

Hive-style ``month=`` folders: DuckDB, polars, Spark and Dask read the folder as it is.

Rules: every file is written to a temporary name, flushed and renamed, so a reader never sees
half a file; rows are upserted by key and the latest ``modified_date`` wins (an older copy of an
order never overwrites a newer one); re-applying the same batch changes nothing, which is what
makes a killed sync resumable. Only the month partitions a batch touches are rewritten.

Example:
    >>> import tempfile
    >>> store = Store(tempfile.mkdtemp())
    >>> store.read_table("orders").num_rows
    0
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from omsframe.atomic import write_atomic, write_parquet_atomic
from omsframe.errors import CacheError
from omsframe.flatten import Flattened, QuarantinedRecord
from omsframe.merge import (
    UpsertCounts,
    column_array,
    count_true,
    merge_latest,
    newer_mask,
    row_keys,
    same_mask,
)
from omsframe.pageflat import RAW_ORDERS_SCHEMA, raw_orders_table
from omsframe.schema import TABLES, arrow_schema

ORDER_GROUP = ("orders", "order_items", "addresses")
ENTITY_STAMPS = {
    "customers": "last_order_modified",
    "products": "modified_date",
    "channels": "modified_date",
    "states": None,
}
PARTITION_DATE = {
    "orders": "date_placed",
    "order_items": "date_placed",
    "addresses": "date_placed",
    "state_history": "date_placed",
    "events": "created_date",
    "raw_orders": "date_placed",
    "raw_events": "created_date",
}
SORT_KEYS = {
    "orders": ["order_id"],
    "order_items": ["order_id", "item_id"],
    "addresses": ["order_id", "role"],
    "state_history": ["order_id", "changed_at"],
    "events": ["event_id"],
    "raw_orders": ["order_id"],
    "raw_events": ["event_id"],
    "customers": ["customer_id"],
    "products": ["product_id"],
    "channels": ["channel_id"],
    "states": ["enum_class", "code"],
}
TIME = pa.timestamp("us", tz="UTC")
RAW_SCHEMAS = {
    "raw_orders": RAW_ORDERS_SCHEMA,
    "raw_events": pa.schema(
        [
            ("event_id", pa.int64(), False),
            ("created_date", TIME),
            ("modified_date", TIME),
            ("record", pa.string()),
        ]
    ),
}
QUARANTINE_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("position", pa.int64()),
        ("record_id", pa.string()),
        ("reason", pa.string()),
        ("record", pa.string()),
        ("seen_at", TIME),
    ]
)
UNKNOWN_MONTH = "unknown"


def schema_of(name: str) -> pa.Schema:
    """The Arrow schema of a stored table (data tables, raw layers)."""
    return RAW_SCHEMAS[name] if name in RAW_SCHEMAS else arrow_schema(name)


def _months(table: pa.Table, column: str) -> pa.Array:
    if table.num_rows == 0:
        return pa.array([], pa.string())
    months = pc.strftime(table.column(column), format="%Y-%m")
    return pc.fill_null(months, UNKNOWN_MONTH)


def _sorted(table: pa.Table, name: str) -> pa.Table:
    # the raw layer needs no order (rebuild reads it whole); a table already in order (stored
    # rows, then newer ids: often) would only be copied by a sort
    if name in RAW_SCHEMAS:
        return table
    keys = SORT_KEYS[name]
    if _in_order(table, keys):
        return table
    return table.sort_by([(key, "ascending") for key in keys])


def _in_order(table: pa.Table, keys: list[str]) -> bool:
    """Whether the rows are already sorted by ``keys`` (ties allowed: the sort is stable)."""
    rows = table.num_rows
    if rows < 2:
        return True
    before = pa.array(np.zeros(rows - 1, np.bool_))  # pairs already known to be in order
    tied = pa.array(np.ones(rows - 1, np.bool_))  # pairs equal on the keys so far
    for key in keys:
        column = column_array(table.column(key))
        if column.null_count:
            return False
        left, right = column.slice(0, rows - 1), column.slice(1)
        before = pc.or_(before, pc.and_(tied, pc.less(left, right)))
        tied = pc.and_(tied, pc.equal(left, right))
    return bool(pc.all(pc.or_(before, tied)).as_py())


class Store:
    """A cache folder. Writing methods expect the caller to hold the writer lock.

    Args:
        root: The cache folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._index: dict[int, str] | None = None

    # --- paths --------------------------------------------------------------------------------
    def table_dir(self, name: str) -> Path:
        """Folder of a table (raw layers live under ``raw/``)."""
        if name.startswith("raw_"):
            return self.root / "raw" / name.removeprefix("raw_")
        return self.root / "tables" / name

    def partition_path(self, name: str, month: str | None) -> Path:
        """File of one partition (``month=None`` for unpartitioned tables)."""
        folder = self.table_dir(name)
        return (folder / f"month={month}" if month else folder) / "part.parquet"

    def months(self, name: str) -> list[str]:
        """Months present for a partitioned table, sorted."""
        folder = self.table_dir(name)
        if not folder.is_dir():
            return []
        return sorted(
            p.name.removeprefix("month=")
            for p in folder.glob("month=*")
            if (p / "part.parquet").exists()
        )

    def counts(self) -> dict[str, int]:
        """Rows per stored table (read from parquet footers, not from the data)."""
        result: dict[str, int] = {}
        for name in (*TABLES, "raw_orders", "raw_events"):
            months = self.months(name) if name in PARTITION_DATE else [None]
            paths = [self.partition_path(name, m) for m in months]
            result[name] = sum(pq.ParquetFile(p).metadata.num_rows for p in paths if p.exists())
        return result

    # --- the key of the PII policy ---------------------------------------------------------------
    def pii_key(self) -> bytes:
        """The cache's pseudonymization key, created (owner-only) on first use."""
        path = self.root / ".pii-key"
        if path.exists():
            key = path.read_bytes()
            if len(key) != 32:
                raise CacheError(
                    f"{path} is damaged (expected 32 bytes); restore it from a backup, "
                    "or start a new cache (pseudonyms will differ from the old ones)"
                )
            return key
        if any((self.root / "tables").glob("*/**/part.parquet")):
            raise CacheError(
                f"{path} is missing but {self.root} already holds pseudonymized tables; restore "
                "the key from a backup (a new key would no longer join returning customers), or "
                "start a new cache"
            )
        key = secrets.token_bytes(32)
        write_atomic(path, key)
        return key

    # --- reading --------------------------------------------------------------------------------
    def _read_file(self, path: Path, name: str) -> pa.Table:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as error:
            raise CacheError(
                f"cannot read {path}: {str(error).splitlines()[0][:120]}; "
                "run `omsframe rebuild` to rebuild the tables from the raw layer"
            ) from None
        expected = schema_of(name)
        if not table.schema.remove_metadata().equals(expected.remove_metadata()):
            raise CacheError(
                f"{path} does not have the {name} schema of this omsframe version; "
                "run `omsframe rebuild` to rebuild the cache"
            )
        return table

    def read_partition(self, name: str, month: str | None) -> pa.Table | None:
        """One partition, or ``None`` when it does not exist."""
        path = self.partition_path(name, month)
        return self._read_file(path, name) if path.exists() else None

    def read_table(
        self, name: str, since: dt.datetime | None = None, until: dt.datetime | None = None
    ) -> pa.Table:
        """A whole table, or the rows dated in ``[since, until)`` (partitions pruned by month).

        Args:
            name: Table name (``orders``, ``order_items``..., or ``raw_orders``).
            since: Keep rows dated at or after this moment (tz-aware; naive means UTC).
            until: Keep rows dated before this moment.

        Returns:
            The rows as an Arrow table of the table's schema (empty if nothing is stored).
        """
        schema = schema_of(name)
        if name not in PARTITION_DATE:
            table = self.read_partition(name, None)
            return table if table is not None else schema.empty_table()
        low = since.astimezone(dt.UTC).strftime("%Y-%m") if since else None
        high = until.astimezone(dt.UTC).strftime("%Y-%m") if until else None
        parts = []
        for month in self.months(name):
            if month != UNKNOWN_MONTH and ((low and month < low) or (high and month > high)):
                continue
            part = self.read_partition(name, month)
            if part is not None:
                parts.append(part)
        table = pa.concat_tables(parts) if parts else schema.empty_table()
        column = PARTITION_DATE[name]
        if since is not None:
            table = table.filter(
                pc.greater_equal(table.column(column), pa.scalar(_utc(since), TIME))
            )
        if until is not None:
            table = table.filter(pc.less(table.column(column), pa.scalar(_utc(until), TIME)))
        return table

    # --- writing ---------------------------------------------------------------------------------
    def _write(self, name: str, month: str | None, table: pa.Table, policy: str | None) -> None:
        schema = schema_of(name)
        metadata = dict(schema.metadata or {})
        if policy:
            metadata[b"omsframe.pii_policy"] = policy.encode()
        if not table.schema.equals(schema):
            table = table.cast(schema)
        table = _sorted(table, name).replace_schema_metadata(metadata)
        # the raw layer's JSON texts are all different: a dictionary would only cost time
        options = {"use_dictionary": False} if name in RAW_SCHEMAS else {}
        write_parquet_atomic(table, self.partition_path(name, month), **options)

    def upsert_orders(
        self,
        flat: Flattened,
        raw: Iterable[dict[str, Any]] | pa.Table,
        *,
        policy: str,
        observed_at: dt.datetime,
    ) -> UpsertCounts:
        """Upsert a flattened batch of orders, their raw JSON, and the state changes seen.

        For each order id, the copy with the latest ``modified_date`` wins: all of the losing
        copy's rows (items, addresses) are replaced by the winner's. Partitions without a
        winning row are not rewritten.

        ``raw`` is the batch's records as flattened (secrets stripped, PII policy applied), or
        their raw-layer table already made (:func:`~omsframe.pageflat.raw_orders_table`).
        """
        orders = flat.tables["orders"]
        counts = UpsertCounts()
        if orders.num_rows == 0:
            return counts
        raw_table = raw if isinstance(raw, pa.Table) else raw_orders_table(orders, raw)
        incoming = {name: flat.tables[name] for name in ORDER_GROUP}
        incoming["raw_orders"] = raw_table
        order_months = _months(orders, "date_placed")
        stale = self._move_out(orders, order_months)
        if stale:
            counts.stale += len(stale)
            skip = pa.array(sorted(stale), pa.int64())
            incoming = {
                name: table.filter(pc.invert(pc.is_in(table.column("order_id"), value_set=skip)))
                for name, table in incoming.items()
            }
            order_months = _months(incoming["orders"], "date_placed")
        months_of = {name: _months(table, PARTITION_DATE[name]) for name, table in incoming.items()}
        for month in pc.unique(order_months).to_pylist():
            in_month = {
                name: table.filter(pc.equal(months_of[name], month))
                for name, table in incoming.items()
            }
            counts.add(self._upsert_order_month(month, in_month, policy, observed_at))
        self._order_months().update(
            zip(
                incoming["orders"].column("order_id").to_pylist(),
                order_months.to_pylist(),
                strict=True,
            )
        )
        return counts

    def _order_months(self) -> dict[int, str]:
        """The month partition of every stored order (read once per Store, then kept current)."""
        if self._index is None:
            index: dict[int, str] = {}
            for month in self.months("orders"):
                path = self.partition_path("orders", month)
                ids = pq.read_table(path, columns=["order_id"]).column(0).to_pylist()
                index.update(dict.fromkeys(ids, month))
            self._index = index
        return self._index

    def _move_out(self, orders: pa.Table, months: pa.Array) -> set[int]:
        """Take orders whose ``date_placed`` now falls in another month out of their old one.

        Only when the incoming copy is newer; the ids of older incoming copies are returned
        (to be skipped). The old month is emptied before the new one is written, and its
        `orders` row goes last: a sync killed in between still finds the order in its old
        month and moves it again on resume — never stored twice.
        """
        index = self._order_months()
        moving: dict[str, list[int]] = {}  # old month -> rows of `orders` that leave it
        for row, (order_id, month) in enumerate(
            zip(orders.column("order_id").to_pylist(), months.to_pylist(), strict=True)
        ):
            old = index.get(order_id)
            if old is not None and old != month:
                moving.setdefault(old, []).append(row)
        stale: set[int] = set()
        for old, rows in moving.items():
            candidates = orders.take(pa.array(rows, pa.int64()))
            ids = column_array(candidates.column("order_id"))
            current = self.read_partition("orders", old)
            if current is None:
                leaves = pa.array(np.ones(len(ids), np.bool_))
            else:
                position = pc.index_in(ids, value_set=column_array(current.column("order_id")))
                previous = column_array(current.column("modified_date")).take(position)
                leaves = pc.or_(
                    pc.is_null(position),
                    newer_mask(column_array(candidates.column("modified_date")), previous),
                )
            stale.update(ids.filter(pc.invert(leaves)).to_pylist())
            gone = ids.filter(leaves)
            if len(gone) == 0:
                continue
            # `orders` last, as in a normal upsert: a sync killed midway finds the order still
            # stored in its old month (all of it) and moves it again
            for name in ("order_items", "addresses", "raw_orders", "orders"):
                part = current if name == "orders" else self.read_partition(name, old)
                if part is not None:
                    kept = part.filter(pc.invert(pc.is_in(part.column("order_id"), value_set=gone)))
                    self._write(
                        name, old, kept, self._policy_of(part) if name in ORDER_GROUP else None
                    )
            for order_id in gone.to_pylist():
                index.pop(order_id, None)
        return stale

    @staticmethod
    def _policy_of(table: pa.Table) -> str | None:
        value = (table.schema.metadata or {}).get(b"omsframe.pii_policy")
        return value.decode() if value else None

    def _upsert_order_month(
        self, month: str, incoming: dict[str, pa.Table], policy: str, observed_at: dt.datetime
    ) -> UpsertCounts:
        counts = UpsertCounts()
        existing_orders = self.read_partition("orders", month)
        new_orders = incoming["orders"]
        ids = column_array(new_orders.column("order_id"))
        modified = column_array(new_orders.column("modified_date"))
        state = column_array(new_orders.column("state_code"))
        if existing_orders is None:
            position = pa.nulls(len(ids), pa.int32())
            previous_modified = pa.nulls(len(ids), modified.type)
            previous_state = pa.nulls(len(ids), state.type)
        else:
            stored_ids = column_array(existing_orders.column("order_id"))
            position = pc.index_in(ids, value_set=stored_ids)
            previous_modified = column_array(existing_orders.column("modified_date")).take(position)
            previous_state = column_array(existing_orders.column("state_code")).take(position)
        is_new = pc.is_null(position)
        is_newer = pc.and_(pc.invert(is_new), newer_mask(modified, previous_modified))
        same = pc.and_(pc.invert(is_new), same_mask(modified, previous_modified))
        counts.new = count_true(is_new)
        counts.updated = count_true(is_newer)
        counts.unchanged = count_true(same)
        counts.stale = len(ids) - counts.new - counts.updated - counts.unchanged
        if counts.new + counts.updated == 0:
            return counts
        won = ids.filter(pc.or_(is_new, is_newer))
        # a new order enters its state; an updated one is recorded only when its state moved
        moved = pc.or_(is_new, pc.and_(is_newer, pc.invert(same_mask(state, previous_state))))
        if count_true(moved):  # idempotent (keyed by order and time), so it may safely go first
            observed = pa.scalar(observed_at, TIME)
            history = pa.Table.from_arrays(
                [
                    ids.filter(moved),
                    previous_state.filter(moved),  # null for a new order
                    state.filter(moved),
                    pc.coalesce(modified, observed).filter(moved),
                    pa.repeat(observed, count_true(moved)),
                    column_array(new_orders.column("date_placed")).filter(moved),
                ],
                schema=arrow_schema("state_history"),
            )
            self._append_history(month, history, policy)
        # `orders` goes last: it is what marks an order as stored, so a sync killed between
        # these writes finds the order still to do and rewrites its items and addresses too
        for name in ("order_items", "addresses", "raw_orders", "orders"):
            current = existing_orders if name == "orders" else self.read_partition(name, month)
            fresh = incoming[name].filter(
                pc.is_in(incoming[name].column("order_id"), value_set=won)
            )
            if current is not None:
                replaced = pc.is_in(current.column("order_id"), value_set=won)
                if pc.any(replaced).as_py():  # else keep every stored row, without a copy
                    current = current.filter(pc.invert(replaced))
                if not fresh.schema.equals(current.schema):
                    fresh = fresh.cast(current.schema)
                fresh = pa.concat_tables([current, fresh])
            self._write(name, month, fresh, policy if name in ORDER_GROUP else None)
            counts.partitions_written += 1
        return counts

    def _append_history(self, month: str, incoming: pa.Table, policy: str) -> None:
        """Add state changes to a month of ``state_history``, skipping those already stored."""
        current = self.read_partition("state_history", month)
        if current is not None:
            stored_keys, incoming_keys = row_keys(current, incoming, SORT_KEYS["state_history"])
            fresh = pc.invert(pc.is_in(incoming_keys, value_set=stored_keys))
            incoming = pa.concat_tables([current, incoming.filter(fresh).cast(current.schema)])
        self._write("state_history", month, incoming, policy)

    def upsert_entities(self, flat: Flattened, *, policy: str) -> UpsertCounts:
        """Upsert customers, products, channels and states (latest stamp wins, else newest)."""
        counts = UpsertCounts()
        for name, stamp in ENTITY_STAMPS.items():
            incoming = flat.tables.get(name)
            if incoming is None or incoming.num_rows == 0:
                continue
            current = self.read_partition(name, None)
            merged, changed = merge_latest(current, incoming, SORT_KEYS[name], stamp)
            if changed:
                self._write(name, None, merged, policy)
                counts.partitions_written += 1
        return counts

    def upsert_events(
        self, flat: Flattened, raw: Iterable[dict[str, Any]], *, policy: str
    ) -> UpsertCounts:
        """Upsert webhook events and their raw JSON, by event id (latest ``modified_date`` wins)."""
        events = flat.tables["events"]
        counts = UpsertCounts()
        if events.num_rows == 0:
            return counts
        by_id = {r["id"]: r for r in raw if isinstance(r, dict) and isinstance(r.get("id"), int)}
        raw_table = pa.table(
            {
                "event_id": events.column("event_id"),
                "created_date": events.column("created_date"),
                "modified_date": events.column("modified_date"),
                "record": pa.array(
                    [
                        orjson.dumps(by_id[i]).decode() if i in by_id else None
                        for i in events.column("event_id").to_pylist()
                    ],
                    pa.string(),
                ),
            },
            schema=RAW_SCHEMAS["raw_events"],
        )
        months = _months(events, "created_date")
        for month in pc.unique(months).to_pylist():
            mask = pc.equal(months, month)
            for name, table in (
                ("events", events.filter(mask)),
                ("raw_events", raw_table.filter(mask)),
            ):
                current = self.read_partition(name, month)
                merged, changed = merge_latest(
                    current,
                    table,
                    ["event_id"],
                    "modified_date",
                    counts if name == "events" else None,
                )
                if changed:
                    self._write(name, month, merged, policy if name == "events" else None)
                    counts.partitions_written += 1
        return counts

    def add_quarantine(self, entries: list[QuarantinedRecord], seen_at: dt.datetime) -> None:
        """Keep records that could not be flattened (their id, reason and stripped JSON)."""
        if not entries:
            return
        incoming = pa.Table.from_pylist(
            [
                {
                    "kind": e.kind,
                    "position": e.position,
                    "record_id": None if e.record_id is None else str(e.record_id),
                    "reason": e.reason,
                    "record": e.record,
                    "seen_at": seen_at,
                }
                for e in entries
            ],
            schema=QUARANTINE_SCHEMA,
        )
        path = self.root / "quarantine" / "part.parquet"
        if path.exists():
            current = pq.read_table(path).cast(QUARANTINE_SCHEMA)
            seen = set(
                zip(
                    *(
                        current.column(c).to_pylist()
                        for c in ("kind", "record_id", "reason", "record")
                    ),
                    strict=True,
                )
            )
            fresh = [
                (e.kind, None if e.record_id is None else str(e.record_id), e.reason, e.record)
                not in seen
                for e in entries
            ]
            incoming = pa.concat_tables([current, incoming.filter(pa.array(fresh, pa.bool_()))])
        write_parquet_atomic(incoming, path)

    def read_quarantine(self) -> pa.Table:
        """Every quarantined record so far."""
        path = self.root / "quarantine" / "part.parquet"
        return pq.read_table(path) if path.exists() else QUARANTINE_SCHEMA.empty_table()


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
