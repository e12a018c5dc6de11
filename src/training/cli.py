"""``train_script.py``: the command line of a training, built from :class:`src.training.config.TrainConfig`.

Each option is a ``TrainConfig`` field (``--data-root`` is ``data_root``); its type and, in the help, its default
come from the dataclass.  The parser's own defaults are ``None``, so that a ``--recipe`` or a ``--config`` can fill
what was not given (:func:`src.training.config.resolve_config`).
"""

from __future__ import annotations

import argparse
import types
import typing
from dataclasses import fields

from src.defaults import TASKS, TRAIN_TASKS
from src.modelling.model import PRESETS
from src.training.config import MIXED_PRECISIONS, RECIPES, TrainConfig, load_config_file
from src.training.data import FIELD_CROP

#: Help of each option, in the order ``--help`` lists them; ``{default}`` stands for the field's default.  Fields
#: absent here (``poly_power``, ``val_split``) have no option: a ``--config`` file sets them.
HELP = {
    "data_root": "folder with galaxy_{train,val}.json, original/zoo2Main/, dataset_stats.json (default: {default})",
    "output": "output folder (default: safetensors/<recipe or model-task>)",
    "model_card": f"preset ({', '.join(PRESETS)}), save_pretrained folder, hub card, or a "
    "bare .safetensors state dict (default: {default})",
    "base_card": "architecture of a bare .safetensors state dict (default: swin-tiny)",
    "recipe": "the original models' settings: " + "; ".join(f"{k}: {v}" for k, v in RECIPES.items()),
    "task": "task the model is conditioned on; random = per image (default: {default})",
    "random_tasks": "with --task random, each image's task is drawn uniformly from this list; repeat a task to "
    "weight it, e.g. semantic semantic instance (default: {default})",
    "epochs": "length of the schedule N (default: {default})",
    "end_epoch": "stop after epoch M of the N-epoch schedule",
    "resume": None,  # two options: --resume-epoch K, --resume latest (build_parser)
    "batch_size": "images per step and process (default: {default})",
    "image_size": "square side in pixels (default: native)",
    "crop_size": "train on random crops of this side holding the object, at "
    "native resolution; the exported model runs on whole images (default: no crop)",
    "num_queries": "object queries (default: the preset's or card's)",
    "lr": "AdamW learning rate (default: {default})",
    "weight_decay": "AdamW weight decay (default: {default})",
    "grad_clip": "gradient-norm clipping (default: {default})",
    "warmup_steps": "default 5%% of the optimiser steps",
    "grad_accum": "gradient accumulation steps",
    "mixed_precision": "(default: {default})",
    "ema_decay": "export the exponential moving average of the weights with "
    "this decay per optimiser step, e.g. 0.995 (default: {default}, the last weights)",
    "val_limit": "validate on the first N validation images only (default: all)",
    "seed": "data order, augmentations, init (default: {default})",
    "augment": "no flips / 90° rotations",
    "in_memory": "decode all images once, keep them in RAM",
    "skip_bad": "skip (and count) unusable entries",
    "num_workers": "DataLoader workers",
    "max_minutes": "time budget; the LR schedule is fitted to it",
    "cpu": "force CPU",
    "coco": "train on a COCO instance file of annotated fields (python -m src.synthetic "
    "--field writes one) instead of the cutout splits: random crops of --crop-size px (default "
    f"{FIELD_CROP}) around its objects",
    "val_coco": "COCO file of the validation fields (default: every 5th image of --coco)",
    "crops_per_image": "with --coco: crops per image and epoch (default: {default})",
    "class_balance": "draw training images with weight (share of their class) "
    "** -X, with replacement: 0 shuffles every image once per epoch, 1 draws each class equally often "
    "(default: {default})",
}
#: Options whose values are restricted to a list.
CHOICES = {
    "recipe": sorted(RECIPES),
    "task": list(TRAIN_TASKS),
    "random_tasks": list(TASKS),
    "mixed_precision": list(MIXED_PRECISIONS),
}


def _shown(value) -> str:
    """A default as the help shows it."""
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_option(parser, name: str, kind, default) -> None:
    """``--name`` for the field ``name``: a switch for a boolean (``--no-name`` where the default is on), else a
    value of the field's type."""
    text = HELP[name].replace("{default}", _shown(default))
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        flag = flag if not default else f"--no-{flag[2:]}"
        parser.add_argument(flag, dest=name, action="store_const", const=not default, help=text)
        return
    value_type, nargs = kind, None
    if typing.get_origin(kind) is tuple:
        value_type, nargs = typing.get_args(kind)[0], "+"
    parser.add_argument(flag, type=value_type, nargs=nargs, choices=CHOICES.get(name), help=text)


def _value_type(hint):
    """``int`` of ``int | None``; the hint itself otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``train_script.py``: one option per :data:`HELP` entry, its defaults ``None``.

    Returns
    -------
    argparse.ArgumentParser
    """
    from src.cli import add_output_options

    p = argparse.ArgumentParser(
        prog="train_script.py", description="Fine-tune OneFormer on Galaxy Zoo 2 (see src/training/loop.py)."
    )
    hints = typing.get_type_hints(TrainConfig)
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name in HELP:
        if name == "resume":
            group = p.add_mutually_exclusive_group()
            group.add_argument("--resume-epoch", type=int, dest="resume", help="continue from the end of epoch K")
            group.add_argument("--resume", choices=["latest"], help="continue from the latest complete checkpoint")
        else:
            _add_option(p, name, _value_type(hints[name]), defaults[name])
    p.add_argument(
        "--config",
        help="a recorded configuration (OUTPUT/train_config.json, or a JSON subset of "
        "these options); options given on the command line override it",
    )
    add_output_options(p)
    return p


def main(argv=None) -> int:
    """``train_script.py``: exit status 0, or 2 with one line naming a user's mistake (no traceback).

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.
    """
    from src.cli import run_cli, setup_logging
    from src.training.loop import train

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    options = {k: v for k, v in vars(args).items() if k not in ("config", "verbose", "quiet")}
    if options.get("resume") is not None:
        options["resume"] = str(options["resume"])

    def body():
        base = load_config_file(args.config) if args.config else None
        train(argparse.Namespace(**options), base=base)

    return run_cli("train_script.py", body, verbose=args.verbose)
