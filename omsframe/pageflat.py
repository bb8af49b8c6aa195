"""Pages of orders or webhook events parsed and flattened as they arrive, on worker processes.

A sync reads pages concurrently, but parsing and flattening are Python work, bound to one core
by the interpreter's lock, and they used to compete with the cache writes for it. Here each
page's bytes are parsed, flattened and prepared for the raw layer in one go — on worker
processes (one per core) once the server says the read is large, on one thread of this process
before that (with one worker beside it for a read of middling size, on more than one core) —
and the paging logic gets back light records (``id`` and ``modified_date`` only, and an
event's ``created_date``) that point at their page's tables. Webhook events take the same
path as orders (``kind="events"``): each carries a whole order, and their pages cost as much
to parse and flatten. :func:`combine` turns a batch of such records back into one
:class:`~omsframe.flatten.Flattened` and the raw layer's rows.

Workers are plain ``python`` processes fed through pipes (not ``multiprocessing``): nothing is
forked, and a notebook or a script without a ``__main__`` guard works as it is. They end when
their pipe closes — when the sync ends, or its process, even after ``kill -9``.

Example:
    >>> import orjson
    >>> page = orjson.dumps({"count": 2, "next": None, "previous": None,
    ...                      "results": [{"id": 7, "modified_date": "2025-01-02T00:00:00Z"},
    ...                                  {"id": 8}]})
    >>> with PageDecoder(Privacy(), workers=0) as decode:
    ...     body = decode(page)
    >>> [dict(r) for r in body["results"]]
    [{'id': 7, 'modified_date': '2025-01-02T00:00:00Z'}, {'id': 8}]
    >>> flat, raw = combine(body["results"][1:])
    >>> flat.tables["orders"].column("order_id").to_pylist(), raw.num_rows
    ([8], 1)
"""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import logging
import mmap
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc

from omsframe.convert import json_texts, stamp_key
from omsframe.drift import DriftReport
from omsframe.flatten import (
    ORDER_TABLES,
    Flattened,
    QuarantinedRecord,
    flatten_events,
    flatten_events_json,
    flatten_orders,
)
from omsframe.privacy import PiiMode, Privacy

logger = logging.getLogger(__name__)

#: Start worker processes when the server says a read holds at least this many records (below
#: it, one process is as fast or faster: BENCHMARKS.md "Sync").
WORKER_THRESHOLD = 20_000
#: A read of at least this many records, and fewer than WORKER_THRESHOLD (an incremental sync,
#: mostly), gets one worker beside the thread that flattens pages here, the two taking the pages
#: in turn; on one core, none (BENCHMARKS.md "Sync").
HELPER_THRESHOLD = 1_000
#: Seconds a worker may stay silent before it is given up (its page is flattened here).
ANSWER_TIMEOUT = 300.0
_HEADER = struct.Struct("<QBI")  # a message's size, kind (one of these) and count of buffers
_PICKLE, _PAGES = 0, 1
_ALIGN = 64  # the alignment Arrow prefers, of every table of a pickle
# a memory map's pages made at once (one call) rather than one fault at a time, where possible
_POPULATED: dict[str, int] = (
    {"flags": mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE}
    if hasattr(mmap, "MAP_POPULATE")
    else {}
)
#: A worker's program. It imports ``omsframe.pageflat`` without running the package's
#: ``__init__`` (the whole public API, pandas and httpx included), and keeps pandas out: pyarrow
#: imports it, if it can, the first time it builds an array from a list (to check for pandas
#: objects), ~1 s of CPU a worker would spend for nothing. numpy too: pyarrow imports it if it
#: can, and flattening has no use for it (~0.3 s of a worker's ~0.45 s start here). A worker is
#: ready in ~0.15 s and holds only what flattening needs (its tables are the same: tested).
_WORKER_MAIN = """
import importlib.util, sys, types
class Unused:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("pandas", "numpy"):
            raise ImportError("a flattening worker does not use " + name)
sys.meta_path.insert(0, Unused())
spec = importlib.util.find_spec("omsframe")
package = types.ModuleType("omsframe")
package.__path__ = list(spec.submodule_search_locations)
package.__spec__ = spec
sys.modules["omsframe"] = package
from omsframe.pageflat import serve_worker
serve_worker()
"""
#: A worker collects cyclic garbage once per this many pages (see
#: :func:`~omsframe.flatten.collector_paused`).
COLLECT_EVERY = 50


#: What a decoder's pages hold: orders, or webhook events.
Kind = Literal["orders", "events"]
#: The fields a :class:`Stub` keeps of its record (an event's ``created_date``: a window's cut)
_KEYS: dict[str, tuple[str, ...]] = {
    "orders": ("id", "modified_date"),
    "events": ("id", "modified_date", "created_date"),
}
RAW_ORDERS_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.int64(), nullable=False),
        pa.field("date_placed", pa.timestamp("us", tz="UTC")),
        pa.field("modified_date", pa.timestamp("us", tz="UTC")),
        pa.field("record", pa.string()),
    ]
)
RAW_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("created_date", pa.timestamp("us", tz="UTC")),
        pa.field("modified_date", pa.timestamp("us", tz="UTC")),
        pa.field("record", pa.string()),
    ]
)


