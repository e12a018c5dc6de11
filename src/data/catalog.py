"""Galaxy Zoo 2 catalog (Hart et al. 2016, ``gz2_hart16.csv``) and the ``gz2_class`` grammar.

Grammar (Willett et al. 2013, Appendix A)::

    A                                   star or artifact
    E<r|i|c>                            smooth: (r)ound, (i)n-between, (c)igar-shaped
    Se<r|b|n>                           edge-on disk; bulge (r)ounded, (b)oxy, (n)one
    S[B]<a|b|c|d>[1|2|3|4|+|?][t|m|l]   face-on spiral [barred]; bulge dominant..none;
                                        arm count (+ = more than four, ? = can't tell);
                                        winding (t)ight, (m)edium, (l)oose
    ...(<r|l|d|i|o|m|u>)                optional odd feature: ring, lens/arc, disturbed,
                                        irregular, other, merger, dust lane
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from src.classes import BASE_TO_GROUP

#: Columns read from the catalog; the other ~225 are never parsed.
CATALOG_COLUMNS = ("dr7objid", "ra", "dec", "sample", "gz2_class")
CATALOG_NAMES = ("gz2_hart16.csv", "gz2_hart16.csv.gz")

ODD_FEATURES = {
    "r": "ring",
    "l": "lens or arc",
    "d": "disturbed",
    "i": "irregular",
    "o": "other",
    "m": "merger",
    "u": "dust lane",
}
WINDINGS = {"t": "tight", "m": "medium", "l": "loose"}

_GRAMMAR = re.compile(
    r"""^(?:
        (?P<artifact>A)
      | (?P<smooth>E[ric])
      | (?P<edgeon>Se[rbn])
      | (?P<spiral>SB?[abcd])(?P<arms>[1-4+?])?(?P<winding>[tml])?
    )(?:\((?P<odd>[rldiomu])\))?$""",
    re.VERBOSE,
)


class CatalogError(ValueError):
    """A catalog file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class GZ2Class:
    """One parsed ``gz2_class`` string."""

    raw: str
    base: str  #: one of the 15 base classes (``src.classes.BASE_CLASSES``)
    group: str  #: one of the 5 galaxy classes
    arms: str | None = None  #: "1".."4", "+" (more than four) or "?" (can't tell)
    winding: str | None = None  #: "t", "m" or "l"
    odd: str | None = None  #: odd-feature code, see ``ODD_FEATURES``

    @property
    def barred(self) -> bool:
        return self.base.startswith("SB")


def parse_gz2_class(text: str) -> GZ2Class:
    """Parse one ``gz2_class`` string; an unknown string is a ``ValueError`` naming it."""
    match = _GRAMMAR.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"unknown gz2_class string {text!r} (not in the Willett et al. 2013 grammar)")
    base = match["artifact"] or match["smooth"] or match["edgeon"] or match["spiral"]
    return GZ2Class(
        raw=text,
        base=base,
        group=BASE_TO_GROUP[base],
        arms=match["arms"],
        winding=match["winding"],
        odd=match["odd"],
    )


def parse_gz2_classes(values: pd.Series, source: str = "gz2_class") -> pd.DataFrame:
    """Parse a column of class strings, each distinct string once.

    Returns a frame aligned with ``values`` with columns ``gz2_class_15`` (base) and ``gz2_class_5``
    (group).  Any unparsable string raises, naming the string, its first row and ``source``.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise CatalogError(f"{source}: empty gz2_class at row {row}")
    parsed = []
    for i, text in enumerate(uniques):
        try:
            parsed.append(parse_gz2_class(text))
        except ValueError as err:
            row = int(np.flatnonzero(codes == i)[0])
            raise CatalogError(f"{source}: row {row}: {err}") from None
    base = np.array([p.base for p in parsed], dtype=object)[codes]
    group = np.array([p.group for p in parsed], dtype=object)[codes]
    return pd.DataFrame({"gz2_class_15": base, "gz2_class_5": group}, index=values.index)


def find_catalog(data_root: str | os.PathLike) -> Path:
    """``gz2_hart16.csv`` or ``gz2_hart16.csv.gz`` under ``data_root``."""
    root = Path(data_root)
    for name in CATALOG_NAMES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"no Galaxy Zoo 2 catalog in {root}: expected {' or '.join(CATALOG_NAMES)} "
        "(python -m src.download fetches it; python -m src.synthetic writes a synthetic one)"
    )


def load_catalog(path: str | os.PathLike, columns=CATALOG_COLUMNS, parse_classes: bool = True) -> pd.DataFrame:
    """Read the needed columns of the Hart16 catalog (``.csv`` or ``.csv.gz``).

    ``dr7objid`` is read as int64 (the ids have 18 digits and do not survive a float).  Only
    ``columns`` are parsed (pyarrow, multi-threaded).  With ``parse_classes`` the frame gains
    ``gz2_class_15`` and ``gz2_class_5``.  Missing columns, non-integer or duplicate ids and unknown
    class strings raise a ``CatalogError`` naming the file and the entry.
    """
    import pyarrow as pa
    from pyarrow import csv as pacsv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalog not found: {path}")
    columns = list(columns)
    try:
        header = pacsv.open_csv(path).schema.names
    except (pa.ArrowInvalid, OSError) as err:
        raise CatalogError(f"{path}: not a readable CSV file ({err})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise CatalogError(f"{path}: missing column(s) {', '.join(missing)}")
    types = {"dr7objid": pa.int64(), "gz2_class": pa.string(), "sample": pa.string()}
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=columns, column_types={k: v for k, v in types.items() if k in columns}
            ),
        )
    except pa.ArrowInvalid as err:
        raise CatalogError(f"{path}: {err}") from None
    frame = table.to_pandas()
    if "dr7objid" in frame:
        if frame["dr7objid"].isna().any():
            row = int(np.flatnonzero(frame["dr7objid"].isna())[0])
            raise CatalogError(f"{path}: empty dr7objid at data row {row}")
        duplicated = frame["dr7objid"].duplicated()
        if duplicated.any():
            objid = int(frame["dr7objid"][duplicated].iloc[0])
            raise CatalogError(f"{path}: duplicate dr7objid {objid} ({int(duplicated.sum())} duplicate rows)")
    if parse_classes and "gz2_class" in frame:
        frame = pd.concat([frame, parse_gz2_classes(frame["gz2_class"], source=str(path))], axis=1)
    return frame
