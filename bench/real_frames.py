"""How ``predict.py --field`` behaves on the two real frames, which have no labels: the SDSS frame
``mask_galaxy_bench.jpg`` (low galactic latitude, hundreds of stars, a few galaxies) and the HST deep field
``astrocv.jpg`` (nearly all galaxies).

    .venv/bin/python bench/real_frames.py --model safetensors/galaxy_demo [--tree DIR] [--out DIR]
        [--fields ../shared/real/fields] [--json OUT.json] [-- extra predict.py options]

Printed last: one line per frame, then one for the cutouts.

``--tree``: the checkout whose ``predict.py`` runs (default: this one), so that an older tree can be measured
beside this one with the same model.  The sources are picked once, with sep (this tree's ``src.field.detect``,
3 sigma on the channel mean) and by eye on crops of the brightest sources:

* SDSS bright stars: the 20 brightest sep sources that are stars by eye (``SDSS_STARS``: white or violet saturated
  cores, most with spikes; the brightest 23 sources less the two galaxies, the red blob at (201, 484) whose nature
  is unclear, and the second segment of the star at (753, 761));
* SDSS galaxies: the six visibly extended galaxies (``SDSS_GALAXIES``);
* HST bright galaxies: the 40 brightest sep sources less the three stars with diffraction spikes (``HST_STARS``);
* HST large sources: every sep source of 500 px or more less ``HST_STARS``.

Cutouts: 256 px crops of the SDSS frame centred on ``SDSS_STARS`` and ``SDSS_GALAXIES`` (shifted to stay inside
the frame) go through ``predict.py`` as cutouts (no ``--field``); the central object is the one on the source's
position.

A listed source is "catalogued as X" when the catalogued object on its sep centroid (the segmentation map's
pixel there) has class X; ``missed`` when no object covers it.  Coverage: the IoU of that object's mask with the
source's sep segment (the 3 sigma isophote, deblended), median over the bright galaxies (1 by construction when the
outlines are sep's, ``predict.py --outline sep``, the default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.data.images import read_rgb  # noqa: E402
from src.field.detect import detect, detection_image  # noqa: E402

DEFAULT_FIELDS = REPO.parent / "shared" / "real" / "fields"
SDSS = "mask_galaxy_bench.jpg"
HST = "astrocv.jpg"
#: (x, y) px, picked by eye among the brightest sep sources of the SDSS frame (see the module docstring).
SDSS_STARS = (
    (753, 761),
    (9, 848),
    (970, 24),
    (918, 66),
    (598, 624),
    (636, 21),
    (739, 68),
    (19, 970),
    (482, 524),
    (509, 293),
    (486, 173),
    (521, 605),
    (905, 770),
    (953, 439),
    (394, 573),
    (712, 162),
    (282, 785),
    (782, 243),
    (503, 61),
    (467, 677),
)
SDSS_GALAXIES = ((110, 187), (498, 501), (783, 301), (864, 797), (358, 401), (301, 498))
HST_STARS = ((1769, 1375), (323, 515), (579, 394))
HST_BRIGHT = 40
LARGE_PX = 500
CROP = 256


def sep_sources(path: Path):
    """sep's table and segmentation map of a frame (3 sigma on the channel mean)."""
    rgb = read_rgb(path)
    found = detect(lambda r, c: (detection_image(rgb[r, c]), None), rgb.shape[:2], 3.0)
    return found.table, found.segmentation


def nearest(table, xy) -> int:
    return int(np.argmin(np.hypot(table["x"] - xy[0], table["y"] - xy[1])))


def run_predict(tree: Path, model: Path, frame: Path, out: Path, extra: list[str]) -> None:
    command = [
        sys.executable,
        "predict.py",
        "--field",
        str(frame),
        "--model",
        str(model),
        "--out",
        str(out),
        "-q",
        *extra,
    ]
    subprocess.run(command, cwd=tree, check=True, env={**os.environ, "PYTHONPATH": str(tree)})