@dataclass
class FlatPage:
    """One page of orders or events, flattened: its tables and raw-layer rows (secrets removed)."""

    flat: Flattened
    raw: pa.Table
    size: int
    #: pages flattened together as this one: where each one's records start, and its rows in
    #: each of :data:`SPLIT` (where each starts, then the end); ``None`` when the rows could
    #: not be told apart (then :func:`combine` takes them as one page)
    starts: list[int] = field(default_factory=lambda: [0])
    rows: dict[str, list[int]] | None = None
    #: whether a batch took the page's drift, duplicates and entity quarantine already (pages
    #: flattened together can be shared by two batches: see :func:`combine`)
    reported: bool = False
    #: events only: the position among the page's records of each row of ``events`` (and of
    #: ``raw``); the records not there were quarantined
    positions: pa.Array | None = None


#: The tables whose rows belong to one order each (the raw layer's follow ``orders``).
SPLIT = ("orders", "order_items", "addresses")


class Stub(dict[str, Any]):
    """A record as the paging logic sees it: ``id`` and ``modified_date``, and where it is from."""

    __slots__ = ("page", "position")

    def __init__(self, keys: dict[str, Any], page: FlatPage, position: int) -> None:
        super().__init__(keys)
        self.page = page
        self.position = position


def raw_orders_table(orders: pa.Table, records: Iterable[Any]) -> pa.Table:
    """The raw layer's rows for flattened ``orders``: each order's winning copy, as JSON text.

    ``records`` are the orders as flattened (secrets stripped, PII policy applied); where an
    id came more than once, the copy with the latest ``modified_date`` (the later on a tie) is
    the one kept, as in the tables.

    Example:
        >>> orders = flatten_orders([{"id": 1}]).tables["orders"]
        >>> raw_orders_table(orders, [{"id": 1}]).column("record").to_pylist()
        ['{"id":1}']
    """
    valid = [r for r in records if isinstance(r, dict) and isinstance(r.get("id"), int)]
    best: dict[int, Any] = {record["id"]: record for record in valid}
    if len(best) < len(valid):  # an id twice: the copy with the latest stamp (then the later)
        stamps: dict[int, str] = {}
        for record in valid:
            key = stamp_key(record.get("modified_date"))
            if key >= stamps.get(record["id"], key):
                stamps[record["id"]], best[record["id"]] = key, record
    texts = json_texts(best.get(i) for i in orders.column("order_id").to_pylist())
    return pa.table(
        {
            "order_id": orders.column("order_id"),
            "date_placed": orders.column("date_placed"),
            "modified_date": orders.column("modified_date"),
            "record": texts,
        },
        schema=RAW_ORDERS_SCHEMA,
    )


def raw_events_table(events: pa.Table, records: Sequence[Any]) -> pa.Table:
    """The raw layer's rows for flattened ``events``: each one's record as JSON text.

    ``records``: the events as flattened (secrets stripped, PII policy applied), one for each
    row of ``events``, in its order (or their JSON, as ``orjson.Fragment``).

    Example:
        >>> events = flatten_events([{"id": 4}]).tables["events"]
        >>> raw_events_table(events, [{"id": 4}]).column("record").to_pylist()
        ['{"id":4}']
    """
    return pa.table(
        {
            "event_id": events.column("event_id"),
            "created_date": events.column("created_date"),
            "modified_date": events.column("modified_date"),
            "record": json_texts(records),
        },
        schema=RAW_EVENTS_SCHEMA,
    )


def _is_page(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("count"), int)
        and isinstance(body.get("results"), list)
        and all(isinstance(record, dict) for record in body["results"])
    )


def flatten_page(
    content: bytes | bytearray, privacy: Privacy, *, gzip: bool = False, kind: Kind = "orders"
) -> tuple[Any, ...]:
    """Parse one page of ``kind`` and flatten it (a worker flattens with :func:`flatten_pages`).

    Returns ``("page", count, next, previous, keys, FlatPage, offset)`` for a page (``offset``:
    where its records start in the :class:`FlatPage`, here 0), or ``("body", parsed)`` when the
    JSON is not shaped as a page (the caller reports that). ``gzip``: the bytes are the body as
    it came, gzip-compressed. Raises ``orjson.JSONDecodeError`` for text that is not JSON, or
    gzip that is damaged or cut short.
    """
    body = _parse(content, gzip)
    return _flatten_bodies([body], privacy, kind)[0] if _is_page(body) else ("body", body)


def _parse(content: bytes | bytearray, gzip: bool) -> Any:
    """A page's JSON (``None`` for an empty body); raises as :func:`flatten_page` says."""
    if gzip:
        content = inflate(content)
    return orjson.loads(content) if content.strip() else None


