"""VIA annotations + Hart16 catalog -> the training JSON files.

Reads, under a data root::

    gz2_hart16.csv[.gz]                       the Galaxy Zoo 2 catalog (Hart et al. 2016)
    original/train/via_region_data.json       VIA 2 polygons (hfarias/mask_galaxy)
    original/val/via_region_data.json
    original/zoo2Main/Dr7_<objid>.jpg         the cutouts (optional unless --check-images / --stats)

and writes, atomically::

    galaxy_segment_classes.json               every kept entry, object_name = 5-class name
    galaxy_train.json galaxy_val.json galaxy_test.json   class-stratified 70/20/10 split (or --splits-from)
    galaxy_splits.json                        the manifest of the split set (src.data.splits: one set, checked on load)
    conversion_report.json                    counts by skip reason, by class, per split
    dataset_stats.json                        per-channel mean/std of the training images (--stats)

Every skipped entry is counted under its reason, with a few examples named by file and key.

``--splits-from DIR2`` reproduces another split (the original project's ``galaxy_{train,val,test}.json``, keys =
objids, or ``galaxy_<split>_via.json``): each split found there keeps exactly its membership, and its objids that
the catalog lacks or the filters drop are listed by key and reason in the report.

CLI: ``python -m src.conversion --data-root DIR [--image-size 256] [--min-area 90] [--seed 42]
[--check-images] [--stats] [--splits-from DIR2]``
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from src.atomic import write_json_atomic
from src.classes import BASE_CLASSES, GALAXY_CLASSES
from src.cli import add_output_options, run_cli, setup_logging
from src.data.catalog import find_catalog, load_catalog
from src.data.splits import MANIFEST, SPLITS, reference_membership, write_split_set
from src.data.via import (
    IMAGE_DIR,
    VIA_FILES,
    OutsideDataRoot,
    entry_objid,
    entry_regions,
    filename_objid,
    image_path,
    load_via,
    polygon_area,
    polygon_problems,
    region_polygon,
)
from src.defaults import CUTOUT_SIZE, DATASET_STATS, MIN_CANDIDATE_AREA

SPLIT_FRACTIONS = (0.7, 0.2, 0.1)
OUTPUT_ALL = "galaxy_segment_classes.json"
REPORT_FILE = "conversion_report.json"
N_EXAMPLES = 5

#: Skip reasons, in the order they are tested.
SKIP_REASONS = (
    "objid_mismatch",  # the key's objid differs from the one in the entry's filename
    "outside_data_root",  # filename leads out of original/zoo2Main (absolute, '..', a link): never read
    "duplicate_entry",  # the same objid annotated twice (the first one is kept)
    "no_catalog_match",  # objid not in gz2_hart16
    "no_regions",
    "several_regions",  # the catalog classifies one object per cutout: no class for the others
    "not_polygon",
    "too_few_vertices",  # fewer than 3
    "outside_image",  # a vertex outside 0..size-1
    "small_area",  # rasterised area below --min-area
    "missing_image",  # only with --check-images
    "unreadable_image",  # only with --check-images
    "not_in_reference_splits",  # only with --splits-from giving all three splits: in none of them
)
#: Why an objid of a reference split (``--splits-from``) is in none of the converted splits, besides a skip reason.
NOT_ANNOTATED = "not_in_via_files"


def read_annotations(data_root) -> tuple[dict[int, dict], pd.DataFrame, Counter, dict]:
    """Read the VIA files: ``(entries by objid, frame of objid/source/key, skip counts, examples)``.

    An entry whose key and file name give different objids is skipped as ``objid_mismatch``, one whose image
    path leads out of ``original/zoo2Main`` as ``outside_data_root`` (never read); an objid annotated twice (in
    one file, a repeated JSON key, or in both) is kept once and counted as ``duplicate_entry``.
    """
    root = Path(data_root)
    entries: dict[int, dict] = {}
    rows = []
    skipped: Counter = Counter()
    examples: dict[str, list] = defaultdict(list)
    for rel in VIA_FILES:
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"VIA annotations not found: {path}")
        repeated: list[str] = []
        for key, entry in load_via(path, duplicates=repeated).items():
            objid = entry_objid(key, entry, source=str(path))
            named = filename_objid(entry)
            if str(key).isdigit() and named is not None and named != objid:
                reason = "objid_mismatch"
            else:
                try:
                    image_path(root, entry["filename"])
                    reason = "duplicate_entry" if objid in entries else None
                except OutsideDataRoot:
                    reason = "outside_data_root"
            if reason is not None:
                skipped[reason] += 1
                _example(examples, reason, rel, key)
                continue
            entries[objid] = entry
            rows.append((objid, rel, key))
        skipped["duplicate_entry"] += len(repeated)
        for key in repeated:
            _example(examples, "duplicate_entry", rel, key)
    frame = pd.DataFrame(rows, columns=["objid", "source", "key"]).astype({"objid": "int64"})
    return entries, frame, skipped, examples


def _example(examples, reason, source, key):
    if len(examples[reason]) < N_EXAMPLES:
        examples[reason].append(f"{source}: {key}")


def _image_shape(image_dir: Path, filename: str, default: int) -> tuple[int, int]:
    from PIL import Image

    path = image_dir / filename
    try:
        with Image.open(path) as img:  # header only
            return img.height, img.width
    except OSError:  # absent or unreadable: the nominal size (--check-images reports unreadable ones)
        return default, default


def structural_problem(entry: dict) -> str | None:
    """The skip reason of an entry's region structure, or ``None`` when it holds one polygon."""
    regions = entry_regions(entry)
    if not regions:
        return "no_regions"
    if len(regions) > 1:
        return "several_regions"
    if (regions[0].get("shape_attributes") or {}).get("name") not in ("polygon", "polyline"):
        return "not_polygon"
    return None


