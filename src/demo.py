"""The whole project on the embedded synthetic data, on a CPU: ``make demo`` (= ``python -m src.demo``).

    python -m src.demo [--minutes 10] [--n 1000] [--data-root data/synthetic] [--output safetensors/galaxy_demo]
                       [--images-dir images] [--retrain] [--rescore]

Stages (each one skipped when its result is already there, so a re-run only re-prints the table):

1. **data**      ``n`` synthetic GZ2 cutouts (seed 0, 256 px) under ``--data-root``    (``src.synthetic``)
2. **convert**   join + filters + 70/20/10 split + pixel statistics                    (``src.conversion``)
3. **train**     the ``galaxy-small`` preset from random weights, ``--minutes`` of CPU time: random
                 semantic / instance task per image, 128 px crops at native resolution  (``src.train``)
4. **score**     the test split, semantic task (seed protocol, standard mIoU) and instance task (COCO mask AP)
                 -> ``OUTPUT/metrics.json``                                              (``src.evaluate``)
5. **figures**   ``OUTPUT/loss_curve.png``, ``OUTPUT/confusion_matrix.png`` (+ per-class IoU / AP bars),
                 ``IMAGES/seg_comparison.png``, ``IMAGES/seginst_comparison.png``         (``src.visual``)

then prints the demo's figures beside the original project's real-data table.  ``OUTPUT/demo_summary.json``
records the figures, what each stage did, this run's wall times (``timings_s``) and each stage's wall time when
it last ran (``stage_seconds``).

Re-use rules: data are reused when ``demo_data.json`` (written after generation) and the VIA files exist; the
splits when they are newer than the VIA files; the model when ``OUTPUT/demo_train.json`` (written after the
export) exists, unless ``--retrain``; ``metrics.json`` when it is newer than the model, unless ``--rescore``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from src.atomic import write_json_atomic
from src.via import VIA_FILES

#: The original project's table (real GZ2 test split, 2,828 images, seed protocol; its AP is a home-made
#: 11-point AP, not COCO AP).
REAL_RESULTS = {
    "sem_only": {"mIoU": 0.6218, "Dice": 0.6539, "Acc": 0.7019, "AP": 0.4012},
    "sem+inst": {"mIoU": 0.6399, "Dice": 0.6726, "Acc": 0.7118, "AP": 0.1781},
}
#: The quality target of the demo on the synthetic test split.
TARGET = {"seed_miou": 0.60, "coco_ap": 0.40}

DATA_STAMP = "demo_data.json"
TRAIN_STAMP = "demo_train.json"
SUMMARY_FILE = "demo_summary.json"
SPLIT_FILES = ("galaxy_train.json", "galaxy_val.json", "galaxy_test.json", "dataset_stats.json")
MODEL_FILES = ("config.json", "model.safetensors")


# ----------------------------------------------------------------------------------------------- stages
def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def ensure_data(data_root: Path, n: int, seed: int, size: int, workers: int, progress: bool) -> dict:
    """Generate the synthetic set unless a complete one is there (``demo_data.json`` + the VIA files)."""
    stamp = data_root / DATA_STAMP
    if stamp.is_file() and all((data_root / f).is_file() for f in VIA_FILES):
        found = json.loads(stamp.read_text())
        if (found.get("n"), found.get("seed"), found.get("size")) != (n, seed, size):
            _say(f"note: {data_root} holds n={found.get('n')} seed={found.get('seed')} size={found.get('size')}, "
                 f"not the requested n={n} seed={seed} size={size}; reusing it (delete {data_root} to regenerate)")
        return {"skipped": True, **found}
    from src.synthetic import generate

    _say(f"generating {n} synthetic cutouts ({size} px, seed {seed}) under {data_root}")
    summary = generate(data_root, n, seed=seed, size=size, workers=workers, progress=progress)
    summary.pop("areas", None)
    write_json_atomic(stamp, summary, indent=1)
    return {"skipped": False, **summary}


def ensure_splits(data_root: Path, size: int, progress: bool) -> dict:
    """Convert and split unless the splits and statistics are newer than the VIA annotations."""
    via_time = max((data_root / f).stat().st_mtime for f in VIA_FILES)
    if all((data_root / f).is_file() and (data_root / f).stat().st_mtime >= via_time for f in SPLIT_FILES):
        return {"skipped": True}
    from src.conversion import convert, format_report

    _say("converting and splitting (70/20/10, stratified by class)")
    report = convert(data_root, image_size=size, stats=True, progress=progress)
    print(format_report(report), flush=True)
    return {"skipped": False, "kept": report["kept"], "splits": {k: v["total"] for k, v in report["splits"].items()}}


def train_settings(args) -> dict:
    """The ``src.train`` configuration of the demo model (the schedule is fitted to ``--minutes``)."""
    return dict(data_root=str(args.data_root), output=str(args.output), model_card=args.model_card,
                task=args.task, random_tasks=tuple(args.random_tasks), epochs=args.epochs,
                batch_size=args.batch_size,
                image_size=args.image_size, crop_size=args.crop_size or None, lr=args.lr,
                warmup_steps=args.warmup_steps, seed=args.seed, in_memory=True, max_minutes=args.minutes, cpu=args.cpu)


def model_finished(output: Path) -> bool:
    return (output / TRAIN_STAMP).is_file() and all((output / f).is_file() for f in MODEL_FILES)


def ensure_model(args) -> dict:
    """Train unless a finished model is there (``--retrain`` forces it).  Checkpoints are removed afterwards:
    a time-budgeted run is not meant to be resumed, and each one weighs three times the model."""
    output = Path(args.output)
    if model_finished(output) and not args.retrain:
        return {"skipped": True, **json.loads((output / TRAIN_STAMP).read_text())}
    from src.train import train

    (output / TRAIN_STAMP).unlink(missing_ok=True)
    settings = train_settings(args)
    _say(f"training {args.model_card} for at most {args.minutes:g} min on "
         f"{'crops of ' + str(args.crop_size) + ' px' if args.crop_size else 'whole images'} "
         f"(task {args.task}, batch {args.batch_size}, lr {args.lr:g})")
    start = time.monotonic()
    result = train(settings)
    seconds = time.monotonic() - start
    if not args.keep_checkpoints:
        shutil.rmtree(output / "checkpoints", ignore_errors=True)
    last = result["history"][-1]
    info = {"settings": settings, "seconds": round(seconds, 1), "epochs": len(result["history"]),
            "steps": last["step"], "train_loss": last["train_loss"], "val_loss": last["val_loss"],
            "stopped_by_budget": bool(result["stopped_by_budget"])}
    write_json_atomic(output / TRAIN_STAMP, info, indent=1)
    return {"skipped": False, **info}


def ensure_metrics(args) -> tuple[dict, dict]:
    """Score the split (semantic + instance) unless ``metrics.json`` of that split is newer than the model."""
    from src.evaluate import evaluate, write_metrics

    output = Path(args.output)
    path = output / "metrics.json"
    if (path.is_file() and not args.rescore
            and path.stat().st_mtime >= (output / "model.safetensors").stat().st_mtime):
        metrics = json.loads(path.read_text())
        if metrics.get("split") == args.split:
            return metrics, {"skipped": True}
    _say(f"scoring {output} on the {args.split} split (semantic and instance tasks)")
    metrics = evaluate(output, args.data_root, split=args.split, tasks=("semantic", "instance"),
                       batch_size=args.eval_batch_size, progress=not args.no_progress, device=args.device)
    write_metrics(metrics, path)
    return metrics, {"skipped": False}


def make_figures(args, metrics: dict) -> dict:
    """Confusion matrix and per-class bars beside the model; the two comparison grids under ``--images-dir``.
    Redrawn only when missing or older than ``metrics.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.visual import compare_models, metrics_figures

    output, images = Path(args.output), Path(args.images_dir)
    label = f"{args.model_card} (synthetic)"
    newer = (output / "metrics.json").stat().st_mtime
    targets = {"confusion_matrix": output / "confusion_matrix.png",
               "seg_comparison": images / "seg_comparison.png",
               "seginst_comparison": images / "seginst_comparison.png"}
    stale = [name for name, path in targets.items() if not path.is_file() or path.stat().st_mtime < newer]
    if "confusion_matrix" in stale:
        for fig in metrics_figures({label: metrics}, out_dir=output).values():
            plt.close(fig)
    for name, task in (("seg_comparison", "semantic"), ("seginst_comparison", "instance")):
        if name in stale:
            plt.close(compare_models({label: output}, args.data_root, targets[name], task=task,
                                     n_samples=args.n_samples, split=args.split, device=args.device))
    return {"skipped": not stale, "files": {k: str(v) for k, v in targets.items()},
            "loss_curve": str(output / "loss_curve.png")}


