"""The ``cutout`` strategy: one stamp per sep candidate, at the scale of the Galaxy Zoo 2 cutouts, through a model
trained on such cutouts; the object at the centre of each stamp is mapped back into the frame.

For each candidate whose isophotal area reaches ``min_area`` px: a square stamp centred on it (padded outside the
frame), resampled to ``input_side`` px.  Its side in the frame (``scale``): ``"fill"``, the GZ2 rule of
``src.field.stamps.stamp_side(npix)`` (the object fills the stamp as the median GZ2 galaxy fills its cutout: for
models trained on cutouts scaled to their galaxy, as the real GZ2 images are), or ``"native"``, ``input_side`` px
(no resampling: for models trained at the frame's own pixel scale, as on the synthetic set).  The stamps go
through the model in batches; the per-pixel class probabilities come back at the stamp's frame
resolution.  The candidate's object is the connected region (8-connectivity) of galaxy pixels (most probable class
not the background, valid pixels only) nearest to the stamp centre, within the candidate's isophotal radius
sqrt(npix / pi) (at least ``MIN_REACH`` px); no such region means the model sees no galaxy there (counted as
``rejected``).  ``src.field.assemble.resolve`` then gives each pixel one owner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

from src.cli import check_choice
from src.defaults import MIN_CANDIDATE_AREA, STAMP_SIZE
from src.field.assemble import FieldObject, crop_to_mask
from src.field.detect import Detections
from src.field.stamps import GZ2_MEDIAN_FILL, Window, cut, resample, stamp_side

#: The object must come within this many px of the stamp centre (or the candidate's isophotal radius if larger).
MIN_REACH = 3.0
#: Isophotal signal-to-noise at which a sep-outlined object scores 1 - 1/e (:func:`detection_score`).
SCORE_SNR = 50.0
#: How a stamp's side in the frame is chosen (see the module docstring).
STAMP_SCALES = ("fill", "native")
_EIGHT = np.ones((3, 3), dtype=bool)

#: ``probabilities(stamps, sizes)``: stamps (S, S, 3) uint8 -> per-pixel class probabilities (K, h, w) at ``sizes``.
Probabilities = Callable[[Sequence[np.ndarray], Sequence[tuple[int, int]]], Sequence[np.ndarray]]


def candidates(detections: Detections, min_area: int = MIN_CANDIDATE_AREA) -> np.ndarray:
    """Rows of the detection table that get a stamp, in raster order.

    Parameters
    ----------
    detections : src.field.detect.Detections
        sep's detections of the frame (``table["npix"]``: isophotal area, px; ``x``, ``y``: centroid, px).
    min_area : int, optional
        Smallest isophotal area that gets a stamp, px (default ``src.defaults.MIN_CANDIDATE_AREA``: the
        conversion's filter of the GZ2 annotations).

    Returns
    -------
    numpy.ndarray
        Row indices into ``detections.table``, sorted by y, then x.
    """
    table = detections.table
    keep = np.flatnonzero(table["npix"] >= min_area)
    return keep[np.lexsort((table["x"][keep], table["y"][keep]))]


def central_object(probs: np.ndarray, valid: np.ndarray, reach: float) -> np.ndarray | None:
    """The mask (h, w) of the galaxy region nearest to the centre of a stamp's probabilities (K, h, w), or None
    when no galaxy region comes within ``reach`` px of the centre."""
    foreground = (np.argmax(probs, axis=0) > 0) & valid
    labels, count = ndimage.label(foreground, structure=_EIGHT)
    if count == 0:
        return None
    height, width = foreground.shape
    yy, xx = np.ogrid[:height, :width]
    distance = np.hypot(yy - (height - 1) / 2.0, xx - (width - 1) / 2.0)
    nearest = ndimage.minimum(distance, labels, index=np.arange(1, count + 1))
    best = int(np.argmin(nearest))
    if nearest[best] > reach:
        return None
    return labels == best + 1


def object_score(probs: np.ndarray, mask: np.ndarray) -> float:
    """Mean probability, over the object's pixels, of its most probable galaxy class (``src.inference.objects``' rule
    for semantic objects: the background takes part in the normalisation)."""
    mean = probs[:, mask].mean(axis=1)
    return float(mean[1:].max())


def detection_score(snr: float) -> float:
    """The score of a sep-outlined object: the confidence of its detection, ``1 - exp(-snr / SCORE_SNR)`` of its
    isophotal signal-to-noise (0.63 at ``SCORE_SNR``, 0.95 at 3 x).  Ranking sep's segments by their S/N rather
    than by the model's class probability gives the higher mask AP on synthetic fields, class-agnostic and 5-class
    (see docs/results.md); the class's own confidence is its ``p_<class>``."""
    return float(1.0 - np.exp(-max(float(snr), 0.0) / SCORE_SNR))


