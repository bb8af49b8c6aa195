"""Where each stored order is, and the file that remembers it between syncs.

Every upsert of orders needs to know which file (month and file name) each incoming order is
already stored in. :class:`OrderLayout` answers that for a whole cache in 12 bytes an order.
Building it means reading the ``order_id`` column of every ``orders`` file (~175 files, ~0.35 s
of CPU for 100,000 orders, a third of an incremental sync), so a sync leaves it in
``.orders-index.arrow`` beside the manifest, each file's part stamped with the file's inode,
size and modification time (as ``.rows.json`` stamps the row counts). The next sync takes the
ids of every file whose stamp still matches from there and reads only the others: files
written since, by a sync killed midway or by hand. A missing or damaged index is rebuilt from
the files; nothing in it is ever needed to read the cache.

Example:
    >>> layout = OrderLayout()
    >>> layout.add(("2025-01", "part-00000"), [7, 3])
    >>> layout.lookup([3, 4])
    [('2025-01', 'part-00000'), None]
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.ipc

from omsframe.atomic import write_atomic
from omsframe.errors import CacheError

#: The index's file name, in the cache folder.
INDEX_FILE = ".orders-index.arrow"
_SCHEMA = pa.schema([("order_id", pa.int64()), ("file", pa.int32())])
_FILES_KEY = b"omsframe.files"  # schema metadata: [[month, stem, inode, size, mtime_ns], ...]

Place = tuple[str, str]  # (month, file name without .parquet)
Stamp = tuple[int, int, int]  # (inode, size, modification time in ns)


def file_number(stem: str) -> int:
    """The number of a file name (``part-00007`` -> 7; the single-file name sorts first)."""
    return -1 if stem == "part" else int(stem.removeprefix("part-"))


class OrderLayout:
    """Where each stored order is: its month and file name, and how many orders each file holds.

    The order ids are kept in one sorted array beside the code of their file (12 bytes an
    order, where a dict of them took ~100 and grew with the cache).
    """

    def __init__(self) -> None:
        self.sizes: dict[Place, int] = {}
        self._places: list[Place] = []
        self._code: dict[Place, int] = {}
        self._ids = np.empty(0, np.int64)
        self._codes = np.empty(0, np.int32)

    @classmethod
    def of(cls, files: Sequence[tuple[Place, np.ndarray]]) -> OrderLayout:
        """The layout of stored files, each with the ids of its orders (sorted once)."""
        ids = [ids for _, ids in files]
        return cls.from_codes(
            [place for place, _ in files],
            np.concatenate(ids) if ids else np.empty(0, np.int64),
            np.repeat(np.arange(len(files), dtype=np.int32), [len(i) for i in ids]),
        )

    @classmethod
    def from_codes(cls, places: Sequence[Place], ids: np.ndarray, codes: np.ndarray) -> OrderLayout:
        """The layout of the files ``places``: each of ``ids`` is in the file numbered ``codes``.

        Example:
            >>> layout = OrderLayout.from_codes([("2025-01", "part")], np.array([4]), np.array([0]))
            >>> layout.lookup([4]), layout.sizes
            ([('2025-01', 'part')], {('2025-01', 'part'): 1})
        """
        layout = cls()
        for place in places:
            layout._code_of(place)
        layout._insert(ids.astype(np.int64), codes.astype(np.int32))
        layout.sizes = dict.fromkeys(places, 0) | layout.counts()
        return layout

    def _code_of(self, place: Place) -> int:
        code = self._code.get(place)
        if code is None:
            code = self._code[place] = len(self._places)
            self._places.append(place)
        return code

    def add(self, place: Place, ids: list[int]) -> None:
        """Note that the orders ``ids`` are in ``place`` (wherever they were before)."""
        self.sizes[place] = self.sizes.get(place, 0) + len(ids)
        if not ids:
            return
        code = self._code_of(place)
        new = np.unique(np.asarray(ids, np.int64))
        at = self._find(new)
        self._codes[at[at >= 0]] = code
        new = new[at < 0]
        self._insert(new, np.full(len(new), code, np.int32))

    def _insert(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Add ids not stored yet, with their file codes, keeping the ids sorted."""
        all_ids = np.concatenate([self._ids, ids])
        all_codes = np.concatenate([self._codes, codes])
        if len(all_ids) > 1 and bool(np.any(all_ids[1:] < all_ids[:-1])):  # (often in order)
            order = np.argsort(all_ids, kind="stable")
            all_ids, all_codes = all_ids[order], all_codes[order]
        self._ids, self._codes = all_ids, all_codes

    def remove(self, place: Place, ids: list[int]) -> None:
        """Note that the orders ``ids`` left ``place``."""
        at = self._find(np.asarray(ids, np.int64))
        keep = np.ones(len(self._ids), np.bool_)
        keep[at[at >= 0]] = False
        self._ids, self._codes = self._ids[keep], self._codes[keep]
        self.sizes[place] = max(0, self.sizes.get(place, 0) - len(ids))

    def lookup(self, ids: list[int]) -> list[Place | None]:
        """The file of each order (``None``: not stored)."""
        if not len(self._ids):
            return [None] * len(ids)
        at = self._find(np.asarray(ids, np.int64))
        codes = np.where(at >= 0, self._codes[np.maximum(at, 0)], -1)
        places = self._places
        return [places[code] if code >= 0 else None for code in codes.tolist()]

    def _find(self, ids: np.ndarray) -> np.ndarray:
        """The position of each id in the sorted ids, -1 where it is not there."""
        if not len(self._ids):
            return np.full(len(ids), -1, np.int64)
        at = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        return np.where(self._ids[at] == ids, at, -1)

    def place_new(
        self, month: str, count: int, file_orders: int, small_file: int
    ) -> list[tuple[str, int]]:
        """File names (and how many orders each) for ``count`` new orders of ``month``.

        New orders fill the month's last file while it holds fewer than ``small_file``
        orders, up to ``file_orders``; the rest go to new files of at most ``file_orders``.
        """
        stems = sorted((s for m, s in self.sizes if m == month), key=file_number)
        places: list[tuple[str, int]] = []
        if stems and self.sizes[(month, stems[-1])] < small_file:
            take = min(count, file_orders - self.sizes[(month, stems[-1])])
            places.append((stems[-1], take))
            count -= take
        number = file_number(stems[-1]) + 1 if stems else 0
        pieces = -(-count // file_orders)
        for piece in range(pieces):
            size = count // pieces + (1 if piece < count % pieces else 0)
            places.append((f"part-{number + piece:05d}", size))
        return places

    def counts(self) -> dict[Place, int]:
        """How many orders the index holds in each file (what :meth:`lookup` answers)."""
        numbers = np.bincount(self._codes, minlength=len(self._places)).tolist()
        return {place: numbers[code] for code, place in enumerate(self._places)}


def read_layout(
    root: Path,
    files: Sequence[tuple[Place, Stamp]],
    read_ids: Callable[[Place], np.ndarray],
) -> OrderLayout:
    """The layout of the ``orders`` files on disk, from the saved index where it still holds.

    Args:
        root: The cache folder.
        files: Every ``orders`` file on disk, with its stamp.
        read_ids: Reads the ids of one file (for the files the index does not know as they are).

    Example:
        >>> import tempfile
        >>> read_layout(Path(tempfile.mkdtemp()), [(("2025-01", "part"), (1, 2, 3))],
        ...             lambda place: np.array([5, 6])).lookup([6])
        [('2025-01', 'part')]
    """
    on_disk = dict(files)
    saved_places, saved_ids, saved_codes = _read_index(root / INDEX_FILE)
    kept = np.array([on_disk.get(place) == stamp for place, stamp in saved_places], dtype=np.bool_)
    known = {place for (place, _), ok in zip(saved_places, kept, strict=True) if ok}
    fresh = [(place, read_ids(place)) for place, _ in files if place not in known]
    places = [place for place, _ in files]  # numbered in the order of the files on disk
    number = {place: k for k, place in enumerate(places)}
    remap = np.array([number.get(place, -1) for place, _ in saved_places], np.int32)
    mask = kept[saved_codes] if len(saved_codes) else np.zeros(0, np.bool_)
    ids = [saved_ids[mask], *(ids for _, ids in fresh)]
    codes = [remap[saved_codes[mask]]]
    codes += [np.full(len(i), number[place], np.int32) for place, i in fresh]
    return OrderLayout.from_codes(places, np.concatenate(ids), np.concatenate(codes))


def _read_index(
    path: Path,
) -> tuple[list[tuple[Place, Stamp]], np.ndarray, np.ndarray]:
    """The saved index: its files with their stamps, and the ids with their file's number."""
    nothing: tuple[list[tuple[Place, Stamp]], np.ndarray, np.ndarray] = (
        [],
        np.empty(0, np.int64),
        np.empty(0, np.int32),
    )
    try:
        with pa.memory_map(os.fspath(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        entries = orjson.loads((table.schema.metadata or {})[_FILES_KEY])
        places = [((str(m), str(s)), (int(i), int(z), int(t))) for m, s, i, z, t in entries]
        ids = table.column("order_id").to_numpy()
        codes = table.column("file").to_numpy()
        if not table.schema.remove_metadata().equals(_SCHEMA) or (
            len(codes) and not 0 <= int(codes.min()) <= int(codes.max()) < len(places)
        ):
            return nothing
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException, orjson.JSONDecodeError):
        return nothing  # missing or damaged: the files are read instead
    return places, ids, codes


def save_layout(root: Path, layout: OrderLayout, files: Sequence[tuple[Place, Stamp, int]]) -> None:
    """Leave the layout in the cache folder for the next sync (see the module).

    ``files`` are the ``orders`` files on disk, each with its stamp and its row count. A file
    whose count differs from the orders the layout holds in it is left out (the next sync
    reads it). Not writable (a read-only cache), nothing is saved.

    Example:
        >>> import tempfile
        >>> root, layout = Path(tempfile.mkdtemp()), OrderLayout()
        >>> layout.add(("2025-01", "part"), [5, 6])
        >>> save_layout(root, layout, [(("2025-01", "part"), (1, 2, 3), 2)])
        >>> files = [(("2025-01", "part"), (1, 2, 3))]  # the same file: taken from the index
        >>> read_layout(root, files, lambda place: np.array([9])).lookup([5, 9])
        [('2025-01', 'part'), None]
    """
    held = layout.counts()
    entries = [
        (place, stamp) for place, stamp, rows in files if place in held and held[place] == rows
    ]
    number = {place: k for k, (place, _) in enumerate(entries)}
    remap = np.array([number.get(place, -1) for place in layout._places], np.int32)
    codes = remap[layout._codes] if len(layout._codes) else np.empty(0, np.int32)
    keep = codes >= 0
    metadata = {_FILES_KEY: orjson.dumps([[*place, *stamp] for place, stamp in entries])}
    table = pa.table(
        {"order_id": layout._ids[keep], "file": codes[keep]},
        schema=_SCHEMA.with_metadata(metadata),
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with contextlib.suppress(CacheError):  # (a read-only cache: the files are read each time)
        write_atomic(root / INDEX_FILE, sink.getvalue().to_pybytes())
