"""The `omsframe` command: `demo` and `simulate`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from omsframe.cli import main
from omsframe.load import load


def test_demo_syncs_the_simulator_and_summarises(tmp_path: Path) -> None:
    cache = tmp_path / "demo"
    args = ["demo", "--orders", "300", "--seed", "4", "--cache", str(cache), "--port", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"plan\s+full", result.output)
    orders = len(load(cache).orders)
    assert orders > 250
    assert f"{orders:,} orders" in result.output
    assert "net sales" in result.output and "TRY" in result.output
    # the banner counts the orders placed by the shop's time, as the sync reads them
    assert f": {orders:,} orders placed by shop time" in result.output
    assert "(of the 300 of its shop, seed 4)" in result.output


def test_simulate_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "omsframe.cli",
            "simulate",
            "--orders",
            "200",
            "--port",
            "0",
            "--token",
            "cli-token",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            match = re.search(r"url:\s+(http://\S+)", line)
            if match:
                url = match.group(1)
        assert url is not None, "simulate never printed its URL"
        response = httpx.get(
            f"{url}/api/v1/oms/orders/",
            params={"limit": 5},
            headers={"Authorization": "Token cli-token"},
        )
        assert response.status_code == 200
        assert response.json()["count"] == 200
        assert httpx.get(f"{url}/api/v1/oms/orders/").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sync_status_export_rebuild_from_the_shell(tmp_path: Path) -> None:
    import json

    from omsframe.simulator.server import simulate

    cache, out = tmp_path / "cache", tmp_path / "out"
    runner = CliRunner()
    with simulate(orders=150, seed=2) as oms:
        env = {"OMSFRAME_TOKEN": oms.token}
        args = ["sync", "--url", oms.url, "--cache", str(cache), "--no-events", "--json"]
        refused = runner.invoke(main, [*args, "--workers", "-1"], env=env)
        assert refused.exit_code != 0 and "--workers" in refused.output
        synced = runner.invoke(main, [*args, "--workers", "1"], env=env)
        assert synced.exit_code == 0, synced.output
        report = json.loads(synced.output)
        assert report["plan"] == "full" and report["orders_new"] == 150
        assert oms.token not in synced.output
        again = runner.invoke(main, args, env=env)
        assert json.loads(again.output)["plan"] == "incremental"
    status = runner.invoke(main, ["status", "--cache", str(cache), "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["rows"]["orders"] == 150
    assert json.loads(status.output)["since"] is None  # every order: no window
    exported = runner.invoke(
        main,
        [
            "export",
            "--cache",
            str(cache),
            "--out",
            str(out),
            "--format",
            "csv",
            "--tables",
            "orders,order_items",
            "--json",
        ],
    )
    assert exported.exit_code == 0, exported.output
    assert sorted(Path(f).name for f in json.loads(exported.output)["files"]) == [
        "order_items.csv",
        "orders.csv",
    ]
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    # a window with no orders writes nothing, and the earlier export is left whole
    empty = runner.invoke(
        main, ["export", "--cache", str(cache), "--out", str(out), "--since", "2999-01", "--json"]
    )
    assert empty.exit_code == 1 and "no rows to export" in empty.output
    assert json.loads(empty.output.splitlines()[0])["kind"] == "ConfigError"
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    rebuilt = runner.invoke(main, ["rebuild", "--cache", str(cache), "--json"])
    assert rebuilt.exit_code == 0 and json.loads(rebuilt.output)["orders"] == 150


def test_errors_are_one_line_with_a_non_zero_exit_code(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["sync", "--cache", str(tmp_path)], env={"OMSFRAME_URL": ""})
    assert missing.exit_code != 0
    assert missing.output.count("\n") == 1 and "omsframe:" in missing.output
    assert "Traceback" not in missing.output
    remote = runner.invoke(
        main,
        ["sync", "--url", "http://acme-oms.example.com", "--cache", str(tmp_path)],
        env={"OMSFRAME_TOKEN": "secret-token-123"},
    )
    assert remote.exit_code != 0 and "http://" in remote.output
    assert "secret-token-123" not in remote.output


def test_help_explains_each_command() -> None:
    runner = CliRunner()
    for command in ("sync", "status", "export", "rebuild", "report", "simulate", "demo"):
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command


def _one_line(result: Any) -> str:
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, AssertionError)
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("omsframe: "), result.output
    return str(lines[0])


def test_sync_since_a_day_from_the_shell_keeps_that_window(tmp_path: Path) -> None:
    import json

    from omsframe.load import load
    from omsframe.simulator.server import simulate

    whole, window = tmp_path / "whole", tmp_path / "window"
    runner = CliRunner()
    with simulate(orders=200, seed=4) as oms:
        env = {"OMSFRAME_TOKEN": oms.token}
        args = ["sync", "--url", oms.url, "--no-events", "--json"]
        assert runner.invoke(main, [*args, "--cache", str(whole)], env=env).exit_code == 0
        placed = sorted(load(whole, engine="pyarrow").orders.column("date_placed").to_pylist())
        day = placed[len(placed) // 2].strftime("%Y-%m-%d")
        bad = runner.invoke(main, [*args, "--cache", str(window), "--since", "soon"], env=env)
        assert bad.exit_code == 1 and "since" in json.loads(bad.output.splitlines()[0])["error"]
        synced = runner.invoke(main, [*args, "--cache", str(window), "--since", day], env=env)
        assert synced.exit_code == 0, synced.output
    expected = sum(p.strftime("%Y-%m-%d") >= day for p in placed)
    assert 0 < json.loads(synced.output)["orders_new"] == expected < len(placed)
    status = runner.invoke(main, ["status", "--cache", str(window), "--json"])
    assert json.loads(status.output)["since"] == f"{day}T00:00:00Z"
    text = runner.invoke(main, ["status", "--cache", str(window)]).output
    assert f"orders placed since {day}T00:00:00Z" in text


def test_bad_input_on_the_shell_is_one_line_and_nothing_is_lost(tmp_path: Path) -> None:
    from omsframe.simulator.server import simulate

    cache, out = tmp_path / "cache", tmp_path / "out"
    runner = CliRunner()
    with simulate(orders=120, seed=3) as oms:
        env = {"OMSFRAME_TOKEN": oms.token}
        args = ["sync", "--url", oms.url, "--cache", str(cache), "--quiet"]
        assert runner.invoke(main, args, env=env).exit_code == 0
    export = ["export", "--cache", str(cache), "--out", str(out)]
    assert "does not exist" in _one_line(runner.invoke(main, ["status", "--cache", "nope"]))
    assert "does not exist" in _one_line(runner.invoke(main, ["rebuild", "--cache", "nope"]))
    assert not Path("nope").exists()
    assert "since" in _one_line(runner.invoke(main, [*export, "--since", "2025-13-01"]))
    assert "unknown table" in _one_line(runner.invoke(main, [*export, "--tables", "orders,x"]))
    assert not out.exists()  # nothing written before the names were checked
    (tmp_path / "afile").write_text("x")
    blocked = [*export[:-1], str(tmp_path / "afile" / "sub")]
    assert "afile" in _one_line(runner.invoke(main, blocked))
    # a second export to the same folder leaves no table of the first behind
    assert runner.invoke(main, [*export, "--tables", "orders, channels"]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["channels.parquet", "orders.parquet"]
    assert runner.invoke(main, [*export, "--tables", "orders"]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["orders.parquet"]
    # a window without orders writes nothing (not even channels) and removes nothing
    kept = (out / "orders.parquet").read_bytes()
    later = runner.invoke(main, [*export, "--tables", "orders,channels", "--since", "2099-01"])
    assert later.exit_code == 1 and "no rows to export" in _one_line(later)
    assert sorted(p.name for p in out.iterdir()) == ["orders.parquet"]
    assert (out / "orders.parquet").read_bytes() == kept
    # a damaged file: one line that names the command to mend it, for this cache
    damaged = next((cache / "tables" / "orders").rglob("*.parquet"))
    (cache / ".rows.json").unlink(missing_ok=True)
    damaged.write_bytes(damaged.read_bytes()[:100])
    line = _one_line(runner.invoke(main, ["status", "--cache", str(cache)]))
    assert f"omsframe rebuild --cache {cache}" in line
    assert runner.invoke(main, ["rebuild", "--cache", str(cache)]).exit_code == 0
    status = runner.invoke(main, ["status", "--cache", str(cache), "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["rows"]["orders"] == 120


def test_ctrl_c_exits_130_and_says_how_to_go_on(monkeypatch: Any) -> None:
    import importlib

    def interrupted(path: object) -> None:
        raise KeyboardInterrupt

    # (the module: `omsframe.load` as an attribute is the function)
    monkeypatch.setattr(importlib.import_module("omsframe.load"), "cache_info", interrupted)
    result = CliRunner().invoke(main, ["status", "--cache", "."])
    assert result.exit_code == 130
    assert "run the same command again" in result.output


def test_the_main_help_keeps_its_example_lines() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "\\b" not in result.output
    assert "\n    omsframe sync --url https://acme-oms.akinon.net\n" in result.output


def test_an_error_of_a_json_command_is_json_on_stdout_too(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--cache", str(tmp_path / "nope"), "--json"])
    assert result.exit_code == 1
    said = json.loads(result.stdout)
    assert said["kind"] == "CacheError" and "does not exist" in said["error"]
    assert "omsframe: no cache at" in result.stderr
    plain = CliRunner().invoke(main, ["status", "--cache", str(tmp_path / "nope")])
    assert plain.exit_code == 1 and plain.stdout == ""
    usage = CliRunner().invoke(main, ["sync", "--json", "--pii", "bogus"])
    assert usage.exit_code == 2 and json.loads(usage.stdout)["kind"] == "UsageError"
