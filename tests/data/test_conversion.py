import json
import subprocess
import sys

import numpy as np
import pytest
import shapely
from PIL import Image

from src.data.conversion import SPLITS, convert, geometry_problems, stratified_split
from src.data.via import load_via
from tests.tiny_data import write_tiny_raw

ROOT_FILES = (
    "galaxy_segment_classes.json",
    "galaxy_train.json",
    "galaxy_val.json",
    "galaxy_test.json",
    "conversion_report.json",
)


def _via(path):
    return json.loads(path.read_text())


def _save_via(path, data):
    path.write_text(json.dumps(data))


def test_round_trip_counts_and_split(tmp_path):
    write_tiny_raw(tmp_path, n=60, size=64)
    report = convert(tmp_path, image_size=64, min_area=20)
    assert report["annotations"] == 60 and report["kept"] == 60 and report["skipped"] == {}
    everything = _via(tmp_path / "galaxy_segment_classes.json")
    splits = {s: _via(tmp_path / f"galaxy_{s}.json") for s in SPLITS}
    # the splits partition the kept entries
    keys = [k for s in SPLITS for k in splits[s]]
    assert sorted(keys) == sorted(everything) and len(set(keys)) == 60
    assert [len(splits[s]) for s in SPLITS] == [report["splits"][s]["total"] for s in SPLITS]
    assert abs(len(splits["train"]) - 42) <= 3 and abs(len(splits["val"]) - 12) <= 3
    # each entry carries the 5-class name and the 15-class base from the catalog
    catalog = {
        int(line.split(",")[0]): line.split(",")[4]
        for line in (tmp_path / "gz2_hart16.csv").read_text().splitlines()[1:]
    }
    for key, entry in everything.items():
        attrs = entry["regions"][0]["region_attributes"]
        assert attrs["gz2_class"] == catalog[int(key)]
        assert attrs["object_name"] in report["by_class"]
    assert sum(report["by_class"].values()) == 60
    for s in SPLITS:
        assert sum(report["splits"][s]["by_class"].values()) == len(splits[s])


def test_split_is_deterministic_and_seeded(tmp_path):
    write_tiny_raw(tmp_path, n=40, size=64)
    convert(tmp_path, image_size=64, min_area=20, seed=1)
    first = (tmp_path / "galaxy_test.json").read_bytes()
    convert(tmp_path, image_size=64, min_area=20, seed=1)
    assert (tmp_path / "galaxy_test.json").read_bytes() == first
    convert(tmp_path, image_size=64, min_area=20, seed=2)
    assert (tmp_path / "galaxy_test.json").read_bytes() != first


def test_stratified_split_keeps_class_proportions():
    labels = np.array(["elliptical"] * 500 + ["spiral"] * 200 + ["artifact"] * 10)
    objids = np.arange(labels.size) * 7 + 3
    split = stratified_split(objids, labels, seed=0)
    for label, n in (("elliptical", 500), ("spiral", 200), ("artifact", 10)):
        part = split[labels == label]
        assert [(part == s).sum() for s in SPLITS] == [
            round(0.7 * n),
            round(0.9 * n) - round(0.7 * n),
            n - round(0.9 * n),
        ]
    # independent of input order
    order = np.random.default_rng(1).permutation(labels.size)
    assert (stratified_split(objids[order], labels[order], seed=0) == split[order]).all()


