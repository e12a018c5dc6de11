"""A stand-in for OneFormer that answers with the ground truth, to test the inference -> metrics path with
known answers (every score 1.0).  Test helper, not a test module."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from src.classes import NUM_LABELS

LOGIT = 20.0


class OracleModel(torch.nn.Module):
    """Returns, for the dataset items in the order ``evaluate`` asks for them, query logits that encode the truth:
    query 0 = background (class 0) over the background pixels, query k = instance k with its class, other
    queries = "no object".  ``items``: the ``GalaxyDataset`` items in dataset order."""

    def __init__(self, items: list[dict], num_queries: int = 8):
        super().__init__()
        self.items = items
        self.num_queries = num_queries
        self.cursor = 0
        self.weight = torch.nn.Parameter(torch.zeros(1))  # for device look-ups

    def forward(self, pixel_values, task_inputs=None, pixel_mask=None):
        batch = len(pixel_values)
        items = [self.items[(self.cursor + b) % len(self.items)] for b in range(batch)]
        self.cursor = (self.cursor + batch) % len(self.items)
        height, width = items[0]["instance"].shape
        classes = torch.full((batch, self.num_queries, NUM_LABELS + 1), -LOGIT)
        classes[:, :, NUM_LABELS] = LOGIT                    # "no object" by default
        masks = torch.full((batch, self.num_queries, height, width), -LOGIT)
        for b, item in enumerate(items):
            instance = torch.from_numpy(np.asarray(item["instance"], dtype=np.int64))
            queries = [(0, instance == 0)] + [(c, instance == k) for k, c in enumerate(item["class_ids"], start=1)]
            for q, (class_id, mask) in enumerate(queries):
                classes[b, q, NUM_LABELS] = -LOGIT
                classes[b, q, class_id] = LOGIT
                masks[b, q][mask] = LOGIT
        return SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks)
