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
        classes[:, :, NUM_LABELS] = LOGIT  # "no object" by default
        masks = torch.full((batch, self.num_queries, height, width), -LOGIT)
        for b, item in enumerate(items):
            instance = torch.from_numpy(np.asarray(item["instance"], dtype=np.int64))
            queries = [(0, instance == 0)] + [(c, instance == k) for k, c in enumerate(item["class_ids"], start=1)]
            for q, (class_id, mask) in enumerate(queries):
                classes[b, q, NUM_LABELS] = -LOGIT
                classes[b, q, class_id] = LOGIT
                masks[b, q][mask] = LOGIT
        return SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks)


class ColourOracle(torch.nn.Module):
    """A stand-in for OneFormer that segments what it sees, so that any order, batch, size or flip of the images
    gets the right answer (the ``predict.py`` tests).

    Each 8-connected region of pixels whose brightest channel reaches ``threshold`` (0-255) is one object, one
    query each, of the class whose ``src.classes`` colour is nearest to the region's mean colour; query 0 is the
    background.  Masks come at the input's full resolution (stride 1).  ``mean`` / ``std``: the processor's
    normalisation (0-1 units), to get the pixel values back.  ``calls`` counts forward passes; ``on_call``, if
    set, is called with that count before each one (tests use it to stop a run part-way)."""

    def __init__(self, mean, std, threshold: float = 60.0, num_queries: int = 16):
        super().__init__()
        self.mean = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.as_tensor(std, dtype=torch.float32)[:, None, None]
        self.threshold, self.num_queries = threshold, num_queries
        self.calls, self.on_call = 0, None
        self.weight = torch.nn.Parameter(torch.zeros(1))  # for device look-ups

    @classmethod
    def for_processor(cls, processor, **kwargs):
        ip = processor.image_processor
        return cls(ip.image_mean, ip.image_std, **kwargs)

    def forward(self, pixel_values, task_inputs=None, pixel_mask=None):
        from scipy import ndimage

        from src.classes import colour_palette

        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        palette = np.asarray(colour_palette()[1:], dtype=float)  # galaxy classes 1..5
        batch, _, height, width = pixel_values.shape
        classes = torch.full((batch, self.num_queries, NUM_LABELS + 1), -LOGIT)
        classes[:, :, NUM_LABELS] = LOGIT
        masks = torch.full((batch, self.num_queries, height, width), -LOGIT)
        for b in range(batch):
            rgb = ((pixel_values[b].float() * self.std + self.mean) * 255.0).permute(1, 2, 0).numpy()
            labels, n = ndimage.label(rgb.max(axis=2) >= self.threshold, structure=np.ones((3, 3)))
            if n >= self.num_queries:
                raise ValueError(f"ColourOracle: {n} regions, more than {self.num_queries - 1} queries")
            classes[b, 0, NUM_LABELS], classes[b, 0, 0] = -LOGIT, LOGIT
            masks[b, 0][torch.from_numpy(labels == 0)] = LOGIT
            for k in range(1, n + 1):
                region = labels == k
                colour = rgb[region].mean(axis=0)
                class_id = 1 + int(np.argmin(((palette - colour) ** 2).sum(axis=1)))
                classes[b, k, NUM_LABELS], classes[b, k, class_id] = -LOGIT, LOGIT
                masks[b, k][torch.from_numpy(region)] = LOGIT
        return SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks)