def _flatten_bodies(bodies: list[Any], privacy: Privacy, kind: Kind) -> list[tuple[Any, ...]]:
    """Flatten parsed pages as one :class:`FlatPage` (see :func:`flatten_pages`)."""
    records = [record for body in bodies for record in body["results"]]
    keys = [{k: record[k] for k in _KEYS[kind] if k in record} for record in records]
    if kind == "events":  # (strips the secrets of every record, applies the PII policy)
        flat, texts, positions = flatten_events_json(records, privacy)
        page = FlatPage(flat, raw_events_table(flat.tables["events"], texts), len(records))
        page.positions = pa.array(positions, pa.int64())
    else:
        flat = flatten_orders(records, privacy=privacy)  # strips the secrets of every record
        for record in records:
            privacy.scrub_order(record)
        page = FlatPage(flat, raw_orders_table(flat.tables["orders"], records), len(records))
    if len(bodies) > 1:
        page.starts = list(itertools.accumulate(len(b["results"]) for b in bodies[:-1]))
        page.starts.insert(0, 0)
        if kind == "orders":  # (an event's rows are found by position: see combine)
            page.rows = _row_starts(flat, records, page.starts)
    answers: list[tuple[Any, ...]] = []
    offset = 0
    for body in bodies:
        size = len(body["results"])
        part = keys[offset : offset + size]
        answers.append(
            ("page", body["count"], body.get("next"), body.get("previous"), part, page, offset)
        )
        offset += size
    return answers


def _row_starts(
    flat: Flattened, records: list[Any], starts: list[int]
) -> dict[str, list[int]] | None:
    """Where each page's rows start in the tables of pages flattened together, then the end.

    Rows come in the order of their orders' records; ``None`` if they do not (or an order id
    is missing), and the pages then stay one in :func:`combine`.
    """
    ids = pa.array([record.get("id") for record in records], pa.int64())
    bounds: dict[str, list[int]] = {}
    for name in SPLIT:
        positions = pc.index_in(flat.tables[name].column("order_id"), value_set=ids)
        if positions.null_count:
            return None
        found = positions.to_pylist()
        if any(b < a for a, b in itertools.pairwise(found)):
            return None
        bounds[name] = [bisect_left(found, start) for start in starts] + [len(found)]
    return bounds


def flatten_pages(
    contents: Sequence[bytes | bytearray],
    privacy: Privacy,
    *,
    gzip: Sequence[bool] | None = None,
    kind: Kind = "orders",
) -> list[tuple[Any, ...] | Exception]:
    """Flatten several pages, as one where they can be: each one's answer, as flatten_page's.

    Arrow builds a table a column at a time, at a cost per column whatever its length: a page
    of 100 orders took ~60 µs an order to turn into tables, a batch of 1,000 ~27. Pages that
    wait together for a worker are flattened as one :class:`FlatPage` (each answer says where
    its records start), unless an id is on two of them or is not an integer (then each page
    keeps its own copy of an order, as when flattened alone, and the read decides which one it
    hands out). An answer is the exception where :func:`flatten_page` would raise one.
    ``gzip``: which of ``contents`` are gzip bodies as they came; ``kind``: what the pages hold.

    Example:
        >>> pages = [orjson.dumps({"count": 2, "next": None, "results": [{"id": n}]})
        ...          for n in (1, 2)]
        >>> first, second = flatten_pages(pages, Privacy())
        >>> first[5] is second[5], first[6], second[6], first[5].size
        (True, 0, 1, 2)
    """
    answers: list[tuple[Any, ...] | Exception | None] = [None] * len(contents)
    together: dict[int, Any] = {}
    plain: dict[int, bytes | bytearray] = {}
    seen: set[Any] = set()
    for n, content in enumerate(contents):
        try:
            body = _parse(content, gzip is not None and gzip[n])
        except orjson.JSONDecodeError as error:
            answers[n] = error
            continue
        ids = [r.get("id") for r in body["results"]] if _is_page(body) else None
        if ids is not None and all(i.__class__ is int for i in ids) and seen.isdisjoint(ids):
            together[n], plain[n] = body, content
            seen.update(ids)
        else:
            answers[n] = _flatten_alone(body, privacy, kind)
    if together:
        shared: list[tuple[Any, ...] | Exception]
        try:
            shared = list(_flatten_bodies(list(together.values()), privacy, kind))
        except Exception:  # each page on its own, so that only the page at fault fails
            # parsed again: flattening strips and scrubs records in place (twice, a pseudonym
            # would be a pseudonym's)
            shared = [
                _flatten_alone(_parse(plain[n], gzip is not None and gzip[n]), privacy, kind)
                for n in plain
            ]
        for n, answer in zip(plain, shared, strict=True):
            answers[n] = answer
    return [answer for answer in answers if answer is not None]


