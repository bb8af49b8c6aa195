"""Sync under seeded combinations of faults: nothing lost, doubled or wrong (see reliability)."""

from __future__ import annotations

import pytest

from tests.reliability import combination, run

# a handful that together cover every fault kind, the live clock and both ignored dialects
QUICK = (8, 11, 17, 21, 24)


@pytest.mark.parametrize("seed", QUICK)
def test_sync_stays_exact_under_faults(seed: int) -> None:
    outcome = run(seed)
    assert outcome.injected, "the run injected no fault: pick another seed"
    assert outcome.exact, outcome
    assert outcome.stored == outcome.orders > 150


def test_the_quick_seeds_cover_every_fault_and_dialect() -> None:
    described = " | ".join(combination(seed).describe() for seed in QUICK)
    for kind in (
        "5xx",
        "truncated",
        "dropped",
        "invalid_json",
        "slow",
        "live clock",
        "filters ignored",
        "ordering ignored",
    ):
        assert kind in described, kind


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 51))
def test_the_campaign(seed: int) -> None:
    outcome = run(seed)
    assert outcome.exact, outcome
