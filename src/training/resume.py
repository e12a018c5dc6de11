"""Resuming a run: which checkpoint, which options it keeps, and the refusals (changed options, changed data, another
number of processes) that would make the resumed run differ from the straight one."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

from src.defaults import DATASET_STATS, TRAIN_STATE
from src.training.checkpoints import find_checkpoint, list_checkpoints, run_dir
from src.training.config import TrainConfig, apply_layer, resolve_config

#: Options that must not change between a run and its resumption (they change the schedule, the data or the
#: numerics).  The split content is checked too (:func:`data_fingerprint`).
RESUME_FIXED = (
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
PER_RUN = ("resume", "end_epoch", "max_minutes", "cpu", "num_workers")


class ResumePoint(NamedTuple):
    """The checkpoint a run continues from: its folder and its ``train_state.json``."""

    folder: Path
    state: dict


def _comparable(name: str, value):
    if name == "data_root" and value is not None:
        return os.path.abspath(value)
    return list(value) if isinstance(value, (list, tuple)) else value


def resume_config(saved: dict, requested: dict, where) -> TrainConfig:
    """The configuration of a resumed run.

    The checkpoint's recorded one (``saved``), except the options of :data:`PER_RUN`, with the ``requested``
    options (those the user gave) on top.  A requested option of :data:`RESUME_FIXED` that differs from the
    recorded one is refused, by name.

    Parameters
    ----------
    saved : dict
        The configuration recorded in the checkpoint.
    requested : dict
        The options given for the resumed run.
    where : str or Path
        The checkpoint, named in the error.

    Returns
    -------
    TrainConfig
    """
    defaults = asdict(TrainConfig())  # options added since the checkpoint was written had their defaults
    recorded = {**defaults, **{k: v for k, v in saved.items() if k in defaults}}
    expanded: dict = {}  # a --recipe given on the resume command line stands for the values it sets
    apply_layer(expanded, requested)
    changed = [k for k in RESUME_FIXED if k in expanded and _comparable(k, expanded[k]) != _comparable(k, recorded[k])]
    if changed:
        raise ValueError(
            f"cannot resume from {where}: options changed since the run started: "
            + ", ".join(f"{k} {recorded[k]!r} -> {expanded[k]!r}" for k in changed)
        )
    inherited = {k: v for k, v in recorded.items() if k not in PER_RUN}
    return resolve_config({**inherited, **requested})


def start_or_resume(given: dict, base: dict | None) -> tuple[TrainConfig, ResumePoint | None]:
    """The run's configuration and, when ``resume`` is given, the checkpoint it continues from.

    A fresh run is refused where checkpoints of an earlier run lie (it would mix its checkpoints with theirs).

    Parameters
    ----------
    given : dict
        The options given (:func:`src.training.config.explicit_options`).
    base : dict, optional
        A recorded configuration (``--config``) that ``given`` overrides.

    Returns
    -------
    tuple of TrainConfig and ResumePoint or None
    """
    if given.get("resume") is not None:
        requested = {k: v for k, v in {**(base or {}), **given}.items() if v is not None}
        # the output locates the checkpoint; the other options are checked against the recorded ones after
        where = resolve_config({k: v for k, v in requested.items() if k != "end_epoch"}).output
        folder = find_checkpoint(where, requested["resume"])
        state = json.loads((folder / TRAIN_STATE).read_text())
        return resume_config(state["config"], requested, folder), ResumePoint(folder, state)
    cfg = resolve_config(given, base)
    earlier = list_checkpoints(cfg.output)
    if earlier:
        raise ValueError(
            f"{run_dir(cfg.output)} holds checkpoints of an earlier run (epochs {sorted(earlier)}): "
            "continue it with --resume latest, or delete that folder (or choose another --output) "
            "to start afresh"
        )
    return cfg, None


def data_fingerprint(cfg: TrainConfig) -> dict[str, str | None]:
    """SHA-256 of the files a training reads besides the images.

    Parameters
    ----------
    cfg : TrainConfig

    Returns
    -------
    dict
        By file name: the split files (an error naming one that is absent) and ``dataset_stats.json`` (``None``
        when absent), or the COCO files of a ``coco`` training.
    """
    from src.data.datasets import require_split_file
    from src.data.splits import file_sha256

    if cfg.coco is not None:
        files = [Path(f) for f in (cfg.coco, cfg.val_coco) if f is not None]
    else:
        files = [require_split_file(cfg.data_root, s) for s in ("train", cfg.val_split)]
    files.append(Path(cfg.data_root) / DATASET_STATS)
    return {f.name: (file_sha256(f) if f.is_file() else None) for f in files}


def check_same_data(resume: ResumePoint | None, now: dict) -> None:
    """Refuse to resume when the data fingerprint differs from the checkpoint's (if it recorded one)."""
    saved = None if resume is None else resume.state.get("data_fingerprint")
    if saved is None:  # a fresh run, or a checkpoint written before fingerprints were recorded
        return
    changed = [name for name in sorted(set(saved) | set(now)) if saved.get(name) != now.get(name)]
    if changed:
        short = lambda d: "absent" if d is None else d[:12]  # noqa: E731
        raise ValueError(
            f"cannot resume from {resume.folder}: the data changed since the run started: "
            + ", ".join(f"{n} {short(saved.get(n))} -> {short(now.get(n))}" for n in changed)
        )


def check_same_processes(resume: ResumePoint | None, num_processes: int) -> None:
    """Refuse to resume with another number of processes than the checkpoint's."""
    if resume is None:
        return
    saved = resume.state.get("num_processes", 1)
    if saved != num_processes:
        raise ValueError(
            f"cannot resume from {resume.folder}: it was trained with {saved} process(es), "
            f"this run has {num_processes} (the global batch and the schedule would "
            "change); launch it with the same number of processes"
        )
