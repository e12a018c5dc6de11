"""Does the annotated outline sit where the cutout shows the galaxy's edge, the same way in every cutout?

A model can only learn an outline that follows what it sees.  For each cutout of a converted split: the grey
level's sky (median) and noise (MAD), a signal-to-noise map (smoothed by 1 px), and for thresholds t of 0.5-40
the component at the outline's centre above t (holes filled).  Printed per data root: the IoU with the outline
at the single best t for the whole split, the mean of each cutout's own best IoU, and the p10-p90 spread of the
best t.  A large gap between the first two (or a wide spread) means the outline lies at a different visible
level from cutout to cutout: no model can follow it.  With ``--by-pedestal`` (sdss-scene sets of seed 0): the best
t by the sky level left in the composite (``src.synthetic.conditions``).

    .venv/bin/python bench/outline_consistency.py DATA_ROOT [DATA_ROOT ...] [--split val] [--n 150] [--by-pedestal]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

THRESHOLDS = np.geomspace(0.5, 40, 40)


def best_thresholds(image: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """IoU with ``outline`` (bool) of the centre component above each of ``THRESHOLDS`` (sky noise units)."""
    from scipy import ndimage

    grey = image.astype(float).mean(2)
    sky = np.median(grey)
    noise = 1.4826 * np.median(np.abs(grey - sky)) + 0.5  # + half a JPEG unit: never zero
    snr = ndimage.gaussian_filter((grey - sky) / noise, 1.0)
    cy, cx = (int(v) for v in np.array(outline.nonzero()).mean(1))
    ious = []
    for t in THRESHOLDS:
        labelled, _ = ndimage.label(snr > t)
        component = labelled[cy, cx]
        found = ndimage.binary_fill_holes(labelled == component) if component else np.zeros_like(outline)
        ious.append((found & outline).sum() / max((found | outline).sum(), 1))
    return np.array(ious)


def pedestal_of(objid: int, seed: int = 0) -> float:
    from src.synthetic import conditions, hart16

    index = objid - hart16.objid(seed, 0)
    field_ss = np.random.SeedSequence([seed, index]).spawn(4)[3]  # the stream conditions are drawn from
    return conditions.draw(np.random.default_rng(field_ss)).pedestal


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=150, help="cutouts per data root (the first N of the split)")
    parser.add_argument("--by-pedestal", action="store_true")
    args = parser.parse_args(argv)
    from src.evaluation.evaluate import ground_truth_dataset

    for root in args.roots:
        data = ground_truth_dataset(root, args.split, limit=args.n)
        items = [data[k] for k in range(len(data))]
        ious = np.array([best_thresholds(item["image"], item["semantic"] > 0) for item in items])
        best = THRESHOLDS[ious.argmax(1)]
        common = ious.mean(0).argmax()
        print(
            f"{root}: {len(items)} cutouts; one threshold for all (t = {THRESHOLDS[common]:.2f}) IoU "
            f"{ious[:, common].mean():.3f}; each cutout's best IoU {ious.max(1).mean():.3f}; best t p10-p90 "
            f"{np.percentile(best, 10):.2f}-{np.percentile(best, 90):.2f}"
        )
        if args.by_pedestal:
            pedestal = np.array([pedestal_of(int(item["objid"])) for item in items])
            for lo, hi in ((0, 0.02), (0.02, 0.08), (0.08, 0.2), (0.2, 0.5)):
                inside = (pedestal >= lo) & (pedestal < hi)
                if inside.any():
                    print(
                        f"  pedestal {lo}-{hi} sky sigma: best t median {np.median(best[inside]):.2f} "
                        f"({inside.sum()} cutouts)"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
