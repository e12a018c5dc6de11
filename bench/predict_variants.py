"""``predict.py`` settings that might have been faster, side by side in one interpreter, on the same cutouts.

    .venv/bin/python bench/predict_variants.py [--model safetensors/galaxy_demo] [--n 256] [--rounds 3]

``src.inference.predict.predict`` with the model loaded once, on the ``--n`` synthetic cutouts of
``bench/old_vs_new.py predict`` (``data/bench_predict/old_vs_new``, made there), in turn over ``--rounds`` rounds:
the defaults (batch 8, no loader worker on 2 cores), batch 12, 16 and 32, one loader worker (reading and the
star/galaxy measurements in a process beside the model), and one loader worker at the lowest CPU priority
(``os.nice(19)``).  Printed: cutouts per second of each round, then the median of each setting and, last, the best
setting against the defaults.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import src.inference.predict as predicting  # noqa: E402
from src.modelling.model import load_model  # noqa: E402

CUTOUTS = REPO / "data" / "bench_predict" / "old_vs_new" / "original" / "zoo2Main"


_DEFAULT_INIT = predicting._worker_init


def _low_priority_worker(worker_id: int) -> None:
    _DEFAULT_INIT(worker_id)
    os.nice(19)


#: name: (PredictConfig overrides, loader worker initialiser)
VARIANTS = {
    "defaults": ({}, None),
    "batch 12": ({"batch_size": 12}, None),
    "batch 16": ({"batch_size": 16}, None),
    "batch 32": ({"batch_size": 32}, None),
    "1 worker": ({"workers": 1}, None),
    "1 worker, nice 19": ({"workers": 1}, _low_priority_worker),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="safetensors/galaxy_demo")
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    inputs = sorted(str(path) for path in CUTOUTS.glob("*.jpg"))[: args.n]
    if len(inputs) < args.n:
        raise SystemExit(f"{CUTOUTS}: {len(inputs)} cutouts; make them with bench/old_vs_new.py ../old predict")
    model, processor = load_model(args.model)
    out = Path(tempfile.mkdtemp(prefix="predict_variants_"))
    default_init = _DEFAULT_INIT
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        warm = predicting.PredictConfig(model=args.model, inputs=inputs[:16], out=str(out / "warm"), quiet=True)
        predicting.predict(warm, model=model, processor=processor)
        for round_ in range(args.rounds):
            for name, (overrides, init) in VARIANTS.items():
                predicting._worker_init = init or default_init
                run = out / f"{round_}-{len(rates[name])}-{name.replace(' ', '_').replace(',', '')}"
                cfg = predicting.PredictConfig(model=args.model, inputs=inputs, out=str(run), quiet=True, **overrides)
                start = time.perf_counter()
                predicting.predict(cfg, model=model, processor=processor)
                rates[name].append(len(inputs) / (time.perf_counter() - start))
                print(f"round {round_ + 1} {name}: {rates[name][-1]:.2f} cutouts/s", flush=True)
                shutil.rmtree(run, ignore_errors=True)
    finally:
        predicting._worker_init = default_init
        shutil.rmtree(out, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"{name}: {value:.2f} cutouts/s (median of {args.rounds})")
    best = max(medians, key=medians.get)
    print(
        f"RESULT best: {best} {medians[best]:.2f} against the defaults {medians['defaults']:.2f} cutouts/s "
        f"({medians[best] / medians['defaults']:.2f}x)"
    )


if __name__ == "__main__":
    main()
