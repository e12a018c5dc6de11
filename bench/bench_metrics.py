"""Metric code alone (no model) at the seed test-split scale: 2,828 images of 256 x 256 px, synthetic arrays.

    .venv/bin/python bench/bench_metrics.py [--runs 3] [--n-images 2828] [--size 256] [--detections 10]

Timed (the figure, target <= 5 s): per-image confusion matrices (np.bincount) + seed protocol + standard semantic
scores + image-level classification report, i.e. everything ``evaluate`` does on the semantic task after
inference.  Also timed, reported for information: panoptic quality, and COCO mask AP with pycocotools
(RLE encoding of ``--detections`` masks per image + COCOeval; ``evaluate`` keeps up to 100 per image, and
pycocotools' time grows with that count).  Arrays are built before the clock starts.  The median of the runs
is printed last.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.metrics import (PanopticAccumulator, coco_ground_truth, coco_mask_ap, image_confusions,  # noqa: E402
                         mask_to_rle, semantic_report)


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
        gt_seg = (g > 0).astype(np.int32)          # segment 1 = the galaxy, 0 = background
        pred_seg = (p > 0).astype(np.int32) + 1    # 1 = background, 2 = the galaxy
        acc.update(gt_seg, {0: 0, 1: int(c)}, pred_seg, {1: 0, 2: int(p.max())})
    acc.scores()
    return time.perf_counter() - start


def time_coco(gts, preds, classes, detections: int, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    images = [{"id": 587_000_000_000_000_000 + i, "height": g.shape[0], "width": g.shape[1],
               "objects": [(int(c), g > 0)]} for i, (g, c) in enumerate(zip(gts, classes))]
    results = []
    for im, p in zip(images, preds):
        mask = p > 0
        results.append({"image_id": im["id"], "category_id": int(p.max()), "segmentation": mask_to_rle(mask),
                        "score": float(rng.uniform(0.5, 1))})
        for _ in range(detections - 1):   # lower-scored duplicates shifted around, other classes
            shifted = np.roll(mask, tuple(rng.integers(-8, 9, 2)), axis=(0, 1))
            results.append({"image_id": im["id"], "category_id": int(rng.integers(1, 6)),
                            "segmentation": mask_to_rle(shifted), "score": float(rng.uniform(0, 0.5))})
    ap = coco_mask_ap(coco_ground_truth(images), results)["ap"]
    return time.perf_counter() - start, ap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n-images", type=int, default=2828)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detections", type=int, default=10, help="COCO detections per image (0: skip COCO)")
    args = parser.parse_args()
    gts, preds, classes = synthetic(args.n_images, args.size)
    print(f"{args.n_images} images of {args.size}x{args.size} px built; {args.runs} runs")
    times = []
    for _ in range(args.runs):
        seconds, report = time_semantic(gts, preds)
        times.append(seconds)
        print(f"semantic run: {seconds:.2f} s")
    seed = report["seed_protocol"]
    print(f"(seed mIoU {seed['mean_iou']:.4f}, accuracy {seed['accuracy']:.4f}, "
          f"standard mIoU {report['semantic']['mean_iou']:.4f})")
    print(f"panoptic quality: {time_panoptic(gts, preds, classes):.2f} s")
    if args.detections > 0:
        seconds, ap = time_coco(gts, preds, classes, args.detections)
        print(f"COCO mask AP ({args.detections} detections/image, RLE encoding included): {seconds:.2f} s "
              f"(AP {ap:.4f})")
    print(f"semantic metrics (confusion + seed protocol + standard + classification), {args.n_images} images of "
          f"{args.size}x{args.size}: median {statistics.median(times):.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
