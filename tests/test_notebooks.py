"""The notebooks in samples/cityscapes/ run top to bottom, headless and offline, on a fresh machine."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(os.path.dirname(__file__), "..", "samples", "cityscapes")


@pytest.fixture(scope="module")
def fresh_machine(tmp_path_factory):
    """No synthetic set and no checkpoint yet: the notebooks make both."""
    root = tmp_path_factory.mktemp("fresh")
    saved = {k: os.environ.get(k) for k in ("MRCNN_CACHE", "MRCNN_LOGS", "CITYSCAPES_DIR")}
    os.environ.update(MRCNN_CACHE=str(root / "cache"), MRCNN_LOGS=str(root / "logs"))
    os.environ.pop("CITYSCAPES_DIR", None)
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.parametrize("name", ["inspect_data.ipynb", "inspect_model.ipynb", "demo.ipynb"])
def test_notebook_runs_without_errors(name, fresh_machine):
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    # Raises CellExecutionError, naming the cell, on any error.
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": NOTEBOOK_DIR}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/jpeg" in o.get("data", {}) or "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"{name} drew {len(images)} pictures"
