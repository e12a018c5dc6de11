"""Score a trained OneFormer on a split: batched inference per task, then ``src.evaluation.metrics``.

* ``semantic`` task -> ``post_process_semantic_segmentation`` at the original image size -> per-image confusion
  matrices -> seed protocol, standard semantic scores, image-level classification report.
* ``instance`` task -> Mask2Former / OneFormer instance inference (top-k query x class scores over the galaxy
  classes, binary masks at logit 0 resized to the original size, score = class probability x mean mask
  probability inside the mask) -> COCO mask AP with faster-coco-eval (pycocotools is the reference).  The masks
  may overlap, as COCO allows; HF's ``post_process_instance_segmentation`` would flatten them into one map.
  Beside it, the original project's AP (``src.evaluation.metrics.original_ap``: its home-made 11-point routine, quirks
  included) from HF's ``post_process_instance_segmentation`` segments, as that project computed it.
* ``panoptic`` task -> ``post_process_panoptic_segmentation`` (background fused into one stuff segment) -> PQ.

Ground truth comes from :class:`src.data.datasets.GalaxyDataset` at native size (no resize, no augmentation): the
semantic map, the instance map (a later polygon covers an earlier one where they overlap) and the class of each
instance.  COCO ``image_id`` is the objid (18-digit ids work, see ``src.evaluation.metrics._coco_eval``), category ids
are
``src.classes`` ids.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from src.atomic import write_json_atomic
from src.classes import CLASS_NAMES, LABEL2ID
from src.data.datasets import ShardBatches
from src.evaluation.metrics import (
    PanopticAccumulator,
    coco_ground_truth,
    coco_mask_ap,
    image_confusions,
    masks_to_rles,
    original_ap,
    original_record,
    semantic_report,
)
from src.inference.segmentation import (
    TOP_K,
    forward,
    hf_instance_segments,
    instance_predictions,
    panoptic_segments,
    pick_device,
    semantic_maps,
)

TASKS = ("semantic", "instance", "panoptic")
logger = logging.getLogger(__name__)


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
    from src.data.datasets import GalaxyDataset

    dataset = GalaxyDataset(data_root, split, image_size=None, augment=False)
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(int(limit), len(dataset))))
    return dataset


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
    return [
        {
            "image_id": int(item_objid),
            "category_id": d["class_id"],
            "segmentation": rles[slot[id(d["mask"])]],
            "score": round(d["score"], 6),
        }
        for d in detections
    ]


def split_record(data_root, split: str) -> dict:
    """What ``metrics.json`` records of the scored split: its file, SHA-256 and how its membership was made
    (``galaxy_splits.json``; ``None`` for split files written without a manifest)."""
    from src.data.splits import file_sha256, read_manifest, split_path

    path = split_path(data_root, split)
    manifest = read_manifest(data_root)
    return {
        "split_file": str(path),
        "split_sha256": file_sha256(path),
        "split_membership": None if manifest is None else manifest.get("membership"),
    }


def original_split_warning(membership: dict | None, split: str) -> str | None:
    """The warning for a bare state dict (the original project's weights) scored on a split whose membership
    was not taken from the original split files (``--splits-from``): its images may be the model's training ones."""
    if membership and membership.get("method") == "reference" and split in membership.get("splits_from", {}):
        return None
    return (
        f"scoring a bare state dict (the original project's weights?) on a {split!r} split not made with "
        "`python -m src.conversion --splits-from DIR` (the original galaxy_{train,val,test}.json): some of its "
        "images may have been in that model's training set, which inflates every score"
    )


# ------------------------------------------------------------------------------------------ evaluation
def evaluate(
    model_path_or_name,
    data_root,
    split: str = "test",
    tasks: str | Sequence[str] = ("semantic", "instance"),
    batch_size: int = 4,
    base_card: str | None = None,
    predictions_out=None,
    progress: bool = True,
    device=None,
    limit: int | None = None,
    top_k: int = TOP_K,
    model=None,
    processor=None,
) -> dict:
    """Score a model on ``split``; returns the ``metrics.json`` content.

    ``model_path_or_name``: a ``save_pretrained`` directory, a bare ``.safetensors`` state dict (architecture
    ``base_card``, default the swin-tiny preset) or anything :func:`src.modelling.model.load_model` accepts; or pass a
    loaded
    ``model`` with its ``processor`` (then ``model_path_or_name`` is only recorded).  ``processor`` alone replaces
    the loaded model's processor (e.g. other normalisation statistics for a bare state dict).  ``predictions_out``:
    write the
    instance predictions in COCO results format (needs the ``instance`` task).
    """
    from src.progress import progress_bar

    tasks = normalise_tasks(tasks)
    if predictions_out is not None and "instance" not in tasks:
        raise ValueError("predictions_out needs the 'instance' task (COCO results are instance masks)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    state = _process_state(device)
    world, rank = state.num_processes, state.process_index
    if world > 1:  # each process its own GPU, or the CPU ("cpu", not "cpu:0": some kernels differ in the last bit)
        device = state.device if state.device.type != "cpu" else torch.device("cpu")
    else:
        device = pick_device(device)
    model_kind = None
    if model is None:
        from src.modelling.model import load_model, resolve_model_source

        model_kind = resolve_model_source(model_path_or_name)[0]
        model, loaded_processor = load_model(str(model_path_or_name), base_card=base_card, device=device)
        processor = processor or loaded_processor
    else:
        if processor is None:
            raise ValueError("a loaded model needs its processor (processor=...)")
        model.to(device)
    model.eval()
    dataset = ground_truth_dataset(data_root, split, limit)
    shard = ShardBatches(len(dataset), batch_size, rank, world)

    metrics: dict = {
        "model": str(model_path_or_name),
        "data_root": str(data_root),
        "split": split,
        "tasks": list(tasks),
        "n_images": len(dataset),
        "device": str(device),
        "n_processes": world,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "category_ids": {name: LABEL2ID[name] for name in CLASS_NAMES},
        **split_record(data_root, split),
    }
    if model_kind == "state_dict":
        warning = original_split_warning(metrics["split_membership"], split)
        if warning:
            if state.is_main_process:
                logger.warning(warning)
            metrics["warnings"] = [warning]
    for task in tasks:
        parts = []  # (batch position, this batch's results): gathered from every process, then put in order
        bar = progress_bar(
            shard.positions(), desc=f"{task} inference", disable=not (progress and state.is_main_process)
        )
        for position in bar:
            items = [dataset[i] for i in shard.batches[position]]
            sizes = [item["semantic"].shape for item in items]
            outputs = forward(model, processor, [item["image"] for item in items], task)
            if task == "semantic":
                part = image_confusions([item["semantic"] for item in items], semantic_maps(processor, outputs, sizes))
            elif task == "instance":
                part = []
                segments = hf_instance_segments(processor, outputs, sizes)
                for item, detections, image_segments in zip(
                    items, instance_predictions(outputs, sizes, top_k), segments
                ):
                    height, width = item["semantic"].shape
                    part.append(
                        (
                            {
                                "id": item["objid"],
                                "height": height,
                                "width": width,
                                "file_name": f"Dr7_{item['objid']}.jpg",
                                "objects": _instance_objects(item),
                            },
                            coco_results(item["objid"], detections),
                            original_record(image_segments, item["instance"], item["class_ids"]),
                        )
                    )
            else:
                part = []
                for item, (segments, classes) in zip(items, panoptic_segments(processor, outputs, sizes)):
                    gt_classes = {0: 0, **dict(enumerate(item["class_ids"], start=1))}
                    part.append(
                        PanopticAccumulator.match(item["instance"].astype(np.int32), gt_classes, segments, classes)
                    )
            parts.append((position, part))
        parts = _in_order(parts, world)
        if not state.is_main_process:
            continue  # the metrics are computed once, then shared
        if task == "semantic":
            per_image = np.concatenate(parts) if parts else image_confusions([], [])
            metrics["semantic"] = semantic_report(per_image)
        elif task == "instance":
            gt_images = [gt for part in parts for gt, _, _ in part]
            results = [r for part in parts for _, image_results, _ in part for r in image_results]
            metrics["instance"] = {
                "coco": coco_mask_ap(coco_ground_truth(gt_images), results),
                "top_k": top_k,
                "original_ap": original_ap([record for part in parts for _, _, record in part]),
            }
            if predictions_out is not None:
                write_json_atomic(predictions_out, results)
                metrics["instance"]["predictions_file"] = str(predictions_out)
        else:
            panoptic = PanopticAccumulator()
            for record in (record for part in parts for record in part):
                panoptic.add(record)
            metrics["panoptic"] = panoptic.scores()
    if world > 1:
        from accelerate.utils import broadcast_object_list

        metrics = broadcast_object_list([metrics], from_process=0)[0]
    return metrics


def _process_state(device):
    """Accelerate's view of the launch (``torchrun`` / ``accelerate launch``: several processes; else one)."""
    from accelerate import PartialState

    return PartialState(cpu=device is not None and torch.device(device).type == "cpu")


def _in_order(parts: list[tuple[int, object]], world: int) -> list:
    """Every process's ``(batch position, result)`` pairs -> the results in batch order (the order of one
    process, so that the metrics are the same to the last bit)."""
    if world > 1:
        from accelerate.utils import gather_object

        parts = gather_object(parts)
    return [result for _, result in sorted(parts, key=lambda pair: pair[0])]


def write_metrics(metrics: dict, path) -> Path:
    """Write ``metrics.json`` atomically (temporary file, then rename).  Written into the export folder of the
    model it scores, the folder's model card (``README.md``) is refreshed with the figures."""
    path = Path(path)
    write_json_atomic(path, metrics, indent=2)
    model = Path(str(metrics.get("model", "")))
    if model.is_dir() and model.resolve() == path.parent.resolve() and (model / "config.json").is_file():
        from src.modelling.model_card import write_model_card

        write_model_card(model, path=str(metrics["model"]))
    return path


def _fmt(value) -> str:
    return "   -  " if value is None else f"{value:.4f}"


def format_table(metrics: dict) -> str:
    """A plain-text summary: headline figures, then per-class IoU / Dice / AP / PQ / F1."""
    lines = [f"model {metrics.get('model')}  split {metrics.get('split')}  images {metrics.get('n_images')}"]
    lines += [f"WARNING: {warning}" for warning in metrics.get("warnings", [])]
    sem = metrics.get("semantic")
    if sem:
        seed, std = sem["seed_protocol"], sem["semantic"]
        lines.append(
            f"seed protocol (semantic task): mIoU {_fmt(seed['mean_iou'])}  Dice {_fmt(seed['dice'])}  "
            f"accuracy {_fmt(seed['accuracy'])}  ({seed['n_images']} images)"
        )
        lines.append(
            f"standard semantic: mIoU {_fmt(std['mean_iou'])}  mIoU galaxies {_fmt(std['mean_iou_galaxies'])}"
            f"  pixel accuracy {_fmt(std['pixel_accuracy'])}  mean Dice {_fmt(std['mean_dice'])}"
        )
    coco = (metrics.get("instance") or {}).get("coco")
    if coco:
        lines.append(
            f"COCO mask AP (instance task): AP {_fmt(coco['ap'])}  AP50 {_fmt(coco['ap50'])}  AP75 {_fmt(coco['ap75'])}"
        )
    original = (metrics.get("instance") or {}).get("original_ap")
    if original:
        lines.append(
            f"original project's AP (its 11-point routine, not COCO; compare with its table only): "
            f"AP {_fmt(original['ap'])}  ({original['n_images_without_prediction']} images without a "
            "galaxy segment)"
        )
    pan = metrics.get("panoptic")
    if pan:
        lines.append(
            f"panoptic: PQ {_fmt(pan['all']['pq'])}  SQ {_fmt(pan['all']['sq'])}  RQ {_fmt(pan['all']['rq'])}"
            f"  (things PQ {_fmt(pan['things']['pq'])})"
        )
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
