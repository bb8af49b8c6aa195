"""The `omsframe` command: `demo` and `simulate`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

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
