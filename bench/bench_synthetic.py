"""Synthetic GZ2 generation speed: ``python -m src.synthetic`` end to end (256 px cutouts, JPEGs, catalog, VIA).

Times the CLI (interpreter start-up and worker start-up included) for ``--n`` images with ``--workers``
processes, ``--runs`` times, and prints the median images per second last.  Target: >= 50 images/s on 2 cores.
Other jobs on a shared machine lower the wall-clock figure, so the load average of each run and the CPU time
per image (one process) are printed too.

    .venv/bin/python bench/bench_synthetic.py [--n 1000] [--workers 2] [--size 256] [--runs 3]
    .venv/bin/python bench/bench_synthetic.py --baseline OLD_TREE [--n 200] [--runs 3]

``--baseline OLD_TREE`` (a checkout of an earlier commit, e.g. ``git worktree add ../old COMMIT``) compares
the per-image cost instead: in each run, one process per tree renders and writes the same ``--n`` cutouts
(``_make_one``: render, composite, JPEG), timed with the CPU clock after a warm-up; the trees alternate, so both
see the same machine load.  Printed last: the median ratio of this tree's cost to the baseline's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_per_image(size: int, n: int) -> float:
    """CPU milliseconds per cutout in this process (less sensitive than wall time to other jobs)."""
    sys.path.insert(0, str(REPO))
    from src.synthetic.generator import _make_one

    with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as out:
        for index in range(10):  # warm-up: imports, GalSim tables, PSF cache
            _make_one((99, index, size, False, out))
        start = time.process_time()
        for index in range(n):
            _make_one((0, index, size, False, out))
        return (time.process_time() - start) / n * 1000


_COST = """
import sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from src.synthetic.generator import _make_one
n, size = int(sys.argv[2]), int(sys.argv[3])
with tempfile.TemporaryDirectory() as out:
    def job(seed, index):
        try:
            return _make_one((seed, index, size, False, out, None))      # with the FITS folder argument
        except ValueError:
            return _make_one((seed, index, size, False, out))            # before it
    for index in range(10):
        job(99, index)
    start = time.process_time()
    for index in range(n):
        job(0, index)
    print((time.process_time() - start) / n * 1000)
"""


def compare(baseline: Path, n: int, size: int, runs: int) -> None:
    """CPU ms per cutout of ``baseline`` and of this tree, alternating, ``runs`` times; prints the ratios."""
    ratios = []
    for run in range(runs):
        cost = {}
        for label, tree in (("baseline", baseline), ("this tree", REPO)):
            done = subprocess.run(
                [sys.executable, "-c", _COST, str(tree), str(n), str(size)], check=True, capture_output=True, text=True
            )
            cost[label] = float(done.stdout.strip().splitlines()[-1])
        ratios.append(cost["this tree"] / cost["baseline"])
        print(
            f"run {run}: baseline {cost['baseline']:.1f} ms, this tree {cost['this tree']:.1f} ms per cutout "
            f"(x{ratios[-1]:.2f}, load average {os.getloadavg()[0]:.1f})"
        )
    print(
        f"per-image cost ({size} px, CPU time, JPEG written): median x{statistics.median(ratios):.2f} "
        f"of the baseline over {runs} runs"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="compare the per-image cost with this checkout (another commit's worktree)",
    )
    args = parser.parse_args()
    if args.baseline is not None:
        compare(args.baseline.resolve(), args.n, args.size, args.runs)
        return
    rates = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as out:
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "src.synthetic",
                    "--out",
                    out,
                    "--n",
                    str(args.n),
                    "--seed",
                    str(run),
                    "--size",
                    str(args.size),
                    "--workers",
                    str(args.workers),
                    "--quiet",
                ],
                cwd=REPO,
                check=True,
            )
            seconds = time.perf_counter() - start
        rates.append(args.n / seconds)
        load = os.getloadavg()[0]  # other jobs on the machine lower the figure: report the context
        print(f"run {run}: {args.n} images in {seconds:.2f} s = {rates[-1]:.1f} images/s (load average {load:.1f})")
    cpu_ms = cpu_per_image(args.size, min(args.n, 200))
    print(
        f"CPU time per image (one process, JPEG written): {cpu_ms:.1f} ms -> at most "
        f"{1000 * args.workers / cpu_ms:.0f} images/s on {args.workers} free cores"
    )
    print(
        f"synthetic GZ2 ({args.size} px, {args.workers} workers): median {statistics.median(rates):.1f} images/s "
        f"over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
