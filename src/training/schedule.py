"""The learning-rate schedule: linear warmup, then polynomial decay to 0 over the whole planned schedule."""

from __future__ import annotations

import torch

#: Default warmup, as a share of the optimiser steps of the schedule.
WARMUP_FRACTION = 0.05


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


def lr_scheduler(optimizer, total_steps: int, warmup_steps: int | None, power: float):
    """The schedule of ``total_steps`` optimiser steps and its ``LambdaLR``.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    total_steps : int
        Optimiser steps of the whole planned schedule.
    warmup_steps : int or None
        Warmup steps; ``None``: :data:`WARMUP_FRACTION` of ``total_steps``, at least 1.
    power : float
        Exponent of the polynomial decay.

    Returns
    -------
    schedule : WarmupPolyLR
        The LR factor (a time budget refits its horizon).
    scheduler : torch.optim.lr_scheduler.LambdaLR
    """
    warmup = warmup_steps if warmup_steps is not None else max(1, round(WARMUP_FRACTION * total_steps))
    schedule = WarmupPolyLR(min(warmup, max(0, total_steps - 1)), total_steps, power)
    return schedule, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
