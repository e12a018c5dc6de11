"""Tiny Galaxy Zoo 2-shaped data sets written by the tests themselves (no real data needed).

Each object is a bright ellipse whose colour and elongation depend on its class, so a model can in
principle learn the task; the polygons follow the ellipse outline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from src.classes import COLOURS, GALAXY_CLASSES

#: One representative gz2_class string per 5-class group.
CLASS_STRINGS = {
    "artifact": "A",
    "elliptical": "Er",
    "spiral": "Sc2m",
    "spiral barred": "SBb2t",
    "spiral edge-on": "Sen",
}
BASE_OF = {"A": "A", "Er": "Er", "Sc2m": "Sc", "SBb2t": "SBb", "Sen": "Sen"}
_COLOUR = {
    "artifact": (250, 250, 250),
    "elliptical": (220, 120, 80),
    "spiral": (90, 140, 230),
    "spiral barred": (120, 220, 140),
    "spiral edge-on": (200, 100, 220),
}


def _ellipse(cx, cy, a, b, theta, n=24):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = cx + a * np.cos(t) * np.cos(theta) - b * np.sin(t) * np.sin(theta)
    y = cy + a * np.cos(t) * np.sin(theta) + b * np.sin(t) * np.cos(theta)
    return np.round(x).astype(int).tolist(), np.round(y).astype(int).tolist()


def _draw(size, objects, rng):
    from src.data.via import polygon_mask

    img = rng.normal(6.0, 3.0, (size, size, 3))
    for name, xs, ys in objects:
        mask = polygon_mask(xs, ys, (size, size))
        img[mask] = np.asarray(_COLOUR[name], dtype=float) * rng.uniform(0.7, 1.0)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _objects(rng, size, count, classes):
    objects = []
    centres = [(size * 0.3, size * 0.3), (size * 0.7, size * 0.7), (size * 0.5, size * 0.5)]
    for k in range(count):
        name = classes[rng.integers(len(classes))]
        cx, cy = centres[k] if count > 1 else (size / 2, size / 2)
        a = size * rng.uniform(0.12, 0.18)
        b = a * (0.3 if name == "spiral edge-on" else rng.uniform(0.6, 1.0))
        xs, ys = _ellipse(cx, cy, a, b, rng.uniform(0, np.pi))
        objects.append((name, xs, ys))
    return objects


def _region(name, xs, ys):
    gz2 = CLASS_STRINGS[name]
    return {
        "shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
        "region_attributes": {"object_name": name, "gz2_class_15": BASE_OF[gz2], "gz2_class": gz2},
    }


def objid(i: int) -> int:
    """18-digit test objids, outside the real DR7 range (587.../588...)."""
    return 100_000_000_000_000_000 + i


def write_tiny_splits(
    root, n_train=8, n_val=4, n_test=4, size=64, seed=0, max_objects=2, classes=GALAXY_CLASSES
) -> Path:
    """Write converted splits directly: ``galaxy_{train,val,test}.json``, images, ``dataset_stats.json``.

    About a third of the images hold two objects (``max_objects=2``) to exercise multi-object code.
    """
    root = Path(root)
    image_dir = root / "original" / "zoo2Main"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    index = 0
    pixels = []
    for split, count in (("train", n_train), ("val", n_val), ("test", n_test)):
        via = {}
        for _ in range(count):
            oid = objid(index)
            index += 1
            n_obj = 2 if (max_objects > 1 and index % 3 == 0) else 1
            objects = _objects(rng, size, n_obj, list(classes))
            img = _draw(size, objects, rng)
            filename = f"Dr7_{oid}.jpg"
            img.save(image_dir / filename, quality=95)
            if split == "train":
                pixels.append(np.asarray(img, dtype=float).reshape(-1, 3))
            via[str(oid)] = {
                "filename": filename,
                "size": (image_dir / filename).stat().st_size,
                "file_attributes": {},
                "regions": [_region(name, xs, ys) for name, xs, ys in objects],
            }
        (root / f"galaxy_{split}.json").write_text(json.dumps(via))
    allpix = np.concatenate(pixels)
    stats = {"mean": allpix.mean(0).tolist(), "std": allpix.std(0).tolist(), "n_images": n_train, "split": "train"}
    (root / "dataset_stats.json").write_text(json.dumps(stats))
    return root


def write_tiny_raw(root, n=30, size=64, seed=0, val_fraction=0.2, extra_columns=3) -> Path:
    """Write the raw inputs of the conversion: ``gz2_hart16.csv``, ``original/{train,val}/via_region_data.json``
    and ``original/zoo2Main/Dr7_<objid>.jpg`` (one object per image, as in the real data)."""
    root = Path(root)
    image_dir = root / "original" / "zoo2Main"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, train, val = [], {}, {}
    for i in range(n):
        oid = objid(i)
        [(name, xs, ys)] = _objects(rng, size, 1, list(GALAXY_CLASSES))
        filename = f"Dr7_{oid}.jpg"
        _draw(size, [(name, xs, ys)], rng).save(image_dir / filename, quality=95)
        entry = {
            "filename": filename,
            "size": 1501648,
            "file_attributes": {},
            "regions": [
                {
                    "shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
                    "region_attributes": {},
                }
            ],
        }
        (val if i < n * val_fraction else train)[str(oid)] = entry
        rows.append((oid, rng.uniform(0, 360), rng.uniform(-10, 60), "original", CLASS_STRINGS[name]))
    header = ["dr7objid", "ra", "dec", "sample", "gz2_class"] + [f"t01_extra_{k}" for k in range(extra_columns)]
    lines = [",".join(header)]
    for oid, ra, dec, sample, cls in rows:
        lines.append(",".join([str(oid), f"{ra:.6f}", f"{dec:.6f}", sample, cls] + ["0.5"] * extra_columns))
    (root / "gz2_hart16.csv").write_text("\n".join(lines) + "\n")
    for split, data in (("train", train), ("val", val)):
        (root / "original" / split).mkdir(parents=True, exist_ok=True)
        (root / "original" / split / "via_region_data.json").write_text(json.dumps(data))
    return root


def write_tiny_field(
    root, size=128, seed=0, centres=None, classes=None, semi_axes=(9.0, 6.0), name="field_0000.png", noise=3.0
) -> Path:
    """A small field with several ellipses in their class colours (``src.classes.COLOURS``, what
    ``tests.oracle_model.ColourOracle`` recognises) on a noisy sky, and its COCO annotation file
    ``field_annotations.json`` (polygons, ``src.classes`` ids, ``flux_gri``), as ``python -m src.synthetic --field``
    writes them.  ``centres``: (x, y) of the objects; ``classes``: their
    names.  Returns the annotation file's path."""
    from pycocotools import mask as mask_utils

    from src.classes import COLOURS, class_id
    from src.evaluation.metrics import coco_categories

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = centres or [(size * 0.25, size * 0.3), (size * 0.7, size * 0.35), (size * 0.45, size * 0.75)]
    classes = classes or [GALAXY_CLASSES[k % len(GALAXY_CLASSES)] for k in range(len(centres))]
    img = rng.normal(6.0, noise, (size, size, 3))
    annotations = []
    for k, ((cx, cy), name_) in enumerate(zip(centres, classes), start=1):
        xs, ys = _ellipse(cx, cy, semi_axes[0], semi_axes[1], 0.3 * k, n=32)
        x0, y0 = min(xs), min(ys)
        polygon = [float(v) + 0.5 for xy in zip(xs, ys) for v in xy]  # COCO: pixel centres at k + 0.5
        mask = mask_utils.decode(mask_utils.frPyObjects([polygon], size, size))[..., 0].astype(bool)
        img[mask] = COLOURS[name_]
        annotations.append(
            {
                "id": k,
                "image_id": 1,
                "category_id": class_id(name_),
                "iscrowd": 0,
                "segmentation": [polygon],
                "area": float(mask_utils.area(mask_utils.frPyObjects([polygon], size, size))[0]),
                "bbox": [float(x0), float(y0), float(max(xs) - x0 + 1), float(max(ys) - y0 + 1)],
                "flux_gri": [float(mask.sum() * k)] * 3,
            }
        )
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / name)
    coco = {
        "images": [{"id": 1, "file_name": name, "width": size, "height": size}],
        "annotations": annotations,
        "categories": coco_categories(),
    }
    path = root / "field_annotations.json"
    path.write_text(json.dumps(coco))
    return path


