"""Score a trained OneFormer on a split: batched inference per task, then ``src.metrics``.

* ``semantic`` task -> ``post_process_semantic_segmentation`` at the original image size -> per-image confusion
  matrices -> seed protocol, standard semantic scores, image-level classification report.
* ``instance`` task -> Mask2Former / OneFormer instance inference (top-k query x class scores over the galaxy
  classes, binary masks at logit 0 resized to the original size, score = class probability x mean mask
  probability inside the mask) -> COCO mask AP with faster-coco-eval (pycocotools is the reference).  The masks
  may overlap, as COCO allows; HF's ``post_process_instance_segmentation`` would flatten them into one map.
* ``panoptic`` task -> ``post_process_panoptic_segmentation`` (background fused into one stuff segment) -> PQ.

Ground truth comes from :class:`src.dataset.GalaxyDataset` at native size (no resize, no augmentation): the
semantic map, the instance map (a later polygon covers an earlier one where they overlap) and the class of each
instance.  COCO ``image_id`` is the objid (18-digit ids work, see ``src.metrics._coco_eval``), category ids are
``src.classes`` ids.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from src.atomic import write_json_atomic
from src.classes import CLASS_NAMES, LABEL2ID
from src.inference import TOP_K, forward, instance_predictions, panoptic_segments, pick_device, semantic_maps
from src.metrics import (ConfusionAccumulator, PanopticAccumulator, coco_ground_truth, coco_mask_ap, masks_to_rles,
                         semantic_report)

TASKS = ("semantic", "instance", "panoptic")
def normalise_tasks(tasks: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"`` -> every task; validates names; keeps the canonical order."""
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    if "all" in tasks:
        return TASKS
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"unknown task(s) {unknown or tasks}: expected some of {', '.join(TASKS)} or 'all'")
    return tuple(t for t in TASKS if t in tasks)


# ------------------------------------------------------------------------------------------ data
def ground_truth_dataset(data_root, split: str = "test", limit: int | None = None):
    """The split at native size, no augmentation; ``limit`` keeps the first ``limit`` images."""
    from src.dataset import GalaxyDataset

    dataset = GalaxyDataset(data_root, split, image_size=None, augment=False)
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(int(limit), len(dataset))))
    return dataset


def _batches(dataset, batch_size: int):
    for start in range(0, len(dataset), batch_size):
        yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]


