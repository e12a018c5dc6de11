"""The training configuration: :class:`TrainConfig` (the one home of every option's default), the original
project's :data:`RECIPES`, and how the options given, a recipe and a recorded configuration (``--config``) are
layered into one configuration."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from src.defaults import RANDOM_TASKS
from src.modelling.model import HUB_SWIN_TINY

#: The two models of the original project (fine-tuned from the hub weights, 150 queries, swin-tiny).
RECIPES: dict[str, dict] = {
    "sem_only": dict(model_card=HUB_SWIN_TINY, task="semantic", epochs=5, batch_size=1, num_queries=150),
    "sem_inst": dict(model_card=HUB_SWIN_TINY, task="random", epochs=10, batch_size=2, num_queries=150),
}
#: The precisions Accelerate trains in (``mixed_precision``).
MIXED_PRECISIONS = ("no", "bf16", "fp16")


@dataclass
class TrainConfig:
    data_root: str = "."
    output: str | None = None
    model_card: str = "galaxy-small"
    base_card: str | None = None
    recipe: str | None = None
    task: str = "semantic"
    random_tasks: tuple[str, ...] = RANDOM_TASKS  # task "random" draws from these; repeat one to weight it
    epochs: int = 5
    end_epoch: int | None = None
    batch_size: int = 2
    image_size: int | None = None
    crop_size: int | None = None  # train on crops of this side at native resolution (validation: centre crops)
    num_queries: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    warmup_steps: int | None = None  # default: WARMUP_FRACTION (5 %) of the schedule (of a budget-fitted one), >= 1
    poly_power: float = 0.9
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    augment: bool = True
    in_memory: bool = False
    skip_bad: bool = False
    num_workers: int = 0
    resume: str | None = None  # "latest" or an epoch number
    max_minutes: float | None = None
    val_split: str = "val"
    cpu: bool = False
    coco: str | None = None  # train on crops of the fields of this COCO file instead of the cutout splits
    val_coco: str | None = None  # validation fields (default: every 5th image of ``coco``)
    crops_per_image: int = 16  # COCO fields: crops per image and epoch
    class_balance: float = 0.0  # draw training images with weight (share of their class) ** -class_balance
    ema_decay: float = 0.0  # export an exponential moving average of the weights (decay per step); 0: off
    val_limit: int | None = None  # validate on the first N images of the validation split only (default: all)


def explicit_options(args_or_config) -> dict:
    """The options a caller gave: a namespace's values that are not ``None`` (the CLI's defaults are ``None``),
    a dict's items, or a ``TrainConfig``'s values that differ from the defaults."""
    if isinstance(args_or_config, TrainConfig):
        defaults = asdict(TrainConfig())
        return {k: v for k, v in asdict(args_or_config).items() if v != defaults[k]}
    if isinstance(args_or_config, dict):
        return dict(args_or_config)
    return {k: v for k, v in vars(args_or_config).items() if v is not None}


def check_names(values: dict, where: str) -> None:
    """Refuse option names that are not :class:`TrainConfig` fields; ``where`` prefixes the message."""
    unknown = set(values) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{where}unknown training options: {', '.join(sorted(unknown))}")


def apply_layer(values: dict, layer: dict) -> None:
    """Apply one layer of options: its recipe's values first, then its own values that are not ``None``."""
    recipe = layer.get("recipe")
    if recipe is not None:
        if recipe not in RECIPES:
            raise ValueError(f"recipe {recipe!r}: expected one of {', '.join(RECIPES)}")
        values.update(RECIPES[recipe])
    values.update({k: v for k, v in layer.items() if v is not None})


def resolve_config(args_or_config, base: dict | None = None) -> TrainConfig:
    """``TrainConfig`` from a namespace / dict / TrainConfig: defaults < ``base`` (a recorded configuration,
    ``--config``) < recipe < explicitly given values (:func:`explicit_options`).

    For a ``TrainConfig`` object, "given" means different from the default; pass a dict to override a recipe
    with a value that equals the default.

    Parameters
    ----------
    args_or_config : argparse.Namespace, dict or TrainConfig
        The options given.
    base : dict, optional
        A recorded configuration that the options given override.

    Returns
    -------
    TrainConfig
        The checked configuration; ``output`` defaults to ``safetensors/<recipe or model-task>``.
    """
    given = explicit_options(args_or_config)
    check_names(given, "")
    values: dict = {}
    if base:
        check_names(base, "")
        apply_layer(values, base)
    apply_layer(values, given)
    if values.get("random_tasks") is not None:
        values["random_tasks"] = tuple(values["random_tasks"])  # JSON (train_state.json) gives a list
    config = TrainConfig(**values)
    if config.output is None:
        stem = config.recipe or f"{Path(config.model_card).stem}-{config.task}"
        config.output = str(Path("safetensors") / stem)
    if config.end_epoch is not None and not 1 <= config.end_epoch <= config.epochs:
        raise ValueError(f"--end-epoch {config.end_epoch} must lie in 1..{config.epochs}")
    if config.epochs < 1 or config.batch_size < 1 or config.grad_accum < 1:
        raise ValueError("epochs, batch size and gradient accumulation must be >= 1")
    if not 0 <= config.class_balance <= 1:
        raise ValueError(f"--class-balance {config.class_balance:g} must lie in 0..1")
    if config.val_limit is not None and config.val_limit < 1:
        raise ValueError(f"--val-limit {config.val_limit} must be >= 1 (leave it out to validate on every image)")
    return config


def load_config_file(path) -> dict:
    """A recorded configuration (``train_config.json`` of a run, or a hand-written subset) for ``--config``.

    Its ``resume`` entry is dropped (resuming is a decision of the new command line).  Unknown keys are an error
    naming the file.

    Parameters
    ----------
    path : str or Path
        The JSON file.

    Returns
    -------
    dict
        The options it records, by :class:`TrainConfig` field name.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: configuration file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON configuration ({err})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object of training options, got {type(values).__name__}")
    check_names(values, f"{path}: ")
    values.pop("resume", None)
    return values
