"""The ``tiles`` strategy, for models trained on fields (every galaxy annotated): the frame is cut into
overlapping square tiles at its own resolution, run through the model in batches, and the objects of all tiles
are merged into the frame's objects.

Tiles of side ``tile`` px overlap by ``overlap`` px, which should be at least the largest object (px): an object
cut by one tile's border then lies whole in a neighbouring tile.  The grid covers the frame exactly (the last row
and column of tiles are moved back to end at the frame border); a frame smaller than a tile is one tile, padded
with 0 (invalid) beyond the frame.  The views of one object in several tiles are merged by mask overlap and their
class probabilities averaged (``src.field.assemble.merge_views``), then each pixel gets one owner
(``src.field.assemble.resolve``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from src.defaults import TILE, TILE_OVERLAP  # the synthetic fields' largest objects span ~200 px (edge-on spirals)
from src.field.assemble import FieldObject, crop_to_mask
from src.field.stamps import Window, cut

#: ``instances(tiles, valid)``: tiles (T, T, 3) uint8 and their valid masks -> per tile ``(object map (T, T) int,
#: scores (n,), probs (K, T, T))`` with objects 1..n (one owner per pixel inside the tile).
Instances = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions (px) of tiles of side ``tile`` overlapping by ``overlap`` along an axis of ``length`` px;
    the last tile ends at the border (``[0]`` when the axis is not longer than a tile)."""
    if not 0 <= overlap < tile:
        raise ValueError(f"the tile overlap ({overlap} px) must lie in 0..tile-1 ({tile - 1} px)")
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return sorted(set(starts))


def tile_windows(shape: tuple[int, int], tile: int = TILE, overlap: int = TILE_OVERLAP) -> list[Window]:
    """The tiles covering a frame, row by row.

    Parameters
    ----------
    shape : tuple of int
        The frame's (height, width), px.
    tile : int, optional
        Tile side, px (default ``src.defaults.TILE``).
    overlap : int, optional
        Overlap of neighbouring tiles, px (default ``src.defaults.TILE_OVERLAP``).

    Returns
    -------
    list of Window
        The tiles' windows (top-left corner and side, px).
    """
    return [
        Window(y0, x0, tile)
        for y0 in tile_origins(shape[0], tile, overlap)
        for x0 in tile_origins(shape[1], tile, overlap)
    ]


def tile_objects(
    frame,
    instances: Instances,
    tile: int = TILE,
    overlap: int = TILE_OVERLAP,
    batch_size: int = 2,
    progress: bool = False,
) -> tuple[list[FieldObject], dict]:
    """The objects of every tile, as views in frame coordinates (to merge with ``merge_views``).

    Parameters
    ----------
    frame : src.field.frame reader
        The frame (``shape``, ``region``).
    instances : Instances
        The model run on a batch of tiles.
    tile : int, optional
        Tile side, px (default ``src.defaults.TILE``).
    overlap : int, optional
        Overlap of neighbouring tiles, px (default ``src.defaults.TILE_OVERLAP``).
    batch_size : int, optional
        Tiles per call of ``instances``.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    views : list of FieldObject
        Each tile's objects, in frame coordinates.
    counts : dict
        Counts of ``tiles`` and ``views``.
    """
    from src.progress import progress_bar

    windows = tile_windows(frame.shape, tile, overlap)
    views: list[FieldObject] = []
    bar = progress_bar(total=len(windows), desc="tiles", unit="tile", disable=not progress)
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        cuts = [cut(frame.region, frame.shape, w) for w in batch]
        results = instances([rgb for rgb, _ in cuts], [valid for _, valid in cuts])
        for window, (_rgb, valid), (object_map, scores, probs) in zip(batch, cuts, results):
            rows, cols, _, _ = window.clip(frame.shape)
            seen = [(rows.start, rows.stop, cols.start, cols.stop)]
            probs = np.asarray(probs, dtype=np.float32)
            for k, score in enumerate(np.asarray(scores, float), start=1):
                mask = (object_map == k) & valid
                if not mask.any():
                    continue
                views.append(
                    crop_to_mask(FieldObject(window.y0, window.x0, mask, probs, float(score), windows=list(seen)))
                )
        bar.update(len(batch))
    bar.close()
    return views, {"tiles": len(windows), "views": len(views)}
