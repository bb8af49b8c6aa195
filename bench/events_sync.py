"""Benchmark: the webhook events' part of a sync, beside a naive loop and one process.

A shop's webhook events outnumber its orders (~5 an order in the simulator) and each carries
a whole order: their read is most of a first sync that keeps them. Jobs, each in its own
process against one simulator process (see :mod:`bench.sync_compare`):

- ``orders``: ``omsframe.sync(events=False)`` into an empty cache;
- ``sync``: ``omsframe.sync()`` (orders and events) into an empty cache; ``events`` below is
  its time less ``orders``' in the same round;
- ``sync-1``: the same in one process (``workers=0``);
- ``naive-events``: a sequential httpx loop over the events' pages, ``pandas.json_normalize``,
  ``to_parquet`` (nested values as JSON text);
- ``sync@old`` (with ``--against DIR``): ``sync`` with the omsframe of another checkout
  (``DIR``), e.g. the commit before a change, for a before/after in the same run;
- ``incremental`` (and ``incremental@old``): ``omsframe.sync()`` again, on a copy of the
  round's ``sync`` (``sync@old``) cache, after the shop's clock moved on by ``--advance``
  hours (a day by default): the daily sync.

Each round runs every job once, in turn (a machine whose speed drifts slows them all); rows
give the median and every run's time.

Run: ``python -m bench.events_sync [--orders 20000] [--rounds 3] [--against DIR]
[--advance HOURS] [--skip sync-1 naive-events]``; prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.sync_compare import SERVER, peak_mib, snapshot, start_server, summary


def job(kind: str, url: str, token: str, cache: str) -> dict[str, Any]:
    """Run one measured job in this process."""
    import httpcore  # noqa: F401  (httpx imports it on its first client: a one-time import)
    import httpx
    import orjson
    import pandas as pd

    import omsframe

    started = time.perf_counter()  # imports are not what is measured
    detail = ""
    if kind in ("orders", "sync", "sync-1", "sync@old", "incremental", "incremental@old"):
        report = omsframe.sync(
            url,
            token=token,
            cache=cache,
            events=kind != "orders",
            progress=False,
            workers=0 if kind == "sync-1" else None,
        )
        detail = f"{report.orders_seen:,} orders, {report.events_seen:,} events read"
        if kind.endswith("@old"):
            detail += f" (omsframe from {Path(omsframe.__file__).parent.parent})"
    elif kind == "naive-events":
        frames = []
        with httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=60) as http:
            page = 1
            while True:
                response = http.get(
                    f"{url}/api/v1/oms/orders/webhook-events/",
                    params={"page": page, "limit": 100, "ordering": "id"},
                )
                if response.status_code == 404:
                    break
                body = response.json()
                frames.append(pd.json_normalize(body["results"], max_level=1))
                if not body["next"]:
                    break
                page += 1
        events = pd.concat(frames, ignore_index=True)
        for column in events.columns:  # nested leftovers as JSON text (parquet-friendly)
            if events[column].dtype == object:
                events[column] = events[column].map(
                    lambda v: orjson.dumps(v).decode() if isinstance(v, list | dict) else v
                )
        events.to_parquet(Path(cache) / "events.parquet")
        detail = f"{len(events):,} events"
    seconds = time.perf_counter() - started
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    detail += f"; CPU {cpu.ru_utime + cpu.ru_stime:.1f} s"
    if children.ru_maxrss:
        detail += f" + workers {children.ru_utime + children.ru_stime:.1f} s"
    return {"kind": kind, "seconds": seconds, "peak_mib": peak_mib(), "detail": detail}


def run(kind: str, url: str, token: str, cache: str, against: str | None) -> dict[str, Any]:
    """Run a job in a child process (``sync@old`` with ``against`` first on its path)."""
    # (this module from here, then omsframe from ``against``, ahead of this checkout)
    first = f"sys.path.insert(0, {against!r}); " if kind.endswith("@old") and against else ""
    program = f"import sys; from bench.events_sync import main; {first}main()"
    child = subprocess.run(
        [sys.executable, "-c", program, "--child", kind, url, token, cache],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        reason = (child.stderr.strip().splitlines() or ["?"])[-1][:80]
        return {"kind": kind, "seconds": float("nan"), "peak_mib": float("nan"), "detail": reason}
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def measure(
    orders: int, rounds: int, against: str | None, advance: float, skip: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every job's runs against one simulator of ``orders`` orders (a new server a round)."""
    server, first, command = start_server(SERVER, orders)
    url, token = first.split()

    kinds = ["orders", "sync", "sync-1", "naive-events"] + (["sync@old"] if against else [])
    kinds = [kind for kind in kinds if kind not in skip]
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(rounds):
            if number:
                url, token = command("reset").split()
            for kind in kinds:
                target = os.path.join(tmp, kind)
                os.makedirs(target, exist_ok=True)
                runs.setdefault(kind, []).append(run(kind, url, token, target, against))
                if kind not in ("sync", "sync@old"):
                    shutil.rmtree(target)
            command(f"advance {advance * 3600}")
            for kind in ("sync", "sync@old") if against else ("sync",):
                later = kind.replace("sync", "incremental")
                target = os.path.join(tmp, later)
                snapshot(os.path.join(tmp, kind), target)
                runs.setdefault(later, []).append(run(later, url, token, target, against))
                shutil.rmtree(target)
                shutil.rmtree(os.path.join(tmp, kind))
    assert server.stdin is not None
    server.stdin.close()  # (the server process ends)
    server.wait()
    runs["events"] = [
        {"kind": "events", "seconds": s["seconds"] - o["seconds"], "peak_mib": 0, "detail": ""}
        for s, o in zip(runs["sync"], runs["orders"], strict=True)
    ]
    return runs


def main() -> None:
    """Run every job in rounds, print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="an older checkout of omsframe, run as sync@old")
    parser.add_argument(
        "--advance", type=float, default=24.0, help="hours of shop time before the incremental"
    )
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=["sync-1", "naive-events"],
        help="jobs to leave out (the naive loop holds ~0.35 GB per 1,000 orders' events)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(job(*args.child)))
        return
    runs = measure(args.orders, max(1, args.rounds), args.against, args.advance, args.skip)
    print("| job | seconds | peak RSS MiB | detail |\n|---|---|---|---|")
    for kind, done in runs.items():
        result = summary(kind, done)
        print(
            f"| {kind} | {result['seconds']:.2f} | {result['peak_mib']:.0f} | {result['detail']} |"
        )
    pairs = [
        f"{top} / {bottom} "
        + ", ".join(
            f"{t['seconds'] / b['seconds']:.2f}x"
            for t, b in zip(runs[top], runs[bottom], strict=True)
        )
        for top, bottom in (
            ("sync-1", "sync"),
            ("sync@old", "sync"),
            ("incremental@old", "incremental"),
            ("naive-events", "events"),
        )
        if top in runs
    ]
    print("\nround by round: " + "; ".join(pairs))


if __name__ == "__main__":
    main()
