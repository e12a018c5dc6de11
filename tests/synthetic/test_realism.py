"""Synthetic realism: the ``sdss`` scene (drawn conditions, field stars, class mix, outlines, FITS, workers), the sep
measurements and the comparison with the real SDSS frame (skipped without ``../shared/real``); the scoring of
bench/real_crops.py."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from src.data.images import LUPTON_Q, LUPTON_STRETCH, read_rgb
from src.synthetic import conditions, generate, labels, realism, render, stars
from src.synthetic.generator import composite, render_bands, render_cutout

REPO = Path(__file__).resolve().parents[2]


def _gaussian_star(image, x, y, sigma, peak):
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    image += peak * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2)


def _frame(smoothing: float, seed: int = 0) -> np.ndarray:
    """A 256 px grey 'JPEG' with sky 20 +- noise and eight stars of FWHM 3 px, as uint8 RGB."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (256, 256))
    if smoothing:
        noise = gaussian_filter(noise, smoothing)
    image = 20 + 4 * noise / noise.std()
    for k in range(8):
        _gaussian_star(image, 30 + 28 * k, 40 + 20 * (k % 3), 3 / 2.355, 80 + 20 * k)
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_measure_crop_counts_sources_and_sees_correlated_noise():
    white, _ = realism.measure_crop(_frame(0))
    smooth, sources = realism.measure_crop(_frame(1.0))
    assert white["n_sources"] == smooth["n_sources"] == 8
    assert abs(white["noise_corr1"]) < 0.1 and smooth["noise_corr1"] > 0.6
    assert 3.0 < white["sky_sigma"] < 5.0 and 15 < white["sky_level"] < 25
    crops, pooled = realism.measure_set([_frame(0, s) for s in range(3)])
    assert pooled["point"].all() and crops[0]["n_point"] == 8
    assert 2.0 < crops[0]["star_fwhm"] < 4.5  # FWHM 3 px (2 r50 of a Gaussian)


def test_conditions_cover_their_ranges_around_the_nominal_stretch():
    rng = np.random.default_rng(0)
    drawn = [conditions.draw(rng) for _ in range(400)]
    stretch = np.array([c.stretch for c in drawn])
    q = np.array([c.q for c in drawn])
    assert abs(np.log(np.median(stretch) / LUPTON_STRETCH)) < 0.08 and abs(np.log(np.median(q) / LUPTON_Q)) < 0.04
    assert stretch.min() < LUPTON_STRETCH / 1.3 and stretch.max() > LUPTON_STRETCH * 1.3
    seeing = np.array([c.seeing for c in drawn])
    assert seeing.min() < 1.6 and seeing.max() > 3.6
    quality = {c.jpeg_quality for c in drawn}
    assert min(quality) <= 67 and max(quality) >= 93
    density = np.array([c.star_density for c in drawn])
    assert density.min() < 3 and density.max() > 70


def test_saturated_star_has_violet_core_spikes_and_halo():
    rng = np.random.default_rng(3)
    cond = conditions.draw(rng)
    kernel = render.psf_kernel(cond.seeing)
    saturation = render.saturation_flux(cond.stretch, cond.q)
    saturated_at = stars.sat_flux(saturation, kernel)
    canvas = np.zeros((3, 129, 129), np.float32)
    flux, colour = 20 * saturated_at, np.array([0.8, 1.0, 1.1])
    stars._add_points(canvas, np.array([64.0]), np.array([64.0]), (colour * flux)[None])
    stars.bright_star(rng, canvas, 64.0, 64.0, flux, colour, cond.seeing, saturated_at, saturation)
    canvas = render.convolve(canvas, kernel.astype(np.float32))
    stars.paint_cores(rng, canvas, np.array([[64.0, 64.0, 20.0]]), cond.seeing, saturation)
    rgb = composite(canvas, cond).astype(int)
    r, g, b = rgb[64, 64]
    assert b >= 250 and g < r < b  # violet: B > R > G
    ring = 6 * cond.seeing
    on_axis = np.mean([rgb[64, 64 + int(ring)].sum(), rgb[64 + int(ring), 64].sum()])
    diagonal = rgb[64 + int(ring / 1.414), 64 + int(ring / 1.414)].sum()
    assert on_axis > diagonal  # spikes along the CCD axes (tilt <= 12 deg)
    assert rgb[64, 64 + 3 * int(cond.seeing)].sum() > 0  # a halo beyond the core


