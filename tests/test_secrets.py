"""No secret and no raw personal data anywhere omsframe writes, logs, raises or shows."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

import omsframe as of
from omsframe.simulator import catalogue as cat
from omsframe.simulator.server import DEFAULT_PASSWORD, DEFAULT_USERNAME, Faults, serve
from omsframe.simulator.world import World

TOKEN = "user-token-7d2f9c41e8a0"


def file_text(path: Path) -> str:
    """What a file holds, decompressed: parquet files are read, others taken as bytes."""
    if path.suffix == ".parquet":
        return json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False)
    return path.read_bytes().decode("utf-8", errors="replace")


def personal_data(world: World) -> list[str]:
    """Raw e-mails, phones, street lines and `"first_name": "<name>"` pairs of the shop."""
    from omsframe.simulator import render

    found: set[str] = set()
    for i in range(world.n_orders):
        customer = render.customer_object(world, int(world.order_customer[i]))
        found.add(customer["email"])
        if customer["phone_number"]:
            found.add(customer["phone_number"])
        address = render.address_object(world, int(world.order_shipping[i]))
        found.add(address["line"])
        found.add(orjson.dumps({"first_name": customer["first_name"]}).decode()[1:-1])
    return sorted(found)


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Sync with faults on and every logger at DEBUG; gather all omsframe wrote and said."""
    world = World.generate(seed=13, orders=300)
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("exports")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = Keep(level=logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    said: list[str] = []
    faults = Faults(seed=2, rate_5xx=0.1, rate_truncated=0.05, rate_drift=0.2, retry_after="date")
    try:
        with serve(world, token=TOKEN, faults=faults) as oms:
            client = of.Client(oms.url, username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD)
            report = of.sync(client=client, cache=cache, progress=False)
            said += [repr(client), str(report), json.dumps(report.to_dict()), repr(report)]
            said.append(report._repr_html_())
            for wrong in (
                of.Client(oms.url, token="not-" + TOKEN),
                of.Client(oms.url, username=DEFAULT_USERNAME, password=DEFAULT_PASSWORD + "x"),
            ):
                with pytest.raises(of.AuthError) as error:
                    wrong.order(int(world.order_id[0]))
                said += [str(error.value), repr(error.value), repr(wrong)]
            client.close()
        files = of.export(cache, out / "csv", format="csv") + of.export(cache, out / "pq")
        of.write_report(cache)
        said += [str(of.cache_info(cache)), repr(of.load(cache))]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return {
        "world": world,
        "cache": cache,
        "files": [p for p in cache.rglob("*") if p.is_file()] + files,
        "logs": [record.getMessage() for record in records],
        "said": said,
    }


def secrets_of(world: World) -> list[str]:
    return [*world.secrets(), TOKEN, DEFAULT_PASSWORD]


def test_the_run_did_log_and_write_something(everything: dict[str, Any]) -> None:
    assert len(everything["logs"]) > 50
    assert any(p.suffix == ".csv" for p in everything["files"])
    assert any("raw" in p.parts for p in everything["files"])


def test_no_secret_in_any_file_log_error_repr_or_report(everything: dict[str, Any]) -> None:
    secrets = secrets_of(everything["world"])
    texts = {str(p): file_text(p) for p in everything["files"] if p.name != ".pii-key"}
    texts["logs"] = "\n".join(everything["logs"])
    texts["said"] = "\n".join(everything["said"])
    hits = [(where, s) for where, text in texts.items() for s in secrets if s in text]
    assert hits == []


def test_no_raw_personal_data_with_the_default_policy(everything: dict[str, Any]) -> None:
    personal = personal_data(everything["world"])
    assert len(personal) > 100
    texts = {str(p): file_text(p) for p in everything["files"] if p.name != ".pii-key"}
    texts["logs"] = "\n".join(everything["logs"])
    hits = [(where, s) for where, text in texts.items() for s in personal if s in text]
    assert hits == []


def test_the_pseudonymization_key_never_leaves_the_cache(everything: dict[str, Any]) -> None:
    key = (everything["cache"] / ".pii-key").read_bytes()
    for path in everything["files"]:
        if path.name != ".pii-key":
            data = path.read_bytes()
            assert key not in data and key.hex().encode() not in data, path


def test_files_are_readable_by_their_owner_only(everything: dict[str, Any]) -> None:
    loose = [
        (str(p), oct(p.stat().st_mode & 0o777))
        for p in everything["files"]
        if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ]
    assert loose == []


def test_channel_names_survive_so_the_scan_is_not_vacuous(everything: dict[str, Any]) -> None:
    channels = of.load(everything["cache"]).channels["name"].tolist()
    assert set(channels) == {c.name for c in cat.CHANNELS}
