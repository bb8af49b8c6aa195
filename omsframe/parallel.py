"""Parse and flatten JSON-encoded orders on every core: ``iter_flatten_json``.

Flattening is Python work, bound to one core by the interpreter's lock. Orders that are still
bytes (a file of newline-delimited JSON, the cache's raw layer) can be parsed and flattened in
worker processes instead, one per core, each taking a batch: the batches come back as Arrow
tables (cheap to hand between processes) in the order they went in.

Example:
    >>> lines = [b'{"id": 1, "orderitem_set": []}', b"not json", b'{"id": 2}']
    >>> batches = list(iter_flatten_json(lines, batch_size=2, workers=2))
    >>> [b.tables["orders"].num_rows for b in batches], batches[0].quarantine[0].position
    ([1, 1], 1)
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

import orjson

from omsframe.flatten import Flattened, QuarantinedRecord, _flatten
from omsframe.privacy import PiiMode, Privacy

_T = TypeVar("_T")


def _flatten_chunk(
    lines: Sequence[bytes | str], mode: PiiMode, key: bytes
) -> tuple[Flattened, int]:
    """Parse and flatten one batch (in a worker); quarantine positions count from its start."""
    bad: list[QuarantinedRecord] = []
    line_of: list[int] = []  # the line of each parsed record

    def parsed() -> Iterator[object]:
        # parsed one at a time, inside flatten_orders: each record is taken apart while it is
        # still in the processor's cache, with the cyclic collector paused
        for offset, line in enumerate(lines):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                # the text is not kept: unparsed, it could still hold a secret
                reason = f"the record is not valid JSON: {str(error)[:80]}"
                bad.append(QuarantinedRecord("order", offset, None, reason, None))
                continue
            line_of.append(offset)
            yield record

    def recover(position: int) -> object:  # a record bound for the quarantine, parsed again
        return orjson.loads(lines[line_of[position]])

    result = _flatten(parsed(), Privacy(mode=mode, key=key), recover)
    for entry in result.quarantine:
        entry.position = line_of[entry.position]
    result.quarantine[:0] = bad
    return result, len(lines)


def _flatten_file_chunk(
    path: str, start: int, end: int, mode: PiiMode, key: bytes
) -> tuple[Flattened, int]:
    """Read, parse and flatten the lines of ``path`` in bytes ``[start, end)`` (in a worker)."""
    with open(path, "rb") as source:
        source.seek(start)
        data = source.read(end - start)
    lines = data.split(b"\n")
    if lines and not lines[-1]:  # the chunk ends with a newline
        lines.pop()
    return _flatten_chunk(lines, mode, key)


def _file_chunks(path: str, batch_size: int) -> Iterator[tuple[int, int]]:
    """Byte ranges of about ``batch_size`` lines each, cut after a newline."""
    size = os.path.getsize(path)
    with open(path, "rb") as source:
        sample = source.read(1 << 20)
        lines = max(1, sample.count(b"\n"))
        step = max(1, len(sample) // lines * batch_size)
        start = 0
        while start < size:
            source.seek(min(size, start + step))
            rest = source.readline()  # to the end of the line the cut fell in
            end = min(size, start + step + len(rest))
            yield start, end
            start = end


def _in_pool(
    tasks: Iterator[tuple[Callable[..., _T], tuple[Any, ...]]], workers: int
) -> Iterator[_T]:
    """Run ``(function, args)`` tasks on ``workers`` processes; results in task order."""
    context = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[Future[_T]] = deque()
        for function, args in tasks:
            pending.append(pool.submit(function, *args))
            if len(pending) >= 2 * workers:  # bounded: at most two batches per worker
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _start_method() -> str:
    # fork is cheap but unsafe in a process with other threads (a lock held at the fork stays
    # held in the child): then start clean interpreters instead
    return "fork" if threading.active_count() == 1 and os.name == "posix" else "spawn"


def iter_flatten_json(
    lines: Iterable[bytes | str] | str | os.PathLike[str],
    *,
    privacy: Privacy | None = None,
    batch_size: int = 1_000,
    workers: int | None = None,
) -> Iterator[Flattened]:
    """Flatten JSON-encoded orders, one per line or item, on ``workers`` processes.

    Args:
        lines: Each item one order as JSON text (e.g. the lines of a file); or the path of a
            file of newline-delimited JSON, which the workers then read themselves, each its
            own part (batches of about ``batch_size`` orders, cut by size).
        privacy: The PII policy (its key goes to the workers; by default a fresh one).
        batch_size: Orders per batch (per worker task and per result).
        workers: Worker processes (default: one per core). With 1, no process is started.
            Workers are forked when this process has no other thread, started afresh
            (``spawn``, about a second each) when it has.

    Yields:
        One :class:`~omsframe.flatten.Flattened` per batch, in input order; a line that is not
        valid JSON is quarantined (without its text) and the batch goes on.

    Example:
        >>> batches = iter_flatten_json([b'{"id": 7}'], workers=1)
        >>> next(batches).tables["orders"].column("order_id").to_pylist()
        [7]
    """
    privacy = privacy or Privacy()
    workers = workers or os.cpu_count() or 1
    mode, key = privacy.mode, privacy.key
    tasks: Iterator[tuple[Callable[..., tuple[Flattened, int]], tuple[Any, ...]]]
    if isinstance(lines, str | os.PathLike) and workers > 1:
        path = os.fspath(lines)  # each worker reads its own part of the file
        tasks = (
            (_flatten_file_chunk, (path, *part, mode, key))
            for part in _file_chunks(path, batch_size)
        )
    else:
        source = iter(_lines(os.fspath(lines)) if isinstance(lines, str | os.PathLike) else lines)
        chunks = iter(lambda: list(itertools.islice(source, batch_size)), [])
        tasks = ((_flatten_chunk, (chunk, mode, key)) for chunk in chunks)
    results = (f(*args) for f, args in tasks) if workers == 1 else _in_pool(tasks, workers)
    first = 0  # lines before this batch
    for result, count in results:
        for entry in result.quarantine:
            entry.position += first
        first += count
        yield result


def _lines(path: str) -> Iterator[bytes]:
    with open(path, "rb") as source:
        for line in source:
            yield line.rstrip(b"\n")
