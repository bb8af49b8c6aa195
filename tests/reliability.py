"""The reliability campaign: sync under seeded combinations of faults, then check the cache.

Each run draws, from its seed, a combination of the simulator's faults (429 with ``Retry-After``
in seconds or as an HTTP date, 5xx with JSON or HTML bodies, slow answers, truncated bodies,
dropped connections, invalid JSON), with or without a live clock (orders arrive and change
between page requests), against a server that may ignore filters and/or ordering. It runs a
full sync, moves the shop on, runs an incremental sync, and compares the cache with the shop's
truth: every order once (none lost, none doubled), every state, every amount to the cent.

``python -m tests.reliability --runs 50`` runs the campaign and prints the figures for
RELIABILITY.md (``make reliability``); the tests run a handful of seeds, and 50 when ``slow``
tests are asked for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from omsframe.client import Client
from omsframe.config import RetryPolicy
from omsframe.load import load
from omsframe.simulator.server import Clock, Dialect, Faults, serve
from omsframe.simulator.world import World, from_us
from omsframe.sync import sync

FAST_RETRIES = RetryPolicy(max_attempts=8, backoff_initial=0.01, backoff_max=0.1)
FAULT_KINDS = ("429", "5xx", "slow", "truncated", "dropped", "invalid_json")


@dataclass(frozen=True)
class Combination:
    """One run's conditions."""

    seed: int
    faults: Faults
    dialect: Dialect
    live: bool

    def describe(self) -> str:
        """Short text: the faults with their rates, the clock, the dialect."""
        parts = [
            f"{kind} {getattr(self.faults, f'rate_{kind}'):.0%}"
            for kind in FAULT_KINDS
            if getattr(self.faults, f"rate_{kind}")
        ]
        if self.faults.rate_429:
            parts[0] += f" ({self.faults.retry_after})"
        parts.append("live clock" if self.live else "still clock")
        if not self.dialect.honour_filters:
            parts.append("filters ignored")
        if not self.dialect.honour_ordering:
            parts.append(f"ordering ignored ({self.dialect.default_ordering})")
        return ", ".join(parts)


def combination(seed: int) -> Combination:
    """The conditions of run ``seed``: two to four faults, a clock, a dialect."""
    rng = random.Random(seed)
    kinds = rng.sample(FAULT_KINDS, rng.randint(2, 4))
    rates = {f"rate_{kind}": round(rng.uniform(0.02, 0.08), 3) for kind in kinds}
    if "rate_429" in rates:
        rates["rate_429"] = min(rates["rate_429"], 0.04)  # each 429 costs a whole second
    faults = Faults(
        seed=seed,
        retry_after=rng.choice(("seconds", "date")),
        retry_after_seconds=1,
        slow_seconds=0.05,
        **rates,
    )
    dialect = Dialect(
        honour_filters=rng.random() < 0.75,
        honour_ordering=rng.random() < 0.65,
        default_ordering=rng.choice(("-id", "id", "-modified_date", "modified_date")),
    )
    return Combination(seed, faults, dialect, live=rng.random() < 0.5)


@dataclass
class Outcome:
    """What one run found."""

    seed: int
    conditions: str
    orders: int = 0
    stored: int = 0
    lost: int = 0
    doubled: int = 0
    wrong_state: int = 0
    wrong_money: int = 0
    events: int = 0
    events_lost: int = 0
    requests: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    seconds: float = 0.0

    @property
    def exact(self) -> bool:
        """Nothing lost, doubled or wrong."""
        return not (
            self.lost or self.doubled or self.wrong_state or self.wrong_money or self.events_lost
        )


