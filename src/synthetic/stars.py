"""Field stars of a cutout: counts, fluxes and colours; bright ones with a halo, diffraction spikes, a violet
saturated core and bleed trails, as in the SDSS colour composites.

Everything is painted on the (3, H, W) g, r, i canvas *before* the PSF convolution (a star is a delta, a spike a
line), so a star costs a few array writes and the one PSF convolution of the cutout draws them all.  Flux units:
the generator's (r-band sky noise ~1).

* Counts: Poisson with the cutout's ``star_density``; r-band fluxes follow N(> F) ~ F^-``COUNT_SLOPE`` above
  ``FLUX_MIN``, capped at ``FLUX_MAX`` (the slope is calibrated on the real frame: saturated stars per point-like
  source, ``bench/realism.py``).
* Colours: a blue turn-off population (g - r ~ 0.35), K dwarfs and M dwarfs on a simplified SDSS stellar locus;
  M dwarfs thin out among bright stars; the mix is calibrated on the real frame's star colours.
* Stars whose core saturates the composite (flux above ``sat_flux``, which depends on the cutout's seeing and
  stretch) get what the real composites show around such stars: a wide halo (the PSF wings), four
  diffraction spikes along the CCD axes (the secondary mirror's support vanes) and a violet core (the SDSS
  composites' saturated pixels); from ``BLEED_FACTOR`` x ``sat_flux``, bleed trails along the columns.
"""

from __future__ import annotations

from functools import lru_cache

import galsim
import numpy as np

FLUX_MIN = 6.0
FLUX_MAX = 3.0e6
COUNT_SLOPE = 0.8
BLEED_FACTOR = 100.0
#: Population weights: turn-off (blue), K dwarfs, M dwarfs, of the faintest stars and of bright ones.
POPULATIONS = (0.30, 0.30, 0.40)
BRIGHT_POPULATIONS = (0.75, 0.20, 0.05)
HALO_FRACTION = (0.06, 0.15)
HALO_COLOUR = np.array([0.9, 1.0, 1.1])  # g, r, i: the i-band wings are a little wider
SPIKE_FRACTION = (0.001, 0.004)  # of the star's flux, per spike
SPIKE_TILT_DEG = 12.0
CORE_TINT = np.array([1.0, 0.5, 0.7])  # g, r, i: the violet of saturated SDSS cores (B > R > G)
#: A star saturates once its brightest band reaches this fraction of ``sat_flux`` (grey stars: a little later).
SATURATING = 0.7
#: Flux range of the bright star beside the target (``near``), in units of ``sat_flux``.
NEAR_FLUX = (0.5, 30.0)


