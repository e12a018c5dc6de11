"""An earlier tree against this one, side by side in one run: the same measurement in each tree, alternating.

    git worktree add ../old <commit>           # the tree to compare with, beside this one
    .venv/bin/python bench/old_vs_new.py ../old [../older ...] train [--minutes 5]
    .venv/bin/python bench/old_vs_new.py ../old predict [--n 256] [--model safetensors/galaxy_demo]
    .venv/bin/python bench/old_vs_new.py ../old convert|score|field [--rounds 3]

Each measurement runs in a fresh interpreter of this project's venv whose ``src`` is that tree's, so both trees
see the same packages, data and model:

* ``train``: the demo's training (each tree's own ``src.demo`` settings, i.e. its own recipe) on the demo's split
  files (``--data-root``, from ``make demo``) for ``--minutes`` of wall clock; the figure is the optimiser steps
  done.
* ``predict``: ``src.inference.predict.predict`` on ``--n`` synthetic 256 px cutouts with the model already loaded (as
  ``bench/bench_predict.py``), each tree's default settings (precision, loader workers): reading, star
  measurements, the model, catalog and files; cutouts per second.
* ``convert``: ``python -m src.conversion --data-root COPY --quiet`` on a copy of the demo's data; seconds.
* ``score``: ``python compute_scores.py --model MODEL --data-root DATA --split test`` (semantic task); seconds.
* ``field``: ``python predict.py FRAME --field --cpu --quiet`` on a 2048 px synthetic field (``--frame``); seconds.

Rounds alternate old, new; the medians and the ratio new / old (for seconds: old / new, so > 1 is faster) are
printed, the ratio last.  Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


# ------------------------------------------------------------------------------------ one measurement, one tree
def tree_module(*names: str):
    """The first of ``names`` that the measured tree has (modules moved in the layout by concern)."""
    import importlib

    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise
    raise ModuleNotFoundError(f"none of {names} in this tree")


def measure_train(args) -> float:
    from src import demo

    training = tree_module("src.training", "src.train")
    run_dir, train = training.run_dir, training.train

    demo_args = demo.build_parser().parse_args(["--data-root", str(args.data_root), "--no-progress"])
    demo.resolve_scene_defaults(demo_args)
    output = Path(tempfile.mkdtemp(prefix="old_vs_new_train_")) / "model"
    demo_args.output, demo_args.minutes = output, args.minutes
    result = train(demo.train_settings(demo_args))
    shutil.rmtree(output.parent, ignore_errors=True)
    shutil.rmtree(run_dir(output), ignore_errors=True)
    return float(result["history"][-1]["step"])


def measure_predict(args) -> float:
    import torch

    predicting = tree_module("src.inference.predict", "src.predict")
    PredictConfig, predict = predicting.PredictConfig, predicting.predict
    load_model = tree_module("src.modelling.model", "src.model").load_model

    torch.set_num_threads(2)
    inputs = sorted(str(p) for p in (args.cutouts / "original" / "zoo2Main").glob("*.jpg"))[: args.n]
    model, processor = load_model(str(args.model))
    out = Path(tempfile.mkdtemp(prefix="old_vs_new_predict_"))
    start = time.perf_counter()
    predict(PredictConfig(model=str(args.model), inputs=inputs, out=str(out / "run")), model=model, processor=processor)
    seconds = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    return len(inputs) / seconds


def run_command(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} in {cwd} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def measure_cli(args, tree: Path) -> float:
    python = sys.executable
    if args.what == "convert":
        copy = Path(tempfile.mkdtemp(prefix="old_vs_new_convert_"))
        for item in args.data_root.iterdir():
            if item.suffix in (".csv", ".json") or item.is_dir():
                (copy / item.name).symlink_to(item.resolve())
        for name in (
            "galaxy_train.json",
            "galaxy_val.json",
            "galaxy_test.json",
            "dataset_stats.json",
            "galaxy_splits.json",
            "conversion_report.json",
            "demo_convert.json",
            "demo_data.json",
        ):
            (copy / name).unlink(missing_ok=True)
        try:
            return run_command([python, "-m", "src.conversion", "--data-root", str(copy), "--quiet"], tree)
        finally:
            shutil.rmtree(copy, ignore_errors=True)
    if args.what == "score":
        out = Path(tempfile.mkdtemp(prefix="old_vs_new_score_"))
        try:
            return run_command(
                [
                    python,
                    "compute_scores.py",
                    "--model",
                    str(args.model),
                    "--data-root",
                    str(args.data_root),
                    "--split",
                    "test",
                    "--out",
                    str(out / "metrics.json"),
                    "--quiet",
                ],
                tree,
            )
        finally:
            shutil.rmtree(out, ignore_errors=True)
    out = Path(tempfile.mkdtemp(prefix="old_vs_new_field_"))
    try:
        return run_command(
            [
                python,
                "predict.py",
                str(args.frame),
                "--model",
                str(args.model),
                "--field",
                "--cpu",
                "--out",
                str(out / "run"),
                "--quiet",
            ],
            tree,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------ driver
def one(args) -> None:
    """``--one TREE``: this interpreter measures TREE and prints the figure as JSON on its last line."""
    tree = Path(args.one).resolve()
    sys.path.insert(0, str(tree))
    os.chdir(tree)
    value = measure_train(args) if args.what == "train" else measure_predict(args)
    print(json.dumps({"value": value}))


def in_tree(args, tree: Path) -> float:
    if args.what not in ("train", "predict"):
        return measure_cli(args, tree)
    command = [
        sys.executable,
        str(HERE),
        str(tree),
        args.what,
        "--one",
        str(tree),
        "--minutes",
        str(args.minutes),
        "--n",
        str(args.n),
        "--model",
        str(args.model),
        "--data-root",
        str(args.data_root),
        "--cutouts",
        str(args.cutouts),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"measuring {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["value"]


def git_head(tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def ensure_inputs(args) -> None:
    if args.what == "predict" and len(list((args.cutouts / "original" / "zoo2Main").glob("*.jpg"))) < args.n:
        from src.synthetic import generate

        shutil.rmtree(args.cutouts, ignore_errors=True)
        generate(args.cutouts, args.n, seed=1, size=256, workers=2, progress=False)
    if args.what == "field" and not args.frame.is_file():
        subprocess.run(
            [sys.executable, "-m", "src.synthetic", "--field", "--out", str(args.frame.parent), "--n", "1", "--quiet"],
            cwd=REPO,
            check=True,
        )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path, nargs="+", help="the earlier tree(s) (git worktrees)")
    p.add_argument("what", choices=("train", "predict", "convert", "score", "field"))
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--minutes", type=float, default=5.0, help="train: the time budget of each run")
    p.add_argument("--n", type=int, default=256, help="predict: cutouts")
    p.add_argument("--model", type=Path, default=REPO / "safetensors" / "galaxy_demo")
    p.add_argument("--data-root", type=Path, default=REPO / "data" / "synthetic")
    p.add_argument("--cutouts", type=Path, default=REPO / "data" / "bench_predict" / "old_vs_new")
    p.add_argument("--frame", type=Path, default=REPO / "data" / "bench_field" / "old_vs_new" / "field_0000.jpg")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("model", "data_root", "cutouts", "frame"):
        setattr(args, name, getattr(args, name).resolve())
    if args.one:
        return one(args)
    sys.path.insert(0, str(REPO))
    ensure_inputs(args)
    trees = [(f"old {tree.name} ({git_head(tree)})", tree.resolve()) for tree in args.old]
    trees.append((f"new {REPO.name} ({git_head(REPO)})", REPO))
    figures = {name: [] for name, _tree in trees}
    for round_ in range(args.rounds):
        for name, tree in trees:
            value = in_tree(args, tree)
            figures[name].append(value)
            print(f"round {round_ + 1} {name}: {value:.3f}", flush=True)
    unit = {"train": "steps", "predict": "cutouts/s"}.get(args.what, "s")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    new_name = trees[-1][0]
    for name, value in medians.items():
        print(f"{args.what}: {name} {value:.3f} {unit} (median of {args.rounds})")
    print(f"load average {os.getloadavg()[0]:.2f}")
    ratios = []
    for name, _tree in trees[:-1]:
        ratio = medians[new_name] / medians[name] if unit != "s" else medians[name] / medians[new_name]
        ratios.append(f"{ratio:.2f}x vs {name.split()[1]}")
    print(f"RESULT {args.what} new vs old: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
