"""The synthetic GZ2 generator: formats, determinism, round trip, statistics against the real data."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.classes import BASE_CLASSES, GALAXY_CLASSES, LABEL2ID
from src.data.catalog import load_catalog, parse_gz2_class
from src.data.via import entry_regions, load_via, polygon_area, polygon_mask, region_polygon
from src.synthetic import generate, generate_field, hart16, labels, render_cutout
from src.synthetic.render import SKY_SIGMA

REPO = Path(__file__).resolve().parents[2]
REAL_MEAN = np.array([8.6, 6.0, 4.9])
REAL_STD = np.array([14.7, 12.4, 8.7])
REAL_MEDIAN_AREA = {"elliptical": 811, "spiral": 972, "spiral barred": 994, "spiral edge-on": 840}
N_STATS = 240


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- labels ---------------------------------------------------------------------------------------------------


def test_every_drawn_string_parses_to_its_group():
    rng = np.random.default_rng(0)
    for group in GALAXY_CLASSES:
        for _ in range(400):
            text = labels.draw_gz2_class(rng, group)
            parsed = parse_gz2_class(text)
            assert parsed.group == group and parsed.base in BASE_CLASSES
            assert (parsed.arms is None) == (parsed.winding is None)  # as in the real catalog


def test_drawn_strings_are_real_strings(real_dir):
    real = set((real_dir / "gz2_class_strings.txt").read_text().split())
    rng = np.random.default_rng(1)
    drawn = [labels.draw_gz2_class(rng, labels.draw_group(rng)) for _ in range(3000)]
    share = np.mean([text in real for text in drawn])
    assert share > 0.97, f"only {share:.1%} of drawn strings occur in the real catalog"


def test_class_mix_follows_the_real_split_or_is_balanced():
    rng = np.random.default_rng(2)
    counts = Counter(labels.draw_group(rng) for _ in range(20000))
    for name, expected in labels.REAL_MIX.items():
        assert abs(counts[name] / 20000 - expected) < 0.012, name
    balanced = Counter(labels.draw_group(rng, balance=True) for _ in range(5000))
    assert all(abs(balanced[name] / 5000 - 0.2) < 0.03 for name in GALAXY_CLASSES)


def test_objids_are_18_digits_outside_the_dr7_range():
    for seed, index in ((0, 0), (12345, 999), (10**12, 10**9 - 1)):
        objid = hart16.objid(seed, index)
        assert len(str(objid)) == 18 and str(objid)[0] == "9"
    assert hart16.objid(3, 5) != hart16.objid(4, 5)
    with pytest.raises(ValueError, match="index"):
        hart16.objid(0, 10**9)


# --- statistics against the real annotations (a few hundred 256 px cutouts, no files written) -------------------


@pytest.fixture(scope="module")
def rendered():
    return [render_cutout(7, i, 256) for i in range(N_STATS)]


def test_class_mix_of_rendered_cutouts(rendered):
    counts = Counter(record["group"] for _, record in rendered)
    for name in ("elliptical", "spiral", "spiral barred", "spiral edge-on"):
        assert abs(counts[name] / N_STATS - labels.REAL_MIX[name]) < 0.08, (name, counts)
    for _, record in rendered:
        assert parse_gz2_class(record["gz2_class"]).base == record["base"]


def test_mask_areas_match_the_real_medians(rendered):
    """The drawn areas follow the real split (many draws, tight); the rendered polygons have them (a few dozen
    cutouts per class: the median of ~40 draws of this broad distribution is uncertain by ~15 %, so per class
    within 50 %, pooled over the classes within 20 %)."""
    rng = np.random.default_rng(0)
    for name, real in REAL_MEDIAN_AREA.items():
        assert np.median([labels.draw_area(rng, name) for _ in range(4000)]) == pytest.approx(real, rel=0.05)
    pooled = []
    for name, real in REAL_MEDIAN_AREA.items():
        areas = [record["area"] for _, record in rendered if record["group"] == name]
        assert len(areas) >= 15
        assert 0.5 * real <= np.median(areas) <= 1.5 * real, (name, np.median(areas), real)
        pooled += [area / real for area in areas]
    assert 0.8 <= np.median(pooled) <= 1.2, np.median(pooled)
    vertices = [len(record["all_points_x"]) for _, record in rendered]
    assert min(vertices) >= 3 and max(vertices) <= 80 and 30 <= np.median(vertices) <= 80


def test_masks_cover_the_galaxy(rendered):
    for rgb, record in rendered:
        grey = rgb.astype(float).sum(axis=2)
        mask = polygon_mask(record["all_points_x"], record["all_points_y"], grey.shape)
        assert mask.sum() == record["area"] > 0
        inside, outside = grey[mask].mean(), grey[~mask].mean()
        assert inside > 4 * outside, (record["gz2_class"], inside, outside)


def test_pixel_statistics_within_30_percent_of_real(rendered):
    pixels = np.concatenate([rgb.reshape(-1, 3) for rgb, _ in rendered]).astype(float)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    assert np.all(np.abs(mean / REAL_MEAN - 1) < 0.3), mean
    assert np.all(np.abs(std / REAL_STD - 1) < 0.3), std


# --- files: formats, determinism, round trip ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = generate(root, n=40, seed=1, size=64, workers=1, progress=False)
    return root, summary


def test_layout_and_formats(small_set, real_dir):
    root, summary = small_set
    images = sorted((root / "original" / "zoo2Main").glob("Dr7_*.jpg"))
    assert len(images) == 40 and summary["n"] == 40
    with Image.open(images[0]) as img:
        assert img.mode == "RGB" and img.size == (64, 64) and img.format == "JPEG"
    frame = load_catalog(root / "gz2_hart16.csv")
    assert list(frame["dr7objid"]) == [hart16.objid(1, i) for i in range(40)]
    header = (root / "gz2_hart16.csv").read_text().splitlines()[0].split(",")
    assert header == list(hart16.COLUMNS) and "t01_smooth_or_features_a01_smooth_debiased" in header
    full = __import__("pandas").read_csv(root / "gz2_hart16.csv")
    smooth = full["gz2_class"].str.startswith("E")
    assert (full.loc[smooth, "t01_smooth_or_features_a01_smooth_debiased"] > 0.4).all()
    assert (
        full.loc[~smooth & (full["gz2_class"] != "A"), "t01_smooth_or_features_a02_features_or_disk_debiased"] > 0.4
    ).all()
    real = load_via(real_dir / "galaxy_test_via.json")
    real_entry = next(iter(real.values()))
    via = {
        **load_via(root / "original/train/via_region_data.json"),
        **load_via(root / "original/val/via_region_data.json"),
    }
    assert len(via) == 40 and 0 < summary["splits"]["val"] < 20
    for key, entry in via.items():
        assert set(entry) == set(real_entry) and entry["filename"] == f"Dr7_{key}.jpg"
        [region] = entry_regions(entry)
        assert set(region["shape_attributes"]) == set(entry_regions(real_entry)[0]["shape_attributes"])
        xs, ys = region_polygon(region)
        assert xs.min() >= 0 and ys.min() >= 0 and xs.max() <= 63 and ys.max() <= 63
        assert all(float(v).is_integer() for v in xs) and polygon_area(xs, ys, (64, 64)) > 0


def test_deterministic_whatever_the_workers(small_set, tmp_path):
    root, summary = small_set
    again = generate(tmp_path / "two", n=40, seed=1, size=64, workers=2, progress=False)
    assert again["by_base"] == summary["by_base"]
    first, second = _files(root), _files(tmp_path / "two")
    first = {k: v for k, v in first.items() if not k.startswith("galaxy_") and not k.startswith("conversion")}
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name
    other = generate(tmp_path / "other", n=5, seed=2, size=64, progress=False)
    assert other["objids"][0] != summary["objids"][0]


def test_round_trip_through_conversion(small_set):
    from src.data.conversion import convert

    root, summary = small_set
    report = convert(root, image_size=64, min_area=5, check_images=True)
    assert report["kept"] == 40
    assert sum(report["skipped"].values()) == 0, report["skipped"]
    assert {k: v for k, v in report["by_class"].items() if v} == {k: v for k, v in summary["by_class"].items() if v}
    converted = load_via(root / "galaxy_segment_classes.json")
    catalog = load_catalog(root / "gz2_hart16.csv").set_index("dr7objid")
    for key, entry in converted.items():
        [region] = entry_regions(entry)
        assert region["region_attributes"]["object_name"] == catalog.loc[int(key), "gz2_class_5"]


def test_fits_band_images(tmp_path):
    """--fits: float32 g, r, i images before the stretch, TAN WCS centred on the catalog ra/dec at 0.396"/px."""
    from astropy.io import fits
    from astropy.stats import sigma_clipped_stats
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    from src.data.images import TRAINING_SKY_SIGMA, lupton_rgb, write_jpeg

    # the clean scene: its JPEG is the bands under the nominal stretch (the sdss scene's own composite: test_realism)
    summary = generate(tmp_path, n=6, seed=1, size=64, progress=False, fits=True, scene="clean")
    catalog = load_catalog(tmp_path / "gz2_hart16.csv").set_index("dr7objid")
    fits_files = sorted((tmp_path / "original" / "fits").iterdir())
    assert len(fits_files) == 18 and summary["paths"]["fits"] == str(tmp_path / "original" / "fits")
    sigmas = []
    for index in range(6):
        objid = hart16.objid(1, index)
        bands = []
        for band in "gri":
            with fits.open(tmp_path / f"original/fits/Dr7_{objid}_{band}.fits") as hdul:
                [hdu] = hdul
                assert hdu.data.dtype == np.dtype(">f4") and hdu.data.shape == (64, 64)
                assert hdu.header["FILTER"] == band and hdu.header["OBJID"] == str(objid)
                wcs = WCS(hdu.header)
                bands.append(hdu.data.astype(np.float32))
            centre = wcs.pixel_to_world_values(31.5, 31.5)  # 0-based centre of a 64 px image
            assert np.allclose(centre, catalog.loc[objid, ["ra", "dec"]].to_numpy(float), rtol=0, atol=1e-9)
            assert np.allclose(proj_plane_pixel_scales(wcs) * 3600, 0.396)
            assert wcs.wcs.ctype[0] == "RA---TAN" and wcs.wcs.ctype[1] == "DEC--TAN"
        bands = np.stack(bands)
        write_jpeg(tmp_path / "again.jpg", lupton_rgb(bands))  # the JPEG is these bands, stretched
        assert (tmp_path / "again.jpg").read_bytes() == (tmp_path / f"original/zoo2Main/Dr7_{objid}.jpg").read_bytes()
        sigmas.append([sigma_clipped_stats(b, stdfunc="mad_std")[2] for b in bands])
    assert np.allclose(np.median(sigmas, axis=0), TRAINING_SKY_SIGMA, rtol=0.15)


