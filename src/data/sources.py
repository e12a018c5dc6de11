"""The inputs of ``predict.py``: which files make which images, and reading one as the model's RGB input.

An INPUT is an image file, a folder (its image files, not recursive), a glob pattern (``**`` recursive) or
``@list.txt`` (one INPUT per line; blank lines and ``#`` comments ignored; relative paths are relative to the list
file's folder).  Image files: JPEG, PNG, TIFF (any size, grey or RGB) and FITS.  FITS files whose names differ only
by a band suffix (``X_g.fits``, ``X_r.fits``, ``X_i.fits``; separator ``_``, ``-`` or ``.``; suffixes from
``bands``) are the bands of one frame ``X``; any other FITS file must be a 3-plane cube in ``bands`` order.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from src.data.images import BANDS, FITS_SUFFIXES, ImageError, is_fits, read_fits_rgb, read_rgb

#: Extensions picked up in folders (FITS: ``FITS_SUFFIXES``).  Files named explicitly may have any extension.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: Smallest image side the models are run on, px.
MIN_SIDE = 32
#: Largest image run in one pass (4096 x 4096 px), checked on the file's header before it is decoded.  One pass
#: of swin-tiny on an image this size peaks near 9.4 GB (about 560 bytes per pixel), so
#: ``src.inference.segmentation.segment`` never puts more than this many pixels into one forward pass, whatever
#: ``--batch-size`` says.
MAX_PIXELS = 4096 * 4096
TOO_LARGE = " for one pass of the model; predict.py --field processes frames of any size"


class InputError(ValueError):
    """An INPUT that gives no image (missing file, empty folder, pattern without match, incomplete band set)."""


@dataclass
class Source:
    """One image to segment: ``paths`` (one file, or the g, r, i band files), ``source`` (the catalog's
    ``source``: the path as given, or the band files' common path without the band suffix) and ``name`` (unique
    file-name stem of its outputs)."""

    source: str
    paths: tuple[str, ...]
    name: str = ""

    @property
    def is_fits(self) -> bool:
        return is_fits(self.paths[0])


@dataclass
class Discovery:
    sources: list[Source]
    problems: list[dict] = field(default_factory=list)  # {"input", "error"}: INPUTs that gave nothing usable
    duplicates: int = 0  # files reached by several INPUTs, kept once
    ignored: int = 0  # files in folders with other extensions


def _fits_stem(path: str) -> str:
    lower = path.lower()
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _expand(item: str, base: Path | None, discovery: Discovery, depth: int = 0) -> list[str]:
    if item.startswith("@"):
        list_path = Path(item[1:]) if base is None else base / item[1:]
        try:
            lines = list_path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise InputError(f"{list_path}: cannot read the list ({err.strerror or err})") from None
        if depth > 8:
            raise InputError(f"{list_path}: lists nested too deep")
        files = []
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if line:
                files += _try_expand(line, list_path.parent, discovery, depth + 1)
        return files
    path = Path(item) if base is None or Path(item).is_absolute() else base / item
    if any(c in item for c in "*?["):
        found = sorted(glob.glob(str(path), recursive=True))
        matches = [p for p in found if Path(p).is_file()]
        _broken_links([Path(p) for p in found], discovery, every=True)
        if not matches and not any(_is_broken(Path(p)) for p in found):
            raise InputError(f"{item}: the pattern matches no file")
        return matches
    if path.is_dir():
        listed = sorted(path.iterdir())
        entries = [p for p in listed if p.is_file()]
        files = [str(p) for p in entries if _is_image_name(p)]
        discovery.ignored += len(entries) - len(files) + _broken_links(listed, discovery)
        if not files and not any(_is_broken(p) and _is_image_name(p) for p in listed):
            raise InputError(f"{path}: no image files in this folder ({', '.join(IMAGE_SUFFIXES + FITS_SUFFIXES[:3])})")
        return files
    if _is_broken(path):
        raise InputError(_broken_message(path))
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return [str(path)]


def _is_image_name(path: Path) -> bool:
    return path.name.lower().endswith(IMAGE_SUFFIXES) or is_fits(path)


def _is_broken(path: Path) -> bool:
    return path.is_symlink() and not path.exists()  # exists() follows the link: false when dangling or a loop


def _broken_message(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return f"{path}: broken symbolic link (to {target}: missing, or a loop of links)"


def _broken_links(paths: list[Path], discovery: Discovery, every: bool = False) -> int:
    """Dangling or looping symbolic links among ``paths``: those with an image name (or ``every`` one: a pattern's
    matches) are problems (listed, fatal without --skip-bad); returns how many others there were (ignored)."""
    others = 0
    for path in paths:
        if _is_broken(path):
            if every or _is_image_name(path):
                discovery.problems.append({"input": str(path), "error": _broken_message(path)})
            else:
                others += 1
    return others


def _try_expand(item, base, discovery, depth=0):
    try:
        return _expand(item, base, discovery, depth)
    except InputError as err:
        discovery.problems.append({"input": item, "error": str(err)})
        return []


def discover(inputs, bands=BANDS) -> Discovery:
    """The images named by ``inputs`` (in order of first appearance), FITS band files grouped into frames.

    INPUTs that give nothing are listed in ``problems`` (the caller decides whether that is fatal); a file
    reached twice is kept once and counted in ``duplicates``.
    """
    if len(bands) != 3 or len(set(bands)) != 3:
        raise InputError(f"bands must be three distinct suffixes (g, r, i order), got {list(bands)}")
    discovery = Discovery([])
    files, seen = [], set()
    for item in inputs:
        for path in _try_expand(str(item), None, discovery):
            key = os.path.realpath(path)
            if key in seen:
                discovery.duplicates += 1
                continue
            seen.add(key)
            files.append(path)
    pattern = re.compile(r"^(?P<stem>.+)[_.\-](?P<band>" + "|".join(re.escape(b) for b in bands) + r")$")
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    order: list[tuple[str, str]] = []  # ("file", path) or ("frame", stem)
    for path in files:
        match = pattern.match(_fits_stem(path)) if is_fits(path) else None
        if match is None:
            order.append(("file", path))
            continue
        stem = match["stem"]
        if stem not in groups:
            order.append(("frame", stem))
        groups[stem][match["band"]] = path
    for kind, key in order:
        if kind == "file":
            discovery.sources.append(Source(key, (key,)))
            continue
        found = groups[key]
        missing = [b for b in bands if b not in found]
        if missing:
            discovery.problems.append(
                {
                    "input": key,
                    "error": f"{key}: band file(s) for {', '.join(missing)} missing "
                    f"(found {', '.join(found.values())})",
                }
            )
            continue
        discovery.sources.append(Source(key, tuple(found[b] for b in bands)))
    _name(discovery.sources)
    return discovery


def _name(sources: list[Source]) -> None:
    """Output names, unique even on case-insensitive file systems: the file stem (``Dr7_1.jpg`` -> ``Dr7_1``; a
    band frame: its stem without the band); where stems clash, the path relative to the clashing files' common
    folder with ``/`` -> ``__``, without the extension; a name still taken gets ``-2``, ``-3``, ... in input order."""

    def stem(path: str, fits: bool) -> str:
        return _fits_stem(path) if fits else os.path.splitext(path)[0]

    def clean(text: str) -> str:
        return re.sub(r"[^\w.\-]+", "_", text.replace(os.sep, "__"))

    bases = [clean(stem(os.path.basename(s.source), s.is_fits)) for s in sources]
    counts = Counter(b.casefold() for b in bases)
    clashing = [s for s, b in zip(sources, bases) if counts[b.casefold()] > 1]
    common = os.path.commonpath([os.path.dirname(os.path.abspath(s.source)) for s in clashing]) if clashing else ""
    taken: set[str] = set()
    for s, base in zip(sources, bases):
        if counts[base.casefold()] > 1:
            base = clean(stem(os.path.relpath(os.path.abspath(s.source), common), s.is_fits))
        name, k = base, 1
        while name.casefold() in taken:
            k += 1
            name = f"{base}-{k}"
        taken.add(name.casefold())
        s.name = name


def load(source: Source, flux_scale=None) -> dict:
    """Read a source as the model's input: ``{"rgb" (H, W, 3) uint8, "valid" (H, W) bool or None, "wcs",
    "header", "info"}``.  FITS frames go through the flux-scaling rule and the Lupton stretch of ``src.data.images``
    (``flux_scale``: three factors replacing the measured ones).  ``ImageError`` names the file when it cannot be
    used."""
    if source.is_fits:
        frame = read_fits_rgb(source.paths, flux_scale, MAX_PIXELS)
        out = {
            "rgb": frame["rgb"],
            "valid": frame["valid"],
            "wcs": frame["wcs"],
            "header": frame["header"],
            "info": {k: frame[k] for k in ("sky_level", "sky_sigma", "flux_scale")},
        }
        if frame["wcs_problem"]:
            out["info"]["wcs_problem"] = frame["wcs_problem"]
        out["info"]["masked_px"] = int((~frame["valid"]).sum())
    else:
        out = {
            "rgb": read_rgb(source.paths[0], MAX_PIXELS, TOO_LARGE),
            "valid": None,
            "wcs": None,
            "header": None,
            "info": {},
        }
    height, width = out["rgb"].shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageError(f"{source.source}: {width}x{height} px is smaller than {MIN_SIDE} px on a side")
    if height * width > MAX_PIXELS:
        raise ImageError(f"{source.source}: {width}x{height} px is more than {MAX_PIXELS:,} px{TOO_LARGE}")
    return out
