"""Star/galaxy separation (src/field/stars.py) on constructed frames: Moffat stars, Sersic galaxies, a saturated
star with spikes, a crowded frame, a frame with no stars; and the real frames when ../shared is there."""

from __future__ import annotations

import galsim
import numpy as np
import pytest

from src.field.detect import detect, detection_image
from src.field.stars import (
    RGB_LINEAR_PEAK,
    SPIKE_MIN,
    StarGalaxy,
    apply_star_rule,
    rgb_saturation,
    separate,
    separate_image,
    sources_of_objects,
    spike_contrast,
)

PSF_FWHM = 3.0
NOISE = 2.0


def _draw(size, stars=(), galaxies=(), seed=0, saturation=None):
    """A linear frame (size x size): Moffat stars ``(x, y, flux)`` and Sersic galaxies ``(x, y, flux, hlr, q,
    angle_deg)`` convolved with the same PSF, Gaussian noise of ``NOISE``; clipped at ``saturation``."""
    image = galsim.ImageF(size, size, scale=1.0)
    psf = galsim.Moffat(beta=3.0, fwhm=PSF_FWHM)
    for x, y, flux in stars:
        psf.withFlux(flux).drawImage(image, offset=(x - size / 2 + 0.5, y - size / 2 + 0.5), add_to_image=True)
    for x, y, flux, hlr, q, angle in galaxies:
        galaxy = galsim.Sersic(n=1.0, half_light_radius=hlr, flux=flux).shear(q=q, beta=angle * galsim.degrees)
        galsim.Convolve(galaxy, psf).drawImage(
            image, offset=(x - size / 2 + 0.5, y - size / 2 + 0.5), add_to_image=True
        )
    pixels = image.array + np.random.default_rng(seed).normal(0.0, NOISE, (size, size)).astype(np.float32)
    if saturation is not None:
        pixels = np.minimum(pixels, saturation)
    return pixels


def _separate(pixels, saturation=None):
    found = detect(
        lambda r, c: (pixels[r, c], None),
        pixels.shape,
        3.0,
        saturated=None if saturation is None else (lambda r, c: pixels[r, c] >= saturation),
    )
    return found.table, separate(found.table)


def _at(table, xy):
    return int(np.argmin(np.hypot(table["x"] - xy[0], table["y"] - xy[1])))


def _stars_and_galaxies(rng, size, n_stars, n_galaxies, margin=12):
    xy = rng.uniform(margin, size - margin, (n_stars + n_galaxies, 2))
    stars = [(x, y, f) for (x, y), f in zip(xy[:n_stars], 10 ** rng.uniform(3.0, 4.5, n_stars))]
    galaxies = [
        (x, y, f, h, q, a)
        for (x, y), f, h, q, a in zip(
            xy[n_stars:],
            10 ** rng.uniform(3.5, 4.5, n_galaxies),
            rng.uniform(3.0, 6.0, n_galaxies),
            rng.uniform(0.4, 1.0, n_galaxies),
            rng.uniform(0, 180, n_galaxies),
        )
    ]
    return stars, galaxies


def _isolated(points, others, distance=10.0):
    others = np.asarray([(o[0], o[1]) for o in others])
    return [p for p in points if np.sort(np.hypot(others[:, 0] - p[0], others[:, 1] - p[1]))[1] > distance]


def test_moffat_stars_and_sersic_galaxies_are_told_apart_and_the_psf_measured():
    rng = np.random.default_rng(1)
    stars, galaxies = _stars_and_galaxies(rng, 512, 80, 12)
    table, decision = _separate(_draw(512, stars, galaxies))
    assert isinstance(decision, StarGalaxy)
    assert decision.psf_fwhm == pytest.approx(PSF_FWHM, rel=0.2)
    assert decision.star_dominated
    alone = _isolated(stars + galaxies, stars + galaxies)
    star_rows = [_at(table, s) for s in stars if s in alone]
    galaxy_rows = [_at(table, g) for g in galaxies if g in alone]
    assert np.mean(decision.point_source[star_rows]) >= 0.9
    assert not decision.point_source[galaxy_rows].any()
    assert (decision.stellarity[galaxy_rows] < 0.2).all()


def test_a_saturated_star_with_spikes_is_a_point_source_and_an_edge_on_galaxy_is_not():
    rng = np.random.default_rng(2)
    stars, _ = _stars_and_galaxies(rng, 384, 40, 0)
    pixels = _draw(384, stars, [(100.0, 100.0, 4e5, 8.0, 0.25, 30.0)])
    yy, xx = np.mgrid[:384, :384]
    cx, cy = 260.0, 250.0
    pixels += _draw(384, [(cx, cy, 2e6)], seed=3) - _draw(384, [], seed=3)
    for angle in (0.0, 90.0, 180.0, 270.0):  # four spikes, tilted 10 degrees
        ux, uy = np.cos(np.radians(angle + 10)), np.sin(np.radians(angle + 10))
        along = (xx - cx) * ux + (yy - cy) * uy
        across = -(xx - cx) * uy + (yy - cy) * ux
        pixels += (along > 0) * 400.0 * np.exp(-along / 40.0) * np.exp(-0.5 * (across / 0.8) ** 2)
    table, decision = _separate(pixels, saturation=5000.0)
    star, galaxy = _at(table, (cx, cy)), _at(table, (100, 100))
    assert table["nsat"][star] > 0 and decision.saturated[star]
    assert table["spikes"][star] >= SPIKE_MIN and decision.spiky[star]
    assert decision.point_source[star]
    assert table["spikes"][galaxy] < SPIKE_MIN
    assert not decision.point_source[galaxy]


