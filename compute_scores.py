#!/usr/bin/env python
"""Score a trained OneFormer on a split and write metrics.json (thin CLI over src.evaluation.evaluate).

    python compute_scores.py --model safetensors/NAME --data-root DIR [--split test]
        [--task semantic|instance|panoptic|all ...] [--out M.json] [--predictions-out predictions.json]
        [--batch-size B] [--base-card swin-tiny] [--device cpu|cuda] [--limit N]

Several processes (``accelerate launch --num_processes N compute_scores.py ...`` or ``torchrun``): each scores a
share of the batches, the main process gathers the results and writes the files; the metrics equal one process's.

--model: a save_pretrained directory, or a bare .safetensors state dict of the original project (its
architecture given by --base-card, default the swin-tiny preset = shi-labs/oneformer_ade20k_swin_tiny).

Survey fields (``src.field.evaluate``): every galaxy of annotated frames (``python -m src.synthetic --field``),
scored for a field strategy, or for sep alone (no model):

    python compute_scores.py --fields DIR [--model M] [--strategy cutout|tiles|sep] [--stamp-scale fill|native]
        [--tile 512] [--overlap 224] [--limit N] [--out metrics.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from src.cli import add_output_options, run_cli, setup_logging
from src.defaults import SCORED_TASKS, TASKS
from src.evaluation.evaluate import evaluate, format_table, write_metrics
from src.field.cutout import STAMP_SCALES
from src.field.run import OUTLINES, STRATEGIES, FieldSettings
from src.field.stars import STAR_RULES

logger = logging.getLogger("src.compute_scores")
#: The field options' defaults (``--fields``): predict.py --field's, from one place.
FIELD = FieldSettings()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="compute_scores.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        help="save_pretrained directory, .safetensors file or preset (needed except for --fields with --strategy sep)",
    )
    parser.add_argument("--data-root", default=".", help="folder with galaxy_<split>.json and original/zoo2Main")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--task",
        nargs="+",
        default=list(SCORED_TASKS),
        choices=[*TASKS, "all"],
        help=f"task(s) the model is conditioned on and scored for (default: {' '.join(SCORED_TASKS)})",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="metrics JSON (written atomically; default: MODEL/metrics.json for an export folder, "
        "NAME.metrics.json beside a .safetensors file; required otherwise and with --fields). "
        "An existing file is replaced only when it is the metrics of an earlier run (said)",
    )
    parser.add_argument(
        "--predictions-out", default=None, help="instance predictions in COCO results format (image_id = objid)"
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--base-card", default=None, help="architecture of a bare .safetensors state dict")
    parser.add_argument("--device", default=None, help="default: cuda, else mps, else cpu")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images (quick checks)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_output_options(parser)
    fields = parser.add_argument_group("survey fields (README: 'Survey fields')")
    fields.add_argument(
        "--fields",
        help="score on annotated fields instead of a split: a folder with field_annotations.json (COCO), or the file",
    )
    fields.add_argument(
        "--strategy",
        default=FIELD.strategy,
        choices=STRATEGIES,
        help="cutout (model trained on cutouts), tiles (model trained on fields) or sep alone "
        f"(default {FIELD.strategy})",
    )
    fields.add_argument(
        "--stamp-scale",
        default=FIELD.stamp_scale,
        choices=STAMP_SCALES,
        help=f"cutout: the GZ2 stamp rule, or stamps at the frame's scale (default {FIELD.stamp_scale})",
    )
    fields.add_argument(
        "--tile-task",
        default=FIELD.task,
        choices=TASKS,
        help="tiles: the task the model is conditioned on, which decides what an object is "
        f"(as predict.py --task; default {FIELD.task})",
    )
    fields.add_argument(
        "--outline",
        default=FIELD.outline,
        choices=OUTLINES,
        help="cutout: object outlines from sep's segments or the model "
        f"(predict.py --outline; default {FIELD.outline})",
    )
    fields.add_argument(
        "--stars",
        default=FIELD.stars,
        choices=STAR_RULES,
        help=f"point sources scored as class A or with the model's class (predict.py --stars; default {FIELD.stars})",
    )
    fields.add_argument("--tile", type=int, default=FIELD.tile, help=f"tiles: tile side, px (default {FIELD.tile})")
    fields.add_argument(
        "--overlap", type=int, default=FIELD.overlap, help=f"tiles: tile overlap, px (default {FIELD.overlap})"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Exit status 0, or 2 with one line naming a user's mistake (bad path, option or input file)."""
    args = parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    if args.fields is not None:
        return run_cli("compute_scores.py", lambda: _fields(args), verbose=args.verbose)

    def body():
        if args.model is None:
            raise ValueError("--model is required")
        if args.predictions_out is not None:
            _check_replace(Path(args.predictions_out), lambda old: isinstance(old, list), "COCO predictions")
        args.out = str(metrics_path(args))
        metrics = evaluate(
            args.model,
            args.data_root,
            split=args.split,
            tasks=args.task,
            batch_size=args.batch_size,
            base_card=args.base_card,
            predictions_out=args.predictions_out,
            progress=not (args.no_progress or args.quiet),
            device=args.device,
            limit=args.limit,
        )
        if metrics["n_processes"] > 1 and not _is_main_process():
            return  # several processes (torchrun / accelerate launch): the main one reports and writes
        print(format_table(metrics))
        write_metrics(metrics, args.out)
        print(f"\nwrote {args.out}" + (f" and {args.predictions_out}" if args.predictions_out else ""))

    return run_cli("compute_scores.py", body, verbose=args.verbose)


