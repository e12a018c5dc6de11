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
CPU, tests/training/test_distributed.py).  See ``src.modelling.patches.freeze_unused_parameters`` and
``src.modelling.patches.count_masks_per_process`` for the two changes to the model that this needs.

Time budget (``--max-minutes``, ``src.training.budget``): the schedule's horizon is fitted to the steps that fit
in the budget, so warmup + polynomial decay still ends near lr 0 when time is up, and a default warmup keeps its
5 % share of the fitted horizon.  Training stops at that horizon or at the budget, validates, and exports.  A
budget-limited run is not meant to be resumed exactly (its horizon depends on the measured speed).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from src.atomic import write_json_atomic
from src.classes import NUM_LABELS
from src.data.datasets import load_stats
from src.defaults import DATASET_STATS
from src.modelling.model import check_export_folder, load_model, save_export, set_training_mode
from src.modelling.patches import attention_kernels, count_masks_per_process, freeze_unused_parameters
from src.training.budget import TimeBudget
from src.training.checkpoints import RUN_FILES, list_checkpoints, run_dir, save_checkpoint, write_history
from src.training.config import TrainConfig, explicit_options
from src.training.data import build_datasets, build_loaders, training_data
from src.training.process import log_once, mean_across, new_accelerator
from src.training.resume import ResumePoint, check_same_data, check_same_processes, data_fingerprint, start_or_resume
from src.training.sampler import batch_seed
from src.training.schedule import lr_scheduler


