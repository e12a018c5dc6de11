"""How well sep's isophotes reproduce the annotated outlines of synthetic fields, by detection threshold: the
calibration of ``src.field.detect.RGB_THRESH`` (JPEG frames) and ``BAND_THRESH`` (FITS bands).

    python bench/field_detection.py --fields DIR [--thresholds 1 1.5 2 3 4] [--min-area 90]

DIR: ``python -m src.synthetic --field --fits`` output.  For each threshold and input kind: sep sources, candidates
(isophotal area >= --min-area), completeness of the annotated galaxies (a candidate's segment with IoU >= 0.5),
median IoU of the matches and median (annotated area / sep area), which is 1 when sep's isophote is the
annotation's.  The last line prints the threshold whose median area ratio is nearest 1, per kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.images import read_rgb  # noqa: E402
from src.data.sources import Source  # noqa: E402
from src.field.cutout import candidates  # noqa: E402
from src.field.detect import detect  # noqa: E402
from src.field.evaluate import annotation_path  # noqa: E402
from src.field.frame import RgbFrame, open_frame  # noqa: E402
from src.field.score import MaskEncoder, load_truth, match  # noqa: E402


def frames(image: dict):
    yield "jpeg", RgbFrame(read_rgb(image["path"]))
    stem = Path(image["path"]).with_suffix("")
    bands = [Path(f"{stem}_{b}.fits") for b in "gri"]
    if all(p.is_file() for p in bands):
        yield "fits", open_frame(Source(str(stem), tuple(map(str, bands))))


def main(argv=None) -> None:
    from pycocotools import mask as mask_utils

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fields", required=True)
    p.add_argument("--thresholds", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.0])
    p.add_argument("--min-area", type=int, default=90)
    args = p.parse_args(argv)
    truth = load_truth(annotation_path(args.fields))
    stats: dict = {}
    for image in truth["images"]:
        anns = truth["truth"][image["id"]]
        gt = [a["rle"] for a in anns]
        for kind, frame in frames(image):
            for thresh in args.thresholds:
                found = detect(frame.detection, frame.shape, thresh)
                rows = candidates(found, args.min_area)
                encoder = MaskEncoder(frame.shape)
                rles, areas = [], []
                for k in rows:
                    t = found.table[k]
                    mask = found.segmentation[t["ymin"] : t["ymax"] + 1, t["xmin"] : t["xmax"] + 1] == k + 1
                    rles.append(encoder.encode(int(t["ymin"]), int(t["xmin"]), mask))
                    areas.append(mask.sum())
                ious = (
                    np.asarray(mask_utils.iou(rles, gt, [0] * len(gt))).reshape(len(rles), len(gt))
                    if rles and gt
                    else np.zeros((len(rles), len(gt)))
                )
                pairs = match(ious)
                s = stats.setdefault(
                    (kind, thresh), {"sources": 0, "candidates": 0, "truth": 0, "iou": [], "ratio": []}
                )
                s["sources"] += len(found)
                s["candidates"] += len(rows)
                s["truth"] += len(gt)
                s["iou"] += [iou for _, _, iou in pairs]
                s["ratio"] += [anns[t]["area"] / areas[p] for p, t, _ in pairs]
            frame.close()
    print(f"{'kind':5} {'thresh':>6} {'sources':>8} {'cands':>6} {'complete':>8} {'med IoU':>8} {'area ratio':>10}")
    best = {}
    for (kind, thresh), s in sorted(stats.items()):
        ratio = float(np.median(s["ratio"])) if s["ratio"] else float("nan")
        print(
            f"{kind:5} {thresh:6.2f} {s['sources']:8d} {s['candidates']:6d} {len(s['iou']) / s['truth']:8.3f} "
            f"{np.median(s['iou']) if s['iou'] else float('nan'):8.3f} {ratio:10.3f}"
        )
        if np.isfinite(ratio) and abs(np.log(ratio)) < abs(np.log(best.get(kind, (0, np.inf))[1])):
            best[kind] = (thresh, ratio)
    print("threshold with area ratio nearest 1: " + ", ".join(f"{k} {t:g} ({r:.2f})" for k, (t, r) in best.items()))


if __name__ == "__main__":
    main()
