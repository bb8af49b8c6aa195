"""Fakes shared by the client tests: time that moves only when someone sleeps, a clean env."""

from __future__ import annotations

import threading

import pytest

ENVIRONMENT = (
    *("URL", "TOKEN", "USERNAME", "PASSWORD"),
    *("CONCURRENCY", "PAGE_SIZE", "TIMEOUT", "COMPRESS"),
)


class FakeTime:
    """A monotonic clock that only moves when someone sleeps; records every sleep.

    Pass ``fake.sleep`` and ``fake.clock`` to a client or a rate budget: nothing waits for real.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def clear_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every ``OMSFRAME_*`` setting, so that a developer's shell cannot leak into a test."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(f"OMSFRAME_{name}", raising=False)
