"""The HTML report, opened in headless Chromium as a reader would open it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from omsframe.report import write_report
from omsframe.simulator.server import serve
from omsframe.simulator.world import World
from omsframe.sync import sync

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    with serve(World.generate(seed=5, orders=400)) as oms:
        sync(oms.url, token=oms.token, cache=cache, progress=False)
    return write_report(cache, out=cache / "report.html")


def rendered_body(page: Path, profile: Path) -> dict[str, str]:
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed (`.ci/run` installs it): apt-get install chromium"
    result = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body = re.search(r"<body([^>]*)>", result.stdout)
    assert body, result.stdout[:500]
    return dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))


def test_every_chart_renders_offline_without_errors(page: Path, tmp_path: Path) -> None:
    text = page.read_text()
    assert "<script src=" not in text  # plotly.js is embedded: the file opens offline
    body = rendered_body(page, tmp_path / "profile")
    charts = int(body["data-charts"])
    assert charts == text.count('class="omsframe-chart"') >= 6
    assert body.get("data-charts-rendered") == str(charts)
    assert body.get("data-errors") == "0"


def test_a_broken_chart_is_caught_by_the_guard(page: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    text = page.read_text()
    broken.write_text(text.replace("Plotly.newPlot(", "Plotly.noSuchFunction(", 1))
    body = rendered_body(broken, tmp_path / "profile")
    assert int(body["data-errors"]) >= 1
    assert int(body.get("data-charts-rendered", "0")) < int(body["data-charts"])


def test_the_report_names_the_source_freshness_and_pii_policy(page: Path) -> None:
    text = page.read_text()
    for label in ("source", "last sync", "PII policy", "pseudonymize", "Revenue", "Discounts"):
        assert label in text


def test_the_report_says_what_its_charts_show(page: Path) -> None:
    text = page.read_text()
    intros = dict(re.findall(r"<h2>([^<]*)</h2><p>([^<]*)</p>", text))
    assert intros["Revenue"].startswith(
        "Net sales per week, net sales per month by channel, and the average order value per week"
    )
    assert intros["Order states"].startswith("Where the orders are now (their current state)")
    assert "every month together" in intros["Order states"]  # the funnel adds them up
    assert "customers of every currency counted together" in intros["Customers"]
    titles = re.findall(r'"title":\{"text":"([^"<]*)', text)
    for title in (
        "Net sales per week",
        "Net sales per month by channel",
        "Average order value per week",
        "Discount and markdown depth per month",
        "Orders in each state now",  # where the orders are now: the intro's first claim
        "Order funnel: all orders",
        "Webhook deliveries per week",
        "New and returning customers per month",
    ):
        assert title in titles, (title, titles)
    assert "Week (Europe/Istanbul)" in text and "Month (Europe/Istanbul)" in text


def test_the_report_says_how_fresh_the_cache_is_as_status_does(page: Path) -> None:
    text = page.read_text()
    last_sync = re.search(r"<th>last sync</th><td>([^<]*)</td>", text)
    assert last_sync, text[:2000]
    assert re.search(r"\(\d+(s|min|h|d) ago\)$", last_sync.group(1)), last_sync.group(1)
