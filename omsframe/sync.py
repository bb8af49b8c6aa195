"""One sync: probe the server, plan, page, flatten, store, checkpoint, report.

Plans (the report says which one ran, and why):

- ``full``: every order, ``ordering=id``; the first sync, or ``full=True``.
- ``incremental``: orders with ``modified_date`` at or after the cursor minus the look-back
  window — when :meth:`~omsframe.Client.probe` found the server honours that filter.
- ``full scan``: the server ignores the ``modified_date`` filter, so an incremental sync reads
  everything and keeps only what changed; slower, still exact.

The cursor is the high-water mark taken *before* paging (the newest ``modified_date`` on the
server when the sync began), so anything that changes while a sync runs is picked up by the
next one. After each batch the store is updated and a checkpoint (plan, filters, last id
stored) is written; a sync killed at any moment resumes from it, and because upserts are
idempotent the result equals an uninterrupted sync.

Example:
    >>> from omsframe.simulator.server import serve
    >>> import tempfile
    >>> with serve() as oms:
    ...     report = sync(oms.url, token=oms.token, cache=tempfile.mkdtemp(), progress=False)
    >>> report.plan, report.orders_new
    ('full', 500)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pyarrow as pa

from omsframe.client import Client
from omsframe.config import is_loopback
from omsframe.convert import stamp_key
from omsframe.errors import ApiError, CacheError, ConfigError, NotFoundError, sanitize_url
from omsframe.export import recover_swap
from omsframe.flatten import collector_paused
from omsframe.load import DateLike, date_window, require_intact
from omsframe.lock import CacheLock
from omsframe.manifest import Manifest, load_manifest, lost_manifest, save_manifest
from omsframe.pageflat import PageDecoder, combine
from omsframe.paging import Listing, ProbeResult
from omsframe.privacy import PII_MODES, PiiMode, Privacy
from omsframe.schema import SCHEMA_VERSION
from omsframe.store import Store
from omsframe.sync_report import SyncReport

logger = logging.getLogger(__name__)
Endpoint = Literal["orders", "webhook_events"]
ENDPOINTS: tuple[Endpoint, ...] = ("orders", "webhook_events")
DEFAULT_LOOKBACK = dt.timedelta(minutes=30)
DEFAULT_BATCH = 5_000  # orders stored (and checkpointed) at a time; see BENCHMARKS.md "Sync"


def default_cache(url: str) -> Path:
    """``data/<host>`` (or ``$OMSFRAME_CACHE_ROOT/<host>``) for an OMS URL."""
    host = urlsplit(url).hostname or "oms"
    return Path(os.environ.get("OMSFRAME_CACHE_ROOT", "data")) / host


#: The variable by which a user picks pyarrow's allocator (then a sync keeps that one).
POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


#: How long Arrow keeps freed memory during an incremental sync (Arrow's own default): it
#: reads and rewrites a few files at once, and memory given back at once is faulted in again
#: (~10 % of its time); a full sync gives it back at once (see returning_arrow_memory)
INCREMENTAL_DECAY_MS = 1_000


def _decay_ms(plan: str) -> int:
    """How long Arrow keeps freed memory in a sync of this plan (see INCREMENTAL_DECAY_MS).

    Example:
        >>> _decay_ms("full"), _decay_ms("incremental")
        (0, 1000)
    """
    return INCREMENTAL_DECAY_MS if plan == "incremental" else 0


@contextlib.contextmanager
def returning_arrow_memory(decay_ms: int = 0) -> Iterator[None]:
    """Have Arrow give memory back to the system once freed (after ``decay_ms``), for a while.

    What a sync runs in. Each batch allocates and frees ~100 MiB in pieces of every size;
    pyarrow's default allocator (mimalloc) keeps freed memory for reuse, and over 100,000
    orders the process kept growing. Meanwhile Arrow allocates from its jemalloc, set to purge
    at once by default (or, where pyarrow was built without it, from the system allocator):
    measured, peak 409 MiB against 569, no slower (BENCHMARKS.md "Sync"). jemalloc applies the
    delay to the memory regions it creates from then on: in a process, the first sync sets
    it. A choice of the user's (``ARROW_DEFAULT_MEMORY_POOL``, or a pool set in the program) is
    kept; the previous pool is restored on exit, and memory taken meanwhile is freed where it
    came from.

    Example:
        >>> with returning_arrow_memory():
        ...     inside = pa.default_memory_pool().backend_name
        >>> inside in ("jemalloc", "system")  # (unless ARROW_DEFAULT_MEMORY_POOL says otherwise)
        True
    """
    previous = pa.default_memory_pool()
    if os.environ.get(POOL_VARIABLE) or previous.backend_name != "mimalloc":
        yield
        return
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(decay_ms)
    except NotImplementedError:  # a pyarrow built without jemalloc (Windows)
        pool = pa.system_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _batches(
    records: Iterator[dict[str, Any]],
    size: int,
    meanwhile: Callable[[], object] | None = None,
    arriving: Callable[[list[dict[str, Any]]], object] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Batches of ``size`` records, the next one read while the caller stores this one.

    A reader thread reads one batch ahead and no more: it starts a batch only once the caller
    is done with the one before the batch it handed over (memory: two batches), so the OMS works
    on the next pages while this process flattens and writes. Errors of the reader are raised
    here, in the caller's thread. ``meanwhile`` is called in the caller's thread once the
    reader has started (work the first batch would otherwise wait for); then, until the first
    batch is there, ``arriving`` with the records read since, now and then.
    """
    ahead: queue.Queue[list[dict[str, Any]] | BaseException | None] = queue.Queue(maxsize=1)
    room = threading.Semaphore(2)  # batches alive: the one stored, the one read ahead
    stop = threading.Event()
    seen: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    first_handed = threading.Event()
    if arriving is not None:
        records = _noting(records, seen, first_handed)

    def read() -> None:
        try:
            while room.acquire() and not stop.is_set():
                batch = list(itertools.islice(records, size))
                if not batch:
                    break
                ahead.put(batch)
                del batch  # the caller's now: not kept alive while the next one is read
            ahead.put(None)
        except BaseException as error:  # handed to the caller's thread, raised there
            ahead.put(error)

    reader = threading.Thread(target=read, name="omsframe-sync-reader", daemon=True)
    reader.start()
    try:
        if meanwhile is not None:
            meanwhile()
        item = _first_batch(ahead, seen, arriving) if arriving is not None else ahead.get()
        first_handed.set()
        _drain(seen)  # the records noted since the last look: not held for the whole read
        while item is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
            item = None  # not kept alive while the next batch is awaited
            room.release()  # the caller is done with this batch
            item = ahead.get()
    finally:
        stop.set()
        room.release()  # a reader waiting for room sees `stop`
        while reader.is_alive():  # let a blocked reader finish its put and see `stop`
            with contextlib.suppress(queue.Empty):
                ahead.get(timeout=0.05)


