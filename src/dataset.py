"""The original project's ``src/dataset.py``, where polygons and labels become masks: the datasets now live in
:mod:`src.data.datasets` (a polygon becomes a mask in :mod:`src.data.via`), their batches in :mod:`src.data.batching`
and the COCO reader in :mod:`src.data.coco`; imported back here for code that uses this name."""

from src.data.batching import OneFormerCollator, ShardBatches
from src.data.coco import DatasetError, load_coco_fields
from src.data.datasets import (
    CocoFieldDataset,
    GalaxyDataset,
    build_augment,
    load_split,
    load_stats,
    require_split_file,
)

__all__ = [
    "CocoFieldDataset",
    "DatasetError",
    "GalaxyDataset",
    "OneFormerCollator",
    "ShardBatches",
    "build_augment",
    "load_coco_fields",
    "load_split",
    "load_stats",
    "require_split_file",
]
