"""Training: the configuration, the loop and what it needs.

``config`` (:class:`TrainConfig`, the recipes, layered options), ``resume`` (what a resumed run keeps and refuses),
``schedule`` (warmup + polynomial LR), ``sampler`` (data order and random draws), ``data`` (datasets and loaders),
``budget`` (``--max-minutes``), ``checkpoints`` (the run folder), ``loop`` (:func:`train`), ``cli``
(``train_script.py``).
"""

from src.training.checkpoints import find_checkpoint, list_checkpoints, run_dir, save_checkpoint
from src.training.cli import build_parser, main
from src.training.config import RECIPES, TrainConfig, load_config_file, resolve_config
from src.training.loop import evaluate_loss, moving_average, train
from src.training.resume import data_fingerprint, resume_config
from src.training.sampler import EpochSampler, batch_seed, class_balance_weights
from src.training.schedule import WarmupPolyLR

__all__ = [
    "RECIPES",
    "EpochSampler",
    "TrainConfig",
    "WarmupPolyLR",
    "batch_seed",
    "build_parser",
    "class_balance_weights",
    "data_fingerprint",
    "evaluate_loss",
    "find_checkpoint",
    "list_checkpoints",
    "load_config_file",
    "main",
    "moving_average",
    "resolve_config",
    "resume_config",
    "run_dir",
    "save_checkpoint",
    "train",
]