def test_cutouts_hold_field_stars_and_central_stars_are_class_a():
    crops, stars_seen = [], False
    for index in range(80):
        rgb, record = render_cutout(11, index, 128, scene="sdss")
        if record["central_star"]:
            assert record["group"] == "artifact"
            assert rgb[56:72, 56:72].max() >= 250, "a central A star saturates"
            stars_seen = True
        crops.append(rgb)
    measured, _ = realism.measure_set(crops)
    assert stars_seen
    counts = np.array([c["n_sources"] for c in measured])
    assert np.median(counts) >= 3 and counts.max() >= 15


def test_synthetic_statistics_near_the_real_frame(real_dir):
    """A regression guard on the statistics that do not depend on latitude or sky level (bench/realism.py has
    the full table)."""
    real = realism.summary(
        *realism.measure_set(realism.frame_crops(read_rgb(real_dir / "fields" / "mask_galaxy_bench.jpg")))
    )
    import io

    from PIL import Image

    images = []
    for index in range(60):
        rgb, record = render_cutout(0, index, 256, scene="sdss")
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=record["conditions"].jpeg_quality)
        images.append(np.asarray(Image.open(buffer).convert("RGB")))
    crops, sources = realism.measure_set(images)
    synthetic = realism.summary(crops, sources)
    for key in ("noise_corr1", "star_fwhm", "flux_p90", "point_share"):  # (the median flux is off: BENCHMARKS.md)
        assert abs(synthetic[key] / real[key] - 1) <= 0.25, (key, synthetic[key], real[key])
    counts = [c["n_sources"] for c in crops]
    assert np.percentile(counts, 10) <= real["n_sources"] <= np.percentile(counts, 90)


