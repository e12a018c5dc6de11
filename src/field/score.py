"""Scores of a field prediction against the COCO ground truth of every annotated galaxy (``compute_scores.py
--fields``).  Plain functions of masks, classes and scores: the cutout strategy, the tiles strategy and sep alone
are scored the same way.

* ``coco``: COCO mask AP (.5:.95, .5, .75, per class) with faster-coco-eval (``src.evaluation.metrics.coco_mask_ap``),
  up to ``MAX_DETS`` detections per frame; ``coco_agnostic``: the same with every class folded into one "galaxy"
  category (the only AP that sep alone, which gives no class, has).
* ``detection``: predicted and true objects matched one to one at mask IoU >= ``MATCH_IOU`` (greedy, highest IoU
  first; classes ignored).  Completeness = matched truths / truths, purity = matched predictions / predictions,
  overall and by bins of area (px, edges ``AREA_BINS``, near the real GZ2 p10 / median / p90) and, for the truth,
  of r-band flux (the quartiles of the scored truths' ``flux_gri[1]``, when the annotations give it).  With the
  frames given, also completeness and purity by *measured brightness* (:func:`mask_brightness`: the same measure
  for truths and predictions, binned at the quartiles of the truths' values).
* ``classification``: accuracy of the class of matched objects and the confusion matrix (rows = truth).
* ``semantic``: per-class IoU over all pixels of the frames (``src.evaluation.metrics.semantic_scores``: the truth
  painted in annotation order, the prediction's class map); without classes (sep) only ``galaxy_iou`` (galaxy vs
  background).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.classes import CLASS_NAMES, GALAXY_CLASSES, LABEL2ID, NUM_LABELS
from src.evaluation.evaluators import DatasetEvaluator
from src.evaluation.metrics import coco_categories, coco_mask_ap, image_confusion, semantic_scores

MATCH_IOU = 0.5
#: Area bin edges (px): about the real GZ2 annotations' p10, median and p90.
AREA_BINS = (0, 500, 900, 2200, np.inf)
#: Detections per frame kept by COCO AP (a 2048 px frame holds ~100 galaxies; COCO's default is 100).
MAX_DETS = 1000


def load_truth(path) -> dict:
    """The ground truth of a set of fields.

    Parameters
    ----------
    path : str or os.PathLike
        The COCO annotation JSON (``src.synthetic --field``, or any COCO instance file whose categories are the
        ``src.classes`` galaxy classes), read by ``src.data.coco.load_coco_fields``.

    Returns
    -------
    dict
        ``{"images": [{"id", "file_name", "height", "width" (px), "path"}], "truth": {image id: [{"rle",
        "class_id", "area" (px), "flux"}]}, "unannotated": {image id: [{"x", "y", "star", "flux_gri"}]}, "path"}``:
        polygons and uncompressed RLEs become compressed RLEs (``src.data.coco.segmentation_rle``); ``flux``: the
        r-band ``flux_gri``, or None; ``unannotated``: the file's extra key of that name (field stars and faint
        galaxies of ``src.synthetic --field``; empty lists without it).
    """
    from pycocotools import mask as mask_utils

    from src.data.coco import load_coco_fields, segmentation_rle

    images, truth = [], {}
    for record in load_coco_fields(path):
        height, width = record["shape"]
        images.append(
            {
                "id": record["id"],
                "file_name": record["file_name"],
                "height": height,
                "width": width,
                "path": record["path"],
            }
        )
        truth[record["id"]] = []
        for ann in record["annotations"]:
            rle = segmentation_rle(ann["segmentation"], height, width)
            flux = ann["flux_gri"]
            truth[record["id"]].append(
                {
                    "rle": rle,
                    "class_id": ann["class_id"],
                    "area": float(mask_utils.area(rle)),
                    "flux": None if flux is None else float(flux[1]),
                }
            )
    import json

    unannotated = {image["id"]: [] for image in images}
    for source in json.loads(Path(path).read_text()).get("unannotated", []):
        if source.get("image_id") in unannotated:
            unannotated[source["image_id"]].append(source)
    return {"images": images, "truth": truth, "unannotated": unannotated, "path": str(path)}


class MaskEncoder:
    """Full-frame COCO RLEs of masks given on boxes of a frame of ``shape`` (one reused Fortran buffer)."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = tuple(shape)
        self._buffer = np.zeros(self.shape, dtype=np.uint8, order="F")

    def encode(self, y0: int, x0: int, mask: np.ndarray) -> dict:
        from pycocotools import mask as mask_utils

        height, width = self.shape
        y1, x1 = min(y0 + mask.shape[0], height), min(x0 + mask.shape[1], width)
        ry0, rx0 = max(y0, 0), max(x0, 0)
        region = self._buffer[ry0:y1, rx0:x1]
        region[...] = mask[ry0 - y0 : y1 - y0, rx0 - x0 : x1 - x0]
        rle = mask_utils.encode(self._buffer)
        region[...] = 0
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def truth_class_map(truth: list[dict], shape: tuple[int, int]) -> np.ndarray:
    """The class of each pixel, annotations painted in order (a later one covers an earlier one), 0 elsewhere."""
    out = np.zeros(shape, dtype=np.uint8)
    for ann in truth:
        mask, box = decode_boxed(ann["rle"])
        out[box][mask] = ann["class_id"]
    return out