#: ``python -m src.demo`` settings of a tiny demo (24 cutouts of 96 px, galaxy-tiny, a few seconds of training).
TINY_DEMO_ARGS = [
    "--n", "24", "--size", "96", "--workers", "1", "--model-card", "galaxy-tiny", "--crop-size", "48",
    "--batch-size", "4", "--epochs", "2", "--minutes", "0.1", "--n-samples", "2", "--eval-batch-size", "4",
    "--no-progress", "--cpu",
]  # fmt: skip


def catalog_row(**changes) -> dict:
    """One catalog row of ``predict.py`` (an object of a FITS input, with sky coordinates); ``changes`` replace
    columns."""
    from src.inference.objects import PROB_COLUMNS

    row = {"source": "a.fits", "object": 1, "class": "spiral", "score": 0.9, **dict.fromkeys(PROB_COLUMNS, 0.2),
           "entropy": 1.6, "x": 1.5, "y": 2.5, "x_min": 0, "y_min": 1, "x_max": 3, "y_max": 4, "area_px": 12,
           "ra": 150.0, "dec": 2.0, "area_arcsec2": 1.88}  # fmt: skip
    return {**row, **changes}


def scene(path: Path, shape, objects, grey=False, seed=0) -> list[dict]:
    """Filled ellipses ``(class, cx, cy, a, b)`` in their class colours on a dark noisy sky, written as PNG.
    Returns the expected catalog rows (by decreasing area) and their masks."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 25, (*shape, 3)).astype(np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    expected = []
    for name, cx, cy, a, b in objects:
        mask = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
        image[mask] = (230, 230, 230) if grey else COLOURS[name]
        ys, xs = np.nonzero(mask)
        expected.append(
            {
                "class": name,
                "area_px": int(mask.sum()),
                "x": xs.mean(),
                "y": ys.mean(),
                "x_min": xs.min(),
                "y_min": ys.min(),
                "x_max": xs.max(),
                "y_max": ys.max(),
                "mask": mask,
            }
        )
    Image.fromarray(image.mean(axis=2).astype(np.uint8) if grey else image).save(path)
    return sorted(expected, key=lambda e: -e["area_px"])


def sky_wcs(shape, ra=150.1, dec=2.2, scale=0.4, angle=30.0):
    """A TAN WCS for an image of ``shape`` (rows, cols): centre ``ra``, ``dec`` (deg), ``scale`` arcsec/px, rotated by
    ``angle`` deg, reference pixel off the centre (so that an axis mix-up shows)."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [shape[1] * 0.3, shape[0] * 0.6]  # not the centre: an axis mix-up shows
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    wcs.wcs.cd = np.array([[-c, s], [s, c]]) * scale / 3600.0
    return wcs


def box_mask(r0: int, r1: int, c0: int, c1: int, size: int) -> np.ndarray:
    """A ``size`` x ``size`` boolean mask, True on rows ``r0:r1`` and columns ``c0:c1``."""
    mask = np.zeros((size, size), bool)
    mask[r0:r1, c0:c1] = True
    return mask
