"""data_conversion.ipynb runs headless (nbclient) on tiny data and produces its figures."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.tiny_data import write_tiny_raw

REPO = Path(__file__).resolve().parents[1]


def test_data_conversion_notebook_runs(tmp_path, monkeypatch):
    write_tiny_raw(tmp_path, n=30, size=64)
    monkeypatch.setenv("GALAXY_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("GALAXY_IMAGE_SIZE", "64")
    monkeypatch.setenv("GALAXY_MIN_AREA", "20")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # figures as outputs
    notebook = nbformat.read(REPO / "data_conversion.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "kept 30 of 30 annotations" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3  # the class charts and the cutouts
    assert (tmp_path / "galaxy_train.json").is_file()
