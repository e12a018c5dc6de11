"""Hart et al. (2016) catalog rows for synthetic objects: ids, coordinates and GZ2 vote columns.

The vote columns follow the GZ2 decision tree (Willett et al. 2013, Fig. 1): each task's plurality answer is
the one the ``gz2_class`` string encodes, with a vote fraction drawn in [0.5, 0.95] and the rest spread over
the other answers; a task gets the votes of the volunteers that reached it.  For every answer the six Hart16
columns are written: ``_count, _weight, _fraction, _weighted_fraction, _debiased, _flag``.  The values are
consistent with the class but not a model of real volunteer behaviour.
"""

from __future__ import annotations

import numpy as np

from src.data.catalog import GZ2Class

#: (task, [answers]) in Hart16 column order.
TASKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("t01_smooth_or_features", ("a01_smooth", "a02_features_or_disk", "a03_star_or_artifact")),
    ("t02_edgeon", ("a04_yes", "a05_no")),
    ("t03_bar", ("a06_bar", "a07_no_bar")),
    ("t04_spiral", ("a08_spiral", "a09_no_spiral")),
    ("t05_bulge_prominence", ("a10_no_bulge", "a11_just_noticeable", "a12_obvious", "a13_dominant")),
    ("t06_odd", ("a14_yes", "a15_no")),
    ("t07_rounded", ("a16_completely_round", "a17_in_between", "a18_cigar_shaped")),
    (
        "t08_odd_feature",
        ("a19_ring", "a20_lens_or_arc", "a21_disturbed", "a22_irregular", "a23_other", "a24_merger", "a38_dust_lane"),
    ),
    ("t09_bulge_shape", ("a25_rounded", "a26_boxy", "a27_no_bulge")),
    ("t10_arms_winding", ("a28_tight", "a29_medium", "a30_loose")),
    ("t11_arms_number", ("a31_1", "a32_2", "a33_3", "a34_4", "a36_more_than_4", "a37_cant_tell")),
)
SUFFIXES = ("count", "weight", "fraction", "weighted_fraction", "debiased", "flag")
ID_COLUMNS = (
    "dr7objid",
    "ra",
    "dec",
    "rastring",
    "decstring",
    "sample",
    "gz2_class",
    "total_classifications",
    "total_votes",
)
COLUMNS: tuple[str, ...] = ID_COLUMNS + tuple(
    f"{task}_{answer}_{suffix}" for task, answers in TASKS for answer in answers for suffix in SUFFIXES
)

#: Objids: 18 digits starting with 9 (real DR7 objids start with 587 or 588).
OBJID_BASE = 900_000_000_000_000_000
OBJID_SEED_BLOCK = 1_000_000_000  # objects per seed
OBJID_SEEDS = 100_000_000  # seeds mod this


def objid(seed: int, index: int) -> int:
    """``900000000000000000 + (seed mod 1e8) * 1e9 + index``: in [9e17, 1e18 - 1], unique per (seed, index)."""
    if not 0 <= index < OBJID_SEED_BLOCK:
        raise ValueError(f"object index {index} out of range [0, {OBJID_SEED_BLOCK})")
    return OBJID_BASE + (seed % OBJID_SEEDS) * OBJID_SEED_BLOCK + index


_ODD_ANSWER = {"r": 0, "l": 1, "d": 2, "i": 3, "o": 4, "m": 5, "u": 6}
_BULGE_ANSWER = {"d": 0, "c": 1, "b": 2, "a": 3}
_ROUND_ANSWER = {"r": 0, "i": 1, "c": 2}
_EDGE_BULGE_ANSWER = {"r": 0, "b": 1, "n": 2}
_WINDING_ANSWER = {"t": 0, "m": 1, "l": 2}
_ARMS_ANSWER = {"1": 0, "2": 1, "3": 2, "4": 3, "+": 4, "?": 5}


def plurality_answers(cls: GZ2Class) -> dict[str, int]:
    """Task -> index of the answer the class string encodes (tasks the tree does not reach are absent)."""
    out = {}
    if cls.group == "artifact":
        return {"t01_smooth_or_features": 2}
    smooth = cls.group == "elliptical"
    out["t01_smooth_or_features"] = 0 if smooth else 1
    if smooth:
        out["t07_rounded"] = _ROUND_ANSWER[cls.base[1]]
    else:
        edge_on = cls.group == "spiral edge-on"
        out["t02_edgeon"] = 0 if edge_on else 1
        if edge_on:
            out["t09_bulge_shape"] = _EDGE_BULGE_ANSWER[cls.base[-1]]
        else:
            out["t03_bar"] = 0 if cls.barred else 1
            out["t04_spiral"] = 0 if cls.arms else 1
            if cls.arms:
                out["t10_arms_winding"] = _WINDING_ANSWER[cls.winding]
                out["t11_arms_number"] = _ARMS_ANSWER[cls.arms]
            out["t05_bulge_prominence"] = _BULGE_ANSWER[cls.base[-1]]
    out["t06_odd"] = 0 if cls.odd else 1
    if cls.odd:
        out["t08_odd_feature"] = _ODD_ANSWER[cls.odd]
    return out


