"""From models to an SDSS-like cutout: PSF, sky noise, isophote polygon (the Lupton composite: ``src.data.images``).

Flux units: the sky noise of the r band is ~1 (``SKY_SIGMA`` = ``src.data.images.TRAINING_SKY_SIGMA`` gives the
g, r, i values; the i sky is the brightest, as in SDSS).  The annotation threshold is in units of the per-band sky
noise of a detection image
(the mean over bands of flux / sigma), i.e. "what rises above the noise in the colour image".
"""

from __future__ import annotations

from functools import lru_cache

import galsim
import numpy as np
from scipy.signal import fftconvolve
from skimage.measure import find_contours, points_in_poly

from src.data.images import TRAINING_SKY_SIGMA

#: Sky noise per band (g, r, i): the one definition is ``src.data.images.TRAINING_SKY_SIGMA`` (FITS scaling uses it).
SKY_SIGMA = TRAINING_SKY_SIGMA
#: The ``clean`` scene's seeing (and the fields'): SDSS median seeing 1.4 arcsec = 3.5 px of 0.396 arcsec at
#: 256x256; Moffat beta = 3.  The ``sdss`` scene draws its own (``conditions.SEEING_FWHM``).
SEEING_FWHM = (2.8, 4.5)
MOFFAT_BETA = 3.0


@lru_cache(maxsize=256)
def psf_kernel(fwhm: float) -> np.ndarray:
    """PSF (Moffat convolved with the pixel) on an odd square grid, normalised to unit sum."""
    half = max(2, int(np.ceil(2.5 * fwhm)))
    psf = galsim.Moffat(beta=MOFFAT_BETA, fwhm=fwhm, trunc=6 * fwhm)
    kernel = psf.drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=1.0).array.astype(np.float64)
    kernel /= kernel.sum()
    kernel.setflags(write=False)
    return kernel


def saturation_flux(stretch: float, q: float) -> float:
    """Band flux per pixel (generator units) at which the Lupton composite of a grey source reaches 255.

    astropy's ``AsinhMapping`` maps the mean band intensity I to asinh(q I / stretch) x 25.5 / asinh(0.1 q)."""
    return float(stretch / q * np.sinh(10 * np.arcsinh(0.1 * q)))


def convolve(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve (..., H, W) images with a 2-D kernel, same size (the one PSF convolution)."""
    k = kernel.reshape((1,) * (images.ndim - 2) + kernel.shape)
    return fftconvolve(images, k, mode="same", axes=(-2, -1))


def add_sky_noise(bands: np.ndarray, sky_sigma: np.ndarray, seed: int) -> None:
    """Add Gaussian sky noise (sky-subtracted, sky-limited images) to (3, H, W) ``bands`` in place.

    The same noise as ``galsim.GaussianNoise`` per band, drawn with one ``galsim.GaussianDeviate.generate``
    call for the three bands (about half the cost of three ``Image.addNoise`` calls)."""
    unit = np.empty(bands.size)
    galsim.GaussianDeviate(galsim.BaseDeviate(int(seed)), mean=0.0, sigma=1.0).generate(unit)
    bands += np.asarray(sky_sigma, float)[:, None, None] * unit.reshape(bands.shape)


def isophote_polygon(
    detection: np.ndarray, level: float, centre_rc, min_vertices: int = 30, max_vertices: int = 80, spacing: float = 1.8
) -> np.ndarray | None:
    """Outline of the region where ``detection >= level`` around ``centre_rc`` (row, col).

    Returns a (N, 2) array of (row, col) vertices, resampled evenly along the contour to
    ``round(perimeter / spacing)`` vertices within [``min_vertices``, ``max_vertices``]; None when no closed
    isophote surrounds the centre.
    """
    padded = np.pad(detection, 1, constant_values=-np.inf if level < 0 else 0.0)
    best, best_area = None, 0.0
    for contour in find_contours(padded, level):
        contour = contour - 1.0
        if len(contour) < 4 or not np.allclose(contour[0], contour[-1]):
            continue
        rows, cols = contour[:, 0], contour[:, 1]
        area = 0.5 * abs(np.dot(rows, np.roll(cols, 1)) - np.dot(cols, np.roll(rows, 1)))
        inside = points_in_poly(np.asarray([centre_rc], float), contour)[0]
        if inside and area > best_area:
            best, best_area = contour, area
    if best is None:
        return None
    steps = np.hypot(*np.diff(best, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(steps)])
    count = int(np.clip(round(arc[-1] / spacing), min_vertices, max_vertices))
    at = np.linspace(0.0, arc[-1], count, endpoint=False)
    return np.stack([np.interp(at, arc, best[:, 0]), np.interp(at, arc, best[:, 1])], axis=1)


def integer_polygon(vertices_rc: np.ndarray, size: int) -> tuple[list[int], list[int]]:
    """VIA-style integer ``all_points_x``, ``all_points_y`` within [0, size - 1], no repeated vertex."""
    pts = np.clip(np.rint(vertices_rc[:, ::-1]), 0, size - 1).astype(int)
    keep = np.any(pts != np.roll(pts, 1, axis=0), axis=1)
    pts = pts[keep] if keep.any() else pts[:1]
    return pts[:, 0].tolist(), pts[:, 1].tolist()