def train(args_or_config, base: dict | None = None) -> dict:
    """Run (or resume) a training.

    Resuming (``resume``) takes every option not given from the checkpoint's recorded configuration and refuses
    changed options or split files (``src.training.resume``).

    Parameters
    ----------
    args_or_config : argparse.Namespace, dict or TrainConfig
        The options given (see :func:`src.training.config.resolve_config`).
    base : dict, optional
        A recorded configuration they override (``--config``).

    Returns
    -------
    dict
        ``output``, ``history`` (one row per epoch), ``stopped_by_budget``, ``checkpoint`` (the last one's folder
        or ``None``) and ``last_weights`` (the model, unwrapped).
    """
    from accelerate.utils import set_seed

    from src.progress import progress_bar

    cfg, resume = start_or_resume(explicit_options(args_or_config), base)
    check_export_folder(cfg.output)
    budget = TimeBudget(cfg.max_minutes, rescale_warmup=cfg.warmup_steps is None)
    fingerprint = data_fingerprint(cfg)
    check_same_data(resume, fingerprint)
    accelerator = new_accelerator(cfg.mixed_precision, cfg.grad_accum, cfg.cpu)
    set_seed(cfg.seed)
    check_same_processes(resume, accelerator.num_processes)
    model, processor = _model_to_train(cfg, accelerator)
    train_ds, val_ds = build_datasets(cfg, processor)
    sampler, train_loader, val_loader = build_loaders(cfg, train_ds, val_ds, accelerator)
    optimizer = _optimizer(model, cfg, accelerator.device)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    schedule, scheduler = lr_scheduler(optimizer, total_steps, cfg.warmup_steps, cfg.poly_power)
    accelerator.register_for_checkpointing(scheduler)
    unwrapped = accelerator.unwrap_model(model)
    ema = moving_average(unwrapped, cfg.ema_decay)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    start_epoch, step, history = _restore(accelerator, resume)
    run = _start_run_folder(accelerator, cfg)
    world, rank, stopped = accelerator.num_processes, accelerator.process_index, False
    end_epoch = cfg.end_epoch or cfg.epochs

    for epoch in range(start_epoch, end_epoch):
        # Accelerate's loader keeps its own epoch counter (from 0 in a resumed run) and passes it to the sampler
        # and the dataset at every __iter__: set it, not only our sampler, or a resumed run reshuffles differently.
        train_loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        set_training_mode(unwrapped, True)
        meter = EpochMeter()
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
            meter.add(loss, batch)
            if accelerator.sync_gradients:
                scheduler.step()
                step += 1
                bar.set_postfix(loss=f"{meter.mean_loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                stopped = budget.after_step(accelerator, schedule, step, total_steps)
                if stopped:
                    break
        bar.close()
        train_loss = mean_across(accelerator, meter.loss_sum, meter.batches)
        val_start = time.monotonic()
        val_loss = evaluate_loss(model, val_loader, accelerator, seed=cfg.seed, epoch=epoch)
        budget.after_validation(time.monotonic() - val_start)
        history.append(meter.row(epoch + 1, step, train_loss, val_loss, scheduler.get_last_lr()[0], world, stopped))
        log_once(accelerator, meter.summary(history[-1]))
        if accelerator.is_main_process:
            write_history(run, history)
        if not stopped and epoch + 1 < end_epoch:
            stopped = budget.horizon_ends_soon(schedule, step, steps_per_epoch)  # no near-empty last epoch
        if stopped:
            log_once(accelerator, f"time budget of {cfg.max_minutes} min reached after {step} steps; exporting")
            break
        state = _train_state(cfg, epoch + 1, step, history, schedule.total, world, fingerprint)
        save_checkpoint(accelerator, cfg.output, epoch + 1, state, model_config=unwrapped.config)

    exported = ema.module if ema is not None else unwrapped
    _export(accelerator, cfg, exported, processor, train_ds, val_ds, fingerprint)
    ckpts = list_checkpoints(cfg.output)
    last = ckpts[max(ckpts)] if ckpts else None
    return dict(
        output=Path(cfg.output), history=history, stopped_by_budget=stopped, checkpoint=last, last_weights=unwrapped
    )


class EpochMeter:
    """One epoch's running sums on this process (training loss, batches, images) and its wall time."""

    def __init__(self):
        self.start, self.loss_sum, self.batches, self.images, self.seconds = time.monotonic(), 0.0, 0, 0, None

    def add(self, loss: torch.Tensor, batch: dict) -> None:
        self.loss_sum += loss.detach().float().item()
        self.batches += 1
        self.images += batch["pixel_values"].shape[0]

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.batches

    def row(self, epoch: int, step: int, train_loss: float, val_loss: float, lr: float, world: int, partial: bool):
        """The epoch's row of the history (``loss_history.csv``); its wall time ends now, validation included."""
        self.seconds = time.monotonic() - self.start
        return {
            "epoch": epoch,
            "step": step,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": lr,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images * world / self.seconds, 3),
            "partial": int(partial),
        }

    def summary(self, row: dict) -> str:
        """The log line of the epoch's ``row``."""
        return (
            f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"lr {row['lr']:.2e}  {self.seconds:.1f} s"
        )


def _export(accelerator, cfg: TrainConfig, model, processor, train_ds, val_ds, fingerprint: dict) -> None:
    """Write the export (the main process), with the run's files and ``training_data.json``."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        extra_files = {name: run_dir(cfg.output) / name for name in RUN_FILES}
        extra_json = {"training_data.json": training_data(cfg, train_ds, val_ds, fingerprint)}
        save_export(model, processor, Path(cfg.output), extra_files=extra_files, extra_json=extra_json)
    accelerator.wait_for_everyone()


def _optimizer(model, cfg: TrainConfig, device) -> torch.optim.AdamW:
    # fused: one kernel for all parameters instead of ~10 per tensor (the optimiser step was 13 % of a CPU step)
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def _train_state(cfg: TrainConfig, epoch, step, history, schedule_total, num_processes, fingerprint) -> dict:
    """A checkpoint's ``train_state.json``: where the run stands, its configuration and data fingerprint."""
    return {
        "epoch": epoch,
        "step": step,
        "history": history,
        "config": asdict(cfg),
        "schedule_total": schedule_total,
        "num_processes": num_processes,
        "data_fingerprint": fingerprint,
    }


def _model_to_train(cfg: TrainConfig, accelerator):
    """The model and processor, normalising with the split's pixel statistics (``dataset_stats.json``), with the
    two changes several processes need (``src.modelling.patches``)."""
    stats = load_stats(cfg.data_root)
    mean, std = stats if stats is not None else (None, None)
    if stats is None:
        log_once(
            accelerator,
            f"{Path(cfg.data_root) / DATASET_STATS} not found; normalising with the real GZ2 cutout mean/std",
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
    return model, processor


def _restore(accelerator, resume: ResumePoint | None) -> tuple[int, int, list[dict]]:
    """``(start epoch, optimiser steps done, history)``: of the checkpoint, whose state is loaded, or of a fresh
    run."""
    if resume is None:
        return 0, 0, []
    accelerator.load_state(str(resume.folder))
    state = resume.state
    log_once(accelerator, f"resumed from {resume.folder} (epoch {state['epoch']}, step {state['step']})")
    return state["epoch"], state["step"], state["history"]


def _start_run_folder(accelerator, cfg: TrainConfig) -> Path:
    """The run folder beside the export, with the run's configuration (``train_config.json``)."""
    run = run_dir(cfg.output)
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / "train_config.json", asdict(cfg), indent=1)
    return run


def moving_average(model, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (``torch.optim.swa_utils``).

    Updated after each optimiser step: ``ema = decay * ema + (1 - decay) * weights``.  A short run ends on weights
    that still move from batch to batch; their average over the last ~1 / (1 - decay) steps is the usual remedy.
    The export holds the average; the checkpoints and the validation losses of the history are those of the last
    weights (the average is checkpointed beside them).

    Parameters
    ----------
    model : torch.nn.Module
    decay : float
        Decay per optimiser step, in [0, 1); 0: no average.

    Returns
    -------
    torch.optim.swa_utils.AveragedModel or None
        ``None`` when ``decay`` is 0.
    """
    if not decay:
        return None
    if not 0 < decay < 1:
        raise ValueError(f"--ema-decay {decay}: must be in [0, 1) (0: no moving average)")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else [t.to(device) for t in v] for k, v in batch.items()}


@torch.no_grad()
def evaluate_loss(model, loader, accelerator, seed: int = 0, epoch: int = 0) -> float:
    """Mean validation loss over the batches of all processes, in inference mode (no dropout, no contrastive
    term: texts are a training signal).

    The unwrapped model runs it: no DDP collective per batch, so processes may hold different numbers of batches.

    Parameters
    ----------
    model : torch.nn.Module
        The (possibly wrapped) model.
    loader : torch.utils.data.DataLoader
        A ``src.data.batching.ShardBatches`` loader: this process's validation batches.
    accelerator : accelerate.Accelerator
    seed, epoch : int
        Seed the model's random draws per batch (``batch_seed``, validation stream).

    Returns
    -------
    float
        The mean loss per batch.
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
    return mean_across(accelerator, total, count)
