"""Which instance score threshold (``predict.py --task instance --score-threshold``) finds the annotated galaxies?

    .venv/bin/python bench/calibrate_score_threshold.py --model safetensors/galaxy_demo --data-root data/synthetic \
        --split val [--limit 200]

For each image of the split (native size, ground truth from ``src.data.datasets.GalaxyDataset``), the model is run once
on the instance task (``src.inference.segmentation.segment``, as ``predict.py`` does); then, for each threshold, the
objects are
made by predict.py's own rule (``src.inference.objects.object_map_instance``: score >= threshold, one owner per pixel,
``OVERLAP``, ``MIN_AREA``) and matched one to one to the annotated objects (IoU >= 0.5, class ignored: the question
is whether the galaxy is found).  Per threshold: precision, recall, F1; and the recall of the central galaxy (the
annotated object nearest the image centre; the real data hold one per cutout).  The last line gives the threshold
of best F1 and the figures at it and at the default.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.inference.objects import MIN_AREA, OVERLAP, SCORE_THRESHOLD, object_map_instance  # noqa: E402
from src.inference.segmentation import segment  # noqa: E402

THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


def _matches(objects: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, bool]:
    """``(matched, predicted, annotated, central found)``: greedy one-to-one matching by IoU >= 0.5."""
    n_pred, n_true = int(objects.max(initial=0)), int(truth.max(initial=0))
    if n_pred == 0 or n_true == 0:
        return 0, n_pred, n_true, False
    joint = np.bincount(
        objects.ravel().astype(np.int64) * (n_true + 1) + truth.ravel(), minlength=(n_pred + 1) * (n_true + 1)
    ).reshape(n_pred + 1, n_true + 1)
    inter = joint[1:, 1:].astype(float)
    union = joint[1:, :].sum(1)[:, None] + joint[:, 1:].sum(0)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    height, width = truth.shape
    ys, xs = np.mgrid[:height, :width]
    centres = [
        (np.mean(ys[truth == k]), np.mean(xs[truth == k])) if (truth == k).any() else (1e9, 1e9)
        for k in range(1, n_true + 1)
    ]
    central = int(np.argmin([np.hypot(y - (height - 1) / 2, x - (width - 1) / 2) for y, x in centres]))
    matched, found_central = 0, False
    while iou.size and iou.max() >= 0.5:
        p, t = np.unravel_index(np.argmax(iou), iou.shape)
        matched += 1
        found_central |= t == central
        iou[p, :] = -1
        iou[:, t] = -1
    return matched, n_pred, n_true, found_central


def calibrate(model, processor, dataset, thresholds=THRESHOLDS, batch_size: int = 4, min_area: int = MIN_AREA) -> dict:
    """``{"thresholds": [{"threshold", "precision", "recall", "f1", "central_recall"}], "best": {...},
    "n_images": N}`` over ``dataset`` (items with ``image`` and ``instance``)."""
    totals = np.zeros((len(thresholds), 4))  # matched, predicted, annotated, central found
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        results = segment(model, processor, [item["image"] for item in items], "instance", batch_size=batch_size)
        for item, (probs, detections, _seconds) in zip(items, results):
            truth = np.asarray(item["instance"], np.int64)
            for row, threshold in enumerate(thresholds):
                objects, _scores, _dropped = object_map_instance(
                    detections, probs.shape[1:], None, threshold, OVERLAP, min_area
                )
                totals[row] += _matches(objects, truth)
    table = []
    for threshold, (matched, predicted, annotated, central) in zip(thresholds, totals):
        precision = matched / predicted if predicted else 1.0
        recall = matched / annotated if annotated else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table.append(
            {
                "threshold": float(threshold),
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "central_recall": central / len(dataset),
            }
        )
    best = max(table, key=lambda r: (r["f1"], -abs(r["threshold"] - SCORE_THRESHOLD)))
    return {"thresholds": table, "best": best, "n_images": len(dataset)}


def main(argv=None) -> None:
    from src.evaluation.evaluate import ground_truth_dataset
    from src.modelling.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--base-card", default=None)
    args = parser.parse_args(argv)
    model, processor = load_model(args.model, base_card=args.base_card)
    result = calibrate(
        model, processor, ground_truth_dataset(args.data_root, args.split, args.limit), batch_size=args.batch_size
    )
    print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>6} {'central':>7}")
    for r in result["thresholds"]:
        print(
            f"{r['threshold']:>9.2f} {r['precision']:>9.3f} {r['recall']:>7.3f} {r['f1']:>6.3f} "
            f"{r['central_recall']:>7.3f}"
        )
    default = next(r for r in result["thresholds"] if abs(r["threshold"] - SCORE_THRESHOLD) < 1e-9)
    best = result["best"]
    print(
        f"{args.split} ({result['n_images']} images): best F1 {best['f1']:.3f} at {best['threshold']:.2f} "
        f"(central recall {best['central_recall']:.3f}); default {SCORE_THRESHOLD}: F1 {default['f1']:.3f}, "
        f"central recall {default['central_recall']:.3f}"
    )


if __name__ == "__main__":
    main()
