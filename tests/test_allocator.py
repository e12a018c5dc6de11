"""src/allocator.py: the allocator is tuned once per process, and left alone when the user says so."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.allocator import GLIBC_SETTINGS, OPT_OUT

REPO = Path(__file__).resolve().parents[1]


def _tuned(extra_env: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k not in (OPT_OUT, *GLIBC_SETTINGS)}
    code = "from src.allocator import tune_allocator; print(tune_allocator(), tune_allocator())"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**env, **extra_env}, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is a Linux matter")
def test_tuned_on_linux_and_left_alone_on_request():
    import ctypes

    has_mallopt = hasattr(ctypes.CDLL(None), "mallopt")
    assert _tuned({}) == ("True True" if has_mallopt else "False False")
    assert _tuned({OPT_OUT: "1"}) == "False False"
    assert _tuned({"MALLOC_MMAP_THRESHOLD_": "131072"}) == "False False"


def test_load_model_tunes_the_allocator():
    code = (
        "import src.allocator as a; from src.modelling.model import load_model; "
        "assert a._applied is None; load_model('galaxy-tiny'); print(a._applied is not None)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "True"
