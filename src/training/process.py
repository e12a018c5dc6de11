"""What the training processes share: the Accelerator, logging from the main process, sums over processes."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def new_accelerator(mixed_precision: str, grad_accum: int, cpu: bool):
    """A fresh ``accelerate.Accelerator`` for one run.

    Accelerate keeps one state per process; a second run in this process (a notebook, the tests) may ask for
    another precision, which that state refuses unless it is cleared (the process group is kept).

    Parameters
    ----------
    mixed_precision : str
        ``"no"``, ``"bf16"`` or ``"fp16"``.
    grad_accum : int
        Gradient accumulation steps.
    cpu : bool
        Force the CPU.

    Returns
    -------
    accelerate.Accelerator
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum, cpu=cpu)


def log_once(accelerator, message: str, level: int = logging.INFO) -> None:
    """A log line from the main process only (several processes would repeat it)."""
    if accelerator.is_local_main_process:
        logger.log(level, message)


def mean_across(accelerator, total: float, count: int) -> float:
    """``sum(total) / sum(count)`` over the processes (0 when no process counted anything)."""
    values = accelerator.reduce(torch.tensor([total, float(count)], device=accelerator.device), reduction="sum")
    return float(values[0] / max(1.0, float(values[1])))
