"""Metric code alone (no model) at the seed test-split scale: 2,828 images of 256 x 256 px, synthetic arrays.

    .venv/bin/python bench/bench_metrics.py [--runs 3] [--n-images 2828] [--size 256] [--detections 100]
                                            [--distinct-masks 32] [--backend faster-coco-eval|pycocotools]
                                            [--reference]

Timed (target <= 5 s for the metric code): per-image confusion matrices (np.bincount) + seed protocol + standard
semantic scores + image-level classification report (everything ``evaluate`` does on the semantic task after
inference), median of the runs; COCO mask AP: RLE encoding of ``--detections`` masks per image (as
``evaluate.coco_results``), the ground truth and ``coco_mask_ap``, median of the runs; panoptic quality, one run.
``--reference`` also scores the last run's detections with pycocotools and prints the largest difference.
Arrays and detection masks are built before the clock starts.  The total is printed last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.evaluation.evaluators import coco_results  # noqa: E402
from src.evaluation.metrics import (  # noqa: E402
    COCO_BACKENDS,
    PanopticAccumulator,
    coco_ground_truth,
    coco_mask_ap,
    image_confusions,
    semantic_report,
)


def synthetic(n: int, size: int, seed: int = 0):
    """Ground truth: one ellipse per image (area ~ 800-2,000 px as the real masks), class 1-5; prediction: the
    ellipse shifted by a few pixels, with the right class 70 % of the time."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    gts = np.zeros((n, size, size), np.uint8)
    preds = np.zeros_like(gts)
    classes = rng.choice(np.arange(1, 6), n, p=[0.0025, 0.45, 0.18, 0.22, 0.1475])
    for i in range(n):
        a, b = rng.uniform(14, 28), rng.uniform(10, 22)
        cy, cx = size / 2 + rng.normal(0, 3, 2)
        gts[i][((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1] = classes[i]
        dy, dx = rng.normal(0, 3, 2)
        pred_class = classes[i] if rng.random() < 0.7 else rng.integers(1, 6)
        preds[i][((yy - cy - dy) / a) ** 2 + ((xx - cx - dx) / b) ** 2 <= 1] = pred_class
    return gts, preds, classes


def time_semantic(gts, preds) -> tuple[float, dict]:
    start = time.perf_counter()
    report = semantic_report(image_confusions(gts, preds))
    return time.perf_counter() - start, report


def time_panoptic(gts, preds, classes) -> float:
    start = time.perf_counter()
    acc = PanopticAccumulator()
    for g, p, c in zip(gts, preds, classes):
        gt_seg = (g > 0).astype(np.int32)  # segment 1 = the galaxy, 0 = background
        pred_seg = (p > 0).astype(np.int32) + 1  # 1 = background, 2 = the galaxy
        acc.update(gt_seg, {0: 0, 1: int(c)}, pred_seg, {1: 0, 2: int(p.max())})
    acc.scores()
    return time.perf_counter() - start


def detection_masks(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, H, W)``: ``mask`` then ``n - 1`` copies shifted by up to 8 px (the galaxy sits away from the edges)."""
    pad = 8
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(mask, pad), mask.shape)  # (17, 17, H, W) view
    shifts = np.vstack([[pad, pad], rng.integers(0, 2 * pad + 1, (n - 1, 2))])
    return windows[shifts[:, 0], shifts[:, 1]]


def time_coco(
    gts, preds, classes, detections: int, backend: str, seed: int = 0, distinct: int | None = None
) -> tuple[dict, dict, list]:
    """Seconds for: RLE encoding of the detections (``evaluate.coco_results``), the ground truth
    (``coco_ground_truth``) and ``coco_mask_ap``.  Per image: the predicted ellipse with the predicted class
    and a score in 0.5-1, then ``detections - 1`` lower-scored (0-0.5) shifted copies with random classes, built
    before the clock starts.  ``distinct``: the detections share that many masks (as OneFormer's top-k
    (query, class) pairs share their query's mask); default: all different."""
    rng = np.random.default_rng(seed)
    images = [
        {"id": 587_000_000_000_000_000 + i, "height": g.shape[0], "width": g.shape[1], "objects": [(int(c), g > 0)]}
        for i, (g, c) in enumerate(zip(gts, classes))
    ]
    n_masks = min(distinct or detections, detections)
    seconds = {"encode": 0.0}
    results = []
    for im, p in zip(images, preds):
        masks = list(detection_masks(p > 0, n_masks, rng))
        owner = np.concatenate([np.arange(n_masks), rng.integers(0, n_masks, detections - n_masks)])
        cats = [int(p.max())] + rng.integers(1, 6, detections - 1).tolist()
        scores = [float(rng.uniform(0.5, 1))] + rng.uniform(0, 0.5, detections - 1).tolist()
        dets = [{"class_id": c, "score": s, "mask": masks[k]} for c, s, k in zip(cats, scores, owner)]
        start = time.perf_counter()
        results += coco_results(im["id"], dets)
        seconds["encode"] += time.perf_counter() - start
    start = time.perf_counter()
    ground_truth = coco_ground_truth(images)
    seconds["ground_truth"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = coco_mask_ap(ground_truth, results, backend=backend)
    seconds["evaluate"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return seconds, scores, (ground_truth, results)


def _per_run(label: str, runs: list[dict]) -> str:
    parts = [f"{k} {statistics.median(r[k] for r in runs):.2f}" for k in runs[0]]
    return f"{label}: median " + ", ".join(parts) + " s (" + " / ".join(f"{r['total']:.2f}" for r in runs) + ")"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n-images", type=int, default=2828)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument(
        "--detections",
        type=int,
        default=100,
        help="COCO detections per image (evaluate keeps up to 100, COCO's maxDets; 0: skip COCO)",
    )
    parser.add_argument(
        "--distinct-masks",
        type=int,
        default=None,
        help="the detections of an image share this many masks (galaxy-small: at most 32 "
        "queries); default: every detection has its own",
    )
    parser.add_argument("--backend", choices=COCO_BACKENDS, default=COCO_BACKENDS[0])
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also score the last run's detections with pycocotools (timed) and compare the figures",
    )
    args = parser.parse_args()
    gts, preds, classes = synthetic(args.n_images, args.size)
    print(f"{args.n_images} images of {args.size}x{args.size} px built; {args.runs} runs")
    times = []
    for _ in range(args.runs):
        seconds, report = time_semantic(gts, preds)
        times.append(seconds)
        print(f"semantic run: {seconds:.2f} s")
    seed = report["seed_protocol"]
    print(
        f"(seed mIoU {seed['mean_iou']:.4f}, accuracy {seed['accuracy']:.4f}, "
        f"standard mIoU {report['semantic']['mean_iou']:.4f})"
    )
    semantic = statistics.median(times)
    panoptic = time_panoptic(gts, preds, classes)
    print(f"panoptic quality: {panoptic:.2f} s")
    coco = 0.0
    if args.detections > 0:
        runs = []
        for _ in range(args.runs):
            seconds, scores, (ground_truth, results) = time_coco(
                gts, preds, classes, args.detections, args.backend, distinct=args.distinct_masks
            )
            runs.append(seconds)
            print(f"COCO run ({args.backend}): " + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()) + " s")
        coco = statistics.median(r["total"] for r in runs)
        print(
            _per_run(f"COCO mask AP, {args.detections} detections/image, {args.backend}", runs)
            + f"; AP {scores['ap']:.6f} AP50 {scores['ap50']:.6f} AP75 {scores['ap75']:.6f}"
        )
        if args.reference and args.backend != "pycocotools":
            start = time.perf_counter()
            ref = coco_mask_ap(ground_truth, results, backend="pycocotools")
            print(
                f"pycocotools on the same detections: evaluate {time.perf_counter() - start:.2f} s; "
                f"AP {ref['ap']:.6f} AP50 {ref['ap50']:.6f} AP75 {ref['ap75']:.6f}"
            )
            keys = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")
            diffs = [abs(scores[k] - ref[k]) for k in keys if ref[k] is not None] + [
                abs(scores["per_class_ap"][c] - v) for c, v in ref["per_class_ap"].items() if v is not None
            ]
            print(
                f"largest |faster-coco-eval - pycocotools| over AP, AP50, AP75, AP by area, per-class AP: "
                f"{max(diffs):.2e}"
            )
    print(
        f"semantic metrics (confusion + seed protocol + standard + classification): median {semantic:.2f} s; "
        f"COCO mask AP ({args.detections}/image): median {coco:.2f} s; panoptic {panoptic:.2f} s"
    )
    print(
        f"metric code total, {args.n_images} images of {args.size}x{args.size} (semantic + COCO AP + panoptic): "
        f"{semantic + coco + panoptic:.2f} s (target <= 5 s)"
    )


if __name__ == "__main__":
    main()
