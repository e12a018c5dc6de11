"""Training throughput: bare model step vs the full pipeline (dataset + augmentation + processor + DataLoader).

    .venv/bin/python bench/bench_train.py --preset galaxy-small --image-size 128 --batch-size 4 --threads 2
    python bench/bench_train.py --preset swin-tiny --image-size 256 --batch-size 8 --device cuda --workers 8

Bare = forward + backward + clip + AdamW step on one pre-collated batch, repeated.  Pipeline = the same step fed by
the training DataLoader (GalaxyDataset from 256 px JPEG cutouts of a synthetic set, ``src.synthetic`` seed 0
converted by ``src.data.conversion``, resize, flips/rotations, random task,
OneFormerProcessor encoding), as in ``src.training``.  Both in img/s over ``--steps`` steps after ``--warmup``
untimed ones; the last line is the figure.
With ``--device cuda`` (GPU machine) it also reports bf16 vs fp32 and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.batching import loader_worker_init  # noqa: E402
from src.data.conversion import convert  # noqa: E402
from src.data.datasets import GalaxyDataset, load_stats  # noqa: E402
from src.defaults import CUTOUT_SIZE, MIN_CANDIDATE_AREA  # noqa: E402
from src.modelling.model import count_parameters, load_model, set_training_mode  # noqa: E402
from src.synthetic import generate  # noqa: E402
from src.training import EpochSampler  # noqa: E402

#: Share of the converted images in the training split (70 / 20 / 10), with a margin for the conversion's filters.
TRAIN_SHARE = 0.6


def write_training_data(root: Path, n_train: int, size: int) -> Path:
    """A synthetic set converted into splits whose training split holds at least ``n_train`` cutouts of ``size`` px."""
    n = int(n_train / TRAIN_SHARE) + 1
    generate(root, n, seed=0, size=size, progress=False)
    # the conversion's smallest annotation, scaled to the cutout side (at 256 px: the real data's filter)
    convert(root, image_size=size, min_area=round(MIN_CANDIDATE_AREA * (size / CUTOUT_SIZE) ** 2), stats=True)
    kept = len(GalaxyDataset(root, "train", None))
    if kept < n_train:
        raise SystemExit(f"{root}: {kept} training cutouts, fewer than the {n_train} the timed steps need")
    return root


def train_step(model, optimizer, batch, device, dtype=None):
    batch = {k: (v.to(device) if torch.is_tensor(v) else [t.to(device) for t in v]) for k, v in batch.items()}
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
        loss = model(**batch).loss.mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_bare(model, optimizer, batch, device, steps, warmup, dtype=None) -> float:
    for _ in range(warmup):
        train_step(model, optimizer, batch, device, dtype)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, batch, device, dtype)
    sync(device)
    return steps * batch["pixel_values"].shape[0] / (time.perf_counter() - start)


def bench_pipeline(model, optimizer, loader, device, steps, warmup, dtype=None) -> float:
    it = iter(loader)
    for _ in range(warmup):
        train_step(model, optimizer, next(it), device, dtype)
    sync(device)
    images, start = 0, time.perf_counter()
    for _ in range(steps):
        batch = next(it)
        train_step(model, optimizer, batch, device, dtype)
        images += batch["pixel_values"].shape[0]
    sync(device)
    return images / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="galaxy-small")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--source-size", type=int, default=256, help="side of the synthetic JPEG cutouts")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--task", default="random")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-pin-memory", action="store_true", help="GPU: no pinned host memory (src.training pins it)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)

    n_images = args.batch_size * (args.steps + args.warmup)
    root = Path(tempfile.mkdtemp(prefix="bench_train_"))
    write_training_data(root, n_images, args.source_size)
    mean, std = load_stats(root)
    model, processor = load_model(args.preset, image_size=args.image_size, mean=mean, std=std, device=device)
    set_training_mode(model, True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    dataset = GalaxyDataset(root, "train", processor, task=args.task, image_size=args.image_size, augment=True)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=EpochSampler(len(dataset), 0),
        collate_fn=dataset.collator(training=True),
        num_workers=args.workers,
        pin_memory=device.type == "cuda" and not args.no_pin_memory,  # as src.training
        worker_init_fn=loader_worker_init if args.workers else None,
    )
    fixed = next(iter(loader))
    print(
        f"preset {args.preset}: {count_parameters(model) / 1e6:.2f} M parameters; {args.image_size} px, "
        f"batch {args.batch_size}, {args.threads} threads, {args.workers} workers, device {device}"
    )

    results = {}
    precisions = [("fp32", None)] + ([("bf16", torch.bfloat16)] if device.type == "cuda" else [])
    for name, dtype in precisions:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        bare = bench_bare(model, optimizer, fixed, device, args.steps, args.warmup, dtype)
        pipe = bench_pipeline(model, optimizer, loader, device, args.steps, args.warmup, dtype)
        results[name] = (bare, pipe)
        peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device.type == "cuda" else ""
        print(
            f"{name}: bare model step {bare:.2f} img/s; full pipeline {pipe:.2f} img/s "
            f"({100 * pipe / bare:.0f} % of bare){peak}"
        )
    if "bf16" in results:
        print(f"bf16 / fp32 (bare): {results['bf16'][0] / results['fp32'][0]:.2f}x")
    bare, pipe = results["fp32"]
    print(
        f"RESULT {args.preset} {args.image_size}px bs{args.batch_size}: bare {bare:.2f} img/s, "
        f"pipeline {pipe:.2f} img/s = {100 * pipe / bare:.0f} % of bare"
    )


if __name__ == "__main__":
    main()
