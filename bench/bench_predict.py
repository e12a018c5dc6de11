"""End-to-end throughput of ``predict.py`` (read -> catalog) against the bare batched forward pass, in one run.

    .venv/bin/python bench/bench_predict.py --model galaxy-small --n 64 --batch-size 8 --workers 1 --threads 2

Inputs: ``--n`` synthetic 256 px JPEG cutouts (``src.synthetic``, cached under ``data/bench_predict/``).
End to end: ``src.inference.predict.predict`` on them with the model already loaded: DataLoader reading, the processor
and
the forward pass, class probabilities, objects, segmentation PNGs, records, the merged catalog and report.
Bare: ``bench/bench_inference.py``'s timed loop (processor encoding + forward pass of a ready batch, no
post-processing) on images of the same size and batch.  The two alternate over ``--repeats`` rounds; the
medians and their ratio (the target: >= 90 %) are printed, the ratio last.
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
sys.path.insert(0, str(REPO / "bench"))

from bench_inference import run as bare_run  # noqa: E402
from bench_inference import synthetic_batch

from src.inference.predict import PredictConfig, predict  # noqa: E402
from src.modelling.model import count_parameters, load_model  # noqa: E402


def cutouts(n: int, size: int) -> Path:
    from src.synthetic import generate

    folder = REPO / "data" / "bench_predict" / f"n{n}_s{size}"
    images = folder / "original" / "zoo2Main"
    if not images.is_dir() or len(list(images.glob("*.jpg"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        generate(folder, n=n, seed=11, size=size, workers=2, progress=False)
    return images


def end_to_end(model, processor, images: Path, args) -> float:
    out = Path(tempfile.mkdtemp(prefix="bench_predict."))
    try:
        cfg = PredictConfig(
            model=args.model,
            inputs=[str(images)],
            out=str(out / "run"),
            task=args.task,
            batch_size=args.batch_size,
            workers=args.workers,
            quiet=True,
            tta=args.tta,
        )
        start = time.perf_counter()
        report = predict(cfg, model, processor)
        elapsed = time.perf_counter() - start
        assert report["counts"]["ok"] == args.n, report["counts"]
        return args.n / elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="galaxy-small", help="preset or save_pretrained folder")
    p.add_argument("--n", type=int, default=64, help="cutouts per end-to-end run")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers of predict")
    p.add_argument("--task", default="semantic", choices=["semantic", "instance", "panoptic"])
    p.add_argument("--tta", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    images = cutouts(args.n, args.size)
    model, processor = load_model(args.model, device="cpu")
    model.eval()
    batch = synthetic_batch(args.batch_size, args.size)
    bare_run(model, processor, batch, args.task, 2)  # warm-up
    end_to_end(model, processor, images, args)
    bare, e2e = [], []
    for r in range(args.repeats):
        bare.append(bare_run(model, processor, batch, args.task, max(1, args.n // args.batch_size)))
        e2e.append(end_to_end(model, processor, images, args))
        print(f"repeat {r + 1}: bare {bare[-1]:.2f} img/s, end to end {e2e[-1]:.2f} img/s", flush=True)
    load = os.getloadavg()
    print(
        f"{args.model}: {count_parameters(model) / 1e6:.1f}M parameters, {args.n} cutouts of {args.size} px, "
        f"batch {args.batch_size}, {args.workers} worker(s), task {args.task}{' + TTA' if args.tta else ''}, "
        f"{args.threads} threads, torch {torch.__version__}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    bare_median, e2e_median = statistics.median(bare), statistics.median(e2e)
    print(f"bare forward: {bare_median:.2f} img/s; end to end: {e2e_median:.2f} img/s (medians of {args.repeats})")
    ratio = e2e_median / bare_median
    print(f"end to end / bare forward: {100 * ratio:.1f} %")
    return ratio


if __name__ == "__main__":
    main()
