"""One frame through a field strategy: ``predict.py --field`` and ``compute_scores.py --fields`` run frames with
:func:`predict_field`.

* ``cutout`` (models trained on GZ2-style cutouts): sep candidates -> stamps at the GZ2 scale -> the model
  (semantic task) -> the central object of each stamp (``src.field.cutout``).
* ``tiles`` (models trained on fields): overlapping tiles -> the model (conditioned on ``task``: an object is what
  ``predict.py --task`` makes it) -> objects merged across tile borders (``src.field.tiles``,
  ``src.field.assemble.merge_views``).
* ``sep``: sep alone, each isophotal segment an object without class (the classical baseline; scoring only).

Both model strategies end with one owner per pixel (``src.field.assemble.resolve``); the objects are then measured
by ``src.inference.objects.measure_objects`` like the objects of a cutout (class probabilities, score, centroid, bounds,
area, RA/Dec with a WCS), plus the ``edge`` flag.  Every strategy runs sep first: its sources give the star/galaxy
decision (``src.field.stars``: the frame's PSF FWHM, a stellarity per source), and each object takes the
decision of the brightest source on it; with ``stars="artifact"`` a point source is catalogued as class A.

``outline`` (cutout strategy): ``sep`` (default), the object is the candidate's sep segment (the isophote at the
detection threshold, deblended: it reaches the galaxy's visible edge, as a GZ2 annotator outlines it) and the model
gives its class (probabilities averaged over the segment) and the score is the detection's confidence from its
signal-to-noise (``src.field.cutout.detection_score``); ``model``, the object is the model's central region of the
stamp, and a candidate without one is dropped."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from src.cli import check_choice
from src.defaults import MIN_CANDIDATE_AREA, STAMP_SIZE, TASKS, TILE, TILE_OVERLAP
from src.field.assemble import FieldObject, merge_views, resolve
from src.field.cutout import STAMP_SCALES, candidates, cutout_objects, object_score
from src.field.detect import detect
from src.field.stars import STAR_RULES, StarGalaxy, apply_star_rule, separate, sources_of_objects
from src.field.tiles import tile_objects
from src.inference.objects import MIN_AREA

STRATEGIES = ("cutout", "tiles", "sep")
OUTLINES = ("model", "sep")


#: Tiles strategy: the lowest instance detection score kept by default.  Not predict.py's ``SCORE_THRESHOLD``
#: (0.2, ``src.inference.objects``), which predict.py passes; this is what compute_scores.py --fields and the
#: field figure use.
TILE_SCORE_THRESHOLD = 0.5


@dataclass
class FieldSettings:
    """How a frame is processed (``predict.py --field`` options)."""

    strategy: str = "cutout"
    stamp_pixels: int = STAMP_SIZE  # cutout: stamps are resampled to this side (px) for the model
    stamp_scale: str = "fill"  # cutout: "fill" (the GZ2 stamp rule) or "native" (stamp_pixels px)
    min_candidate_area: int = MIN_CANDIDATE_AREA  # cutout / sep: sep isophotal area (px) to become a candidate
    detect_thresh: float | None = None  # sep threshold in background rms (None: the frame kind's default)
    tile: int = TILE  # tiles: tile side (px)
    overlap: int = TILE_OVERLAP  # tiles: overlap (px), >= the largest object
    batch_size: int = 8
    min_area: int = MIN_AREA  # objects smaller than this (px) after one-owner resolution are dropped
    task: str = "semantic"  # tiles: the task the model is conditioned on (what an object is)
    score_threshold: float = TILE_SCORE_THRESHOLD  # tiles: lowest instance detection score
    tta: bool = False
    stars: str = "artifact"  # point sources: "artifact" (class A) or "model" (the model's class)
    outline: str = "sep"  # cutout: the object's outline from "sep" (its segment) or the "model"

    def check(self) -> None:
        """Check the settings.

        Raises
        ------
        ValueError
            A strategy, stamp scale, star rule, outline or task that does not exist, a stamp side that is not a
            multiple of 32 px, or tiles whose side is not a multiple of 32 px or whose overlap is not in 0..side-1.
        """
        check_choice("field strategy", self.strategy, STRATEGIES)
        check_choice("stamp scale", self.stamp_scale, STAMP_SCALES)
        if self.stamp_pixels < 32 or self.stamp_pixels % 32:
            raise ValueError(f"stamp side must be a multiple of 32 px (the model's stride), got {self.stamp_pixels}")
        check_choice("star rule", self.stars, STAR_RULES)
        check_choice("outline", self.outline, OUTLINES)
        if self.task not in TASKS:
            raise ValueError(f"task must be {', '.join(TASKS[:-1])} or {TASKS[-1]}, got {self.task!r}")
        if not 0 <= self.overlap < self.tile or self.tile % 32:
            raise ValueError(
                f"tiles: the side ({self.tile} px) must be a multiple of 32 and the overlap "
                f"({self.overlap} px) lie in 0..side-1"
            )


@dataclass
class FieldResult:
    """``objects`` (numbered 1..n as in ``object_map``), ``object_map`` (int32, the frame), the sep
    ``detections`` and their star/galaxy decision ``stars``, ``counts``, ``timings`` (seconds) and
    ``peak_rss_gib`` (the process's peak resident memory after each stage, GiB)."""

    objects: list[FieldObject]
    object_map: np.ndarray
    detections: object
    stars: StarGalaxy | None = None
    counts: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    peak_rss_gib: dict = field(default_factory=dict)


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, GiB (Linux ``ru_maxrss`` is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)


def _stamp_probabilities(model, processor, settings: FieldSettings):
    """``probabilities(stamps, sizes)`` for the cutout strategy: the model (semantic task) on the stamps, the
    per-pixel class probabilities resized (bilinear) to each stamp's side in the frame."""
    from src.inference.segmentation import segment

    def run(stamps, sizes):
        results = segment(model, processor, list(stamps), "semantic", settings.tta, settings.batch_size)
        out = []
        for (probs, _, _), size in zip(results, sizes):
            p = torch.from_numpy(probs)[None]
            if tuple(p.shape[-2:]) != tuple(size):
                p = torch.nn.functional.interpolate(p, size=tuple(size), mode="bilinear", align_corners=False)
            out.append(p[0].numpy())
        return out

    return run


def _tile_objects(model, processor, settings: FieldSettings):
    """``instances(tiles, valid)`` for the tiles strategy: the model conditioned on ``settings.task`` -> the objects
    of each tile as ``predict.py`` defines them for that task (``src.inference.objects.find_objects``: connected galaxy
    regions for ``semantic``, detections with one owner per pixel for ``instance``, segments for ``panoptic``)."""
    from src.inference.objects import find_objects
    from src.inference.segmentation import segment

    def run(tiles, valid):
        results = segment(model, processor, list(tiles), settings.task, settings.tta, settings.batch_size)
        out = []
        for (probs, task_result, _), ok in zip(results, valid):
            object_map, scores, _dropped = find_objects(
                probs, task_result, settings.task, ok, settings.min_area, settings.score_threshold
            )
            if scores is None:  # semantic / panoptic: the mean probability of each object's class
                scores = [object_score(probs, object_map == k) for k in range(1, int(object_map.max()) + 1)]
            out.append((object_map, np.asarray(scores, float), probs))
        return out

    return run


def predict_field(frame, model, processor, settings: FieldSettings, progress: bool = False) -> FieldResult:
    """Find, segment and classify the objects of one frame (a ``src.field.frame`` reader)."""
    settings.check()
    timings, counts, memory = {}, {}, {}
    tic = time.perf_counter()
    thresh = settings.detect_thresh if settings.detect_thresh is not None else frame.detect_thresh
    segments = settings.strategy == "sep" or (settings.strategy == "cutout" and settings.outline == "sep")
    detections = detect(
        frame.detection, frame.shape, thresh, segmentation=segments, saturated=getattr(frame, "saturation", None)
    )
    stars = separate(detections.table, linear_peak=getattr(frame, "linear_peak", np.inf))
    counts["sources"] = len(detections)
    timings["detect_s"] = time.perf_counter() - tic
    memory["detect"] = peak_rss_gib()
    tic = time.perf_counter()
    if settings.strategy == "sep":
        objects = sep_objects(detections, candidates(detections, settings.min_candidate_area))
        counts["candidates"] = len(objects)
    elif settings.strategy == "cutout":
        objects, found = cutout_objects(
            frame,
            detections,
            _stamp_probabilities(model, processor, settings),
            settings.stamp_pixels,
            settings.batch_size,
            settings.min_candidate_area,
            settings.stamp_scale,
            progress=progress,
            segments=detections.segmentation if settings.outline == "sep" else None,
        )
        counts.update(found)
    else:
        views, found = tile_objects(
            frame,
            _tile_objects(model, processor, settings),
            settings.tile,
            settings.overlap,
            max(1, settings.batch_size // 4),
            progress=progress,
        )
        objects, merged = merge_views(views)
        counts.update(found, merged_views=merged)
    timings["model_s"] = time.perf_counter() - tic
    memory["model"] = peak_rss_gib()
    tic = time.perf_counter()
    object_map, objects, dropped = resolve(objects, frame.shape, min_area=settings.min_area)
    counts.update(dropped, objects=len(objects), edge=sum(o.edge for o in objects))
    timings["resolve_s"] = time.perf_counter() - tic
    memory["resolve"] = peak_rss_gib()
    return FieldResult(objects, object_map, detections, stars, counts, timings, memory)


def sep_objects(detections, rows) -> list[FieldObject]:
    """sep alone: each isophotal segment of ``rows`` as an object (probabilities: all "galaxy" mass on no class,
    i.e. uniform over the galaxy classes), scored by its isophotal signal-to-noise."""
    from src.classes import NUM_LABELS

    seg, table, snr = detections.segmentation, detections.table, detections.snr()
    out = []
    for k in rows:
        y0, y1 = int(table["ymin"][k]), int(table["ymax"][k]) + 1
        x0, x1 = int(table["xmin"][k]), int(table["xmax"][k]) + 1
        mask = seg[y0:y1, x0:x1] == k + 1
        probs = np.zeros((NUM_LABELS,) + mask.shape, np.float32)
        probs[1:] = 1.0 / (NUM_LABELS - 1)
        out.append(FieldObject(y0, x0, mask, probs, float(snr[k])))
    return out


def measure(result: FieldResult, wcs=None, stars: str = "artifact") -> list[dict]:
    """Catalog rows of the objects (``src.inference.objects.measure_objects`` on each object's box) with ``edge`` and
    the star/galaxy columns (``src.field.stars.apply_star_rule`` with rule ``stars``; its counts go to
    ``result.counts``)."""
    from src.inference.objects import measure_objects

    rows = []
    for number, obj in enumerate(result.objects, start=1):
        [row] = measure_objects(obj.mask.astype(np.int32), obj.probs, None, wcs, origin=(obj.x0, obj.y0))
        row["object"] = number
        row["score"] = round(float(obj.score), 6)
        row["edge"] = bool(obj.edge)
        rows.append(row)
    if result.stars is not None:
        sources = sources_of_objects(result.object_map, result.detections.table)
        result.counts.update(apply_star_rule(rows, sources, result.stars, stars))
    return rows
