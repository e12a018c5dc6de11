"""Inputs of the conversion at real scale, for benchmarks: no images, real sizes and widths.

* ``gz2_hart16.csv``: 239,695 rows x 231 columns (~340 MB), the Hart16 column names' shape, 18-digit
  DR7-like objids, gz2_class strings drawn from the 15 base classes with arm/winding/odd suffixes.
* ``original/{train,val}/via_region_data.json``: 29,995 VIA entries (one ~57-vertex polygon each);
  ~6 % fail a filter (too small, outside the image, no catalog match), as in the real files.

``python bench/real_scale.py DIR`` writes them (once; reused when present).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

N_ROWS = 239_695
N_VIA = 29_995
N_COLUMNS = 231
CLASSES = ["Er", "Ei", "Ec", "Sc2m", "Sb+t", "Sb?t", "SBb2m", "SBc3m(r)", "Sen", "Ser", "Seb(u)", "Sd1l", "A",
           "Sa2t(d)", "SBa4m", "SBd?l"]
WEIGHTS = np.array([15, 15, 5, 8, 6, 4, 9, 6, 5, 6, 3, 3, 0.3, 3, 3, 2], dtype=float)


def _column_names() -> list[str]:
    names = ["dr7objid", "ra", "dec", "rastring", "decstring", "sample", "gz2_class",
             "total_classifications", "total_votes"]
    answer = 0
    while len(names) < N_COLUMNS:
        answer += 1
        for suffix in ("count", "weighted", "fraction", "debiased", "flag"):
            if len(names) < N_COLUMNS:
                names.append(f"t{(answer - 1) // 4 + 1:02d}_question_a{answer:02d}_answer_{suffix}")
    return names


def write_catalog(path: Path, rng: np.random.Generator) -> np.ndarray:
    import pyarrow as pa
    from pyarrow import csv as pacsv

    objids = 587_722_981_736_000_000 + np.sort(rng.choice(10**12, N_ROWS, replace=False)).astype(np.int64)
    ra = np.round(rng.uniform(0, 360, N_ROWS), 6)
    dec = np.round(rng.uniform(-10, 70, N_ROWS), 6)
    classes = np.asarray(CLASSES)[rng.choice(len(CLASSES), N_ROWS, p=WEIGHTS / WEIGHTS.sum())]
    columns = {
        "dr7objid": objids, "ra": ra, "dec": dec,
        "rastring": np.char.mod("%011.6f", ra), "decstring": np.char.mod("%+010.6f", dec),
        "sample": np.where(rng.random(N_ROWS) < 0.9, "original", "extra"), "gz2_class": classes,
        "total_classifications": rng.integers(20, 80, N_ROWS), "total_votes": rng.integers(100, 400, N_ROWS),
    }
    for name in _column_names()[len(columns):]:
        if name.endswith(("count", "flag")):
            columns[name] = rng.integers(0, 600, N_ROWS)
        else:
            columns[name] = np.round(rng.random(N_ROWS), 4)
    pacsv.write_csv(pa.table(columns), path)
    return objids


def _polygon(rng, size=256):
    n = int(rng.integers(40, 75))
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.lognormal(np.log(17), 0.35) * (1 + 0.1 * rng.standard_normal(n))
    q = rng.uniform(0.3, 1.0)
    x = size / 2 + r * np.cos(t)
    y = size / 2 + q * r * np.sin(t)
    return np.round(x).astype(int).tolist(), np.round(y).astype(int).tolist()


def write_via(root: Path, objids: np.ndarray, rng: np.random.Generator) -> None:
    chosen = rng.choice(objids, N_VIA, replace=False)
    chosen[: N_VIA // 100] += 1  # ~1 % with no catalog match
    splits = {"train": {}, "val": {}}
    for i, objid in enumerate(chosen):
        xs, ys = _polygon(rng)
        if i % 97 == 0:
            xs[0] = 260  # outside the image
        entry = {"filename": f"Dr7_{objid}.jpg", "size": 1501648, "file_attributes": {},
                 "regions": [{"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
                              "region_attributes": {}}]}
        splits["train" if i % 5 else "val"][str(objid)] = entry
    for name, data in splits.items():
        (root / "original" / name).mkdir(parents=True, exist_ok=True)
        (root / "original" / name / "via_region_data.json").write_text(json.dumps(data))


def ensure(root) -> Path:
    root = Path(root)
    if (root / "gz2_hart16.csv").is_file() and (root / "original/val/via_region_data.json").is_file():
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2016)
    objids = write_catalog(root / "gz2_hart16.csv", rng)
    write_via(root, objids, rng)
    return root


if __name__ == "__main__":
    print(ensure(sys.argv[1] if len(sys.argv) > 1 else "data/bench_real_scale"))
