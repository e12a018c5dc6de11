"""Inference precision: bf16 autocast against float32, the same model on the same images: agreement of the
per-pixel labels, the difference of the class probabilities, and the speed of each.

    .venv/bin/python bench/precision_parity.py [--model safetensors/galaxy_demo] [--data-root data/synthetic]
                                               [--split test] [--batch-size 8] [--device cpu|cuda]

Each image of the split goes through ``src.inference.segment`` (what ``predict.py`` runs) once per precision; the
label of a pixel is the argmax of its class probabilities.  Printed: the share of pixels with the same label
(target >= 99.5 %), the largest and the 99.9th-percentile absolute difference of a class probability, and the
images per second of the segmentation (forward pass + probabilities) of each precision, 2 threads.  The last line
is the figure: the label agreement.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.inference import segment, set_precision  # noqa: E402
from src.model import load_model  # noqa: E402
from src.splits import split_path  # noqa: E402
from src.via import IMAGE_DIR  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="safetensors/galaxy_demo")
    p.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--split", default="test")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    import json

    entries = json.loads(split_path(args.data_root, args.split).read_text())   # VIA: {key: {"filename": ...}}
    images = [np.asarray(Image.open(args.data_root / IMAGE_DIR / entry["filename"]).convert("RGB"))
              for entry in entries.values()]
    model, processor = load_model(args.model, device=args.device)
    probs, speed = {}, {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        set_precision(model, dtype)
        segment(model, processor, images[: args.batch_size], "semantic", batch_size=args.batch_size)   # warm-up
        start = time.perf_counter()
        results = segment(model, processor, images, "semantic", batch_size=args.batch_size)
        speed[name] = len(images) / (time.perf_counter() - start)
        probs[name] = [r[0] for r in results]
    same = sum(int((a.argmax(0) == b.argmax(0)).sum()) for a, b in zip(probs["fp32"], probs["bf16"]))
    total = sum(a.shape[1] * a.shape[2] for a in probs["fp32"])
    diff = np.concatenate([np.abs(a - b).ravel() for a, b in zip(probs["fp32"], probs["bf16"])])
    print(f"{args.model} on {len(images)} {args.split} images ({args.data_root}), batch {args.batch_size}, 2 threads")
    print(f"speed: fp32 {speed['fp32']:.2f} img/s, bf16 {speed['bf16']:.2f} img/s ({speed['bf16'] / speed['fp32']:.2f}x)")
    print(f"class probabilities: largest difference {diff.max():.4f}, 99.9th percentile {np.quantile(diff, 0.999):.4f}")
    print(f"RESULT same label on {100 * same / total:.3f} % of {total} pixels")


if __name__ == "__main__":
    main()