def write_crops(frame: Path, picks, folder: Path) -> list[tuple[str, tuple[float, float]]]:
    """256 px crops of ``frame`` centred on ``picks`` (x, y), kept inside the frame: ``[(name, (x, y) in the
    crop)]``."""
    from PIL import Image

    rgb = read_rgb(frame)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for x, y in picks:
        x0 = int(min(max(x - CROP // 2, 0), rgb.shape[1] - CROP))
        y0 = int(min(max(y - CROP // 2, 0), rgb.shape[0] - CROP))
        name = f"crop_{x}_{y}"
        Image.fromarray(rgb[y0 : y0 + CROP, x0 : x0 + CROP]).save(folder / f"{name}.png")
        out.append((name, (x - x0, y - y0)))
    return out


def central_classes(out: Path, crops) -> list[str]:
    """The class of each crop's object on its central source ("missed" when none covers it; within 3 px)."""
    rows = {}
    import pandas as pd

    for r in pd.read_csv(out / "catalog.csv").to_dict("records"):
        rows[(Path(r["source"]).stem, int(r["object"]))] = r["class"]
    classes = []
    for name, (x, y) in crops:
        objects = read_rgb_any(out / "segmentation" / f"{name}_objects.png")
        window = objects[max(int(y) - 3, 0) : int(y) + 4, max(int(x) - 3, 0) : int(x) + 4]
        numbers = [n for n in np.unique(window) if n]
        classes.append(rows[(name, int(numbers[0]))] if numbers else "missed")
    return classes


def load_run(out: Path, name: str):
    """``(object map, {object: row})`` of a finished run."""
    import pandas as pd

    objects = read_rgb_any(out / "segmentation" / f"{name}_objects.png")
    rows = pd.read_csv(out / "catalog.csv").to_dict("records")
    return objects, {int(r["object"]): r for r in rows}


def read_rgb_any(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def judge(table, segmap, objects, rows, picks) -> dict:
    """Per listed source: the class of the object on its centroid (or "missed") and the IoU with its segment."""
    classes, ious = [], []
    for xy in picks:
        k = nearest(table, xy)
        number = int(objects[int(round(table["y"][k])), int(round(table["x"][k]))])
        if number == 0:
            classes.append("missed")
            ious.append(0.0)
            continue
        classes.append(rows[number]["class"])
        mask, segment = objects == number, segmap == k + 1
        ious.append(float((mask & segment).sum() / max((mask | segment).sum(), 1)))
    return {"classes": classes, "iou": ious}


def galaxy_count(classes) -> int:
    return sum(c not in ("missed", "artifact") for c in classes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--tree", type=Path, default=REPO, help="checkout whose predict.py runs (default: this one)")
    p.add_argument("--out", type=Path, default=Path("bench_runs/real_frames"), help="predict.py output folders")
    p.add_argument("--fields", type=Path, default=DEFAULT_FIELDS)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("extra", nargs="*", help="after --: more predict.py options")
    args = p.parse_args(argv)
    if not (args.fields / SDSS).is_file():
        print(f"{args.fields / SDSS}: not found (the real frames live in ../shared/real/fields)", file=sys.stderr)
        return 2
    results = {}
    for frame in (SDSS, HST):
        out = args.out.resolve() / Path(frame).stem
        if not (out / "catalog.csv").is_file():
            run_predict(args.tree.resolve(), args.model.resolve(), (args.fields / frame).resolve(), out, args.extra)
        table, segmap = sep_sources(args.fields / frame)
        objects, rows = load_run(out, Path(frame).stem)
        report = json.loads((out / "predict_report.json").read_text())
        stars = report["inputs"][0].get("stars", {})
        catalogued = [r["class"] for r in rows.values()]
        result = {
            "objects": len(rows),
            "galaxy_class": galaxy_count(catalogued),
            "by_class": {c: catalogued.count(c) for c in sorted(set(catalogued))},
            "psf_fwhm_px": stars.get("psf_fwhm_px"),
        }
        if frame == SDSS:
            result["stars"] = judge(table, segmap, objects, rows, SDSS_STARS)
            result["galaxies"] = judge(table, segmap, objects, rows, SDSS_GALAXIES)
        else:
            star_rows = {nearest(table, xy) for xy in HST_STARS}
            bright = [k for k in np.argsort(-table["flux"])[:HST_BRIGHT] if k not in star_rows]
            large = [k for k in np.flatnonzero(table["npix"] >= LARGE_PX) if k not in star_rows]
            result["galaxies"] = judge(table, segmap, objects, rows, [(table["x"][k], table["y"][k]) for k in bright])
            result["large"] = judge(table, segmap, objects, rows, [(table["x"][k], table["y"][k]) for k in large])
        results[frame] = result
    crops_dir = args.out.resolve() / "sdss_crops"
    stars = write_crops(args.fields / SDSS, SDSS_STARS, crops_dir / "stars")
    galaxies = write_crops(args.fields / SDSS, SDSS_GALAXIES, crops_dir / "galaxies")
    for kind, crops in (("stars", stars), ("galaxies", galaxies)):
        out = crops_dir / f"run_{kind}"
        if not (out / "catalog.csv").is_file():
            command = [
                sys.executable,
                "predict.py",
                str(crops_dir / kind),
                "--model",
                str(args.model.resolve()),
                "--out",
                str(out),
                "-q",
            ]
            subprocess.run(
                command, cwd=args.tree.resolve(), check=True, env={**os.environ, "PYTHONPATH": str(args.tree.resolve())}
            )
        results[f"sdss_crops_{kind}"] = central_classes(out, crops)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    s, h = results[SDSS], results[HST]
    print(
        f"SDSS {SDSS}: {s['objects']} objects, {s['galaxy_class']} of a galaxy class; bright stars called a galaxy "
        f"{galaxy_count(s['stars']['classes'])}/{len(SDSS_STARS)}; galaxies kept as a galaxy "
        f"{galaxy_count(s['galaxies']['classes'])}/{len(SDSS_GALAXIES)}, median IoU with sep "
        f"{np.median(s['galaxies']['iou']):.2f}; PSF FWHM {s['psf_fwhm_px']} px"
    )
    print(
        f"HST {HST}: {h['objects']} objects, {h['galaxy_class']} of a galaxy class; bright galaxies catalogued as a "
        f"galaxy {galaxy_count(h['galaxies']['classes'])}/{len(h['galaxies']['classes'])} (missed "
        f"{h['galaxies']['classes'].count('missed')}), median IoU with sep {np.median(h['galaxies']['iou']):.2f}; "
        f"large sources as a galaxy {galaxy_count(h['large']['classes'])}/{len(h['large']['classes'])}; "
        f"PSF FWHM {h['psf_fwhm_px']} px"
    )
    cs, cg = results["sdss_crops_stars"], results["sdss_crops_galaxies"]
    print(
        f"SDSS 256 px cutouts: central bright star called a galaxy {galaxy_count(cs)}/{len(cs)} (A "
        f"{cs.count('artifact')}, missed {cs.count('missed')}); central galaxy called a galaxy "
        f"{galaxy_count(cg)}/{len(cg)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