def geometry_problems(polygons: list[tuple[np.ndarray, np.ndarray]], shapes: np.ndarray, min_area: int) -> np.ndarray:
    """Skip reason per polygon (``None`` when usable), vectorised over all polygons at once.

    Parameters
    ----------
    polygons : list of (xs, ys)
        Vertex coordinates of each polygon, px (float arrays, as ``src.data.via.region_polygon`` gives them).
    shapes : numpy.ndarray
        (N, 2) int array of each polygon's image (height, width), px.
    min_area : int
        Smallest rasterised area kept, px.

    Returns
    -------
    numpy.ndarray
        Object array of N skip reasons: those of ``src.data.via.polygon_problems`` (fewer than 3 vertices, a
        vertex outside 0..size-1), else ``"small_area"`` (rasterised area below ``min_area``), else ``None``.
    """
    reasons = polygon_problems(polygons, shapes)
    if not polygons:
        return reasons
    lengths = np.fromiter((xs.size for xs, _ in polygons), dtype=np.int64, count=len(polygons))
    xs = np.concatenate([p[0] for p in polygons])
    ys = np.concatenate([p[1] for p in polygons])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    nonempty = lengths > 0
    owner = np.repeat(np.arange(len(polygons)), lengths)

    # Shoelace area and perimeter per polygon; the raster is only drawn when the area may be small:
    # pixels whose centre lies inside cover at least the region's area minus a boundary band of
    # half-width sqrt(2)/2 (area <= sqrt(2) * perimeter + pi/2, the polygon being one closed curve).  For a simple
    # polygon the region's area is the shoelace area.  A self-intersecting one (~5 % of the real hand-drawn ones,
    # GEOS is_simple false) can wind twice round parts that the even-odd raster leaves out: its region is the
    # even-odd one (:func:`even_odd_area`, GEOS noding + polygonize), so only the few near the threshold are
    # rasterised (skimage costs ~2 ms per such polygon, 3.6 s for the real ones at real scale).
    nxt = np.arange(xs.size) + 1
    nxt[starts[nonempty] + lengths[nonempty] - 1] = starts[nonempty]
    cross = xs * ys[nxt] - xs[nxt] * ys
    edge = np.hypot(xs[nxt] - xs, ys[nxt] - ys)
    area = np.zeros(len(polygons))
    perimeter = np.zeros(len(polygons))
    area[nonempty] = 0.5 * np.abs(np.add.reduceat(cross, starts[nonempty]))
    perimeter[nonempty] = np.add.reduceat(edge, starts[nonempty])
    simple = np.zeros(len(polygons), dtype=bool)
    first_is_last = np.zeros(len(polygons), dtype=bool)
    first_is_last[nonempty] = (xs[starts[nonempty]] == xs[starts[nonempty] + lengths[nonempty] - 1]) & (
        ys[starts[nonempty]] == ys[starts[nonempty] + lengths[nonempty] - 1]
    )
    rings = (lengths >= 4) | ((lengths == 3) & ~first_is_last)  # at least 3 distinct corners once closed
    if rings.any():
        vertex = rings[owner]
        ring_index = (np.cumsum(rings) - 1)[owner[vertex]]
        simple[rings] = shapely.is_simple(
            shapely.linearrings(np.column_stack([xs[vertex], ys[vertex]]), indices=ring_index)
        )
    region = np.where(simple, area, 0.0)
    for i in np.flatnonzero((reasons == None) & rings & ~simple):  # noqa: E711
        region[i] = even_odd_area(*polygons[i])
    may_be_small = (region - np.sqrt(2) * perimeter - np.pi / 2 < min_area) | ~rings
    for i in np.flatnonzero((reasons == None) & may_be_small):  # noqa: E711
        px, py = polygons[i]
        if polygon_area(px, py, tuple(shapes[i])) < min_area:
            reasons[i] = "small_area"
    return reasons


