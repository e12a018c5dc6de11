"""Single source of truth for the galaxy classes: names, ids, abbreviations, colours.

Galaxy Zoo 2 ``gz2_class`` strings (Willett et al. 2013, Appendix A) reduce to 15 base classes, which
group into the 5 classes the models learn.  Id 0 is the background of the semantic maps.
"""

from __future__ import annotations

BACKGROUND = "background"

#: Model label names, index = id.  Id 0 is the background.
CLASS_NAMES: tuple[str, ...] = (
    BACKGROUND,
    "artifact",
    "elliptical",
    "spiral",
    "spiral barred",
    "spiral edge-on",
)
#: The 5 galaxy classes (no background), in id order 1..5.
GALAXY_CLASSES: tuple[str, ...] = CLASS_NAMES[1:]
NUM_LABELS = len(CLASS_NAMES)

ID2LABEL: dict[int, str] = dict(enumerate(CLASS_NAMES))
LABEL2ID: dict[str, int] = {name: i for i, name in ID2LABEL.items()}

#: Short names used in the seed write-up.
ABBREVIATIONS: dict[str, str] = {
    BACKGROUND: "bg",
    "artifact": "A",
    "elliptical": "E",
    "spiral": "S",
    "spiral barred": "SB",
    "spiral edge-on": "Se",
}

#: The 15 base classes of the first aggregation, in a stable order.
BASE_CLASSES: tuple[str, ...] = (
    "A",
    "Ec",
    "Ei",
    "Er",
    "Sa",
    "Sb",
    "Sc",
    "Sd",
    "SBa",
    "SBb",
    "SBc",
    "SBd",
    "Sen",
    "Seb",
    "Ser",
)


def group_of_base(base: str) -> str:
    """The 5-class name of a 15-class base (``"SBc"`` -> ``"spiral barred"``)."""
    if base not in BASE_CLASSES:
        raise ValueError(f"unknown base class {base!r}; expected one of {', '.join(BASE_CLASSES)}")
    if base == "A":
        return "artifact"
    if base.startswith("E"):
        return "elliptical"
    if base.startswith("Se"):
        return "spiral edge-on"
    if base.startswith("SB"):
        return "spiral barred"
    return "spiral"


BASE_TO_GROUP: dict[str, str] = {b: group_of_base(b) for b in BASE_CLASSES}

#: RGB colours (0-255) for masks, legends and plots.
COLOURS: dict[str, tuple[int, int, int]] = {
    BACKGROUND: (0, 0, 0),
    "artifact": (255, 215, 0),
    "elliptical": (230, 75, 60),
    "spiral": (60, 140, 240),
    "spiral barred": (60, 200, 120),
    "spiral edge-on": (200, 90, 220),
}

#: Every galaxy class is a "thing" (countable object); the background is "stuff".
THING_IDS: tuple[int, ...] = tuple(range(1, NUM_LABELS))


def class_id(name: str) -> int:
    """Id of a class name; a clear error for an unknown one (never a silent mapping)."""
    try:
        return LABEL2ID[name]
    except KeyError:
        raise ValueError(f"unknown class name {name!r}; expected one of {', '.join(CLASS_NAMES)}") from None


def class_info() -> dict[str, dict]:
    """OneFormer class metadata (the ``class_info_file`` JSON of the hub cards): id -> name, isthing."""
    return {str(i): {"name": name, "isthing": int(i in THING_IDS)} for i, name in ID2LABEL.items()}


def colour_palette() -> list[tuple[int, int, int]]:
    """Colours indexed by class id."""
    return [COLOURS[name] for name in CLASS_NAMES]
