"""The demo's training recipe, one run: steps done in the budget and the test-split figures of the exported
weights (the moving average when ``--ema-decay`` > 0) and of the last weights of the same run.

    .venv/bin/python bench/bench_demo_recipe.py [--minutes 10] [--seed 0] [--mixed-precision bf16|no]
                                                [--ema-decay 0.995] [--class-balance 0.5]
                                                [--data-root data/synthetic] [--n N]

Trains as ``make demo`` does (``src.demo``'s settings; the options above override them) on the demo's synthetic
set (``make demo`` writes it; generated and split here when its split files are missing), then scores the test split
(semantic: seed-protocol mIoU; instance: COCO mask AP) with both sets of weights.  Run it alone on the machine: the
budget is wall-clock.
The last line is the figure: steps, then seed mIoU / COCO AP of the exported and of the last weights.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src import demo  # noqa: E402
from src.defaults import SCORED_TASKS  # noqa: E402


def score(folder: Path, data_root: Path) -> tuple[float, float]:
    from src.evaluation.evaluate import evaluate

    metrics = evaluate(str(folder), data_root, "test", tasks=SCORED_TASKS, progress=False, device="cpu")
    figures = demo.headline(metrics)
    iou = metrics["semantic"]["semantic"]["per_class_iou"]
    print(
        f"{folder.name}: {metrics['n_images']} test images; per-class IoU "
        + ", ".join(f"{k} {v:.3f}" for k, v in iou.items() if v is not None),
        flush=True,
    )
    return figures["seed_miou"], figures["coco_ap"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0, help="training seed (the synthetic set is always seed 0)")
    p.add_argument("--mixed-precision", choices=["no", "bf16"], default=None, help="default: the demo's")
    p.add_argument("--ema-decay", type=float, default=None, help="default: the demo's")
    p.add_argument("--class-balance", type=float, default=None, help="default: the demo's (its scene's)")
    p.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--n", type=int, default=None, help="cutouts of the synthetic set (default: the demo's)")
    args = p.parse_args(argv)

    demo_args = demo.build_parser().parse_args(
        ["--data-root", str(args.data_root), "--no-progress"] + (["--n", str(args.n)] if args.n else [])
    )
    demo.resolve_scene_defaults(demo_args)
    if not (args.data_root / "galaxy_test.json").is_file():  # the demo's set, as make demo writes it
        demo.ensure_data(args.data_root, demo_args.n, 0, demo_args.size, demo_args.workers, progress=False)
        demo.ensure_splits(args.data_root, demo_args.size, progress=False)
    output = Path(tempfile.mkdtemp(prefix="bench_demo_recipe_")) / "model"
    demo_args.output, demo_args.minutes, demo_args.seed = output, args.minutes, args.seed
    for name in ("mixed_precision", "ema_decay", "class_balance"):
        if getattr(args, name) is not None:
            setattr(demo_args, name, getattr(args, name))

    from src.modelling.model import save_export
    from src.training import run_dir, train

    start = time.monotonic()
    result = train(demo.train_settings(demo_args))
    seconds = time.monotonic() - start
    steps = result["history"][-1]["step"]
    print(
        f"{steps} steps in {seconds:.0f} s (precision {demo_args.mixed_precision}, EMA decay {demo_args.ema_decay}, "
        f"class balance {demo_args.class_balance})",
        flush=True,
    )
    torch.set_num_threads(2)
    exported = score(output, args.data_root)
    last = exported
    if demo_args.ema_decay:
        from src.modelling.model import load_processor

        last_folder = output.parent / "last"
        save_export(result["last_weights"], load_processor(output), last_folder)
        last = score(last_folder, args.data_root)
    shutil.rmtree(output.parent, ignore_errors=True)
    shutil.rmtree(run_dir(output), ignore_errors=True)
    print(
        f"exported weights: seed mIoU {exported[0]:.4f}, COCO AP {exported[1]:.4f}; "
        f"last weights: seed mIoU {last[0]:.4f}, COCO AP {last[1]:.4f}"
    )
    print(f"RESULT {steps} steps: exported {exported[0]:.4f} / {exported[1]:.4f}, last {last[0]:.4f} / {last[1]:.4f}")


if __name__ == "__main__":
    main()
