"""One evaluator per task, with detectron2's ``DatasetEvaluator`` interface: :meth:`~DatasetEvaluator.reset`,
:meth:`~DatasetEvaluator.process` (a batch of data set items with the model's post-processed outputs) and
:meth:`~DatasetEvaluator.evaluate` (the task's part of ``metrics.json``).  The figures themselves are computed by
``src.evaluation.metrics``; an evaluator collects one small record per image and turns them into metrics.

Each evaluator says which task the model must be conditioned on (``task``), which outputs of
:func:`src.inference.segmentation.run_model` it reads (``outputs``) and under which key its metrics go (``name``);
:func:`src.evaluation.evaluate.evaluate` runs the model once per task its evaluators need and feeds each of them.

Several processes (``torchrun`` / ``accelerate launch``): each evaluator holds the records of its process's share;
:meth:`~DatasetEvaluator.evaluate` gathers every process's records on the main process and puts them in data set
order (``index``), so that the metrics equal one process's to the last bit; it returns ``None`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from src.evaluation.metrics import (
    PanopticAccumulator,
    coco_ground_truth,
    coco_mask_ap,
    image_confusion,
    image_confusions,
    masks_to_rles,
    original_ap,
    original_record,
    semantic_report,
)
from src.inference.segmentation import TOP_K


class DatasetEvaluator:
    """The interface: ``reset()``, ``process(inputs, outputs)`` batch by batch, then ``evaluate()``.

    Attributes
    ----------
    name : str
        The key of the evaluator's metrics in ``metrics.json``.
    task : str or None
        The task the model is conditioned on for this evaluator (one of ``src.defaults.TASKS``); ``None`` for an
        evaluator fed by another driver (the survey fields).
    outputs : tuple of str
        The outputs of :func:`src.inference.segmentation.run_model` that :meth:`process` reads.
    """

    name: str = ""
    task: str | None = None
    outputs: tuple[str, ...] = ()

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget every image processed so far."""
        self._records: list[tuple[int, object]] = []

    def process(self, inputs: Sequence[dict], outputs: Sequence[dict]) -> None:
        """Add a batch.

        Parameters
        ----------
        inputs : sequence of dict
            Data set items (:class:`src.data.datasets.GalaxyDataset` at native size: ``semantic``, ``instance``,
            ``class_ids``, ``objid``), each with its position ``index`` in the data set.
        outputs : sequence of dict
            The model's outputs for the same images (:func:`src.inference.segmentation.run_model`), holding at
            least :attr:`outputs`.
        """
        for item, output in zip(inputs, outputs, strict=True):
            self._records.append((int(item["index"]), self.record(item, output)))

    def record(self, item: dict, output: dict):
        """One image's contribution to the metrics (small: kept until :meth:`evaluate`)."""
        raise NotImplementedError

    def evaluate(self) -> dict | None:
        """The metrics of every image processed (by every process); ``None`` on a process other than the main one."""
        records = gather_in_order(self._records)
        return None if records is None else self.metrics(records)

    def metrics(self, records: list) -> dict:
        """The metrics of the records of every image, in data set order."""
        raise NotImplementedError