def _fields(args) -> None:
    from src.field.evaluate import evaluate_fields, format_field_table
    from src.field.run import FieldSettings

    if args.model is None and args.strategy != "sep":
        raise ValueError(f"--strategy {args.strategy} needs a --model (only --strategy sep runs without one)")
    args.out = str(metrics_path(args))
    settings = FieldSettings(
        strategy=args.strategy,
        stamp_scale=args.stamp_scale,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        task=args.tile_task,
        outline=args.outline,
        stars=args.stars,
    )
    metrics = evaluate_fields(
        args.fields,
        args.model if args.strategy != "sep" else None,
        settings,
        limit=args.limit,
        device=args.device,
        base_card=args.base_card,
        progress=not (args.no_progress or args.quiet),
    )
    print(format_field_table(metrics))
    write_metrics(metrics, args.out)
    print(f"\nwrote {args.out}")


def metrics_path(args) -> Path:
    """Where the metrics go: ``--out``, else beside the model (an export folder: ``MODEL/metrics.json``, whose model
    card then shows them; a ``.safetensors`` file: ``NAME.metrics.json``).  Never the current folder by default.
    An existing file is replaced only when it holds the metrics of an earlier run (a warning says so)."""
    from src.modelling.model import resolve_model_source

    if args.out is not None:
        path = Path(args.out)
    else:
        kind, source = resolve_model_source(args.model) if args.model and args.fields is None else (None, None)
        if kind == "export":
            path = Path(source) / "metrics.json"
        elif kind == "state_dict":
            path = Path(source).with_suffix(".metrics.json")
        else:
            raise ValueError(
                "--out is required (the metrics file) unless --model is an export folder or a "
                ".safetensors file, beside which they are written"
            )
    _check_replace(
        path,
        lambda old: isinstance(old, dict) and "created" in old and ("model" in old or "strategy" in old),
        "metrics",
    )
    return path


def _check_replace(path: Path, ours, what: str) -> None:
    """An output file may replace only an earlier run's (``ours(its JSON)``), saying so; anything else is refused."""
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; name the {what} file")
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if not ours(old):
        raise ValueError(
            f"{path}: exists and is not a {what} file of compute_scores.py; choose another name (it is left as it is)"
        )
    logger.warning(f"replacing {path} ({what} of an earlier run)")


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


if __name__ == "__main__":
    sys.exit(main())
