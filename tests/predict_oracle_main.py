"""``predict.py`` with the ColourOracle in place of a trained model, for the tests that need a process of their own
(several processes under torchrun, a run killed part-way).  Test helper, not a test module.

    python tests/predict_oracle_main.py [--exit-after-calls N] PREDICT_ARGS...

``--exit-after-calls N``: the process dies (``os._exit(137)``, as if killed) at the model's forward pass N + 1, a
second after it started (so that the files of the batches before are mostly written).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.inference.predict import main  # noqa: E402
from src.modelling.model import build_config, build_processor  # noqa: E402
from tests.oracle_model import ColourOracle  # noqa: E402


def run(argv: list[str]) -> int:
    exit_after = None
    if argv[:1] == ["--exit-after-calls"]:
        exit_after, argv = int(argv[1]), argv[2:]
    processor = build_processor(None, config=build_config("galaxy-tiny"))
    oracle = ColourOracle.for_processor(processor)
    if exit_after is not None:

        def die(n: int) -> None:
            if n > exit_after:
                time.sleep(1.0)
                os._exit(137)

        oracle.on_call = die
    return main(argv, model=oracle, processor=processor)


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
