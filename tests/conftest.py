"""Small fixtures shared by the test modules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_analysis_shop import Shop, build_shop

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def example_page() -> dict[str, Any]:
    """The published example page of the Order List endpoint (two orders in ``results``)."""
    page: dict[str, Any] = json.loads((FIXTURES / "order-list-page.json").read_text("utf-8"))
    return page


@pytest.fixture(scope="session")
def example_orders(example_page: dict[str, Any]) -> list[dict[str, Any]]:
    """The orders of the published example page."""
    orders: list[dict[str, Any]] = example_page["results"]
    return orders


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """The small synced shop the analysis and chart tests share (built once per session)."""
    return build_shop(tmp_path_factory.mktemp("shop"))