def draw_colours(rng: np.random.Generator, n: int, fluxes: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) g, r, i flux ratios (r = 1) of field stars.  The population weights go from ``POPULATIONS`` for
    the faintest stars to ``BRIGHT_POPULATIONS`` three decades of flux above ``FLUX_MIN`` (with ``fluxes``):
    M dwarfs are intrinsically faint, so bright stars are mostly turn-off stars, white-yellow in the composite."""
    faint, bright = np.asarray(POPULATIONS), np.asarray(BRIGHT_POPULATIONS)
    if fluxes is None:
        weights = np.broadcast_to(faint, (n, 3))
    else:
        t = np.clip(np.log10(np.maximum(fluxes, FLUX_MIN) / FLUX_MIN) / 3, 0, 1)[:, None]
        weights = (1 - t) * faint + t * bright
    kind = (rng.uniform(0, 1, n)[:, None] > np.cumsum(weights, axis=1)[:, :2]).sum(axis=1)
    g_r = np.where(
        kind == 0, rng.normal(0.35, 0.10, n), np.where(kind == 1, rng.uniform(0.5, 1.25, n), rng.uniform(1.25, 1.5, n))
    )
    r_i = np.where(kind == 2, rng.uniform(0.5, 1.2, n), 0.38 * g_r - 0.06 + rng.normal(0, 0.04, n))
    return np.stack([10 ** (-0.4 * g_r), np.ones(n), 10 ** (0.4 * r_i)], axis=1)


def draw_fluxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """r-band fluxes of ``n`` stars, N(> F) ~ F^-COUNT_SLOPE above FLUX_MIN."""
    return np.minimum(FLUX_MIN * rng.uniform(0, 1, n) ** (-1 / COUNT_SLOPE), FLUX_MAX)


@lru_cache(maxsize=64)
def halo_stamp(fwhm: float) -> np.ndarray:
    """Unit-flux wide halo (Moffat beta 1.8, 2.5 x the seeing FWHM, truncated at 12 x) on an odd grid."""
    half = int(np.ceil(12 * fwhm))
    halo = galsim.Moffat(beta=1.8, fwhm=2.5 * fwhm, trunc=12 * fwhm)
    stamp = halo.drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=1.0, method="no_pixel").array
    stamp /= stamp.sum()
    stamp.setflags(write=False)
    return stamp


def _add_points(canvas: np.ndarray, x: np.ndarray, y: np.ndarray, values: np.ndarray) -> None:
    """Add (n, 3) band ``values`` at integer pixels (x, y) inside the canvas."""
    H, W = canvas.shape[-2:]
    xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
    inside = (xi >= 0) & (yi >= 0) & (xi < W) & (yi < H)
    for band in range(3):
        np.add.at(canvas[band], (yi[inside], xi[inside]), values[inside, band])


def _paste(canvas: np.ndarray, stamp: np.ndarray, colour: np.ndarray, x: int, y: int) -> None:
    half = stamp.shape[0] // 2
    H, W = canvas.shape[-2:]
    y0, x0 = y - half, x - half
    ys = slice(max(y0, 0), min(y0 + stamp.shape[0], H))
    xs = slice(max(x0, 0), min(x0 + stamp.shape[1], W))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    cut = stamp[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    canvas[:, ys, xs] += colour[:, None, None].astype(canvas.dtype) * cut


def core_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) g, r, i colours of saturated cores: violet-white, as in the SDSS composites."""
    return CORE_TINT * rng.uniform(0.85, 1.15, (n, 3))


def sat_flux(saturation: float, kernel: np.ndarray) -> float:
    """r-band flux of a grey star whose PSF peak saturates the composite (``saturation``: band flux per pixel)."""
    return float(saturation / kernel.max())


def bright_star(
    rng: np.random.Generator,
    canvas: np.ndarray,
    x: float,
    y: float,
    flux: float,
    colour: np.ndarray,
    seeing: float,
    saturated_at: float,
    saturation: float,
    halo: bool = True,
) -> None:
    """Halo, spikes and (very bright) bleed trails of a star of r-band ``flux`` and ``colour`` at (x, y) whose core
    saturates (``flux`` > ``saturated_at``); its (violet) core is painted by the caller.  ``saturation``: the band
    flux per pixel at which the composite saturates."""
    ix, iy = int(round(x)), int(round(y))
    excess = flux / saturated_at
    if halo:
        _paste(canvas, halo_stamp(seeing), HALO_COLOUR * colour * flux * rng.uniform(*HALO_FRACTION), ix, iy)
    tilt = np.radians(rng.uniform(-SPIKE_TILT_DEG, SPIKE_TILT_DEG))
    length = min(6 * seeing * np.sqrt(excess), canvas.shape[-1] / 2)
    r = np.arange(2.0, max(length, 3.0))
    amplitude = (r / 2.0) ** -1.2
    amplitude *= flux * rng.uniform(*SPIKE_FRACTION) / amplitude.sum()
    for k in range(4):
        angle = tilt + k * np.pi / 2
        _add_points(canvas, x + r * np.cos(angle), y + r * np.sin(angle), amplitude[:, None] * colour[None])
    if excess > BLEED_FACTOR:  # the columns of the saturated bands: a trail up and down, saturated after the PSF
        bleed_len = min(seeing * (2 * np.log2(excess / BLEED_FACTOR) + 2), canvas.shape[-2] / 2)
        rows = np.arange(-bleed_len, bleed_len + 1)
        level = 3.0 * saturation * seeing * (colour * excess > 0.7 * BLEED_FACTOR)
        _add_points(canvas, np.full(rows.shape, x), y + rows, np.repeat(level[None], len(rows), axis=0))


