"""The client's rate budget (AIMD, Retry-After, spacing), backoff and Retry-After parsing."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from omsframe.config import RetryPolicy
from omsframe.ratelimit import RateBudget, backoff_delay, parse_retry_after
from tests.fakes import FakeTime


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("12", None, 12.0),
        ("0.25", None, 0.25),
        ("-3", None, 0.0),
        ("Wed, 21 Oct 2025 07:28:30 GMT", "Wed, 21 Oct 2025 07:28:00 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None, 0.0),  # in the past: go now
        ("soon", None, None),
        (None, None, None),
        ("", None, None),
    ],
)
def test_parse_retry_after(value: str | None, date: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, date) == expected


def test_backoff_grows_exponentially_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=4, jitter=0.5)
    assert [backoff_delay(n, policy, rand=lambda: 0.0) for n in range(1, 6)] == [0.5, 1, 2, 4, 4]
    assert backoff_delay(3, policy, rand=lambda: 1.0) == 1.0


def test_a_429_halves_what_may_be_in_flight_and_success_brings_it_back_gradually() -> None:
    fake = FakeTime()
    budget = RateBudget(8, clock=fake.clock, sleep=fake.sleep)
    budget.throttle(retry_after=0, started=fake.now)
    assert budget.allowed == 4
    steps = 0
    while budget.allowed < 8:
        budget.succeeded()
        steps += 1
    assert 10 < steps < 40  # additive: about one more slot per window of successes
    assert budget.allowed == 8


def test_a_burst_of_429s_cuts_once() -> None:
    fake = FakeTime()
    budget = RateBudget(8, clock=fake.clock, sleep=fake.sleep)
    started = fake.now
    fake.now += 1
    for _ in range(4):  # four requests of the same burst answer 429
        budget.throttle(retry_after=0, started=started)
    assert budget.allowed == 4
    with budget.slot() as later:
        pass
    budget.throttle(retry_after=0, started=later)
    assert budget.allowed == 2
    assert budget.stats().throttled == 5


def test_nothing_starts_before_retry_after() -> None:
    fake = FakeTime()
    budget = RateBudget(4, clock=fake.clock, sleep=fake.sleep)
    budget.throttle(retry_after=9, started=fake.now)
    with budget.slot() as start:
        assert start >= 109
    assert sum(fake.sleeps) == pytest.approx(9)


def test_starts_are_spaced_after_a_429_and_the_spacing_recovers() -> None:
    fake = FakeTime()
    budget = RateBudget(4, clock=fake.clock, sleep=fake.sleep)
    budget.throttle(retry_after=0, started=fake.now)
    starts = []
    for _ in range(3):
        with budget.slot() as start:
            starts.append(start)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.05 - 1e-9 for gap in gaps)
    for _ in range(200):
        budget.succeeded()
    assert budget.stats().spacing == 0


def test_in_flight_never_exceeds_the_allowance() -> None:
    budget = RateBudget(3)
    budget.throttle(retry_after=0, started=time.monotonic())  # now 1 allowed (3 / 2 -> 1.5)
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak
        with budget.slot():
            with lock:
                peak = max(peak, budget.in_flight)
            time.sleep(0.005)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1 and budget.in_flight == 0