def even_odd_area(xs: np.ndarray, ys: np.ndarray) -> float:
    """Area (px²) of the region a polygon encloses under the even-odd rule (what ``skimage.draw.polygon`` fills),
    for self-intersecting polygons: the closed outline is noded where it crosses itself (GEOS), cut into faces
    (``polygonize``), and the faces an odd number of outline edges away from infinity are summed (a ray from a
    point inside each face)."""
    ring = np.column_stack([np.append(xs, xs[0]), np.append(ys, ys[0])])
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.node(shapely.linestrings(ring)))))
    if faces.size == 0:
        return 0.0
    points = shapely.get_coordinates(shapely.point_on_surface(faces))  # (F, 2), inside each face
    x1, y1, x2, y2 = ring[:-1, 0], ring[:-1, 1], ring[1:, 0], ring[1:, 1]
    px, py = points[:, :1], points[:, 1:]
    spans = (y1 > py) != (y2 > py)  # (F, E): edge spans the ray's y
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
    odd = (spans & (px < crossing_x)).sum(1) % 2 == 1
    return float(shapely.area(faces[odd]).sum())


def stratified_split(
    objids: np.ndarray, labels: np.ndarray, seed: int = 42, fractions=SPLIT_FRACTIONS, names=SPLITS
) -> np.ndarray:
    """Deterministic class-stratified split: an array of split names aligned with ``objids``.

    Within each class the objids are sorted, shuffled with ``seed`` and cut at the cumulative
    fractions (rounded), so every class is represented in each split in proportion.
    """
    if len(fractions) != len(names):
        raise ValueError(f"{len(fractions)} fractions for {len(names)} splits")
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    out = np.empty(len(objids), dtype=object)
    rng = np.random.default_rng(seed)
    bounds = np.cumsum(fractions)[:-1]
    for label in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == label)
        idx = idx[np.argsort(objids[idx], kind="stable")]
        idx = idx[rng.permutation(idx.size)]
        cuts = np.round(bounds * idx.size).astype(int)
        for name, part in zip(names, np.split(idx, cuts)):
            out[part] = name
    return out


def _output_entry(entry: dict, gz2_class: str, base: str, group: str) -> dict:
    out = {k: v for k, v in entry.items() if k != "regions"}
    region = dict(entry_regions(entry)[0])
    region["region_attributes"] = {
        **(region.get("region_attributes") or {}),
        "object_name": group,
        "gz2_class_15": base,
        "gz2_class": gz2_class,
    }
    out["regions"] = [region]
    return out


