"""examples/compare_optimizers.ipynb runs top to bottom in a real Jupyter kernel (nbclient), so
the notebook cannot rot as the API changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO

NOTEBOOK = REPO / "examples" / "compare_optimizers.ipynb"


def _text(output: dict) -> str:
    """What a cell output shows as text: a stream, or a result's plain and HTML forms."""
    data = output.get("data", {})
    return output.get("text", "") + data.get("text/plain", "") + data.get("text/html", "")


@pytest.mark.slow
def test_the_notebook_runs_without_errors_and_compares_the_optimizers(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},  # its working folder: nothing lands here
    )
    client.execute()  # raises CellExecutionError on the first cell that fails

    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    (compare_cell,) = [cell for cell in cells if "optbench.compare(" in cell.source]
    shown = "".join(_text(output) for output in compare_cell.outputs)
    for optimizer in ("SGD", "Adam", "StepLR"):
        assert optimizer in shown, f"{optimizer} not in the compare cell's output"
    plotted = [o for cell in cells for o in cell.outputs if "image/png" in o.get("data", {})]
    assert plotted, "the test-loss plot drew nothing"
    assert list(tmp_path.iterdir()) == []
