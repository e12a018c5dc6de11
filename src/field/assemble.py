"""Objects of a frame assembled from many model views (stamps or tiles): merging the views of one object, and one
owner per pixel.

A :class:`FieldObject` is a mask on a small box of the frame with the per-pixel class probabilities on that box,
a score and an ``edge`` flag, so that a frame of any size holds thousands of objects in little memory.

* :func:`merge_views` (``tiles`` strategy): the views of one object seen by overlapping tiles become one object.
  Two views are the same object when, on the part of the frame that both their tiles saw, their masks overlap with
  IoU >= ``iou``: an object cut by a tile border (a sliver in one tile, whole in the next) is thus reported once.
  The merged mask is the union of the views; the class probabilities are averaged over the views that saw each
  pixel; the score is the views' mean weighted by their mask areas.
* :func:`resolve` (both strategies): objects claim pixels by decreasing score, so each pixel has one owner; an
  object left with less than ``keep`` of its own mask (a duplicate of a better one, e.g. a second stamp on the
  same galaxy) or fewer than ``min_area`` px is dropped and counted.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

#: Views of one object overlap with at least this IoU where both were seen.
MERGE_IOU = 0.5
#: An object keeps its place if at least this share of its mask is not taken by better-scoring objects.
KEEP = 0.5
#: Cell of the spatial index (px).
_CELL = 256


@dataclass
class FieldObject:
    """One object: ``mask`` (h, w) bool whose pixel (0, 0) is frame pixel (``y0``, ``x0``); ``probs`` (K, h, w)
    per-pixel class probabilities (float16 once cropped: thousands of objects stay small) (``src.classes`` ids,
    background 0) on the same box; ``score`` in 0-1; ``edge``: its mask touches the frame border, so the object may be
    cut (set by :func:`resolve`).
    ``windows``: the frame regions ``(y0, y1, x0, x1)`` its views were seen in (tiles), for :func:`merge_views`."""

    y0: int
    x0: int
    mask: np.ndarray
    probs: np.ndarray
    score: float
    edge: bool = False
    windows: list[tuple[int, int, int, int]] = field(default_factory=list)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` in frame px (end exclusive)."""
        return self.y0, self.y0 + self.mask.shape[0], self.x0, self.x0 + self.mask.shape[1]

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def crop_to_mask(obj: FieldObject) -> FieldObject:
    """The object with its box shrunk to the bounding box of its mask and its probabilities stored as float16
    (an empty mask keeps its box)."""
    rows, cols = np.flatnonzero(obj.mask.any(1)), np.flatnonzero(obj.mask.any(0))
    if rows.size == 0:
        return obj
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return FieldObject(
        obj.y0 + int(r0),
        obj.x0 + int(c0),
        obj.mask[r0:r1, c0:c1].copy(),
        np.ascontiguousarray(obj.probs[:, r0:r1, c0:c1], dtype=np.float16),
        obj.score,
        obj.edge,
        list(obj.windows),
    )


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def _on(box: tuple[int, int, int, int], obj: FieldObject, array: np.ndarray) -> np.ndarray:
    """``array`` (the object's mask-shaped array) placed on ``box`` (zeros elsewhere)."""
    out = np.zeros((box[1] - box[0], box[3] - box[2]) + array.shape[2:], dtype=array.dtype)
    y0, y1, x0, x1 = obj.box
    out[y0 - box[0] : y1 - box[0], x0 - box[2] : x1 - box[2]] = array
    return out


def _seen(box: tuple[int, int, int, int], windows) -> np.ndarray:
    out = np.zeros((box[1] - box[0], box[3] - box[2]), dtype=bool)
    for w in windows:
        o = _overlap(box, w)
        if o is not None:
            out[o[0] - box[0] : o[1] - box[0], o[2] - box[2] : o[3] - box[2]] = True
    return out


def views_iou(a: FieldObject, b: FieldObject) -> float:
    """IoU of two views' masks on the part of the frame that both saw (their ``windows``); 0 when none."""
    box = (min(a.y0, b.y0), max(a.box[1], b.box[1]), min(a.x0, b.x0), max(a.box[3], b.box[3]))
    common = _seen(box, a.windows) & _seen(box, b.windows)
    ma, mb = _on(box, a, a.mask) & common, _on(box, b, b.mask) & common
    union = int(np.count_nonzero(ma | mb))
    return int(np.count_nonzero(ma & mb)) / union if union else 0.0


class _Merged:
    """A merged object under construction: probability sums and view counts on its growing box."""

    def __init__(self, obj: FieldObject):
        self.box = obj.box
        self.mask = obj.mask.copy()
        self.prob_sum = obj.probs.astype(np.float32, copy=True)
        self.weight = np.ones(obj.mask.shape, dtype=np.float32)
        self.score_sum, self.area_sum = obj.score * obj.area, obj.area
        self.edge, self.windows = obj.edge, list(obj.windows)

    def view(self) -> FieldObject:
        return FieldObject(self.box[0], self.box[2], self.mask, self.prob_sum, 0.0, self.edge, self.windows)

    def absorb(self, other: _Merged) -> None:
        box = (
            min(self.box[0], other.box[0]),
            max(self.box[1], other.box[1]),
            min(self.box[2], other.box[2]),
            max(self.box[3], other.box[3]),
        )
        if box != self.box:
            old = self.view()
            self.mask = _on(box, old, self.mask)
            self.prob_sum = np.moveaxis(_on(box, old, np.moveaxis(self.prob_sum, 0, -1)), -1, 0)
            self.weight = _on(box, old, self.weight)
            self.box = box
        rows = slice(other.box[0] - box[0], other.box[1] - box[0])
        cols = slice(other.box[2] - box[2], other.box[3] - box[2])
        self.mask[rows, cols] |= other.mask
        self.prob_sum[:, rows, cols] += other.prob_sum
        self.weight[rows, cols] += other.weight
        self.score_sum += other.score_sum
        self.area_sum += other.area_sum
        self.edge |= other.edge
        self.windows += other.windows

    def result(self) -> FieldObject:
        probs = self.prob_sum / np.maximum(self.weight, 1.0)[None]
        probs[0][self.weight == 0] = 1.0  # pixels no view saw (box corners): background
        probs = probs.astype(np.float16)
        score = self.score_sum / max(self.area_sum, 1)
        return FieldObject(self.box[0], self.box[2], self.mask, probs, float(score), self.edge, self.windows)