def decode_boxed(rle: dict) -> tuple[np.ndarray, tuple[slice, slice]]:
    """A COCO RLE decoded once: ``(mask, box)``, the boolean mask cut to its bounding box and the box's slices of the
    frame."""
    from pycocotools import mask as mask_utils

    x, y, w, h = (int(v) for v in mask_utils.toBbox(rle))
    box = (slice(y, y + h), slice(x, x + w))
    return mask_utils.decode(rle)[box].astype(bool), box


def frame_brightness(frame: np.ndarray) -> np.ndarray:
    """The (H, W) float64 brightness of each pixel of a frame: the mean of R, G, B of an (H, W, 3) frame, or an
    (H, W) frame as it is.  For the JPEG fields this is the *stretched* (Lupton, 0-255) brightness, not a linear
    flux: it ranks objects by how bright they look, and its sum saturates for bright cores."""
    frame = np.asarray(frame)
    return frame.mean(axis=2) if frame.ndim == 3 else frame.astype(np.float64)


def mask_brightness(brightness: np.ndarray, mask: np.ndarray, box: tuple[slice, slice]) -> float:
    """The measured brightness of an object (pixel value x px): the sum of :func:`frame_brightness` over its mask
    (sky included, nothing subtracted).  The one measure applied to truths and predictions alike."""
    return float(brightness[box][mask].sum())


