"""Stamps: the cutouts of a frame that the ``cutout`` strategy feeds to a model trained on Galaxy Zoo 2 cutouts.

The stamp rule.  A GZ2 cutout is ``CUTOUT_SIZE`` px on a side with its galaxy at the centre; the galaxy's annotated
(isophotal) area, measured on the 2,828 real test annotations (``galaxy_test_via.json``, rasterised), has a median
of ``GZ2_MEDIAN_AREA`` = 876 px (p10 494, p90 2,211), i.e. the galaxy covers ``GZ2_MEDIAN_FILL`` = 1.34 % of its
cutout, or, in lengths, sqrt(area) / side = 0.116 (p10 0.087, p90 0.184).  A candidate of isophotal area ``A`` px
in the frame therefore gets a stamp of side ``sqrt(A / GZ2_MEDIAN_FILL)`` = 8.65 sqrt(A) px (876 px -> 256 px),
centred on its centroid, resampled to the model's input side: there the object covers the same share of the stamp
as a median GZ2 galaxy covers its cutout.  ``tests/field/test_field.py`` re-derives the constants from the real file.
The side is kept within [``MIN_SIDE``, ``MAX_SIDE``] px of the frame.

Parts of a stamp outside the frame are padded with 0 (the sky of the stretched images) and the stamp is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from src.defaults import CUTOUT_SIZE

#: Median annotated area of a GZ2 cutout's galaxy (px; real test split, 2,828 polygons); the cutout's side is
#: ``src.defaults.CUTOUT_SIZE``.
GZ2_MEDIAN_AREA = 876.0
#: Share of the cutout covered by the median galaxy.
GZ2_MEDIAN_FILL = GZ2_MEDIAN_AREA / CUTOUT_SIZE**2
#: Stamp sides (frame px) are kept in this range.
MIN_SIDE = 32
MAX_SIDE = 2048


def stamp_side(area_px, fill: float = GZ2_MEDIAN_FILL, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE):
    """Stamp side(s) in frame px for isophotal area(s) ``area_px`` (px): ``sqrt(area / fill)``, rounded to an
    even integer, within [``min_side``, ``max_side``]."""
    side = np.sqrt(np.maximum(np.asarray(area_px, float), 0.0) / fill)
    side = np.clip(2 * np.round(side / 2), min_side, max_side).astype(int)
    return side if side.ndim else int(side)


@dataclass(frozen=True)
class Window:
    """A square region of a frame: top-left ``(y0, x0)`` (may lie outside the frame) and ``side`` (px)."""

    y0: int
    x0: int
    side: int

    @classmethod
    def centred(cls, x: float, y: float, side: int) -> Window:
        """The ``side`` x ``side`` window whose centre is nearest to pixel position (``x``, ``y``)."""
        return cls(int(np.floor(y + 0.5)) - side // 2, int(np.floor(x + 0.5)) - side // 2, int(side))

    def clip(self, shape: tuple[int, int]) -> tuple[slice, slice, slice, slice]:
        """``(frame rows, frame cols, window rows, window cols)`` of the part of the window inside ``shape``."""
        height, width = shape
        fy0, fx0 = max(self.y0, 0), max(self.x0, 0)
        fy1, fx1 = min(self.y0 + self.side, height), min(self.x0 + self.side, width)
        fy1, fx1 = max(fy1, fy0), max(fx1, fx0)
        return (
            slice(fy0, fy1),
            slice(fx0, fx1),
            slice(fy0 - self.y0, fy1 - self.y0),
            slice(fx0 - self.x0, fx1 - self.x0),
        )

    def padded(self, shape: tuple[int, int]) -> bool:
        """True when part of the window lies outside a frame of ``shape``."""
        return self.y0 < 0 or self.x0 < 0 or self.y0 + self.side > shape[0] or self.x0 + self.side > shape[1]


def cut(region, shape: tuple[int, int], window: Window) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb (side, side, 3) uint8, valid (side, side) bool)`` of ``window``, read with ``region(rows, cols)``
    (-> rgb, valid or None) and padded with 0 (invalid) outside a frame of ``shape``."""
    rows, cols, wrows, wcols = window.clip(shape)
    rgb = np.zeros((window.side, window.side, 3), dtype=np.uint8)
    valid = np.zeros((window.side, window.side), dtype=bool)
    if rows.stop > rows.start and cols.stop > cols.start:
        pixels, ok = region(rows, cols)
        rgb[wrows, wcols] = pixels
        valid[wrows, wcols] = True if ok is None else ok
    return rgb, valid


def resample(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` (h, w[, c]) resized to ``side`` x ``side``: area averaging when shrinking (no aliasing), bilinear
    when enlarging."""
    if image.shape[0] == side and image.shape[1] == side:
        return image
    shrink = side < image.shape[0]
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
