"""Tables back from the cache: ``load``, ``cache_info``.

``load`` reads only the month partitions a date range needs and returns pandas DataFrames by
default: money stays exact (``decimal128`` as ``pd.ArrowDtype``), timestamps are tz-aware UTC,
text is pandas' string dtype. ``engine="pyarrow"`` gives Arrow tables, ``engine="polars"``
polars DataFrames.

Example:
    >>> import tempfile
    >>> load(tempfile.mkdtemp() + "/none")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    omsframe.errors.CacheError: no omsframe cache at .../none: the folder does not exist; ...
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from omsframe._display import aligned, html_table
from omsframe.errors import CacheError, ConfigError
from omsframe.lock import CacheLock
from omsframe.manifest import load_manifest, lost_manifest, manifest_path
from omsframe.schema import TABLES
from omsframe.store import Store

Engine = Literal["pandas", "pyarrow", "polars"]
DateLike = dt.datetime | dt.date | str


ENGINES: tuple[Engine, ...] = ("pandas", "pyarrow", "polars")


def _moment(value: DateLike | None, name: str = "since") -> dt.datetime | None:
    """A ``since``/``until`` argument as a UTC datetime (:class:`ConfigError` if it is none).

    Text is ISO 8601: ``"2025-06-01"``, ``"2025-06"`` (the month's first day),
    ``"2025-06-01T12:00:00+03:00"``; a date or a naive datetime means UTC.
    """
    if value is None:
        return None
    given = value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 7 and text[4] == "-":  # a month
            text += "-01"
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"{name}={given!r} is not a date; use text such as '2025-06-01', '2025-06' "
                "or '2025-06-01T12:00:00+03:00', or a date or datetime"
            ) from None
    elif type(value).__name__ == "datetime64":  # numpy's
        value = pd.Timestamp(value).to_pydatetime()
    if not isinstance(value, dt.date):
        raise ConfigError(
            f"{name} must be a date, a datetime or text such as '2025-06-01', "
            f"not {type(given).__name__}"
        )
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def date_window(
    since: DateLike | None, until: DateLike | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``since`` and ``until`` as UTC datetimes, refused (:class:`ConfigError`) if out of order.

    Example:
        >>> date_window("2025-06", None)
        (datetime.datetime(2025, 6, 1, 0, 0, tzinfo=datetime.timezone.utc), None)
    """
    low, high = _moment(since, "since"), _moment(until, "until")
    if low is not None and high is not None and low >= high:
        raise ConfigError(
            f"since ({low:%Y-%m-%d %H:%M} UTC) is not before until ({high:%Y-%m-%d %H:%M} "
            "UTC): nothing could match; give since the earlier moment"
        )
    return low, high


def table_names(tables: str | Sequence[str] | None) -> list[str]:
    """The tables asked for: all of them for ``None``; one may be given as a text.

    Example:
        >>> table_names("orders"), len(table_names(None)) > 5
        (['orders'], True)
    """
    if tables is None:
        return list(TABLES)
    names = [tables] if isinstance(tables, str) else list(tables)
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise ConfigError(
            f"unknown table(s) {', '.join(map(str, unknown))}; choose from {', '.join(TABLES)}"
        )
    return list(dict.fromkeys(names))


def require_cache(root: Path) -> None:
    """Refuse a folder that holds no cache (:class:`CacheError`): a mistyped path, a file.

    Example:
        >>> import tempfile
        >>> require_cache(Path(tempfile.mkdtemp()))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        omsframe.errors.CacheError: no omsframe cache at ...: it has no manifest.json; ...
    """
    advice = "check the path, or fill the cache first with omsframe.sync(url, cache=...)"
    if not root.exists():
        raise CacheError(f"no omsframe cache at {root}: the folder does not exist; {advice}")
    if not root.is_dir():
        raise CacheError(f"no omsframe cache at {root}: it is a file, not a folder; {advice}")
    # (tables without a manifest, which was lost, still read: load says what it knows)
    if not manifest_path(root).exists() and not (root / "tables").is_dir():
        raise CacheError(f"no omsframe cache at {root}: it has no manifest.json; {advice}")


def lost_rows(
    root: Path,
    manifest: dict[str, Any],
    *,
    holding_lock: bool = False,
    raw: bool = True,
    counts: dict[str, int] | None = None,
) -> str | None:
    """What the tables lost against the manifest's counts (a file removed or replaced), if any.

    A finished sync or rebuild saves the tables' row counts in the manifest, and rows are
    never dropped between two of them, so a table with fewer rows than counted has lost a
    file. Not while a sync writes, nor after one stopped midway (the manifest says so): its
    tables may differ from the counts (an order's new copy with fewer items, an order between
    two months, the raw layer compacted), and its next run mends them. ``None`` when nothing
    is missing, or when it cannot be told. ``raw=False``: the tables only (what a reader reads).
    ``counts``: :meth:`Store.counts` if the caller has it already.
    """
    expected = manifest.get("counts")
    if not isinstance(expected, dict) or not expected:
        return None
    if manifest.get("checkpoint") or manifest.get("writing"):
        return None
    if not holding_lock and CacheLock.running(root):
        return None
    names = [name for name in expected if raw or not name.startswith("raw_")]
    counts = Store(root).counts() if counts is None else counts
    lost = [
        (name, counts.get(name, 0), expected[name])
        for name in names
        if isinstance(expected.get(name), int) and counts.get(name, 0) < expected[name]
    ]
    if not lost:
        return None
    what = ", ".join(f"{name} {have:,} of {want:,}" for name, have, want in lost)
    if all(name.startswith("raw_") for name, _, _ in lost):
        advice = (
            "the tables are whole, but a rebuild would now lose orders: restore the raw files "
            "from a backup, or move the folder away and sync anew"
        )
    elif any(name.startswith("raw_") for name, _, _ in lost):
        advice = (
            "the raw layer lost rows too, so a rebuild cannot restore them: restore the files "
            "from a backup, or move the folder away and sync anew"
        )
    else:
        advice = f"run `omsframe rebuild --cache {root}` to rebuild the tables from the raw layer"
    return f"cache {root} has lost rows ({what} counted): a file was removed or replaced; {advice}"


def _interrupted_rebuild(root: Path) -> str | None:
    """What to do about a rebuild killed between its two renames (no ``tables``), if one was."""
    if (root / "tables.old").exists() and not (root / "tables").exists():
        return (
            f"cache {root} is in the middle of an interrupted rebuild; run "
            f"`omsframe rebuild --cache {root}` (or a sync) to finish it"
        )
    return None


def require_intact(root: Path, manifest: dict[str, Any], *, holding_lock: bool = False) -> None:
    """Refuse (:class:`CacheError`) a cache whose tables lost rows (see :func:`lost_rows`).

    The raw layer is not looked at: tables that are whole read right without it (``status``
    says when it lost rows, and a rebuild refuses to lose orders).
    """
    lost = lost_rows(root, manifest, holding_lock=holding_lock, raw=False)
    if lost is not None:
        raise CacheError(lost)


def _arrow_types(data_type: pa.DataType) -> Any:
    """Keep decimals, lists and JSON-free nested types Arrow-backed in pandas (exact, fast)."""
    if pa.types.is_decimal(data_type) or pa.types.is_list(data_type):
        return pd.ArrowDtype(data_type)
    return None


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as pandas with exact decimals (``pd.ArrowDtype``) and UTC timestamps.

    Whole numbers and flags that may be missing (``customer_id``, ``is_active``...) are
    ``pd.ArrowDtype`` too (``int64[pyarrow]``, ``bool[pyarrow]``), whether or not the rows at
    hand miss one: numpy's types would turn them into float64 or object where one is missing.

    Example:
        >>> to_pandas(pa.table({"x": pa.array([1], pa.int64())}))["x"].tolist()
        [1]
    """
    frame: pd.DataFrame = table.to_pandas(types_mapper=_arrow_types)
    for spec, column in zip(table.schema, table.columns, strict=True):
        # a whole number or flag that may be missing keeps its type whatever the rows hold
        # (numpy's would make it float64, or object for flags, wherever one is missing)
        kind = spec.type
        if spec.nullable and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            frame[spec.name] = pd.arrays.ArrowExtensionArray(column)
    return frame


class Tables(Mapping[str, Any]):
    """The loaded tables: ``tables.orders`` or ``tables["orders"]``.

    Attributes:
        policy: The PII policy the cache was written with.
        source: Where the data came from (sanitized URL).
        window: The ``since`` and ``until`` they were loaded with (UTC; ``None``: open); the
            ``since`` is the cache's own where it holds a window (see ``held_since``) that
            starts later.
        held_since: Where the cache was synced with ``since=``, the moment its orders start
            (UTC); ``None`` for a cache of every order.
        as_of: How far the data goes: the latest change to an order the last sync saw (UTC;
            ``None`` when not known). The period it falls in is partial (see
            :func:`omsframe.revenue`).

    Example:
        >>> import pandas as pd
        >>> t = Tables({"orders": pd.DataFrame({"order_id": [1]})}, policy="drop", source=None)
        >>> t.orders["order_id"].tolist(), list(t), t.policy
        ([1], ['orders'], 'drop')
    """

    def __init__(
        self,
        frames: dict[str, Any],
        *,
        policy: str | None,
        source: str | None,
        window: tuple[dt.datetime | None, dt.datetime | None] = (None, None),
        as_of: dt.datetime | None = None,
        held_since: dt.datetime | None = None,
    ):
        self._frames = frames
        self.policy = policy
        self.source = source
        self.window = window
        self.as_of = as_of
        self.held_since = held_since

    def __getitem__(self, name: str) -> Any:
        return self._frames[name]

    def __getattr__(self, name: str) -> Any:
        frames = self.__dict__.get("_frames", {})
        if name in frames:
            return frames[name]
        raise AttributeError(f"no table {name!r}; loaded: {', '.join(frames)}")

    def __iter__(self) -> Iterator[str]:
        return iter(self._frames)

    def __dir__(self) -> list[str]:  # the tables too, for completion in Jupyter
        return [*super().__dir__(), *self._frames]

    def __len__(self) -> int:
        return len(self._frames)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(frame):,}" for name, frame in self._frames.items())
        return f"Tables({sizes}; pii={self.policy})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{name}</td><td style='text-align:right'>{len(frame):,}</td></tr>"
            for name, frame in self._frames.items()
        )
        return (
            f"<table><caption>omsframe tables (PII: {self.policy})</caption>"
            f"<tr><th>table</th><th>rows</th></tr>{rows}</table>"
        )


def load(
    path: str | os.PathLike[str],
    *,
    since: DateLike | None = None,
    until: DateLike | None = None,
    tables: str | Sequence[str] | None = None,
    engine: Engine = "pandas",
    offline: bool = True,
    **sync_options: Any,
) -> Tables:
    """Load tables from a cache folder, reading only the partitions a date range needs.

    Args:
        path: The cache folder (e.g. ``"data/acme-oms.akinon.net"``).
        since: Keep orders (and their items, addresses, state changes) placed at or after
            this moment, and events created from it; a date means midnight UTC (also as
            text: ``"2025-06-01"``, ``"2025-06"``, ISO 8601). Customers, products, channels
            and states are not filtered.
        until: ... placed before this moment.
        tables: Which tables (default: all of ``omsframe.schema.TABLES``; one may be given
            as a text).
        engine: ``"pandas"`` (default), ``"pyarrow"`` or ``"polars"``.
        offline: ``True`` (default) never touches the network; ``False`` first brings the
            cache up to date with :func:`omsframe.sync` (credentials from the environment or
            ``sync_options``).
        **sync_options: Passed to :func:`omsframe.sync` when ``offline=False``.

    Returns:
        :class:`Tables`, a mapping of table name to frame.

    Raises:
        CacheError: There is no cache at ``path``, or a file of it is damaged.
        ConfigError: An unknown table or engine, a date that is none, or ``since`` not
            before ``until``.
        TypeError: An unknown keyword (``sync_options`` are taken with ``offline=False`` only).

    Example:
        >>> import tempfile
        >>> from omsframe.simulator.server import serve
        >>> from omsframe.sync import sync
        >>> cache = tempfile.mkdtemp()
        >>> with serve() as oms:
        ...     _ = sync(oms.url, token=oms.token, cache=cache, events=False, progress=False)
        >>> t = load(cache, since="2025-06-01", tables=["orders", "order_items"])
        >>> sorted(t.order_items["price_currency"].unique())
        ['eur', 'try', 'usd']
    """
    root = Path(path)
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if offline and sync_options:
        raise TypeError(
            f"load() got unexpected keyword argument(s) {', '.join(sync_options)} "
            "(options of omsframe.sync are taken with offline=False only)"
        )
    names = table_names(tables)
    low, high = date_window(since, until)
    if not offline:
        from omsframe.sync import sync

        sync(cache=root, **{"progress": False, **sync_options})
    require_cache(root)
    interrupted = _interrupted_rebuild(root)
    if interrupted is not None:
        raise CacheError(interrupted)
    manifest = load_manifest(root)
    require_intact(root, manifest)
    store = Store(root)
    frames: dict[str, Any] = {}
    for name in names:
        table = store.read_table(name, low, high)
        if engine == "pyarrow":
            frames[name] = table
        elif engine == "polars":
            import polars as pl

            frames[name] = pl.from_arrow(table)
        else:
            frames[name] = to_pandas(table)
    held = manifest.get("since")
    held_since = date_window(held, None)[0] if held else None
    if (
        held_since is not None
        and (low is None or low < held_since)
        and (high is None or held_since < high)
    ):
        low = held_since  # the cache's own window: its orders start there
    return Tables(
        frames,
        policy=manifest.get("pii_policy"),
        source=manifest.get("source_url"),
        window=(low, high),
        as_of=_as_of(manifest),
        held_since=held_since,
    )


def _as_of(manifest: dict[str, Any]) -> dt.datetime | None:
    """The orders' cursor (the latest ``modified_date`` a sync saw), UTC; ``None`` if none."""
    cursor = (manifest.get("cursors") or {}).get("orders")
    try:
        moment = dt.datetime.fromisoformat(cursor) if isinstance(cursor, str) else None
    except ValueError:
        return None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


@dataclass
class CacheInfo:
    """What a cache holds, how fresh it is, and where it came from (see :func:`cache_info`).

    Example:
        >>> print(CacheInfo(path="data/none", exists=False))
        cache  data/none (empty: run `omsframe sync`)
    """

    path: str
    exists: bool
    source: str | None = None
    profile: str | None = None
    pii_policy: str | None = None
    #: the cache holds the orders placed (and events made) from this moment on; ``None``: all
    since: str | None = None
    schema_version: int | None = None
    omsframe_version: str | None = None
    last_sync: str | None = None
    age: dt.timedelta | None = None
    cursors: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    #: every month (``YYYY-MM``, oldest first) with orders placed in it
    months: tuple[str, ...] = ()
    #: orders without a placing date (stored apart from the months)
    undated_orders: bool = False
    unfinished_sync: bool = False
    #: who is syncing (or rebuilding) the cache now, if anyone
    running: str | None = None
    #: what the tables lost against the manifest's counts (a file removed), and what to do
    damage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``)."""
        data = dict(self.__dict__)
        data["age_seconds"] = self.age.total_seconds() if self.age else None
        del data["age"]
        return data

    def _rows(self) -> list[tuple[str, str]]:
        if not self.exists:
            if self.running:
                return [("cache", f"{self.path} (its first sync is running: {self.running})")]
            if self.damage:
                return [("cache", self.path), ("damaged", self.damage)]
            return [("cache", f"{self.path} (empty: run `omsframe sync`)")]
        age = f" ({_human(self.age)} ago)" if self.age else ""
        return [
            ("cache", self.path),
            ("source", self.source or "-"),
            ("last sync", f"{self.last_sync or 'never'}{age}"),
            ("orders", f"{self.rows.get('orders', 0):,} {self._span()}".rstrip()),
            ("items", f"{self.rows.get('order_items', 0):,}"),
            ("events", f"{self.rows.get('events', 0):,}"),
            ("customers", f"{self.rows.get('customers', 0):,}"),
            *((("window", f"orders placed since {self.since}"),) if self.since else ()),
            ("PII policy", self.pii_policy or "-"),
            ("versions", f"omsframe {self.omsframe_version}, schema {self.schema_version}"),
            *((("damaged", self.damage),) if self.damage else ()),
            *(
                (("sync", f"running now ({self.running})"),)
                if self.running
                else (("warning", "a sync did not finish; the next sync resumes it"),)
                if self.unfinished_sync
                else ()
            ),
        ]

    def _span(self) -> str:
        """The months as a line: ``in months 2024-01 .. 2025-06 (18 months)``."""
        if not self.months:
            return "without a placing date" if self.undated_orders else ""
        first, last = self.months[0], self.months[-1]
        whole = (int(last[:4]) - int(first[:4])) * 12 + int(last[5:]) - int(first[5:]) + 1
        gaps = f", {whole - len(self.months)} without orders" if whole > len(self.months) else ""
        undated = ", and some without a placing date" if self.undated_orders else ""
        return f"in months {first} .. {last} ({whole} months{gaps}{undated})"

    def __str__(self) -> str:
        return aligned(self._rows())

    def _repr_html_(self) -> str:
        return html_table(self._rows(), "omsframe cache")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text view (a terminal, a text-only front end): the aligned lines."""
        printer.text(str(self))