def _flatten_alone(body: Any, privacy: Privacy, kind: Kind) -> tuple[Any, ...] | Exception:
    if not _is_page(body):
        return ("body", body)
    try:
        return _flatten_bodies([body], privacy, kind)[0]
    except Exception as error:  # the caller's to raise, in the thread that asked
        return error


def inflate(content: bytes | bytearray) -> bytes:
    """A gzip body inflated; raises ``orjson.JSONDecodeError`` when it is damaged or cut short.

    Example:
        >>> inflate(zlib.compress(b'{"count": 0}', wbits=31))
        b'{"count": 0}'
    """
    try:
        return zlib.decompress(content, wbits=31)
    except zlib.error as error:
        raise orjson.JSONDecodeError(f"damaged gzip body: {error}", "", 0) from None


def combine(batch: list[Any], kind: Kind = "orders") -> tuple[Flattened, pa.Table]:
    """One :class:`Flattened` and raw-layer table for a batch of :class:`Stub` records.

    ``kind``: what the records are (webhook events: see :func:`_combine_events`).

    Rows come in the order of the records (pages flattened together are taken apart again:
    their rows in the batch are as if each page had been flattened alone). Rows of records
    the paging logic dropped (an id handed out already) are left out; so are the quarantined
    records among them. Customers, products, channels and states may repeat across pages: the
    store keeps the latest of each. A page whose records are shared by two batches (pages
    flattened together) gives its schema drift, duplicates and quarantined customers,
    products, channels and states to the first batch combined, not to both.
    """
    if kind == "events":
        return _combine_events(batch)
    parts_of: dict[tuple[int, int], tuple[FlatPage, int, set[int], list[Any]]] = {}
    for stub in batch:
        page = stub.page
        part = 0 if page.rows is None else bisect_right(page.starts, stub.position) - 1
        entry = parts_of.get((id(page), part))
        if entry is None:
            entry = parts_of[id(page), part] = (page, part, set(), [])
        entry[2].add(stub.position)
        entry[3].append(stub.get("id"))
    if not parts_of:
        empty = flatten_orders([])
        return empty, raw_orders_table(empty.tables["orders"], [])
    parts: dict[str, list[pa.Table]] = {name: [] for name in ORDER_TABLES}
    raws: list[pa.Table] = []
    quarantine: list[QuarantinedRecord] = []
    drift = DriftReport()
    duplicates = 0
    policy = ""
    offset = 0  # where the part's records start in the batch
    pages: set[int] = set()
    for page, part, kept, ids in parts_of.values():
        flat, raw = page.flat, page.raw
        policy = flat.pii_policy
        tables = dict(flat.tables)
        low, high = 0, page.size
        if page.rows is not None:  # one of pages flattened together
            low = page.starts[part]
            high = page.starts[part + 1] if part + 1 < len(page.starts) else page.size
            for name in SPLIT:
                start, end = page.rows[name][part], page.rows[name][part + 1]
                tables[name] = tables[name].slice(start, end - start)
                if name == "orders":  # the raw layer's rows are the orders'
                    raw = raw.slice(start, end - start)
        if len(kept) < high - low:
            wanted = pa.array([i for i in ids if isinstance(i, int)], pa.int64())
            for name in SPLIT:
                tables[name] = _only(tables[name], wanted)
            raw = _only(raw, wanted)
        first_part = id(page) not in pages  # the page's other tables, once a batch
        pages.add(id(page))
        for name in ORDER_TABLES:
            if first_part or name in SPLIT:
                parts[name].append(tables[name])
        raws.append(raw)
        whole = first_part and not page.reported  # the page's own reports, unless taken
        if first_part:
            page.reported = True
        for bad in flat.quarantine:
            if (bad.kind == "order" and bad.position in kept) or (bad.kind != "order" and whole):
                quarantine.append(
                    QuarantinedRecord(
                        bad.kind, bad.position - low + offset, bad.record_id, bad.reason, bad.record
                    )
                )
        if whole:
            drift.merge(flat.drift)
            duplicates += flat.duplicates
        offset += high - low
    tables = {name: pa.concat_tables(parts[name]) for name in ORDER_TABLES}
    return Flattened(tables, quarantine, drift, policy, duplicates), pa.concat_tables(raws)


