"""Demo model quality: train as ``make demo`` does (optionally with other preset settings), score the test split.

    .venv/bin/python bench/bench_demo_quality.py [--minutes 10] [--seed 0] [--dropout D] [--drop-path P]
                                                 [--class-weight W] [--scene sdss|clean]
                                                 [--data-root data/synthetic] [--keep DIR]

Uses the demo's synthetic set of ``--scene`` (run ``make demo`` first, or it is generated and split here), the
demo's training settings (``src.demo``'s defaults) and the ``galaxy-small`` preset, with ``--dropout`` /
``--drop-path`` / ``--class-weight`` overriding the preset to compare variants.  Prints, for the test split:

* the seed-protocol mIoU and accuracy (semantic task) and the per-class standard IoU;
* how well the model ranks spiral vs spiral barred: the area under the ROC curve of p(SB) / (p(S) + p(SB)) of
  the most galaxy-like query, over the test spirals (0.5 = no separation);
* the "mode gap": the class cross-entropy of the same validation batch in eval mode and in training mode (no
  contrastive term in either).  With dropout the two differ; eval mode is what validation and inference use.

The last line is the figure: seed mIoU.  One run takes ``--minutes`` plus about a minute.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import mannwhitneyu

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src import demo  # noqa: E402
from src.classes import LABEL2ID  # noqa: E402
from src.modelling.model import PRESETS, set_training_mode  # noqa: E402

SPIRAL, BARRED = LABEL2ID["spiral"], LABEL2ID["spiral barred"]


@torch.no_grad()
def spiral_auc(model, processor, dataset) -> tuple[float, int]:
    """ROC AUC of p(SB) / (p(S) + p(SB)) (most galaxy-like query, semantic task) over the S and SB images."""
    from src.inference.segmentation import forward

    scores, barred = [], []
    items = [dataset[i] for i in range(len(dataset))]
    items = [it for it in items if it["class_ids"] and it["class_ids"][0] in (SPIRAL, BARRED)]
    for start in range(0, len(items), 8):
        chunk = items[start : start + 8]
        probs = forward(model, processor, [it["image"] for it in chunk], "semantic").class_queries_logits.softmax(-1)
        for it, p in zip(chunk, probs):
            q = int(p[:, 1:-1].sum(-1).argmax())
            scores.append(float(p[q, BARRED] / (p[q, SPIRAL] + p[q, BARRED])))
            barred.append(it["class_ids"][0] == BARRED)
    scores, barred = np.array(scores), np.array(barred)
    u = mannwhitneyu(scores[barred], scores[~barred]).statistic
    return float(u / (barred.sum() * (~barred).sum())), len(items)


@torch.no_grad()
def mode_gap(model, processor, data_root, n: int = 16) -> dict:
    """Class cross-entropy (weighted as in training) of ``n`` validation crops in eval and in training mode."""
    import transformers.models.oneformer.modeling_oneformer as oneformer

    from src.data.datasets import GalaxyDataset

    dataset = GalaxyDataset(data_root, "val", processor, task="semantic", augment=False, crop_size=128)
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    seen = {}
    original = oneformer.OneFormerForUniversalSegmentation.get_loss

    def spy(self, loss_dict):
        seen["ce"] = float(sum(v for k, v in loss_dict.items() if k.startswith("loss_cross_entropy")))
        return original(self, loss_dict)

    oneformer.OneFormerForUniversalSegmentation.get_loss = spy
    try:
        out = {}
        for training in (False, True):
            set_training_mode(model, training)
            batch = dataset.collator(training=training)(items)
            torch.manual_seed(0)
            model(**batch)
            out["training" if training else "eval"] = seen["ce"]
    finally:
        oneformer.OneFormerForUniversalSegmentation.get_loss = original
        set_training_mode(model, False)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0, help="training seed (the synthetic set is always seed 0)")
    p.add_argument("--dropout", type=float, default=None, help="override the preset's OneFormer dropout")
    p.add_argument("--drop-path", type=float, default=None, help="override the preset's Swin drop-path rate")
    p.add_argument("--class-weight", type=float, default=None, help="override the preset's class loss weight")
    p.add_argument(
        "--scene",
        choices=["sdss", "clean"],
        default="sdss",
        help="synthetic scene and its demo recipe (python -m src.demo --scene)",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=Path("data/synthetic"),
        help="where the scene's 1,000 cutouts are (generated when missing); one folder per scene",
    )
    p.add_argument("--keep", type=Path, default=None, help="keep the trained model in this folder")
    args = p.parse_args(argv)
    torch.set_num_threads(2)

    preset = PRESETS["galaxy-small"]
    overrides = {k: v for k, v in (("dropout", args.dropout), ("class_weight", args.class_weight)) if v is not None}
    preset["oneformer"].update(overrides)
    if args.drop_path is not None:
        preset["backbone"]["drop_path_rate"] = args.drop_path
    print(
        f"galaxy-small: dropout {preset['oneformer'].get('dropout', 0.1)}, drop path "
        f"{preset['backbone']['drop_path_rate']}, class weight {preset['oneformer'].get('class_weight', 2.0)}; "
        f"{args.minutes:g} min, training seed {args.seed}",
        flush=True,
    )

    demo_args = demo.build_parser().parse_args(
        ["--data-root", str(args.data_root), "--scene", args.scene, "--no-progress"]
    )
    demo.resolve_scene_defaults(demo_args)  # the scene's demo recipe (sdss: whole cutouts, class balance)
    demo.ensure_data(
        args.data_root, demo_args.n, 0, demo_args.size, demo_args.workers, progress=False, scene=args.scene
    )
    demo.ensure_splits(args.data_root, demo_args.size, progress=False)
    output = args.keep or Path(tempfile.mkdtemp(prefix="bench_demo_quality_"))
    demo_args.output, demo_args.minutes, demo_args.seed = output, args.minutes, args.seed

    from src.evaluation.evaluate import evaluate, ground_truth_dataset
    from src.modelling.model import load_model
    from src.training import train

    start = time.monotonic()
    result = train(demo.train_settings(demo_args))
    trained = time.monotonic() - start
    model, processor = load_model(str(output), device="cpu")
    metrics = evaluate(
        str(output),
        args.data_root,
        "test",
        tasks=("semantic",),
        progress=False,
        device="cpu",
        model=model,
        processor=processor,
    )
    auc, n_spirals = spiral_auc(model, processor, ground_truth_dataset(args.data_root, "test"))
    gap = mode_gap(model, processor, args.data_root)
    if args.keep is None:
        from src.training import run_dir

        shutil.rmtree(output, ignore_errors=True)
        shutil.rmtree(run_dir(output), ignore_errors=True)

    seed, iou = metrics["semantic"]["seed_protocol"], metrics["semantic"]["semantic"]["per_class_iou"]
    print(f"{result['history'][-1]['step']} steps in {trained:.0f} s")
    print("per-class IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in iou.items() if v is not None))
    print(f"spiral vs spiral barred ranking AUC: {auc:.3f} ({n_spirals} test spirals)")
    print(
        f"class cross-entropy of 16 validation crops: eval mode {gap['eval']:.2f}, training mode {gap['training']:.2f}"
    )
    print(f"RESULT seed mIoU {seed['mean_iou']:.4f}  accuracy {seed['accuracy']:.4f}")


if __name__ == "__main__":
    main()
