"""The model card of an export: ``README.md`` in the folder, as Hugging Face model repositories have it.

YAML metadata first (``library_name``, ``pipeline_tag``, ``tags``, ``model-index`` with the scores of
``metrics.json``), then the sections of the HF model card template: model details, intended use, training data,
training procedure, evaluation, limitations, how to load, citation.  Everything comes from the files of the
export (``config.json``, ``train_config.json``, ``training_data.json``, ``loss_history.csv``, ``metrics.json``), so
the card can be rewritten at any time (:func:`write_model_card`): ``save_export`` writes it, and scoring that writes
``metrics.json`` into the export refreshes it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from src.atomic import write_text_atomic
from src.classes import ABBREVIATIONS, GALAXY_CLASSES

CARD = "README.md"
#: Where the synthetic generator's objids start (``src.synthetic.hart16.OBJID_BASE``); real SDSS DR7 objids
#: start with 587 or 588.
SYNTHETIC_OBJID_BASE = 900_000_000_000_000_000
REAL_OBJID_PREFIXES = ("587", "588")


def data_origin(objids) -> str:
    """``"synthetic"`` (every objid in the generator's id space), ``"real"`` (every one an SDSS DR7 objid) or
    ``"unknown"``."""
    objids = [int(o) for o in objids]
    if objids and all(o >= SYNTHETIC_OBJID_BASE for o in objids):
        return "synthetic"
    if objids and all(str(o).startswith(REAL_OBJID_PREFIXES) for o in objids):
        return "real"
    return "unknown"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _parameters(folder: Path) -> int | None:
    """Parameter count from the safetensors header (no weights loaded)."""
    from safetensors import safe_open

    path = folder / "model.safetensors"
    if not path.is_file():
        return None
    total = 0
    with safe_open(str(path), framework="numpy") as fh:
        for key in fh.keys():
            count = 1
            for dim in fh.get_slice(key).get_shape():
                count *= dim
            total += count
    return total


def _f(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _model_index(name: str, metrics: dict, dataset: str) -> list[dict]:
    """HF ``model-index`` results from ``metrics.json``."""
    split = metrics.get("split", "test")
    data = {"name": dataset, "type": "galaxy-zoo-2", "split": split}
    results = []
    sem = metrics.get("semantic") or {}
    if sem:
        seed, std = sem["seed_protocol"], sem["semantic"]
        results.append(
            {
                "task": {"type": "image-segmentation", "name": "Semantic segmentation"},
                "dataset": data,
                "metrics": [
                    m
                    for m in (
                        {"type": "mean_iou", "name": "mIoU (seed protocol)", "value": seed["mean_iou"]},
                        {"type": "dice", "name": "Dice (seed protocol)", "value": seed["dice"]},
                        {"type": "accuracy", "name": "image class accuracy", "value": seed["accuracy"]},
                        {"type": "mean_iou", "name": "mIoU (all pixels, 6 classes)", "value": std["mean_iou"]},
                    )
                    if m["value"] is not None
                ],
            }
        )
    instance = metrics.get("instance") or {}
    if instance:
        coco, original = instance.get("coco") or {}, instance.get("original_ap") or {}
        results.append(
            {
                "task": {"type": "image-segmentation", "name": "Instance segmentation"},
                "dataset": data,
                "metrics": [
                    m
                    for m in (
                        {"type": "mean_average_precision", "name": "COCO mask AP .5:.95", "value": coco.get("ap")},
                        {"type": "mean_average_precision", "name": "COCO mask AP50", "value": coco.get("ap50")},
                        {
                            "type": "mean_average_precision",
                            "name": "original project's 11-point AP",
                            "value": original.get("ap"),
                        },
                    )
                    if m["value"] is not None
                ],
            }
        )
    panoptic = (metrics.get("panoptic") or {}).get("all") or {}
    if panoptic.get("pq") is not None:
        results.append(
            {
                "task": {"type": "image-segmentation", "name": "Panoptic segmentation"},
                "dataset": data,
                "metrics": [{"type": "pq", "name": "PQ", "value": panoptic["pq"]}],
            }
        )
    return [{"name": name, "results": results}] if results else []


def model_card(folder, path: str | None = None) -> str:
    """The card's Markdown (with YAML front matter) from the export's files; ``path``: how to name the export
    (default: the folder; ``save_export`` passes the final path while it writes into a staging folder)."""
    folder = Path(folder)
    path = str(path or folder)
    config = _read_json(folder / "config.json")
    train = _read_json(folder / "train_config.json")
    data = _read_json(folder / "training_data.json")
    metrics = _read_json(folder / "metrics.json")
    history = list(csv.DictReader(open(folder / "loss_history.csv"))) if (folder / "loss_history.csv").is_file() else []
    name = Path(path).name
    origin = data.get("origin", "unknown")
    synthetic = origin == "synthetic"
    dataset = {"synthetic": "Galaxy Zoo 2, synthetic (src.synthetic)", "real": "Galaxy Zoo 2 (SDSS DR7 cutouts)"}.get(
        origin, "Galaxy Zoo 2 format, origin not recorded"
    )

    tags = ["oneformer", "image-segmentation", "astronomy", "galaxy-morphology", "galaxy-zoo"]
    if synthetic:
        tags.append("synthetic-data")
    meta = {"library_name": "transformers", "pipeline_tag": "image-segmentation", "tags": tags}
    index = _model_index(name, metrics, dataset)
    if index:
        meta["model-index"] = index
    backbone = config.get("backbone_config") or {}
    params = _parameters(folder)

    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name}", ""]
    if synthetic:
        lines += [
            "> **Trained on synthetic data** (the project's GalSim Galaxy Zoo 2 generator, `src.synthetic`), not "
            "on real SDSS cutouts: its scores say nothing about real galaxies.",
            "",
        ]
    lines += [
        "OneFormer (Jain et al. 2023, Hugging Face `transformers`) fine-tuned to segment the central galaxy of a "
        "Galaxy Zoo 2 SDSS cutout and classify it into 5 morphological classes (Willett et al. 2013 `gz2_class` "
        "strings, Hart et al. 2016 catalog, reduced as in `src/classes.py`).",
        "",
        "## Model details",
        "",
        f"- Architecture: `OneFormerForUniversalSegmentation`, Swin backbone (embed dim {backbone.get('embed_dim')}, "
        f"depths {backbone.get('depths')}), {config.get('num_queries')} queries"
        + (f", {params / 1e6:.1f} M parameters (text mapper excluded)" if params else ""),
        f"- Started from: `{train.get('model_card', 'unknown')}`"
        + (f" (recipe `{train['recipe']}`)" if train.get("recipe") else ""),
        "- Labels: 0 background, "
        + ", ".join(f"{i} {c} ({ABBREVIATIONS[c]})" for i, c in enumerate(GALAXY_CLASSES, start=1)),
        "- Tasks: conditioned on `semantic`, `instance` or `panoptic` (OneFormer's task token)",
        "",
        "## Intended use",
        "",
        "Research on galaxy morphology: pixel masks and a 5-class morphology for the central galaxy of 256 × 256 "
        "SDSS gri cutouts in the Galaxy Zoo 2 style (`Dr7_<objid>.jpg`), and a reproducible baseline for "
        "segmentation on astronomical images. Not for other surveys, pixel scales or colour stretches without "
        "checking, and not for any decision about individual objects without inspection.",
        "",
        "## Training data",
        "",
        f"- {dataset}; data root `{data.get('data_root', train.get('data_root'))}`"
        + (
            f", {data['train_images']} training and {data['val_images']} validation images"
            if "train_images" in data
            else ""
        ),
    ]
    membership = data.get("split_membership") or {}
    if membership.get("method") == "reference":
        lines.append(
            "- Split membership taken from reference split files (`--splits-from`): "
            + ", ".join(f"{k} = `{v['file']}`" for k, v in membership["splits_from"].items())
        )
    elif membership.get("method") == "stratified":
        lines.append(f"- Class-stratified 70/20/10 split, seed {membership.get('seed')}")
    lines += ["", "## Training procedure", ""]
    if train:
        keys = (
            "task",
            "epochs",
            "batch_size",
            "image_size",
            "crop_size",
            "lr",
            "weight_decay",
            "grad_clip",
            "warmup_steps",
            "poly_power",
            "grad_accum",
            "mixed_precision",
            "ema_decay",
            "seed",
            "augment",
            "max_minutes",
        )
        lines += ["| setting | value |", "|---|---|"] + [f"| `{k}` | {train.get(k)} |" for k in keys]
        lines += [
            "",
            "AdamW, linear warmup then polynomial decay (power 0.9), gradient clipping; flips and 90° "
            "rotations when `augment`. The full configuration is `train_config.json` (re-run it with "
            "`python train_script.py --config train_config.json`).",
        ]
    else:
        lines.append("Not recorded (exported outside `train_script.py`).")
    if history:
        last = history[-1]
        lines += [
            "",
            f"{len(history)} epochs, {last.get('step')} optimiser steps; last train loss "
            f"{float(last['train_loss']):.4f}, validation loss {float(last['val_loss']):.4f} "
            "(`loss_history.csv`, `loss_curve.png`).",
        ]
    lines += ["", "## Evaluation", ""]
    if metrics:
        sem = metrics.get("semantic") or {}
        seed = sem.get("seed_protocol") or {}
        instance = metrics.get("instance") or {}
        coco, original = instance.get("coco") or {}, instance.get("original_ap") or {}
        lines += [
            f"On the `{metrics.get('split')}` split of `{metrics.get('data_root')}` ({metrics.get('n_images')} "
            f"images; split file SHA-256 `{str(metrics.get('split_sha256'))[:16]}…`), from `metrics.json`:",
            "",
            "| metric | value |",
            "|---|---|",
            f"| mIoU, seed protocol (semantic task) | {_f(seed.get('mean_iou'))} |",
            f"| Dice, seed protocol | {_f(seed.get('dice'))} |",
            f"| image class accuracy | {_f(seed.get('accuracy'))} |",
            f"| COCO mask AP .5:.95 (instance task) | {_f(coco.get('ap'))} |",
            f"| COCO mask AP50 | {_f(coco.get('ap50'))} |",
            f"| original project's 11-point AP (its own routine, not COCO) | {_f(original.get('ap'))} |",
            "",
        ]
        if synthetic:
            lines += ["These are scores on synthetic test images.", ""]
    else:
        lines += [
            "Not scored yet: `python compute_scores.py --model THIS_FOLDER --out THIS_FOLDER/metrics.json` "
            "adds the figures here.",
            "",
        ]
    lines += [
        "## Limitations",
        "",
        *(
            [
                "- Trained on synthetic data: real SDSS cutouts differ (noise, PSF, neighbours, colours); expect lower "
                "scores on them."
            ]
            if synthetic
            else []
        ),
        "- Galaxy Zoo 2 labels are citizen-science votes reduced to one class per galaxy; the classes are "
        "imbalanced (artifacts are rare, ellipticals common).",
        "- One annotated galaxy per cutout in training: other objects in a frame are background to the model.",
        "- The spiral / barred spiral distinction rests on faint bars and is the least reliable.",
        "",
        "## How to load",
        "",
        "```python",
        "from transformers import OneFormerForUniversalSegmentation, OneFormerProcessor",
        f'model = OneFormerForUniversalSegmentation.from_pretrained("{path}")',
        f'processor = OneFormerProcessor.from_pretrained("{path}")',
        "```",
        "",
        "## Citation",
        "",
        "Please cite the data and method papers listed in the project's `CITATION.cff`: Willett et al. 2013 "
        "(Galaxy Zoo 2), Hart et al. 2016 (the GZ2 catalog), Jain et al. 2023 (OneFormer), and the "
        "hfarias/mask_galaxy annotations.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(folder, path: str | None = None) -> Path:
    """Write (or refresh) ``README.md`` in the export ``folder``, atomically (``path``: see :func:`model_card`)."""
    return write_text_atomic(Path(folder) / CARD, model_card(folder, path))
