"""Realism measurement: the sep measurements of ``src.synthetic.realism`` (bench/realism.py) and the scoring of
bench/real_crops.py."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from src.images import read_rgb
from src.synthetic import realism

REPO = Path(__file__).resolve().parents[1]


def _gaussian_star(image, x, y, sigma, peak):
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    image += peak * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma ** 2)


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
    assert 2.0 < crops[0]["star_fwhm"] < 4.5     # FWHM 3 px (2 r50 of a Gaussian)


# --- bench/real_crops.py scoring --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_crops():
    spec = importlib.util.spec_from_file_location("real_crops", REPO / "bench" / "real_crops.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module       # dataclasses look their module up
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
    semantic[20:30, 20:25] = 2                  # half the central object elliptical
    semantic[50:60, 50:60] = 4                  # a neighbour called spiral barred
    result = real_crops.score(semantic, central)
    assert result["found"] and not result["artifact"]
    assert result["outside"] == pytest.approx(1.0) and result["galaxy_share"] == pytest.approx(150 / 4096)
    semantic[:] = 1                             # everything A: artifact, no galaxy, nothing flooded
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
