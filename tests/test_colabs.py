"""The notebooks in colabs/ run headless, top to bottom, and are committed clean.

Each runs with `JAXSEG_NOTEBOOK_SMALL=1` (tiny data, a few steps) in a fresh
kernel from the repository root, with datasets generated into a temporary
TFDS data dir; any cell error fails the test.
"""

import glob
import os
import re
import time

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "colabs", "*.ipynb")))
NAMES = [os.path.splitext(os.path.basename(p))[0] for p in NOTEBOOKS]


def test_the_three_notebooks_exist():
  assert NAMES == ["custom_data", "model_tour", "quickstart"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_headless(name, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXSEG_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.delenv("MPLBACKEND", raising=False)  # The kernel's inline backend draws.
  notebook = nbformat.read(os.path.join(REPO, "colabs", f"{name}.ipynb"), as_version=4)
  client = NotebookClient(
    notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}
  )
  start = time.perf_counter()
  client.execute()  # Raises CellExecutionError, with the cell and traceback, on any error.
  print(f"\n{name}.ipynb ran in {time.perf_counter() - start:.0f} s")
  outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
  pictures = [o for o in outputs if "image/png" in o.get("data", {})]
  assert pictures, f"{name}.ipynb drew no picture"
  text = "".join(o.get("text", "") for o in outputs)
  if name != "model_tour":
    assert "mIoU" in text  # The per-class table of its training run.


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_is_committed_without_outputs(path):
  notebook = nbformat.read(path, as_version=4)
  nbformat.validate(notebook)
  dirty = [
    i
    for i, cell in enumerate(notebook.cells)
    if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
  ]
  assert not dirty, f"{path}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_a_colab_badge_and_a_readme_entry(name):
  notebook = nbformat.read(os.path.join(REPO, "colabs", f"{name}.ipynb"), as_version=4)
  link = f"colab.research.google.com/github/jaxseg/jaxseg/blob/main/colabs/{name}.ipynb"
  assert link in notebook.cells[0].source
  with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()
  assert re.search(rf"\[`colabs/{name}\.ipynb`\]\(colabs/{name}\.ipynb\)", readme)
  assert link in readme