def test_spike_contrast_of_a_smooth_ellipse_is_small():
    yy, xx = np.mgrid[:128, :128]
    ellipse = 500.0 * np.exp(-np.hypot((xx - 64) / 12.0, (yy - 64) / 4.0)).astype(np.float32)
    assert spike_contrast(ellipse, 64.0, 64.0, 6.0, 30.0, 1.0) < SPIKE_MIN


def test_a_crowded_frame_still_gives_the_psf():
    rng = np.random.default_rng(4)
    stars, galaxies = _stars_and_galaxies(rng, 256, 300, 5, margin=4)
    table, decision = _separate(_draw(256, stars, galaxies))
    assert decision.psf_fwhm == pytest.approx(PSF_FWHM, rel=0.25)
    alone = [_at(table, s) for s in _isolated(stars, stars + galaxies, 8.0)]
    assert len(alone) >= 20
    assert np.mean(decision.point_source[alone]) >= 0.8


def test_a_frame_with_no_stars_calls_no_large_galaxy_a_star():
    rng = np.random.default_rng(5)
    xy = rng.uniform(16, 496, (60, 2))
    galaxies = [
        (x, y, f, h, q, a)
        for (x, y), f, h, q, a in zip(
            xy,
            10 ** rng.uniform(3.2, 4.8, 60),
            10 ** rng.uniform(0.4, 1.0, 60),
            rng.uniform(0.3, 1.0, 60),
            rng.uniform(0, 180, 60),
        )
    ]
    table, decision = _separate(_draw(512, [], galaxies))
    large = [_at(table, g) for g in _isolated(galaxies, galaxies, 20.0) if g[3] >= 4.0]
    assert len(large) >= 10
    assert not decision.point_source[large].any()
    assert not decision.star_dominated


def test_no_sources_gives_an_empty_decision():
    pixels = np.random.default_rng(6).normal(0, 1, (64, 64)).astype(np.float32)
    table, decision = _separate(pixels)
    assert len(table) == 0 and decision.point_source.size == 0
    assert not np.isfinite(decision.psf_fwhm)
    assert decision.summary()["psf_fwhm_px"] is None


def test_the_star_rule_sets_class_a_and_keeps_the_model_class():
    table = np.zeros(2, dtype=[("x", "f8"), ("y", "f8"), ("flux", "f8")])
    table["x"], table["y"], table["flux"] = (5, 20), (5, 20), (100, 50)
    decision = StarGalaxy(
        3.0,
        10,
        0.03,
        True,
        np.zeros((0, 2)),
        np.array([0.9, 0.1]),
        np.array([True, False]),
        np.array([True, False]),
        np.array([False, False]),
    )
    objects = np.zeros((32, 32), np.int32)
    objects[2:9, 2:9], objects[15:25, 15:25], objects[28:, 28:] = 1, 2, 3
    sources = sources_of_objects(objects, table)
    assert sources == {1: 0, 2: 1}
    rows = [{"class": "elliptical"}, {"class": "spiral"}, {"class": "spiral"}]
    counts = apply_star_rule(rows, sources, decision, "artifact")
    assert counts == {
        "point_sources": 1,
        "reclassified_as_artifact": 1,
        "point_source_model_galaxy": 1,
        "model_artifact_extended": 0,
    }
    assert rows[0] == {
        "class": "artifact",
        "model_class": "elliptical",
        "stellarity": 0.9,
        "point_source": True,
        "saturated": True,
    }
    assert rows[1]["class"] == "spiral" and rows[1]["point_source"] is False
    assert rows[2]["stellarity"] is None and rows[2]["point_source"] is False  # no source on it
    kept = [{"class": "elliptical"}, {"class": "artifact"}]
    counts = apply_star_rule(kept, {1: 0, 2: 1}, decision, "model")
    assert counts["reclassified_as_artifact"] == 0 and kept[0]["class"] == "elliptical"
    assert counts["model_artifact_extended"] == 1 and kept[1]["class"] == "artifact"  # the model's A stands
    with pytest.raises(ValueError, match="star rule"):
        apply_star_rule(kept, {}, decision, "drop")


