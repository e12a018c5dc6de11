"""Synthetic realism against a real SDSS frame: the same sep measurements on real crops and synthetic cutouts.

    .venv/bin/python bench/realism.py [--real ../shared/real/fields/mask_galaxy_bench.jpg] [--n 300] [--seed 0]
        [--dir LABEL=DATA_ROOT ...] [--figure images/realism.png] [--json OUT.json]

Real: 256 px crops on a 4 x 4 grid covering the frame (JPEG pixel values).  Synthetic: ``--n`` cutouts of each
scene of the generator (``clean`` and ``sdss``, the default) rendered in this process and passed through their own
JPEG encoding (quality of each cutout), plus, with ``--dir``, the first ``--n`` JPEGs of any generated data root
(e.g. one written by an older version of the generator from a ``git worktree``).  The statistics are those of
``src.synthetic.realism``; the table shows the real value, each set's value (per-crop statistics: the median over
crops), the ``sdss`` scene's p10-p90 over its cutouts, each ratio to the real value and a verdict for the ``sdss``
scene: ``ok`` within 20 %;
``in range`` where the statistic depends on the frame's galactic latitude (star density) or sky level, which the
generator draws over a range, and the real value lies within its p10-p90; ``within real sampling`` for the
statistics of the frame's saturated stars (17 of them) when the synthetic value lies in the 16-84 % bootstrap
interval of the real median; ``off`` otherwise.  A second table
compares the pixel mean and standard deviation with the real GZ2 cutouts (DEVELOPERS.md facts).  Printed last: the
verdict counts of the ``sdss`` scene.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.data.images import read_rgb  # noqa: E402
from src.synthetic import realism  # noqa: E402
from src.synthetic.generator import SCENES, render_cutout  # noqa: E402

#: The set the verdicts are for.
JUDGED = "sdss"
DEFAULT_REAL = REPO.parent / "shared" / "real" / "fields" / "mask_galaxy_bench.jpg"
#: (key, label) in table order.
ROWS = (
    ("n_sources", "sources per crop (> 3 sigma)"),
    ("n_point", "point-like per crop"),
    ("n_extended", "extended per crop"),
    ("point_share", "share point-like"),
    ("cover", "crop area in sources"),
    ("blended", "share blended (sep deblending)"),
    ("flux_p10", "log10 source flux p10"),
    ("flux_p50", "log10 source flux p50"),
    ("flux_p90", "log10 source flux p90"),
    ("brightest_star", "log10 flux of the brightest star"),
    ("saturated_per_crop", "saturated stars per crop"),
    ("spikes", "spike index (m=4) of saturated stars"),
    ("bleed", "trail index (m=2) of saturated stars"),
    ("sky_level", "sky level (JPEG units)"),
    ("sky_sigma", "sky noise sigma (JPEG units)"),
    ("noise_corr1", "sky noise correlation, lag 1 px"),
    ("noise_corr3", "sky noise correlation, lag 3 px"),
    ("star_fwhm", "star FWHM (2 r50, px)"),
    ("star_colour", "star colour -2.5 log(R/B), median"),
    ("star_colour_spread", "star colour spread (p84 - p16)"),
    ("galaxy_colour", "extended-source colour, median"),
)
#: Rows that depend on where the frame lies on the sky (star density: galactic latitude) or on its sky level,
#: which the generator draws over a range: there the real value must lie within the synthetic p10-p90.
RANGE_ROWS = {
    "n_sources": "latitude",
    "n_point": "latitude",
    "n_extended": "latitude",
    "cover": "latitude",
    "blended": "latitude",
    "saturated_per_crop": "latitude",
    "brightest_star": "latitude",
    "noise_corr3": "latitude",
    "sky_level": "sky",
    "sky_sigma": "sky",
}
#: Rows measured on the frame's few saturated stars: their real median has a sampling spread (bootstrap).
SAMPLED_ROWS = ("spikes", "bleed")
#: The real GZ2 cutouts' pixel statistics (DEVELOPERS.md facts: the seed's real cutouts, 0-255).
GZ2_MEAN = np.array([8.6, 6.0, 4.9])
GZ2_STD = np.array([14.7, 12.4, 8.7])


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """What the cutout looks like once written (PIL, as ``src.data.images.write_jpeg``) and read back."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def generator_scene(n: int, seed: int, scene: str) -> list[np.ndarray]:
    """``n`` cutouts of ``scene``, after their own JPEG encoding."""
    images = []
    for index in range(n):
        rgb, record = render_cutout(seed, index, 256, scene=scene)
        images.append(jpeg_round_trip(rgb, record["conditions"].jpeg_quality))
    return images


def data_root_images(root: Path, n: int) -> list[np.ndarray]:
    files = sorted((root / "original" / "zoo2Main").glob("*.jpg"))[:n]
    if not files:
        raise SystemExit(f"bench/realism.py: no JPEG under {root / 'original' / 'zoo2Main'}")
    return [read_rgb(f) for f in files]


