"""The training data order and the model's random draws, as functions of (seed, epoch, position) only, so that a
resumed run and N processes draw what one straight run draws."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler


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
    """Per-image sampling weights ``share(class) ** -power`` and the expected share of each class among the
    drawn images.

    Parameters
    ----------
    image_classes : list of int
        One class id per image.
    power : float
        0: uniform; 1: every class drawn equally often.

    Returns
    -------
    weights : numpy.ndarray
        One weight per image.
    drawn : dict of int to float
        Expected share of each class among the drawn images.
    """
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
