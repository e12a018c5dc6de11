"""Makefile targets users run besides demo and test: `make notebooks` starts JupyterLab in the project venv
(not started here: the test checks the command and that JupyterLab is installed)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_make_notebooks_runs_jupyterlab_from_the_venv():
    # Under `make test` the outer make's MAKEFLAGS/MAKELEVEL would add "Entering/Leaving directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "notebooks", "PY=VENV_PYTHON", "NOTEBOOK_ARGS=--no-browser"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert dry.stdout.strip().splitlines()[-1] == "VENV_PYTHON -m jupyter lab --notebook-dir=. --no-browser"
    version = subprocess.run([sys.executable, "-m", "jupyter", "lab", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip().split(".")[0] == "4"
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    assert f"jupyterlab=={version.stdout.strip()}" in requirements
    for notebook in ("data_conversion.ipynb", "post_training.ipynb"):
        assert (REPO / notebook).is_file()
