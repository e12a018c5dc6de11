"""GalSim surface-brightness models of the five classes, before the PSF.

Every model is drawn on a square stamp (``method="no_pixel"``: the analytic profiles are evaluated at pixel
centres, which is fast; the PSF and pixel response are applied once later, see ``render.py``).  Lengths are
pixels of the output image; fluxes are relative (the generator rescales each object so that its isophote
at the annotation threshold encloses the drawn area).  A model is a list of components, each a
``(stamp, colour)`` pair; ``colour`` is the (g, r, i) flux ratio of the component.

Geometry: GalSim shears conserve area, so a profile of area-equivalent radius ``R`` and axis ratio ``q``
has semi-axes ``R / sqrt(q)`` and ``R * sqrt(q)``.  Spiral arms are a logarithmic-spiral modulation of the
exponential disk computed with numpy in the deprojected disk plane (GalSim has no spiral profile).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import galsim
import numpy as np

from src.data.catalog import GZ2Class

#: (g, r, i) flux ratios.  Lupton composites map i->R, r->G, g->B: old stars look orange, young arms blue.
RED = np.array([0.50, 1.0, 1.40])
DISK = np.array([0.85, 1.0, 1.05])
BLUE = np.array([1.45, 1.0, 0.65])
BAR = np.array([0.62, 1.0, 1.30])

SERSIC_N_E = (3.0, 3.5, 4.0, 4.5, 5.0)  # quantised: GalSim caches one Sersic table per index
#: Bars by scene: flux fraction, semi-major axis / disk scale length, axis ratio; lowest disk axis ratio of SB.
BARS = {
    "clean": {"flux": (0.15, 0.30), "length": (0.9, 1.6), "q": (0.18, 0.30), "disk_q_min": 0.40},
    "sdss": {"flux": (0.25, 0.40), "length": (1.3, 2.0), "q": (0.15, 0.25), "disk_q_min": 0.55},
}
PITCH_DEG = {"t": (8.0, 14.0), "m": (15.0, 22.0), "l": (24.0, 34.0)}
BULGE_FRACTION = {"a": (0.45, 0.65), "b": (0.25, 0.40), "c": (0.10, 0.20), "d": (0.0, 0.05)}
ROUNDNESS_Q = {"r": (0.78, 0.97), "i": (0.50, 0.78), "c": (0.28, 0.50)}


@dataclass
class Model:
    """The unconvolved components of one object on a ``stamp`` x ``stamp`` grid."""

    components: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    major_axis: float = 0.0  #: semi-major axis of the isophote, px (for placing neighbours)
    companion: bool = False  #: a merger companion is wanted next to it
    star_flux: float = 0.0  #: a star's r-band flux (model units): spikes and bleed trails are added later
    star_colour: np.ndarray | None = None

    def add(self, profile: galsim.GSObject, colour, stamp: int, offset, weight: np.ndarray | None = None):
        image = profile.drawImage(nx=stamp, ny=stamp, scale=1.0, method="no_pixel", offset=offset).array
        self.components.append((image if weight is None else image * weight, np.asarray(colour, float)))

    def bands(self) -> np.ndarray:
        """(3, stamp, stamp) g, r, i surface brightness."""
        return np.einsum(
            "kyx,kb->byx", np.stack([c[0] for c in self.components]), np.stack([c[1] for c in self.components])
        )


def _jitter(rng, colour, amount=0.08):
    return colour * rng.uniform(1 - amount, 1 + amount, 3)


def _angle(radians: float) -> galsim.Angle:
    return radians * galsim.radians


def _disk_coords(stamp: int, offset, beta: float, q: float, scale_radius: float):
    """Deprojected polar coordinates (r / scale_radius, theta) of each stamp pixel in the disk plane."""
    centre = (stamp - 1) / 2.0
    y, x = np.mgrid[0:stamp, 0:stamp].astype(float)
    x -= centre + offset[0]
    y -= centre + offset[1]
    u = x * np.cos(beta) + y * np.sin(beta)  # along the major axis
    v = -x * np.sin(beta) + y * np.cos(beta)
    u, v = u * np.sqrt(q), v / np.sqrt(q)  # area-conserving deprojection
    return np.hypot(u, v) / scale_radius, np.arctan2(v, u), v


def _arm_weight(rng, cls: GZ2Class, r, theta, inner: float, phase0: float):
    """Relative weight of the arms over the disk (mean ~1 beyond ``inner``), 0 where there are no arms."""
    if cls.arms is None:
        return None
    if cls.arms == "+":
        m = int(rng.integers(5, 7))
    elif cls.arms == "?":
        m = int(rng.integers(2, 4))
    else:
        m = int(cls.arms)
    pitch = np.radians(rng.uniform(*PITCH_DEG[cls.winding or "m"]))
    sharp = 1 if cls.arms == "?" else int(rng.integers(2, 4))
    phase = m * theta - m * np.log(np.maximum(r, 1e-3) / inner) / np.tan(pitch) + phase0
    pattern = ((1 + np.cos(phase)) / 2) ** sharp
    mean = {1: 0.5, 2: 3 / 8, 3: 5 / 16}[sharp]
    taper = 1 - np.exp(-((r / inner) ** 2))
    return taper * pattern / mean, taper


def elliptical(rng, cls: GZ2Class, radius: float, stamp: int, offset) -> Model:
    q = rng.uniform(*ROUNDNESS_Q[cls.base[1]])
    beta = rng.uniform(0, np.pi)
    n = float(rng.choice(SERSIC_N_E))
    re = radius * rng.uniform(0.35, 0.7)
    model = Model(major_axis=radius / np.sqrt(q))
    model.add(galsim.Sersic(n, half_light_radius=re).shear(q=q, beta=_angle(beta)), _jitter(rng, RED), stamp, offset)
    _odd_feature(rng, cls, model, radius, q, beta, stamp, offset)
    return model


def spiral(rng, cls: GZ2Class, radius: float, stamp: int, offset, sdss: bool = False) -> Model:
    """Bulge, exponential disk, logarithmic arms and, for SB, a bar (``BARS``).  In the ``sdss`` scene the bars are
    long and bright and SB discs are not strongly inclined: GZ2 volunteers mark mostly strong bars in discs seen
    nearly face-on (Masters et al. 2011 keep axis ratios above 0.5 for their bar statistics)."""
    bars = BARS["sdss" if sdss else "clean"]
    q = rng.uniform(bars["disk_q_min"] if cls.barred else 0.40, 0.95)
    beta = rng.uniform(0, np.pi)
    h = radius * rng.uniform(0.30, 0.42)
    model = Model(major_axis=radius / np.sqrt(q))
    bulge_frac = rng.uniform(*BULGE_FRACTION[cls.base[-1]])
    bar_frac = rng.uniform(*bars["flux"]) if cls.barred else 0.0
    disk_frac = 1.0 - bulge_frac - bar_frac
    if bulge_frac > 0:
        bulge_q = max(q, rng.uniform(0.75, 0.95))
        re = h * rng.uniform(0.25, 0.45) * (0.7 if cls.barred else 1.0)
        bulge = galsim.Sersic(float(rng.choice((2.0, 3.0, 4.0))), half_light_radius=re, flux=bulge_frac)
        model.add(bulge.shear(q=bulge_q, beta=_angle(beta)), _jitter(rng, RED), stamp, offset)
    r, theta, _ = _disk_coords(stamp, offset, beta, q, h)
    inner, phase0 = 0.7, rng.uniform(0, 2 * np.pi)
    if cls.barred:
        bar_len = rng.uniform(*bars["length"])  # bar semi-major axis / h, in the disk plane
        bar_angle = rng.uniform(0, np.pi)  # in the disk plane
        # projected bar: its end point in the image plane fixes its length and position angle
        ex, ey = bar_len * h * np.cos(bar_angle) / np.sqrt(q), bar_len * h * np.sin(bar_angle) * np.sqrt(q)
        length = np.hypot(ex, ey)
        pa = beta + np.arctan2(ey, ex)
        q_bar = rng.uniform(*bars["q"])
        sigma = 0.5 * length * np.sqrt(q_bar)
        bar = galsim.Gaussian(sigma=sigma, flux=bar_frac).shear(q=q_bar, beta=_angle(pa))
        model.add(bar, _jitter(rng, BAR), stamp, offset)
        inner = bar_len
        phase0 = -2 * bar_angle if cls.arms in ("2", "?") else phase0  # arms leave the bar ends
    disk = galsim.Exponential(scale_radius=h, flux=disk_frac).shear(q=q, beta=_angle(beta))
    arms = _arm_weight(rng, cls, r, theta, inner, phase0)
    if arms is None:
        model.add(disk, _jitter(rng, DISK), stamp, offset)
    else:
        weight, taper = arms
        arm_frac = rng.uniform(0.7, 0.9)
        image = disk.drawImage(nx=stamp, ny=stamp, scale=1.0, method="no_pixel", offset=offset).array
        model.components.append((image * (1 - arm_frac * taper), _jitter(rng, DISK)))
        model.components.append((image * arm_frac * weight, _jitter(rng, BLUE)))
    _odd_feature(rng, cls, model, radius, q, beta, stamp, offset, disk_coords=(r, theta))
    return model


def edge_on(rng, cls: GZ2Class, radius: float, stamp: int, offset) -> Model:
    q = rng.uniform(0.10, 0.26)
    beta = rng.uniform(0, np.pi)
    h = radius * rng.uniform(0.30, 0.40)
    model = Model(major_axis=radius / np.sqrt(q))
    bulge_kind = cls.base[-1]
    bulge_frac = {"n": rng.uniform(0.0, 0.03), "b": rng.uniform(0.15, 0.30), "r": rng.uniform(0.15, 0.35)}[bulge_kind]
    if bulge_frac > 0.005:
        if bulge_kind == "b":  # boxy: a flat-topped (low-index), flattened bulge
            bulge = galsim.Sersic(0.6, half_light_radius=h * rng.uniform(0.35, 0.5)).shear(q=0.65, beta=_angle(beta))
        else:
            bulge = galsim.Sersic(3.0, half_light_radius=h * rng.uniform(0.25, 0.4)).shear(q=0.85, beta=_angle(beta))
        model.add(bulge.withFlux(bulge_frac), _jitter(rng, RED), stamp, offset)
    disk = galsim.Exponential(scale_radius=h, flux=1 - bulge_frac).shear(q=q, beta=_angle(beta))
    weight = None
    if cls.odd == "u" or rng.random() < 0.3:  # dust lane along the mid-plane
        _, _, v = _disk_coords(stamp, offset, beta, 1.0, 1.0)
        width = 0.3 * radius * np.sqrt(q)
        weight = 1 - rng.uniform(0.4, 0.7) * np.exp(-((v / width) ** 2))
    model.add(disk, _jitter(rng, DISK * np.array([0.9, 1.0, 1.08])), stamp, offset, weight)
    _odd_feature(rng, cls, model, radius, q, beta, stamp, offset)
    return model


def _trail(rng, model: Model, radius: float, beta: float, stamp: int, offset) -> None:
    """A satellite trail exposed in one band only: a coloured streak."""
    band = np.zeros(3)
    band[int(rng.integers(3))] = 3.0
    model.add(galsim.Gaussian(sigma=radius * 0.6).shear(q=0.04, beta=_angle(beta)), band, stamp, offset)
    model.major_axis = radius * 3


def _ghost(model: Model, radius: float, colour, stamp: int, offset) -> None:
    """A diffuse, flat-topped reflection ghost."""
    model.add(galsim.Sersic(0.4, half_light_radius=radius * 0.7), colour * np.array([0.7, 1.2, 0.8]), stamp, offset)


def artifact(rng, cls: GZ2Class, radius: float, stamp: int, offset, seeing: float) -> Model:
    """A saturated star with diffraction spikes (60 %), a satellite trail (20 %) or a ghost (20 %)."""
    kind = rng.choice(["star", "trail", "ghost"], p=[0.6, 0.2, 0.2])
    model = Model(major_axis=radius)
    beta = rng.uniform(0, np.pi)
    colour = np.array([rng.uniform(0.6, 1.3), 1.0, rng.uniform(0.7, 1.3)])
    if kind == "star":
        core = galsim.Moffat(beta=2.5, fwhm=seeing, flux=0.9) + galsim.Moffat(beta=1.5, fwhm=2 * seeing, flux=0.1)
        model.add(core, colour, stamp, offset)
        for angle in (beta, beta + np.pi / 2):
            spike = galsim.Gaussian(sigma=radius * 0.3, flux=0.004).shear(q=0.012, beta=_angle(angle))
            model.add(spike, colour, stamp, offset)
    elif kind == "trail":
        _trail(rng, model, radius, beta, stamp, offset)
    else:
        _ghost(model, radius, colour, stamp, offset)
    return model


def artifact_sdss(rng, cls: GZ2Class, radius: float, stamp: int, offset, seeing: float) -> Model:
    """Class A, "star or artifact": a bright star (50 %; its spikes, saturated core and bleed trails are added by
    the generator as for field stars), an unsaturated star seen as ``predict.py --field``'s stamp rule shows a
    field star (30 %: the stamp zooms a point source until its isophote fills the stamp as a median GZ2 galaxy
    fills its cutout, so the PSF becomes a smooth round blob, FWHM 0.6-1.0 x the outline's radius), a satellite
    trail (10 %) or a reflection ghost (10 %)."""
    from src.synthetic.stars import FLUX_MAX, HALO_COLOUR, draw_colours

    kind = rng.choice(["star", "blob", "trail", "ghost"], p=[0.5, 0.3, 0.1, 0.1])
    model = Model(major_axis=radius)
    beta = rng.uniform(0, np.pi)
    if kind == "star":  # nearly a point before the PSF, plus a glow (PSF wings, scattered light) as wide as the
        # annotated outline, so that the outline needs no absurd flux whatever the seeing
        colour = draw_colours(rng, 1, np.array([FLUX_MAX]))[0]
        halo = rng.uniform(0.01, 0.04)
        model.add(galsim.Gaussian(sigma=0.5, flux=1 - halo), colour, stamp, offset)
        glow = galsim.Moffat(
            beta=1.8, fwhm=max(2.5 * seeing, 0.6 * radius), trunc=min(stamp / 2, 4 * radius), flux=halo
        )
        model.add(glow, colour * HALO_COLOUR, stamp, offset)
        model.star_flux, model.star_colour = 1.0, colour
    elif kind == "blob":
        colour = draw_colours(rng, 1)[0]
        blob = galsim.Moffat(
            beta=rng.uniform(2.5, 4.0), fwhm=rng.uniform(0.6, 1.0) * radius, trunc=min(stamp / 2, 4 * radius)
        )
        model.add(blob, colour, stamp, offset)
    elif kind == "trail":
        _trail(rng, model, radius, beta, stamp, offset)
    else:
        _ghost(model, radius, np.array([rng.uniform(0.6, 1.3), 1.0, rng.uniform(0.7, 1.3)]), stamp, offset)
    return model


def _odd_feature(rng, cls, model, radius, q, beta, stamp, offset, disk_coords=None):
    """Visible odd features: ring, merger companion (placed by the caller), lopsided disturbance."""
    if cls.odd == "r":
        h = radius * 0.35
        r = disk_coords[0] if disk_coords is not None else _disk_coords(stamp, offset, beta, q, h)[0]
        ring = np.exp(-(((r - rng.uniform(1.8, 2.4)) / 0.35) ** 2))
        base = galsim.Exponential(scale_radius=h, flux=0.5).shear(q=q, beta=_angle(beta))
        model.add(base, _jitter(rng, BLUE), stamp, offset, ring)
    elif cls.odd == "m":
        model.companion = True
    elif cls.odd in ("d", "i"):
        _, theta, _ = _disk_coords(stamp, offset, beta, q, 1.0)
        lopsided = 1 + rng.uniform(0.2, 0.4) * np.cos(theta - rng.uniform(0, 2 * np.pi))
        model.components = [(image * lopsided, colour) for image, colour in model.components]


def build(rng, cls: GZ2Class, radius: float, stamp: int, offset, seeing: float, sdss: bool = False) -> Model:
    """The model of a ``cls`` object of area-equivalent radius ``radius`` px (``sdss``: that scene's bars and
    class A)."""
    if cls.group == "elliptical":
        return elliptical(rng, cls, radius, stamp, offset)
    if cls.group in ("spiral", "spiral barred"):
        return spiral(rng, cls, radius, stamp, offset, sdss)
    if cls.group == "spiral edge-on":
        return edge_on(rng, cls, radius, stamp, offset)
    return (artifact_sdss if sdss else artifact)(rng, cls, radius, stamp, offset, seeing)


def neighbour(rng, stamp: int, offset, scale: float) -> Model:
    """A small unannotated background galaxy (exponential or de Vaucouleurs), radius 1.5-5 px at 256."""
    re = rng.uniform(1.5, 5.0) * scale
    n = 1.0 if rng.random() < 0.6 else 4.0
    q = rng.uniform(0.3, 1.0)
    colour = RED + (DISK - RED) * rng.uniform(0, 1)
    model = Model(major_axis=re)
    model.add(
        galsim.Sersic(n, half_light_radius=re).shear(q=q, beta=_angle(rng.uniform(0, np.pi))),
        _jitter(rng, colour),
        stamp,
        offset,
    )
    return model


def warm_up() -> None:
    """Build GalSim's Sersic lookup tables for every index used, so forked workers share them."""
    for n in sorted(set(SERSIC_N_E) | {0.4, 0.6, 1.0, 2.0, 3.0, 4.0}):
        galsim.Sersic(n, half_light_radius=2.0).drawImage(nx=9, ny=9, scale=1.0, method="no_pixel")
