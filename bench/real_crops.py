"""How a model behaves on real frames: 256 px crops of the real SDSS frame and of the HST deep field.

    .venv/bin/python bench/real_crops.py --model before=PATH --model after=PATH [--fields ../shared/real/fields]
        [--figure images/real_crops.png] [--json OUT.json] [--device cpu]

No real labels exist for these frames, so this checks behaviour, not a score.  Crops (the same for every model):

* ``sdss-galaxy``: centred on the five galaxies of ``mask_galaxy_bench.jpg`` (SDSS gri, 1000 px), picked by eye and
  listed in ``SDSS_GALAXIES`` (the crop is shifted to stay inside the frame; the galaxy's position is tracked);
* ``sdss-star``: centred on its bright stars: sep sources (3 sigma) with at least 2 pixels where a channel
  reaches 250, brightest first, one per 30 px, at most ``MAX_STARS``;
* ``hst``: ``astrocv_0.jpg`` and ``astrocv_xs_1_c.jpg`` (256 px crops of the HST deep field) and the 256 px tiles
  of ``astrocv.jpg`` on a grid (deeper and finer-sampled than SDSS: many large galaxies in every crop).

Each crop goes through the model on the semantic task (``src.inference.segmentation``), as the demo scores its test
split.  The central object is sep's segment of the source at the tracked position (3 sigma, dilated by ``GROW`` px).
Per crop:
``found`` (at least ``FOUND_SHARE`` of the central segment is a galaxy class, E/S/SB/Se), ``artifact`` (the same
with class A), ``outside`` (galaxy-class pixels outside the dilated central segment, as a multiple of the
segment's area: "galaxy pixels on neighbours and stars") and ``galaxy_share`` (galaxy-class share of the crop;
over 0.5 = ``flooded``).  Printed per model: SDSS galaxies found and their median ``outside``; central stars
called a galaxy (target: at most a third) or A; crops of each kind flooded (target on the deep field: none).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.classes import COLOURS, ID2LABEL, LABEL2ID  # noqa: E402
from src.data.images import read_rgb  # noqa: E402

DEFAULT_FIELDS = REPO.parent / "shared" / "real" / "fields"
CROP = 256
#: (x, y) of the galaxies of mask_galaxy_bench.jpg, picked by eye on the frame (a face-on diffuse spiral, an
#: elliptical beside a saturated star, a pair of small red galaxies, a faint diffuse galaxy, a small edge-on).
SDSS_GALAXIES = ((110, 187), (498, 501), (864, 797), (358, 401), (301, 498))
MAX_STARS = 16
GROW = 3
FOUND_SHARE = 0.25
FLOOD_SHARE = 0.5
GALAXY_IDS = tuple(LABEL2ID[name] for name in ("elliptical", "spiral", "spiral barred", "spiral edge-on"))
ARTIFACT_ID = LABEL2ID["artifact"]


@dataclass
class Crop:
    """A 256 px crop of a real frame and the position (x, y) of its central object in crop pixels."""

    kind: str
    name: str
    rgb: np.ndarray
    xy: tuple[float, float]
    scores: dict = field(default_factory=dict)


def window(frame: np.ndarray, x: float, y: float, size: int = CROP) -> tuple[np.ndarray, tuple[float, float]]:
    """The ``size`` crop centred on (x, y), shifted to stay inside the frame, and (x, y) in crop pixels."""
    height, width = frame.shape[:2]
    x0 = int(np.clip(round(x) - size // 2, 0, width - size))
    y0 = int(np.clip(round(y) - size // 2, 0, height - size))
    return frame[y0 : y0 + size, x0 : x0 + size], (x - x0, y - y0)


def detect(rgb: np.ndarray):
    """sep sources (3 sigma, 5 px) and segmentation map of the mean-of-RGB image."""
    import sep

    image = np.ascontiguousarray(rgb.astype(np.float32).mean(axis=2))
    background = sep.Background(image, bw=64, bh=64, fw=3, fh=3)
    return sep.extract(
        image - background.back(), 3.0, err=background.globalrms, minarea=5, segmentation_map=True, deblend_cont=0.005
    )


def bright_stars(frame: np.ndarray, limit: int = MAX_STARS, spacing: float = 30.0) -> list[tuple[float, float]]:
    """Positions of the frame's saturated stars (>= 2 px with a channel >= 250), brightest first."""
    objects, segmap = detect(frame)
    saturated = frame.max(axis=2) >= 250
    from scipy import ndimage

    counts = ndimage.sum_labels(saturated, segmap, np.arange(1, len(objects) + 1))
    chosen = []
    for i in np.argsort(-objects["flux"]):
        if counts[i] < 2:
            continue
        x, y = float(objects["x"][i]), float(objects["y"][i])
        if all(np.hypot(x - cx, y - cy) > spacing for cx, cy in chosen):
            chosen.append((x, y))
        if len(chosen) == limit:
            break
    return chosen


