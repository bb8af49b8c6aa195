"""How fast one client may talk to the OMS: backoff, ``Retry-After`` and a shared rate budget.

:class:`RateBudget` is shared by all concurrent requests of one client. It bounds the number of
requests in flight and spaces their starts. A 429 halves the number allowed in flight, doubles
the spacing and blocks every request until the server's ``Retry-After`` has passed; successes
then bring both back gradually (additive increase, multiplicative decrease: AIMD).

Time is read from an injectable ``clock`` (monotonic seconds) and waited out with an injectable
``sleep``, so tests run without waiting.

Example:
    >>> budget = RateBudget(limit=4)
    >>> with budget.slot() as start:
    ...     pass
    >>> budget.allowed
    4.0
"""

from __future__ import annotations

import datetime as dt
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from omsframe.config import RetryPolicy

__all__ = ["BudgetStats", "RateBudget", "WaitTooLong", "backoff_delay", "parse_retry_after"]

Clock = Callable[[], float]
Sleep = Callable[[float], None]

# Spacing between request starts right after a first 429, and the most it grows to.
FIRST_SPACING = 0.05
MAX_SPACING = 5.0
# Spacing below this after recovery is dropped altogether.
MIN_SPACING = 0.001


def backoff_delay(
    attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first failure).

    Exponential, capped at ``policy.backoff_max``, with up to ``policy.jitter`` of it taken off
    at random.

    Example:
        >>> backoff_delay(3, RetryPolicy(backoff_initial=1, jitter=0), rand=lambda: 0.5)
        4.0
    """
    full = min(policy.backoff_max, policy.backoff_initial * 2.0 ** (attempt - 1))
    return float(full * (1.0 - policy.jitter * rand()))


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    An HTTP-date is measured from the response's ``Date`` header when given (so that clock skew
    between client and server does not matter), else from the local wall clock.

    Args:
        value: The ``Retry-After`` header value.
        date: The response's ``Date`` header value.

    Returns:
        Seconds (never negative), or ``None`` when the header is absent or unreadable.

    Example:
        >>> parse_retry_after("7")
        7.0
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", date="Wed, 21 Oct 2015 07:28:00 GMT")
        30.0
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    until = _http_date(value)
    if until is None:
        return None
    now = _http_date(date) if date else None
    if now is None:
        now = dt.datetime.now(dt.UTC)
    return max(0.0, (until - now).total_seconds())


def _http_date(value: str) -> dt.datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class WaitTooLong(Exception):  # noqa: N818 (internal signal, turned into RateLimitError)
    """The server's pending ``Retry-After`` lasts longer than the caller will wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"{seconds:.0f} s")
        self.seconds = seconds


@dataclass(frozen=True)
class BudgetStats:
    """What the budget did so far: throttles seen and seconds spent waiting before starts."""

    throttled: int
    waited_seconds: float
    allowed: float
    spacing: float


class RateBudget:
    """The request budget shared by all concurrent requests of one client (thread-safe).

    Args:
        limit: The most requests in flight (the configured concurrency).
        clock: Monotonic seconds.
        sleep: Waits a number of seconds.

    Example:
        >>> budget = RateBudget(limit=2)
        >>> budget.throttle(retry_after=0.0, started=0.0)
        >>> budget.allowed
        1.0
    """

    def __init__(self, limit: int, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep):
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._allowed = float(limit)
        self._in_flight = 0
        self._spacing = 0.0
        self._next_start = 0.0  # no request starts before this moment (spacing)
        self._not_before = 0.0  # nor before this one (Retry-After)
        self._last_cut = float("-inf")
        self._throttled = 0
        self._waited = 0.0

    @property
    def allowed(self) -> float:
        """How many requests may be in flight now (between 1 and ``limit``)."""
        return self._allowed

    @property
    def in_flight(self) -> int:
        """How many requests are in flight now."""
        return self._in_flight

    def stats(self) -> BudgetStats:
        """A snapshot of what the budget did."""
        with self._cond:
            return BudgetStats(self._throttled, self._waited, self._allowed, self._spacing)

    @contextmanager
    def slot(self, max_wait: float = math.inf) -> Iterator[float]:
        """Hold one in-flight slot for the duration of a request; yields its start time.

        Blocks until a slot is free, the spacing since the previous start has passed and no
        ``Retry-After`` is pending.

        Raises:
            WaitTooLong: A pending ``Retry-After`` lasts longer than ``max_wait`` seconds.
        """
        start = self._acquire(max_wait)
        try:
            yield start
        finally:
            self._release()

    def _acquire(self, max_wait: float) -> float:
        with self._cond:
            while self._in_flight >= max(1, int(self._allowed)):
                self._cond.wait()
            self._in_flight += 1
        try:
            return self._wait_for_start(max_wait)
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def _wait_for_start(self, max_wait: float) -> float:
        # Reserve a start time (after the previous reservation plus the spacing, and after any
        # Retry-After). A throttle that arrives while we wait moves Retry-After past our
        # reservation: then reserve again.
        reserved: float | None = None
        while True:
            with self._cond:
                now = self._clock()
                if reserved is None or reserved < self._not_before:
                    reserved = max(now, self._next_start, self._not_before)
                    self._next_start = reserved + self._spacing
                if now >= reserved:
                    return now
                delay = reserved - now
                if self._not_before - now > max_wait:
                    raise WaitTooLong(self._not_before - now)
                self._waited += delay
            self._sleep(delay)

    def succeeded(self) -> None:
        """Report a successful answer: grow back towards ``limit``, shrink the spacing."""
        with self._cond:
            if self._allowed < self.limit:
                self._allowed = min(float(self.limit), self._allowed + 1.0 / self._allowed)
                self._cond.notify_all()
            if self._spacing:
                self._spacing = 0.0 if self._spacing * 0.9 < MIN_SPACING else self._spacing * 0.9

    def throttle(self, retry_after: float, started: float) -> None:
        """Report a 429 for a request that started at ``started``.

        Nothing starts before ``retry_after`` seconds from now. The in-flight allowance halves
        and the spacing doubles, once per burst: 429s for requests that started before the
        last cut do not cut again.
        """
        with self._cond:
            now = self._clock()
            self._throttled += 1
            self._not_before = max(self._not_before, now + retry_after)
            if started >= self._last_cut:
                self._allowed = max(1.0, self._allowed / 2.0)
                self._spacing = min(MAX_SPACING, max(FIRST_SPACING, self._spacing * 2.0))
                self._last_cut = now