def _combine_events(batch: list[Any]) -> tuple[Flattened, pa.Table]:
    """:func:`combine` for webhook events: each record's row, found by its page position.

    An event has one row, so the rows are the page's at the records' positions (an id twice
    on a page has two rows, of which the paging logic hands out the first). A page's schema
    drift goes to the first batch combined.
    """
    where: dict[int, tuple[FlatPage, dict[int, int]]] = {}  # each page's records in the batch
    for n, stub in enumerate(batch):
        where.setdefault(id(stub.page), (stub.page, {}))[1][stub.position] = n
    events: list[pa.Table] = []
    raws: list[pa.Table] = []
    quarantine: list[QuarantinedRecord] = []
    drift = DriftReport()
    policy = ""
    for page, index in where.values():
        flat = page.flat
        policy = flat.pii_policy
        assert page.positions is not None  # (a page of events)
        if len(index) == page.size:  # every record of the page: its rows as they are
            events.append(flat.tables["events"])
            raws.append(page.raw)
        else:
            keep = pc.is_in(page.positions, value_set=pa.array(list(index), pa.int64()))
            events.append(flat.tables["events"].filter(keep))
            raws.append(page.raw.filter(keep))
        for bad in flat.quarantine:
            if bad.position in index:
                quarantine.append(
                    QuarantinedRecord(
                        bad.kind, index[bad.position], bad.record_id, bad.reason, bad.record
                    )
                )
        if not page.reported:
            page.reported = True
            drift.merge(flat.drift)
    if not events:
        empty = flatten_events([])
        return empty, raw_events_table(empty.tables["events"], [])
    table = pa.concat_tables(events)
    return Flattened({"events": table}, quarantine, drift, policy), pa.concat_tables(raws)


def _only(table: pa.Table, ids: pa.Array) -> pa.Table:
    return table.filter(pc.is_in(table.column("order_id"), value_set=ids))


class _WorkerLostError(Exception):
    """A worker process ended or answered nonsense."""


def _send(stream: IO[bytes], message: Any) -> None:
    """Frame a pickled message: its size, its kind and its count of tables, then itself.

    The Arrow tables in it (a flattened page's) go apart, after it, in Arrow's IPC format
    (several times faster than pickling them): their sizes, then each, padded to 64 bytes (see
    :func:`_unpickle`). Pages go the other way with :func:`_send_pages`.
    """
    tables: list[pa.Buffer] = []
    out = io.BytesIO()
    _TablePickler(out, tables).dump(message)
    data = out.getvalue()
    stream.write(_HEADER.pack(len(data), _PICKLE, len(tables)))
    stream.write(data)
    if tables:
        sizes = [table.size for table in tables]
        stream.write(struct.pack(f"<{len(sizes)}Q", *sizes))
        for table, size in zip(tables, sizes, strict=True):
            stream.write(table)
            stream.write(bytes(_padded(size) - size))
    stream.flush()


def _send_pages(stream: IO[bytes], pages: Sequence[tuple[bytes, bool]]) -> None:
    """Frame pages as one message: their sizes and gzip flags, then each as it is (no copy).

    A page is its bytes as they came: plain, or its gzip body (flag set).
    """
    count = len(pages)
    head = struct.pack(f"<{count}Q{count}?", *(len(c) for c, _ in pages), *(g for _, g in pages))
    stream.write(_HEADER.pack(len(head), _PAGES, count))
    stream.write(head)
    for content, _ in pages:
        stream.write(content)
    stream.flush()


class _TablePickler(pickle.Pickler):
    """Pickles a message with each Arrow table in it set apart, as an IPC stream."""

    def __init__(self, file: IO[bytes], tables: list[pa.Buffer]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.tables = tables

    def persistent_id(self, obj: Any) -> int | None:
        if not isinstance(obj, pa.Table):
            return None
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, obj.schema) as writer:
            writer.write_table(obj)
        self.tables.append(sink.getvalue())
        return len(self.tables) - 1


class _TableUnpickler(pickle.Unpickler):
    """Unpickles what :class:`_TablePickler` made, its tables read in place (no copy)."""

    def __init__(self, data: bytearray, tables: list[memoryview]) -> None:
        super().__init__(io.BytesIO(data))
        self.tables = tables

    def persistent_load(self, pid: Any) -> pa.Table:
        return pa.ipc.open_stream(pa.py_buffer(self.tables[pid])).read_all()


