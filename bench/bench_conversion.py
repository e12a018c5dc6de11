"""Conversion at real scale (239,695-row, 231-column catalog; 29,995 VIA entries; images not checked).

Times ``python -m src.conversion --data-root DIR --quiet`` end to end (interpreter start-up included)
and prints the median of the runs last.  Target: <= 5 s on 2 cores.  ``--real-polygons DIR``: the variant whose
polygons are drawn from the real ones of ``DIR/galaxy_test_via.json`` (``../shared/real``), and the time spent in
the geometry filter (``geometry_problems``, rasterising included) is printed too.

    .venv/bin/python bench/bench_conversion.py [--runs 3] [--data-root data/bench_real_scale]
    .venv/bin/python bench/bench_conversion.py --real-polygons ../shared/real [--data-root data/bench_real_polygons]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import real_scale  # noqa: E402


def geometry_seconds(root: Path) -> float:
    """Seconds of ``src.data.conversion.geometry_problems`` on the bench's polygons (no images: nominal 256 px)."""
    import numpy as np

    from src.data.conversion import geometry_problems
    from src.data.via import VIA_FILES, entry_regions, load_via, region_polygon

    polygons = [region_polygon(entry_regions(entry)[0]) for rel in VIA_FILES for entry in load_via(root / rel).values()]
    shapes = np.full((len(polygons), 2), 256)
    start = time.perf_counter()
    geometry_problems(polygons, shapes, 90)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--data-root",
        default=None,
        help="default: data/bench_real_scale, or data/bench_real_polygons with --real-polygons",
    )
    parser.add_argument("--real-polygons", metavar="DIR", help="folder of galaxy_test_via.json (../shared/real)")
    args = parser.parse_args()
    default = "data/bench_real_polygons" if args.real_polygons else "data/bench_real_scale"
    root = real_scale.ensure(args.data_root or default, args.real_polygons)
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
    if args.real_polygons:
        print(f"geometry filter: {geometry_seconds(root):.2f} s (in-process, rasters included)")
    print(f"conversion at real scale: median {statistics.median(times):.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