def _bad_inputs(root):
    write_tiny_raw(root, n=20, size=64, val_fraction=0.0)
    train_path = root / "original/train/via_region_data.json"
    data = _via(train_path)
    keys = list(data)
    poly = data[keys[0]]["regions"][0]
    data[keys[0]]["regions"] = []  # no regions
    data[keys[1]]["regions"] = [poly, poly]  # several regions
    data[keys[2]]["regions"][0]["shape_attributes"] = {"name": "rect", "x": 1, "y": 1, "width": 9, "height": 9}
    data[keys[3]]["regions"][0]["shape_attributes"].update(all_points_x=[1, 9], all_points_y=[1, 9])  # 2 vertices
    data[keys[4]]["regions"][0]["shape_attributes"]["all_points_x"][0] = -3  # negative
    data[keys[5]]["regions"][0]["shape_attributes"]["all_points_y"][0] = 64  # beyond 0..63
    data[keys[6]]["regions"][0]["shape_attributes"].update(
        all_points_x=[30, 33, 33, 30], all_points_y=[30, 30, 33, 33]
    )  # 16 px
    data[keys[7]]["regions"] = {"0": data[keys[7]]["regions"][0]}  # dict regions: fine
    data["100000000000099999"] = dict(data[keys[8]], filename="Dr7_100000000000099999.jpg")  # not in catalog
    (root / "original/zoo2Main" / data[keys[9]]["filename"]).write_bytes(b"not a jpeg")
    _save_via(train_path, data)
    _save_via(root / "original/val/via_region_data.json", {keys[10]: data[keys[10]]})  # duplicate of train
    return keys


def test_bad_entries_are_counted_by_reason_and_named(tmp_path):
    keys = _bad_inputs(tmp_path)
    report = convert(tmp_path, image_size=64, min_area=20, check_images=True)
    assert report["skipped"] == {
        "duplicate_entry": 1,
        "no_catalog_match": 1,
        "no_regions": 1,
        "several_regions": 1,
        "not_polygon": 1,
        "too_few_vertices": 1,
        "outside_image": 2,
        "small_area": 1,
        "unreadable_image": 1,
    }
    assert report["annotations"] == 22 and report["kept"] == 22 - 10
    examples = report["skipped_examples"]
    assert examples["no_regions"] == [f"original/train/via_region_data.json: {keys[0]}"]
    assert examples["duplicate_entry"] == [f"original/val/via_region_data.json: {keys[10]}"]
    assert examples["no_catalog_match"] == ["original/train/via_region_data.json: 100000000000099999"]
    kept = _via(tmp_path / "galaxy_segment_classes.json")
    assert keys[7] in kept and isinstance(kept[keys[7]]["regions"], list)
    assert keys[9] not in kept


def test_unreadable_image_is_kept_without_check_images(tmp_path):
    keys = _bad_inputs(tmp_path)
    report = convert(tmp_path, image_size=64, min_area=20)
    assert "unreadable_image" not in report["skipped"] and report["kept"] == 13
    assert keys[9] in _via(tmp_path / "galaxy_segment_classes.json")


def test_image_size_is_read_from_the_image(tmp_path):
    write_tiny_raw(tmp_path, n=10, size=64)
    # a vertex at x=100 is outside a 64 px image even though --image-size says 256
    data = _via(tmp_path / "original/train/via_region_data.json")
    key = next(iter(data))
    data[key]["regions"][0]["shape_attributes"]["all_points_x"][0] = 100
    _save_via(tmp_path / "original/train/via_region_data.json", data)
    report = convert(tmp_path, image_size=256, min_area=20)
    assert report["skipped"] == {"outside_image": 1}