def image_stats(image_dir, filenames, progress: bool = True) -> dict:
    """Per-channel mean and std (0-255 units) of RGB images, in one streaming pass (float64 sums)."""
    from PIL import Image

    from src.progress import progress_bar

    total = np.zeros(3)
    total_sq = np.zeros(3)
    count = 0
    for name in progress_bar(filenames, desc="image stats", unit="img", disable=not progress):
        path = Path(image_dir) / name
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"), dtype=np.float64).reshape(-1, 3)
        except OSError as err:
            raise OSError(f"{path}: unreadable image ({err})") from None
        total += pixels.sum(0)
        total_sq += (pixels * pixels).sum(0)
        count += pixels.shape[0]
    if count == 0:
        raise ValueError("no training images to compute statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "n_images": len(filenames),
        "split": "train",
        "units": "pixel values 0-255, RGB",
    }


def reference_split(objids: np.ndarray, labels: np.ndarray, reference: dict, seed: int) -> np.ndarray:
    """Split names aligned with ``objids``: the reference split of each objid found in ``reference``
    (:func:`src.data.splits.reference_membership`); the others are split among the splits the reference lacks,
    stratified, in proportion to :data:`SPLIT_FRACTIONS` (``None`` when the reference gives all three)."""
    out = np.full(len(objids), None, dtype=object)
    for name, ref in reference.items():
        out[np.isin(objids, np.fromiter(ref["objids"], dtype=np.int64, count=len(ref["objids"])))] = name
    missing = [name for name in SPLITS if name not in reference]
    rest = np.flatnonzero(out == None)  # noqa: E711 (object array)
    if missing and rest.size:
        fractions = np.array([SPLIT_FRACTIONS[SPLITS.index(name)] for name in missing])
        out[rest] = stratified_split(
            objids[rest], labels[rest], seed=seed, fractions=fractions / fractions.sum(), names=missing
        )
    return out


