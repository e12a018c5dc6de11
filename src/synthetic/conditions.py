"""Observing and processing conditions of one synthetic cutout: fixed in the ``clean`` scene (:func:`clean`), drawn
per cutout in the ``sdss`` scene (:func:`draw`, domain randomisation).

Real GZ2 cutouts come from many SDSS runs and go through the SDSS cutout service: the seeing, the sky, the star
density (galactic latitude), the resampling, the stretch and the JPEG quality all vary.  Each cutout draws its own
conditions over at least the range measured on a real SDSS frame (``bench/realism.py``):

* seeing: PSF FWHM ``SEEING_FWHM`` px at 256 px (SDSS DR7: median 1.4 arcsec in r, Abazajian et al. 2009, i.e.
  3.5 px of 0.396 arcsec);
* sky noise: ``SKY_SIGMA`` times a factor within ``SKY_FACTOR`` per cutout; the resampling of the cutout service
  correlates it over ``NOISE_SMOOTHING`` px (Gaussian sigma), and a sky level of up to ``PEDESTAL_MAX`` sky sigmas is
  left after the
  sky subtraction;
* colour balance: per-band gains ``BAND_WEIGHTS`` within ``GAIN_SPREAD``;
* stretch: ``LUPTON_STRETCH`` and ``LUPTON_Q`` of ``src.data.images`` times factors within 1 / ``STRETCH_SPREAD`` ...
  ``STRETCH_SPREAD`` and 1 / ``Q_SPREAD`` ... ``Q_SPREAD`` (log-uniform: the nominal values are the centre of the
  ranges, and what FITS inputs to ``predict.py`` are stretched with);
* JPEG quality ``JPEG_QUALITY`` (the real frame: 75);
* star and faint-galaxy densities (per 256 x 256 px), log-uniform over ``STAR_DENSITY`` and ``GALAXY_DENSITY``:
  from high galactic latitude (about 2,100 stars per square degree brighter than g = 21 at 49 < |b| < 64 deg,
  Chen et al. 2001, i.e. about 1.7 per cutout of 2.9 arcmin^2) to the crowded real SDSS frame of the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.data.images import JPEG_QUALITY as NOMINAL_JPEG_QUALITY
from src.data.images import LUPTON_Q, LUPTON_STRETCH, TRAINING_SKY_SIGMA

#: PSF FWHM (px at 256 px), uniform.
SEEING_FWHM = (1.4, 3.8)
#: Sky noise per band (g, r, i); the i sky is the brightest, as in SDSS (one definition: ``src.data.images``).
SKY_SIGMA = TRAINING_SKY_SIGMA
#: Sky noise of a cutout: ``SKY_SIGMA`` times a factor within ``SKY_FACTOR`` (log-uniform): exposure depth and sky
#: brightness vary; FITS inputs scaled to ``SKY_SIGMA`` sit at the quiet end of the range.
SKY_FACTOR = (0.85, 1.5)
#: Gaussian sigma (px) of the resampling that correlates the sky noise, uniform.
NOISE_SMOOTHING = (0.7, 1.3)
#: Sky level left in the composite, in sky sigmas: ``PEDESTAL_MAX`` x u^2 (u uniform): most cutouts as dark as the
#: real GZ2 cutouts (mean RGB 8.6, 6.0, 4.9, sky included), the brightest as the real SDSS frame of the benchmark.
PEDESTAL_MAX = 0.5
#: Colour balance: a fixed g, r, i weighting (the real cutouts' mean G / R is 0.70) times a random factor within
#: exp(+-``GAIN_SPREAD``) per band.
BAND_WEIGHTS = np.array([1.0, 0.92, 1.0])
GAIN_SPREAD = 0.08
STRETCH_SPREAD = 1.4
#: Q changes the saturation level steeply (x 2.9 for +15 %): a narrower range.
Q_SPREAD = 1.15
JPEG_QUALITY = (65, 95)
#: Expected field stars and faint galaxies per 256 x 256 px, log-uniform.
STAR_DENSITY = (2.0, 100.0)
GALAXY_DENSITY = (6.0, 24.0)


@dataclass(frozen=True)
class Conditions:
    """What one cutout was observed and processed with (lengths in px of the output image)."""

    seeing: float  #: PSF FWHM, px
    sky: np.ndarray  #: (3,) g, r, i sky noise sigma, generator flux units
    noise_smoothing: float  #: Gaussian sigma of the resampling, px
    pedestal: float  #: sky level in the composite, sky sigmas
    gains: np.ndarray  #: (3,) g, r, i colour-balance factors
    stretch: float  #: Lupton stretch
    q: float  #: Lupton Q
    jpeg_quality: int
    star_density: float  #: expected field stars per cutout (256 x 256 px at scale 1)
    galaxy_density: float  #: expected faint field galaxies per cutout


def noise_after_smoothing(sigma_px: float) -> float:
    """Factor by which the cutout service's resampling (a Gaussian of ``sigma_px`` px, as
    :func:`generator.composite` applies it) lowers the per-pixel noise of white noise."""
    radius = int(3.0 * sigma_px + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma_px) ** 2)
    kernel /= kernel.sum()
    return float(np.sum(kernel**2))  # 2-D: sqrt((sum k^2)^2)


#: Conditions at which the annotated outline lies at 0.9-1.3 sky sigmas (:func:`outline_factor`).
OUTLINE_SMOOTHING = 1.0
OUTLINE_PEDESTAL = 0.125
#: How much lower (log) the outline lies, in sky sigmas, per sky sigma less of sky level left in the composite.
OUTLINE_PEDESTAL_SLOPE = 1.0


def outline_factor(cond: Conditions, scale: float = 1.0) -> float:
    """Factor on the annotated outline's level (sky sigmas before the resampling) that keeps it where the galaxy
    fades into the background *as the cutout shows it*, the edge a person traces: the resampling lowers the noise
    one sees (:func:`noise_after_smoothing`), and where little sky level is left the composite clips the sky
    noise to black, so fainter outskirts stand out.  The pedestal slope was calibrated on generated cutouts
    (BENCHMARKS.md, "outline consistency"): with it, the best threshold in units of the noise one sees no
    longer depends on the pedestal."""
    smoothing = noise_after_smoothing(cond.noise_smoothing) / noise_after_smoothing(OUTLINE_SMOOTHING * scale)
    return smoothing * float(np.exp(OUTLINE_PEDESTAL_SLOPE * (cond.pedestal - OUTLINE_PEDESTAL)))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def clean(seeing: float, sky: np.ndarray) -> Conditions:
    """The ``clean`` scene's conditions: ``seeing`` and ``sky`` as drawn by the generator, no resampling, no sky
    level, the nominal colour balance and stretch of ``src.data.images`` and its JPEG quality (the composite is then
    exactly ``lupton_rgb`` of the bands)."""
    return Conditions(
        seeing=seeing,
        sky=np.asarray(sky),
        noise_smoothing=0.0,
        pedestal=0.0,
        gains=np.ones(3),
        stretch=LUPTON_STRETCH,
        q=LUPTON_Q,
        jpeg_quality=NOMINAL_JPEG_QUALITY,
        star_density=0.0,
        galaxy_density=0.0,
    )


def draw(rng: np.random.Generator, scale: float = 1.0) -> Conditions:
    """Conditions of one cutout; ``scale`` = image size / 256: lengths scale with it, while the densities stay per
    cutout (a larger cutout samples the same patch of sky more finely)."""
    # quantised seeing: the PSF kernel is cached per FWHM
    seeing = round(rng.uniform(*SEEING_FWHM) * scale * 20) / 20
    return Conditions(
        seeing=max(seeing, 0.5),
        sky=SKY_SIGMA * _log_uniform(rng, *SKY_FACTOR),
        noise_smoothing=float(rng.uniform(*NOISE_SMOOTHING)) * scale,
        pedestal=PEDESTAL_MAX * float(rng.uniform()) ** 2,
        gains=BAND_WEIGHTS * np.exp(rng.uniform(-GAIN_SPREAD, GAIN_SPREAD, 3)),
        stretch=LUPTON_STRETCH * _log_uniform(rng, 1 / STRETCH_SPREAD, STRETCH_SPREAD),
        q=LUPTON_Q * _log_uniform(rng, 1 / Q_SPREAD, Q_SPREAD),
        jpeg_quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)),
        star_density=_log_uniform(rng, *STAR_DENSITY),
        galaxy_density=_log_uniform(rng, *GALAXY_DENSITY),
    )
