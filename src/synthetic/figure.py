"""``images/synthetic_examples.png``: synthetic cutouts per class with their VIA polygons.

    python -m src.synthetic.figure [--out images/synthetic_examples.png] [--per-class 6] [--seed 0] [--scene sdss]

The README's figures: the default (sdss) scene with the defaults; the clean scene with
``--scene clean --out images/synthetic_clean_examples.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from src.classes import COLOURS, GALAXY_CLASSES
from src.defaults import CUTOUT_SIZE
from src.synthetic.generator import DEFAULT_SCENE, SCENES, render_cutout


def examples(per_class: int, seed: int, size: int, balance: bool = True, scene: str = DEFAULT_SCENE):
    """(rgb, record) pairs, ``per_class`` of each 5-class, in class order."""
    found = {name: [] for name in GALAXY_CLASSES}
    index = 0
    while any(len(v) < per_class for v in found.values()):
        rgb, record = render_cutout(seed, index, size, balance=balance, scene=scene)
        if len(found[record["group"]]) < per_class:
            found[record["group"]].append((rgb, record))
        index += 1
    return [pair for name in GALAXY_CLASSES for pair in found[name]]


def plot_examples(
    out, per_class: int = 6, seed: int = 0, size: int = CUTOUT_SIZE, crop: int | None = 128, scene: str = DEFAULT_SCENE
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = examples(per_class, seed, size, scene=scene)
    fig, axes = plt.subplots(len(GALAXY_CLASSES), per_class, figsize=(1.6 * per_class, 1.7 * len(GALAXY_CLASSES)))
    lo = (size - crop) // 2 if crop else 0
    hi = lo + crop if crop else size
    for ax, (rgb, record) in zip(axes.ravel(), pairs):
        ax.imshow(rgb[lo:hi, lo:hi], extent=(lo - 0.5, hi - 0.5, hi - 0.5, lo - 0.5))
        xs, ys = (
            record["all_points_x"] + record["all_points_x"][:1],
            record["all_points_y"] + record["all_points_y"][:1],
        )
        ax.plot(xs, ys, color=np.asarray(COLOURS[record["group"]]) / 255, lw=0.8)
        ax.set_xlim(lo - 0.5, hi - 0.5), ax.set_ylim(hi - 0.5, lo - 0.5)
        ax.set_title(record["gz2_class"], fontsize=7, pad=2)
        ax.set_xticks([]), ax.set_yticks([])
    for row, name in enumerate(GALAXY_CLASSES):
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(
        f"Synthetic GZ2, {scene} scene ({size} px cutouts, central {crop or size} px shown; polygon = VIA annotation)",
        fontsize=8,
    )
    fig.tight_layout()
    from src.evaluation.visual import save_figure

    out = save_figure(fig, out, dpi=90, palette=True, bbox_inches=None)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.synthetic.figure", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="images/synthetic_examples.png")
    parser.add_argument("--per-class", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scene", choices=SCENES, default=DEFAULT_SCENE)
    args = parser.parse_args(argv)
    print(plot_examples(args.out, args.per_class, args.seed, scene=args.scene))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