def convert(
    data_root=".",
    image_size: int = CUTOUT_SIZE,
    min_area: int = MIN_CANDIDATE_AREA,
    seed: int = 42,
    check_images: bool = False,
    stats: bool = False,
    progress: bool = False,
    splits_from=None,
) -> dict:
    """Join, filter, split and write the training JSON files under ``data_root``.

    Parameters
    ----------
    data_root : str or os.PathLike, optional
        The data root (catalog, VIA files, cutouts); the outputs are written there.
    image_size : int, optional
        Side of an image that is absent, px (default ``src.defaults.CUTOUT_SIZE``); present images are measured.
    min_area : int, optional
        Smallest rasterised polygon area kept, px (default ``src.defaults.MIN_CANDIDATE_AREA``, the original
        project's filter).
    seed : int, optional
        Seed of the stratified split.
    check_images : bool, optional
        Decode every image; skip missing and unreadable ones.
    stats : bool, optional
        Write ``src.defaults.DATASET_STATS`` (the training images' mean/std).
    progress : bool, optional
        Show a progress bar for the statistics.
    splits_from : str or os.PathLike, optional
        A folder with reference split files (the original project's ``galaxy_{train,val,test}.json`` or
        ``galaxy_<split>_via.json``); each split found there keeps exactly its membership (its objids that the
        catalog lacks or a filter drops are reported by key and reason), the kept entries outside them are split
        among the splits it lacks (or skipped as ``not_in_reference_splits`` when it gives all three).

    Returns
    -------
    dict
        The report (also written as ``conversion_report.json``): counts kept and skipped by reason, by class and
        per split.
    """
    root = Path(data_root)
    reference = reference_membership(splits_from) if splits_from is not None else None
    image_dir = root / IMAGE_DIR
    catalog_path = find_catalog(root)
    catalog = load_catalog(catalog_path)
    entries, frame, skipped, examples = read_annotations(root)

    # Vectorised join on the objid.
    joined = frame.merge(
        catalog[["dr7objid", "gz2_class", "gz2_class_15", "gz2_class_5"]],
        left_on="objid",
        right_on="dr7objid",
        how="left",
        sort=False,
    )
    unmatched = joined["dr7objid"].isna().to_numpy()
    reason_of = dict.fromkeys(joined["objid"][unmatched].tolist(), "no_catalog_match")
    skipped["no_catalog_match"] += int(unmatched.sum())
    for _, row in joined[unmatched].head(N_EXAMPLES).iterrows():
        _example(examples, "no_catalog_match", row.source, row.key)
    joined = joined[~unmatched]

    have_images = image_dir.is_dir()
    reasons = np.full(len(joined), None, dtype=object)
    polygons, polygon_rows = [], []
    shapes = np.full((len(joined), 2), image_size, dtype=np.int64)
    for i, (objid, source, key) in enumerate(zip(joined["objid"], joined["source"], joined["key"])):
        entry = entries[objid]
        reasons[i] = structural_problem(entry)
        if reasons[i] is None:
            polygons.append(region_polygon(entry_regions(entry)[0], where=f"{root / source}: entry {key}"))
            polygon_rows.append(i)
            if have_images:
                shapes[i] = _image_shape(image_dir, entry["filename"], image_size)
    reasons[polygon_rows] = geometry_problems(polygons, shapes[polygon_rows], min_area)
    if check_images:
        for i in np.flatnonzero(reasons == None):  # noqa: E711
            reasons[i] = _image_problem(image_dir / entries[joined["objid"].iat[i]]["filename"])
    if reference is not None and len(reference) == len(SPLITS):
        listed = set().union(*(ref["objids"] for ref in reference.values()))
        reasons[(reasons == None) & ~joined["objid"].isin(listed).to_numpy()] = "not_in_reference_splits"  # noqa: E711
    keep = reasons == None  # noqa: E711
    reason_of.update(zip(joined["objid"].to_numpy()[~keep].tolist(), reasons[~keep]))
    for i in np.flatnonzero(~keep):
        skipped[reasons[i]] += 1
        _example(examples, reasons[i], joined["source"].iat[i], joined["key"].iat[i])
    kept = joined[keep]
    if kept.empty:
        raise ValueError(f"{root}: no usable annotation left after filtering (skipped: {dict(skipped)})")

    objids = kept["objid"].to_numpy()
    if reference is None:
        split_of = stratified_split(objids, kept["gz2_class_5"].to_numpy(), seed=seed)
    else:
        split_of = reference_split(objids, kept["gz2_class_5"].to_numpy(), reference, seed)
    outputs = {name: {} for name in SPLITS}
    everything = {}
    for objid, gz2, base, group, split in zip(
        objids, kept["gz2_class"], kept["gz2_class_15"], kept["gz2_class_5"], split_of
    ):
        out = _output_entry(entries[objid], gz2, base, group)
        everything[str(objid)] = out
        outputs[split][str(objid)] = out

    report = {
        "data_root": str(root),
        "catalog": catalog_path.name,
        "catalog_rows": int(len(catalog)),
        "annotations": int(
            len(frame) + sum(skipped[r] for r in ("objid_mismatch", "outside_data_root", "duplicate_entry"))
        ),
        "kept": int(len(kept)),
        "skipped": {reason: int(skipped[reason]) for reason in SKIP_REASONS if skipped[reason]},
        "skipped_examples": {reason: examples[reason] for reason in SKIP_REASONS if examples[reason]},
        "options": {
            "image_size": image_size,
            "min_area": min_area,
            "seed": seed,
            "check_images": check_images,
            "splits_from": None if splits_from is None else str(splits_from),
        },
        "by_class": _counts(kept["gz2_class_5"], GALAXY_CLASSES),
        "by_class_15": _counts(kept["gz2_class_15"], BASE_CLASSES),
        "splits": {
            name: {
                "total": len(outputs[name]),
                "by_class": _counts(kept["gz2_class_5"][split_of == name], GALAXY_CLASSES),
            }
            for name in SPLITS
        },
    }
    if reference is not None:
        report["splits_from"] = _reference_report(reference, reason_of, set(objids.tolist()))
    if stats:
        files = [entry["filename"] for entry in outputs["train"].values()]
        write_json_atomic(root / DATASET_STATS, image_stats(image_dir, files, progress=progress), indent=2)
        report["stats_file"] = DATASET_STATS
    write_json_atomic(root / OUTPUT_ALL, everything)
    membership = (
        {"method": "reference", "splits_from": report["splits_from"]["files"]}
        if reference is not None
        else {"method": "stratified", "seed": seed, "fractions": list(SPLIT_FRACTIONS)}
    )
    write_split_set(root, outputs, {"membership": membership})
    write_json_atomic(root / REPORT_FILE, report, indent=2)
    return report