def select_crops(fields: Path) -> list[Crop]:
    """The crops of this benchmark, in a fixed order."""
    sdss = read_rgb(fields / "mask_galaxy_bench.jpg")
    crops = []
    for x, y in SDSS_GALAXIES:
        rgb, xy = window(sdss, x, y)
        crops.append(Crop("sdss-galaxy", f"galaxy ({x}, {y})", rgb, xy))
    for x, y in bright_stars(sdss):
        rgb, xy = window(sdss, x, y)
        crops.append(Crop("sdss-star", f"star ({x:.0f}, {y:.0f})", rgb, xy))
    for name in ("astrocv_0.jpg", "astrocv_xs_1_c.jpg"):
        rgb = read_rgb(fields / name)
        crops.append(Crop("hst", name, rgb, ((rgb.shape[1] - 1) / 2, (rgb.shape[0] - 1) / 2)))
    deep = read_rgb(fields / "astrocv.jpg")
    for y0 in range(0, deep.shape[0] - CROP + 1, CROP):
        for x0 in range(0, deep.shape[1] - CROP + 1, CROP):
            crops.append(
                Crop(
                    "hst",
                    f"astrocv tile ({x0}, {y0})",
                    deep[y0 : y0 + CROP, x0 : x0 + CROP],
                    ((CROP - 1) / 2, (CROP - 1) / 2),
                )
            )
    return crops


def central_segment(rgb: np.ndarray, xy: tuple[float, float]) -> np.ndarray:
    """Boolean mask of sep's segment at ``xy`` (or the nearest within 6 px), dilated by ``GROW`` px; empty when
    nothing was detected there."""
    from scipy import ndimage

    objects, segmap = detect(rgb)
    x, y = int(round(xy[0])), int(round(xy[1]))
    label = segmap[y, x]
    if label == 0 and len(objects):
        dist = np.hypot(objects["x"] - xy[0], objects["y"] - xy[1])
        label = int(np.argmin(dist)) + 1 if dist.min() <= 6 else 0
    if label == 0:
        return np.zeros(segmap.shape, bool)
    return ndimage.binary_dilation(segmap == label, iterations=GROW)


def score(semantic: np.ndarray, central: np.ndarray) -> dict:
    """Behaviour figures of one crop's class map (see the module docstring)."""
    galaxy = np.isin(semantic, GALAXY_IDS)
    area = max(int(central.sum()), 1)
    inside = semantic[central]
    classes = {ID2LABEL[int(c)]: int(n) for c, n in zip(*np.unique(inside, return_counts=True)) if c}
    return {
        "found": bool(galaxy[central].sum() >= FOUND_SHARE * area) if central.any() else False,
        "artifact": bool((inside == ARTIFACT_ID).sum() >= FOUND_SHARE * area) if central.any() else False,
        "outside": float((galaxy & ~central).sum() / area),
        "galaxy_share": float(galaxy.mean()),
        "central_classes": classes,
    }


