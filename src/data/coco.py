"""COCO instance files of annotated fields: reading them and decoding their segmentations.

``python -m src.synthetic --field`` writes such a file; any COCO instance file whose categories are the project's
classes (same names and ids as ``src.classes``) can be used.  :func:`load_coco_fields` reads one for training
(``src.data.datasets.CocoFieldDataset``) and for scoring (``src.field.score.load_truth``);
:func:`segmentation_rle` and :func:`segmentation_crop` decode an annotation's polygons or RLE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from src.classes import class_id


class DatasetError(ValueError):
    """Unusable input; the message names the file and the entry."""


def load_coco_fields(path, image_ids=None) -> list[dict]:
    """The images of a COCO instance file, with their annotations.

    Parameters
    ----------
    path : str or os.PathLike
        The COCO JSON file (``images``, ``annotations``, ``categories``); the images' ``file_name`` are relative to
        its folder.
    image_ids : iterable of int, optional
        Keep only these images (``None``: all of them); annotations of other images are then ignored.

    Returns
    -------
    list of dict
        One ``{"id", "path", "shape" (height, width) px, "file_name", "annotations": [{"bbox" [x, y, w, h] px,
        "segmentation", "class_id", "flux_gri" (or None)}]}`` per image, in image-id order.

    Raises
    ------
    DatasetError
        A missing or malformed file, a category that is not one of the project's classes (same name and id as
        ``src.classes``), or an entry that cannot be used; the message names the file and the entry.
    """
    path = Path(path)
    try:
        coco = json.loads(path.read_text())
        images, annotations, categories = coco["images"], coco["annotations"], coco["categories"]
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not a COCO instance file (needs images, annotations, categories: {err})") from None
    known = {}
    for cat in categories:
        try:
            cid = class_id(cat.get("name"))
        except ValueError as err:
            raise DatasetError(f"{path}: category {cat.get('id')}: {err}") from None
        if cid == 0 or cat.get("id") != cid:
            raise DatasetError(
                f"{path}: category {cat.get('name')!r} has id {cat.get('id')}; the project's id is "
                f"{cid} (src/classes.py) and 'background' is not a category"
            )
        known[cid] = cat["name"]
    wanted = None if image_ids is None else {int(i) for i in image_ids}
    records = {}
    for k, im in enumerate(images):
        try:
            image_id, name, shape = int(im["id"]), str(im["file_name"]), (int(im["height"]), int(im["width"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{path}: image entry {k}: needs id, file_name, height, width ({err})") from None
        if wanted is None or image_id in wanted:
            records[image_id] = {
                "id": image_id,
                "path": path.parent / name,
                "file_name": name,
                "shape": shape,
                "annotations": [],
            }
    for k, ann in enumerate(annotations):
        where = f"{path}: annotation {k} (id {ann.get('id')})"
        if ann.get("category_id") not in known:
            raise DatasetError(f"{where}: category_id {ann.get('category_id')!r} is not a category of the file")
        if "segmentation" not in ann or not isinstance(ann.get("bbox"), list) or len(ann["bbox"]) != 4:
            raise DatasetError(f"{where}: needs a segmentation and a bbox [x, y, width, height]")
        record = records.get(ann.get("image_id"))
        if record is None:
            if wanted is None:
                raise DatasetError(f"{where}: image_id {ann.get('image_id')!r} is not an image of the file")
            continue
        if ann.get("iscrowd", 0):
            raise DatasetError(f"{where}: crowd regions (iscrowd 1) are not supported: annotate each galaxy")
        record["annotations"].append(
            {
                "bbox": [float(v) for v in ann["bbox"]],
                "segmentation": ann["segmentation"],
                "class_id": int(ann["category_id"]),
                "flux_gri": ann.get("flux_gri"),
            }
        )
    return [records[i] for i in sorted(records)]


def segmentation_rle(segmentation, height: int, width: int) -> dict:
    """An annotation's segmentation as one compressed COCO RLE of the whole image.

    Parameters
    ----------
    segmentation : list or dict
        COCO polygons (a list of ``[x0, y0, x1, y1, ...]`` in px; merged into one mask), an uncompressed RLE
        (``counts`` a list) or a compressed one (``counts`` a string).
    height, width : int
        The image's size, px.

    Returns
    -------
    dict
        ``{"size": [height, width], "counts": str}``, the compressed RLE (``counts`` as ASCII text, JSON-ready).
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
    if isinstance(rle["counts"], bytes):
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


def segmentation_crop(segmentation, shape: tuple[int, int], y0: int, x0: int, size: int) -> np.ndarray:
    """The mask of an annotation's segmentation inside a square window of its image.

    Parameters
    ----------
    segmentation : list or dict
        COCO polygons, or an RLE (see :func:`segmentation_rle`).
    shape : tuple of int
        The image's (height, width), px.
    y0, x0 : int
        Top-left corner of the window in the image, px.
    size : int
        Side of the window, px.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` uint8 mask, 1 inside the object.  Polygons are shifted into the window and rasterised
        there (clipped by the rasteriser); an RLE is decoded over the image, then cut.
    """
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        shifted = [[v - (x0 if i % 2 == 0 else y0) for i, v in enumerate(poly)] for poly in segmentation]
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(shifted, size, size)))
    height, width = shape
    return mask_utils.decode(segmentation_rle(segmentation, height, width))[y0 : y0 + size, x0 : x0 + size]