def _reference_report(reference: dict, reason_of: dict, kept: set) -> dict:
    """The reference files (path, SHA-256, entries) and, per split, its objids that are not in the converted
    split, by reason (a skip reason, or ``not_in_via_files``)."""
    files, not_kept = {}, {}
    for name, ref in reference.items():
        files[name] = {"file": ref["file"], "sha256": ref["sha256"], "entries": len(ref["objids"])}
        by_reason: dict[str, list[str]] = defaultdict(list)
        for objid in sorted(ref["objids"] - kept):
            by_reason[reason_of.get(objid, NOT_ANNOTATED)].append(str(objid))
        not_kept[name] = dict(by_reason)
    return {"files": files, "not_kept": not_kept}


def _image_problem(path: Path) -> str | None:
    """``missing_image`` / ``unreadable_image`` (decoded in full: a truncated body counts), or ``None``."""
    from src.data.images import ImageError, read_rgb

    if not path.is_file():
        return "missing_image"
    try:
        read_rgb(path)
    except ImageError:
        return "unreadable_image"
    return None


def _counts(values: pd.Series, order) -> dict[str, int]:
    counts = values.value_counts()
    return {name: int(counts.get(name, 0)) for name in order}


def format_report(report: dict) -> str:
    lines = [f"kept {report['kept']} of {report['annotations']} annotations ({report['catalog_rows']} catalog rows)"]
    for reason, count in report["skipped"].items():
        lines.append(f"  skipped {count:>7}  {reason}   e.g. {report['skipped_examples'][reason][0]}")
    header = f"{'class':<16}" + "".join(f"{s:>8}" for s in ("all",) + SPLITS)
    lines.append(header)
    for name in GALAXY_CLASSES:
        row = [report["by_class"][name]] + [report["splits"][s]["by_class"][name] for s in SPLITS]
        lines.append(f"{name:<16}" + "".join(f"{v:>8}" for v in row))
    lines.append(f"{'total':<16}{report['kept']:>8}" + "".join(f"{report['splits'][s]['total']:>8}" for s in SPLITS))
    reference = report.get("splits_from")
    if reference:
        for name, info in reference["files"].items():
            lost = reference["not_kept"][name]
            detail = "; ".join(f"{reason} {len(keys)} (e.g. {keys[0]})" for reason, keys in lost.items())
            lines.append(
                f"{name}: membership of {info['file']} ({info['entries']} entries)"
                + (f"; not kept: {detail}" if lost else "; all kept")
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.conversion", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=".", help="folder with gz2_hart16.csv[.gz] and original/ (default: .)")
    parser.add_argument("--image-size", type=int, default=CUTOUT_SIZE, help="image size (px) when the image is absent")
    parser.add_argument("--min-area", type=int, default=MIN_CANDIDATE_AREA, help="minimum rasterised polygon area (px)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the stratified split")
    parser.add_argument("--check-images", action="store_true", help="open every image; skip unreadable ones")
    parser.add_argument("--stats", action="store_true", help=f"write {DATASET_STATS} (mean/std of train images)")
    parser.add_argument(
        "--splits-from",
        metavar="DIR2",
        help="reproduce the split membership of galaxy_{train,val,test}.json (or galaxy_<split>_via.json) in DIR2",
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)

    def body():
        report = convert(
            args.data_root,
            image_size=args.image_size,
            min_area=args.min_area,
            seed=args.seed,
            check_images=args.check_images,
            stats=args.stats,
            progress=not args.quiet,
            splits_from=args.splits_from,
        )
        if not args.quiet:
            print(format_report(report))
            print(
                f"wrote {OUTPUT_ALL}, galaxy_{{train,val,test}}.json, {MANIFEST} and {REPORT_FILE} in {args.data_root}"
            )

    return run_cli("python -m src.conversion", body, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
