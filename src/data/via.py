"""VGG Image Annotator (VIA 2) project files: reading, validating, polygon -> mask.

The Galaxy Zoo 2 annotations (hfarias/mask_galaxy) are VIA 2 JSON objects keyed by the SDSS DR7
objid::

    {"587741534399692859": {"filename": "Dr7_587741534399692859.jpg", "size": ..., "file_attributes": {},
                            "regions": [{"shape_attributes": {"name": "polygon", "all_points_x": [...],
                                                              "all_points_y": [...]},
                                         "region_attributes": {"object_name": "elliptical"}}]}}

``regions`` may also be a dict (older VIA exports).  Coordinates are pixels, x = column, y = row.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon

#: The on-disk layout under a data root (real data, synthetic data and the download alike): the VIA file of each
#: annotated split of hfarias/mask_galaxy (``VIA_FILE.format(split=...)``) and the folder of the cutouts.
VIA_FILE = "original/{split}/via_region_data.json"
VIA_SPLITS = ("train", "val")
VIA_FILES = tuple(VIA_FILE.format(split=split) for split in VIA_SPLITS)
IMAGE_DIR = "original/zoo2Main"
#: Fewest vertices of a usable polygon.
MIN_VERTICES = 3

_OBJID_IN_NAME = re.compile(r"(\d{6,})")


class ViaError(ValueError):
    """A VIA file or entry that cannot be used; the message names the file and the entry."""


class OutsideDataRoot(ViaError):
    """An entry's ``filename`` that leads out of ``DATA_ROOT/original/zoo2Main`` (absolute, ``..``, a link)."""


class _Duplicated(dict):
    """A JSON object in which some keys appeared more than once (the first value of each is kept)."""

    duplicates: list


def load_via(path: str | os.PathLike, duplicates: list | None = None) -> dict[str, dict]:
    """Read a VIA 2 JSON file; malformed JSON or a wrong structure (:func:`check_entry`) raises ``ViaError``.

    A key that appears twice in one JSON object (which ``json`` would resolve silently, the last one winning):
    for an entry key, the first entry is kept and the key appended to ``duplicates`` when a list is given, else
    it is a ``ViaError``; inside an entry, always a ``ViaError`` naming the entry.
    """
    path = Path(path)
    flagged: list[_Duplicated] = []

    def pairs(items):
        obj: dict = {}
        repeated = []
        for key, value in items:
            if key in obj:
                repeated.append(key)
            else:
                obj[key] = value
        if not repeated:
            return obj
        obj = _Duplicated(obj)
        obj.duplicates = repeated
        flagged.append(obj)
        return obj

    try:
        with open(path, "rb") as fh:
            data = json.load(fh, object_pairs_hook=pairs)
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ViaError(f"{path}: malformed JSON ({err})") from None
    if isinstance(data, dict) and "_via_img_metadata" in data:  # a full VIA project file
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise ViaError(f"{path}: expected a JSON object of VIA entries, got {type(data).__name__}")
    if isinstance(data, _Duplicated):
        if duplicates is None:
            raise ViaError(f"{path}: entry {data.duplicates[0]!r} appears more than once")
        duplicates.extend(data.duplicates)
        data = dict(data)
    if any(obj is not data for obj in flagged):
        for key, entry in data.items():
            repeated = _repeated_key(entry)
            if repeated is not None:
                raise ViaError(f"{path}: entry {key!r}: key {repeated!r} appears more than once in one object")
    for key, entry in data.items():
        check_entry(key, entry, path)
    return data


def _repeated_key(value):
    if isinstance(value, _Duplicated):
        return value.duplicates[0]
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        repeated = _repeated_key(child)
        if repeated is not None:
            return repeated
    return None


def image_path(data_root: str | os.PathLike, filename: str, where: str = "") -> Path:
    """``DATA_ROOT/original/zoo2Main/filename``, after checking that it resolves (symbolic links followed) to a
    file name inside that folder: annotation files come from third parties, and an absolute path, a ``..`` or a
    link out of the folder would make the tools read (and the dataset export copy) any file.
    :class:`OutsideDataRoot` otherwise; the file is not opened here."""
    folder = Path(data_root) / IMAGE_DIR
    path = folder / filename
    try:
        inside = path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError, RuntimeError):  # not below it; a NUL byte; a link loop (Python < 3.13)
        inside = None
    if inside is None or inside == Path("."):
        raise OutsideDataRoot(
            f"{where or data_root}: image {filename!r} is not inside {folder} (absolute path, "
            f"'..' or a link leading out): not read"
        )
    return path


def filename_objid(entry: dict) -> int | None:
    """The objid in an entry's file name (``Dr7_<objid>.jpg``), or None when it holds none."""
    match = _OBJID_IN_NAME.search(os.path.basename(str(entry.get("filename", ""))))
    return None if match is None else int(match.group(1))


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def check_entry(key: str, entry, source) -> None:
    """The structure of one VIA entry, with a ``ViaError`` naming the file, the key and what is wrong: an object
    with a string ``filename`` and ``regions`` (a list, or a dict in older exports) of region objects whose
    ``shape_attributes`` / ``region_attributes`` are objects.  Coordinates are checked by :func:`region_polygon`."""
    where = f"{source}: entry {key!r}"
    if not isinstance(entry, dict) or "regions" not in entry or "filename" not in entry:
        raise ViaError(f"{where} is not a VIA entry (needs 'filename' and 'regions')")
    if not isinstance(entry["filename"], str):
        raise ViaError(f"{where}: 'filename' is {_kind(entry['filename'])}, expected a string")
    regions = entry["regions"]
    if isinstance(regions, dict):
        regions = list(regions.values())
    elif not isinstance(regions, list):
        raise ViaError(f"{where}: 'regions' is {_kind(regions)}, expected a list of regions")
    for r, region in enumerate(regions):
        if not isinstance(region, dict):
            raise ViaError(f"{where}: region {r} is {_kind(region)}, expected an object")
        for name in ("shape_attributes", "region_attributes"):
            if region.get(name) is not None and not isinstance(region[name], dict):
                raise ViaError(f"{where}: region {r}: '{name}' is {_kind(region[name])}, expected an object")