def _cells(box: tuple[int, int, int, int]):
    for cy in range(box[0] // _CELL, (box[1] - 1) // _CELL + 1):
        for cx in range(box[2] // _CELL, (box[3] - 1) // _CELL + 1):
            yield cy, cx


def merge_views(views: list[FieldObject], iou: float = MERGE_IOU) -> tuple[list[FieldObject], int]:
    """Merge the views of the same object seen by several tiles (see the module docstring).

    ``views`` in tile order, each with the ``windows`` of its tile.  Returns ``(objects, number of views merged
    into another)``.  A view may join several merged objects (an object split across four tiles): they are fused.
    """
    merged: list[_Merged | None] = []
    index: dict[tuple[int, int], set[int]] = defaultdict(set)
    fused = 0
    for obj in views:
        candidates = set()
        for cell in _cells(obj.box):
            candidates |= index[cell]
        matches = [
            k
            for k in sorted(candidates)
            if merged[k] is not None
            and _overlap(merged[k].box, obj.box) is not None
            and views_iou(merged[k].view(), obj) >= iou
        ]
        if matches:
            target = merged[matches[0]]
            target.absorb(_Merged(obj))
            for k in matches[1:]:  # the view bridges several objects: they are one
                target.absorb(merged[k])
                merged[k] = None
            fused += len(matches)
            slot = matches[0]
        else:
            merged.append(_Merged(obj))
            slot = len(merged) - 1
        for cell in _cells(merged[slot].box):
            index[cell].add(slot)
    return [m.result() for m in merged if m is not None], fused


def resolve(
    objects: list[FieldObject],
    shape: tuple[int, int],
    keep: float = KEEP,
    min_area: int = 1,
    valid: np.ndarray | None = None,
):
    """One owner per pixel.  Returns ``(object map (int32, 0 = none, k = objects[k - 1]), objects, counts)``.

    Objects claim their unclaimed pixels by decreasing score; one keeping less than ``keep`` of its mask is a
    duplicate and one keeping fewer than ``min_area`` px is too small: both are dropped and counted in ``counts``
    (``{"duplicate": n, "too_small": n}``).  Objects are numbered 1..n by decreasing area (ties: higher score first),
    as ``src.inference.objects`` numbers the objects of a cutout; the returned objects are cropped to what they kept.
    ``valid``: False on blank frame pixels, which no object may claim.
    """
    height, width = shape
    claimed = np.zeros(shape, dtype=np.int32)
    kept: list[FieldObject] = []
    counts = {"duplicate": 0, "too_small": 0}
    for obj in sorted(objects, key=lambda o: -o.score):
        rows, cols, orows, ocols = _clip(obj, shape)
        mask = np.zeros_like(obj.mask)
        mask[orows, ocols] = obj.mask[orows, ocols]
        if valid is not None:
            mask[orows, ocols] &= valid[rows, cols]
        total = int(mask.sum())
        free = mask.copy()
        free[orows, ocols] &= claimed[rows, cols] == 0
        n_free = int(free.sum())
        if total == 0 or n_free < keep * total:
            counts["duplicate"] += 1
            continue
        if n_free < max(min_area, 1):
            counts["too_small"] += 1
            continue
        kept.append(FieldObject(obj.y0, obj.x0, free, obj.probs, obj.score, obj.edge, obj.windows))
        region = claimed[rows, cols]
        region[free[orows, ocols]] = len(kept)
    areas = np.array([o.area for o in kept])
    order = sorted(range(len(kept)), key=lambda k: (-areas[k], -kept[k].score))
    lut = np.zeros(len(kept) + 1, dtype=np.int32)
    lut[np.asarray(order, dtype=np.int64) + 1] = np.arange(1, len(kept) + 1, dtype=np.int32)
    object_map = np.take(lut, claimed, out=claimed, mode="clip") if kept else claimed  # in place (unbuffered)
    result = []
    for k in order:
        obj = crop_to_mask(kept[k])
        touches = obj.y0 == 0 or obj.x0 == 0 or obj.box[1] == height or obj.box[3] == width
        obj.edge = obj.edge or touches
        result.append(obj)
    return object_map, result, counts


def _clip(obj: FieldObject, shape: tuple[int, int]):
    """Frame slices and object-box slices of the part of ``obj``'s box inside ``shape``."""
    height, width = shape
    y0, y1, x0, x1 = obj.box
    fy0, fy1, fx0, fx1 = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
    fy1, fx1 = max(fy1, fy0), max(fx1, fx0)
    return slice(fy0, fy1), slice(fx0, fx1), slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0)
