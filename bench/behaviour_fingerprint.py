"""A fingerprint of what the code computes, to show that a refactoring changed nothing: hashes of a short
fixed-seed training's weights, of ``compute_scores.py``'s metrics and of ``predict.py``'s outputs.

    .venv/bin/python bench/behaviour_fingerprint.py [--model safetensors/galaxy_demo] [--data-root data/synthetic]
                                                   [--json OUT.json] [--compare BEFORE.json]

* ``train``: 40 synthetic 64 px cutouts (``src.synthetic``, seed 3) converted, then ``galaxy-tiny`` trained from
  random weights for one epoch (batch 2, random task, augmentation, seed 0, float32, one process); the SHA-256
  of every exported tensor, in name order.
* ``scores``: ``compute_scores.py --model MODEL --data-root DATA --split test --task semantic instance
  --limit 32``; the metrics JSON less its timings and paths.
* ``predict``: ``predict.py`` on the same 32 test cutouts with ``--precision fp32`` and with the default
  precision; the catalog (less timings) and every segmentation map.

Printed: one SHA-256 per part; ``--json`` keeps them, ``--compare`` checks them against an earlier run's (exit 1
on a difference).  The last line says whether all parts match.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Keys whose values are timings, paths or versions: left out of the fingerprint.
VOLATILE = {
    "seconds",
    "wall_s",
    "read_s",
    "model_s",
    "post_s",
    "images_per_second",
    "date",
    "created",
    "elapsed",
    "model",
    "data_root",
    "out",
    "predictions",
    "path",
    "paths",
    "source",
    "outputs",
    "versions",
    "python",
    "torch",
    "transformers",
    "host",
    "argv",
    "command",
    "started",
    "finished",
    "run_s",
}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stable(value):
    """``value`` with the volatile keys dropped, recursively."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def train_part(work: Path) -> str:
    from safetensors.numpy import load_file

    python = sys.executable
    run(
        [
            python,
            "-m",
            "src.synthetic",
            "--out",
            str(work / "data"),
            "--n",
            "40",
            "--size",
            "64",
            "--seed",
            "3",
            "--quiet",
        ]
    )
    run([python, "-m", "src.conversion", "--data-root", str(work / "data"), "--image-size", "64", "--quiet"])
    run(
        [
            python,
            "train_script.py",
            "--data-root",
            str(work / "data"),
            "--output",
            str(work / "model"),
            "--model-card",
            "galaxy-tiny",
            "--task",
            "random",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--image-size",
            "64",
            "--seed",
            "0",
            "--cpu",
            "--quiet",
        ]
    )
    tensors = load_file(str(work / "model" / "model.safetensors"))
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].tobytes())
    return h.hexdigest()


def scores_part(work: Path, model: str, data_root: Path) -> str:
    out = work / "metrics.json"
    run(
        [
            sys.executable,
            "compute_scores.py",
            "--model",
            model,
            "--data-root",
            str(data_root),
            "--split",
            "test",
            "--task",
            "semantic",
            "instance",
            "--limit",
            "32",
            "--out",
            str(out),
            "--no-progress",
            "--quiet",
        ]
    )
    return digest(json.dumps(stable(json.loads(out.read_text())), sort_keys=True).encode())


def predict_part(work: Path, model: str, data_root: Path, precision: str | None) -> str:
    entries = json.loads((data_root / "galaxy_test.json").read_text())
    images = [str(data_root / "original" / "zoo2Main" / e["filename"]) for e in entries.values()][:32]
    out = work / f"predict_{precision or 'default'}"
    run(
        [
            sys.executable,
            "predict.py",
            *images,
            "--model",
            model,
            "--out",
            str(out),
            "--cpu",
            "--quiet",
            *(["--precision", precision] if precision else []),
        ]
    )
    h = hashlib.sha256()
    for path in sorted(out.rglob("*")):
        if path.suffix == ".png" and "segmentation" in path.parts:
            h.update(path.name.encode())
            h.update(path.read_bytes())
    for path in sorted(out.glob("catalog*.csv")):
        import pandas as pd

        table = pd.read_csv(path)
        table = table[[c for c in table.columns if c not in VOLATILE and not c.endswith("_s")]]
        h.update(table.to_csv(index=False).encode())
    return h.hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="safetensors/galaxy_demo")
    p.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--json", type=Path, help="write the fingerprint here")
    p.add_argument("--compare", type=Path, help="an earlier run's --json: exit 1 unless every part matches")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="fingerprint_"))
    try:
        parts = {
            "train": train_part(work),
            "scores": scores_part(work, args.model, args.data_root.resolve()),
            "predict_fp32": predict_part(work, args.model, args.data_root.resolve(), "fp32"),
            "predict_default": predict_part(work, args.model, args.data_root.resolve(), None),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, value in parts.items():
        print(f"{name}: {value}")
    if args.json:
        args.json.write_text(json.dumps(parts, indent=1) + "\n")
    if args.compare:
        before = json.loads(args.compare.read_text())
        differ = [name for name in parts if before.get(name) != parts[name]]
        print(f"RESULT {'all parts match' if not differ else 'DIFFER: ' + ', '.join(differ)} ({args.compare})")
        return 1 if differ else 0
    print("RESULT fingerprint of", len(parts), "parts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
