"""Fine-tune OneFormer on the galaxy splits: one readable Accelerate loop, resumable and exactly reproducible.

    python train_script.py --data-root DIR --model-card galaxy-small --task semantic --epochs N \
        --batch-size B --image-size S --output safetensors/NAME [--end-epoch M] [--resume-epoch K | --resume latest]

Accelerate gives CPU / one GPU / several GPUs (``accelerate launch train_script.py ...``), bf16/fp16 mixed precision
and gradient accumulation.  AdamW (lr 1e-4, weight decay 0.1), gradient clipping 1.0, linear warmup then
polynomial decay (power 0.9) to 0 over the whole N-epoch schedule (``--end-epoch`` stops early without
changing the schedule, so the stopped run is a prefix of the full one).

Output (``--output safetensors/NAME``): the export and, beside it, the run's working state::

    NAME/        the export, written to a folder beside it and then put in its place as a whole
                 (``src.atomic.replace_folder``): config.json, model.safetensors, processor and tokenizer files,
                 galaxy_class_info.json, train_config.json, training_data.json, loss_history.csv, loss_curve.png,
                 README.md (the model card, ``src.modelling.model_card``); scoring adds metrics.json there
    NAME.run/    the training run: checkpoints/epoch_K/ (weights in safetensors, optimizer, scheduler, RNG states,
                 train_state.json with epoch, step, history, the full training config and the data fingerprint;
                 renamed into place atomically, so a killed run never leaves a partial epoch_K),
                 loss_history.csv, loss_curve.png, train_config.json (updated during training)

Keeping the run apart lets the export be replaced whole: a re-export never mixes files of two models, and never
touches the checkpoints.  An existing ``--output`` folder that is not an export (other files, or checkpoints of the
former layout) is refused before training starts, since the export would replace it.

Exact resume: the data order, augmentations and random tasks are functions of (seed, epoch, index), the model's
random draws of (seed, epoch, batch position), and the RNG states are checkpointed after validation, so N epochs
straight and (M epochs, stop, resume from M) give the same weights on CPU.

Several processes (``accelerate launch`` / ``torchrun``): process r of N trains on the batches r, r + N, ... of
each epoch's order (whole global batches only) and validates on the validation batches r, r + N, ...; N processes
with batch size B compute what one process computes with batch size B and ``--grad-accum N`` (bit-identical on
CPU, tests/test_distributed.py).  See :func:`freeze_unused_parameters` and :func:`count_masks_per_process` for the
two changes to the model that this needs.

Time budget (``--max-minutes``): after a few optimiser steps the run measures its speed and, if the planned
schedule does not fit, shortens the schedule's horizon to the steps that fit in the budget less a reserve for
the last validation and the export (15 %, then 1.25 x the measured validation pass + 2 %), so warmup + polynomial
decay still ends near lr 0 when time is up; the horizon
is refitted every 10 steps to the mean speed so far (validation included), and a default warmup keeps its 5 %
share of the fitted horizon.  Training
stops at that horizon or at the budget, validates, and exports.  A budget-limited run is not meant to be resumed
exactly (its horizon depends on the measured speed).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from src.atomic import atomic_open, atomic_path, replace_folder, write_json_atomic
from src.classes import CLASS_NAMES, NUM_LABELS
from src.data.datasets import (
    CocoFieldDataset,
    GalaxyDataset,
    ShardBatches,
    load_coco_fields,
    load_stats,
    loader_worker_init,
)
from src.modelling.model import HUB_SWIN_TINY, PRESETS, check_export_folder, load_model, save_export, set_training_mode
from src.modelling.patches import attention_kernels, count_masks_per_process, freeze_unused_parameters

#: The two models of the original project (fine-tuned from the hub weights, 150 queries, swin-tiny).
RECIPES: dict[str, dict] = {
    "sem_only": dict(model_card=HUB_SWIN_TINY, task="semantic", epochs=5, batch_size=1, num_queries=150),
    "sem_inst": dict(model_card=HUB_SWIN_TINY, task="random", epochs=10, batch_size=2, num_queries=150),
}


logger = logging.getLogger(__name__)


def _info(accelerator, message: str, level: int = logging.INFO) -> None:
    """A log line from the main process only (several processes would repeat it)."""
    if accelerator.is_local_main_process:
        logger.log(level, message)


#: Default warmup, as a share of the optimiser steps of the schedule.
WARMUP_FRACTION = 0.05
#: Share of a time budget kept for the last validation and the export until a validation pass has been timed;
#: then 1.25 x that pass + 2 % of the budget (never more than this share).
BUDGET_RESERVE = 0.15


@dataclass
class TrainConfig:
    data_root: str = "."
    output: str | None = None
    model_card: str = "galaxy-small"
    base_card: str | None = None
    recipe: str | None = None
    task: str = "semantic"
    random_tasks: tuple[str, ...] = ("semantic", "instance")  # task "random" draws from these; repeat one to weight it
    epochs: int = 5
    end_epoch: int | None = None
    batch_size: int = 2
    image_size: int | None = None
    crop_size: int | None = None  # train on crops of this side at native resolution (validation: centre crops)
    num_queries: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    warmup_steps: int | None = None  # default: WARMUP_FRACTION (5 %) of the schedule (of a budget-fitted one), >= 1
    poly_power: float = 0.9
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    augment: bool = True
    in_memory: bool = False
    skip_bad: bool = False
    num_workers: int = 0
    resume: str | None = None  # "latest" or an epoch number
    max_minutes: float | None = None
    val_split: str = "val"
    cpu: bool = False
    coco: str | None = None  # train on crops of the fields of this COCO file instead of the cutout splits
    val_coco: str | None = None  # validation fields (default: every 5th image of ``coco``)
    crops_per_image: int = 16  # COCO fields: crops per image and epoch
    class_balance: float = 0.0  # draw training images with weight (share of their class) ** -class_balance
    ema_decay: float = 0.0  # export an exponential moving average of the weights (decay per step); 0: off
    val_limit: int | None = None  # validate on the first N images of the validation split only (default: all)


# ----------------------------------------------------------------------------------------------- schedule
class WarmupPolyLR:
    """LR factor: linear warmup over ``warmup`` steps, then ``(1 - progress) ** power`` down to 0 at ``total``.

    A callable object (not a lambda) so that ``LambdaLR.state_dict`` saves ``total``, which a time budget may
    shorten during the run.
    """

    def __init__(self, warmup: int, total: int, power: float = 0.9):
        self.warmup, self.total, self.power = int(warmup), int(total), float(power)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        span = max(1, self.total - self.warmup)
        return max(0.0, 1.0 - (step - self.warmup) / span) ** self.power


class EpochSampler(Sampler):
    """Shuffled order that depends only on (seed, epoch): identical in a straight and in a resumed run.

    ``multiple``: yield only the first ``n - n % multiple`` indices of the order.  With several processes this is
    the global batch (batch size x processes), so that Accelerate's per-process shards of the batches are whole,
    disjoint and never padded with repeated images; the few left-over images differ from epoch to epoch.
    ``weights``: instead of a permutation, draw ``n`` indices with replacement, index ``i`` with probability
    proportional to ``weights[i]`` (:func:`class_balance_weights`).
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, multiple: int = 1, weights=None):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.multiple = max(1, int(multiple))
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and (len(self.weights) != n or not bool((self.weights > 0).all())):
            raise ValueError(f"sampler weights: expected {n} positive weights, got {len(self.weights)}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        if not self.shuffle:
            order = range(self.n)
        else:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            if self.weights is None:
                order = torch.randperm(self.n, generator=generator).tolist()
            else:
                order = torch.multinomial(self.weights, self.n, replacement=True, generator=generator).tolist()
        return iter(order[: len(self)])

    def __len__(self) -> int:
        return self.n - self.n % self.multiple


def class_balance_weights(image_classes: list[int], power: float) -> tuple[np.ndarray, dict[int, float]]:
    """Per-image sampling weights ``share(class) ** -power`` (0: uniform; 1: every class drawn equally often) and
    the expected share of each class among the drawn images.  ``image_classes``: one class id per image."""
    classes, counts = np.unique(np.asarray(image_classes), return_counts=True)
    share = dict(zip(classes.tolist(), (counts / counts.sum()).tolist()))
    weights = np.array([share[c] ** -power for c in image_classes])
    drawn = {c: share[c] * len(image_classes) * share[c] ** -power / weights.sum() for c in share}
    return weights, drawn


def batch_seed(seed: int, epoch: int, position: int, stream: int = 0) -> int:
    """Seed of the model's random draws (dropout, the loss's point sampling) for one batch.

    ``position`` is the batch's place in the whole epoch (process ``r`` of ``N`` runs batches ``r, r + N, ...``),
    so N processes draw what one process with ``--grad-accum N`` draws for the same batches.  ``stream``: 0 =
    training, 1 = validation.
    """
    return int(np.random.SeedSequence([seed, epoch, stream, position]).generate_state(1)[0])


# ----------------------------------------------------------------------------------------------- checkpoints
def run_dir(output) -> Path:
    """The working state of the run that exports to ``output``: ``OUTPUT.run/`` beside the export folder."""
    output = Path(output)
    return output.with_name(output.name + ".run")


def checkpoint_dir(output, epoch: int) -> Path:
    return run_dir(output) / "checkpoints" / f"epoch_{epoch}"


def list_checkpoints(output) -> dict[int, Path]:
    """Complete checkpoints by epoch (temporary ``.epoch_K.tmp*`` folders of a killed save are ignored)."""
    root = run_dir(output) / "checkpoints"
    found = {}
    if root.is_dir():
        for path in root.iterdir():
            name = path.name
            if name.startswith("epoch_") and name[6:].isdigit() and (path / "train_state.json").is_file():
                found[int(name[6:])] = path
    return found


def find_checkpoint(output, which) -> Path:
    """``which`` = ``"latest"`` or an epoch number; a clear error when it does not exist."""
    found = list_checkpoints(output)
    if not found:
        raise FileNotFoundError(f"{run_dir(output) / 'checkpoints'}: no complete checkpoint to resume from")
    if str(which) == "latest":
        return found[max(found)]
    epoch = int(which)
    if epoch not in found:
        raise FileNotFoundError(f"{checkpoint_dir(output, epoch)}: no such checkpoint; have epochs {sorted(found)}")
    return found[epoch]


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def save_checkpoint(accelerator, output, epoch: int, state: dict, model_config=None) -> Path:
    """Write the full training state to a temporary folder, then rename it to ``checkpoints/epoch_K``."""
    final = checkpoint_dir(output, epoch)
    tmp = final.parent / f".{final.name}.tmp"
    if accelerator.is_main_process:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        if model_config is not None:
            model_config.to_json_file(str(tmp / "model_config.json"))
        write_json_atomic(tmp / "train_state.json", state, indent=1)  # written last: marks the folder complete
        _fsync_tree(tmp)
        replace_folder(tmp, final)  # re-running an epoch replaces the old folder as a whole
    accelerator.wait_for_everyone()
    return final


#: Files of the run folder copied into each export.
RUN_FILES = ("train_config.json", "loss_history.csv", "loss_curve.png")


def training_data(cfg: TrainConfig, train_ds, val_ds, fingerprint: dict) -> dict:
    """What the export records of its training data (``training_data.json``, read by the model card)."""
    from src.data.splits import read_manifest
    from src.modelling.model_card import data_origin

    if cfg.coco is not None:
        origin, membership = "fields (COCO)", None
    else:
        origin = data_origin([record["objid"] for record in train_ds.records])
        membership = (read_manifest(cfg.data_root) or {}).get("membership")
    return {
        "data_root": str(cfg.data_root),
        "coco": cfg.coco,
        "origin": origin,
        "train_images": len(train_ds),
        "val_images": len(val_ds),
        "split_membership": membership,
        "data_fingerprint": fingerprint,
    }


# ----------------------------------------------------------------------------------------------- history
HISTORY_FIELDS = ["epoch", "step", "train_loss", "val_loss", "lr", "seconds", "images_per_second", "partial"]


def write_history(output, history: list[dict]) -> None:
    output = Path(output)
    with atomic_open(output / "loss_history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)
    plot_history(history, output / "loss_curve.png")


def plot_history(history: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train (incl. contrastive)")
    ax.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("OneFormer loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- config
def explicit_options(args_or_config) -> dict:
    """The options a caller gave: a namespace's values that are not ``None`` (the CLI's defaults are ``None``),
    a dict's items, or a ``TrainConfig``'s values that differ from the defaults."""
    if isinstance(args_or_config, TrainConfig):
        defaults = asdict(TrainConfig())
        return {k: v for k, v in asdict(args_or_config).items() if v != defaults[k]}
    if isinstance(args_or_config, dict):
        return dict(args_or_config)
    return {k: v for k, v in vars(args_or_config).items() if v is not None}


def _check_names(values: dict, where: str) -> None:
    unknown = set(values) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{where}unknown training options: {', '.join(sorted(unknown))}")


def _layer(values: dict, layer: dict) -> None:
    """Apply one layer of options: its recipe's values first, then its own values that are not ``None``."""
    recipe = layer.get("recipe")
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
        values.update(RECIPES[recipe])
    values.update({k: v for k, v in layer.items() if v is not None})


def resolve_config(args_or_config, base: dict | None = None) -> TrainConfig:
    """``TrainConfig`` from a namespace / dict / TrainConfig: defaults < ``base`` (a recorded configuration,
    ``--config``) < recipe < explicitly given values (:func:`explicit_options`).

    For a ``TrainConfig`` object, "given" means different from the default; pass a dict to override a recipe
    with a value that equals the default.
    """
    given = explicit_options(args_or_config)
    _check_names(given, "")
    values: dict = {}
    if base:
        _check_names(base, "")
        _layer(values, base)
    _layer(values, given)
    if values.get("random_tasks") is not None:
        values["random_tasks"] = tuple(values["random_tasks"])  # JSON (train_state.json) gives a list
    config = TrainConfig(**values)
    if config.output is None:
        stem = config.recipe or f"{Path(config.model_card).stem}-{config.task}"
        config.output = str(Path("safetensors") / stem)
    if config.end_epoch is not None and not 1 <= config.end_epoch <= config.epochs:
        raise ValueError(f"--end-epoch {config.end_epoch} must lie in 1..{config.epochs}")
    if config.epochs < 1 or config.batch_size < 1 or config.grad_accum < 1:
        raise ValueError("epochs, batch size and gradient accumulation must be >= 1")
    if not 0 <= config.class_balance <= 1:
        raise ValueError(f"--class-balance {config.class_balance:g} must lie in 0..1")
    if config.val_limit is not None and config.val_limit < 1:
        raise ValueError(f"--val-limit {config.val_limit} must be >= 1 (leave it out to validate on every image)")
    return config


def load_config_file(path) -> dict:
    """A recorded configuration (``train_config.json`` of a run, or a hand-written subset) for ``--config``.

    Its ``resume`` entry is dropped (resuming is a decision of the new command line).  Unknown keys are an error
    naming the file."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: configuration file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON configuration ({err})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of training options, got {type(values).__name__}")
    _check_names(values, f"{path}: ")
    values.pop("resume", None)
    return values


#: Options that must not change between a run and its resumption (they change the schedule, the data or the
#: numerics).  The split content is checked too (:func:`data_fingerprint`).
_RESUME_FIXED = (
    "data_root",
    "model_card",
    "base_card",
    "task",
    "random_tasks",
    "epochs",
    "batch_size",
    "image_size",
    "crop_size",
    "num_queries",
    "lr",
    "weight_decay",
    "grad_clip",
    "warmup_steps",
    "poly_power",
    "grad_accum",
    "mixed_precision",
    "seed",
    "augment",
    "skip_bad",
    "val_split",
    "coco",
    "val_coco",
    "crops_per_image",
    "class_balance",
    "ema_decay",
)
#: Options of one invocation: a resumed run does not take them from the checkpoint.
_PER_RUN = ("resume", "end_epoch", "max_minutes", "cpu", "num_workers")


def _comparable(name: str, value):
    if name == "data_root" and value is not None:
        return os.path.abspath(value)
    return list(value) if isinstance(value, (list, tuple)) else value


def resume_config(saved: dict, requested: dict, where) -> TrainConfig:
    """The configuration of a resumed run: the checkpoint's recorded one (``saved``), except the options of
    :data:`_PER_RUN`, with the ``requested`` options (those the user gave) on top.  A requested option of
    :data:`_RESUME_FIXED` that differs from the recorded one is refused, by name."""
    defaults = asdict(TrainConfig())  # options added since the checkpoint was written had their defaults
    recorded = {**defaults, **{k: v for k, v in saved.items() if k in defaults}}
    expanded: dict = {}  # a --recipe given on the resume command line stands for the values it sets
    _layer(expanded, requested)
    changed = [k for k in _RESUME_FIXED if k in expanded and _comparable(k, expanded[k]) != _comparable(k, recorded[k])]
    if changed:
        raise ValueError(
            f"cannot resume from {where}: options changed since the run started: "
            + ", ".join(f"{k} {recorded[k]!r} -> {expanded[k]!r}" for k in changed)
        )
    inherited = {k: v for k, v in recorded.items() if k not in _PER_RUN}
    return resolve_config({**inherited, **requested})


def data_fingerprint(cfg: TrainConfig) -> dict[str, str | None]:
    """SHA-256 of the files a training reads besides the images: the split files (an error naming one that is
    absent) and ``dataset_stats.json`` (``None`` when absent), or the COCO files of a ``coco`` training."""
    from src.data.datasets import require_split_file
    from src.data.splits import file_sha256

    if cfg.coco is not None:
        files = [Path(f) for f in (cfg.coco, cfg.val_coco) if f is not None]
    else:
        files = [require_split_file(cfg.data_root, s) for s in ("train", cfg.val_split)]
    files.append(Path(cfg.data_root) / "dataset_stats.json")
    return {f.name: (file_sha256(f) if f.is_file() else None) for f in files}


def _check_fingerprint(saved: dict | None, now: dict, where) -> None:
    if saved is None:  # a checkpoint written before fingerprints were recorded
        return
    changed = [name for name in sorted(set(saved) | set(now)) if saved.get(name) != now.get(name)]
    if changed:
        short = lambda d: "absent" if d is None else d[:12]  # noqa: E731
        raise ValueError(
            f"cannot resume from {where}: the data changed since the run started: "
            + ", ".join(f"{n} {short(saved.get(n))} -> {short(now.get(n))}" for n in changed)
        )


#: Crop side (px) of COCO fields when ``crop_size`` is not given.
FIELD_CROP = 256


# ----------------------------------------------------------------------------------------------- data
def build_datasets(cfg: TrainConfig, processor):
    """``(train, validation)`` datasets: the cutout splits under ``data_root``, or with ``coco`` crops of annotated
    fields (``src.data.datasets.CocoFieldDataset``; validation: ``val_coco``, else every 5th image of ``coco``)."""
    val_task = "semantic" if cfg.task == "random" else cfg.task
    if cfg.coco is None:
        train_ds = GalaxyDataset(
            cfg.data_root,
            "train",
            processor,
            task=cfg.task,
            image_size=cfg.image_size,
            augment=cfg.augment,
            in_memory=cfg.in_memory,
            skip_bad=cfg.skip_bad,
            seed=cfg.seed,
            crop_size=cfg.crop_size,
            random_tasks=cfg.random_tasks,
        )
        val_ds = GalaxyDataset(
            cfg.data_root,
            cfg.val_split,
            processor,
            task=val_task,
            image_size=cfg.image_size,
            augment=False,
            in_memory=cfg.in_memory,
            skip_bad=cfg.skip_bad,
            seed=cfg.seed,
            crop_size=cfg.crop_size,
        )
        return train_ds, val_ds
    common = dict(
        crop_size=cfg.crop_size or FIELD_CROP,
        crops_per_image=cfg.crops_per_image,
        image_size=cfg.image_size,
        in_memory=cfg.in_memory,
        skip_bad=cfg.skip_bad,
        seed=cfg.seed,
    )
    train_ids = val_ids = None
    if cfg.val_coco is None:
        ids = [record["id"] for record in load_coco_fields(cfg.coco)]
        if len(ids) < 2:
            raise ValueError(
                f"{cfg.coco}: a single image cannot be split into training and validation fields; "
                "give validation fields with --val-coco"
            )
        val_ids = ids[4::5] or ids[-1:]
        train_ids = [i for i in ids if i not in set(val_ids)]
    train_ds = CocoFieldDataset(
        cfg.coco,
        processor,
        task=cfg.task,
        augment=cfg.augment,
        random_tasks=cfg.random_tasks,
        image_ids=train_ids,
        **common,
    )
    val_ds = CocoFieldDataset(
        cfg.val_coco or cfg.coco, processor, task=val_task, augment=False, image_ids=val_ids, **common
    )
    return train_ds, val_ds


# ----------------------------------------------------------------------------------------------- training
def train(args_or_config, base: dict | None = None) -> dict:
    """Run (or resume) a training; returns ``{"output", "history", "checkpoint", "stopped_by_budget"}``.

    ``args_or_config``: the options given (see :func:`resolve_config`); ``base``: a recorded configuration they
    override (``--config``).  Resuming (``resume``) takes every option not given from the checkpoint's recorded
    configuration (:func:`resume_config`) and refuses changed split files (:func:`data_fingerprint`)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import set_seed

    from src.progress import progress_bar

    given = explicit_options(args_or_config)
    resume_dir = saved_state = None
    if given.get("resume") is not None:
        requested = {k: v for k, v in {**(base or {}), **given}.items() if v is not None}
        # the output locates the checkpoint; the other options are checked against the recorded ones after
        where = resolve_config({k: v for k, v in requested.items() if k != "end_epoch"}).output
        resume_dir = find_checkpoint(where, requested["resume"])
        saved_state = json.loads((resume_dir / "train_state.json").read_text())
        cfg = resume_config(saved_state["config"], requested, resume_dir)
    else:
        cfg = resolve_config(given, base)
        earlier = list_checkpoints(cfg.output)
        if earlier:  # a fresh run would mix its checkpoints with those of the earlier one
            raise ValueError(
                f"{run_dir(cfg.output)} holds checkpoints of an earlier run (epochs {sorted(earlier)}): "
                "continue it with --resume latest, or delete that folder (or choose another --output) "
                "to start afresh"
            )
    check_export_folder(cfg.output)
    start_time = time.monotonic()
    output = Path(cfg.output)
    fingerprint = data_fingerprint(cfg)
    if saved_state is not None:
        _check_fingerprint(saved_state.get("data_fingerprint"), fingerprint, resume_dir)
    # Accelerate keeps one state per process; a second run in this process (a notebook, the tests) may ask for
    # another precision, which that state refuses unless it is cleared (the process group is kept).
    AcceleratorState._reset_state()
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum, cpu=cfg.cpu
    )
    set_seed(cfg.seed)

    if saved_state is not None:
        saved_processes = saved_state.get("num_processes", 1)
        if saved_processes != accelerator.num_processes:
            raise ValueError(
                f"cannot resume from {resume_dir}: it was trained with {saved_processes} process(es), "
                f"this run has {accelerator.num_processes} (the global batch and the schedule would "
                "change); launch it with the same number of processes"
            )

    stats = load_stats(cfg.data_root)
    mean, std = stats if stats is not None else (None, None)
    if stats is None:
        _info(
            accelerator,
            f"{Path(cfg.data_root) / 'dataset_stats.json'} not found; normalising with the real GZ2 cutout mean/std",
            logging.WARNING,
        )
    model, processor = load_model(
        cfg.model_card,
        base_card=cfg.base_card,
        num_queries=cfg.num_queries,
        image_size=cfg.image_size,
        mean=mean,
        std=std,
    )
    if model.config.num_labels != NUM_LABELS:
        raise ValueError(f"{cfg.model_card}: model has {model.config.num_labels} labels, expected {NUM_LABELS}")
    freeze_unused_parameters(model)
    count_masks_per_process(model)

    train_ds, val_ds = build_datasets(cfg, processor)
    for ds in (train_ds, val_ds):
        if ds.skipped:
            _info(
                accelerator,
                f"skipped {len(ds.skipped)} bad entries of {ds.source} (--skip-bad); first: {ds.skipped[0][1]}",
                logging.WARNING,
            )

    # Several processes: Accelerate gives process r the batches r, r + N, ... of the epoch order; whole global
    # batches only, so the shares are disjoint (and one step of N processes = one of --grad-accum N in one).
    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = cfg.batch_size * world
    if world > 1 and len(train_ds) < global_batch:
        raise ValueError(
            f"{train_ds.source}: {len(train_ds)} training images, fewer than one global batch "
            f"({world} processes x batch size {cfg.batch_size})"
        )
    weights = None
    if cfg.class_balance:
        if cfg.coco is not None:
            raise ValueError("--class-balance applies to the cutout splits, not to --coco fields")
        first_class = [rec["classes"][0] if rec["classes"] else 0 for rec in train_ds.records]  # 0: no object
        weights, drawn = class_balance_weights(first_class, cfg.class_balance)
        _info(
            accelerator,
            f"class balance {cfg.class_balance:g}: expected share of each class per epoch "
            + ", ".join(f"{CLASS_NAMES[c]} {v:.0%}" for c, v in sorted(drawn.items())),
        )
    sampler = EpochSampler(len(train_ds), cfg.seed, multiple=global_batch if world > 1 else 1, weights=weights)
    if world > 1:
        _info(
            accelerator,
            f"{world} processes: {len(sampler) // world} training images per process and epoch; "
            f"{len(train_ds) - len(sampler)} left out of each epoch (different ones each epoch)",
        )
    # no persistent workers: the epoch's augmentation stream is set on the dataset in this process (set_epoch),
    # which workers only see when they are started anew for each epoch
    loader_kwargs = dict(
        num_workers=cfg.num_workers,
        worker_init_fn=loader_worker_init if cfg.num_workers else None,
        pin_memory=accelerator.device.type == "cuda",
    )
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=train_ds.collator(training=True),
        **loader_kwargs,
    )
    # validation is sharded here, not by Accelerate (whose even_batches would count some images twice)
    n_val = len(val_ds) if cfg.val_limit is None else min(len(val_ds), cfg.val_limit)  # the first n_val images
    val_loader = DataLoader(
        val_ds,
        batch_sampler=ShardBatches(n_val, cfg.batch_size, rank, world),
        collate_fn=val_ds.collator(training=False),
        **loader_kwargs,
    )

    # fused: one kernel for all parameters instead of ~10 per tensor (the optimiser step was 13 % of a CPU step)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=accelerator.device.type in ("cpu", "cuda")
    )
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else max(1, round(WARMUP_FRACTION * total_steps))
    schedule = WarmupPolyLR(min(warmup, max(0, total_steps - 1)), total_steps, cfg.poly_power)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    accelerator.register_for_checkpointing(scheduler)
    ema = moving_average(accelerator.unwrap_model(model), cfg.ema_decay)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    start_epoch, step, history = 0, 0, []
    if resume_dir is not None:
        accelerator.load_state(str(resume_dir))
        state = json.loads((resume_dir / "train_state.json").read_text())
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        _info(accelerator, f"resumed from {resume_dir} (epoch {start_epoch}, step {step})")
    end_epoch = cfg.end_epoch or cfg.epochs

    run = run_dir(output)
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / "train_config.json", asdict(cfg), indent=1)
    unwrapped = accelerator.unwrap_model(model)
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    probe_steps, probe_start, stopped = 3, None, False
    reserve_s = None if budget_s is None else BUDGET_RESERVE * budget_s  # for the last validation and the export

    for epoch in range(start_epoch, end_epoch):
        # Accelerate's loader keeps its own epoch counter (from 0 in a resumed run) and passes it to the sampler
        # and the dataset at every __iter__: set it, not only our sampler, or a resumed run reshuffles differently.
        train_loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        set_training_mode(unwrapped, True)
        epoch_start, loss_sum, n_batches, n_images = time.monotonic(), 0.0, 0, 0
        bar = progress_bar(
            train_loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not accelerator.is_local_main_process,
            dynamic_ncols=True,
        )
        for local_index, batch in enumerate(bar):
            torch.manual_seed(batch_seed(cfg.seed, epoch, local_index * world + rank))
            with accelerator.accumulate(model), attention_kernels(accelerator.device):
                loss = model(**batch).loss.mean()
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad()
            if ema is not None and accelerator.sync_gradients:
                ema.update_parameters(unwrapped)
            loss_sum += loss.detach().float().item()
            n_batches += 1
            n_images += batch["pixel_values"].shape[0]
            if accelerator.sync_gradients:
                scheduler.step()
                step += 1
                bar.set_postfix(loss=f"{loss_sum / n_batches:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if budget_s is not None:
                    stopped = _apply_budget(
                        schedule,
                        step,
                        start_time,
                        budget_s,
                        probe_steps,
                        probe_start,
                        planned_total=total_steps,
                        rescale_warmup=cfg.warmup_steps is None,
                        reserve_s=reserve_s,
                    )
                    if world > 1:  # every process follows the main process's clock, or they would part ways
                        stopped = _follow_main_process(accelerator, schedule, stopped)
                    if probe_start is None:  # first step of this process excluded (warm-up of kernels)
                        probe_start = (time.monotonic(), step)
                    if stopped:
                        break
        bar.close()
        train_loss = _mean_across(accelerator, loss_sum, n_batches)
        val_start = time.monotonic()
        val_loss = evaluate_loss(model, val_loader, accelerator, seed=cfg.seed, epoch=epoch)
        if budget_s is not None:  # keep what one more validation takes (measured), plus a margin for the export
            reserve_s = min(BUDGET_RESERVE * budget_s, 1.25 * (time.monotonic() - val_start) + 0.02 * budget_s)
        seconds = time.monotonic() - epoch_start
        history.append(
            {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(seconds, 3),
                "images_per_second": round(n_images * accelerator.num_processes / seconds, 3),
                "partial": int(stopped),
            }
        )
        _info(
            accelerator,
            f"epoch {epoch + 1}: train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
            f"lr {history[-1]['lr']:.2e}  {seconds:.1f} s",
        )
        if accelerator.is_main_process:
            write_history(run, history)
        if (
            budget_s is not None
            and not stopped
            and epoch + 1 < end_epoch
            and schedule.total - step < max(1, steps_per_epoch // 10)
        ):
            # the fitted horizon ends within a tenth of an epoch (LR ~ 0): no near-empty epoch and its validation
            stopped = True
        if stopped:
            _info(accelerator, f"time budget of {cfg.max_minutes} min reached after {step} steps; exporting")
            break
        save_checkpoint(
            accelerator,
            output,
            epoch + 1,
            {
                "epoch": epoch + 1,
                "step": step,
                "history": history,
                "config": asdict(cfg),
                "schedule_total": schedule.total,
                "num_processes": world,
                "data_fingerprint": fingerprint,
            },
            model_config=unwrapped.config,
        )

    accelerator.wait_for_everyone()
    exported = ema.module if ema is not None else unwrapped
    if accelerator.is_main_process:
        save_export(
            exported,
            processor,
            output,
            extra_files={name: run / name for name in RUN_FILES},
            extra_json={"training_data.json": training_data(cfg, train_ds, val_ds, fingerprint)},
        )
    accelerator.wait_for_everyone()
    ckpts = list_checkpoints(output)
    return {
        "output": output,
        "history": history,
        "stopped_by_budget": stopped,
        "checkpoint": ckpts[max(ckpts)] if ckpts else None,
        "last_weights": unwrapped,
    }


def moving_average(model, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (``torch.optim.swa_utils``), updated after
    each optimiser step: ``ema = decay * ema + (1 - decay) * weights``; ``None`` when ``decay`` is 0.  A short run
    ends on weights that still move from batch to batch; their average over the last ~1 / (1 - decay) steps is
    the usual remedy.  The export holds the average; the checkpoints and the validation losses of the history are
    those of the last weights (the average is checkpointed beside them)."""
    if not decay:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"--ema-decay {decay}: must be in [0, 1) (0: no moving average)")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _apply_budget(
    schedule: WarmupPolyLR,
    step: int,
    start_time: float,
    budget_s: float,
    probe_steps: int,
    probe_start,
    planned_total: int | None = None,
    rescale_warmup: bool = False,
    refit_every: int = 10,
    reserve_s: float | None = None,
) -> bool:
    """Fit the LR horizon to the time left; ``True`` when training must stop now.

    From ``probe_steps`` steps after ``probe_start`` (time, step) on, and every ``refit_every`` steps after, the
    horizon becomes the steps that fit in the budget less ``reserve_s`` (default :data:`BUDGET_RESERVE` of it: the
    last validation and the export) at the mean speed since the probe started (which includes the validation
    passes so far), never beyond ``planned_total``.  Refitting follows a speed that
    changes during the run (first-step warm-up, other processes on the machine), so the LR still ends near 0.
    ``rescale_warmup``: the warmup is the default share of the schedule; while it is not over it is cut to that
    share (5 %) of the fitted horizon.
    """
    now = time.monotonic()
    train_s = budget_s - (BUDGET_RESERVE * budget_s if reserve_s is None else reserve_s)
    if now - start_time >= train_s or step >= schedule.total:
        return True
    if probe_start is None:
        return False
    done = step - probe_start[1]
    if done >= probe_steps and (done - probe_steps) % refit_every == 0:
        per_step = (now - probe_start[0]) / done
        fit = step + int((train_s - (now - start_time)) / per_step)
        if planned_total is not None:
            fit = min(fit, planned_total)
        schedule.total = max(step + 1, fit)
        if rescale_warmup and step < schedule.warmup:
            schedule.warmup = max(step, min(schedule.warmup, round(WARMUP_FRACTION * schedule.total)))
        schedule.warmup = min(schedule.warmup, max(0, schedule.total - 1))
    return False


def _follow_main_process(accelerator, schedule: WarmupPolyLR, stopped: bool) -> bool:
    """The main process's budget decision and fitted schedule, on every process (one small broadcast)."""
    from accelerate.utils import broadcast

    values = torch.tensor([int(stopped), schedule.total, schedule.warmup], device=accelerator.device)
    values = broadcast(values, from_process=0).tolist()
    schedule.total, schedule.warmup = int(values[1]), int(values[2])
    return bool(values[0])


def _mean_across(accelerator, total: float, count: int) -> float:
    values = accelerator.reduce(torch.tensor([total, float(count)], device=accelerator.device), reduction="sum")
    return float(values[0] / max(1.0, float(values[1])))


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else [t.to(device) for t in v] for k, v in batch.items()}


@torch.no_grad()
def evaluate_loss(model, loader, accelerator, seed: int = 0, epoch: int = 0) -> float:
    """Mean validation loss over the batches of all processes (``loader``: a :class:`ShardBatches` loader), in
    inference mode (no dropout, no contrastive term: texts are a training signal).

    The unwrapped model runs it: no DDP collective per batch, so processes may hold different numbers of batches.
    """
    unwrapped = accelerator.unwrap_model(model)
    set_training_mode(unwrapped, False)
    world, rank = accelerator.num_processes, accelerator.process_index
    total, count = 0.0, 0
    for local_index, batch in enumerate(loader):
        torch.manual_seed(batch_seed(seed, epoch, local_index * world + rank, stream=1))
        with accelerator.autocast(), attention_kernels(accelerator.device):  # as in training
            total += unwrapped(**_to_device(batch, accelerator.device)).loss.mean().float().item()
        count += 1
    set_training_mode(unwrapped, True)
    return _mean_across(accelerator, total, count)


# ----------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    from src.cli import add_output_options

    p = argparse.ArgumentParser(
        prog="train_script.py", description="Fine-tune OneFormer on Galaxy Zoo 2 (see src/training/train.py)."
    )
    # defaults are None here so that a --recipe can fill them; TrainConfig holds the real defaults
    p.add_argument(
        "--data-root", help="folder with galaxy_{train,val}.json, original/zoo2Main/, dataset_stats.json (default: .)"
    )
    p.add_argument("--output", help="output folder (default: safetensors/<recipe or model-task>)")
    p.add_argument(
        "--model-card",
        help=f"preset ({', '.join(PRESETS)}), save_pretrained folder, hub card, or a "
        "bare .safetensors state dict (default: galaxy-small)",
    )
    p.add_argument("--base-card", help="architecture of a bare .safetensors state dict (default: swin-tiny)")
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="the original models' settings: " + "; ".join(f"{k}: {v}" for k, v in RECIPES.items()),
    )
    p.add_argument(
        "--task",
        choices=["semantic", "instance", "panoptic", "random"],
        help="task the model is conditioned on; random = per image (default: semantic)",
    )
    p.add_argument(
        "--random-tasks",
        nargs="+",
        choices=["semantic", "instance", "panoptic"],
        help="with --task random, each image's task is drawn uniformly from this list; repeat a task to "
        "weight it, e.g. semantic semantic instance (default: semantic instance)",
    )
    p.add_argument("--epochs", type=int, help="length of the schedule N (default: 5)")
    p.add_argument("--end-epoch", type=int, help="stop after epoch M of the N-epoch schedule")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume-epoch", type=int, dest="resume", help="continue from the end of epoch K")
    group.add_argument("--resume", choices=["latest"], help="continue from the latest complete checkpoint")
    p.add_argument("--batch-size", type=int, help="images per step and process (default: 2)")
    p.add_argument("--image-size", type=int, help="square side in pixels (default: native)")
    p.add_argument(
        "--crop-size",
        type=int,
        help="train on random crops of this side holding the object, at "
        "native resolution; the exported model runs on whole images (default: no crop)",
    )
    p.add_argument("--num-queries", type=int, help="object queries (default: the preset's or card's)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default: 1e-4)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: 0.1)")
    p.add_argument("--grad-clip", type=float, help="gradient-norm clipping (default: 1.0)")
    p.add_argument("--warmup-steps", type=int, help="default 5%% of the optimiser steps")
    p.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    p.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], help="(default: no)")
    p.add_argument(
        "--ema-decay",
        type=float,
        help="export the exponential moving average of the weights with "
        "this decay per optimiser step, e.g. 0.995 (default: 0, the last weights)",
    )
    p.add_argument("--val-limit", type=int, help="validate on the first N validation images only (default: all)")
    p.add_argument("--seed", type=int, help="data order, augmentations, init (default: 0)")
    p.add_argument("--no-augment", dest="augment", action="store_const", const=False, help="no flips / 90° rotations")
    p.add_argument("--in-memory", action="store_const", const=True, help="decode all images once, keep them in RAM")
    p.add_argument("--skip-bad", action="store_const", const=True, help="skip (and count) unusable entries")
    p.add_argument("--num-workers", type=int, help="DataLoader workers")
    p.add_argument("--max-minutes", type=float, help="time budget; the LR schedule is fitted to it")
    p.add_argument("--cpu", action="store_const", const=True, help="force CPU")
    p.add_argument(
        "--coco",
        help="train on a COCO instance file of annotated fields (python -m src.synthetic "
        "--field writes one) instead of the cutout splits: random crops of --crop-size px (default "
        f"{FIELD_CROP}) around its objects",
    )
    p.add_argument("--val-coco", help="COCO file of the validation fields (default: every 5th image of --coco)")
    p.add_argument("--crops-per-image", type=int, help="with --coco: crops per image and epoch (default: 16)")
    p.add_argument(
        "--class-balance",
        type=float,
        help="draw training images with weight (share of their class) "
        "** -X, with replacement: 0 shuffles every image once per epoch, 1 draws each class equally often "
        "(default: 0)",
    )
    p.add_argument(
        "--config",
        help="a recorded configuration (OUTPUT/train_config.json, or a JSON subset of "
        "these options); options given on the command line override it",
    )
    add_output_options(p)
    return p


def main(argv=None) -> int:
    """``train_script.py``: exit status 0, or 2 with one line naming a user's mistake (no traceback)."""
    from src.cli import run_cli, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    options = {k: v for k, v in vars(args).items() if k not in ("config", "verbose", "quiet")}
    if options.get("resume") is not None:
        options["resume"] = str(options["resume"])

    def body():
        base = load_config_file(args.config) if args.config else None
        train(argparse.Namespace(**options), base=base)

    return run_cli("train_script.py", body, verbose=args.verbose)