def _padded(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


def _read(fd: int, size: int, timeout: float | None) -> bytearray:
    """Exactly ``size`` bytes from a pipe, in a new buffer (``timeout``: see :func:`_fill`)."""
    buffer = bytearray(size)
    with memoryview(buffer) as view:
        _fill(fd, view, timeout)
    return buffer


def _fill(fd: int, view: memoryview, timeout: float | None) -> None:
    """Fill ``view`` from a pipe; the other end silent for ``timeout`` is lost.

    The bytes are read straight into place (no pieces joined afterwards).
    """
    size = view.nbytes
    got = 0
    while got < size:
        if timeout is not None and os.name == "posix":  # (select works on pipes only there)
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise _WorkerLostError(f"no answer in {timeout:.0f} s")
        if hasattr(os, "readv"):
            count = os.readv(fd, [view[got:]])
        else:  # pragma: no cover - Windows
            chunk = os.read(fd, size - got)
            count = len(chunk)
            view[got : got + count] = chunk
        if not count:
            raise _WorkerLostError("the other end of the pipe closed")
        got += count


def _frame(fd: int, timeout: float | None) -> tuple[int, Any]:
    """The next message on a pipe, as its kind and contents (``timeout``: see :func:`_fill`).

    Pages come as a list of ``(bytes, gzip)`` (see :func:`_send_pages`); a pickle comes back
    unpickled, with its tables in place (see :func:`_unpickle`).
    """
    size, kind, count = _HEADER.unpack(_read(fd, _HEADER.size, timeout))
    data = _read(fd, size, timeout)
    if kind == _PAGES:
        head = struct.unpack(f"<{count}Q{count}?", data)
        sizes, flags = head[:count], head[count:]
        return kind, [(_read(fd, n, timeout), g) for n, g in zip(sizes, flags, strict=True)]
    return kind, _unpickle(fd, data, count, timeout)


def _unpickle(fd: int, data: bytearray, count: int, timeout: float | None) -> Any:
    """A pickle whose ``count`` tables follow it on the pipe.

    The tables are read into one anonymous memory map, and their arrays point into it (no
    copy). It is given back to the system, whole, when the last of them goes: a flattened
    page never becomes a hole in this process's heap (which kept growing when the pages' data
    came as ordinary allocations: BENCHMARKS.md "Sync").
    """
    if not count:
        return pickle.loads(data)
    sizes = struct.unpack(f"<{count}Q", _read(fd, 8 * count, timeout))
    padded = [_padded(size) for size in sizes]
    memory = mmap.mmap(-1, max(1, sum(padded)), **_POPULATED)
    whole = memoryview(memory)
    _fill(fd, whole, timeout)
    views, start = [], 0
    for size, room in zip(sizes, padded, strict=True):
        views.append(whole[start : start + size])
        start += room
    return _TableUnpickler(data, views).load()


def _receive(fd: int, timeout: float | None) -> Any:
    """The next message on a pipe (``timeout``: see :func:`_fill`)."""
    return _frame(fd, timeout)[1]


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, mode: PiiMode, key: bytes, kind: Kind) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.stdout: IO[bytes] = self.process.stdout
        _send(self.stdin, (mode, key, kind))

    def ready(self) -> None:
        """Wait until the worker has imported what it needs."""
        if _receive(self.stdout.fileno(), ANSWER_TIMEOUT) != "ready":
            raise _WorkerLostError("no greeting")

    def ask(self, pages: Sequence[tuple[bytes, bool]]) -> list[Any]:
        """Have the worker flatten pages (each ``(bytes, gzip)``): an answer for each.

        An answer is :func:`flatten_page`'s, or ``("json error", message)``, or ``("failed",
        type)`` for a page the worker could not flatten.
        """
        try:
            _send_pages(self.stdin, pages)
            answer = _receive(self.stdout.fileno(), ANSWER_TIMEOUT)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise _WorkerLostError(type(error).__name__) from None
        if answer[0] != "pages" or len(answer[1]) != len(pages):
            raise _WorkerLostError(str(answer[1]) if answer[0] == "failed" else "no answer")
        return list(answer[1])

    def stop(self, kill: bool = False) -> None:
        """Close the pipes (the worker then ends) and wait for it (``kill``: end it now)."""
        if kill:
            self.process.kill()
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_worker() -> None:
    """A worker's main loop: pages in on stdin, flattened pages out on stdout."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    stdin, stdout = sys.stdin.fileno(), sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answers
    gc.freeze()  # what the imports made is never garbage: out of the collector's sight
    gc.disable()  # see omsframe.flatten.collector_paused
    try:
        mode, key, kind = _receive(stdin, None)
        privacy = Privacy(mode=mode, key=key)
        _send(stdout, "ready")
        served = 0
        while True:
            _, pages = _frame(stdin, None)
            if served // COLLECT_EVERY != (served + len(pages)) // COLLECT_EVERY:
                gc.collect()
            served += len(pages)
            _send(stdout, _answer(pages, privacy, kind))
            del pages  # the pages go now, not when the next ones come
    except (_WorkerLostError, BrokenPipeError):
        pass  # the parent closed the pipes, or went away
    # every answer is out (each is flushed): end now, without the interpreter's tidying up
    # (~16 ms, twice that on a busy machine, that the sync waited for at its end)
    os._exit(0)


def _answer(pages: list[tuple[bytearray, bool]], privacy: Privacy, kind: Kind) -> tuple[Any, ...]:
    """A worker's answer to pages (see :meth:`_Worker.ask`)."""
    try:
        flat = flatten_pages([p for p, _ in pages], privacy, gzip=[g for _, g in pages], kind=kind)
    except Exception as error:  # reported to the parent, which flattens the pages itself
        return ("failed", type(error).__name__)
    answers: list[tuple[Any, ...]] = []
    for answer in flat:
        if isinstance(answer, orjson.JSONDecodeError):
            answers.append(("json error", str(answer)[:200]))
        elif isinstance(answer, Exception):
            # the type only: a message could quote a value of the page into the parent's log
            answers.append(("failed", type(answer).__name__))
        else:
            answers.append(answer)
    return ("pages", answers)


