"""Atomic file writes: readers see the old file or the new one, never half of one.

Every file omsframe writes goes to a temporary name in the same folder, is flushed and fsynced,
made readable by its owner only, and renamed over the target. A failure (a full disk, a
read-only folder) leaves the target as it was and no temporary file behind, and becomes one
clear :class:`~omsframe.errors.CacheError`.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> target = Path(tempfile.mkdtemp()) / "note.txt"
    >>> write_atomic(target, b"hello"); target.read_bytes(), oct(target.stat().st_mode & 0o777)
    (b'hello', '0o600')
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from omsframe.errors import CacheError

PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": True}


def _write_failed(path: Path, error: OSError) -> CacheError:
    return CacheError(
        f"cannot write {path}: {error.strerror or error}; check free space and permissions "
        "of the cache folder (that file is as it was; a sync resumes from its last checkpoint)"
    )


def _temporary(path: Path) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _write_failed(path, error) from None
    os.close(fd)
    return temporary


def _commit(temporary: str, path: Path, write: Callable[[str], object]) -> None:
    """Write to ``temporary``, fsync, make it owner-only and rename it over ``path``."""
    try:
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
        _sync_folder(path.parent)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise _write_failed(path, error) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    """Make a rename durable: fsync the folder that holds the file (where the OS allows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes so that readers see the old file or the new one, never half of one.

    Raises:
        CacheError: The file cannot be written (full disk, read-only folder...); the old
            file, if any, is left as it was.
    """
    _commit(_temporary(path), path, lambda temporary: Path(temporary).write_bytes(data))


def write_parquet_atomic(table: pa.Table, path: Path, **options: Any) -> None:
    """Write a parquet file atomically (temporary file, fsync, rename), owner-only.

    Args:
        table: The rows.
        path: The file.
        **options: ``pyarrow.parquet.write_table`` options over :data:`PARQUET_OPTIONS`.

    Raises:
        CacheError: As :func:`write_atomic`.
    """
    settings = {**PARQUET_OPTIONS, **options}
    _commit(
        _temporary(path),
        path,
        lambda temporary: pq.write_table(table, temporary, **settings),
    )
