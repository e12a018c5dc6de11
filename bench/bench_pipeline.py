"""Training data pipeline alone (no model): images/s per worker process.

    .venv/bin/python bench/bench_pipeline.py --presets swin-tiny galaxy-small --tasks semantic instance random
    .venv/bin/python bench/bench_pipeline.py --presets swin-tiny --tasks random --processor-call   # previous collator
    .venv/bin/python bench/bench_pipeline.py --presets swin-tiny --tasks random --workers 2          # DataLoader
    .venv/bin/python bench/bench_pipeline.py --presets swin-tiny --tasks random --workers 2 --prefetch 8 --in-memory

Data: ``--n`` synthetic GZ2 cutouts (``src.synthetic``: the real formats, real-like polygons of 30-80 vertices),
converted with ``src.data.conversion``; cached in ``data/bench_pipeline_<n>_<size>/``.  The training split is read as
``src.training`` reads it: JPEG decode and polygon masks, resize to ``--image-size`` + flips / 90-degree rotations
(albumentations), then the collator: OneFormer encoding (normalisation, binary masks, padding, task and text
tokens; ``num_text`` = queries - n_ctx = 134 prompts per image for swin-tiny, 24 for galaxy-small) and collation.

Without ``--workers``: one process with one torch thread, i.e. what one DataLoader worker (one core) does; the
tokeniser cache is warmed by one batch first, as it is after the first batches of an epoch.  Each run is one pass
over the split with another epoch's augmentations; the median of ``--runs`` is reported, as images per second of
wall-clock time and per second of CPU time (the latter does not depend on other jobs sharing the cores).
``--in-memory``: decoded images and masks cached (``GalaxyDataset(in_memory=True)``).  ``--processor-call``: the
previous collator
(``OneFormerProcessor.__call__``, which tokenises every image's prompts).  ``--workers K``: a DataLoader with K
worker processes (total img/s, over ``--passes`` copies of the split) and the time to its first batch (the worker
start-up, paid at every epoch because workers are not persistent); its CPU time counts the workers and the main process
(which unpickles the batches).
The last line is the figure: the slowest task of the first preset, per core (CPU time).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.data.batching import OneFormerCollator, loader_worker_init  # noqa: E402
from src.data.datasets import GalaxyDataset, load_stats  # noqa: E402
from src.modelling.model import build_config, build_processor  # noqa: E402
from src.training import EpochSampler  # noqa: E402


class ProcessorCallCollator(OneFormerCollator):
    """The previous collator: ``OneFormerProcessor.__call__`` (every image's text prompts tokenised anew)."""

    def __call__(self, items):
        maps = [item["semantic"] if item["task"] == "semantic" else item["instance"] for item in items]
        mappings = [
            None if item["task"] == "semantic" else {0: 0, **dict(enumerate(item["class_ids"], 1))} for item in items
        ]
        kwargs = {"do_resize": False} if self.resized else {}
        return dict(
            self.processor(
                images=[item["image"] for item in items],
                task_inputs=[i["task"] for i in items],
                segmentation_maps=maps,
                instance_id_to_semantic_id=mappings,
                return_tensors="pt",
                **kwargs,
            )
        )


def bench_data(n: int, size: int) -> Path:
    """``n`` synthetic cutouts of ``size`` px, converted (split + statistics); made once."""
    from src.data.conversion import convert
    from src.synthetic import generate

    root = REPO / "data" / f"bench_pipeline_{n}_{size}"
    if not (root / "galaxy_train.json").is_file():
        generate(root, n=n, size=size, seed=0, workers=os.cpu_count() or 1, progress=False)
        convert(root, image_size=size, stats=True)
    return root


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def per_worker_rate(dataset, collate, batch_size: int, runs: int) -> tuple[float, float]:
    """``(images per wall-clock second, images per CPU second)`` of one process doing the whole pipeline (medians
    of ``runs`` passes over the split)."""
    n = len(dataset)
    collate([dataset[i] for i in range(min(batch_size, n))])  # warm-up (tokeniser cache, first decode)
    wall, cpu = [], []
    for run in range(runs):
        dataset.set_epoch(run)
        start, start_cpu = time.perf_counter(), cpu_seconds()
        for first in range(0, n, batch_size):
            collate([dataset[i] for i in range(first, min(first + batch_size, n))])
        wall.append(n / (time.perf_counter() - start))
        cpu.append(n / (cpu_seconds() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def loader_rate(
    dataset, collate, batch_size: int, workers: int, prefetch: int, passes: int
) -> tuple[float, float, float]:
    """``(images per wall-clock second, images per CPU second, seconds to the first batch)`` of one DataLoader
    epoch with ``workers`` processes over ``passes`` shuffled copies of the split (so that the worker start-up is
    spread as over a real epoch); CPU: the workers, reaped at the end, and this process."""
    order = [i for k in range(passes) for i in EpochSampler(len(dataset), k)]
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=prefetch,
        worker_init_fn=loader_worker_init,
    )
    start, start_cpu = time.perf_counter(), cpu_seconds()
    it = iter(loader)
    images = next(it)["pixel_values"].shape[0]
    first = time.perf_counter() - start
    for batch in it:
        images += batch["pixel_values"].shape[0]
    wall = images / (time.perf_counter() - start)
    del it  # workers exit and are reaped, so their CPU time is counted
    return wall, images / (cpu_seconds() - start_cpu), first


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["swin-tiny", "galaxy-small"])
    p.add_argument("--tasks", nargs="+", default=["semantic", "instance", "random"])
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--n", type=int, default=400, help="synthetic cutouts to generate (~70 %% land in train)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--in-memory", action="store_true")
    p.add_argument("--processor-call", action="store_true", help="the previous collator (OneFormerProcessor call)")
    p.add_argument("--workers", type=int, default=0, help="measure a DataLoader with this many worker processes")
    p.add_argument("--prefetch", type=int, default=2, help="DataLoader prefetch_factor (with --workers)")
    p.add_argument("--passes", type=int, default=5, help="copies of the split in the DataLoader's epoch")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    root = bench_data(args.n, args.image_size)
    mean, std = load_stats(root)
    print(
        f"data {root} ({args.image_size} px), batch {args.batch_size}, "
        f"{'processor call' if args.processor_call else 'collator'}, in-memory {args.in_memory}, "
        f"workers {args.workers}; load average {os.getloadavg()[0]:.2f}"
    )
    figures = {}
    for preset in args.presets:
        config = build_config(preset)
        processor = build_processor(args.image_size, mean, std, config=config)
        for task in args.tasks:
            dataset = GalaxyDataset(
                root, "train", processor, task=task, image_size=args.image_size, augment=True, in_memory=args.in_memory
            )
            cls = ProcessorCallCollator if args.processor_call else OneFormerCollator
            collate = cls(processor, training=True, resized=True)
            label = f"{preset} ({config.num_queries} queries, {processor.image_processor.num_text} texts) {task}"
            if args.workers:
                wall, cpu, first = loader_rate(
                    dataset, collate, args.batch_size, args.workers, args.prefetch, args.passes
                )
                print(
                    f"{label}: {wall:.1f} img/s with {args.workers} workers (wall clock), {cpu:.1f} img per CPU "
                    f"second (workers + main), first batch after {first:.2f} s "
                    f"({args.passes} x {len(dataset)} images)"
                )
            else:
                wall, cpu = per_worker_rate(dataset, collate, args.batch_size, args.runs)
                print(
                    f"{label}: {wall:.1f} img/s per worker process (wall clock); {cpu:.1f} img per CPU second "
                    f"({1000 / cpu:.2f} ms CPU per image)"
                )
            figures[(preset, task)] = cpu
    preset = args.presets[0]
    slowest = min((rate, task) for (name, task), rate in figures.items() if name == preset)
    print(
        f"RESULT {preset} {args.image_size}px: {slowest[0]:.1f} img/s per core, CPU time (slowest task: "
        f"{slowest[1]}; goal >= 60 for swin-tiny); load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