def match(ious: np.ndarray, threshold: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """One-to-one ``(prediction, truth, IoU)`` pairs with IoU >= ``threshold``, highest IoU first."""
    if ious.size == 0:
        return []
    pred, true = np.nonzero(ious >= threshold)
    order = np.argsort(-ious[pred, true], kind="stable")
    used_p, used_t, pairs = set(), set(), []
    for k in order:
        p, t = int(pred[k]), int(true[k])
        if p not in used_p and t not in used_t:
            used_p.add(p)
            used_t.add(t)
            pairs.append((p, t, float(ious[p, t])))
    return pairs


class FieldEvaluator(DatasetEvaluator):
    """The survey fields' evaluator (``src.evaluation.evaluators.DatasetEvaluator``): frames in (:meth:`process`,
    or :meth:`add` one frame), the metrics of the module docstring out (:meth:`evaluate`).  Fed by
    ``src.field.evaluate.evaluate_fields`` with the objects of ``src.field.run.predict_field``, not by a forward
    pass of its own: ``task`` is None.

    Parameters
    ----------
    classes : bool
        False for class-agnostic predictions (sep alone): no class-wise AP, classification or per-class IoU.
    """

    name = "field"

    def __init__(self, classes: bool = True):
        self.classes = classes
        super().__init__()

    def reset(self) -> None:
        """Forget every frame added so far."""
        self.gt_images, self.gt_annotations, self.results = [], [], []
        self.truth_rows, self.pred_rows = [], []  # per object: area, (flux,) brightness, matched
        self.measured = True  # every frame given: brightness bins
        self.pairs = []  # (truth class, predicted class)
        self.confusion = np.zeros((NUM_LABELS, NUM_LABELS), dtype=np.int64)

    def process(self, inputs: Sequence[dict], outputs: Sequence[dict]) -> None:
        """Add frames.

        Parameters
        ----------
        inputs : sequence of dict
            Per frame ``{"image", "truth"}`` and optionally ``"frame"``: as :meth:`add`'s arguments.
        outputs : sequence of dict
            Per frame ``{"predictions"}`` and, with classes, ``"class_map"``: as :meth:`add`'s arguments.
        """
        for frame_input, output in zip(inputs, outputs, strict=True):
            self.add(
                frame_input["image"],
                frame_input["truth"],
                output["predictions"],
                output.get("class_map"),
                frame=frame_input.get("frame"),
            )

    def add(
        self,
        image: dict,
        truth: list[dict],
        predictions: list[dict],
        class_map: np.ndarray | None = None,
        frame: np.ndarray | None = None,
    ):
        """One frame: ``truth`` from :func:`load_truth`; ``predictions``: ``{"rle", "class_id" (None without
        classes), "score", "area"}``; ``class_map``: the predicted class of each pixel (needed with classes);
        ``frame``: the (H, W, 3) or (H, W) frame, for the measured brightness (:func:`mask_brightness`; without it
        no frame's objects are scored by brightness)."""
        from pycocotools import mask as mask_utils

        image_id = int(image["id"])
        shape = (int(image["height"]), int(image["width"]))
        if frame is not None and tuple(np.shape(frame)[:2]) != shape:
            raise ValueError(
                f"{image.get('file_name', image_id)}: frame of {np.shape(frame)[:2]} px, the annotations say {shape}"
            )
        brightness = None if frame is None else frame_brightness(frame)
        self.measured &= brightness is not None
        self.gt_images.append(
            {"id": image_id, "height": shape[0], "width": shape[1], "file_name": image.get("file_name", "")}
        )
        for ann in truth:
            self.gt_annotations.append(
                {
                    "image_id": image_id,
                    "category_id": ann["class_id"],
                    "segmentation": ann["rle"],
                    "area": ann["area"],
                    "iscrowd": 0,
                    "bbox": mask_utils.toBbox(ann["rle"]).tolist(),
                }
            )
        for pred in predictions:
            self.results.append(
                {
                    "image_id": image_id,
                    "category_id": pred["class_id"] if self.classes else 1,
                    "segmentation": pred["rle"],
                    "score": float(pred["score"]),
                }
            )
        ious = (
            np.asarray(
                mask_utils.iou([p["rle"] for p in predictions], [t["rle"] for t in truth], [0] * len(truth)),
                dtype=float,
            ).reshape(len(predictions), len(truth))
            if predictions and truth
            else np.zeros((len(predictions), len(truth)))
        )
        pairs = match(ious)
        matched_t = {t: p for p, t, _ in pairs}
        matched_p = {p for p, _, _ in pairs}
        truth_map = np.zeros(shape, dtype=np.uint8)  # each mask decoded once
        for t, ann in enumerate(truth):
            mask, box = decode_boxed(ann["rle"])
            truth_map[box][mask] = ann["class_id"]
            light = np.nan if brightness is None else mask_brightness(brightness, mask, box)
            self.truth_rows.append((ann["area"], ann["flux"], light, t in matched_t))
        galaxy = None if self.classes else np.zeros(shape, dtype=np.uint8)
        for p, pred in enumerate(predictions):
            if brightness is not None or galaxy is not None:
                mask, box = decode_boxed(pred["rle"])
                if galaxy is not None:
                    galaxy[box][mask] = 1
            light = np.nan if brightness is None else mask_brightness(brightness, mask, box)
            self.pred_rows.append((pred["area"], light, p in matched_p))
        if self.classes:
            self.pairs += [(truth[t]["class_id"], predictions[p]["class_id"]) for p, t, _ in pairs]
            if class_map is None:
                raise ValueError("class_map is needed to score a prediction with classes")
            self.confusion += image_confusion(truth_map, class_map)
        else:
            self.confusion[:2, :2] += image_confusion((truth_map > 0).astype(np.uint8), galaxy, 2)

    # -------------------------------------------------------------------------------------------- results
    def evaluate(self) -> dict:
        """The metrics of every frame added (see the module docstring): ``n_fields``, ``n_truth``, ``n_predicted``,
        ``coco`` (with classes) and ``coco_agnostic`` (COCO mask AP, fractions in [0, 1]), ``detection``
        (completeness and purity, overall and binned), with classes ``classification`` and ``semantic``, and
        ``galaxy_iou``."""
        if not self.gt_annotations:
            raise ValueError("no annotated object in the scored fields: nothing to score")
        out = {"n_fields": len(self.gt_images), "n_truth": len(self.truth_rows), "n_predicted": len(self.pred_rows)}
        ground_truth = {
            "images": self.gt_images,
            "categories": coco_categories(),
            "annotations": [{**a, "id": k} for k, a in enumerate(self.gt_annotations, start=1)],
        }
        if self.classes:
            out["coco"] = coco_mask_ap(ground_truth, self.results, max_dets=MAX_DETS)
        agnostic = {
            "images": self.gt_images,
            "categories": [{"id": 1, "name": "galaxy", "supercategory": "galaxy"}],
            "annotations": [{**a, "category_id": 1} for a in ground_truth["annotations"]],
        }
        out["coco_agnostic"] = coco_mask_ap(
            agnostic, [{**r, "category_id": 1} for r in self.results], max_dets=MAX_DETS
        )
        out["detection"] = self._detection()
        if self.classes:
            out["classification"] = self._classification()
            out["semantic"] = semantic_scores(self.confusion, CLASS_NAMES)
            tp, fp, fn = self.confusion[1:, 1:].sum(), self.confusion[0, 1:].sum(), self.confusion[1:, 0].sum()
        else:
            tp, fp, fn = self.confusion[1, 1], self.confusion[0, 1], self.confusion[1, 0]
        out["galaxy_iou"] = float(tp / (tp + fp + fn)) if tp + fp + fn else None
        return out

    def _detection(self) -> dict:
        area_t = np.array([r[0] for r in self.truth_rows], float)
        hit_t = np.array([r[3] for r in self.truth_rows], bool)
        area_p = np.array([r[0] for r in self.pred_rows], float)
        hit_p = np.array([r[2] for r in self.pred_rows], bool)
        out = {
            "match_iou": MATCH_IOU,
            "matched": int(hit_t.sum()),
            "completeness": float(hit_t.mean()) if hit_t.size else None,
            "purity": float(hit_p.mean()) if hit_p.size else None,
            "completeness_by_area": _binned(area_t, hit_t, AREA_BINS),
            "purity_by_area": _binned(area_p, hit_p, AREA_BINS),
        }
        flux = np.array([np.nan if r[1] is None else r[1] for r in self.truth_rows], float)
        if flux.size and np.isfinite(flux).all():
            edges = np.quantile(flux, [0, 0.25, 0.5, 0.75, 1.0])
            edges[0], edges[-1] = -np.inf, np.inf
            out["completeness_by_flux_r"] = _binned(flux, hit_t, edges)
        light_t = np.array([r[2] for r in self.truth_rows], float)
        light_p = np.array([r[1] for r in self.pred_rows], float)
        if self.measured and light_t.size:
            edges = np.quantile(light_t, [0, 0.25, 0.5, 0.75, 1.0])
            edges[0], edges[-1] = -np.inf, np.inf
            out["brightness"] = (
                "sum over the object's mask of the frame's pixel values (mean of R, G, B: stretched "
                "JPEG brightness, not a linear flux); bins: quartiles of the truths' values"
            )
            out["completeness_by_brightness"] = _binned(light_t, hit_t, edges)
            out["purity_by_brightness"] = _binned(light_p, hit_p, edges)
        return out

    def _classification(self) -> dict:
        if not self.pairs:
            return {"accuracy": None, "n": 0}
        truth, pred = np.array(self.pairs).T
        confusion = np.zeros((len(GALAXY_CLASSES), len(GALAXY_CLASSES)), dtype=int)
        np.add.at(confusion, (truth - 1, pred - 1), 1)
        return {
            "accuracy": float(np.mean(truth == pred)),
            "n": int(truth.size),
            "classes": list(GALAXY_CLASSES),
            "confusion": confusion.tolist(),
        }


def _binned(values: np.ndarray, hits: np.ndarray, edges: Sequence[float]) -> list[dict]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (values >= lo) & (values < hi)
        out.append(
            {
                "min": float(lo) if np.isfinite(lo) else None,
                "max": float(hi) if np.isfinite(hi) else None,
                "n": int(inside.sum()),
                "fraction": float(hits[inside].mean()) if inside.any() else None,
            }
        )
    return out


def object_class(probs: np.ndarray, mask: np.ndarray) -> int:
    """The class id of an object: the most probable galaxy class of its pixels' mean probabilities."""
    return int(np.argmax(probs[1:, mask].mean(axis=1))) + 1


def object_predictions(
    objects, encoder: MaskEncoder, classes: bool = True, artifacts: frozenset = frozenset()
) -> tuple[list[dict], np.ndarray]:
    """Predictions of ``src.field.assemble`` objects (after ``resolve``) and the frame's class map; without
    ``classes`` (sep alone) ``class_id`` is None and the map 1 on every object.  ``artifacts``: the indices of
    the objects catalogued as class A by the star rule (point sources, ``src.field.stars``)."""
    class_map = np.zeros(encoder.shape, dtype=np.uint8)
    out = []
    for index, obj in enumerate(objects):
        cid = (LABEL2ID["artifact"] if index in artifacts else object_class(obj.probs, obj.mask)) if classes else None
        y0, y1, x0, x1 = obj.box
        class_map[y0:y1, x0:x1][obj.mask] = cid or 1
        out.append(
            {"rle": encoder.encode(obj.y0, obj.x0, obj.mask), "class_id": cid, "score": obj.score, "area": obj.area}
        )
    return out, class_map


class StarGalaxyScorer:
    """The star/galaxy decision against the truth of synthetic fields: the annotated galaxies (each the sep source
    whose centroid lies on its mask, the brightest) and the unannotated sources (stars and faint galaxies: the sep
    source nearest to the drawn position, within ``MATCH_PX`` px).  Sources no truth matches are not scored.

    Two views, by the sources' isophotal signal-to-noise (``src.field.detect.Detections.snr``) in ``SNR_BINS``:
    ``classical``, every matched source called a star when ``src.field.stars`` calls it a point source; and
    ``catalog``, the matched sources that own a catalogued object, called a star when that object is class A (the
    star rule or the model).  Each gives star completeness (true stars called stars / true stars), star purity
    (true stars among the sources called stars), and the same for galaxies."""

    MATCH_PX = 3.0
    SNR_BINS = (3.0, 10.0, 30.0, 100.0, np.inf)

    def __init__(self):
        self.rows = {"classical": [], "catalog": []}  # (snr, is star, called a star)

    def add(
        self,
        truth: list[dict],
        unannotated: list[dict],
        detections,
        decision,
        object_classes: dict[int, int] | None = None,
    ) -> None:
        """One frame.  ``object_classes``: ``{detection row: class id of the catalogued object it owns}``."""
        table = detections.table
        if len(table) == 0:
            return
        snr = detections.snr()
        matched: dict[int, bool] = {}  # detection row -> is a star
        rows_px = np.floor(table["y"] + 0.5).astype(int)
        cols_px = np.floor(table["x"] + 0.5).astype(int)
        for ann in truth:
            mask, box = decode_boxed(ann["rle"])
            inside = np.flatnonzero(
                (rows_px >= box[0].start)
                & (rows_px < box[0].stop)
                & (cols_px >= box[1].start)
                & (cols_px < box[1].stop)
            )
            inside = [k for k in inside if mask[rows_px[k] - box[0].start, cols_px[k] - box[1].start]]
            if inside:
                matched[max(inside, key=lambda j: table["flux"][j])] = False
        for source in unannotated:
            distance = np.hypot(table["x"] - source["x"], table["y"] - source["y"])
            k = int(np.argmin(distance))
            if distance[k] <= self.MATCH_PX and k not in matched:
                matched[k] = bool(source["star"])
        for k, star in matched.items():
            self.rows["classical"].append((snr[k], star, bool(decision.point_source[k])))
            if object_classes is not None and k in object_classes:
                self.rows["catalog"].append((snr[k], star, object_classes[k] == LABEL2ID["artifact"]))

    @classmethod
    def _rates(cls, rows) -> dict:
        if not rows:
            return {"n": 0}
        snr, star, called = (np.array(v) for v in zip(*rows))
        star, called = star.astype(bool), called.astype(bool)

        def rates(inside):
            s, c, g, e = star & inside, called & inside, ~star & inside, ~called & inside
            share = lambda hits, total: float(hits.sum() / total.sum()) if total.any() else None  # noqa: E731
            return {
                "n_stars": int(s.sum()),
                "n_galaxies": int(g.sum()),
                "star_completeness": share(s & called, s),
                "star_purity": share(c & star, c),
                "galaxy_completeness": share(g & ~called, g),
                "galaxy_purity": share(e & ~star, e),
            }

        bins = [
            {"min": float(lo), "max": None if not np.isfinite(hi) else float(hi), **rates((snr >= lo) & (snr < hi))}
            for lo, hi in zip(cls.SNR_BINS[:-1], cls.SNR_BINS[1:])
        ]
        return {"n": int(star.size), "above_10_sigma": rates(snr >= 10.0), "by_snr": bins}

    def scores(self) -> dict:
        return {
            "snr": "isophotal signal-to-noise of the matched sep source (src.field.detect.Detections.snr)",
            **{view: self._rates(rows) for view, rows in self.rows.items()},
        }