def _noting(
    records: Iterator[Any], seen: queue.SimpleQueue[dict[str, Any]], until: threading.Event
) -> Iterator[Any]:
    """``records`` as they are, each one (a dict) noted in ``seen`` on its way, ``until`` set."""
    for record in records:
        if not until.is_set() and isinstance(record, dict):
            seen.put(record)
        yield record


def _first_batch(
    ahead: queue.Queue[Any],
    seen: queue.SimpleQueue[dict[str, Any]],
    arriving: Callable[[list[dict[str, Any]]], object],
) -> Any:
    """Wait for the reader's first item, handing ``arriving`` the records read meanwhile."""
    while True:
        try:
            return ahead.get(timeout=ARRIVING_EVERY)
        except queue.Empty:
            pass
        came = _drain(seen)
        if came:
            arriving(came)


def _drain(seen: queue.SimpleQueue[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything in ``seen`` now, taken out."""
    came: list[dict[str, Any]] = []
    with contextlib.suppress(queue.Empty):
        while True:
            came.append(seen.get_nowait())
    return came


def _reading_ahead(store: Store, cursor: str | None) -> Callable[[list[dict[str, Any]]], None]:
    """What an incremental read does with the records read before its first batch is there.

    The files of those changed since the last sync (``modified_date`` after its ``cursor``)
    are read ahead (:meth:`~omsframe.store.Store.read_ahead`); those of the look-back window
    before it are mostly stored as they are, and their files are not rewritten (an order of
    it that did change has its files read by the upsert, as without a read-ahead).
    """
    after = stamp_key(cursor)

    def arriving(records: list[dict[str, Any]]) -> None:
        ids = [
            r["id"]
            for r in records
            if r.get("id").__class__ is int and stamp_key(r.get("modified_date")) > after
        ]
        if ids:
            store.read_ahead(ids)

    return arriving


#: How often (seconds) a sync waiting for its first batch looks at the records read meanwhile.
ARRIVING_EVERY = 0.05


def _prepare_orders(store: Store) -> Callable[[], None]:
    """What a read of orders does while its first page loads (see :func:`_batches`)."""

    def prepare() -> None:
        # Arrow's group-by engine (the orders' totals: see omsframe.assemble.group_by), else
        # imported in the middle of the first page
        import pyarrow._acero  # noqa: F401

        store.prepare()

    return prepare


def sync(
    url: str | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    client: Client | None = None,
    full: bool = False,
    events: bool = True,
    lookback: dt.timedelta = DEFAULT_LOOKBACK,
    pii: PiiMode | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = True,
    wait: bool | float = False,
    allow_http: bool = False,
    workers: int | None = None,
    since: DateLike | None = None,
) -> SyncReport:
    """Fill (or bring up to date) a parquet cache from an OMS.

    Args:
        url: The OMS base URL (``OMSFRAME_URL``); for an existing cache, the manifest's.
        cache: The cache folder (default ``data/<host>``).
        token: API key (``OMSFRAME_TOKEN``).
        username: Login user (``OMSFRAME_USERNAME``).
        password: Login password (``OMSFRAME_PASSWORD``).
        client: A ready :class:`~omsframe.Client` instead of url and credentials.
        full: Read every order even when the cache could be brought up to date incrementally,
            and write each one anew from the copy read, even where the stored copy has the same
            ``modified_date`` (content an OMS changed without stamping it; a damaged raw file
            moved away).
        events: Also sync the webhook events.
        lookback: How far before the cursor an incremental sync starts reading.
        pii: PII policy of a new cache (``"pseudonymize"`` by default; ``"keep"``, ``"drop"``);
            an existing cache keeps its own.
        batch_size: Orders flattened and stored per batch (and per checkpoint).
        progress: Show progress bars.
        wait: Wait for another sync of the same cache to finish instead of failing (seconds,
            or ``True`` to wait for as long as it takes).
        allow_http: Allow plain ``http://`` to a host that is not loopback.
        workers: Processes that parse and flatten order pages while this one reads and
            writes: by default one per core once the server says the read holds 20,000
            orders or more, and one beside this process's flattening thread from 1,000
            orders (on more than one core); ``0`` for none; at most four a core.
        since: Only the orders placed (and webhook events made) at or after this moment: a
            ``date``, a ``datetime`` (naive means UTC) or ISO text (``"2025-01-01"``,
            ``"2025-01"``). Set by a cache's first sync and kept by every later one (which may
            leave it out); an earlier moment widens the window (every order and event of the
            new window is read, until that is done, the cache's state history kept), a later
            one is refused. The orders are asked of the server (``date_placed__gte``): a
            server that ignores that filter is refused a window; events made before it are
            left out here where the server ignores ``created_date__gte``.

    Returns:
        The :class:`SyncReport`.

    Raises:
        CacheError: The cache is locked by another sync, damaged, or from another OMS.
        ConfigError: A setting is missing or contradicts the cache (e.g. another PII policy).
        ApiError: The OMS refused or failed beyond the retries.

    Example:
        >>> import tempfile
        >>> from omsframe.simulator.server import serve
        >>> cache = tempfile.mkdtemp()
        >>> with serve() as oms:  # on a real OMS: sync("https://acme-oms.akinon.net")
        ...     first = sync(oms.url, token=oms.token, cache=cache, progress=False)
        ...     again = sync(oms.url, token=oms.token, cache=cache, progress=False)
        >>> first.plan, again.plan, again.orders_new
        ('full', 'incremental', 0)
    """
    started = time.monotonic()
    _check_options(lookback=lookback, pii=pii, batch_size=batch_size, workers=workers, wait=wait)
    asked_since, _ = date_window(since, None)
    if asked_since is not None and asked_since > _now():
        raise ConfigError(
            f"since {_moment(asked_since)} is in the future: no order is placed there yet, and "
            "a cache keeps its window; give a moment in the past"
        )
    root = Path(cache) if cache is not None else None
    if root is not None and url is None and client is None:
        url = load_manifest(root).get("source_url")
    own_client = client is None
    if client is None:
        client = Client(
            url, token=token, username=username, password=password, allow_http=allow_http
        )
    source = sanitize_url(client.settings.url)
    root = root if root is not None else default_cache(client.settings.url)
    report = SyncReport(cache=str(root), source=source)
    before = client.stats
    try:
        if not root.exists():
            # a first answer before anything is made: a wrong URL or token leaves no folder
            client._page_reader("orders")({"page": "1", "limit": "1"})
        window_probe = _window_probe(client, asked_since)  # (nor does a window it cannot ask)
        with CacheLock(root, wait=wait):
            recover_swap(root)
            lost = lost_manifest(root)
            if lost is not None:
                raise lost
            manifest = load_manifest(root)
            _check_cache(root, manifest, source)
            require_intact(root, manifest, holding_lock=True)  # (before anything is written)
            store = Store(root)
            store.refresh = full  # asked for: every order read is written anew
            known = manifest.get("source_url")
            if known and urlsplit(known).port != urlsplit(source).port:
                _check_same_shop(client, store, known, source)
            mode = manifest.get("pii_policy") or pii or "pseudonymize"
            if pii is not None and pii != mode:
                raise ConfigError(
                    f"cache {root} uses PII policy {mode!r}, not {pii!r}; "
                    "keep its policy, or sync into a new cache folder"
                )
            start = _window_start(manifest, asked_since, root)
            if window_probe is not None and start != manifest.get("since"):  # new or wider
                manifest["probe"]["orders"] = window_probe.to_dict()
                if manifest.get("pii_policy") is not None:  # wider: read it whole, until done
                    manifest["widening"] = list(ENDPOINTS)
                    manifest["checkpoint"] = {}  # (an unfinished read of the narrower one)
            privacy = Privacy(mode=mode, key=store.pii_key())
            manifest.update(
                source_url=source,
                profile=manifest.get("profile") or root.name,
                pii_policy=mode,
                since=start,
                schema_version=SCHEMA_VERSION,
            )
            # saved before any table is written: tables without a manifest then mean it was
            # lost, and until the counts are saved at the end the tables may differ from them
            # (a killed sync's: see omsframe.load.lost_rows)
            manifest["writing"] = _now().isoformat(timespec="seconds")
            save_manifest(root, manifest)
            endpoints: tuple[Endpoint, ...] = (
                ("orders", "webhook_events") if events else ("orders",)
            )
            for endpoint in endpoints:
                _sync_endpoint(
                    client,
                    store,
                    manifest,
                    endpoint,
                    privacy,
                    report,
                    full=full,
                    lookback=lookback,
                    batch_size=batch_size,
                    progress=progress,
                    workers=workers,
                    start=date_window(start, None)[0],
                )
            after = client.stats
            report.retries = after.retries - before.retries
            report.throttled = after.throttled - before.throttled
            report.waited_seconds = after.waited_seconds - before.waited_seconds
            report.duration_seconds = time.monotonic() - started
            manifest["counts"] = store.counts()
            manifest.pop("writing", None)
            store.save_layout()  # where every order is, for the next sync
            manifest["last_sync"] = {
                "finished": _now().isoformat(timespec="seconds"),
                **{k: v for k, v in report.to_dict().items() if k not in ("cache", "drift")},
            }
            save_manifest(root, manifest)
    finally:
        if own_client:
            client.close()
    return report


def _check_options(
    *,
    lookback: object,
    pii: object,
    batch_size: object,
    workers: object,
    wait: object,
) -> None:
    """Refuse a bad option before anything is read or written (:class:`ConfigError`)."""
    if not isinstance(lookback, dt.timedelta) or lookback < dt.timedelta(0):
        raise ConfigError(
            f"lookback must be a datetime.timedelta of 0 or more, not {lookback!r}; "
            "e.g. lookback=datetime.timedelta(minutes=30)"
        )
    if pii is not None and pii not in PII_MODES:
        raise ConfigError(f"unknown PII policy {pii!r}; use one of {', '.join(PII_MODES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number of 1 or more, not {batch_size!r}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 0
    ):
        raise ConfigError(
            f"workers must be None (automatic), 0 (none) or a whole number, not {workers!r}"
        )
    cores = os.cpu_count() or 1
    if isinstance(workers, int) and workers > 4 * cores:
        raise ConfigError(
            f"workers={workers} is more than four a core on this machine ({cores} cores): "
            "flattening is bound by the processor; leave workers=None (one a core)"
        )
    if not isinstance(wait, (bool, int, float)) or (
        not isinstance(wait, bool) and not wait >= 0  # also refuses NaN
    ):
        raise ConfigError(f"wait must be True, False or seconds (0 or more), not {wait!r}")


def _check_same_shop(client: Client, store: Store, known: str, source: str) -> None:
    """Refuse another OMS behind the same loopback address on another port (two tunnels).

    On loopback the port is not part of a cache's identity (see :func:`source_identity`), so
    one stored order is looked up by its number: the server must hold it under the same id,
    placed at the same moment. Where the server ignores the ``number`` filter, the order is
    read by its id (the detail endpoint); where that cannot be read either, the sync is
    refused: it cannot tell, and mixing two shops is what it must not do.
    """
    months = store.months("orders")
    stored = store.read_partition("orders", months[0]) if months else None
    if stored is None or stored.num_rows == 0:
        return
    first = stored.slice(0, 1).to_pylist()[0]
    order_id, number, placed = first["order_id"], first["number"], first["date_placed"]
    if number is None:
        return
    page = client._page_reader("orders")({"number": number, "page": "1", "limit": "5"})
    found: list[dict[str, Any]] = [] if page is None else list(page["results"])
    if page is not None and page["count"] > 5:  # the filter was ignored: read it by its id
        try:
            found = [client.order(order_id)]
        except NotFoundError:
            found = []
        except ApiError as error:
            raise CacheError(
                f"cache {store.root} holds data from {known}; {source} on another port ignores "
                f"the number filter and its order {order_id} could not be read ({error}), so "
                f"it cannot be told from another OMS; sync with {known}, or into another "
                "folder (--cache / cache=...)"
            ) from None

    def same(record: dict[str, Any]) -> bool:
        if record.get("id") != order_id:
            return False
        try:
            moment = dt.datetime.fromisoformat(str(record.get("date_placed")))
        except ValueError:
            return True  # (a form of time this check cannot read: the id has to do)
        if placed is None:
            return True
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        gap: dt.timedelta = abs(moment - placed)
        return gap < dt.timedelta(milliseconds=1)

    if not any(same(record) for record in found):
        raise CacheError(
            f"cache {store.root} holds data from {known}, and {source} is another OMS (its "
            f"order {number} is not the one stored, id {order_id} placed {placed}); sync into "
            "another folder (--cache / cache=...) to keep the two apart"
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def source_identity(url: str) -> str:
    """What makes two URLs the same OMS: the URL, without the port on loopback.

    On loopback (the simulator, an SSH tunnel) the port changes from one run to the next,
    while the OMS behind it stays the same.

    Example:
        >>> source_identity("http://127.0.0.1:8765") == source_identity("http://127.0.0.1:9000")
        True
        >>> source_identity("https://a-oms.akinon.net") == source_identity("https://b-oms.akinon.net")
        False
    """
    parts = urlsplit(url)
    if parts.hostname and is_loopback(parts.hostname):
        return f"{parts.scheme}://{parts.hostname}{parts.path.rstrip('/')}"
    return url.rstrip("/")


def _check_cache(root: Path, manifest: Manifest, source: str) -> None:
    known = manifest.get("source_url")
    if known and source_identity(known) != source_identity(source):
        raise CacheError(
            f"cache {root} holds data from {known}, not {source}; "
            "sync into another folder (cache=...) to keep the two apart"
        )
    if manifest.get("schema_version") not in (None, SCHEMA_VERSION):
        raise CacheError(
            f"cache {root} was written with table schema {manifest['schema_version']}, this "
            f"omsframe writes {SCHEMA_VERSION}; run `omsframe rebuild --cache {root}` first"
        )


def _window_start(manifest: Manifest, asked: dt.datetime | None, root: Path) -> str | None:
    """The moment the cache's window starts (``None``: every order), as its manifest keeps it.

    A cache's first sync sets it; a later one keeps it, or widens it to an earlier start (that
    sync reads the whole new window: see :func:`sync`), and refuses a later start.
    """
    wanted = _moment(asked) if asked is not None else None
    if manifest.get("pii_policy") is None:  # (no sync has written to this cache yet)
        return wanted
    held: str | None = manifest.get("since")
    held_start = date_window(held, None)[0] if held else None
    if asked is None or held_start == asked:
        return held
    if held_start is not None and asked < held_start:
        return wanted  # wider: this sync reads the whole new window
    holds = f"the orders placed since {held}" if held else "every order, not a window"
    raise ConfigError(
        f"cache {root} holds {holds}; a sync can widen a window (an earlier since) but not "
        f"narrow it to since {wanted}: sync it without since, or sync the narrower window "
        "into another cache folder"
    )


#: the filter a window asks of each endpoint (on the moment an order was placed, an event made)
WINDOW_FILTER = {"orders": "date_placed__gte", "webhook_events": "created_date__gte"}


def _window_probe(client: Client, start: dt.datetime | None) -> ProbeResult | None:
    """What the server honours, where a window is asked for; refused if it ignores its filter.

    Orders placed before the window could be read and left out here only by leaving out
    with them the customers, products, states and quarantined copies that only they
    brought, which pages flattened together share: the window is the server's to apply.
    """
    if start is None:
        return None
    probe = client.probe("orders")
    if not probe.honours(WINDOW_FILTER["orders"]):
        raise _no_window(start)
    return probe


def _no_window(start: dt.datetime) -> ConfigError:
    return ConfigError(
        f"this OMS ignores the date_placed__gte filter, so it cannot be asked for the orders "
        f"placed since {_moment(start)}; sync without since"
    )


def _plan(
    manifest: Manifest,
    endpoint: Endpoint,
    probe: ProbeResult,
    full: bool,
    lookback: dt.timedelta,
    start: dt.datetime | None = None,
) -> tuple[str, dict[str, Any], list[str], bool]:
    """Choose the plan: (name, filters, notes, resumed)."""
    notes: list[str] = []
    window: dict[str, Any] = {}
    if start is not None:
        if probe.honours(WINDOW_FILTER[endpoint]):
            window[WINDOW_FILTER[endpoint]] = start
        elif endpoint == "orders":
            raise _no_window(start)
        else:
            notes.append(
                f"{endpoint}: the server ignores {WINDOW_FILTER[endpoint]}, so the events "
                f"made before {_moment(start)} are read and left out (slower, still exact)"
            )
    checkpoint = manifest["checkpoint"].get(endpoint)
    resumable = _in_id_order(probe)
    if checkpoint:
        filters = dict(checkpoint["filters"])
        if checkpoint.get("last_id") is not None and resumable:
            filters["id__gt"] = checkpoint["last_id"]
        elif checkpoint.get("last_id") is not None:
            notes.append(f"{endpoint}: resumed from the start (the server ignores id filters)")
        return checkpoint["plan"], filters, notes, True
    cursor = manifest["cursors"].get(endpoint)
    if full or cursor is None:
        return "full", {**window, "ordering": "id"}, notes, False
    if probe.honours("modified_date__gte"):
        since = dt.datetime.fromisoformat(cursor) - lookback
        filters = {**window, "modified_date__gte": since, "ordering": "id"}
        return "incremental", filters, notes, False
    notes.append(
        f"{endpoint}: the server ignores the modified_date filter, so every record "
        "is read and only the changed ones are stored (slower, still exact)"
    )
    return "full scan", {**window, "ordering": "id"}, notes, False


def _in_id_order(probe: ProbeResult) -> bool:
    """Whether records arrive in id order (sorted pages, or id windows), so a sync can resume."""
    if not probe.honours("id__gt"):
        return False
    return probe.honours("ordering") or (probe.honours("id__gte") and probe.honours("id__lt"))


def _high_water(
    client: Client, endpoint: Endpoint, probe: ProbeResult, window: dict[str, Any]
) -> tuple[str | None, int | None]:
    """The newest ``modified_date`` on the server now, and how many records it holds.

    ``window``: the cache's window filter, where the server honours it (its records only).
    ``(None, None)`` when the server cannot be asked (it ignores ``ordering``).
    """
    if not probe.honours("ordering"):
        return None, None
    short = client.orders_short if endpoint == "orders" else client.webhook_events_short
    for page in short(ordering="-modified_date", page_size=1, **window).pages():
        if page.records:
            value = page.records[0].get("modified_date")
            return (value if isinstance(value, str) else None), page.count
        return None, page.count
    return None, None


def _sync_endpoint(
    client: Client,
    store: Store,
    manifest: Manifest,
    endpoint: Endpoint,
    privacy: Privacy,
    report: SyncReport,
    *,
    full: bool,
    lookback: dt.timedelta,
    batch_size: int,
    progress: bool,
    workers: int | None = None,
    start: dt.datetime | None = None,
) -> None:
    # a widened window is read whole, by every sync until its read of this endpoint is done
    full = full or endpoint in manifest.get("widening", ())
    probe_data = manifest["probe"].get(endpoint)
    probe = ProbeResult.from_dict(probe_data) if probe_data and not full else client.probe(endpoint)
    manifest["probe"][endpoint] = probe.to_dict()
    plan, filters, notes, resumed = _plan(manifest, endpoint, probe, full, lookback, start)
    checkpoint = manifest["checkpoint"].get(endpoint) or {}
    high_water, total = (
        (checkpoint.get("high_water"), None)
        if resumed
        else _high_water(
            client,
            endpoint,
            probe,
            {k: v for k, v in filters.items() if k in WINDOW_FILTER.values()},
        )
    )
    logger.info(
        "%s: plan %s%s, filters %s",
        endpoint,
        plan,
        " (resumed)" if resumed else "",
        _jsonable(filters),
    )
    report.plan = plan if endpoint == "orders" else report.plan
    report.resumed = report.resumed or resumed
    report.notes.extend(notes)
    if not probe.honours("ordering"):
        report.notes.append(
            f"{endpoint}: the server ignores `ordering`; "
            + (
                "read by id windows instead (slower, still exact)"
                if _in_id_order(probe)
                else "pages were reconciled by id and a sync cannot resume midway"
            )
        )
    base_filters = dict(checkpoint.get("filters") or filters) if resumed else dict(filters)
    # pages are parsed and flattened as they arrive (see omsframe.pageflat)
    decoder = PageDecoder(
        privacy, kind="orders" if endpoint == "orders" else "events", workers=workers
    )
    if plan != "incremental" and total is not None and total >= decoder.threshold:
        decoder.start()  # a large read ahead: start the workers while the first pages load
    read: Listing = client._listing(endpoint, filters, None, progress, probe, decoder)
    newest_seen: str | None = None
    last_id = checkpoint.get("last_id") if resumed else None
    observed = _now()
    read_started = time.monotonic()
    left_out = 0  # events from before the cache's window (a server that ignores its filter)
    with (
        decoder,
        collector_paused(freeze=True),
        returning_arrow_memory(_decay_ms(plan)),
    ):
        # while the first pages load: where each stored order is (what the first store needs)
        prepare = _prepare_orders(store) if endpoint == "orders" else None
        # (not enumerate: the result tuple it keeps for reuse would hold the last batch alive
        # while the next one is read — a whole batch more at the peak)
        number = 0
        # an incremental read: the files its stored orders are in are read while pages arrive
        arriving = (
            _reading_ahead(store, manifest["cursors"].get(endpoint))
            if endpoint == "orders" and plan == "incremental"
            else None
        )
        for batch in _batches(iter(read), batch_size, prepare, arriving):
            number += 1  # noqa: SIM113 (see above)
            if number % COLLECT_EVERY == 0:
                gc.collect()  # cyclic garbage, should there be any (see collector_paused)
            if endpoint == "orders":
                flat, raw = combine(batch)
                # customers wait in pending files, merged at the end of the read, unless the
                # read is one batch (an incremental sync, mostly): then pending files would be
                # written and read back for nothing, and merged after the batch instead of
                # beside its writes (any left by a killed sync are merged at the end all the
                # same: the latest stamp wins, whatever the order)
                single = number == 1 and 0 < read.stats.count <= batch_size
                report.add_orders(
                    store.upsert_batch(
                        flat,
                        raw,
                        policy=privacy.mode,
                        observed_at=observed,
                        pend_customers=not single,
                    )
                )
                del raw
                report.orders_seen += len(batch)
                report.items += flat.tables["order_items"].num_rows
            else:
                kept = batch if start is None else _made_since(batch, start)
                left_out += len(batch) - len(kept)
                flat, raw = combine(kept, "events")
                counts = store.upsert_events(flat, raw, policy=privacy.mode)
                del raw
                report.events_seen += len(batch)
                report.events_new += counts.new
                report.events_updated += counts.updated
                del kept  # (as the batch is, below)
            store.add_quarantine(flat.quarantine, observed)
            report.quarantined += len(flat.quarantine)
            report.duplicates += flat.duplicates
            for kind, counter in flat.drift.to_dict().items():
                merged = report.drift.setdefault(kind, {})
                for name, count in counter.items():
                    merged[name] = merged.get(name, 0) + count
            ids = [r["id"] for r in batch if isinstance(r, dict) and isinstance(r.get("id"), int)]
            if high_water is None:  # the cursor will come from the stamps seen (see below)
                stamps = [r.get("modified_date") for r in batch if isinstance(r, dict)]
                stamps = [s for s in stamps if isinstance(s, str)]
                if stamps:
                    newest_seen = max(
                        (s for s in (newest_seen, *stamps) if s is not None), key=stamp_key
                    )
            if ids:
                last_id = max(ids) if last_id is None else max(last_id, *ids)
            manifest["checkpoint"][endpoint] = {
                "plan": plan,
                "filters": _jsonable(base_filters),
                "last_id": last_id,
                "high_water": high_water,
                "started": observed.isoformat(),
            }
            save_manifest(store.root, manifest)
            logger.debug(
                "%s: stored a batch of %d, checkpoint at id %s", endpoint, len(batch), last_id
            )
            # let the batch go before the next one is awaited (else two whole batches are
            # alive while the reader finishes the next, and that was the peak of a sync)
            del batch, flat
        if endpoint == "orders":  # (also those a killed sync left: see the method)
            store.merge_pending_customers(privacy.mode)
    if left_out and start is not None:
        report.notes.append(
            f"{endpoint}: {left_out:,} records from before the cache's window ({_moment(start)}) "
            "were read and left out"
        )
    stats = read.stats
    report.pages += stats.pages
    if endpoint == "orders":
        report.server_count = stats.count
        report.complete = report.complete and stats.complete
    cursor = manifest["cursors"].get(endpoint)
    if stats.complete:
        if high_water is None and newest_seen is not None:
            # without a high-water mark (the server ignores `ordering`), an order changed while
            # we read may be older than the newest stamp seen: step back by the read's length
            cursor = _minus(newest_seen, dt.timedelta(seconds=time.monotonic() - read_started))
        else:
            cursor = high_water or cursor
        cursor = _not_ahead(cursor, endpoint, report)
        if cursor is not None:
            manifest["cursors"][endpoint] = cursor
        _widened(manifest, endpoint)
    else:  # keep the cursor where it was: the next sync reads this window again
        report.notes.append(
            f"{endpoint}: {stats.missing} records short of the server's count after "
            "re-reading; the cursor stays, so the next sync reads this window again"
        )
    manifest["checkpoint"].pop(endpoint, None)
    save_manifest(store.root, manifest)
    logger.info("%s: done, %d pages, cursor %s", endpoint, stats.pages, cursor)


def _widened(manifest: Manifest, endpoint: Endpoint) -> None:
    """Note that a widened window's read of ``endpoint`` is done (see :func:`sync`)."""
    left = [name for name in manifest.get("widening") or () if name != endpoint]
    if left:
        manifest["widening"] = left
    else:
        manifest.pop("widening", None)


def _made_since(records: list[Any], start: dt.datetime) -> list[Any]:
    """The records made (``created_date``) at or after ``start``; unreadable dates stay."""
    low = stamp_key(start.isoformat())
    return [
        record
        for record in records
        if not isinstance(record, dict)
        or not (key := stamp_key(record.get("created_date")))
        or key >= low
    ]


#: The cyclic garbage collector, paused during a sync, runs once per this many batches. A sync
#: makes no cycles of its own (the one an HTTP response made is broken as it is read), and a
#: collection walks every record of the batches alive: ~0.15 s for 5,000 webhook events.
COLLECT_EVERY = 10


#: how far ahead of this machine's clock a record's ``modified_date`` may be before the cursor
#: is held back (clocks differ a little; a date years ahead is a data error)
AHEAD = dt.timedelta(days=1)


def _not_ahead(cursor: str | None, endpoint: str, report: SyncReport) -> str | None:
    """The cursor, held back to now where a record is dated in the future (a data error).

    A cursor in the future would make every later sync skip what changes until then. Held
    back, the next sync reads from now (less the look-back) on: more than needed, never less.
    """
    now = _now()
    if cursor is None or stamp_key(cursor) <= stamp_key((now + AHEAD).isoformat()):
        return cursor  # (an unreadable one too: its key sorts first)
    report.notes.append(
        f"{endpoint}: a record is dated {cursor}, in the future; the cursor was held at now "
        "so that later changes are not skipped (check the OMS's clock or that record)"
    )
    return _iso(now)


def _minus(stamp: str, delta: dt.timedelta) -> str:
    """An ISO timestamp moved back by ``delta`` (UTC, with microseconds and ``Z``)."""
    return _iso(dt.datetime.fromisoformat(stamp) - delta)


def _iso(moment: dt.datetime) -> str:
    """A moment as a cursor: UTC, with microseconds and ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(moment: dt.datetime) -> str:
    """A moment as a window's start is kept and shown: UTC, with ``Z``."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _jsonable(filters: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in filters.items()}