def draw_stars(
    rng: np.random.Generator,
    canvas: np.ndarray,
    density: float,
    seeing: float,
    saturated_at: float,
    saturation: float,
    near: tuple[float, float, float] | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Paint a Poisson(``density``) number of field stars anywhere on the canvas (they may sit on the galaxy, as
    real foreground stars do); with ``near`` = (x, y, radius), one more, bright star is put at ``radius`` to 2 x
    ``radius`` px of (x, y) (a foreground star beside the target).  ``scale``: image size / 256.  ``saturated_at``: the
    r-band flux from which a star's core saturates (:func:`sat_flux`).  Returns the saturated stars as (n, 3) rows (x,
    y,
    flux / ``saturated_at``) for :func:`paint_cores`."""
    H, W = canvas.shape[-2:]
    n = int(rng.poisson(density))
    x, y = rng.uniform(-0.5, W - 0.5, n), rng.uniform(-0.5, H - 0.5, n)
    fluxes = draw_fluxes(rng, n) * scale**2  # the same surface brightness in sky sigmas at any image size
    if near is not None:
        angle, dist = rng.uniform(0, 2 * np.pi), near[2] * rng.uniform(1.0, 2.0)
        x = np.append(x, near[0] + dist * np.cos(angle))
        y = np.append(y, near[1] + dist * np.sin(angle))
        fluxes = np.append(fluxes, saturated_at * np.exp(rng.uniform(*np.log(NEAR_FLUX))))
    colours = draw_colours(rng, len(fluxes), fluxes)
    saturating = np.flatnonzero(fluxes * colours.max(axis=1) > SATURATING * saturated_at)
    _add_points(canvas, x, y, colours * fluxes[:, None])
    for i in saturating:
        bright_star(rng, canvas, x[i], y[i], fluxes[i], colours[i], seeing, saturated_at, saturation)
    return np.stack([x[saturating], y[saturating], fluxes[saturating] / saturated_at], axis=1)


def paint_cores(
    rng: np.random.Generator, canvas: np.ndarray, cores: np.ndarray, seeing: float, saturation: float
) -> None:
    """After the PSF: the violet centres of saturated stars, ``cores`` = (n, 3) rows of (x, y, flux / sat_flux).
    A compact spot (sigma 0.35 x the seeing FWHM) twice as bright as the star's peak, so the violet covers the
    inner core and the star's own colour the rest, as in the SDSS composites."""
    sigma = 0.35 * seeing
    half = int(np.ceil(3 * sigma))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    H, W = canvas.shape[-2:]
    for x, y, excess in cores:
        ix, iy = int(round(x)), int(round(y))
        spot = np.exp(-0.5 * ((xx - (x - ix)) ** 2 + (yy - (y - iy)) ** 2) / sigma**2)
        colour = core_colours(rng, 1)[0] * 2.0 * max(excess, 1.0) * saturation
        ys, xs = slice(max(iy - half, 0), min(iy + half + 1, H)), slice(max(ix - half, 0), min(ix + half + 1, W))
        if ys.start < ys.stop and xs.start < xs.stop:
            cut = spot[ys.start - iy + half : ys.stop - iy + half, xs.start - ix + half : xs.stop - ix + half]
            canvas[:, ys, xs] += (colour[:, None, None] * cut).astype(canvas.dtype)