def crop_range(crops: list[dict], key: str) -> tuple[float, float]:
    values = np.asarray([c[key] for c in crops], float)
    values = values[np.isfinite(values)]
    return (float(np.percentile(values, 10)), float(np.percentile(values, 90))) if len(values) else (np.nan, np.nan)


def real_sampling(sources: dict, key: str, draws: int = 2000) -> tuple[float, float]:
    """16-84 % bootstrap interval of the real median of ``key`` over the frame's saturated stars (few of them)."""
    values = sources[key][sources["saturated"].astype(bool)]
    values = values[np.isfinite(values)]
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(values, size=(draws, len(values))), axis=1)
    return float(np.percentile(medians, 16)), float(np.percentile(medians, 84))


def verdict(
    key: str,
    real: float,
    value: float,
    spread: tuple[float, float] | None,
    real_summary: dict,
    real_interval: tuple[float, float] | None = None,
):
    """(comparison text, verdict): ``ok`` within 20 % (colours: within 20 % of the real stars' colour spread),
    ``in range`` for a range row whose real value lies in the synthetic p10-p90, ``within real sampling`` where
    the real value rests on a handful of stars and the synthetic one lies in its bootstrap interval, else
    ``off``."""
    if not (np.isfinite(real) and np.isfinite(value)):
        return "-", "off"
    if key in ("star_colour", "galaxy_colour"):
        text = f"{value - real:+.2f}"
        close = abs(value - real) <= 0.2 * real_summary["star_colour_spread"]
    else:
        text = f"x{value / real:.2f}" if real else "-"
        close = bool(real) and abs(value / real - 1) <= 0.2
    if close:
        return text, "ok"
    if key in RANGE_ROWS and spread is not None and spread[0] <= real <= spread[1]:
        return text, f"in range ({RANGE_ROWS[key]})"
    if real_interval is not None and real_interval[0] <= value <= real_interval[1]:
        return text, f"within real sampling ({real_interval[0]:.3g}-{real_interval[1]:.3g})"
    return text, "**off**"


def table(
    summaries: dict[str, dict],
    ranges: dict[str, tuple[float, float]],
    current: str,
    real_intervals: dict[str, tuple[float, float]],
):
    """The comparison table (markdown) and the verdict counts of the ``current`` set."""
    labels = list(summaries)
    lines = [
        "| statistic | "
        + " | ".join(labels)
        + f" | {current} p10-p90 | "
        + " | ".join(f"{x} / real" for x in labels[1:])
        + " | verdict |",
        "|---|" + "---|" * (2 * len(labels) + 1),
    ]
    real = summaries[labels[0]]
    counts = {}
    for key, label in ROWS:
        values = [f"{summaries[x][key]:.3g}" for x in labels]
        spread = ranges.get(key)
        spread_text = f"{spread[0]:.3g}-{spread[1]:.3g}" if spread else "-"
        ratios, verdict_text = [], ""
        for name in labels[1:]:
            text, judged = verdict(
                key, real[key], summaries[name][key], spread if name == current else None, real, real_intervals.get(key)
            )
            ratios.append(text + (" (within 20 %)" if name != current and judged == "ok" else ""))
            if name == current:
                verdict_text = judged
                counts[judged.split(" (")[0]] = counts.get(judged.split(" (")[0], 0) + 1
            elif judged == "ok":
                counts[f"{name} within 20 %"] = counts.get(f"{name} within 20 %", 0) + 1
        lines.append(
            f"| {label} | " + " | ".join(values) + f" | {spread_text} | " + " | ".join(ratios) + f" | {verdict_text} |"
        )
    return "\n".join(lines), counts


def pixel_table(images: dict[str, list[np.ndarray]]) -> str:
    """Pixel mean / std per channel of each synthetic set against the real GZ2 cutouts."""
    lines = [
        "| set | mean R, G, B | std R, G, B | mean / real GZ2 | std / real GZ2 |",
        "|---|---|---|---|---|",
        f"| real GZ2 cutouts (2,828, DEVELOPERS.md) | {', '.join(f'{v:.1f}' for v in GZ2_MEAN)} | "
        f"{', '.join(f'{v:.1f}' for v in GZ2_STD)} | | |",
    ]
    for name, imgs in images.items():
        pixels = np.concatenate([im.reshape(-1, 3) for im in imgs]).astype(float)
        mean, std = pixels.mean(axis=0), pixels.std(axis=0)
        lines.append(
            f"| {name} | {', '.join(f'{v:.1f}' for v in mean)} | {', '.join(f'{v:.1f}' for v in std)} | "
            f"{', '.join(f'{v:.2f}' for v in mean / GZ2_MEAN)} | {', '.join(f'{v:.2f}' for v in std / GZ2_STD)} |"
        )
    return "\n".join(lines)


