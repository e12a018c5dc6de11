import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# ../shared/real beside the checkout; GALAXY_REAL_DIR points elsewhere (e.g. from a git worktree)
REAL = Path(os.environ.get("GALAXY_REAL_DIR") or Path(__file__).resolve().parents[2] / "shared" / "real")


@pytest.fixture(autouse=True)
def fresh_console_logging():
    """Each test starts with the ``src`` loggers as on import: a CLI's ``setup_logging`` in an earlier test or
    fixture (its own handlers, no propagation) would otherwise hide this test's records from ``caplog``."""
    logger = logging.getLogger("src")
    logger.handlers[:], logger.propagate = [], True
    logger.setLevel(logging.NOTSET)
    yield


@pytest.fixture
def real_dir() -> Path:
    """``../shared/real`` beside the checkout; the test is skipped when it is absent."""
    if not REAL.is_dir():
        pytest.skip(f"real reference data not found at {REAL}")
    return REAL


@pytest.fixture(scope="module")
def oracle():
    """A stand-in OneFormer that segments what it sees by colour (tests.oracle_model.ColourOracle) and the tiny
    preset's processor; modules needing other settings define their own ``oracle``."""
    from src.modelling.model import build_config, build_processor
    from tests.oracle_model import ColourOracle

    processor = build_processor(None, config=build_config("galaxy-tiny"))
    return ColourOracle.for_processor(processor), processor
