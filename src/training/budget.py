"""Time budget (``--max-minutes``): fit the LR schedule's horizon to the steps that fit in the time left.

After a few optimiser steps the run measures its speed and, if the planned schedule does not fit, shortens the
schedule's horizon to the steps that fit in the budget less a reserve for the last validation and the export
(:data:`BUDGET_RESERVE`, then 1.25 x the measured validation pass + 2 %), so warmup + polynomial decay still ends
near lr 0 when time is up; the horizon is refitted every 10 steps to the mean speed so far (validation included).
"""

from __future__ import annotations

import time

import torch

from src.training.schedule import WARMUP_FRACTION, WarmupPolyLR

#: Share of a time budget kept for the last validation and the export until a validation pass has been timed;
#: then 1.25 x that pass + 2 % of the budget (never more than this share).
BUDGET_RESERVE = 0.15


def apply_budget(
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

    Parameters
    ----------
    schedule : WarmupPolyLR
        Its ``total`` (and ``warmup``) are refitted in place.
    step : int
        Optimiser steps done.
    start_time : float
        ``time.monotonic()`` at the start of the run, in s.
    budget_s : float
        The time budget, in s.
    probe_steps : int
        Steps timed before the first fit.
    probe_start : tuple of (float, int) or None
        Time (s) and step where the timing started; ``None``: not yet.
    planned_total : int, optional
        The planned schedule's steps: the horizon never goes beyond it.
    rescale_warmup : bool
        The warmup is the default share of the schedule; while it is not over it is cut to that share (5 %) of
        the fitted horizon.
    refit_every : int
        Steps between two fits.
    reserve_s : float, optional
        Time kept for the last validation and the export, in s.

    Returns
    -------
    bool
        ``True`` when training must stop now.
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


def follow_main_process(accelerator, schedule: WarmupPolyLR, stopped: bool) -> bool:
    """The main process's budget decision and fitted schedule, on every process (one small broadcast)."""
    from accelerate.utils import broadcast

    values = torch.tensor([int(stopped), schedule.total, schedule.warmup], device=accelerator.device)
    values = broadcast(values, from_process=0).tolist()
    schedule.total, schedule.warmup = int(values[1]), int(values[2])
    return bool(values[0])


class TimeBudget:
    """A run's time budget: when to stop, and the schedule's horizon refitted to it (:func:`apply_budget`).

    Created at the start of the run (its clock starts then).  Without a budget (``max_minutes`` ``None``) every
    method leaves the schedule alone and never stops the run.

    Parameters
    ----------
    max_minutes : float or None
        The budget, in minutes.
    rescale_warmup : bool
        The warmup is the default share of the schedule and follows the fitted horizon.
    probe_steps : int
        Steps timed before the first fit.
    """

    def __init__(self, max_minutes: float | None, rescale_warmup: bool, probe_steps: int = 3):
        self.start_time = time.monotonic()
        self.seconds = max_minutes * 60 if max_minutes is not None else None
        self.rescale_warmup, self.probe_steps, self.probe_start = rescale_warmup, probe_steps, None
        # kept for the last validation and the export
        self.reserve_s = None if self.seconds is None else BUDGET_RESERVE * self.seconds

    def after_step(self, accelerator, schedule: WarmupPolyLR, step: int, planned_total: int) -> bool:
        """Refit the horizon after optimiser step ``step``; ``True`` when training must stop now."""
        if self.seconds is None:
            return False
        stopped = apply_budget(
            schedule,
            step,
            self.start_time,
            self.seconds,
            self.probe_steps,
            self.probe_start,
            planned_total=planned_total,
            rescale_warmup=self.rescale_warmup,
            reserve_s=self.reserve_s,
        )
        if accelerator.num_processes > 1:  # every process follows the main process's clock, or they would part ways
            stopped = follow_main_process(accelerator, schedule, stopped)
        if self.probe_start is None:  # first step of this process excluded (warm-up of kernels)
            self.probe_start = (time.monotonic(), step)
        return stopped

    def after_validation(self, seconds: float) -> None:
        """Keep what one more validation takes (``seconds``, measured), plus a margin for the export."""
        if self.seconds is not None:
            self.reserve_s = min(BUDGET_RESERVE * self.seconds, 1.25 * seconds + 0.02 * self.seconds)

    def horizon_ends_soon(self, schedule: WarmupPolyLR, step: int, steps_per_epoch: int) -> bool:
        """The fitted horizon ends within a tenth of an epoch (LR ~ 0): not worth another epoch and its
        validation."""
        return self.seconds is not None and schedule.total - step < max(1, steps_per_epoch // 10)