def gather_in_order(pairs: list[tuple[int, object]]) -> list | None:
    """``(index, record)`` pairs of this process -> the records of every process in index order, on the main
    process; ``None`` on the others.  One process: its own records, sorted."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        from accelerate import PartialState
        from accelerate.utils import gather_object

        if PartialState().num_processes > 1:
            pairs = gather_object(pairs)
            if not PartialState().is_main_process:
                return None
    return [record for _, record in sorted(pairs, key=lambda pair: pair[0])]


# ------------------------------------------------------------------------------------------ semantic
class SemanticEvaluator(DatasetEvaluator):
    """Semantic task: the seed protocol, the standard semantic scores (mIoU, Dice, pixel accuracy) and the
    image-level classification report (:func:`src.evaluation.metrics.semantic_report`), from each image's
    confusion matrix of the ground-truth class map against the predicted ``class_map``.

    :meth:`evaluate` returns ``{"seed_protocol", "semantic", "classification"}``; IoU, Dice and accuracies are
    fractions in [0, 1], over the images that hold a galaxy (seed protocol) or over all pixels (semantic).
    """

    name = task = "semantic"
    outputs = ("class_map",)

    def record(self, item: dict, output: dict) -> np.ndarray:
        return image_confusion(item["semantic"], output["class_map"])

    def metrics(self, records: list) -> dict:
        return semantic_report(np.stack(records) if records else image_confusions([], []))


# ------------------------------------------------------------------------------------------ instance
def instance_objects(item: dict) -> list[tuple[int, dict]]:
    """``(class id, RLE)`` of each object of a data set item still visible in its instance map (a later polygon
    covers an earlier one; RLE keeps the memory small)."""
    ids = np.arange(1, len(item["class_ids"]) + 1)
    masks = item["instance"][None] == ids[:, None, None]
    visible = masks.any((1, 2))
    rles = masks_to_rles(masks[visible])
    return list(zip((int(c) for c, v in zip(item["class_ids"], visible) if v), rles))


def coco_results(item_objid: int, detections: list[dict]) -> list[dict]:
    """COCO results-format dicts (``image_id`` = objid) for one image's detections.  The masks are encoded
    together, once per distinct mask (detections of one query share theirs)."""
    distinct: dict[int, np.ndarray] = {}
    for d in detections:
        distinct.setdefault(id(d["mask"]), d["mask"])
    slot = {key: i for i, key in enumerate(distinct)}
    rles = masks_to_rles(list(distinct.values()))
    return [
        {
            "image_id": int(item_objid),
            "category_id": d["class_id"],
            "segmentation": rles[slot[id(d["mask"])]],
            "score": round(d["score"], 6),
        }
        for d in detections
    ]


class InstanceEvaluator(DatasetEvaluator):
    """Instance task: COCO mask AP (:func:`src.evaluation.metrics.coco_mask_ap`) of the ``instances`` (up to
    ``top_k`` detections per image, masks may overlap), and beside it the original project's AP
    (:func:`src.evaluation.metrics.original_ap`) of HF's instance segments (``original_segments``).

    Parameters
    ----------
    top_k : int
        Detections per image the model's outputs were cut to (recorded in the metrics).
    predictions_out : path-like, optional
        Where :meth:`evaluate` writes the detections in COCO results format (``image_id`` = objid).

    :meth:`evaluate` returns ``{"coco", "top_k", "original_ap"}`` (APs are fractions in [0, 1]), with
    ``predictions_file`` when ``predictions_out`` is given.
    """

    name = task = "instance"
    outputs = ("instances", "original_segments")

    def __init__(self, top_k: int = TOP_K, predictions_out=None):
        self.top_k, self.predictions_out = top_k, predictions_out
        super().__init__()

    def record(self, item: dict, output: dict) -> tuple[dict, list[dict], dict | None]:
        height, width = item["semantic"].shape
        ground_truth = {
            "id": item["objid"],
            "height": height,
            "width": width,
            "file_name": f"Dr7_{item['objid']}.jpg",
            "objects": instance_objects(item),
        }
        return (
            ground_truth,
            coco_results(item["objid"], output["instances"]),
            original_record(output["original_segments"], item["instance"], item["class_ids"]),
        )

    def metrics(self, records: list) -> dict:
        from src.atomic import write_json_atomic

        results = [r for _, image_results, _ in records for r in image_results]
        metrics = {
            "coco": coco_mask_ap(coco_ground_truth([gt for gt, _, _ in records]), results),
            "top_k": self.top_k,
            "original_ap": original_ap([record for _, _, record in records]),
        }
        if self.predictions_out is not None:
            write_json_atomic(self.predictions_out, results)
            metrics["predictions_file"] = str(self.predictions_out)
        return metrics


# ------------------------------------------------------------------------------------------ panoptic
class PanopticEvaluator(DatasetEvaluator):
    """Panoptic task: panoptic, segmentation and recognition quality (PQ, SQ, RQ, fractions in [0, 1]; overall,
    things, stuff and per class: :class:`src.evaluation.metrics.PanopticAccumulator`) of the ``panoptic``
    segments, the background one "stuff" segment."""

    name = task = "panoptic"
    outputs = ("panoptic",)

    def record(self, item: dict, output: dict) -> dict[str, np.ndarray]:
        segments, classes = output["panoptic"]
        gt_classes = {0: 0, **dict(enumerate(item["class_ids"], start=1))}
        return PanopticAccumulator.match(item["instance"].astype(np.int32), gt_classes, segments, classes)

    def metrics(self, records: list) -> dict:
        panoptic = PanopticAccumulator()
        for record in records:
            panoptic.add(record)
        return panoptic.scores()


#: The evaluator of each task.
EVALUATORS = {evaluator.task: evaluator for evaluator in (SemanticEvaluator, InstanceEvaluator, PanopticEvaluator)}
