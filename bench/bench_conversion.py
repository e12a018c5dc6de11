"""Conversion at real scale (239,695-row, 231-column catalog; 29,995 VIA entries; images not checked).

Times ``python -m src.conversion --data-root DIR --quiet`` end to end (interpreter start-up included)
and prints the median of the runs last.  Target: <= 5 s on 2 cores.

    .venv/bin/python bench/bench_conversion.py [--runs 3] [--data-root data/bench_real_scale]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_scale  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-root", default="data/bench_real_scale")
    args = parser.parse_args()
    root = real_scale.ensure(args.data_root)
    size_mb = (root / "gz2_hart16.csv").stat().st_size / 1e6
    print(f"catalog {size_mb:.0f} MB at {root}")
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "src.conversion", "--data-root", str(root), "--quiet"], check=True)
        times.append(time.perf_counter() - start)
        print(f"run: {times[-1]:.2f} s")
    report = json.loads((root / "conversion_report.json").read_text())
    print(f"kept {report['kept']} of {report['annotations']}; skipped {report['skipped']}")
    print(f"conversion at real scale: median {statistics.median(times):.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