def run_model(path: str, crops: list[Crop], device=None, batch_size: int = 8) -> list[np.ndarray]:
    """Semantic class maps of every crop."""
    import torch

    from src.inference.segmentation import forward, pick_device, semantic_maps
    from src.modelling.model import load_model

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    device = pick_device(device)
    model, processor = load_model(path, device=device)
    maps = []
    for start in range(0, len(crops), batch_size):
        batch = [c.rgb for c in crops[start : start + batch_size]]
        outputs = forward(model, processor, batch, "semantic")
        maps += semantic_maps(processor, outputs, [im.shape[:2] for im in batch])
    return maps


def summarise(crops: list[Crop], label: str) -> dict:
    by_kind = {}
    for kind in ("sdss-galaxy", "sdss-star", "hst"):
        mine = [c.scores[label] for c in crops if c.kind == kind]
        by_kind[kind] = {
            "crops": len(mine),
            "found": sum(s["found"] for s in mine),
            "artifact": sum(s["artifact"] for s in mine),
            "outside_median": float(np.median([s["outside"] for s in mine])) if mine else float("nan"),
            "flooded": sum(s["galaxy_share"] > FLOOD_SHARE for s in mine),
            "galaxy_share_median": float(np.median([s["galaxy_share"] for s in mine])) if mine else float("nan"),
        }
    return by_kind


def table(summaries: dict[str, dict]) -> str:
    lines = ["| | " + " | ".join(summaries) + " |", "|---|" + "---|" * len(summaries)]

    def row(text, fn):
        lines.append(f"| {text} | " + " | ".join(fn(s) for s in summaries.values()) + " |")

    row("SDSS galaxies: central galaxy found", lambda s: f"{s['sdss-galaxy']['found']} / {s['sdss-galaxy']['crops']}")
    row(
        "SDSS galaxies: galaxy pixels outside the central object (median, x its area)",
        lambda s: f"{s['sdss-galaxy']['outside_median']:.2f}",
    )
    row(
        "SDSS bright stars: central star called a galaxy (target <= 1/3)",
        lambda s: f"{s['sdss-star']['found']} / {s['sdss-star']['crops']}",
    )
    row(
        "SDSS bright stars: central star called A",
        lambda s: f"{s['sdss-star']['artifact']} / {s['sdss-star']['crops']}",
    )
    row(
        "SDSS bright stars: galaxy pixels elsewhere (median, x the star's area)",
        lambda s: f"{s['sdss-star']['outside_median']:.2f}",
    )
    row(
        "SDSS crops flooded (> half galaxy)",
        lambda s: (
            f"{s['sdss-galaxy']['flooded'] + s['sdss-star']['flooded']} / "
            f"{s['sdss-galaxy']['crops'] + s['sdss-star']['crops']}"
        ),
    )
    row(
        "HST deep field: crops flooded (> half galaxy; target 0)",
        lambda s: f"{s['hst']['flooded']} / {s['hst']['crops']}",
    )
    row("HST deep field: galaxy share of a crop (median)", lambda s: f"{s['hst']['galaxy_share_median']:.2f}")
    return "\n".join(lines)


