"""Dataset items -> OneFormer batches: the collator, the batch sampler of several processes, the loader workers.

An item (``src.data.datasets``) holds the RGB image, the semantic and instance maps, the class id of each instance
and the OneFormer task; :class:`OneFormerCollator` turns a list of them into the model's batch with the processor
(normalisation with the dataset mean/std, masks, texts).
"""

from __future__ import annotations

import os

import torch


class OneFormerCollator:
    """List of dataset items -> OneFormer batch (``pixel_values``, ``pixel_mask``, ``mask_labels``,
    ``class_labels``, ``task_inputs``, and ``text_inputs`` when ``training``).

    Per task the image processor gets: semantic -> the semantic map; instance / panoptic -> the instance map with
    ``instance_id_to_semantic_id`` (0 -> background).  It pads images, masks and class lists.  ``resized``: the
    items already have the model's size, so the processor does not resize again.

    The texts are tokenised as ``OneFormerProcessor.__call__`` does it, but each distinct text list only once:
    an image's ``num_text`` prompts (134 for swin-tiny) take a few distinct forms ("a photo with a <class>" for
    its objects, then a task filler), and tokenising them for every image was most of the pipeline's time.
    """

    #: Distinct text lists kept (a few dozen occur: task x classes present); the cache restarts beyond this.
    CACHE_SIZE = 4096

    def __init__(self, processor, training: bool = True, resized: bool = False):
        self.processor = processor
        self.training = training
        self.resized = resized
        self._tokens: dict[tuple[tuple[str, ...], int], torch.Tensor] = {}

    def tokens(self, texts: tuple[str, ...], length: int) -> torch.Tensor:
        """``(len(texts), length)`` token ids, as the processor's own text encoding, memoised."""
        key = (texts, length)
        ids = self._tokens.get(key)
        if ids is None:
            if len(self._tokens) >= self.CACHE_SIZE:
                self._tokens.clear()
            ids = self._tokens[key] = self.processor._preprocess_text(list(texts), max_length=length)
        return ids

    def __call__(self, items: list[dict]) -> dict:
        maps, mappings, tasks = [], [], [item["task"] for item in items]
        for item in items:
            if item["task"] == "semantic":
                maps.append(item["semantic"])
                mappings.append(None)
            else:
                maps.append(item["instance"])
                mappings.append({0: 0, **dict(enumerate(item["class_ids"], start=1))})
        kwargs = {"do_resize": False} if self.resized else {}
        batch = dict(
            self.processor.image_processor(
                images=[item["image"] for item in items],
                task_inputs=tasks,
                segmentation_maps=maps,
                instance_id_to_semantic_id=mappings,
                return_tensors="pt",
                **kwargs,
            )
        )
        batch["task_inputs"] = torch.cat(
            [self.tokens((f"the task is {task}",), self.processor.task_seq_length) for task in tasks]
        )
        texts = batch.pop("text_inputs", None)
        if self.training and texts is not None:
            batch["text_inputs"] = torch.stack([self.tokens(tuple(t), self.processor.max_seq_length) for t in texts])
        return batch


class ShardBatches(torch.utils.data.Sampler):
    """Batches of ``range(n)`` in order (the last one may be smaller); process ``rank`` of ``world`` takes the
    batches at positions ``rank, rank + world, ...`` (one process: all of them, as a plain loader).  A batch
    sampler for ``DataLoader(batch_sampler=...)``; :meth:`positions` gives each yielded batch's position."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size < 1 or not 0 <= rank < world:
            raise ValueError(f"ShardBatches: batch_size {batch_size} must be >= 1 and rank {rank} in 0..{world - 1}")
        self.batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        self.rank, self.world = rank, world

    def positions(self) -> range:
        return range(self.rank, len(self.batches), self.world)

    def __iter__(self):
        return (self.batches[p] for p in self.positions())

    def __len__(self) -> int:
        return len(self.positions())


def loader_worker_init(worker_id: int) -> None:
    """Workers share the 2 cores with the model: one thread each."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