def run(seed: int, orders: int = 240) -> Outcome:
    """One run of the campaign (see the module docstring)."""
    conditions = combination(seed)
    world = World.generate(
        seed=seed, orders=orders, start=dt.date(2025, 3, 1), end=dt.date(2025, 5, 1)
    )
    start = from_us(world.end_us) - dt.timedelta(days=6)
    step = dt.timedelta(minutes=15) if conditions.live else dt.timedelta(0)
    outcome = Outcome(seed, conditions.describe())
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as cache,
        serve(
            world,
            faults=conditions.faults,
            dialect=conditions.dialect,
            clock=Clock(start=start, step_per_request=step),
        ) as oms,
    ):
        client = Client(oms.url, token=oms.token, retry=FAST_RETRIES, page_size=25)
        with client:
            sync(client=client, cache=cache, progress=False)
            oms.freeze()
            oms.advance(dt.timedelta(days=2))
            report = sync(client=client, cache=cache, progress=False)
            if not report.complete:  # a short read is reported; the next sync completes it
                sync(client=client, cache=cache, progress=False)
            outcome.retries = client.stats.retries
        now = oms.now_us
        outcome.requests = oms.stats.total
        outcome.injected = Counter(oms.stats.faults)
        _compare(world, now, load(cache, engine="pyarrow"), outcome)
    outcome.seconds = time.monotonic() - began
    return outcome


def _compare(world: World, now: int, tables: object, outcome: Outcome) -> None:
    n = world.visible_orders(now)
    states, _ = world.order_status(now)
    expected_state = {int(i): str(int(s)) for i, s in zip(world.order_id[:n], states, strict=True)}
    orders = tables["orders"]  # type: ignore[index]
    ids = orders.column("order_id").to_pylist()
    counts = Counter(ids)
    outcome.orders, outcome.stored = n, len(ids)
    outcome.lost = len(set(expected_state) - set(counts))
    outcome.doubled = sum(c - 1 for c in counts.values() if c > 1)
    stored_state = dict(zip(ids, orders.column("state_code").to_pylist(), strict=True))
    outcome.wrong_state = sum(
        1 for i, s in expected_state.items() if i in stored_state and stored_state[i] != s
    )
    totals = dict(zip(ids, orders.column("net_total").to_pylist(), strict=True))
    for index in range(n):
        lo, hi = int(world.item_ptr[index]), int(world.item_ptr[index + 1])
        cents = int((world.item_price[lo:hi] - world.item_discount[lo:hi]).sum())
        order_id = int(world.order_id[index])
        if order_id in totals and totals[order_id] != Decimal(cents) / 100:
            outcome.wrong_money += 1
    events = tables["events"].column("event_id").to_pylist()  # type: ignore[index]
    outcome.events = world.visible_events(now)
    outcome.events_lost = len(set(range(1, outcome.events + 1)) - set(events))
    outcome.doubled += len(events) - len(set(events))


def main() -> None:
    """Run the campaign and print the figures as Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()
    outcomes = []
    print(
        "| seed | conditions | orders | lost | doubled | wrong state | wrong money | "
        "events | requests | faults injected | retries | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(args.first_seed, args.first_seed + args.runs):
        o = run(seed)
        outcomes.append(o)
        injected = ", ".join(f"{k} {v}" for k, v in sorted(o.injected.items()))
        print(
            f"| {o.seed} | {o.conditions} | {o.orders} | {o.lost} | {o.doubled} | "
            f"{o.wrong_state} | {o.wrong_money} | {o.events} | {o.requests} | {injected} | "
            f"{o.retries} | {o.seconds:.1f} |",
            flush=True,
        )
    total: Counter[str] = Counter()
    for o in outcomes:
        total.update(o.injected)
    print(
        f"\n{len(outcomes)} runs, {sum(o.orders for o in outcomes):,} orders and "
        f"{sum(o.events for o in outcomes):,} events synced; lost "
        f"{sum(o.lost + o.events_lost for o in outcomes)}, doubled "
        f"{sum(o.doubled for o in outcomes)}, wrong state {sum(o.wrong_state for o in outcomes)}, "
        f"wrong money {sum(o.wrong_money for o in outcomes)}; "
        f"{sum(o.requests for o in outcomes):,} requests with faults injected: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(total.items()))
    )


if __name__ == "__main__":
    main()
