"""Hand data on (``export``) and rebuild a cache's tables from its raw layer (``rebuild``).

Exports hold the tables only: never the pseudonymization key, the raw layer or the quarantine
(which may hold records as they came). Secrets never reached the tables in the first place.

Example:
    >>> import tempfile
    >>> export(tempfile.mkdtemp(), tempfile.mkdtemp(), format="xls")
    Traceback (most recent call last):
    omsframe.errors.ConfigError: unknown export format 'xls'; use 'parquet' or 'csv'
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from omsframe.atomic import write_atomic, write_parquet_atomic
from omsframe.errors import CacheError, ConfigError
from omsframe.flatten import flatten_events
from omsframe.load import DateLike, date_window, require_cache, require_intact, table_names
from omsframe.lock import CacheLock
from omsframe.manifest import load_manifest, lost_manifest, save_manifest
from omsframe.parallel import iter_flatten_json
from omsframe.privacy import Privacy
from omsframe.schema import TABLES
from omsframe.store import PARTITION_DATE, Store

Format = Literal["parquet", "csv"]


def _csv_ready(table: pa.Table) -> pa.Table:
    """Lists as JSON text and decimals as plain text, so CSV keeps every value exactly."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_list(column.type):
            column = pa.array(
                [None if v is None else orjson.dumps(v).decode() for v in column.to_pylist()],
                pa.string(),
            )
        elif pa.types.is_decimal(column.type):
            column = pc.cast(column, pa.string())
        columns.append((name, column))
    return pa.table(dict(columns))


def export(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    format: Format = "parquet",
    tables: str | Sequence[str] | None = None,
    since: DateLike | None = None,
    until: DateLike | None = None,
) -> list[Path]:
    """Write the cache's tables as one parquet or CSV file each.

    Args:
        path: The cache folder.
        out: The folder to write to (created if missing); files are ``<table>.parquet`` or
            ``<table>.csv``.
        format: ``"parquet"`` (exact types) or ``"csv"`` (money as exact decimal text,
            timestamps as ISO 8601 UTC, lists as JSON).
        tables: Which tables (default: all; one may be given as a text).
        since: Only orders placed (events created) at or after this moment.
        until: ... before this moment.

    Returns:
        The files written (tables with no rows are skipped). The tables' files of an earlier
        export to ``out`` (any format) are removed, so the folder holds only this export's
        tables; other files there are left alone. Where none of the dated tables asked for
        has a row (a window without orders), nothing is written or removed and the list is
        empty: ``out`` keeps what an earlier export put there.

    Raises:
        CacheError: There is no cache at ``path``.
        ConfigError: An unknown format or table, a date that is none, ``since`` not before
            ``until``, or ``out`` is a file.

    Example:
        >>> import tempfile
        >>> from omsframe.simulator.server import serve
        >>> from omsframe.sync import sync
        >>> cache, out = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> with serve() as oms:
        ...     _ = sync(oms.url, token=oms.token, cache=cache, events=False, progress=False)
        >>> [f.name for f in export(cache, out, format="csv", tables=["orders", "channels"])]
        ['orders.csv', 'channels.csv']
    """
    if format not in ("parquet", "csv"):
        raise ConfigError(f"unknown export format {format!r}; use 'parquet' or 'csv'")
    names = table_names(tables)
    low, high = date_window(since, until)
    target = Path(out)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"cannot export into {target}: it is a file; give a folder")
    require_cache(Path(path))
    # a damaged manifest, or tables that lost a file, are refused here as everywhere
    require_intact(Path(path), load_manifest(Path(path)))
    store = Store(path)
    written: list[Path] = []
    # the dated tables first: where none of them has a row (a window without orders), the
    # tables that are not dated are not written either, and nothing is removed
    dated = [name for name in names if name in PARTITION_DATE]
    for name in dated + [name for name in names if name not in PARTITION_DATE]:
        if dated and not written and name not in PARTITION_DATE:
            break
        table = store.read_table(name, low, high)
        if table.num_rows == 0:
            continue
        target.mkdir(parents=True, exist_ok=True)
        file = target / f"{name}.{format}"
        if format == "parquet":
            write_parquet_atomic(table, file)
        else:
            sink = pa.BufferOutputStream()
            pacsv.write_csv(_csv_ready(table), sink)
            write_atomic(file, sink.getvalue().to_pybytes())
        written.append(file)
    if not written:  # nothing to hand on: an earlier export stays whole rather than emptied
        return written
    # no table of an earlier export to ``out`` (another format, or a table not asked for this
    # time) is left to pass for this one's; files of other names are not touched
    for name in TABLES:
        for kind in ("parquet", "csv"):
            file = target / f"{name}.{kind}"
            if file not in written:
                file.unlink(missing_ok=True)
    return written