def entry_regions(entry: dict) -> list[dict]:
    """The regions of an entry as a list (VIA stores a list, older exports a dict)."""
    regions = entry.get("regions") or []
    return list(regions.values()) if isinstance(regions, dict) else list(regions)


def entry_objid(key: str, entry: dict, source: str = "") -> int:
    """The DR7 objid of an entry: the key, or else the digits of ``Dr7_<objid>.jpg``."""
    if str(key).isdigit():
        return int(key)
    match = _OBJID_IN_NAME.search(str(entry.get("filename", "")))
    if match is None:
        raise ViaError(f"{source}: entry {key!r}: no objid in the key or in filename {entry.get('filename')!r}")
    return int(match.group(1))


def region_polygon(region: dict, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``(xs, ys)`` float arrays of a polygon region; other shapes or ragged lists raise ``ViaError``."""
    shape = region.get("shape_attributes") or {}
    if shape.get("name") not in ("polygon", "polyline"):
        raise ViaError(f"{where}: region shape {shape.get('name')!r} is not a polygon")
    try:
        xs, ys = np.asarray(shape["all_points_x"]), np.asarray(shape["all_points_y"])
    except (KeyError, TypeError, ValueError) as err:
        raise ViaError(f"{where}: bad polygon coordinates ({err})") from None
    for name, values in (("all_points_x", xs), ("all_points_y", ys)):
        if values.ndim != 1 or (values.size and values.dtype.kind not in "iuf"):  # numbers, not "12" or true
            raise ViaError(f"{where}: {name} must be a list of numbers, got {shape[name]!r:.60}")
    xs, ys = xs.astype(float), ys.astype(float)
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise ViaError(f"{where}: polygon vertex with a non-finite coordinate (NaN or infinity)")
    if xs.shape != ys.shape:
        raise ViaError(f"{where}: all_points_x and all_points_y differ in length ({xs.size} vs {ys.size})")
    return xs, ys


def polygon_problems(polygons, shapes) -> np.ndarray:
    """Why each polygon cannot be used on its image, vectorised over all polygons at once.

    Parameters
    ----------
    polygons : sequence of (xs, ys)
        Vertex coordinates of each polygon, px (x = column, y = row; finite, as :func:`region_polygon` gives them).
    shapes : array_like of int, shape (N, 2)
        The (height, width) of each polygon's image, px.

    Returns
    -------
    numpy.ndarray
        Object array of N reasons: ``"too_few_vertices"`` (fewer than ``MIN_VERTICES``), ``"outside_image"`` (a
        vertex off the pixel grid, :func:`polygon_inside`), or ``None`` for a usable polygon.
    """
    reasons = np.full(len(polygons), None, dtype=object)
    if not len(polygons):
        return reasons
    lengths = np.fromiter((np.size(xs) for xs, _ in polygons), dtype=np.int64, count=len(polygons))
    reasons[lengths < MIN_VERTICES] = "too_few_vertices"
    xs = np.concatenate([np.asarray(p[0], dtype=float).ravel() for p in polygons])
    ys = np.concatenate([np.asarray(p[1], dtype=float).ravel() for p in polygons])
    shapes = np.asarray(shapes).reshape(-1, 2)
    owner = np.repeat(np.arange(len(polygons)), lengths)
    height, width = shapes[owner, 0], shapes[owner, 1]
    outside_vertex = (xs < 0) | (ys < 0) | (xs > width - 1) | (ys > height - 1)  # polygon_inside, vectorised
    nonempty = lengths > 0
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    outside = np.zeros(len(polygons), dtype=bool)
    outside[nonempty] = np.logical_or.reduceat(outside_vertex, starts[nonempty])
    reasons[(reasons == None) & outside] = "outside_image"  # noqa: E711 (object array)
    return reasons


def polygon_inside(xs, ys, shape: tuple[int, int]) -> bool:
    """Every vertex on the image: 0 <= x <= width - 1 and 0 <= y <= height - 1 (pixel coordinates)."""
    height, width = shape
    return bool(np.min(xs) >= 0 and np.min(ys) >= 0 and np.max(xs) <= width - 1 and np.max(ys) <= height - 1)


def polygon_mask(xs, ys, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (rows, cols) of the pixels inside the polygon (scikit-image rasterisation)."""
    rr, cc = draw_polygon(np.asarray(ys), np.asarray(xs), shape=shape)
    mask = np.zeros(shape, dtype=bool)
    mask[rr, cc] = True
    return mask


def polygon_area(xs, ys, shape: tuple[int, int]) -> int:
    """Rasterised area in pixels (what the mask covers, not the shoelace area)."""
    rr, _ = draw_polygon(np.asarray(ys), np.asarray(xs), shape=shape)
    return int(rr.size)