# ----------------------------------------------------------------------------------------------- table
def headline(metrics: dict) -> dict:
    """The figures the demo reports (``None`` where a task was not scored)."""
    sem = metrics.get("semantic") or {}
    seed, std = sem.get("seed_protocol") or {}, sem.get("semantic") or {}
    coco = (metrics.get("instance") or {}).get("coco") or {}
    original = (metrics.get("instance") or {}).get("original_ap") or {}
    return {"seed_miou": seed.get("mean_iou"), "dice": seed.get("dice"), "accuracy": seed.get("accuracy"),
            "original_ap": original.get("ap"), "coco_ap": coco.get("ap"), "coco_ap50": coco.get("ap50"), "coco_ap75": coco.get("ap75"),
            "std_miou": std.get("mean_iou"), "pixel_accuracy": std.get("pixel_accuracy"),
            "n_images": metrics.get("n_images")}


def _f(value) -> str:
    return "     -" if value is None else f"{value:6.4f}"


def results_table(metrics: dict, model_label: str) -> str:
    """The demo's synthetic figures under the original project's real-data table, clearly labelled."""
    h = headline(metrics)
    rule = "-" * 96
    lines = [
        rule,
        f"{'model':<34}{'data (test split)':<26}{'mIoU':>7}{'Dice':>7}{'Acc':>7}{'AP11':>7}{'COCO AP':>8}",
        rule,
        "REAL data: the original project (swin-tiny fine-tuned from the hub weights)",
    ]
    for name, row in REAL_RESULTS.items():
        lines.append(f"{'  ' + name:<34}{'real GZ2, 2,828 images':<26}{row['mIoU']:>7.4f}{row['Dice']:>7.4f}"
                     f"{row['Acc']:>7.4f}{row['AP']:>7.4f}{'-':>8}")
    lines += [
        "SYNTHETIC data: this demo (random init, CPU time budget)",
        f"{'  ' + model_label:<34}{'synthetic, ' + str(h['n_images']) + ' images':<26}{_f(h['seed_miou']):>7}"
        f"{_f(h['dice']):>7}{_f(h['accuracy']):>7}{_f(h['original_ap']):>7}{_f(h['coco_ap']):>8}",
        rule,
        "mIoU / Dice / Acc: seed protocol (semantic task).  AP11: the original project's own 11-point AP routine",
        "(instance task, quirks included, src.metrics.original_ap); COCO AP: mask AP .5:.95, a different measure.",
        f"Synthetic scores say nothing about real data.  Standard semantic mIoU (all pixels, 6 classes): "
        f"{_f(h['std_miou'])}.",
        f"Target on synthetic: seed mIoU >= {TARGET['seed_miou']:.2f} "
        f"({'met' if (h['seed_miou'] or 0) >= TARGET['seed_miou'] else 'NOT met'}), "
        f"COCO AP >= {TARGET['coco_ap']:.2f} ({'met' if (h['coco_ap'] or 0) >= TARGET['coco_ap'] else 'NOT met'}).",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m src.demo", description="Synthetic data -> conversion -> CPU "
                                "training -> scoring -> figures, each stage reused when already done.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget (the LR schedule fits it)")
    p.add_argument("--n", type=int, default=1000, help="synthetic cutouts to generate")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic set and of training")
    p.add_argument("--size", type=int, default=256, help="synthetic cutout side in pixels")
    p.add_argument("--workers", type=int, default=2, help="generator processes")
    p.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--output", type=Path, default=Path("safetensors/galaxy_demo"))
    p.add_argument("--images-dir", type=Path, default=Path("images"), help="where the comparison figures go")
    p.add_argument("--model-card", default="galaxy-small", help="preset to train from random weights")
    p.add_argument("--task", default="random", choices=["semantic", "instance", "panoptic", "random"],
                   help="training task (random: semantic or instance per image, so both heads learn)")
    p.add_argument("--random-tasks", nargs="+", default=["semantic", "instance"],
                   choices=["semantic", "instance", "panoptic"],
                   help="with --task random, each image's task is drawn uniformly from these (repeat one to weight it)")
    p.add_argument("--crop-size", type=int, default=128,
                   help="train on crops of this side around the galaxy at native resolution (0: whole images)")
    p.add_argument("--image-size", type=int, default=None, help="resize to this side (default: native)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup-steps", type=int, default=None, help="default: 5%% of the fitted schedule")
    p.add_argument("--epochs", type=int, default=100, help="planned epochs (the time budget ends training first)")
    p.add_argument("--split", default="test", help="split to score")
    p.add_argument("--eval-batch-size", type=int, default=8)
    p.add_argument("--n-samples", type=int, default=4, help="images in each comparison figure")
    p.add_argument("--device", default=None, help="scoring device (default: cuda, else mps, else cpu)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU exists")
    p.add_argument("--retrain", action="store_true", help="train again even if a finished model exists")
    p.add_argument("--rescore", action="store_true", help="score again even if metrics.json is up to date")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUTPUT/checkpoints after training")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (generation, scoring)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the traceback of a reported error")
    return p


