"""Objects found by a model in an image, measured and written out: the catalog and segmentation maps of
``predict.py``.  Nothing here assumes one image per cutout: the functions take an object map in any pixel grid
(a cutout, a tile of a frame, a whole frame) and an ``origin`` that places it in the frame.

What an object is, for each task the model is conditioned on (``object_map_*``):

* ``semantic``: a connected region (8-connectivity) of pixels whose most probable class is a galaxy class.  Touching
  galaxies become one object; the pixels of one galaxy may mix classes (e.g. spiral and barred spiral), the
  object still has one class.
* ``instance``: a detection of Mask2Former / OneFormer instance inference (one per query, its best galaxy class)
  whose score reaches ``threshold``.  A pixel covered by several belongs to the highest-scoring one; a detection
  left with less than ``overlap`` of its own mask is dropped (Mask2Former's panoptic rule).
* ``panoptic``: a galaxy segment of the panoptic inference (``src.inference.segmentation.panoptic_segments``).

In all three, objects smaller than ``min_area`` px are dropped (and counted), and objects are numbered 1..n by
decreasing area.  Their class probabilities come from the per-pixel class probabilities
(``src.inference.segmentation.class_probabilities``, averaged over the test-time augmentations when there are some):

* ``p_<class>``: the mean over the object's pixels of each galaxy class's probability, renormalised over the 5
  galaxy classes (they sum to 1);  ``class``: the most probable of them;  ``entropy``: their entropy in nats
  (0: certain; ln 5 = 1.61: no idea).
* ``score``: ``instance``: the detection score (class probability x mean mask probability, as scored by COCO AP);
  ``semantic`` and ``panoptic``: the mean over the object's pixels of the probability of its class (background
  included in the normalisation, so a faint or uncertain object scores low).

Star/galaxy columns (``src.field.stars``; fields and cutouts alike): ``model_class`` (the model's class),
``stellarity`` (0 extended - 1 point-like, from the frame's own PSF; empty where the source's size cannot be
judged: saturated, stretched flat, or no stellar sequence in the frame), ``point_source`` (stellarity >= 0.5 or
diffraction spikes; such an object is catalogued as class A, "star or artifact", unless ``predict.py --stars
model``) and ``saturated`` (the source has saturated pixels).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from src.atomic import atomic_path
from src.classes import CLASS_NAMES, GALAXY_CLASSES, NUM_LABELS
from src.cli import check_choice

#: Objects smaller than this (px of the object map) are dropped.
MIN_AREA = 10
#: Instance task: detections scoring below this are not objects.  Calibrated (bench/calibrate_score_threshold.py,
#: docs/robustness.md): on the synthetic val split the demo model finds 97 % of the galaxies at 0.05-0.2, 40 % at 0.5.
SCORE_THRESHOLD = 0.2
#: Instance task: a detection keeps its object if at least this share of its mask is not taken by a better one.
OVERLAP = 0.8
#: Catalog column of each galaxy class's probability.
PROB_COLUMNS = tuple("p_" + name.replace(" ", "_").replace("-", "_") for name in GALAXY_CLASSES)
CATALOG_COLUMNS = (
    "source",
    "object",
    "class",
    "score",
    *PROB_COLUMNS,
    "entropy",
    "x",
    "y",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "area_px",
)
SKY_COLUMNS = ("ra", "dec", "area_arcsec2")
UNITS = {
    "x": "pix",
    "y": "pix",
    "x_min": "pix",
    "y_min": "pix",
    "x_max": "pix",
    "y_max": "pix",
    "area_px": "pix2",
    "ra": "deg",
    "dec": "deg",
    "area_arcsec2": "arcsec2",
}
CATALOG_FORMATS = ("csv", "ecsv", "fits", "parquet")


# ------------------------------------------------------------------------------------------ object maps
def _numbered_by_area(labels: np.ndarray, scores: np.ndarray | None, min_area: int):
    """Drop labels under ``min_area`` px, renumber 1..n by decreasing area (ties: lower old label first)."""
    areas = np.bincount(labels.ravel(), minlength=1)
    areas[0] = 0
    keep = np.flatnonzero(areas >= max(min_area, 1))
    small = int(np.count_nonzero((areas > 0) & (areas < min_area)))
    order = keep[np.argsort(-areas[keep], kind="stable")]
    lut = np.zeros(len(areas), dtype=np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lut[labels], (None if scores is None else np.asarray(scores, float)[order - 1]), small


def object_map_semantic(probs: np.ndarray, valid: np.ndarray | None = None, min_area: int = MIN_AREA):
    """``(object map int32, None, n_small)`` from per-pixel class probabilities (K, H, W): connected regions of
    pixels whose most probable class is not the background."""
    from skimage.measure import label

    foreground = probs[1:].max(axis=0) > probs[0]  # = argmax is a galaxy class (ties go to the background)
    if valid is not None:
        foreground &= valid
    objects, _, small = _numbered_by_area(label(foreground, connectivity=2).astype(np.int32), None, min_area)
    return objects, None, small


def object_map_instance(
    detections: list[dict],
    shape: tuple[int, int],
    valid: np.ndarray | None = None,
    threshold: float = SCORE_THRESHOLD,
    overlap: float = OVERLAP,
    min_area: int = MIN_AREA,
):
    """``(object map, scores, n_dropped)`` from ``src.inference.segmentation.instance_predictions`` detections (best
    class per
    query; ``mask`` at ``shape``): score >= ``threshold``, one owner per pixel (higher score first), a detection
    keeping less than ``overlap`` of its mask or fewer than ``min_area`` px is dropped."""
    best: dict[int, dict] = {}
    for det in detections:
        if det["query"] not in best or det["score"] > best[det["query"]]["score"]:
            best[det["query"]] = det
    ranked = sorted((d for d in best.values() if d["score"] >= threshold), key=lambda d: -d["score"])
    objects = np.zeros(shape, dtype=np.int32)
    scores, dropped = [], 0
    for det in ranked:
        mask = det["mask"] if valid is None else det["mask"] & valid
        visible = mask & (objects == 0)
        n_visible = int(visible.sum())
        if n_visible < max(min_area, 1) or n_visible < overlap * int(mask.sum()):
            dropped += 1
            continue
        scores.append(det["score"])
        objects[visible] = len(scores)
    objects, scores, _ = _numbered_by_area(objects, np.asarray(scores), 1)
    return objects, scores, dropped


def object_map_panoptic(
    segment_map: np.ndarray, segment_classes: dict[int, int], valid: np.ndarray | None = None, min_area: int = MIN_AREA
):
    """``(object map, None, n_small)`` from a panoptic segment-id map and ``{segment id: class id}``: the segments
    of galaxy classes (class 0, the background, is not an object)."""
    things = [s for s, c in segment_classes.items() if c != 0]
    lut = np.zeros(int(max([segment_map.max(), *things])) + 1, dtype=np.int32)
    lut[things] = np.arange(1, len(things) + 1, dtype=np.int32)
    objects = lut[np.clip(segment_map, 0, None)]
    if valid is not None:
        objects[~valid] = 0
    objects, _, small = _numbered_by_area(objects, None, min_area)
    return objects, None, small


# ------------------------------------------------------------------------------------------ measurement
def measure_objects(
    objects: np.ndarray, probs: np.ndarray, scores: np.ndarray | None = None, wcs=None, origin: tuple[int, int] = (0, 0)
) -> list[dict]:
    """One catalog row per object of ``objects`` (int map, 0 = none, 1..n), without ``source``.

    ``probs``: (K, H, W) per-pixel class probabilities on the same grid.  ``scores``: per object (instance
    task) or None (mean probability of the object's class).  ``origin`` (x0, y0): where pixel (0, 0) of the map
    lies in the frame; ``x``, ``y`` (centroid), ``x_min`` ... ``y_max`` (inclusive bounds) are 0-based frame pixel
    coordinates (pixel centres at integers, FITS pixel = value + 1).  With a celestial ``wcs`` of the frame:
    ``ra``, ``dec`` of the centroid (degrees, the WCS's frame, usually ICRS) and ``area_arcsec2`` (area_px x
    the pixel area at the reference point).
    """
    height, width = objects.shape
    pixels = np.flatnonzero(objects)
    n = int(objects.max(initial=0))
    if n == 0:
        return []
    label = objects.ravel()[pixels]
    ys, xs = np.divmod(pixels, width)
    area = np.bincount(label, minlength=n + 1)[1:].astype(float)
    x = np.bincount(label, weights=xs, minlength=n + 1)[1:] / area + origin[0]
    y = np.bincount(label, weights=ys, minlength=n + 1)[1:] / area + origin[1]
    inside = probs[:, ys, xs]  # (K, pixels of objects)
    mean = np.stack(
        [np.bincount(label, weights=inside[c], minlength=n + 1)[1:] / area for c in range(NUM_LABELS)], axis=1
    )  # (n, K)
    galaxy = mean[:, 1:]
    p = galaxy / np.clip(galaxy.sum(1, keepdims=True), 1e-12, None)
    best = np.argmax(p, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
    score = galaxy[np.arange(n), best] if scores is None else np.asarray(scores, float)
    order = np.argsort(label, kind="stable")
    starts = np.searchsorted(label[order], np.arange(1, n + 1))
    bounds = [
        np.minimum.reduceat(xs[order], starts),
        np.minimum.reduceat(ys[order], starts),
        np.maximum.reduceat(xs[order], starts),
        np.maximum.reduceat(ys[order], starts),
    ]
    rows = []
    for k in range(n):
        row = {
            "object": k + 1,
            "class": GALAXY_CLASSES[best[k]],
            "score": round(float(score[k]), 6),
            **{col: round(float(v), 6) for col, v in zip(PROB_COLUMNS, p[k])},
            "entropy": round(float(entropy[k]), 6),
            "x": round(float(x[k]), 3),
            "y": round(float(y[k]), 3),
            "x_min": int(bounds[0][k] + origin[0]),
            "y_min": int(bounds[1][k] + origin[1]),
            "x_max": int(bounds[2][k] + origin[0]),
            "y_max": int(bounds[3][k] + origin[1]),
            "area_px": int(area[k]),
        }
        rows.append(row)
    if wcs is not None:
        from astropy.wcs.utils import proj_plane_pixel_area

        ra, dec = wcs.pixel_to_world_values(x, y)
        pixel_area = float(proj_plane_pixel_area(wcs)) * 3600.0**2
        for row, r, d in zip(rows, np.atleast_1d(ra), np.atleast_1d(dec)):
            row.update(
                ra=round(float(r) % 360.0, 8),
                dec=round(float(d), 8),
                area_arcsec2=round(row["area_px"] * pixel_area, 4),
            )
    return rows


def class_map(objects: np.ndarray, rows: list[dict]) -> np.ndarray:
    """The class id (``src.classes``) of each pixel's object; 0 where there is none."""
    lut = np.zeros(len(rows) + 1, dtype=np.uint8)
    for row in rows:
        lut[row["object"]] = CLASS_NAMES.index(row["class"])
    return lut[objects]


# ------------------------------------------------------------------------------------------ writers
def catalog_columns(rows: list[dict]) -> list[str]:
    """The catalog's columns: the sky columns only when some row has them; ``edge`` (survey frames: the object
    touches the frame border) and the star/galaxy columns (``src.field.stars.STAR_COLUMNS``) when rows have them."""
    from src.field.stars import STAR_COLUMNS

    return (
        list(CATALOG_COLUMNS)
        + (list(SKY_COLUMNS) if any("ra" in r for r in rows) else [])
        + (["edge"] if any("edge" in r for r in rows) else [])
        + (list(STAR_COLUMNS) if any("stellarity" in r for r in rows) else [])
    )


def write_catalog(rows: list[dict], path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write catalog rows (``CATALOG_COLUMNS`` [+ ``SKY_COLUMNS``]) atomically as CSV, ECSV or FITS (astropy
    Table, with units) or Parquet (pyarrow).  ``fmt``: one of ``CATALOG_FORMATS``, default from the suffix.
    Rows without sky coordinates get NaN ra / dec / area_arcsec2 when other rows have them."""
    import pandas as pd

    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    check_choice("catalog format", fmt, CATALOG_FORMATS)
    columns = catalog_columns(rows)
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("object", "x_min", "y_min", "x_max", "y_max", "area_px"):
        frame[col] = frame[col].astype("int64")
    frame["source"] = frame["source"].astype(str)
    frame["class"] = frame["class"].astype(str)
    if "stellarity" in frame:
        frame["model_class"] = frame["model_class"].astype(str)
        frame["stellarity"] = frame["stellarity"].astype(float)  # NaN: not judged (see src.field.stars)
        for col in ("point_source", "saturated"):
            frame[col] = frame[col].fillna(False).astype(bool)
    with atomic_path(path, keep_suffix=True) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False, lineterminator="\n")
        else:  # parquet too through astropy: its units are kept in the file's metadata, as for ECSV and FITS
            from astropy.table import Table

            table = Table.from_pandas(frame)
            for col, unit in UNITS.items():
                if col in table.colnames:
                    table[col].unit = unit
            table.meta["COMMENT"] = ["x, y: 0-based pixel coordinates of the input (FITS pixel = x + 1)"]
            if fmt == "fits":
                _utf8_strings(table)
            table.write(tmp, format={"ecsv": "ascii.ecsv", "fits": "fits", "parquet": "parquet"}[fmt], overwrite=True)
    return path


def _utf8_strings(table) -> None:
    """FITS character columns hold bytes: a ``source`` path in any script is stored as its UTF-8 bytes (astropy
    would stop at the first non-ASCII character); astropy's ``Table.read`` decodes them back."""
    for col in ("source",):
        values = [str(v) for v in table[col]]
        if not all(v.isascii() for v in values):
            table[col] = np.array([v.encode("utf-8", "surrogateescape") for v in values])  # file names: any bytes
            table.meta["COMMENT"].append(f"{col}: UTF-8 bytes")


def write_segmentation(
    path: str | os.PathLike, objects: np.ndarray, classes: np.ndarray, wcs=None, source: str | None = None
) -> list[Path]:
    """The object map (int, 0 = none) and class map (``src.classes`` ids) of an image, written atomically.

    ``path`` ending in ``.fits``: one file, primary HDU ``OBJECTS`` (int32) and extension ``CLASSES`` (uint8), each
    with the celestial ``wcs`` of the input (its header keywords, SIP included) when given.  Otherwise two PNGs
    beside each other, ``<stem>_objects.png`` (uint16) and ``<stem>_classes.png`` (uint8).  Returns the paths.
    """
    from src.data.images import write_png

    path = Path(path)
    if path.suffix.lower() == ".fits":
        from astropy.io import fits

        header = wcs.to_header(relax=True) if wcs is not None else fits.Header()
        if source is not None:
            from src.data.images import fits_text

            header["SOURCE"], encoded = fits_text(str(source))  # long values continue on CONTINUE cards
            if encoded:
                header["SRCENC"] = ("percent", "SOURCE is percent-encoded UTF-8 (urllib.parse.unquote)")
        objects_hdu = fits.PrimaryHDU(objects.astype(np.int32), header=header.copy())
        objects_hdu.header["EXTNAME"] = ("OBJECTS", "object number, 0 = none (catalog column object)")
        classes_hdu = fits.ImageHDU(classes.astype(np.uint8), header=header.copy(), name="CLASSES")
        for cid, name in enumerate(CLASS_NAMES):
            classes_hdu.header[f"CLASS{cid}"] = name
        with atomic_path(path, keep_suffix=True) as tmp:
            fits.HDUList([objects_hdu, classes_hdu]).writeto(tmp, overwrite=True)
        return [path]
    if objects.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: more than 65535 objects do not fit a 16-bit PNG; write FITS")
    stem = path.with_suffix("")
    out = [Path(f"{stem}_objects.png"), Path(f"{stem}_classes.png")]
    write_png(out[0], objects.astype(np.uint16))
    write_png(out[1], classes.astype(np.uint8))
    return out


def find_objects(
    probs, task_result, task: str, valid=None, min_area: int = MIN_AREA, score_threshold: float = SCORE_THRESHOLD
):
    """``(object map, scores or None, dropped)`` of one image for ``task`` (see ``src.inference.objects``)."""
    if task == "semantic":
        return object_map_semantic(probs, valid, min_area)
    if task == "instance":
        return object_map_instance(task_result, probs.shape[1:], valid, score_threshold, OVERLAP, min_area)
    return object_map_panoptic(*task_result, valid=valid, min_area=min_area)
