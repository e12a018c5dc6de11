"""Inference throughput: batched OneFormer forward passes under ``torch.inference_mode``.

    .venv/bin/python bench/bench_inference.py --model galaxy-small --image-size 256 --batch-size 8 --threads 2
    python bench/bench_inference.py --model swin-tiny --image-size 256 --batch-size 32 --device cuda [--bf16]

``--model``: a preset (random weights; the speed depends on the weights a little: 14.7 against 15.9 img/s for
the demo model, 2026-12-05) or a ``save_pretrained`` folder such as ``safetensors/galaxy_demo``.  Timed: the
processor encoding of the batch (normalisation, task tokens) and the model's forward pass, conditioned on
``--task``; post-processing (semantic maps / COCO detections) is not timed.
Each repeat runs ``--batches`` batches after ``--warmup`` untimed ones; the figure is the median over
``--repeats`` repeats, in images per second (the last line).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.inference.segmentation import forward  # noqa: E402
from src.modelling.model import count_parameters, load_model  # noqa: E402


def synthetic_batch(batch_size: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Images with the real cutouts' pixel statistics (the speed does not depend on the content)."""
    rng = np.random.default_rng(seed)
    return [
        np.clip(rng.normal((8.6, 6.0, 4.9), (14.7, 12.4, 8.7), (size, size, 3)), 0, 255).astype(np.uint8)
        for _ in range(batch_size)
    ]


def run(model, processor, images, task: str, batches: int, bf16: bool = False) -> float:
    device = next(model.parameters()).device
    start = time.perf_counter()
    for _ in range(batches):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            forward(model, processor, images, task)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batches * len(images) / (time.perf_counter() - start)


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="galaxy-small", help="preset or save_pretrained folder")
    p.add_argument("--image-size", type=int, default=256, help="square input side in pixels (no resize)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--task", default="semantic", choices=["semantic", "instance", "panoptic"])
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--warmup", type=int, default=2, help="untimed batches before each repeat")
    p.add_argument("--batches", type=int, default=6, help="timed batches per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (GPU)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, processor = load_model(args.model, device=args.device)
    model.eval()
    processor.image_processor.do_resize = False  # the images already have the size under test
    images = synthetic_batch(args.batch_size, args.image_size)
    rates = []
    for r in range(args.repeats):
        run(model, processor, images, args.task, args.warmup, args.bf16)
        rates.append(run(model, processor, images, args.task, args.batches, args.bf16))
        print(f"repeat {r + 1}: {rates[-1]:.2f} img/s", flush=True)
    load = os.getloadavg()
    print(
        f"{args.model}: {count_parameters(model) / 1e6:.1f}M parameters, {args.image_size} px, batch "
        f"{args.batch_size}, task {args.task}, {args.threads} threads, device {args.device}"
        f"{' bf16' if args.bf16 else ''}, torch {torch.__version__}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    median = statistics.median(rates)
    print(f"{args.device} inference: {median:.2f} img/s (median of {args.repeats})")
    return median


if __name__ == "__main__":
    main()
