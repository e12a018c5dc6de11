"""Score a trained OneFormer on a split: the model run once per task that the evaluators need
(``src.inference.segmentation.run_model``), each batch fed to the task's evaluator (``src.evaluation.evaluators``).

* ``semantic`` task -> ``post_process_semantic_segmentation`` at the original image size -> per-image confusion
  matrices -> seed protocol, standard semantic scores, image-level classification report.
* ``instance`` task -> Mask2Former / OneFormer instance inference (top-k query x class scores over the galaxy
  classes, binary masks at logit 0 resized to the original size, score = class probability x mean mask
  probability inside the mask) -> COCO mask AP with faster-coco-eval (pycocotools is the reference).  The masks
  may overlap, as COCO allows; HF's ``post_process_instance_segmentation`` would flatten them into one map.
  Beside it, the original project's AP (``src.evaluation.metrics.original_ap``: its home-made 11-point routine,
  quirks included) from HF's ``post_process_instance_segmentation`` segments, as that project computed it.
* ``panoptic`` task -> ``post_process_panoptic_segmentation`` (background fused into one stuff segment) -> PQ.

Ground truth comes from :class:`src.data.datasets.GalaxyDataset` at native size (no resize, no augmentation): the
semantic map, the instance map (a later polygon covers an earlier one where they overlap) and the class of each
instance.  COCO ``image_id`` is the objid (18-digit ids work, see ``src.evaluation.metrics._coco_eval``), category
ids are ``src.classes`` ids.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from src.atomic import write_json_atomic
from src.classes import CLASS_NAMES, LABEL2ID
from src.data.batching import ShardBatches
from src.defaults import SCORED_TASKS, TASKS
from src.evaluation.evaluators import EVALUATORS, DatasetEvaluator, InstanceEvaluator
from src.inference.segmentation import TOP_K, pick_device, run_model

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


def task_evaluators(
    tasks: str | Sequence[str] = SCORED_TASKS, top_k: int = TOP_K, predictions_out=None
) -> list[DatasetEvaluator]:
    """The evaluator of each task (``"all"``: every task), in the canonical task order.

    Parameters
    ----------
    tasks : str or sequence of str
        Some of ``src.defaults.TASKS``, or ``"all"``.
    top_k : int
        Detections kept per image for the COCO mask AP (instance task).
    predictions_out : path-like, optional
        Where the instance evaluator writes the detections in COCO results format.

    Returns
    -------
    list of DatasetEvaluator
    """
    options = {InstanceEvaluator.task: {"top_k": top_k, "predictions_out": predictions_out}}
    return [EVALUATORS[task](**options.get(task, {})) for task in normalise_tasks(tasks)]


# ------------------------------------------------------------------------------------------ data
def ground_truth_dataset(data_root, split: str = "test", limit: int | None = None):
    """The split at native size, no augmentation; ``limit`` keeps the first ``limit`` images."""
    from src.data.datasets import GalaxyDataset

    dataset = GalaxyDataset(data_root, split, image_size=None, augment=False)
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(int(limit), len(dataset))))
    return dataset


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
    tasks: str | Sequence[str] = SCORED_TASKS,
    batch_size: int = 4,
    base_card: str | None = None,
    predictions_out=None,
    progress: bool = True,
    device=None,
    limit: int | None = None,
    top_k: int = TOP_K,
    model=None,
    processor=None,
    evaluators: Sequence[DatasetEvaluator] | None = None,
) -> dict:
    """Score a model on a split: the model runs once per task that the evaluators need, and each batch's outputs
    go to every evaluator of that task.

    Parameters
    ----------
    model_path_or_name : str or path-like
        A ``save_pretrained`` directory, a bare ``.safetensors`` state dict (architecture ``base_card``, default
        the swin-tiny preset) or anything :func:`src.modelling.model.load_model` accepts; with ``model`` given,
        only recorded.
    data_root : path-like
        The folder of the split files (``galaxy_<split>.json``) and the images.
    split : str
        The split scored.
    tasks : str or sequence of str
        Some of ``src.defaults.TASKS`` or ``"all"`` (default ``src.defaults.SCORED_TASKS``): their evaluators
        (:func:`task_evaluators`).  Ignored when ``evaluators`` is given.
    batch_size : int
        Images in one forward pass.
    base_card : str, optional
        Architecture of a bare state dict.
    predictions_out : path-like, optional
        Write the instance detections there in COCO results format (needs the ``instance`` task).
    progress : bool
        Show a progress bar per task.
    device : str or torch.device, optional
        Default: CUDA, else MPS, else CPU; under ``torchrun`` / ``accelerate launch`` each process's own.
    limit : int, optional
        Score only the first ``limit`` images.
    top_k : int
        Detections kept per image for the COCO mask AP.
    model, processor : optional
        A loaded model with its processor; ``processor`` alone replaces the loaded model's processor (e.g. other
        normalisation statistics for a bare state dict).
    evaluators : sequence of DatasetEvaluator, optional
        The evaluators to feed (``src.evaluation.evaluators``), in place of those of ``tasks``.

    Returns
    -------
    dict
        The ``metrics.json`` content: what was scored (model, split, its file and SHA-256, tasks, ``n_images``,
        device, ``n_processes``, creation time, category ids, warnings), and each evaluator's metrics under its
        ``name``.  Every process gets the same dict.
    """
    from src.progress import progress_bar

    if evaluators is None:
        evaluators = task_evaluators(tasks, top_k, predictions_out)
    elif predictions_out is not None:
        raise ValueError("predictions_out is an option of the instance evaluator: give it to InstanceEvaluator")
    tasks = tuple(dict.fromkeys(evaluator.task for evaluator in evaluators))
    if predictions_out is not None and InstanceEvaluator.task not in tasks:
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
        mine = [evaluator for evaluator in evaluators if evaluator.task == task]
        outputs = tuple(dict.fromkeys(name for evaluator in mine for name in evaluator.outputs))
        for evaluator in mine:
            evaluator.reset()
        bar = progress_bar(shard, desc=f"{task} inference", disable=not (progress and state.is_main_process))
        for batch in bar:
            items = [{**dataset[i], "index": i} for i in batch]
            results = run_model(
                model, processor, [item["image"] for item in items], task, outputs, batch_size=len(items), top_k=top_k
            )
            for evaluator in mine:
                evaluator.process(items, results)
        for evaluator in mine:
            result = evaluator.evaluate()  # every process gathers; the main one computes the metrics
            if result is not None:
                metrics[evaluator.name] = result
    if world > 1:
        from accelerate.utils import broadcast_object_list

        metrics = broadcast_object_list([metrics], from_process=0)[0]
    return metrics


def _process_state(device):
    """Accelerate's view of the launch (``torchrun`` / ``accelerate launch``: several processes; else one)."""
    from accelerate import PartialState

    return PartialState(cpu=device is not None and torch.device(device).type == "cpu")


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