def rebuild(
    path: str | os.PathLike[str], *, batch_size: int = 5_000, wait: bool | float = False
) -> dict[str, int]:
    """Rebuild every table from the cache's raw layer, offline (after an upgrade, or damage).

    The new tables are built beside the old ones and swapped in at the end, so a failed or
    interrupted rebuild leaves the cache as it was. The state history (observations made by
    syncs, not in the raw JSON) is carried over, and so are the states orders passed through
    (the raw layer holds the orders' latest copies, where a state an order has left may no
    longer show), each refreshed from the raw layer where it shows there.

    Args:
        path: The cache folder.
        batch_size: Orders flattened per batch.
        wait: Wait for a sync of the same cache to finish instead of failing (seconds, or
            ``True`` to wait for as long as it takes).

    Returns:
        Rows per rebuilt table.

    Raises:
        CacheError: There is no cache at ``path``, or a sync is writing it.

    Example:
        >>> import tempfile
        >>> from omsframe.simulator.server import serve
        >>> from omsframe.sync import sync
        >>> cache = tempfile.mkdtemp()
        >>> with serve() as oms:
        ...     _ = sync(oms.url, token=oms.token, cache=cache, events=False, progress=False)
        >>> rebuild(cache)["orders"]
        500
    """
    root = Path(path)
    require_cache(root)
    with CacheLock(root, wait=wait):
        recover_swap(root)
        lost = lost_manifest(root)
        if lost is not None:  # (its PII policy unknown: a rebuild could mix two)
            raise lost
        manifest = load_manifest(root)
        old = Store(root)
        privacy = Privacy(mode=manifest.get("pii_policy") or "pseudonymize", key=old.pii_key())
        staging = root / STAGING
        new = _StagedStore(root, staging)
        try:
            _rebuild_into(root, old, new, privacy, batch_size, manifest.get("counts"))
        except BaseException:  # (Ctrl-C too) the cache as it was, without the half-built copy
            recover_swap(root)
            raise
        manifest["counts"] = old.counts()
        save_manifest(root, manifest)
        return {name: count for name, count in manifest["counts"].items() if name in TABLES}


def _check_rebuilt(root: Path, counted: Any, old: Store, new: Store) -> None:
    """Refuse to swap in tables with fewer orders than the cache held (a raw file lost)."""
    held = counted.get("orders") if isinstance(counted, dict) else None
    if not isinstance(held, int):  # (no counts in the manifest: the old tables', if readable)
        try:
            held = old.counts()["orders"]
        except CacheError:
            held = 0
    rebuilt = new.counts()["orders"]
    if rebuilt < held:
        raise CacheError(
            f"cache {root}: its raw layer holds {rebuilt:,} orders, but the cache held "
            f"{held:,} (a raw file was removed or replaced), so a rebuild would lose orders; "
            "the tables were kept as they were. Restore the raw files from a backup, or move "
            "the folder away and sync anew"
        )


#: where a rebuild builds the new tables, beside the old ones
STAGING = "tables.rebuild"


def _rebuild_into(
    root: Path, old: Store, new: _StagedStore, privacy: Privacy, batch_size: int, counted: Any
) -> None:
    """Build every table from ``old``'s raw layer into ``new``'s staging folder, then swap."""
    staging = new.staging
    observed = dt.datetime.now(dt.UTC)
    try:
        states = old.read_table("states")
    except CacheError:  # (damaged, or of another schema: rebuilt from the raw layer only)
        states = None
    if states is not None and states.num_rows:
        new.carry("states", states, privacy.mode)
    for name in ("raw_orders",):
        texts = (
            text
            for month in old.months(name)
            for text in (old.read_partition(name, month) or pa.table({"record": []}))
            .column("record")
            .to_pylist()
            if text is not None
        )
        for flat in iter_flatten_json(texts, privacy=privacy, batch_size=batch_size):
            new.upsert_batch(flat, [], policy=privacy.mode, observed_at=observed)
    for month in old.months("raw_events"):
        for stem in old.stems("raw_events", month):  # (a file at a time: bounded memory)
            part = old.read_file("raw_events", month, stem)
            if part is None:
                continue
            texts = part.column("record").to_pylist()
            del part
            events = [orjson.loads(t) for t in texts if t is not None]
            new.upsert_events(flatten_events(events, privacy=privacy), [], policy=privacy.mode)
    history = old.table_dir("state_history")
    if history.exists():
        shutil.rmtree(new.table_dir("state_history"), ignore_errors=True)
        shutil.copytree(history, new.table_dir("state_history"))
    _check_rebuilt(root, counted, old, new)
    retired = root / "tables.old"
    shutil.rmtree(retired, ignore_errors=True)
    if (root / "tables").exists():
        os.replace(root / "tables", retired)
    os.replace(staging, root / "tables")
    shutil.rmtree(retired, ignore_errors=True)
    # the customers a killed sync left pending come from orders whose raw rows are stored
    # (or that its next run reads again): the rebuilt customers hold them already
    shutil.rmtree(root / "pending", ignore_errors=True)
    shutil.rmtree(root / DISCARD, ignore_errors=True)


def recover_swap(root: Path) -> None:
    """Finish or undo a table swap that a rebuild killed midway left behind (hold the lock).

    The swap is two renames, ``tables`` -> ``tables.old`` then ``tables.rebuild`` ->
    ``tables``: killed between them, the cache has no ``tables`` at all. The old tables are
    put back (the rebuild can simply run again).
    """
    tables, retired = root / "tables", root / "tables.old"
    if retired.exists() and not tables.exists():
        os.replace(retired, tables)
    _remove_leftovers(root)


#: where a rebuild puts the raw layer's rows it does not keep (it keeps the stored raw layer)
DISCARD = ".rebuild-discard"


def _remove_leftovers(root: Path) -> None:
    """Remove what an unfinished rebuild left beside the tables (hold the lock, tables there).

    Holding the lock, nothing else is building: a staging folder is a killed rebuild's, and
    only takes room (as much as the tables).
    """
    if (root / "tables").exists():
        shutil.rmtree(root / "tables.old", ignore_errors=True)
    shutil.rmtree(root / STAGING, ignore_errors=True)
    shutil.rmtree(root / DISCARD, ignore_errors=True)


class _StagedStore(Store):
    """A store whose tables go to a staging folder; the raw layer is not rewritten."""

    def __init__(self, root: Path, staging: Path):
        super().__init__(root)
        self.staging = staging

    def table_dir(self, name: str) -> Path:
        if name.startswith("raw_"):
            return self.staging.parent / DISCARD / name
        return self.staging / name

    def carry(self, name: str, table: pa.Table, policy: str) -> None:
        """Start an unpartitioned table with the old cache's rows (later upserts refresh them)."""
        self._write(name, None, table, policy)
