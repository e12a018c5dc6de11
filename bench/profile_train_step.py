"""Where a demo training step spends its time: data, forward (with the loss and the matcher), backward, optimiser;
then the top operators of ``torch.profiler``.

    .venv/bin/python bench/profile_train_step.py [--steps 30] [--mixed-precision no|bf16] [--threads 2]
                                                   [--data-root data/synthetic]
    .venv/bin/python bench/profile_train_step.py --inference [--batch-size 8]

Training: ``galaxy-small`` from random weights on the demo's split files (``make demo`` writes them), batch 2 whole
256 px cutouts, random task, augmentation, in memory, as ``src.training`` runs it (fused AdamW, clipping 1.0),
``--threads`` torch threads.  The phases are timed with ``time.perf_counter`` over ``--steps`` steps after 3 warm-up
steps; then 8
steps run under ``torch.profiler`` and its 15 most expensive operators (self CPU time) are printed.
``--inference``: the forward pass of the same model in inference mode on a batch of the test split, profiled the
same way.  The last line is the figure: milliseconds per training step (per image with ``--inference``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data.datasets import GalaxyDataset, load_stats  # noqa: E402
from src.modelling.model import load_model, set_training_mode  # noqa: E402
from src.modelling.patches import attention_kernels  # noqa: E402
from src.training import EpochSampler  # noqa: E402


def time_modules(modules: dict) -> dict:
    """Forward seconds spent in each named module (hooks), accumulated into the returned dict."""
    spent, started = defaultdict(float), {}
    for name, module in modules.items():
        module.register_forward_pre_hook(lambda m, a, name=name: started.__setitem__(name, time.perf_counter()))
        module.register_forward_hook(
            lambda m, a, o, name=name: spent.__setitem__(name, spent[name] + time.perf_counter() - started[name])
        )
    return spent


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("data/synthetic"))
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--mixed-precision", choices=("no", "bf16"), default="no")
    p.add_argument("--inference", action="store_true")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mean, std = load_stats(args.data_root)
    model, processor = load_model("galaxy-small", mean=mean, std=std)
    bf16 = args.mixed_precision == "bf16"
    split = "test" if args.inference else "train"
    dataset = GalaxyDataset(
        args.data_root,
        split,
        processor,
        task="semantic" if args.inference else "random",
        augment=not args.inference,
        in_memory=True,
        seed=0,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        sampler=EpochSampler(len(dataset), 0),
        collate_fn=dataset.collator(training=not args.inference),
    )
    batches = iter(loader)

    if args.inference:
        batch = next(batches)
        inputs = {k: batch[k] for k in ("pixel_values", "pixel_mask", "task_inputs")}

        def run():
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                model(**inputs)

        for _ in range(2):
            run()
        start = time.perf_counter()
        for _ in range(args.steps):
            run()
        per_image = (time.perf_counter() - start) / (args.steps * args.batch_size)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        print(f"RESULT inference, batch {args.batch_size}, {args.mixed_precision}: {1000 * per_image:.1f} ms per image")
        return

    set_training_mode(model, True)
    inside = time_modules({"loss (criterion)": model.criterion, "  of which matcher": model.criterion.matcher})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)

    def step(times=None):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16), attention_kernels(torch.device("cpu")):
            loss = model(**batch).loss.mean()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        t4 = time.perf_counter()
        if times is not None:
            for name, seconds in zip(
                ("data", "forward + loss", "backward", "clip + optimiser"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
            ):
                times[name] += seconds

    for _ in range(3):
        step()
    inside.clear()
    times = defaultdict(float)
    for _ in range(args.steps):
        step(times)
    total = sum(times.values())
    for name, seconds in list(times.items()) + list(inside.items()):
        print(f"{name:>18}: {1000 * seconds / args.steps:6.1f} ms per step ({100 * seconds / total:4.1f} %)")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(8):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(
        f"RESULT training step, batch {args.batch_size}, {args.mixed_precision}: {1000 * total / args.steps:.0f} ms "
        f"({args.batch_size * args.steps / total:.2f} img/s)"
    )


if __name__ == "__main__":
    main()
