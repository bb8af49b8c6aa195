"""The `omsframe` command: `demo` and `simulate`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
from click.testing import CliRunner

from omsframe.cli import main


def test_demo_shows_what_the_simulator_serves() -> None:
    result = CliRunner().invoke(main, ["demo", "--orders", "300", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert re.search(r"/api/v1/oms/orders/\s+count=300\b", result.output)
    assert "first page: 100 orders" in result.output
    assert "by channel:" in result.output
    assert "credit_card" in result.output  # the payment-type enum endpoint answered


def test_simulate_serves_until_stopped() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "omsframe.cli", "simulate", "--orders", "200", "--port", "0",
         "--token", "cli-token"],
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