def test_fits_do_not_change_the_other_outputs(tmp_path):
    plain = generate(tmp_path / "plain", n=4, seed=2, size=48, progress=False)
    with_fits = generate(tmp_path / "fits", n=4, seed=2, size=48, progress=False, fits=True, workers=2)
    assert plain["by_base"] == with_fits["by_base"]
    first, second = _files(tmp_path / "plain"), _files(tmp_path / "fits")
    assert {k: v for k, v in second.items() if not k.startswith("original/fits/")} == first
    assert len(second) == len(first) + 12


def test_balance_oversamples_rare_classes(tmp_path):
    summary = generate(tmp_path, n=30, seed=0, size=32, balance=True, progress=False)
    assert summary["by_class"]["artifact"] >= 2


# --- arguments and CLI ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n must be a positive"),
        ({"n": -3}, "n must be a positive"),
        ({"n": 2, "size": 16}, "size must be"),
        ({"n": 2, "workers": 0}, "workers must be"),
        ({"n": 2, "seed": -1}, "seed must be"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "gz2_hart16.csv").exists()


def test_cli_reports_bad_arguments_and_writes(tmp_path):
    bad = subprocess.run(
        [sys.executable, "-m", "src.synthetic", "--out", str(tmp_path), "--n", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "n must be a positive" in bad.stderr
    small = subprocess.run(
        [sys.executable, "-m", "src.synthetic", "--out", str(tmp_path), "--n", "3", "--size", "16"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert small.returncode != 0 and "size must be" in small.stderr
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.synthetic",
            "--out",
            str(tmp_path),
            "--n",
            "3",
            "--size",
            "48",
            "--seed",
            "5",
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(load_catalog(tmp_path / "gz2_hart16.csv")) == 3


# --- field mode -----------------------------------------------------------------------------------------------


def test_field_coco_json(tmp_path):
    from pycocotools.coco import COCO

    summary = generate_field(tmp_path, n=1, seed=0, size=512, progress=False, fits=True)
    coco = COCO(str(tmp_path / "field_annotations.json"))
    assert summary["objects"] == len(coco.getAnnIds()) >= 4
    assert {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())} == {n: LABEL2ID[n] for n in GALAXY_CLASSES}
    [info] = coco.loadImgs(coco.getImgIds())
    rgb = np.asarray(Image.open(tmp_path / info["file_name"]).convert("RGB"), dtype=float).sum(axis=2)
    assert rgb.shape == (info["height"], info["width"]) == (512, 512)
    union = np.zeros(rgb.shape, bool)
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann).astype(bool)
        x, y, w, h = ann["bbox"]
        assert mask.sum() > 0 and 0 <= x and 0 <= y and x + w <= 512 and y + h <= 512
        assert abs(mask.sum() - ann["area"]) <= 0.1 * ann["area"] + 10
        parse_gz2_class(ann["gz2_class"])
        union |= mask
        # brightness: every pixel inside the isophote is >= ~1 sky sigma of the detection image (band mean of
        # flux / sigma), so the total flux in those units exceeds the area (sky sigma within +-15 %)
        assert len(ann["flux_gri"]) == 3
        assert np.sum(np.asarray(ann["flux_gri"]) / (3 * SKY_SIGMA * 1.15)) > 0.8 * ann["area"]
    assert rgb[union].mean() > 4 * rgb[~union].mean()
    with pytest.raises(ValueError, match="size must be"):
        generate_field(tmp_path, n=1, size=64, progress=False)
    # --fits: the band images before the stretch, with a TAN WCS; the JPEG is their Lupton composite
    from astropy.io import fits
    from astropy.wcs import WCS

    from src.data.images import JPEG_QUALITY, lupton_rgb
    from src.synthetic.field import field_radec

    bands = []
    for band in "gri":
        with fits.open(tmp_path / f"field_0000_{band}.fits") as hdul:
            bands.append(hdul[0].data.astype(np.float32))
            wcs = WCS(hdul[0].header)
    centre = wcs.pixel_to_world_values(255.5, 255.5)
    assert np.allclose(centre, field_radec(0, 0), atol=1e-6)
    buffer = io.BytesIO()
    Image.fromarray(lupton_rgb(np.stack(bands))).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    assert buffer.getvalue() == (tmp_path / info["file_name"]).read_bytes()
