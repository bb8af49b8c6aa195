"""The parquet cache: layout, atomic writes, upsert by key, reading by date.

Layout of a cache folder (``data/<profile>/``)::

    manifest.json                      source, versions, cursors, probe, counts, policy, last sync
    .rows.json                         rows per file, by file version (spares reading footers)
    .orders-index.arrow                which file each order is in (see omsframe.layout)
    .pii-key                           the pseudonymization key (owner-only; never exported)
    .lock                              the writer lock (see omsframe.lock)
    tables/orders/month=2024-05/part-00000.parquet   per-order tables, by month of date_placed,
    tables/orders/month=2024-05/part-00001.parquet   in files of at most FILE_ORDERS orders
    tables/order_items/month=.../part-00000.parquet  (the same file names hold the same orders)
    tables/addresses/month=.../part-00000.parquet
    raw/orders/month=.../part-00000.parquet          the stripped raw JSON, to rebuild offline:
                                                     each upsert adds its orders' new copies in
                                                     files of its own (see Store._raw_writes)
    tables/state_history/month=.../part.parquet      one file a month
    tables/events/month=.../part-00012.parquet       by month of the event's created_date, in
    raw/events/month=.../part-00012.parquet          files by ranges of EVENT_SPAN event ids
    tables/customers/part-00000.parquet              customers, by ranges of CUSTOMER_SPAN ids
    pending/customers/part-000000.parquet            a running sync's customers, one file a
                                                     batch, merged in at the end of its read
    tables/products/part.parquet                     one file each: products, channels, states
    quarantine/part.parquet                          records that could not be flattened

Hive-style ``month=`` folders: DuckDB, polars, Spark and Dask read the folder as it is.

Rules: every file is written to a temporary name, flushed and renamed, so a reader never sees
half a file; rows are upserted by key and the latest ``modified_date`` wins (an older copy of an
order never overwrites a newer one); re-applying the same batch changes nothing, which is what
makes a killed sync resumable. Only the files holding orders of a batch are rewritten: an
order stays in the file it first went to (new orders fill a month's last file while it is
small, then go to new files), so a batch of new orders writes new files and an incremental
sync rewrites the few files its changed orders are in — never a whole month, whatever its size.
The ``orders`` file of a file name is written last and is what makes its orders stored: files
of the other tables without it (left by a killed sync) are removed before the next write.
The raw layer is not rewritten: an upsert adds the copies that won to new files of their month,
written before any table file of the batch (a stored order always has its raw copy); the
latest ``modified_date`` of an order among them is its current copy, and a month whose new
files pile up is compacted to one copy an order (see :data:`RAW_SLACK`).

Example:
    >>> import tempfile
    >>> store = Store(tempfile.mkdtemp())
    >>> store.read_table("orders").num_rows
    0
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import functools
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from omsframe.layout import OrderLayout, Place, file_number, read_layout, save_layout
from omsframe.merge import (
    UpsertCounts,
    column_array,
    count_true,
    latest_per_key,
    merge_latest,
    row_keys,
    same_mask,
    versus_stored,
)
from omsframe.pageflat import (
    RAW_EVENTS_SCHEMA,
    RAW_ORDERS_SCHEMA,
    raw_events_table,
    raw_orders_table,
)
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
    "raw_events": RAW_EVENTS_SCHEMA,
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
#: Tables whose files hold the same orders under the same file name (``orders`` is written last).
FILE_GROUP = ("order_items", "addresses", "orders")
#: Orders per file of :data:`FILE_GROUP` (a batch's new orders of a month are cut into such files),
#: and at most per file of the raw layer.
FILE_ORDERS = 2_000
#: Files of a month of the raw layer beyond its ``orders`` files before it is compacted. Each
#: upsert that brings new copies of a month's orders adds a file to the month (an incremental
#: sync: a few small files); rewriting the month's ~10 MB of JSON instead, for a few changed
#: orders, was ~5 % of an incremental's time and ~60 MiB of its peak (BENCHMARKS.md "Sync").
RAW_SLACK = 8
#: A month's last file takes new orders while it holds fewer than this many (else a new file).
SMALL_FILE = 500
#: Customers ids per file of ``customers`` (``part-00003`` holds new customers of ids 49,152 up).
CUSTOMER_SPAN = 16_384
#: A sync's batches of customers wait in ``pending/customers/`` and are merged into the
#: customers files at the end of the read, this many batches' at a time (see
#: :meth:`Store.merge_pending_customers`)
PENDING_GROUP = 16
SINGLE = "part"  # the file name of a table that keeps one file per folder
#: Webhook events in a file of a month: those whose ids are in one range of this many (see
#: Store._event_files); ~9 KB each with its order: ~9 MB of JSON a file at most, and as much in
#: its raw twin. 4,096 held ~90 MiB more at the peak of a daily sync (BENCHMARKS.md)
EVENT_SPAN = 1024
_ROWS_FILE = ".rows.json"  # rows per file, by file version (see Store.counts)
_FILE_NAME = re.compile(r"part(-\d+)?")  # other files in a folder are not the cache's


#: Bytes of tables an incremental sync reads ahead, while its pages arrive, from the files its
#: stored orders are in (see :meth:`Store.read_ahead`); beyond, the upsert reads them itself.
READ_AHEAD_BYTES = 96 * 2**20

#: Threads that write a batch's files (Arrow encodes, compresses and writes without holding the
#: interpreter's lock, and the files of a batch are independent of one another).
WRITE_THREADS = min(4, os.cpu_count() or 1)


def _run_writes(
    writes: Sequence[Callable[[], int]],
    later: Callable[[], Sequence[Callable[[], int]]] | None = None,
) -> list[int]:
    """Run independent file writes side by side; their results in order.

    ``later``: called once ``writes`` are under way, for more writes (run after them): what
    it takes to decide those (reading files, Python work) runs beside the first ones.

    After an error (of a write, or of ``later``) no other write starts (a thread that ends
    the write it is in starts no other, even before the waiting ones are cancelled); the
    error is raised once the writes already under way have ended (none is left running).
    """
    if WRITE_THREADS < 2 or (later is None and len(writes) < 2):
        results = [write() for write in writes]
        return results + ([write() for write in later()] if later is not None else [])
    failed = threading.Event()

    def guarded(write: Callable[[], int]) -> int:
        if failed.is_set():
            return 0  # not started (the error is raised by the write that failed)
        try:
            return write()
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(WRITE_THREADS, thread_name_prefix="omsframe-write") as pool:
        futures = [pool.submit(guarded, write) for write in writes]
        try:
            if later is not None:
                futures += [pool.submit(guarded, write) for write in later()]
            concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        finally:  # an error, or Ctrl-C here: the writes not started yet never start
            for future in futures:
                future.cancel()
    return [future.result() for future in futures if not future.cancelled()]  # raises an error


class _Landed:
    """Writes that others wait for: whether they have all ended, and all ended well."""

    def __init__(self, count: int) -> None:
        self._pending = count
        self._failed = False
        self._ended = threading.Condition()

    def run(self, write: Callable[[], int]) -> int:
        """Run one of the writes waited for."""
        ok = False
        try:
            result = write()
            ok = True
            return result
        finally:
            with self._ended:
                self._pending -= 1
                self._failed = self._failed or not ok
                self._ended.notify_all()

    def then(self, write: Callable[[], int]) -> int:
        """Run ``write`` once the writes waited for have ended well (else raise)."""
        with self._ended:
            self._ended.wait_for(lambda: self._pending == 0 or self._failed)
            if self._failed:
                raise CacheError(
                    "a raw-layer or state-history file of this batch could not be written, so "
                    "its tables were not; the next sync writes them all (nothing already cached "
                    "was changed)"
                )
        return write()


def _first(
    before: dict[str, list[Callable[[], int]]], after: list[tuple[str, Callable[[], int]]]
) -> list[Callable[[], int]]:
    """``before``'s writes, then ``after``'s, each of which waits for those of its key.

    For :func:`_run_writes` (its threads take the writes in this order, so a write waited for
    has always started): the writes of ``after`` start only once the writes of ``before`` under
    the same key (a month) have ended well, and not at all when one failed.

    Example:
        >>> done = []
        >>> writes = _first({"m": [lambda: done.append("raw") or 1]},
        ...                 [("m", lambda: done.append("orders") or 1)])
        >>> _run_writes(writes), done
        ([1, 1], ['raw', 'orders'])
    """
    landed = {key: _Landed(len(writes)) for key, writes in before.items()}
    first = [
        functools.partial(landed[key].run, write)
        for key, writes in before.items()
        for write in writes
    ]
    return first + [
        functools.partial(landed[key].then, write) if key in landed else write
        for key, write in after
    ]


def _cut(table: pa.Table, most: int) -> list[pa.Table]:
    """``table`` in slices of at most ``most`` rows, as even as can be (none if it is empty).

    Example:
        >>> [part.num_rows for part in _cut(pa.table({"x": list(range(5))}), 2)]
        [2, 2, 1]
    """
    pieces = -(-table.num_rows // most)
    if not pieces:
        return []
    sizes = [table.num_rows // pieces + (n < table.num_rows % pieces) for n in range(pieces)]
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    return [table.slice(start, size) for start, size in zip(starts, sizes, strict=True)]


def _counts_file(entry: Any, stamp: list[int]) -> bool:
    """Whether a remembered ``[inode, size, mtime, rows]`` is of the file version ``stamp``."""
    return isinstance(entry, list) and len(entry) == 4 and entry[:3] == stamp


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of a file from another: its inode, size and modification time."""
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _is_part_file(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    return name.endswith(".parquet") and bool(_FILE_NAME.fullmatch(name[: -len(".parquet")]))


def _is_month_folder(entry: os.DirEntry[str]) -> bool:
    return entry.name.startswith("month=") and entry.is_dir()


def _entries(folder: str | Path, wanted: Callable[[os.DirEntry[str]], bool]) -> list[str]:
    """Paths of the entries of ``folder`` that are ``wanted`` (none if it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return [entry.path for entry in entries if wanted(entry)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def schema_of(name: str) -> pa.Schema:
    """The Arrow schema of a stored table (data tables, raw layers)."""
    return RAW_SCHEMAS[name] if name in RAW_SCHEMAS else arrow_schema(name)


@functools.cache
def _text_columns(name: str) -> list[str]:
    return [field.name for field in schema_of(name) if pa.types.is_string(field.type)]


def _months(table: pa.Table, column: str) -> pa.Array:
    """Each row's month of ``column`` (UTC) as ``YYYY-MM``, :data:`UNKNOWN_MONTH` for none.

    Each distinct month is formatted once, not each row: Arrow's ``strftime`` of zoned
    timestamps cost ~1 ms a thousand rows, several times a batch (in an incremental sync's
    store, on the one thread then busy).

    Example:
        >>> t = pa.table({"d": pa.array([0, None, 2**50], pa.timestamp("us", tz="UTC"))})
        >>> _months(t, "d").to_pylist()
        ['1970-01', 'unknown', '2005-09']
    """
    if table.num_rows == 0:
        return pa.array([], pa.string())
    stamps = column_array(table.column(column))
    if getattr(stamps.type, "tz", None) in ("UTC", "+00:00"):
        months = stamps.to_numpy(zero_copy_only=False).astype("datetime64[M]")
        distinct, codes = np.unique(months, return_inverse=True)
        missing = np.isnat(distinct)
        names = np.datetime_as_string(distinct, unit="M")
        if all(len(name) == 7 for name in names[~missing]):  # (years 0001–9999)
            names = np.where(missing, UNKNOWN_MONTH, names)
            return pa.array(names.tolist(), pa.string()).take(pa.array(codes.ravel()))
    return pc.fill_null(pc.strftime(stamps, format="%Y-%m"), UNKNOWN_MONTH)


def _sorted(table: pa.Table, name: str) -> pa.Table:
    # the raw layer needs no order (rebuild reads it whole); a table already in order (stored
    # rows, then newer ids: often) would only be copied by a sort
    if name in RAW_SCHEMAS:
        return table
    keys = SORT_KEYS[name]
    if _in_order(table, keys):
        return table
    return table.sort_by([(key, "ascending") for key in keys])


#: A file's rows are kept as slices of the stored table (no copy) where the orders replaced
#: in it are at most this many runs of rows, else filtered (a copy): every slice is a chunk
#: the parquet writer then goes through, at a cost per chunk and column.
SLICE_RUNS = 32


def _without(table: pa.Table, drop: pa.Array) -> pa.Table:
    """``table`` without the rows of the orders in ``drop``.

    Where those rows are a few runs (an incremental sync that replaces a few orders of a large
    file), the rows kept are slices of ``table``, not a copy: a file group's raw JSON is
    ~10 MB, and its copy was memory fresh from the system, faulted in page by page (a third of
    the page faults of an incremental sync's store). The rows keep their order either way.

    Example:
        >>> t = pa.table({"order_id": [1, 1, 2, 3, 3, 4]})
        >>> _without(t, pa.array([1, 3])).column("order_id").to_pylist()
        [2, 4]
        >>> _without(t, pa.array([9])) is t
        True
    """
    return _dropping(table, pc.is_in(table.column("order_id"), value_set=drop))


def _dropping(table: pa.Table, replaced: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``table`` without the rows where ``replaced`` is true (see :func:`_without`)."""
    where = np.flatnonzero(column_array(replaced).to_numpy(zero_copy_only=False))
    if not len(where):
        return table  # every stored row kept, without a copy
    breaks = np.diff(where) > 1  # between two runs of replaced rows
    starts, ends = where[np.r_[True, breaks]], where[np.r_[breaks, True]] + 1
    if len(starts) > SLICE_RUNS:
        return table.filter(pc.invert(replaced))
    kept = [
        table.slice(begin, end - begin)
        for begin, end in zip(np.r_[0, ends], np.r_[starts, table.num_rows], strict=True)
        if end > begin
    ]
    return pa.concat_tables(kept) if kept else table.slice(0, 0)


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


def _split(table: pa.Table, codes: pa.Array, count: int) -> list[pa.Table]:
    """The rows of ``table`` for each code ``0 .. count-1`` (``codes``: one per row).

    Rows come in code order in a full sync (orders by date, new files in turn): then each
    part is a slice, without a copy. Otherwise one stable sort by code, then slices.
    """
    numbers = codes.to_numpy(zero_copy_only=False)
    if len(numbers) > 1 and bool(np.any(numbers[1:] < numbers[:-1])):
        order = np.argsort(numbers, kind="stable")
        table, numbers = table.take(pa.array(order)), numbers[order]
    ends = np.cumsum(np.bincount(numbers, minlength=count)).tolist()
    starts = [0, *ends][:count]
    return [table.slice(start, end - start) for start, end in zip(starts, ends, strict=True)]


def _against(
    existing: pa.Table | None, orders: pa.Table
) -> tuple[pa.Table, pa.Array, pa.Array, pa.Array]:
    """Incoming ``orders`` against a stored ``orders`` file (``None``: none stored).

    Returns the stored rows (empty for none), then per incoming order the position of its
    stored copy (null when new), whether it is newer, and whether it is the same copy.
    """
    stored = existing if existing is not None else arrow_schema("orders").empty_table()
    position, newer, same = versus_stored(
        column_array(orders.column("order_id")),
        column_array(orders.column("modified_date")),
        column_array(stored.column("order_id")),
        column_array(stored.column("modified_date")),
    )
    return stored, position, newer, same


@dataclass
class _Decision:
    """What an upsert does with one file: the counts, ids that win (and are new), history."""

    counts: UpsertCounts
    won: pa.Array
    new: pa.Array
    history: pa.Table | None
    existing: pa.Table | None


class Store:
    """A cache folder. Writing methods expect the caller to hold the writer lock.

    Args:
        root: The cache folder (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self._index: OrderLayout | None = None
        # the row count of each file this Store wrote, by its path relative to the root, with
        # the file's inode, size and modification time (as in .rows.json: see counts)
        self._written: dict[str, list[int]] = {}
        self._rows: dict[str, list[int]] | None = None  # every file's, as counts() last saw
        # files read ahead for the next upsert (see read_ahead): each with its stamp then
        self._ahead: dict[Path, tuple[tuple[int, int, int], pa.Table]] = {}
        self._ahead_places: set[Place] = set()
        self._ahead_bytes = 0
        #: a copy as recent as the stored one replaces it too (an explicit full sync: content
        #: can change without a new modified_date, and a damaged raw copy is written anew)
        self.refresh = False
        # orders the current upsert took out of another month's file, with their state there
        self._came_from: dict[int, str | None] = {}

    # --- paths --------------------------------------------------------------------------------
    def table_dir(self, name: str) -> Path:
        """Folder of a table (raw layers live under ``raw/``)."""
        if name.startswith("raw_"):
            return self.root / "raw" / name.removeprefix("raw_")
        return self.root / "tables" / name

    def file_path(self, name: str, month: str | None, stem: str = SINGLE) -> Path:
        """One file of a table (``month=None`` for unpartitioned tables)."""
        folder = self.table_dir(name)
        return (folder / f"month={month}" if month else folder) / f"{stem}.parquet"

    def stems(self, name: str, month: str | None) -> list[str]:
        """The file names (without ``.parquet``) of a month of a table, in order."""
        folder = self.table_dir(name)
        folder = folder / f"month={month}" if month else folder
        names = (os.path.basename(p)[: -len(".parquet")] for p in _entries(folder, _is_part_file))
        return sorted(names, key=file_number)

    def months(self, name: str) -> list[str]:
        """Months present for a partitioned table, sorted."""
        months = (
            os.path.basename(folder).removeprefix("month=")
            for folder in _entries(self.table_dir(name), _is_month_folder)
        )
        return sorted(month for month in months if self.stems(name, month))

    def counts(self) -> dict[str, int]:
        """Rows per stored table, from the parquet footers.

        A file's count is kept in ``.rows.json`` beside the manifest, with the file's inode,
        size and modification time: a footer is read again only for a file written since (a
        sync rewrites a few files; ~300 footers took ~40 ms of every incremental sync), and not
        even then when this Store wrote it (it knows how many rows it wrote). The cache of
        counts is optional: missing, damaged or not writable, it is rebuilt or skipped.
        """
        path = self.root / _ROWS_FILE
        try:
            known = orjson.loads(path.read_bytes())
            if not isinstance(known, dict):
                known = {}
        except (OSError, orjson.JSONDecodeError):
            known = {}
        seen: dict[str, list[int]] = {}
        result: dict[str, int] = {}
        for name in (*TABLES, "raw_orders", "raw_events"):
            total = 0
            for file, stat in self._files(name):
                key = os.path.relpath(file, self.root)
                stamp = list(_stamp(stat))
                entry: Any = known.get(key)
                if not _counts_file(entry, stamp):
                    entry = self._written.get(key)  # written here: its count is known
                if not _counts_file(entry, stamp):
                    entry = [*stamp, self._footer_rows(Path(file))]
                seen[key] = entry
                total += entry[3]
            result[name] = total
        self._rows = seen
        if seen != known:
            with contextlib.suppress(CacheError):  # (a read-only cache: counted each time)
                write_atomic(path, orjson.dumps(seen))
        return result

    def _files(self, name: str) -> Iterator[tuple[str, os.stat_result]]:
        """The files of a table (what :meth:`months` and :meth:`stems` list), with their stat."""
        for file in self._paths(name):
            yield file, os.stat(file)

    def _paths(self, name: str) -> Iterator[str]:
        """The paths of the files of a table (what :meth:`months` and :meth:`stems` list)."""
        folders = [os.fspath(self.table_dir(name))]
        if name in PARTITION_DATE:
            folders = _entries(folders[0], _is_month_folder)
        for folder in sorted(folders):
            yield from sorted(_entries(folder, _is_part_file))

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
        if any((self.root / "tables").glob("*/**/part*.parquet")):
            raise CacheError(
                f"{path} is missing but {self.root} already holds pseudonymized tables; restore "
                "the key from a backup (a new key would no longer join returning customers), or "
                "start a new cache"
            )
        key = secrets.token_bytes(32)
        write_atomic(path, key)
        return key

    # --- reading --------------------------------------------------------------------------------
    def _unreadable(self, path: Path, error: Exception) -> CacheError:
        what = f"cannot read {path}: {(str(error).splitlines() or [''])[0][:120]}"
        if Path(self.root, "raw") in Path(path).parents:  # a rebuild reads it: no way out there
            return CacheError(
                f"{what}; it is a raw file, which a rebuild needs: move it out of the cache "
                f"and run `omsframe sync --full --cache {self.root}` (with the cache's URL) to "
                "read every order again and write its raw copies anew"
            )
        return CacheError(
            f"{what}; run `omsframe rebuild --cache {self.root}` to rebuild the tables from the "
            "raw layer"
        )

    def _footer_rows(self, path: Path) -> int:
        try:
            rows: int = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowInvalid) as error:
            raise self._unreadable(path, error) from None
        return rows

    def _read_file(self, path: Path, name: str) -> pa.Table:
        ahead = self._ahead.pop(path, None)
        if ahead is not None:
            with contextlib.suppress(OSError):
                if _stamp(path.stat()) == ahead[0]:  # (else written since: read again)
                    return ahead[1]
        try:
            with pq.ParquetFile(path) as file:  # lighter than pq.read_table for one file
                table = file.read()
        except (OSError, pa.ArrowInvalid) as error:
            raise self._unreadable(path, error) from None
        expected = schema_of(name)
        if not table.schema.remove_metadata().equals(expected.remove_metadata()):
            raise CacheError(
                f"{path} does not have the {name} schema of this omsframe version; "
                f"run `omsframe rebuild --cache {self.root}` to rebuild the cache"
            )
        return table

    def read_ahead(self, ids: Sequence[int]) -> None:
        """Read now the files of the stored orders among ``ids``, for the next upsert to find.

        What an incremental sync does while its pages still arrive (the next upsert then reads
        nothing it was given here): each file of the file groups these orders are in, and their
        months of ``state_history``, up to :data:`READ_AHEAD_BYTES` of tables. A file written
        in between is read again; what the upsert did not use is let go after it.

        Example:
            >>> import tempfile
            >>> store = Store(tempfile.mkdtemp())
            >>> store.read_ahead([1, 2])  # nothing stored: nothing to read
            >>> store._ahead
            {}
        """
        layout = self._layout()
        places = dict.fromkeys(place for place in layout.lookup(list(ids)) if place is not None)
        months = {month for month, _ in self._ahead_places}
        for place in places:
            if place in self._ahead_places or self._ahead_bytes >= READ_AHEAD_BYTES:
                continue
            self._ahead_places.add(place)
            paths = [(name, self.file_path(name, *place)) for name in FILE_GROUP]
            if place[0] not in months:
                months.add(place[0])
                paths += [
                    ("state_history", self.file_path("state_history", place[0], stem))
                    for stem in self.stems("state_history", place[0])
                ]
            for name, path in paths:
                try:
                    stamp = _stamp(path.stat())
                except OSError:
                    continue  # (not there: nothing to read)
                table = self._read_file(path, name)
                self._ahead[path] = (stamp, table)
                self._ahead_bytes += table.nbytes

    def _forget_ahead(self) -> None:
        self._ahead.clear()
        self._ahead_places.clear()
        self._ahead_bytes = 0

    def read_partition(self, name: str, month: str | None) -> pa.Table | None:
        """One partition (all its files), or ``None`` when it does not exist."""
        parts = [self.read_file(name, month, stem) for stem in self.stems(name, month)]
        tables = [part for part in parts if part is not None]
        return pa.concat_tables(tables) if tables else None

    def read_file(self, name: str, month: str | None, stem: str = SINGLE) -> pa.Table | None:
        """One file of a table, or ``None`` when it does not exist."""
        path = self.file_path(name, month, stem)
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
    def _write(
        self,
        name: str,
        month: str | None,
        table: pa.Table,
        policy: str | None,
        stem: str = SINGLE,
    ) -> None:
        schema = schema_of(name)
        metadata = dict(schema.metadata or {})
        if policy:
            metadata[b"omsframe.pii_policy"] = policy.encode()
        if not table.schema.equals(schema):
            table = table.cast(schema)
        table = _sorted(table, name).replace_schema_metadata(metadata)
        # the raw layer's JSON texts are all different: a dictionary would only cost time; it
        # keeps zstd (large, very compressible, rarely read), at level 1: as small as the
        # default level 3 for these texts, in half the time. The tables use lz4: zstd builds a
        # context for each column of each file (~1 s of a 100,000-order sync) and decompresses
        # slower, for files a third smaller. Only text columns are dictionary-encoded: ids,
        # amounts and times are nearly all different (a dictionary cost 10-60 % of a file's
        # write time, for files about as large; see BENCHMARKS.md "Sync")
        options: dict[str, Any] = (
            {"use_dictionary": False, "compression_level": 1}
            if name in RAW_SCHEMAS
            else {"compression": "lz4", "use_dictionary": _text_columns(name)}
        )
        path = self.file_path(name, month, stem)
        write_parquet_atomic(table, path, **options)
        stat = path.stat()
        key = os.path.relpath(path, self.root)
        self._written[key] = [*_stamp(stat), table.num_rows]

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
        copy's rows (items, addresses) are replaced by the winner's. A stored order is
        rewritten in the file it is in; new orders go to their month's last file while it is
        small, else to new files. Files without a winning row are not rewritten.

        ``raw`` is the batch's records as flattened (secrets stripped, PII policy applied), or
        their raw-layer table already made (:func:`~omsframe.pageflat.raw_orders_table`).
        """
        return self._upsert(flat, raw, policy, observed_at, entities=False)

    def upsert_batch(
        self,
        flat: Flattened,
        raw: Iterable[dict[str, Any]] | pa.Table,
        *,
        policy: str,
        observed_at: dt.datetime,
        pend_customers: bool = False,
    ) -> UpsertCounts:
        """:meth:`upsert_orders`, then :meth:`upsert_entities`, their files written side by side.

        What a sync does with each batch. The files of the two are distinct, and each upsert is
        idempotent, so the order in which they land does not matter to a resumed sync.
        ``pend_customers``: the batch's customers are written to a file of their own, to be
        merged later by :meth:`merge_pending_customers` (what a sync does).
        """
        return self._upsert(flat, raw, policy, observed_at, entities=True, pend=pend_customers)

    def _upsert(
        self,
        flat: Flattened,
        raw: Iterable[dict[str, Any]] | pa.Table,
        policy: str,
        observed_at: dt.datetime,
        *,
        entities: bool,
        pend: bool = False,
    ) -> UpsertCounts:
        try:
            counts, writes, placed, raw_months = self._order_writes(flat, raw, policy, observed_at)
            later = (
                functools.partial(self._entity_writes, flat, policy, pend_customers=pend)
                if entities
                else None
            )
            counts.partitions_written += sum(_run_writes(writes, later))
        finally:
            self._forget_ahead()  # (what was read ahead and not used)
        self._place(placed)
        for month in raw_months:
            self._compact_raw(month)
        return counts

    def _order_writes(
        self,
        flat: Flattened,
        raw: Iterable[dict[str, Any]] | pa.Table,
        policy: str,
        observed_at: dt.datetime,
    ) -> tuple[
        UpsertCounts, list[Callable[[], int]], list[tuple[tuple[str, str], pa.Array]], list[str]
    ]:
        """Decide an upsert of orders: its counts, the file writes, the new orders' files.

        Orders that move to another month are moved out, and the state changes appended,
        here; the writes are left to the caller (the raw layer's of a month first, then the
        file groups of that month: see :func:`_first`), then the new orders' files noted in
        the index (:meth:`_place`). Last, the months the raw layer got files in.
        """
        orders = flat.tables["orders"]
        counts = UpsertCounts()
        if orders.num_rows == 0:
            return counts, [], [], []
        raw_table = raw if isinstance(raw, pa.Table) else raw_orders_table(orders, raw)
        incoming = {name: flat.tables[name] for name in ORDER_GROUP}
        stale = self._move_out(orders, _months(orders, "date_placed"), policy)
        if stale:
            counts.stale += len(stale)
            skip = pa.array(sorted(stale), pa.int64())
            incoming = {
                name: table.filter(pc.invert(pc.is_in(table.column("order_id"), value_set=skip)))
                for name, table in incoming.items()
            }
        places, codes = self._places(incoming["orders"])
        order_ids = incoming["orders"].column("order_id")
        per_file = {
            name: _split(
                table,
                codes.take(pc.index_in(table.column("order_id"), value_set=order_ids)),
                len(places),
            )
            for name, table in incoming.items()
        }
        writes: list[tuple[str, Callable[[], int]]] = []
        placed: list[tuple[tuple[str, str], pa.Array]] = []
        histories: dict[str, list[pa.Table]] = {}
        won: list[pa.Array] = []
        for code, place in enumerate(places):
            in_file = {name: parts[code] for name, parts in per_file.items()}
            decision = self._decide(place, in_file["orders"], observed_at)
            counts.add(decision.counts)
            if decision.history is not None:
                histories.setdefault(place[0], []).append(decision.history)
            if len(decision.won):
                write = functools.partial(self._write_file_group, place, in_file, decision, policy)
                writes.append((place[0], write))
                placed.append((place, decision.new))
                won.append(decision.won)
        # a month's raw copies and state changes first (the latter idempotent: keyed by order
        # and time), then its files; on the writing threads, beside the other months' writes
        first = self._raw_writes(raw_table, won)
        raw_months = list(first)
        for month, parts in histories.items():
            write = functools.partial(self._append_history, month, pa.concat_tables(parts), policy)
            first.setdefault(month, []).insert(0, write)
        return counts, _first(first, writes), placed, raw_months

    def _raw_writes(self, raw: pa.Table, won: list[pa.Array]) -> dict[str, list[Callable[[], int]]]:
        """The writes that add the raw copies of the orders that ``won``, by month.

        Each month's copies go to new files of their own (at most :data:`FILE_ORDERS` rows
        each, numbered after the month's last): the files already there are neither read nor
        rewritten. An order's copy with the latest ``modified_date`` is its current one (a
        rebuild upserts them all; the latest wins, as always).
        """
        if not won:
            return {}
        ids = pa.concat_arrays(won)
        if len(ids) < raw.num_rows:  # the copies that lost go; the rest are kept as slices
            # of the batch's where they are a few runs, not a copy (see _without: a batch's
            # raw JSON is ~20 MB, and filtering it was ~13 ms of an incremental's store)
            raw = _dropping(raw, pc.invert(pc.is_in(raw.column("order_id"), value_set=ids)))
        months = _months(raw, "date_placed")
        names = pc.unique(months)
        parts = _split(raw, pc.index_in(months, value_set=names), len(names))
        writes: dict[str, list[Callable[[], int]]] = {}
        for month, part in zip(names.to_pylist(), parts, strict=True):
            stems = self.stems("raw_orders", month)
            number = file_number(stems[-1]) + 1 if stems else 0
            writes[month] = [
                functools.partial(self._append_raw, month, f"part-{number + n:05d}", piece)
                for n, piece in enumerate(_cut(part, FILE_ORDERS))
            ]
        return writes

    def _append_raw(self, month: str, stem: str, rows: pa.Table) -> int:
        self._write("raw_orders", month, rows, None, stem)
        return 1

    def _compact_raw(self, month: str) -> None:
        """Rewrite a month of the raw layer as one copy an order, once its files piled up.

        When the month holds more than :data:`RAW_SLACK` raw files beyond its ``orders``
        files, each order's latest copy is kept (none of an order now stored in another month)
        and written to new files of :data:`FILE_ORDERS` rows; then the old ones are removed.
        Which copies to keep is decided from the files' ids and stamps alone, and the files
        are then read one at a time: memory stays within a file or two, whatever the month's
        size. Killed midway, the month holds old and new files: copies of the same orders,
        which the next compaction or a rebuild sorts out.
        """
        stems = self.stems("raw_orders", month)
        if len(stems) <= len(self.stems("orders", month)) + RAW_SLACK:
            return
        paths = [self.file_path("raw_orders", month, stem) for stem in stems]
        keys = []
        for path in paths:
            with pq.ParquetFile(path) as file:
                keys.append(file.read(columns=["order_id", "modified_date"]))
        both = pa.concat_tables(keys)
        ids = column_array(both.column("order_id"))
        places = self._layout().lookup(ids.to_pylist())
        here = pa.array([place is None or place[0] == month for place in places], pa.bool_())
        keep = column_array(pc.and_(latest_per_key(ids, both.column("modified_date")), here))
        number = file_number(stems[-1]) + 1
        pending: pa.Table | None = None  # kept rows not written yet (fewer than FILE_ORDERS)
        start = 0
        for path, part in zip(paths, keys, strict=True):
            kept = self._read_file(path, "raw_orders").filter(keep.slice(start, part.num_rows))
            start += part.num_rows
            pending = kept if pending is None else pa.concat_tables([pending, kept])
            while pending.num_rows >= FILE_ORDERS:
                self._append_raw(month, f"part-{number:05d}", pending.slice(0, FILE_ORDERS))
                number, pending = number + 1, pending.slice(FILE_ORDERS)
        if pending is not None and pending.num_rows:
            self._append_raw(month, f"part-{number:05d}", pending)
        for path in paths:
            path.unlink()

    def _place(self, placed: list[tuple[tuple[str, str], pa.Array]]) -> None:
        """Note in the index the files that new orders went to (once they are written)."""
        layout = self._layout()
        for place, ids in placed:
            layout.add(place, ids.to_pylist())

    def prepare(self) -> None:
        """Read where every stored order is (else done by the first upsert of orders)."""
        self._layout()

    def _layout(self) -> OrderLayout:
        """Where every stored order is (read once per Store, then kept current).

        From the index the last sync left (see :mod:`omsframe.layout`), and the ``orders``
        files written since.
        """
        if self._index is None:
            files = [(self._place_of(path), _stamp(stat)) for path, stat in self._files("orders")]

            def read_ids(place: Place) -> np.ndarray:
                path = self.file_path("orders", *place)
                try:
                    with pq.ParquetFile(path) as file:
                        ids: np.ndarray = file.read(columns=["order_id"]).column(0).to_numpy()
                except (OSError, pa.ArrowInvalid) as error:
                    raise self._unreadable(Path(path), error) from None
                return ids

            layout = read_layout(self.root, files, read_ids)
            # a killed sync may have left files of a new file name without its `orders` file:
            # their rows were never stored (the batch is read again), so they go
            for name in FILE_GROUP[:-1]:
                for path in self._paths(name):
                    if self._place_of(path) not in layout.sizes:
                        Path(path).unlink(missing_ok=True)
            self._index = layout
        return self._index

    @staticmethod
    def _place_of(path: str) -> Place:
        """The month and file name of a file of a partitioned table."""
        folder, name = os.path.split(path)
        return os.path.basename(folder).removeprefix("month="), name.removesuffix(".parquet")

    def save_layout(self) -> None:
        """Leave where every order is for the next sync (once a sync has stored its orders).

        The files and their row counts are those :meth:`counts` saw last (a sync counts
        right before); the next sync reads any written since.
        """
        if self._index is None:
            return
        if self._rows is None:
            self.counts()
        folder = os.path.relpath(self.table_dir("orders"), self.root) + os.sep
        files = [
            (self._place_of(key), (ino, size, mtime), rows)
            for key, (ino, size, mtime, rows) in (self._rows or {}).items()
            if key.startswith(folder)
        ]
        save_layout(self.root, self._index, files)

    def _places(self, orders: pa.Table) -> tuple[list[tuple[str, str]], pa.Array]:
        """The files a batch's orders go to, and the index in that list of each order's file."""
        layout = self._layout()
        months = _months(orders, "date_placed").to_pylist()
        ids = orders.column("order_id").to_pylist()
        code_of: dict[tuple[str, str], int] = {}
        codes = np.zeros(len(ids), np.int64)
        fresh: dict[str, list[int]] = {}
        for row, (place, month) in enumerate(zip(layout.lookup(ids), months, strict=True)):
            if place is None:
                fresh.setdefault(month, []).append(row)
            else:
                codes[row] = code_of.setdefault(place, len(code_of))
        for month, rows in fresh.items():
            start = 0
            for stem, size in layout.place_new(month, len(rows), FILE_ORDERS, SMALL_FILE):
                codes[rows[start : start + size]] = code_of.setdefault((month, stem), len(code_of))
                start += size
        return list(code_of), pa.array(codes)

    def _move_out(self, orders: pa.Table, months: pa.Array, policy: str) -> set[int]:
        """Take orders whose ``date_placed`` now falls in another month out of their old file.

        Only when the incoming copy is newer; the ids of older incoming copies are returned
        (to be skipped). The old file is emptied before the new one is written, and its
        `orders` file goes last: a sync killed in between still finds the order in its old
        file and moves it again on resume — never stored twice.
        """
        layout = self._layout()
        self._came_from = {}
        moving: dict[tuple[str, str], list[int]] = {}  # old file -> rows of `orders` leaving it
        places = layout.lookup(orders.column("order_id").to_pylist())
        for row, (place, month) in enumerate(zip(places, months.to_pylist(), strict=True)):
            if place is not None and place[0] != month:
                moving.setdefault(place, []).append(row)
        stale: set[int] = set()
        for (old, stem), rows in moving.items():
            candidates = orders.take(pa.array(rows, pa.int64()))
            ids = column_array(candidates.column("order_id"))
            current = self.read_file("orders", old, stem)
            stored, position, newer, _ = _against(current, candidates)
            leaves = pc.or_(pc.is_null(position), newer)
            stale.update(ids.filter(pc.invert(leaves)).to_pylist())
            gone = ids.filter(leaves)
            if len(gone) == 0:
                continue
            # the state each had where it was: in its new file it is an update, not a new order
            states = column_array(stored.column("state_code")).take(position.filter(leaves))
            self._came_from.update(zip(gone.to_pylist(), states.to_pylist(), strict=True))
            # `orders` last, as in a normal upsert: a sync killed midway finds the order still
            # stored in its old file (all of it) and moves it again
            self._rewrite_group((old, stem), gone, policy, current)
            layout.remove((old, stem), gone.to_pylist())
        return stale

    def _decide(
        self, place: tuple[str, str], new_orders: pa.Table, observed_at: dt.datetime
    ) -> _Decision:
        """Which incoming orders of one file win, and the state changes they bring."""
        counts = UpsertCounts()
        existing = self.read_file("orders", *place)
        ids = column_array(new_orders.column("order_id"))
        modified = column_array(new_orders.column("modified_date"))
        state = column_array(new_orders.column("state_code"))
        stored, position, newer, same = _against(existing, new_orders)
        previous_state = column_array(stored.column("state_code")).take(position)
        is_new = pc.is_null(position)
        is_newer = pc.and_(pc.invert(is_new), newer)
        same = pc.and_(pc.invert(is_new), same)
        replaces = pc.or_(is_newer, same) if self.refresh else is_newer
        won = ids.filter(pc.or_(is_new, replaces))
        arrived = is_new
        came = self._came_in(ids, is_new)
        if came is not None:  # from another month: updates, with the state they had there
            came_mask, came_state = came
            previous_state = pc.if_else(came_mask, came_state, previous_state)
            arrived = pc.and_(is_new, pc.invert(came_mask))
            replaces = pc.or_(replaces, came_mask)
        counts.new = count_true(arrived)
        counts.updated = count_true(is_newer) + count_true(is_new) - counts.new
        counts.unchanged = count_true(same)
        counts.stale = len(ids) - counts.new - counts.updated - counts.unchanged
        # a new order enters its state; a replacing one is recorded only when its state moved
        moved = pc.or_(arrived, pc.and_(replaces, pc.invert(same_mask(state, previous_state))))
        history = None
        if count_true(moved):
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
        return _Decision(counts, won, ids.filter(is_new), history, existing)

    def _came_in(self, ids: pa.Array, is_new: pa.Array) -> tuple[pa.Array, pa.Array] | None:
        """Which of ``ids`` (new to their file) came from another month, and their state there."""
        if not self._came_from:
            return None
        where = pc.index_in(ids, value_set=pa.array(list(self._came_from), pa.int64()))
        states = pa.array(list(self._came_from.values()), pa.string()).take(where)
        return pc.and_(is_new, pc.is_valid(where)), states

    def _write_file_group(
        self,
        place: tuple[str, str],
        incoming: dict[str, pa.Table],
        decision: _Decision,
        policy: str,
    ) -> int:
        """Rewrite one file name of every table of the group with the winning orders."""
        won = decision.won
        fresh = incoming  # every incoming order wins (a full sync): its rows as they are
        if len(won) < incoming["orders"].num_rows:
            fresh = {
                name: table.filter(pc.is_in(table.column("order_id"), value_set=won))
                for name, table in incoming.items()
            }
        self._rewrite_group(place, won, policy, decision.existing, fresh)
        return len(FILE_GROUP)

    def _rewrite_group(
        self,
        place: tuple[str, str],
        drop: pa.Array,
        policy: str,
        orders: pa.Table | None,
        fresh: dict[str, pa.Table] | None = None,
    ) -> None:
        """Rewrite one file name of every table of the group: ``drop`` out, ``fresh`` in.

        ``orders`` is that file as already read (or ``None``). It goes last: it is what marks
        an order as stored, so a sync killed between these writes finds the order still to do
        and rewrites its items and addresses too.
        """
        month, stem = place
        for name in FILE_GROUP:
            current = orders if name == "orders" else self.read_file(name, month, stem)
            rows = fresh[name] if fresh is not None else None
            if current is not None:
                current = _without(current, drop)
                if rows is None:
                    rows = current
                else:
                    if not rows.schema.equals(current.schema):
                        rows = rows.cast(current.schema)
                    rows = pa.concat_tables([current, rows])
            if rows is not None and rows.num_rows:
                self._write(name, month, rows, policy if name in ORDER_GROUP else None, stem)
            elif current is not None:  # its last orders moved to another month: no empty file
                self._remove(name, month, stem)

    def _remove(self, name: str, month: str, stem: str) -> None:
        """Remove a file whose rows all went.

        An emptied month's folder stays (a file of that month may be written beside this, on
        the other writing thread); :meth:`months` lists only months with files.
        """
        path = self.file_path(name, month, stem)
        path.unlink(missing_ok=True)
        self._written.pop(os.path.relpath(path, self.root), None)

    def _append_history(self, month: str, incoming: pa.Table, policy: str) -> int:
        """Add state changes to a month of ``state_history``, skipping those already stored.

        Returns 0 (a write of :func:`_run_writes` that is not one of the tables' files).
        """
        current = self.read_partition("state_history", month)
        if current is not None:
            stored_keys, incoming_keys = row_keys(current, incoming, SORT_KEYS["state_history"])
            fresh = pc.invert(pc.is_in(incoming_keys, value_set=stored_keys))
            incoming = pa.concat_tables([current, incoming.filter(fresh).cast(current.schema)])
        self._write("state_history", month, incoming, policy)
        return 0

    def upsert_entities(self, flat: Flattened, *, policy: str) -> UpsertCounts:
        """Upsert customers, products, channels and states (latest stamp wins, else newest)."""
        counts = UpsertCounts()
        counts.partitions_written = sum(_run_writes(self._entity_writes(flat, policy)))
        return counts

    def _entity_writes(
        self, flat: Flattened, policy: str, *, pend_customers: bool = False
    ) -> list[Callable[[], int]]:
        """The writes of the entity tables the batch brings rows for (each: files written)."""
        writes: list[Callable[[], int]] = []
        for name, stamp in ENTITY_STAMPS.items():
            incoming = flat.tables.get(name)
            if incoming is None or not incoming.num_rows:
                continue
            if name != "customers":
                writes.append(
                    functools.partial(self._upsert_entity, name, SINGLE, stamp, incoming, policy)
                )
            elif pend_customers:
                writes.append(functools.partial(self._pend, incoming))
            else:
                writes += self._customer_writes(incoming, policy)
        return writes

    def _customer_writes(self, incoming: pa.Table, policy: str) -> list[Callable[[], int]]:
        """The writes that upsert customers, one per file they go to (see _customer_files)."""
        stamp = ENTITY_STAMPS["customers"]
        return [
            functools.partial(self._upsert_entity, "customers", stem, stamp, rows, policy)
            for stem, rows in self._customer_files(incoming).items()
        ]

    def _customer_files(self, incoming: pa.Table) -> dict[str, pa.Table]:
        """The customers of a batch by the file each goes to.

        A stored customer stays in the file it is in; a new one goes to the file of its id's
        range (:data:`CUSTOMER_SPAN` ids a file), so that no file grows with the shop: a batch
        merges bounded files, not one holding every customer (its copies were the largest
        thing a sync held at 100,000 orders). A cache from before keeps its customers in
        ``part.parquet``, where they stay.
        """
        return self._range_files("customers", None, incoming, "customer_id", CUSTOMER_SPAN)

    def _range_files(
        self, name: str, month: str | None, incoming: pa.Table, key: str, span: int
    ) -> dict[str, pa.Table]:
        """Rows by the file each goes to: the file it is stored in, else its ``key``'s range."""
        ids = column_array(incoming.column(key)).to_numpy(zero_copy_only=False)
        # each row's file by its number (part-00003: 3; part, of an earlier omsframe: -1):
        # numbers, not names, are what is sorted and grouped (sorting a full sync's ~90,000
        # names was ~80 ms of the ~270 of merging its pending customers)
        numbers = np.maximum(ids, 0) // span
        for stem in self.stems(name, month):
            with pq.ParquetFile(self.file_path(name, month, stem)) as file:
                stored = file.read(columns=[key]).column(0).to_numpy()
            numbers[np.isin(ids, stored)] = file_number(stem)
        files, codes = np.unique(numbers, return_inverse=True)
        parts = _split(incoming, pa.array(codes.astype(np.int64)), len(files))
        names = [SINGLE if n < 0 else f"part-{n:05d}" for n in files.tolist()]
        return dict(zip(names, parts, strict=True))

    def _pending_dir(self) -> Path:
        return self.root / "pending" / "customers"

    def _pending_files(self) -> list[Path]:
        folder = self._pending_dir()
        return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []

    def _pend(self, customers: pa.Table) -> int:
        """Write a batch's customers to a pending file of their own (see upsert_batch)."""
        folder = self._pending_dir()
        folder.mkdir(parents=True, exist_ok=True)
        files = self._pending_files()
        number = int(files[-1].stem.split("-")[1]) + 1 if files else 0
        schema = schema_of("customers")
        if not customers.schema.equals(schema):
            customers = customers.cast(schema)
        write_parquet_atomic(customers, folder / f"part-{number:06d}.parquet")
        return 0

    def merge_pending_customers(self, policy: str) -> int:
        """Merge the customers a sync's batches left pending into the customers files.

        A customer's row is restamped by each new order of theirs, and a batch's customers
        are spread over every id range: merged batch by batch, every customers file was
        rewritten in every batch of a full sync (work that grew as batches × customers, and
        the largest part of a sync's peak memory that grew with the shop). Pending, they are
        merged :data:`PENDING_GROUP` batches at a time, at the end of the read; a pending file
        is deleted once its rows are in the customers files (merging one again changes
        nothing: the latest stamp wins, as always). Returns the files written.
        """
        files = self._pending_files()
        written = 0
        for start in range(0, len(files), PENDING_GROUP):
            group = files[start : start + PENDING_GROUP]
            incoming = pa.concat_tables([self._read_file(path, "customers") for path in group])
            written += sum(_run_writes(self._customer_writes(incoming, policy)))
            del incoming
            for path in group:
                path.unlink()
        for folder in (self._pending_dir(), self._pending_dir().parent):
            with contextlib.suppress(OSError):  # (gone, or not empty)
                folder.rmdir()
        return written

    def _upsert_entity(
        self, name: str, stem: str, stamp: str | None, incoming: pa.Table, policy: str
    ) -> int:
        current = self.read_file(name, None, stem)
        merged, changed = merge_latest(current, incoming, SORT_KEYS[name], stamp)
        if not changed:
            return 0
        self._write(name, None, merged, policy, stem)
        return 1

    def upsert_events(
        self, flat: Flattened, raw: pa.Table | Iterable[dict[str, Any]], *, policy: str
    ) -> UpsertCounts:
        """Upsert webhook events and their raw JSON, by event id (latest ``modified_date`` wins).

        ``raw``: the raw layer's rows already made, one for each row of the events table
        (:func:`~omsframe.pageflat.raw_events_table`), or the events as flattened.
        """
        events = flat.tables["events"]
        counts = UpsertCounts()
        if events.num_rows == 0:
            return counts
        if isinstance(raw, pa.Table):
            raw_table = raw
        else:
            by_id = {
                r["id"]: r for r in raw if isinstance(r, dict) and isinstance(r.get("id"), int)
            }
            ids = events.column("event_id").to_pylist()
            raw_table = raw_events_table(events, [by_id.get(i) for i in ids])
        months = _months(events, "created_date")
        distinct = pc.unique(months).to_pylist()
        for month in distinct:
            mask = pc.equal(months, month) if len(distinct) > 1 else None  # (None: no copy)
            # the raw layer first: a stored event always has its raw copy (as an order does)
            for name, table in (
                ("raw_events", raw_table if mask is None else raw_table.filter(mask)),
                ("events", events if mask is None else events.filter(mask)),
            ):
                for stem, rows in self._event_files(name, month, table).items():
                    current = self.read_file(name, month, stem)
                    merged, changed = merge_latest(
                        current,
                        rows,
                        ["event_id"],
                        "modified_date",
                        counts if name == "events" else None,
                    )
                    if changed:
                        policy_of = policy if name == "events" else None
                        self._write(name, month, merged, policy_of, stem)
                        counts.partitions_written += 1
                    del current, merged
        return counts

    def _event_files(self, name: str, month: str, incoming: pa.Table) -> dict[str, pa.Table]:
        """The events (or raw events) of a batch in a month by the file each goes to.

        A stored event stays in the file it is in; a new one goes to the file of its id's
        range (:data:`EVENT_SPAN` ids a file), so that no file grows with the shop: a batch
        merges a few bounded files, not its whole month (a month of a large shop's events,
        each with a whole order, is hundreds of MB). A month stored by an earlier omsframe
        keeps its events in ``part.parquet``, where they stay; its new ones go to range files.
        """
        return self._range_files(name, month, incoming, "event_id", EVENT_SPAN)

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