def figure(path: Path, sets: dict[str, tuple[list, list, dict]], examples: dict[str, list[np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.evaluation.visual import save_figure

    names = list(sets)
    colours = dict(zip(names, ["black", "tab:orange", "tab:blue", "tab:green", "tab:red"]))
    fig = plt.figure(figsize=(13, 9.5))
    grid = fig.add_gridspec(3, 6)
    for row, name in enumerate(names[:3]):
        for col, rgb in enumerate(examples[name][:2]):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(rgb)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{name} #{col + 1}", fontsize=8)
    panels = [
        ("n_sources", "log10(1 + sources per crop)", "crop"),
        ("log_flux", "log10 source flux", "source"),
        ("colour", "colour -2.5 log(R/B), point-like", "star"),
        ("sky_sigma", "sky sigma (JPEG)", "crop"),
        ("noise_corr1", "noise correlation, lag 1", "crop"),
        ("r50", "half-light radius (px) vs log peak", "scatter"),
    ]
    for k, (key, title, kind) in enumerate(panels):
        ax = fig.add_subplot(grid[k // 2, 2 + 2 * (k % 2) : 4 + 2 * (k % 2)])
        for name in names[1:] + names[:1]:  # the real frame drawn last, on top
            crops, sources = sets[name]
            if kind == "crop":
                values = np.asarray([c[key] for c in crops], float)
            elif kind == "star":
                values = sources["colour"][sources["point"] & ~sources["saturated"].astype(bool)]
            elif kind == "scatter":
                ax.scatter(
                    np.log10(np.maximum(sources["peak"], 1)),
                    sources["r50"],
                    s=4 if name == "real" else 1,
                    alpha=0.8 if name == "real" else 0.2,
                    color=colours[name],
                    label=name,
                )
                continue
            else:
                values = sources[key]
            values = values[np.isfinite(values)]
            if key == "n_sources":
                values, bins = np.log10(values + 1), np.linspace(0, 2.5, 26)
            else:
                bins = 30
            if len(values):  # share of the set per bin (not a density: a spike would hide the rest)
                ax.hist(
                    values,
                    bins=bins,
                    histtype="step",
                    weights=np.full(len(values), 1 / len(values)),
                    color=colours[name],
                    label=name,
                    lw=1.5 if name == "real" else 1.0,
                )
        if kind == "scatter":
            ax.set_ylim(0, 8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    fig.suptitle(
        "Real SDSS frame crops vs synthetic cutouts, measured the same way (sep, JPEG pixel values)", fontsize=10
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=70, palette=True, bbox_inches=None)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="real SDSS colour JPEG frame")
    parser.add_argument("--n", type=int, default=300, help="synthetic cutouts per set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="LABEL=DATA_ROOT",
        help="also measure the JPEGs of a generated data root (repeatable)",
    )
    parser.add_argument("--figure", type=Path, default=None, help="write the comparison figure here (PNG)")
    parser.add_argument("--json", type=Path, default=None, help="write the summaries here")
    args = parser.parse_args(argv)
    if not args.real.is_file():
        print(f"bench/realism.py: real frame not found: {args.real}", file=sys.stderr)
        return 2

    real_crops = realism.frame_crops(read_rgb(args.real))
    images = {}
    for spec in args.dir:
        label, _, root = spec.partition("=")
        if not root:
            print(f"bench/realism.py: --dir wants LABEL=DATA_ROOT, got {spec!r}", file=sys.stderr)
            return 2
        images[label] = data_root_images(Path(root), args.n)
    for scene in SCENES:
        images[scene] = generator_scene(args.n, args.seed, scene)
    sets = {"real": realism.measure_set(real_crops)}
    sets.update({name: realism.measure_set(imgs) for name, imgs in images.items()})
    summaries = {name: realism.summary(crops, sources) for name, (crops, sources) in sets.items()}
    ranges = {key: crop_range(sets[JUDGED][0], key) for key in realism.CROP_STATS if key != "star_fwhm"}
    ranges["saturated_per_crop"] = crop_range(sets[JUDGED][0], "n_saturated")

    real_intervals = {key: real_sampling(sets["real"][1], key) for key in SAMPLED_ROWS}
    text, counts = table(summaries, ranges, JUDGED, real_intervals)
    load = os.getloadavg()[0]
    print(
        f"real: {args.real.name}, {len(real_crops)} crops of 256 px; synthetic: {args.n} cutouts per set "
        f"(load average {load:.1f})"
    )
    print(text)
    print()
    print(pixel_table(images))
    if args.json:
        from src.atomic import write_json_atomic

        write_json_atomic(args.json, {"summaries": summaries, f"{JUDGED}_p10_p90": ranges}, indent=1)
    if args.figure:
        examples = {"real": [real_crops[5], real_crops[10]], **{k: v[:2] for k, v in images.items()}}
        figure(args.figure, sets, examples)
        print(f"figure: {args.figure}")
    others = {k: v for k, v in counts.items() if k.endswith("within 20 %")}
    mine = {k: v for k, v in counts.items() if k not in others}
    print("; ".join(f"{k}: {v} of {len(ROWS)}" for k, v in others.items()))
    print(
        f"{JUDGED} scene against the real frame: "
        + ", ".join(f"{v} {k}" for k, v in mine.items())
        + f" of {len(ROWS)} statistics"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