def _instance_objects(item: dict) -> list[tuple[int, dict]]:
    """``(class id, RLE)`` of each object still visible in the instance map (RLE keeps the memory small)."""
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
    return [{"image_id": int(item_objid), "category_id": d["class_id"], "segmentation": rles[slot[id(d["mask"])]],
             "score": round(d["score"], 6)} for d in detections]


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(model_path_or_name, data_root, split: str = "test", tasks: str | Sequence[str] = ("semantic", "instance"),
             batch_size: int = 4, base_card: str | None = None, predictions_out=None, progress: bool = True,
             device=None, limit: int | None = None, top_k: int = TOP_K, model=None, processor=None) -> dict:
    """Score a model on ``split``; returns the ``metrics.json`` content.

    ``model_path_or_name``: a ``save_pretrained`` directory, a bare ``.safetensors`` state dict (architecture
    ``base_card``, default the swin-tiny preset) or anything :func:`src.model.load_model` accepts; or pass a loaded
    ``model`` with its ``processor`` (then ``model_path_or_name`` is only recorded).  ``processor`` alone replaces
    the loaded model's processor (e.g. other normalisation statistics for a bare state dict).  ``predictions_out``: write the
    instance predictions in COCO results format (needs the ``instance`` task).
    """
    from tqdm import tqdm

    tasks = normalise_tasks(tasks)
    if predictions_out is not None and "instance" not in tasks:
        raise ValueError("predictions_out needs the 'instance' task (COCO results are instance masks)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = pick_device(device)
    if model is None:
        from src.model import load_model

        model, loaded_processor = load_model(str(model_path_or_name), base_card=base_card, device=device)
        processor = processor or loaded_processor
    else:
        if processor is None:
            raise ValueError("a loaded model needs its processor (processor=...)")
        model.to(device)
    model.eval()
    dataset = ground_truth_dataset(data_root, split, limit)
    n_batches = math.ceil(len(dataset) / batch_size)

    metrics: dict = {
        "model": str(model_path_or_name), "data_root": str(data_root), "split": split, "tasks": list(tasks),
        "n_images": len(dataset), "device": str(device),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "category_ids": {name: LABEL2ID[name] for name in CLASS_NAMES},
    }
    for task in tasks:
        confusion, panoptic = ConfusionAccumulator(), PanopticAccumulator()
        gt_images, results = [], []
        for items in tqdm(_batches(dataset, batch_size), total=n_batches, desc=f"{task} inference",
                          disable=not progress):
            sizes = [item["semantic"].shape for item in items]
            outputs = forward(model, processor, [item["image"] for item in items], task)
            if task == "semantic":
                confusion.update([item["semantic"] for item in items], semantic_maps(processor, outputs, sizes))
            elif task == "instance":
                for item, detections in zip(items, instance_predictions(outputs, sizes, top_k)):
                    height, width = item["semantic"].shape
                    gt_images.append({"id": item["objid"], "height": height, "width": width,
                                      "file_name": f"Dr7_{item['objid']}.jpg", "objects": _instance_objects(item)})
                    results += coco_results(item["objid"], detections)
            else:
                for item, (segments, classes) in zip(items, panoptic_segments(processor, outputs, sizes)):
                    gt_classes = {0: 0, **{k: c for k, c in enumerate(item["class_ids"], start=1)}}
                    panoptic.update(item["instance"].astype(np.int32), gt_classes, segments, classes)
        if task == "semantic":
            metrics["semantic"] = semantic_report(confusion.per_image)
        elif task == "instance":
            metrics["instance"] = {"coco": coco_mask_ap(coco_ground_truth(gt_images), results), "top_k": top_k}
            if predictions_out is not None:
                write_json_atomic(predictions_out, results)
                metrics["instance"]["predictions_file"] = str(predictions_out)
        else:
            metrics["panoptic"] = panoptic.scores()
    return metrics


def write_metrics(metrics: dict, path) -> Path:
    """Write ``metrics.json`` atomically (temporary file, then rename)."""
    write_json_atomic(path, metrics, indent=2)
    return Path(path)


def _fmt(value) -> str:
    return "   -  " if value is None else f"{value:.4f}"


def format_table(metrics: dict) -> str:
    """A plain-text summary: headline figures, then per-class IoU / Dice / AP / PQ / F1."""
    lines = [f"model {metrics.get('model')}  split {metrics.get('split')}  images {metrics.get('n_images')}"]
    sem = metrics.get("semantic")
    if sem:
        seed, std = sem["seed_protocol"], sem["semantic"]
        lines.append(f"seed protocol (semantic task): mIoU {_fmt(seed['mean_iou'])}  Dice {_fmt(seed['dice'])}  "
                     f"accuracy {_fmt(seed['accuracy'])}  ({seed['n_images']} images)")
        lines.append(f"standard semantic: mIoU {_fmt(std['mean_iou'])}  mIoU galaxies {_fmt(std['mean_iou_galaxies'])}"
                     f"  pixel accuracy {_fmt(std['pixel_accuracy'])}  mean Dice {_fmt(std['mean_dice'])}")
    coco = (metrics.get("instance") or {}).get("coco")
    if coco:
        lines.append(f"COCO mask AP (instance task): AP {_fmt(coco['ap'])}  AP50 {_fmt(coco['ap50'])}  "
                     f"AP75 {_fmt(coco['ap75'])}")
    pan = metrics.get("panoptic")
    if pan:
        lines.append(f"panoptic: PQ {_fmt(pan['all']['pq'])}  SQ {_fmt(pan['all']['sq'])}  RQ {_fmt(pan['all']['rq'])}"
                     f"  (things PQ {_fmt(pan['things']['pq'])})")
    header = f"{'class':<16}{'IoU':>8}{'Dice':>8}{'F1':>8}{'AP':>8}{'PQ':>8}"
    lines += ["", header, "-" * len(header)]
    for name in CLASS_NAMES:
        iou = dice = f1 = ap = pq = None
        if sem:
            iou = sem["semantic"]["per_class_iou"].get(name)
            dice = sem["semantic"]["per_class_dice"].get(name)
            f1 = (sem["classification"]["per_class"].get(name) or {}).get("f1")
        if coco:
            ap = coco["per_class_ap"].get(name)
        if pan:
            pq = (pan["per_class"].get(name) or {}).get("pq")
        lines.append(f"{name:<16}" + "".join(f"{_fmt(v):>8}" for v in (iou, dice, f1, ap, pq)))
    return "\n".join(lines)