# --- bench/real_crops.py scoring --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_crops():
    spec = importlib.util.spec_from_file_location("real_crops", REPO / "bench" / "real_crops.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_real_crops_window_stays_inside_and_tracks_the_object(real_crops):
    frame = np.zeros((300, 400, 3), np.uint8)
    crop, xy = real_crops.window(frame, 10, 290)
    assert crop.shape == (256, 256, 3) and xy == (10, 290 - 44)
    crop, xy = real_crops.window(frame, 200, 150)
    assert xy == (128, 150 - 22)


def test_real_crops_score(real_crops):
    central = np.zeros((64, 64), bool)
    central[20:30, 20:30] = True
    semantic = np.zeros((64, 64), np.uint8)
    semantic[20:30, 20:25] = 2  # half the central object elliptical
    semantic[50:60, 50:60] = 4  # a neighbour called spiral barred
    result = real_crops.score(semantic, central)
    assert result["found"] and not result["artifact"]
    assert result["outside"] == pytest.approx(1.0) and result["galaxy_share"] == pytest.approx(150 / 4096)
    semantic[:] = 1  # everything A: artifact, no galaxy, nothing flooded
    result = real_crops.score(semantic, central)
    assert result["artifact"] and not result["found"] and result["galaxy_share"] == 0


def test_real_frame_measurement(real_dir):
    """The real SDSS frame as bench/realism.py sees it: crowded, JPEG-correlated noise, saturated stars."""
    crops = realism.frame_crops(read_rgb(real_dir / "fields" / "mask_galaxy_bench.jpg"))
    assert len(crops) == 16 and all(c.shape == (256, 256, 3) for c in crops)
    real = realism.summary(*realism.measure_set(crops))
    assert real["n_sources"] > 30 and 0.5 < real["point_share"] < 0.95
    assert real["noise_corr1"] > 0.6 and real["saturated_per_crop"] > 0.5
    assert 2.0 < real["star_fwhm"] < 4.5


def test_outline_level_follows_the_noise_left_by_the_resampling():
    """The cutout service's resampling lowers the per-pixel noise; the outline's level follows it, so that it lies
    at the same multiple of the noise one sees in every cutout."""
    white = np.random.default_rng(0).normal(size=(512, 512))
    for sigma in (0.7, 1.0, 1.3):
        seen = gaussian_filter(white, sigma, truncate=3.0).std()
        assert abs(conditions.noise_after_smoothing(sigma) / seen - 1) < 0.03
    assert conditions.noise_after_smoothing(0.7) > 1.4 * conditions.noise_after_smoothing(1.0)


def test_sdss_scene_class_mix_keeps_the_galaxy_proportions():
    rng = np.random.default_rng(2)
    counts = Counter(labels.draw_group(rng, scene="sdss") for _ in range(20000))
    assert abs(counts["artifact"] / 20000 - labels.ARTIFACT_SHARE) < 0.006
    galaxies = [name for name in labels.REAL_MIX if name != "artifact"]
    real_total = sum(labels.REAL_MIX[name] for name in galaxies)
    drawn_total = sum(counts[name] for name in galaxies)
    for name in galaxies:
        assert abs(counts[name] / drawn_total - labels.REAL_MIX[name] / real_total) < 0.012, name
    assert labels.class_mix()["artifact"] == pytest.approx(labels.REAL_MIX["artifact"], rel=0.01)  # clean: real


def test_sdss_scene_outline_stands_out_of_the_sky():
    from src.data.via import polygon_mask

    for index in range(12):
        rgb, record = render_cutout(4, index, 128, scene="sdss")
        grey = rgb.astype(float).sum(axis=2)
        mask = polygon_mask(record["all_points_x"], record["all_points_y"], grey.shape)
        assert mask.sum() == record["area"] > 0
        outside = grey[~mask]
        sky = np.median(outside)  # median and MAD: field stars are not the sky
        noise = 1.4826 * np.median(np.abs(outside - sky))
        assert grey[mask].mean() - sky > 4 * max(noise, 1.0), (record["gz2_class"], grey[mask].mean(), sky, noise)


def test_sdss_scene_files_fits_and_workers(tmp_path):
    """The sdss scene's set: the same bytes whatever the workers, and each JPEG is its FITS bands through the
    cutout's own composite (resampling, sky level, colour balance, stretch, JPEG quality)."""
    from astropy.io import fits

    from src.data.images import write_jpeg

    one = generate(tmp_path / "one", n=8, seed=3, size=64, workers=1, progress=False, fits=True, scene="sdss")
    two = generate(tmp_path / "two", n=8, seed=3, size=64, workers=2, progress=False, fits=True, scene="sdss")
    assert one["scene"] == "sdss" and one["by_class"] == two["by_class"]
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(files) > 8 * 4
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    clean = render_cutout(3, 0, 64, scene="clean")[0]
    assert not np.array_equal(clean, render_cutout(3, 0, 64, scene="sdss")[0])
    for index in range(3):
        bands, record = render_bands(3, index, 64, scene="sdss")
        stem = tmp_path / "one" / "original" / "fits" / f"Dr7_{record['objid']}"
        read = np.stack([fits.getdata(f"{stem}_{band}.fits") for band in "gri"])
        assert np.array_equal(read, bands.astype(np.float32))
        cond = record["conditions"]
        write_jpeg(tmp_path / "again.jpg", composite(read, cond), cond.jpeg_quality)
        jpeg = tmp_path / "one" / "original" / "zoo2Main" / f"Dr7_{record['objid']}.jpg"
        assert (tmp_path / "again.jpg").read_bytes() == jpeg.read_bytes()
    with pytest.raises(ValueError, match="scene 'hst'"):
        generate(tmp_path / "bad", n=2, size=64, progress=False, scene="hst")


def test_an_outline_larger_than_the_lit_model_takes_the_whole_object():
    """The drawn area can exceed what a compact, truncated model lights on its stamp (sdss scene, seed 8, cutout
    164 raised 'model too small' before): the outline then encloses (nearly) every lit pixel."""
    from src.synthetic.generator import isophote_level

    detection = np.zeros((21, 21))
    detection[8:13, 8:13] = np.linspace(1.0, 2.0, 25).reshape(5, 5)
    level = isophote_level(detection, 100.0, (10, 10))  # 25 lit pixels: (nearly) all of them
    assert level > 0 and (detection >= level).sum() >= 20
    assert (detection >= isophote_level(detection, 9.0, (10, 10))).sum() == 9
    rgb, record = render_cutout(8, 164, 256, scene="sdss")
    assert record["gz2_class"].startswith("SB") and record["area"] > 500