def _sexagesimal(value: float, hours: bool) -> str:
    sign = "-" if value < 0 else ("" if hours else "+")
    value = abs(value) / 15.0 if hours else abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = ((value - d) * 60 - m) * 60
    return f"{sign}{d:02d}:{m:02d}:{s:0{5 if hours else 4}.{2 if hours else 1}f}"


#: Decimals of the ``ra`` / ``dec`` columns (degrees).
RADEC_DECIMALS = 6


def sky_position(rng: np.random.Generator) -> tuple[float, float]:
    """(ra, dec) in degrees, uniform on the sphere within the SDSS legacy footprint's rough extent; the first draws
    of :func:`catalog_row`, so ``sky_position(rng)`` on a copy of its generator gives the catalog's position."""
    ra = float(rng.uniform(110.0, 260.0))
    dec = float(np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-5.0)), np.sin(np.radians(65.0))))))
    return ra, dec


def catalog_radec(rng: np.random.Generator) -> tuple[float, float]:
    """(ra, dec) as the catalog CSV holds them (rounded to ``RADEC_DECIMALS``)."""
    ra, dec = sky_position(rng)
    return round(ra, RADEC_DECIMALS), round(dec, RADEC_DECIMALS)


def catalog_row(rng: np.random.Generator, objid_: int, cls: GZ2Class) -> list:
    """One Hart16 row (values in ``COLUMNS`` order) for an object of class ``cls``."""
    ra, dec = sky_position(rng)
    n_class = int(np.clip(round(rng.normal(44, 9)), 16, 80))
    answers = plurality_answers(cls)
    reached: dict[str, np.ndarray] = {}
    values, total_votes = [], 0
    for task, names in TASKS:
        k = len(names)
        fractions = np.zeros(k)
        if task in answers:
            top = rng.uniform(0.5, 0.95)
            rest = rng.dirichlet(np.ones(k - 1)) * (1 - top)
            fractions[np.arange(k) != answers[task]] = rest
            fractions[answers[task]] = top
        share = _reach(task, reached)
        votes = int(round(n_class * share)) if task in answers else int(round(n_class * share * 0.1))
        if task not in answers and votes:
            fractions = rng.dirichlet(np.ones(k))
        counts = np.rint(fractions * votes).astype(int)
        total_votes += int(counts.sum())
        weight = counts * rng.uniform(0.9, 1.0)
        debiased = np.clip(fractions + rng.normal(0, 0.03, k) * (fractions > 0), 0, 1)
        for a in range(k):
            values += [
                int(counts[a]),
                round(float(weight[a]), 3),
                round(float(fractions[a]), 3),
                round(float(fractions[a]), 3),
                round(float(debiased[a]), 3),
                int(debiased[a] > 0.8),
            ]
        reached[task] = fractions
    row = [
        objid_,
        round(ra, RADEC_DECIMALS),
        round(dec, RADEC_DECIMALS),
        _sexagesimal(ra, True),
        _sexagesimal(dec, False),
        "original",
        cls.raw,
        n_class,
        total_votes,
    ]
    return row + values


def _reach(task: str, reached: dict) -> float:
    """Fraction of volunteers reaching ``task`` (the product of the fractions along its branch)."""
    t01 = reached.get("t01_smooth_or_features", np.ones(3))
    t02 = reached.get("t02_edgeon", np.ones(2))
    if task == "t01_smooth_or_features" or task == "t06_odd":
        return 1.0
    if task == "t07_rounded":
        return float(t01[0])
    if task == "t02_edgeon":
        return float(t01[1])
    if task == "t09_bulge_shape":
        return float(t01[1] * t02[0])
    if task in ("t03_bar", "t04_spiral", "t05_bulge_prominence"):
        return float(t01[1] * t02[1])
    if task in ("t10_arms_winding", "t11_arms_number"):
        return float(t01[1] * t02[1] * reached.get("t04_spiral", np.ones(2))[0])
    if task == "t08_odd_feature":
        return float(reached.get("t06_odd", np.ones(2))[0])
    raise KeyError(task)
