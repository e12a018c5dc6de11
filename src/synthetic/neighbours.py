"""Unannotated galaxies around the target: faint field galaxies and bright neighbours of every class.

A real GZ2 annotation outlines only the central galaxy, so everything drawn here is background in the labels,
whatever it looks like.  Flux units are the generator's (r-band sky noise ~1), before the PSF.

* Faint field galaxies: Poisson with the cutout's ``galaxy_density``, small Sersic profiles (exponential or
  de Vaucouleurs), r-band fluxes with N(> F) ~ F^-``COUNT_SLOPE`` above ``FLUX_MIN`` (galaxy counts are steeper
  than star counts), sizes growing with the flux, anywhere in the cutout (also behind the target's outskirts).
* Bright neighbours: with probability ``P_BRIGHT``, one (sometimes two) galaxies of any of the four galaxy classes,
  drawn with the target's own profiles (:func:`profiles.build`) at 10-40 % of the target's area (a neighbour
  as large as the target would make the annotated object ambiguous), beside the target or overlapping its
  outskirts.
"""

from __future__ import annotations

import galsim
import numpy as np

from src.data.catalog import parse_gz2_class
from src.synthetic import labels, profiles

FLUX_MIN = 20.0
FLUX_MAX = 2.0e4
COUNT_SLOPE = 0.9
#: Close companions of comparable brightness are rare: Galaxy Zoo finds 1-3 % of SDSS galaxies merging (Darg et
#: al. 2010); with chance projections, 6 % of cutouts get one.
P_BRIGHT = 0.06
P_SECOND = 0.3
BRIGHT_AREA = (0.1, 0.4)


def _paste(canvas: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> None:
    """Add a (3, h, w) stamp with its top-left corner at (x0, y0), clipped to the canvas."""
    H, W = canvas.shape[-2:]
    ys = slice(max(y0, 0), min(y0 + stamp.shape[-2], H))
    xs = slice(max(x0, 0), min(x0 + stamp.shape[-1], W))
    if ys.start < ys.stop and xs.start < xs.stop:
        canvas[:, ys, xs] += stamp[:, ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def draw_field_galaxies(
    rng: np.random.Generator, canvas: np.ndarray, density: float, scale: float, avoid: tuple[float, float, float]
) -> int:
    """Faint field galaxies, Poisson(``density``), none centred within ``avoid`` = (x, y, radius) px (the
    target's core).  Returns how many were drawn."""
    H, W = canvas.shape[-2:]
    n = int(rng.poisson(density))
    drawn = 0
    for _ in range(n):
        x, y = rng.uniform(-0.5, W - 0.5), rng.uniform(-0.5, H - 0.5)
        if np.hypot(x - avoid[0], y - avoid[1]) < avoid[2]:
            continue
        flux = min(FLUX_MIN * rng.uniform(0, 1) ** (-1 / COUNT_SLOPE), FLUX_MAX)
        re = scale * float(np.clip(1.2 * (flux / FLUX_MIN) ** 0.25 * rng.lognormal(0, 0.3), 1.0, 7.0))
        flux *= scale**2  # the same surface brightness in sky sigmas at any image size
        n_sersic = 1.0 if rng.random() < 0.6 else 4.0
        q = rng.uniform(0.3, 1.0)
        colour = profiles.RED + (profiles.BLUE - profiles.RED) * rng.uniform(0.0, 0.4)
        half = int(np.ceil(5 * re)) + 1
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        profile = galsim.Sersic(n_sersic, half_light_radius=re, flux=flux).shear(
            q=q, beta=rng.uniform(0, np.pi) * galsim.radians
        )
        image = profile.drawImage(
            nx=2 * half + 1, ny=2 * half + 1, scale=1.0, method="no_pixel", offset=(x - ix, y - iy)
        ).array
        _paste(canvas, colour[:, None, None] * image[None], ix - half, iy - half)
        drawn += 1
    return drawn


def draw_bright_neighbours(
    rng: np.random.Generator,
    canvas: np.ndarray,
    sky: np.ndarray,
    threshold: float,
    scale: float,
    seeing: float,
    target: tuple[float, float, float],
    target_area: float,
) -> list[str]:
    """With probability ``P_BRIGHT``, one (then with ``P_SECOND`` another) galaxy of a random galaxy class beside
    ``target`` = (x, y, semi-major axis px), at 0.8-2.5 semi-major axes from its centre, its area ``BRIGHT_AREA`` of
    ``target_area`` (px; or of its own class's drawn area when smaller), its flux set so that its own isophote at
    ``threshold`` (detection units) encloses that area.  Returns their 5-classes."""
    groups = []
    H, W = canvas.shape[-2:]
    if rng.random() >= P_BRIGHT:
        return groups
    while True:
        group = labels.draw_group(rng)
        if group == "artifact":
            continue
        cls = parse_gz2_class(labels.draw_gz2_class(rng, group))
        area = min(labels.draw_area(rng, group, scale), target_area) * rng.uniform(*BRIGHT_AREA)
        radius = np.sqrt(area / np.pi)
        angle = rng.uniform(0, 2 * np.pi)
        dist = max(target[2], 4 * scale) * rng.uniform(0.8, 2.5) + radius
        x, y = target[0] + dist * np.cos(angle), target[1] + dist * np.sin(angle)
        stamp = 2 * int(np.ceil(2.5 * radius / np.sqrt(0.15))) + 1
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        model = profiles.build(rng, cls, radius, stamp, (x - ix, y - iy), seeing, sdss=True)
        bands = model.bands()
        detection = np.tensordot(1.0 / sky, bands, axes=1) / 3.0
        rank = min(max(1, int(area)), detection.size)
        level = float(np.partition(detection.ravel(), detection.size - rank)[detection.size - rank])
        if level > 0 and -stamp < ix < W + stamp and -stamp < iy < H + stamp:
            _paste(canvas, (bands * (threshold / level)).astype(canvas.dtype), ix - stamp // 2, iy - stamp // 2)
            groups.append(group)
        if len(groups) == 2 or rng.random() >= P_SECOND:
            return groups