def cutout_objects(
    frame,
    detections: Detections,
    probabilities: Probabilities,
    input_side: int = STAMP_SIZE,
    batch_size: int = 8,
    min_area: int = MIN_CANDIDATE_AREA,
    scale: str = "fill",
    fill: float = GZ2_MEDIAN_FILL,
    progress: bool = False,
    segments: np.ndarray | None = None,
) -> tuple[list[FieldObject], dict]:
    """One object per candidate that the model confirms (see the module docstring).

    Parameters
    ----------
    frame : src.field.frame reader
        The frame (``shape``, ``region``).
    detections : src.field.detect.Detections
        sep's detections of the frame.
    probabilities : Probabilities
        The model run on a batch of stamps.
    input_side : int, optional
        Side of the stamps given to the model, px (default ``src.defaults.STAMP_SIZE``).
    batch_size : int, optional
        Stamps per call of ``probabilities``.
    min_area : int, optional
        Smallest isophotal area of a candidate, px (default ``src.defaults.MIN_CANDIDATE_AREA``).
    scale : {"fill", "native"}, optional
        How a stamp's side in the frame is chosen (see the module docstring).
    fill : float, optional
        Share of the stamp the object covers with ``scale="fill"`` (default: the median GZ2 galaxy's).
    progress : bool, optional
        Show a progress bar.
    segments : numpy.ndarray, optional
        sep's segmentation map of the frame (``k`` = row ``k - 1``): when given, every candidate's object is its
        segment, the model gives its class, and its score is :func:`detection_score` (a candidate the model sees
        no galaxy in is still counted as ``rejected``).

    Returns
    -------
    objects : list of FieldObject
        The confirmed objects, in frame coordinates.
    counts : dict
        Counts of ``candidates``, ``below_min_area``, ``rejected`` (no galaxy at the centre) and ``padded``
        (stamps reaching past the frame border).
    """
    from src.progress import progress_bar

    rows = candidates(detections, min_area)
    table = detections.table
    snr = detections.snr()
    check_choice("stamp scale", scale, STAMP_SCALES)
    if scale == "native":
        sides = np.full(rows.size, input_side, dtype=int)
    else:
        sides = stamp_side(table["npix"][rows], fill) if rows.size else np.zeros(0, int)
    counts = {"candidates": int(rows.size), "below_min_area": int(len(table) - rows.size), "rejected": 0, "padded": 0}
    objects: list[FieldObject] = []
    bar = progress_bar(total=int(rows.size), desc="stamps", unit="stamp", disable=not progress)
    for start in range(0, rows.size, batch_size):
        batch = range(start, min(start + batch_size, rows.size))
        windows = [Window.centred(table["x"][rows[k]], table["y"][rows[k]], int(sides[k])) for k in batch]
        cuts = [cut(frame.region, frame.shape, w) for w in windows]
        stamps = [resample(rgb, input_side) for rgb, _valid in cuts]
        maps = probabilities(stamps, [(w.side, w.side) for w in windows])
        for k, window, (_rgb, valid), probs in zip(batch, windows, cuts, maps):
            probs = np.asarray(probs, dtype=np.float32)
            reach = max(MIN_REACH, float(np.sqrt(table["npix"][rows[k]] / np.pi)))
            mask = central_object(probs, valid, reach)
            counts["padded"] += int(window.padded(frame.shape))
            if mask is None:
                counts["rejected"] += 1
                if segments is None:
                    continue
            frame_rows, frame_cols, wrows, wcols = window.clip(frame.shape)
            if segments is not None:
                mask = np.zeros(valid.shape, dtype=bool)
                mask[wrows, wcols] = segments[frame_rows, frame_cols] == rows[k] + 1
            score = object_score(probs, mask) if segments is None else detection_score(snr[rows[k]])
            obj = FieldObject(
                window.y0,
                window.x0,
                mask,
                probs,
                score,
                windows=[(frame_rows.start, frame_rows.stop, frame_cols.start, frame_cols.stop)],
            )
            objects.append(crop_to_mask(obj))
        bar.update(len(windows))
    bar.close()
    return objects, counts
