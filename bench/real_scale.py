"""Inputs of the conversion at real scale, for benchmarks: no images, real sizes and widths.

* ``gz2_hart16.csv``: 239,695 rows x 231 columns (~340 MB), the Hart16 column names' shape, 18-digit
  DR7-like objids, gz2_class strings drawn from the 15 base classes with arm/winding/odd suffixes.
* ``original/{train,val}/via_region_data.json``: 29,995 VIA entries (one ~57-vertex polygon each, 5.4 % of
  them self-intersecting as the real ones); ~6 % fail a filter (too small, outside the image, no catalog
  match), as in the real files.
* with ``real_polygons=DIR`` (the "real polygons" variant) the polygons are instead drawn with replacement from
  the 2,828 real hand-drawn polygons of ``DIR/galaxy_test_via.json`` (``../shared/real``: the original test
  split), so their vertex counts, jaggedness and self-intersections are the real ones.

``python bench/real_scale.py DIR [REAL_DIR]`` writes them (once; reused when present).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from src.synthetic.hart16 import ID_COLUMNS  # noqa: E402

N_ROWS = 239_695
N_VIA = 29_995
N_COLUMNS = 231
#: Bumped when the generated inputs change, so a cached older set is rewritten.
VERSION = 2
CLASSES = [
    "Er",
    "Ei",
    "Ec",
    "Sc2m",
    "Sb+t",
    "Sb?t",
    "SBb2m",
    "SBc3m(r)",
    "Sen",
    "Ser",
    "Seb(u)",
    "Sd1l",
    "A",
    "Sa2t(d)",
    "SBa4m",
    "SBd?l",
]
WEIGHTS = np.array([15, 15, 5, 8, 6, 4, 9, 6, 5, 6, 3, 3, 0.3, 3, 3, 2], dtype=float)


def _column_names() -> list[str]:
    names = list(ID_COLUMNS)
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
        "dr7objid": objids,
        "ra": ra,
        "dec": dec,
        "rastring": np.char.mod("%011.6f", ra),
        "decstring": np.char.mod("%+010.6f", dec),
        "sample": np.where(rng.random(N_ROWS) < 0.9, "original", "extra"),
        "gz2_class": classes,
        "total_classifications": rng.integers(20, 80, N_ROWS),
        "total_votes": rng.integers(100, 400, N_ROWS),
    }
    for name in _column_names()[len(columns) :]:
        if name.endswith(("count", "flag")):
            columns[name] = rng.integers(0, 600, N_ROWS)
        else:
            columns[name] = np.round(rng.random(N_ROWS), 4)
    pacsv.write_csv(pa.table(columns), path)
    return objids


#: Share of the real hand-drawn polygons that cross themselves (GEOS is_simple false): 153 of the 2,828 of the
#: seed's test split (../shared/real/galaxy_test_via.json).  The conversion rasterises those; the rest take the
#: shoelace shortcut, so this share sets the conversion's cost.
SELF_INTERSECTING = 153 / 2828


def _polygon(rng, size=256):
    """A smooth outline (~57 vertices, ellipse with low-order wobble, integer pixels); with probability
    ``SELF_INTERSECTING`` two vertices two apart are swapped so that the outline crosses itself, a small
    zigzag as in a hand-drawn polygon."""
    n = int(rng.integers(40, 75))
    t = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n
    wobble = sum(rng.normal(0, 0.05) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    r = rng.lognormal(np.log(17), 0.35) * (1 + wobble)
    q = rng.uniform(0.3, 1.0)
    x = np.round(size / 2 + r * np.cos(t)).astype(int)
    y = np.round(size / 2 + q * r * np.sin(t)).astype(int)
    if rng.random() < SELF_INTERSECTING:
        for _ in range(20):  # a swap between near-collinear pixels may not cross: try another place
            i = int(rng.integers(n - 2))
            cx, cy = x.copy(), y.copy()
            cx[[i, i + 2]], cy[[i, i + 2]] = x[[i + 2, i]], y[[i + 2, i]]
            if not shapely.is_simple(shapely.linearrings(np.column_stack([cx, cy]))):
                x, y = cx, cy
                break
    return x.tolist(), y.tolist()


def load_real_polygons(real_dir) -> list[tuple[list, list]]:
    """The polygons of the real test split (``galaxy_test_via.json``: one region per entry)."""
    via = json.loads((Path(real_dir) / "galaxy_test_via.json").read_text())
    shapes = [entry["regions"][0]["shape_attributes"] for entry in via.values()]
    return [(list(shape["all_points_x"]), list(shape["all_points_y"])) for shape in shapes]


def write_via(root: Path, objids: np.ndarray, rng: np.random.Generator, polygons=None) -> None:
    """``polygons``: draw each entry's polygon from these (with replacement) instead of :func:`_polygon`."""
    chosen = rng.choice(objids, N_VIA, replace=False)
    chosen[: N_VIA // 100] += 1  # ~1 % with no catalog match
    splits = {"train": {}, "val": {}}
    for i, objid in enumerate(chosen):
        if polygons is None:
            xs, ys = _polygon(rng)
        else:
            xs, ys = (list(v) for v in polygons[int(rng.integers(len(polygons)))])
        if i % 97 == 0:
            xs[0] = 260  # outside the image
        entry = {
            "filename": f"Dr7_{objid}.jpg",
            "size": 1501648,
            "file_attributes": {},
            "regions": [
                {
                    "shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
                    "region_attributes": {},
                }
            ],
        }
        splits["train" if i % 5 else "val"][str(objid)] = entry
    for name, data in splits.items():
        (root / "original" / name).mkdir(parents=True, exist_ok=True)
        (root / "original" / name / "via_region_data.json").write_text(json.dumps(data))


def ensure(root, real_polygons=None) -> Path:
    """Write the inputs under ``root`` unless there; ``real_polygons``: the folder of ``galaxy_test_via.json``
    (the real-polygon variant)."""
    root = Path(root)
    stamp = root / (f"real_scale_v{VERSION}" + ("_real_polygons" if real_polygons is not None else ""))
    inputs = ("gz2_hart16.csv", "original/train/via_region_data.json", "original/val/via_region_data.json")
    if stamp.is_file() and all((root / f).is_file() for f in inputs):
        return root
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2016)
    objids = write_catalog(root / "gz2_hart16.csv", rng)
    write_via(root, objids, rng, None if real_polygons is None else load_real_polygons(real_polygons))
    stamp.touch()
    return root


if __name__ == "__main__":
    print(
        ensure(
            sys.argv[1] if len(sys.argv) > 1 else "data/bench_real_scale", sys.argv[2] if len(sys.argv) > 2 else None
        )
    )