def _human(age: dt.timedelta) -> str:
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def cache_info(path: str | os.PathLike[str]) -> CacheInfo:
    """Say what a cache holds, how fresh, from where (reads only the manifest and footers).

    Example:
        >>> import tempfile
        >>> cache_info(tempfile.mkdtemp()).exists
        False
    """
    root = Path(path)
    running = CacheLock.running(root)
    if not manifest_path(root).exists():
        lost = lost_manifest(root)  # tables without a manifest: it was lost
        return CacheInfo(
            path=str(root),
            exists=False,
            running=running,
            damage=None if lost is None else str(lost),
        )
    manifest = load_manifest(root)
    last = manifest.get("last_sync") or {}
    finished = last.get("finished")
    age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(finished) if finished else None
    store = Store(root)
    stored = store.months("orders")
    months = tuple(sorted(m for m in stored if m != "unknown"))
    rows = store.counts()
    return CacheInfo(
        path=str(root),
        exists=True,
        source=manifest.get("source_url"),
        profile=manifest.get("profile"),
        pii_policy=manifest.get("pii_policy"),
        since=manifest.get("since"),
        schema_version=manifest.get("schema_version"),
        omsframe_version=manifest.get("omsframe_version"),
        last_sync=finished,
        age=age,
        cursors=dict(manifest.get("cursors") or {}),
        rows=rows,
        months=months,
        undated_orders="unknown" in stored,
        unfinished_sync=bool(manifest.get("checkpoint") or manifest.get("writing")),
        running=running,
        damage=_interrupted_rebuild(root)
        or (None if running else lost_rows(root, manifest, counts=rows)),
    )
