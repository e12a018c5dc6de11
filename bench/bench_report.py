"""Size and time of the interactive report (``src.inference.report``) of a large frame: a run folder made here, as
``predict.py --field`` writes one (an N x N JPEG frame of noisy sky with M elliptical objects, its 16-bit object
map, one record with M catalog rows, ``predict_report.json``), then ``write_report`` timed.  Noise is the worst
case for the JPEG's size.  Prints the page's size in MB last (limit: ``src.inference.report.MAX_BYTES``, 20 MB).

    .venv/bin/python bench/bench_report.py [--size 8192] [--objects 3000] [--root data/bench_report]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.classes import GALAXY_CLASSES  # noqa: E402
from src.inference.objects import PROB_COLUMNS  # noqa: E402


def make_run(root: Path, size: int, n_objects: int, seed: int = 0) -> Path:
    from scipy import ndimage

    from src.data.images import write_jpeg, write_png

    rng = np.random.default_rng(seed)
    frame = np.empty((size, size, 3), np.uint8)
    for top in range(0, size, 1024):  # in strips: bounded memory
        strip = rng.normal(10.0, 6.0, (min(1024, size - top), size, 3)).astype(np.float32)
        frame[top : top + 1024] = np.clip(strip, 0, 255).astype(np.uint8)
    objects = np.zeros((size, size), np.uint16)
    for k in range(1, n_objects + 1):
        a, b = rng.uniform(4, 30), rng.uniform(3, 15)
        cx, cy, theta = rng.uniform(40, size - 40), rng.uniform(40, size - 40), rng.uniform(0, np.pi)
        r = int(a) + 1
        yy, xx = np.mgrid[int(cy) - r : int(cy) + r + 1, int(cx) - r : int(cx) + r + 1]
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        objects[yy[inside], xx[inside]] = k
        frame[yy[inside], xx[inside]] = np.clip(frame[yy[inside], xx[inside]] + rng.integers(60, 180, 3), 0, 255)
    labels = np.unique(objects)[1:]
    lut = np.zeros(n_objects + 1, np.uint16)
    lut[labels] = np.arange(1, len(labels) + 1)
    objects = lut[objects]  # 1..n, as predict.py numbers them
    root.mkdir(parents=True, exist_ok=True)
    write_jpeg(root / "frame.jpg", frame)
    out = root / "out"
    write_png(out / "segmentation" / "frame_objects.png", objects)
    ids = np.arange(1, len(labels) + 1)
    area = ndimage.sum_labels(np.ones_like(objects), objects, ids)
    centres = ndimage.center_of_mass(np.ones_like(objects), objects, ids)
    boxes = ndimage.find_objects(objects)
    rows = []
    for k, (y, x), box, n in zip(ids, centres, boxes, area):
        p = rng.dirichlet(np.ones(len(GALAXY_CLASSES)) * 0.5)
        rows.append(
            {
                "source": str(root / "frame.jpg"),
                "object": int(k),
                "class": GALAXY_CLASSES[int(p.argmax())],
                "score": round(float(rng.uniform(0.3, 1)), 6),
                **dict(zip(PROB_COLUMNS, p.round(6).tolist())),
                "entropy": 1.0,
                "x": round(float(x), 3),
                "y": round(float(y), 3),
                "x_min": box[1].start,
                "y_min": box[0].start,
                "x_max": box[1].stop - 1,
                "y_max": box[0].stop - 1,
                "area_px": int(n),
                "edge": False,
            }
        )
    record = {
        "name": "frame",
        "source": str(root / "frame.jpg"),
        "paths": [str(root / "frame.jpg")],
        "status": "ok",
        "n_objects": len(rows),
        "rows": rows,
        "size": [size, size],
        "outputs": ["segmentation/frame_objects.png"],
    }
    (out / "records").mkdir(parents=True, exist_ok=True)
    (out / "records" / "frame.json").write_text(json.dumps(record))
    report = {
        "created": "bench",
        "model": "bench",
        "settings": {"field": True},
        "counts": {"images": 1, "ok": 1, "objects": len(rows)},
        "catalog": "catalog.csv",
        "inputs": [{k: v for k, v in record.items() if k not in ("rows", "paths", "name")}],
    }
    (out / "predict_report.json").write_text(json.dumps(report))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="frame side, px (default 8192)")
    parser.add_argument("--objects", type=int, default=3000, help="objects drawn (default 3000)")
    parser.add_argument("--root", default="data/bench_report", help="where the run folder is made")
    args = parser.parse_args()
    from src.inference.report import MAX_BYTES, write_report

    tic = time.perf_counter()
    out = make_run(Path(args.root), args.size, args.objects)
    made = time.perf_counter() - tic
    tic = time.perf_counter()
    path = write_report(out)
    seconds = time.perf_counter() - tic
    size = path.stat().st_size
    print(
        f"run folder made in {made:.1f} s; report of a {args.size}x{args.size} frame with "
        f"{len(json.loads((out / 'records/frame.json').read_text())['rows'])} objects written in {seconds:.1f} s "
        f"(limit {MAX_BYTES / 2**20:.0f} MB)"
    )
    print(f"page size: {size / 2**20:.2f} MB")


if __name__ == "__main__":
    main()
