"""Inference parity: bf16 autocast against float32, or this project's model patches against transformers' own
modules; the same model on the same images: agreement of the per-pixel labels, the difference of the class
probabilities, and the speed of each.

    .venv/bin/python bench/precision_parity.py [--model safetensors/galaxy_demo] [--data-root data/synthetic]
                                               [--split test] [--batch-size 8] [--device cpu|cuda]
                                               [--compare precision|patches] [--precision fp32|bf16]

Each image of the split goes through ``src.inference.segmentation.segment`` (what ``predict.py`` runs) once per
variant; the
label of a pixel is the argmax of its class probabilities.  ``--compare precision`` (default): float32 against
bf16 autocast.  ``--compare patches``: transformers' own OneFormer (its deformable attention, no
``src.modelling.patches`` hooks) against the model as ``src.modelling.model.load_model`` patches it, both at
``--precision``
(default fp32).  Printed: the share of pixels with the same label (target >= 99.5 %), the largest and the
99.9th-percentile absolute difference of a class probability, and the images per second of the segmentation
(forward pass + probabilities) of each variant, 2 threads.  The last line is the figure: the label agreement.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.splits import split_path  # noqa: E402
from src.data.via import IMAGE_DIR  # noqa: E402
from src.inference.segmentation import segment, set_precision  # noqa: E402
from src.modelling.model import load_model  # noqa: E402
from src.modelling.patches import transformers_deformable_modules  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="safetensors/galaxy_demo")
    p.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--compare", choices=("precision", "patches"), default="precision")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="with --compare patches")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    import json

    entries = json.loads(split_path(args.data_root, args.split).read_text())  # VIA: {key: {"filename": ...}}
    images = [
        np.asarray(Image.open(args.data_root / IMAGE_DIR / entry["filename"]).convert("RGB"))
        for entry in entries.values()
    ]
    model, processor = load_model(args.model, device=args.device)
    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    if args.compare == "precision":
        variants = {name: (model, dtype, contextlib.nullcontext) for name, dtype in dtypes.items()}
    else:
        reference = copy.deepcopy(model)
        for module in reference.modules():
            module._forward_pre_hooks.clear()
        dtype = dtypes[args.precision]
        variants = {
            "transformers": (reference, dtype, transformers_deformable_modules),
            "patched": (model, dtype, contextlib.nullcontext),
        }
    probs, speed = {}, {}
    for name, (net, dtype, context) in variants.items():
        set_precision(net, dtype)
        with context():
            segment(net, processor, images[: args.batch_size], "semantic", batch_size=args.batch_size)  # warm-up
            start = time.perf_counter()
            results = segment(net, processor, images, "semantic", batch_size=args.batch_size)
            speed[name] = len(images) / (time.perf_counter() - start)
        probs[name] = [r[0] for r in results]
    (a_name, a_probs), (b_name, b_probs) = probs.items()
    same = sum(int((a.argmax(0) == b.argmax(0)).sum()) for a, b in zip(a_probs, b_probs))
    total = sum(a.shape[1] * a.shape[2] for a in a_probs)
    diff = np.concatenate([np.abs(a - b).ravel() for a, b in zip(a_probs, b_probs)])
    print(f"{args.model} on {len(images)} {args.split} images ({args.data_root}), batch {args.batch_size}, 2 threads")
    if args.compare == "patches":
        print(f"both at {args.precision}")
    print(
        f"speed: {a_name} {speed[a_name]:.2f} img/s, {b_name} {speed[b_name]:.2f} img/s "
        f"({speed[b_name] / speed[a_name]:.2f}x)"
    )
    print(f"class probabilities: largest difference {diff.max():.4f}, 99.9th percentile {np.quantile(diff, 0.999):.4f}")
    print(f"RESULT same label on {100 * same / total:.3f} % of {total} pixels")


if __name__ == "__main__":
    main()