def test_separate_image_on_an_rgb_cutout():
    rng = np.random.default_rng(7)
    stars, galaxies = _stars_and_galaxies(rng, 256, 60, 4)
    pixels = _draw(256, stars, galaxies)
    grey = np.clip(np.arcsinh(pixels / 20.0) * 40.0, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert rgb_saturation(rgb).sum() == (grey >= 250).sum()
    table, decision = separate_image(rgb)
    assert np.allclose(detection_image(rgb), grey)
    assert len(table) > 40 and np.isfinite(decision.psf_fwhm)


# ------------------------------------------------------------------------------------------------ real frames
def _real_decision(real_dir, name):
    from src.data.images import read_rgb

    rgb = read_rgb(real_dir / "fields" / name)
    found = detect(
        lambda r, c: (detection_image(rgb[r, c]), None),
        rgb.shape[:2],
        3.0,
        saturated=lambda r, c: rgb_saturation(rgb[r, c]),
    )
    return found.table, separate(found.table, linear_peak=RGB_LINEAR_PEAK)


def test_real_sdss_frame_bright_stars_are_point_sources_and_its_galaxies_are_not(real_dir):
    """The sources of bench/real_frames.py, picked by eye: the 20 brightest stars, the 6 extended galaxies."""
    from bench.real_frames import SDSS, SDSS_GALAXIES, SDSS_STARS

    table, decision = _real_decision(real_dir, SDSS)
    assert 3.0 <= decision.psf_fwhm <= 5.0 and decision.star_dominated
    assert all(decision.point_source[_at(table, xy)] for xy in SDSS_STARS)
    assert not any(decision.point_source[_at(table, xy)] for xy in SDSS_GALAXIES)
    candidates = table["npix"] >= 90
    assert (candidates & ~decision.point_source).sum() <= 36  # "a few dozen at most" may be galaxies


def test_real_hst_frame_bright_galaxies_are_not_point_sources(real_dir):
    from bench.real_frames import HST, HST_BRIGHT, HST_STARS, LARGE_PX

    table, decision = _real_decision(real_dir, HST)
    stars = {_at(table, xy) for xy in HST_STARS}
    bright = [k for k in np.argsort(-table["flux"])[:HST_BRIGHT] if k not in stars]
    assert not decision.point_source[bright].any()
    large = [k for k in np.flatnonzero(table["npix"] >= LARGE_PX) if k not in stars]
    assert np.mean(~decision.point_source[large]) >= 0.9
    assert sum(decision.spiky[k] for k in stars) >= 2  # two of the three stars show their spikes


def test_star_galaxy_scorer_counts_both_views_by_snr():
    from types import SimpleNamespace

    from pycocotools import mask as mask_utils

    from src.classes import LABEL2ID
    from src.field.detect import TABLE_DTYPE
    from src.field.score import StarGalaxyScorer

    galaxy = np.zeros((64, 64), np.uint8, order="F")
    galaxy[10:20, 10:20] = 1
    rle = mask_utils.encode(galaxy)
    rle["counts"] = rle["counts"].decode("ascii")
    table = np.zeros(4, dtype=TABLE_DTYPE)
    table["x"], table["y"] = (15, 40, 50, 5), (15, 40, 10, 60)
    table["flux"], table["npix"], table["rms"] = (400, 120, 30, 50), (100, 16, 9, 9), 1.0
    detections = SimpleNamespace(table=table, snr=lambda: np.array([40.0, 30.0, 10.0, 20.0]))
    decision = SimpleNamespace(point_source=np.array([False, True, False, True]))
    unannotated = [
        {"x": 40, "y": 41, "star": True},
        {"x": 50, "y": 10, "star": True},
        {"x": 5, "y": 58, "star": False},
        {"x": 30, "y": 30, "star": True},
    ]  # the last: undetected
    scorer = StarGalaxyScorer()
    scorer.add(
        [{"rle": rle}],
        unannotated,
        detections,
        decision,
        {0: LABEL2ID["elliptical"], 1: LABEL2ID["artifact"], 3: LABEL2ID["spiral"]},
    )
    scores = scorer.scores()
    classical = scores["classical"]["above_10_sigma"]
    assert scores["classical"]["n"] == 4
    assert classical["n_stars"] == 2 and classical["star_completeness"] == 0.5 and classical["star_purity"] == 0.5
    assert classical["n_galaxies"] == 2 and classical["galaxy_completeness"] == 0.5
    catalog = scores["catalog"]["above_10_sigma"]  # source 2 owns no object; 3 is a galaxy called spiral
    assert scores["catalog"]["n"] == 3 and catalog["star_completeness"] == 1.0 and catalog["galaxy_completeness"] == 1.0


def test_detection_image_and_saturation_are_numpy_reductions_bit_for_bit():
    rng = np.random.default_rng(3)
    for shape in [(64, 48, 3), (5, 7, 3), (1, 1, 3)]:
        rgb = rng.integers(0, 256, shape, dtype=np.uint8)
        grey = detection_image(rgb)
        want = rgb.mean(axis=2, dtype=np.float32)
        assert grey.dtype == want.dtype and np.array_equal(grey, want)
        assert np.array_equal(rgb_saturation(rgb), rgb.max(axis=-1) >= 250)