def test_malformed_json_fails_and_writes_nothing(tmp_path):
    write_tiny_raw(tmp_path, n=10, size=64)
    convert(tmp_path, image_size=64, min_area=20)
    before = {name: (tmp_path / name).read_bytes() for name in ROOT_FILES}
    (tmp_path / "original/val/via_region_data.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"val/via_region_data.json: malformed JSON"):
        convert(tmp_path, image_size=64, min_area=20, seed=5)
    assert {name: (tmp_path / name).read_bytes() for name in ROOT_FILES} == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_ragged_polygon_names_file_and_entry(tmp_path):
    write_tiny_raw(tmp_path, n=10, size=64)
    data = _via(tmp_path / "original/train/via_region_data.json")
    key = next(iter(data))
    data[key]["regions"][0]["shape_attributes"]["all_points_y"].pop()
    _save_via(tmp_path / "original/train/via_region_data.json", data)
    with pytest.raises(ValueError, match=rf"train/via_region_data.json: entry {key}: .*differ in length"):
        convert(tmp_path, image_size=64)


def test_catalog_without_gz2_class_is_a_clear_error(tmp_path):
    write_tiny_raw(tmp_path, n=5, size=64)
    lines = (tmp_path / "gz2_hart16.csv").read_text().splitlines()
    (tmp_path / "gz2_hart16.csv").write_text("\n".join(line.replace("gz2_class", "klass") for line in lines))
    with pytest.raises(ValueError, match="missing column.*gz2_class"):
        convert(tmp_path, image_size=64)


def test_stats_match_numpy(tmp_path):
    write_tiny_raw(tmp_path, n=20, size=64)
    convert(tmp_path, image_size=64, min_area=20, stats=True)
    stats = json.loads((tmp_path / "dataset_stats.json").read_text())
    train = load_via(tmp_path / "galaxy_train.json")
    pixels = np.concatenate(
        [
            np.asarray(Image.open(tmp_path / "original/zoo2Main" / e["filename"]).convert("RGB"), dtype=float).reshape(
                -1, 3
            )
            for e in train.values()
        ]
    )
    assert stats["n_images"] == len(train)
    np.testing.assert_allclose(stats["mean"], pixels.mean(0), rtol=1e-9)
    np.testing.assert_allclose(stats["std"], pixels.std(0), rtol=1e-9)


def test_geometry_vectorised_matches_raster():
    from src.data.via import polygon_area

    rng = np.random.default_rng(0)
    polygons = []
    for _ in range(200):
        n = int(rng.integers(3, 30))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(2, 15)
        polygons.append((np.round(32 + r * np.cos(t)), np.round(32 + r * rng.uniform(0.3, 1) * np.sin(t))))
    shapes = np.full((200, 2), 64)
    reasons = geometry_problems(polygons, shapes, min_area=90)
    expected = ["small_area" if polygon_area(x, y, (64, 64)) < 90 else None for x, y in polygons]
    assert reasons.tolist() == expected
    assert 20 < expected.count(None) < 180  # both outcomes are exercised


def test_geometry_self_intersecting_polygons_are_rasterised():
    """A square drawn twice has a large shoelace area but covers almost no pixel (even-odd fill, as the dataset
    rasterises it): the area shortcut must not let it through.  Star-shaped polygons keep the shortcut."""
    from src.data.via import polygon_area

    twice = (np.array([10, 40, 40, 10] * 2, float), np.array([10, 10, 40, 40] * 2, float))
    t = np.arange(5) * 4 * np.pi / 5
    pentagram = (np.round(32 + 25 * np.cos(t)), np.round(32 + 25 * np.sin(t)))
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ellipse = (np.round(32 + 20 * np.cos(t)), np.round(32 + 9 * np.sin(t)))
    polygons = [twice, pentagram, ellipse]
    assert polygon_area(*twice, (64, 64)) < 90 <= polygon_area(*pentagram, (64, 64))
    reasons = geometry_problems(polygons, np.full((3, 2), 64), min_area=90)
    assert reasons.tolist() == ["small_area", None, None]


def test_cli_prints_table_and_fails_cleanly(tmp_path):
    write_tiny_raw(tmp_path, n=15, size=64)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.conversion",
            "--data-root",
            str(tmp_path),
            "--image-size",
            "64",
            "--min-area",
            "20",
            "--stats",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "kept 15 of 15" in done.stdout and "spiral barred" in done.stdout
    assert (tmp_path / "dataset_stats.json").is_file()
    (tmp_path / "gz2_hart16.csv").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "src.conversion", "--data-root", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "gz2_hart16.csv" in done.stderr and "Traceback" not in done.stderr


def test_real_annotations_survive_conversion(tmp_path, real_dir):
    """The seed's real test split (already filtered by the seed) passes every filter unchanged."""
    real = load_via(real_dir / "galaxy_test_via.json")
    abbrev = {"artifact": "A", "elliptical": "Er", "spiral": "Sc2m", "spiral barred": "SBb2t", "spiral edge-on": "Sen"}
    (tmp_path / "original/train").mkdir(parents=True)
    (tmp_path / "original/val").mkdir(parents=True)
    keys = list(real)
    _save_via(tmp_path / "original/train/via_region_data.json", {k: real[k] for k in keys[:2000]})
    _save_via(tmp_path / "original/val/via_region_data.json", {k: real[k] for k in keys[2000:]})
    rows = [f"{k},0,0,original,{abbrev[real[k]['regions'][0]['region_attributes']['object_name']]}" for k in keys]
    (tmp_path / "gz2_hart16.csv").write_text("dr7objid,ra,dec,sample,gz2_class\n" + "\n".join(rows) + "\n")
    report = convert(tmp_path)
    assert report["kept"] == 2828 and report["skipped"] == {}
    assert report["by_class"] == {
        "artifact": 7,
        "elliptical": 1268,
        "spiral": 505,
        "spiral barred": 620,
        "spiral edge-on": 428,
    }
    out = load_via(tmp_path / "galaxy_segment_classes.json")
    assert all(
        out[k]["regions"][0]["region_attributes"]["object_name"]
        == real[k]["regions"][0]["region_attributes"]["object_name"]
        for k in keys
    )


def test_even_odd_area_of_self_intersecting_polygons():
    from src.data.conversion import even_odd_area

    bowtie = (np.array([0, 20, 20, 0], float), np.array([0, 20, 0, 20], float))  # two triangles of 100 px²
    assert even_odd_area(*bowtie) == pytest.approx(200.0)
    twice = (np.array([10, 40, 40, 10] * 2, float), np.array([10, 10, 40, 40] * 2, float))
    assert even_odd_area(*twice) == 0.0  # wound twice: even everywhere, nothing filled
    t = np.arange(5) * 4 * np.pi / 5
    star = (25 * np.cos(t), 25 * np.sin(t))  # pentagram: the centre pentagon is wound twice
    outline = np.column_stack([np.append(star[0], star[0][0]), np.append(star[1], star[1][0])])
    hull = shapely.area(shapely.convex_hull(shapely.multipoints(outline)))
    assert 0 < even_odd_area(*star) < hull


def test_geometry_bound_holds_for_the_real_self_intersecting_polygons(real_dir):
    """Every real self-intersecting polygon (153 of the 2,828 of the original test split): the even-odd area
    minus the boundary band never exceeds its raster, and the filter agrees with the raster at any threshold."""
    from src.data.conversion import even_odd_area
    from src.data.via import polygon_area

    via = load_via(real_dir / "galaxy_test_via.json")
    polygons = [
        (np.asarray(s["all_points_x"], float), np.asarray(s["all_points_y"], float))
        for s in (e["regions"][0]["shape_attributes"] for e in via.values())
    ]
    rings = shapely.linearrings(
        np.column_stack([np.concatenate([x for x, _ in polygons]), np.concatenate([y for _, y in polygons])]),
        indices=np.repeat(np.arange(len(polygons)), [x.size for x, _ in polygons]),
    )
    crossing = [polygons[i] for i in np.flatnonzero(~shapely.is_simple(rings))]
    assert len(crossing) == 153
    raster = np.array([polygon_area(x, y, (256, 256)) for x, y in crossing])
    for (x, y), pixels in zip(crossing, raster):
        perimeter = np.hypot(np.diff(np.append(x, x[0])), np.diff(np.append(y, y[0]))).sum()
        assert even_odd_area(x, y) - np.sqrt(2) * perimeter - np.pi / 2 <= pixels
    for threshold in (90, int(np.median(raster)), int(raster.max()) + 1):
        reasons = geometry_problems(crossing, np.full((len(crossing), 2), 256), threshold)
        assert reasons.tolist() == ["small_area" if a < threshold else None for a in raster]
