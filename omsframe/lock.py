"""One writer per cache: an exclusive lock that dies with its process.

The lock is an OS advisory lock (``flock``) on ``<cache>/.lock``: the operating system releases
it when the holding process ends in any way (exit, Ctrl-C, kill -9, a kernel restart), so a
stale lock from a dead process is never an obstacle — the next writer simply takes it. The file
also records who holds it (pid, host, since when), for the error message a second writer gets.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as root, CacheLock(root):
    ...     pass
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from omsframe.errors import CacheError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl
    fcntl = None  # type: ignore[assignment]


class CacheLock:
    """Exclusive writer lock on a cache folder.

    Args:
        root: The cache folder.
        wait: ``False`` to fail at once when another writer holds the lock, ``True`` to wait
            for it, or a number of seconds to wait at most.
        poll: Seconds between attempts while waiting.

    Raises:
        CacheError: When another process holds the lock (and waiting is off or timed out).
    """

    def __init__(
        self, root: str | os.PathLike[str], *, wait: bool | float = False, poll: float = 0.2
    ):
        self.path = Path(root) / ".lock"
        self.wait = wait
        self.poll = poll
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (see the class for waiting)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise CacheError(
                f"cannot open the lock of cache {self.path.parent}: {error.strerror or error}; "
                "check that the folder exists and is writable"
            ) from None
        deadline = None
        if self.wait is not False:
            deadline = float("inf") if self.wait is True else time.monotonic() + float(self.wait)
        while True:
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is None or time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(fd)
                    advice = (
                        "wait for it to finish, or pass wait=True (CLI: --wait) to queue behind it"
                        if self.wait is False
                        else f"still locked after waiting {float(self.wait):g} s; "
                        "wait longer (wait=True waits for as long as it takes)"
                    )
                    raise CacheError(
                        f"cache {self.path.parent} is locked by another sync or rebuild "
                        f"({holder}); {advice}"
                    ) from None
                time.sleep(self.poll)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def holder(self) -> str:
        """Who holds (or last held) the lock, as text for messages."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "holder unknown"
        return (
            f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
        )

    @staticmethod
    def running(root: str | os.PathLike[str]) -> str | None:
        """Who holds the lock of a cache now (as text for messages), or ``None`` if nobody.

        Looks without taking the lock, and creates nothing.

        Example:
            >>> import tempfile
            >>> root = tempfile.mkdtemp()
            >>> with CacheLock(root):
            ...     CacheLock.running(root).startswith("pid")
            True
            >>> CacheLock.running(root) is None
            True
        """
        path = Path(root) / ".lock"
        if fcntl is None or not path.exists():
            return None
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return CacheLock(root).holder()
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        """Release the lock (the file stays; it holds no lock by itself)."""
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CacheLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
