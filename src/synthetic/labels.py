"""Synthetic labels: ``gz2_class`` strings with realistic frequencies and isophotal mask areas.

Strings follow the Willett et al. (2013, App. A) grammar exactly as ``src.data.catalog.parse_gz2_class`` reads
it, in the forms the real catalog holds: arm count and winding appear together or not at all.  The 5-class mix
is the real seed test split (in the ``sdss`` scene class A is over-represented, ``ARTIFACT_SHARE``); the sub-class
frequencies are rounded GZ2 figures (documented below, approximate by design).  Mask areas (pixels at 256x256)
follow a split log-normal per class that reproduces the real median, p10 and p90 of ``galaxy_test_via.json``.
"""

from __future__ import annotations

import numpy as np

from src.classes import GALAXY_CLASSES
from src.data.catalog import parse_gz2_class

#: 5-class mix of the real seed test split (2,828 entries), in fractions.
REAL_MIX: dict[str, float] = {
    "artifact": 0.0025,
    "elliptical": 0.45,
    "spiral": 0.18,
    "spiral barred": 0.22,
    "spiral edge-on": 0.15,
}
#: Share of class A ("star or artifact", mostly a bright star at the centre) in the ``sdss`` scene: 40 x the real
#: 0.25 %, so that a model sees enough central stars to learn "a central star is A, never a galaxy"; the four
#: galaxy classes keep their real proportions.
ARTIFACT_SHARE = 0.10

#: Sub-class frequencies (approximate GZ2 figures).
ROUNDNESS = {"r": 0.40, "i": 0.48, "c": 0.12}  # E<r|i|c>
EDGE_ON_BULGE = {"r": 0.45, "b": 0.10, "n": 0.45}  # Se<r|b|n>
BULGE = {"a": 0.08, "b": 0.42, "c": 0.40, "d": 0.10}  # S[B]<a|b|c|d>
ARMS = {"1": 0.05, "2": 0.47, "3": 0.12, "4": 0.04, "+": 0.09, "?": 0.23}
WINDING = {"t": 0.33, "m": 0.47, "l": 0.20}
NO_ARMS_FRACTION = 0.08  # "not a spiral" answered: no arm count, no winding ("Sb", "SBc(r)")
ODD_FRACTION = 0.22  # an odd feature in parentheses
ODD = {"r": 0.18, "l": 0.05, "d": 0.14, "i": 0.10, "o": 0.28, "m": 0.15, "u": 0.10}

#: Real isophotal mask areas at 256x256 (px): (p10, median, p90) per class (galaxy_test_via.json).
REAL_AREAS: dict[str, tuple[float, float, float]] = {
    "artifact": (713.0, 987.0, 2856.0),
    "elliptical": (454.0, 811.0, 2047.0),
    "spiral": (548.0, 972.0, 2121.0),
    "spiral barred": (584.0, 993.0, 2778.0),
    "spiral edge-on": (491.0, 840.0, 1856.0),
}
_Z90 = 1.2815515655446004


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
    keys = list(table)
    p = np.asarray([table[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def class_mix(balance: bool = False, scene: str = "clean") -> dict[str, float]:
    """5-class probabilities: the real mix (``sdss`` scene: ``ARTIFACT_SHARE`` of A and the real mix of the four
    galaxy classes), or uniform with ``balance`` (rare classes oversampled)."""
    if balance:
        return {name: 1.0 / len(GALAXY_CLASSES) for name in GALAXY_CLASSES}
    if scene == "sdss":
        galaxies = sum(REAL_MIX[name] for name in GALAXY_CLASSES if name != "artifact")
        return {
            name: ARTIFACT_SHARE if name == "artifact" else REAL_MIX[name] / galaxies * (1 - ARTIFACT_SHARE)
            for name in GALAXY_CLASSES
        }
    total = sum(REAL_MIX.values())
    return {name: REAL_MIX[name] / total for name in GALAXY_CLASSES}


def draw_group(rng: np.random.Generator, balance: bool = False, scene: str = "clean") -> str:
    """A 5-class name drawn from :func:`class_mix`."""
    mix = class_mix(balance, scene)
    return GALAXY_CLASSES[int(rng.choice(len(GALAXY_CLASSES), p=[mix[name] for name in GALAXY_CLASSES]))]


def draw_gz2_class(rng: np.random.Generator, group: str) -> str:
    """A ``gz2_class`` string of the 5-class ``group``, drawn with the frequencies above."""
    if group == "artifact":
        return "A"
    if group == "elliptical":
        text = "E" + _pick(rng, ROUNDNESS)
    elif group == "spiral edge-on":
        text = "Se" + _pick(rng, EDGE_ON_BULGE)
    elif group in ("spiral", "spiral barred"):
        text = ("SB" if group == "spiral barred" else "S") + _pick(rng, BULGE)
        if rng.random() >= NO_ARMS_FRACTION:
            text += _pick(rng, ARMS) + _pick(rng, WINDING)
    else:
        raise ValueError(f"unknown 5-class name {group!r}; expected one of {', '.join(GALAXY_CLASSES)}")
    if rng.random() < ODD_FRACTION:
        text += f"({_pick(rng, ODD)})"
    parse_gz2_class(text)  # every string must be in the grammar; raises otherwise
    return text


def draw_area(rng: np.random.Generator, group: str, scale: float = 1.0) -> float:
    """Isophotal area (px) for ``group``: split log-normal through the real p10 / median / p90, times
    ``scale**2`` (``scale`` = image size / 256), kept within [0.4 p10, 2.5 p90]."""
    p10, p50, p90 = REAL_AREAS[group]
    z = rng.standard_normal()
    sigma = np.log(p90 / p50) / _Z90 if z > 0 else np.log(p50 / p10) / _Z90
    area = float(np.clip(p50 * np.exp(sigma * z), 0.4 * p10, 2.5 * p90))
    return area * scale * scale