def run(args) -> dict:
    """All the stages; returns (and writes to ``OUTPUT/demo_summary.json``) settings, stage timings, figures."""
    if args.minutes <= 0:
        raise ValueError(f"--minutes must be positive, got {args.minutes}")
    args.data_root, args.output = Path(args.data_root), Path(args.output)
    progress = not args.no_progress
    stages, timings = {}, {}
    total_start = time.monotonic()
    for name, call in (("data", lambda: ensure_data(args.data_root, args.n, args.seed, args.size, args.workers,
                                                     progress)),
                       ("convert", lambda: ensure_splits(args.data_root, args.size, progress)),
                       ("train", lambda: ensure_model(args))):
        start = time.monotonic()
        stages[name] = call()
        timings[name] = round(time.monotonic() - start, 1)
        _say(f"{name}: {'reused' if stages[name]['skipped'] else 'done'} in {timings[name]:.1f} s")
    start = time.monotonic()
    metrics, stages["score"] = ensure_metrics(args)
    timings["score"] = round(time.monotonic() - start, 1)
    _say(f"score: {'reused' if stages['score']['skipped'] else 'done'} in {timings['score']:.1f} s")
    start = time.monotonic()
    stages["figures"] = make_figures(args, metrics)
    timings["figures"] = round(time.monotonic() - start, 1)
    _say(f"figures: {'reused' if stages['figures']['skipped'] else 'done'} in {timings['figures']:.1f} s")
    timings["total"] = round(time.monotonic() - total_start, 1)

    # wall time of each stage when it last ran (a re-run that reuses a stage keeps the earlier figure)
    previous = args.output / SUMMARY_FILE
    ran = json.loads(previous.read_text()).get("stage_seconds", {}) if previous.is_file() else {}
    ran.update({k: v for k, v in timings.items() if k != "total" and not stages[k]["skipped"]})
    summary = {"results": headline(metrics), "target": TARGET, "real_results": REAL_RESULTS,
               "timings_s": timings, "stage_seconds": ran, "stages": stages,
               "files": {"model": str(args.output), "metrics": str(args.output / "metrics.json"),
                         **stages["figures"]["files"], "loss_curve": stages["figures"]["loss_curve"]}}
    write_json_atomic(args.output / SUMMARY_FILE, summary, indent=1)
    print()
    train_s = stages["train"].get("seconds")
    print(results_table(metrics, args.model_card + (f", {train_s / 60:.1f} min training" if train_s else "")))
    print("wall times of this run (s): " + "  ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    if any(stage["skipped"] for stage in stages.values()):
        print("wall times when each stage last ran (s): " + "  ".join(f"{k} {v:.1f}" for k, v in ran.items()))
    print(f"outputs: {args.output}/ (model, metrics.json, loss_curve.png, confusion_matrix.png), "
          f"{args.images_dir}/seg_comparison.png, {args.images_dir}/seginst_comparison.png")
    return summary


def main(argv=None) -> int:
    from src.cli import run_cli

    args = build_parser().parse_args(argv)
    return run_cli("python -m src.demo", lambda: run(args) and None, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