def overlay(rgb: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """The crop with each predicted class painted at 55 % opacity in its colour."""
    colours = np.zeros((max(ID2LABEL) + 1, 3))
    for class_id, name in ID2LABEL.items():
        colours[class_id] = COLOURS[name]
    painted = rgb.astype(float)
    mask = semantic > 0
    painted[mask] = 0.45 * painted[mask] + 0.55 * colours[semantic[mask]]
    return painted.astype(np.uint8)


def figure(path: Path, crops: list[Crop], maps: dict[str, list[np.ndarray]], picks: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from src.evaluation.visual import save_figure

    labels = list(maps)
    groups = 3
    rows = int(np.ceil(len(picks) / groups))
    cols = groups * (1 + len(labels))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows + 0.6))
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    for k, index in enumerate(picks):
        crop = crops[index]
        r, g = k // groups, k % groups
        base = g * (1 + len(labels))
        axes[r, base].imshow(crop.rgb)
        axes[r, base].plot(*crop.xy, "+", color="white", ms=6, mew=0.8)
        axes[r, base].set_title(crop.name, fontsize=6)
        for j, label in enumerate(labels):
            axes[r, base + 1 + j].imshow(overlay(crop.rgb, maps[label][index]))
            s = crop.scores[label]
            axes[r, base + 1 + j].set_title(f"{label}: gal {s['galaxy_share']:.0%}", fontsize=6)
    handles = [Patch(color=np.asarray(COLOURS[name]) / 255, label=name) for name in list(ID2LABEL.values())[1:]]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle(
        "Real crops (SDSS frame: galaxies, bright stars; HST deep field) and semantic predictions (+ = central object)",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    save_figure(fig, path, dpi=80, palette=True, bbox_inches=None)
    plt.close(fig)


def figure_picks(crops: list[Crop], per_kind: int = 4) -> list[int]:
    """Crops shown in the figure: the SDSS galaxies, the first SDSS stars and the two HST crops of the original
    project's figures, plus deep-field tiles, ``per_kind`` of each at most (in order)."""
    picks = [i for i, c in enumerate(crops) if c.kind == "sdss-galaxy"][: per_kind + 1]
    picks += [i for i, c in enumerate(crops) if c.kind == "sdss-star"][: per_kind + 1]
    hst = [i for i, c in enumerate(crops) if c.kind == "hst"]
    picks += hst[:2] + hst[2 :: max(1, (len(hst) - 2) // 3)][:3]
    return picks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="LABEL=PATH",
        help="a model to run (repeatable): LABEL=anything src.modelling.model.load_model accepts",
    )
    parser.add_argument("--fields", type=Path, default=DEFAULT_FIELDS, help="folder of the real frames")
    parser.add_argument("--figure", type=Path, default=None, help="write the crops-and-predictions figure here")
    parser.add_argument("--json", type=Path, default=None, help="write the per-crop scores and summaries here")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    models = {}
    for spec in args.model:
        label, _, path = spec.partition("=")
        if not path:
            print(f"bench/real_crops.py: --model wants LABEL=PATH, got {spec!r}", file=sys.stderr)
            return 2
        models[label] = path
    missing = [
        n
        for n in ("mask_galaxy_bench.jpg", "astrocv.jpg", "astrocv_0.jpg", "astrocv_xs_1_c.jpg")
        if not (args.fields / n).is_file()
    ]
    if missing:
        print(f"bench/real_crops.py: not found under {args.fields}: {', '.join(missing)}", file=sys.stderr)
        return 2

    crops = select_crops(args.fields)
    centrals = [central_segment(c.rgb, c.xy) for c in crops]
    maps, summaries = {}, {}
    for label, path in models.items():
        maps[label] = run_model(path, crops, args.device)
        for crop, central, semantic in zip(crops, centrals, maps[label]):
            crop.scores[label] = score(semantic, central)
        summaries[label] = summarise(crops, label)
    counts = {kind: sum(c.kind == kind for c in crops) for kind in ("sdss-galaxy", "sdss-star", "hst")}
    print(f"crops: {counts} (load average {os.getloadavg()[0]:.1f})")
    for crop in crops:
        if crop.kind != "hst" or crop.name.startswith("astrocv_"):
            print(
                f"  {crop.kind:12s} {crop.name:24s} "
                + "  ".join(
                    f"{label}: found={s['found']:d} A={s['artifact']:d} out={s['outside']:.2f} "
                    f"gal={s['galaxy_share']:.2f} "
                    f"{s['central_classes']}"
                    for label, s in crop.scores.items()
                )
            )
    print(table(summaries))
    if args.json:
        from src.atomic import write_json_atomic

        write_json_atomic(
            args.json,
            {
                "models": models,
                "summaries": summaries,
                "crops": [{"kind": c.kind, "name": c.name, "xy": list(c.xy), "scores": c.scores} for c in crops],
            },
            indent=1,
        )
    if args.figure:
        figure(args.figure, crops, maps, figure_picks(crops))
        print(f"figure: {args.figure}")
    last = list(summaries.values())[-1]
    print(
        f"{list(summaries)[-1]}: central stars called a galaxy {last['sdss-star']['found']}/"
        f"{last['sdss-star']['crops']}, deep-field crops flooded {last['hst']['flooded']}/{last['hst']['crops']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
