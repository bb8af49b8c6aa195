"""The guided notebooks run top to bottom against a small simulator cache, and carry no outputs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from omsframe.simulator.server import simulate
from omsframe.sync import sync

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    cache = tmp_path_factory.mktemp("cache")
    with simulate(orders=400, seed=3) as oms:
        sync(oms.url, token=oms.token, cache=cache, progress=False)
    yield {
        "OMSFRAME_NOTEBOOK_CACHE": str(cache),
        "OMSFRAME_NOTEBOOK_QUICKSTART_CACHE": str(tmp_path_factory.mktemp("quickstart")),
        "OMSFRAME_NOTEBOOK_ORDERS": "300",
    }


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_the_public_api(path: Path) -> None:
    import omsframe

    code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    source = "\n".join(code)
    for line in source.splitlines():
        if "import" in line and "omsframe" in line:
            assert line.strip() == "import omsframe as of", line
    used = set(re.findall(r"\bof\.(\w+)", source))
    assert used <= set(omsframe.__all__), used - set(omsframe.__all__)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(
    path: Path, environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env={**os.environ, **environment})
    errors = [
        output
        for cell in book.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert errors == []
    figures = sum(
        1
        for cell in book.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "application/vnd.plotly.v1+json" in output.get("data", {})
    )
    assert figures >= 1, "every notebook draws at least one chart"
