import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# ../shared/real beside the checkout; GALAXY_REAL_DIR points elsewhere (e.g. from a git worktree)
REAL = Path(os.environ.get("GALAXY_REAL_DIR") or Path(__file__).resolve().parents[2] / "shared" / "real")


@pytest.fixture
def real_dir() -> Path:
    """``../shared/real`` beside the checkout; the test is skipped when it is absent."""
    if not REAL.is_dir():
        pytest.skip(f"real reference data not found at {REAL}")
    return REAL