#: A worker takes the pages waiting for one when it is free, up to this many, in one message
#: and flattens them as one (see :func:`flatten_pages`). A full sync of 100,000 orders on two
#: cores, against one page at a time: 2 took ~4 % less of the workers' CPU, 3 ~8 %, both ~3 %
#: less time; 4 as little CPU but ~5 % more time (a page waits longer for its answer).
GROUP_PAGES = 2


@dataclass(eq=False)
class _Job:
    """A page waiting for a worker, and where its answer goes."""

    content: bytes
    gzip: bool
    future: Future[Any]


class PageDecoder:
    """Turns the bytes of a page of orders or events into :class:`Stub` records (see the module).

    Args:
        privacy: The cache's PII policy and key.
        kind: What the pages hold: ``"orders"`` (default) or ``"events"`` (webhook events).
        workers: Worker processes: ``None`` for one per core once a read holds at least
            ``threshold`` records (and for one beside the thread here from
            ``helper_threshold`` records, on more than one core), ``0`` for none (everything
            in this process), ``n`` for ``n`` from the first page on.
        threshold: See ``workers`` (default :data:`WORKER_THRESHOLD`).
        helper_threshold: See ``workers`` (default :data:`HELPER_THRESHOLD`).

    Use as a context manager (the workers are stopped on exit), and call it with a page's
    bytes from any thread.
    """

    def __init__(
        self,
        privacy: Privacy,
        *,
        kind: Kind = "orders",
        workers: int | None = None,
        threshold: int | None = None,
        helper_threshold: int | None = None,
    ) -> None:
        self.privacy = privacy
        self.kind: Kind = kind
        cores = os.cpu_count() or 1
        self.wanted = cores if workers is None else workers
        self.threshold = (
            (WORKER_THRESHOLD if threshold is None else threshold) if workers is None else 0
        )
        #: from how many records one worker helps the thread here (``None``: never)
        self.helper_threshold = (
            (HELPER_THRESHOLD if helper_threshold is None else helper_threshold)
            if workers is None and cores > 1
            else None
        )
        self._helper = False  # one worker beside the thread here, both taking pages
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._drivers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._flattener: ThreadPoolExecutor | None = None
        self._starting = False
        self._closed = False
        self.pages_on_workers = 0

    def __enter__(self) -> PageDecoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __call__(self, content: bytes, *, gzip: bool = False) -> Any:
        """The page body for ``content``, its records as :class:`Stub` (a page-less body as is).

        ``gzip``: ``content`` is the body as it came, gzip-compressed (undone where the page
        is flattened: a ninth of the bytes cross the pipe).
        """
        answer = self._decode(content, gzip)
        if answer[0] == "body":
            return answer[1]
        _, count, next_url, previous, keys, page, offset = answer
        if count >= self.threshold:
            self.start()
        elif self.helper_threshold is not None and count >= self.helper_threshold:
            self.start(helper=True)
        results = [Stub(k, page, offset + i) for i, k in enumerate(keys)]
        return {"count": count, "next": next_url, "previous": previous, "results": results}

    @property
    def plain(self) -> bool:
        """Whether pages go to worker processes (see :class:`~omsframe.session.BodyDecoder`).

        From a loopback host they are then asked for uncompressed: gzip costs the server ~5 ms
        and the side that flattens ~2 ms a page of 100 orders, and the pipe carries the ~800 KB
        cheaply. So with a helper too, though half the pages are flattened here: a 2,736-order
        incremental sync took ~6 % less time (26 A/B pairs; BENCHMARKS.md "Sync"). Pages all
        flattened here come compressed: the reading threads, which hold the interpreter's lock
        to receive, then carry a ninth of the bytes.
        """
        return self._starting

    def _decode(self, content: bytes, gzip: bool) -> Any:
        if gzip and self._helper:  # (may be flattened here: see below; a remote host's)
            content, gzip = inflate(content), False
        job = None
        with self._lock:  # (a job is queued only while a worker is there to take it)
            if self._workers:
                job = _Job(content, gzip, Future())
                self._jobs.put(job)
        if job is not None:
            here = self._here() if self._helper else None
            if here is not None:  # the thread here takes the next page waiting, if any
                here.submit(self._take)
            try:
                return job.future.result()
            except _WorkerLostError:
                pass  # flattened here (the worker said why)
        # one page at a time, on one thread: reading threads flattening side by side fight
        # over the interpreter's lock (28 pages took 2.5 times the CPU: 0.65 s vs 0.26 s), and
        # each thread flattening leaves freed memory in its own C heap (glibc's arenas), which
        # the process keeps: one thread for all of it, 25-30 MiB less at a sync's peak
        if gzip:  # here, in the reading thread: zlib lets go of the interpreter's lock, so
            content = inflate(content)  # this runs beside the flattening thread, not in it
        here = self._here()
        if here is None:  # closed: a straggler flattens its page itself
            return flatten_page(content, self.privacy, kind=self.kind)
        return here.submit(flatten_page, content, self.privacy, kind=self.kind).result()

    def _take(self) -> None:
        """Flatten the next page waiting for a worker, here (beside a helper: see ``start``).

        Called once for each page queued, so every page queued is taken, by the thread here or
        by the helper, whichever is free first.
        """
        try:
            job = self._jobs.get_nowait()
        except queue.Empty:
            return  # the helper took it
        if job is None:  # the decoder closes: that word is a driver's
            self._jobs.put(None)
            return
        try:
            answer = flatten_page(job.content, self.privacy, gzip=job.gzip, kind=self.kind)
        except BaseException as error:  # the thread that brought the page raises it
            job.future.set_exception(error)
        else:
            job.future.set_result(answer)

    def _here(self) -> ThreadPoolExecutor | None:
        """The thread that flattens the pages no worker takes (started on first use)."""
        with self._lock:
            if self._flattener is None and not self._closed:
                self._flattener = ThreadPoolExecutor(1, thread_name_prefix="omsframe-flatten")
            return self._flattener

    def start(self, *, helper: bool = False) -> None:
        """Start the worker processes in the background (once; pages go to them when ready).

        ``helper``: one worker only, beside the thread here (a read too small for a worker per
        core, but not for a second core): the two take the pages waiting in turn.
        """
        with self._lock:
            if self._starting or self._closed or self.wanted < 1:
                return
            self._starting, self._helper = True, helper
        threading.Thread(target=self._launch, name="omsframe-workers", daemon=True).start()

    def _launch(self) -> None:
        started: list[_Worker] = []
        try:
            for _ in range(1 if self._helper else self.wanted):
                started.append(_Worker(self.privacy.mode, self.privacy.key, self.kind))
            for worker in started:
                worker.ready()
        except (OSError, _WorkerLostError) as error:
            logger.warning("could not start flattening workers (%s); flattening here", error)
            for worker in started:
                worker.stop()
            return
        with self._lock:
            if not self._closed:
                for worker in started:
                    driver = threading.Thread(
                        target=self._drive, args=(worker,), name="omsframe-worker", daemon=True
                    )
                    driver.start()
                    self._drivers.append(driver)
                self._workers, started = started, []
        for worker in started:  # closed meanwhile
            worker.stop()
        logger.info("flattening on %d worker processes", len(self._workers))

    def _drive(self, worker: _Worker) -> None:
        """A worker's thread: it hands the worker the pages waiting, up to GROUP_PAGES at once.

        Ends when the decoder closes (after the pages queued before), or when the worker is
        lost (its pages are then flattened by the threads that brought them).
        """
        stop = False
        while not stop:
            job = self._jobs.get()
            if job is None:
                break
            group = [job]
            while len(group) < GROUP_PAGES:
                try:
                    waiting = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if waiting is None:  # closed: this group is the last
                    stop = True
                    break
                group.append(waiting)
            try:
                answers = worker.ask([(job.content, job.gzip) for job in group])
            except Exception as error:  # _WorkerLostError, or anything unforeseen
                reason = str(error) if isinstance(error, _WorkerLostError) else type(error).__name__
                logger.warning("a flattening worker failed (%s); flattening here", reason)
                self._drop(worker)  # first: a thread whose page comes back sees it gone
                for job in group:
                    job.future.set_exception(_WorkerLostError(reason))
                return
            done = 0
            for job, answer in zip(group, answers, strict=True):
                if answer[0] == "json error":
                    job.future.set_exception(orjson.JSONDecodeError(answer[1], "", 0))
                elif answer[0] == "failed":
                    logger.warning("a flattening worker failed on a page (%s); here", answer[1])
                    job.future.set_exception(_WorkerLostError(answer[1]))
                else:
                    done += 1
                    job.future.set_result(answer)
            with self._lock:
                self.pages_on_workers += done
            del group, answers, job  # the pages go now, not when the next ones come

    def _drop(self, worker: _Worker) -> None:
        with self._lock:
            self._workers = [w for w in self._workers if w is not worker]
            if not self._workers:  # the pages still waiting are flattened here
                stops = 0  # (a closing decoder's word to the other drivers stays)
                while True:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stops += 1
                    else:
                        job.future.set_exception(_WorkerLostError("no worker left"))
                for _ in range(stops):
                    self._jobs.put(None)
        worker.stop(kill=True)

    def close(self) -> None:
        """Stop the workers (they flatten the pages given them first), and the thread here."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
            drivers, self._drivers = self._drivers, []
            for _ in drivers:
                self._jobs.put(None)
            flattener, self._flattener = self._flattener, None
        for driver in drivers:
            driver.join()
        if flattener is not None:
            flattener.shutdown(wait=True)
        for worker in workers:
            worker.stop()
