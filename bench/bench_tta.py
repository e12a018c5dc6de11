"""Does test-time augmentation (``predict.py --tta``) help?  Seed-protocol scores and calibration, with and without.

    .venv/bin/python bench/bench_tta.py --model safetensors/galaxy_demo --data-root data/synthetic --split test

For each image of the split (native size, ground truth from ``src.data.datasets.GalaxyDataset``), the semantic task's
per-pixel class probabilities come from ``src.inference.segmentation.segment`` once without and once with the 8 flips /
90°
rotations.  Scored for each:

* the seed protocol (``src.evaluation.metrics.semantic_report``: mIoU, Dice, image accuracy) on the argmax maps;
* pixel ECE: expected calibration error of the per-pixel top-class probability (15 equal-width bins, all pixels;
  also over the ground-truth galaxy pixels only), and the mean negative log-likelihood of the true class;
* object ECE: for each image, the predicted object (``src.inference.objects``, as in the catalog) that overlaps the
  annotated galaxy most; its top ``p_<class>`` against its class being the annotated one (10 bins); images where no
  object
  overlaps the galaxy are counted apart.

The last line gives the seed mIoU, accuracy and object ECE without -> with TTA.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.classes import GALAXY_CLASSES  # noqa: E402
from src.evaluation.evaluate import ground_truth_dataset  # noqa: E402
from src.evaluation.evaluators import SemanticEvaluator  # noqa: E402
from src.inference.objects import measure_objects, object_map_semantic  # noqa: E402
from src.inference.segmentation import segment  # noqa: E402
from src.modelling.model import load_model  # noqa: E402


class Calibration:
    """Equal-width confidence bins: ECE = sum_b (n_b / N) |accuracy_b - confidence_b|."""

    def __init__(self, bins: int):
        self.bins = bins
        self.count, self.conf, self.correct = np.zeros(bins), np.zeros(bins), np.zeros(bins)

    def update(self, confidence: np.ndarray, correct: np.ndarray) -> None:
        index = np.clip((confidence * self.bins).astype(int), 0, self.bins - 1)
        self.count += np.bincount(index, minlength=self.bins)
        self.conf += np.bincount(index, weights=confidence, minlength=self.bins)
        self.correct += np.bincount(index, weights=correct.astype(float), minlength=self.bins)

    def ece(self) -> float:
        seen = self.count > 0
        gap = np.abs(self.correct[seen] - self.conf[seen])  # = n_b |acc_b - conf_b|
        return float(gap.sum() / self.count.sum())


def score(model, processor, dataset, tta: bool, batch_size: int) -> dict:
    semantic = SemanticEvaluator()
    pixels, galaxy_pixels, objects = Calibration(15), Calibration(15), Calibration(10)
    nll, n_pixels, missed = 0.0, 0, 0
    start = time.perf_counter()
    for first in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
        results = segment(model, processor, [item["image"] for item in items], "semantic", tta, batch_size)
        for index, item, (probs, _, _) in zip(range(first, first + len(items)), items, results):
            truth = item["semantic"]
            prediction = probs.argmax(0)
            semantic.process([{**item, "index": index}], [{"class_map": prediction.astype(np.uint8)}])
            top = probs.max(0)
            pixels.update(top.ravel(), (prediction == truth).ravel())
            galaxy = truth > 0
            galaxy_pixels.update(top[galaxy], prediction[galaxy] == truth[galaxy])
            true_p = np.take_along_axis(probs, truth[None].astype(np.intp), 0)[0]
            nll -= float(np.log(np.clip(true_p, 1e-12, None)).sum())
            n_pixels += truth.size
            object_map, _, _ = object_map_semantic(probs)
            overlap = np.bincount(object_map[galaxy], minlength=object_map.max() + 1)[1:]
            if not overlap.any():
                missed += 1
                continue
            row = measure_objects(object_map, probs)[int(overlap.argmax())]
            p = np.array([row[k] for k in row if k.startswith("p_")])
            true_class = GALAXY_CLASSES[int(np.bincount(truth[galaxy]).argmax()) - 1]
            objects.update(p.max(keepdims=True), np.array([row["class"] == true_class]))
    seed = semantic.evaluate()["seed_protocol"]
    return {
        "mIoU": seed["mean_iou"],
        "dice": seed["dice"],
        "accuracy": seed["accuracy"],
        "pixel_ece": pixels.ece(),
        "galaxy_pixel_ece": galaxy_pixels.ece(),
        "pixel_nll": nll / n_pixels,
        "object_ece": objects.ece(),
        "objects_scored": int(objects.count.sum()),
        "missed": missed,
        "seconds": time.perf_counter() - start,
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="save_pretrained folder")
    p.add_argument("--data-root", required=True, help="converted data (galaxy_<split>.json, original/zoo2Main)")
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, processor = load_model(args.model, device="cpu")
    dataset = ground_truth_dataset(args.data_root, args.split, args.limit)
    rows = {
        name: score(model, processor, dataset, tta, args.batch_size) for name, tta in (("plain", False), ("tta", True))
    }
    keys = list(rows["plain"])
    print(f"{'':<8}" + "".join(f"{k:>17}" for k in keys))
    for name, row in rows.items():
        print(
            f"{name:<8}" + "".join(f"{row[k]:>17.4f}" if isinstance(row[k], float) else f"{row[k]:>17}" for k in keys)
        )
    load = os.getloadavg()
    print(
        f"{args.model} on {args.data_root} {args.split} ({len(dataset)} images), {args.threads} threads, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    a, b = rows["plain"], rows["tta"]
    print(
        f"TTA: seed mIoU {a['mIoU']:.4f} -> {b['mIoU']:.4f}, accuracy {a['accuracy']:.4f} -> {b['accuracy']:.4f}, "
        f"object ECE {a['object_ece']:.4f} -> {b['object_ece']:.4f}, pixel ECE {a['pixel_ece']:.4f} -> "
        f"{b['pixel_ece']:.4f}"
    )
    return rows


if __name__ == "__main__":
    main()
