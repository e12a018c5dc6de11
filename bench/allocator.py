"""The C allocator's thresholds (``src/allocator.py``) on and off, side by side in one run.

    .venv/bin/python bench/allocator.py [--rounds 3] [--steps 20] [--mixed-precision bf16] [--data-root data/synthetic]

Each measurement is ``bench/profile_train_step.py`` in a fresh interpreter: ``--inference`` (the demo preset's
forward pass at batch 8, ms per image) and a training step (``--steps`` steps, batch 2, ms per step), each with the
thresholds raised (the default) and with ``GALAXY_DEFAULT_MALLOC=1`` (glibc's own thresholds), alternating, with
the peak resident memory (``ru_maxrss``) of each interpreter.  Medians of ``--rounds``; the last line is the two
speed-ups (off / on, > 1 is faster).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from src.allocator import GLIBC_SETTINGS, OPT_OUT  # noqa: E402

WRAPPER = (
    "import resource, runpy, sys; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__'); "
    "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def measure(kind: str, tuned: bool, args) -> tuple[float, float]:
    """(ms per image or per step, peak resident GiB) of one fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in (OPT_OUT, *GLIBC_SETTINGS)}
    if not tuned:
        env[OPT_OUT] = "1"
    script = [str(REPO / "bench" / "profile_train_step.py"), "--mixed-precision", args.mixed_precision]
    script += ["--data-root", str(args.data_root)]
    script += ["--inference"] if kind == "forward" else ["--steps", str(args.steps)]
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *script], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-2000:]}")
    ms = float(re.search(r"RESULT .*?: ([0-9.]+) ms", done.stdout).group(1))
    peak = int(re.search(r"PEAK_RSS_KIB (\d+)", done.stdout).group(1)) / 2**20
    return ms, peak


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--mixed-precision", default="bf16", choices=("no", "bf16"))
    p.add_argument("--data-root", type=Path, default=REPO / "data" / "synthetic")
    args = p.parse_args(argv)
    ratios = []
    for kind, unit in (("forward", "ms per image"), ("train", "ms per step")):
        figures = {True: [], False: []}
        for round_ in range(args.rounds):
            for tuned in (False, True):
                ms, peak = measure(kind, tuned, args)
                figures[tuned].append((ms, peak))
                print(
                    f"{kind} round {round_ + 1} thresholds {'raised' if tuned else 'glibc'}: {ms:.1f} {unit}, "
                    f"peak {peak:.2f} GiB",
                    flush=True,
                )
        on = statistics.median(ms for ms, _ in figures[True])
        off = statistics.median(ms for ms, _ in figures[False])
        peaks = [max(peak for _, peak in figures[t]) for t in (False, True)]
        print(f"{kind}: glibc {off:.1f}, raised {on:.1f} {unit} (medians); peak {peaks[0]:.2f} / {peaks[1]:.2f} GiB")
        ratios.append(f"{kind} {off / on:.2f}x")
    print(f"RESULT raised thresholds: {', '.join(ratios)}")


if __name__ == "__main__":
    main()
