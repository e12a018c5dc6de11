"""Synthetic GZ2 cutouts in the real on-disk layout (catalog CSV, JPEG cutouts, VIA 2 polygons), and with
``fits=True`` the band images of every cutout as FITS with a TAN WCS (``original/fits/Dr7_<objid>_{g,r,i}.fits``).

One object per cutout, at the centre, as in the real annotations.  Object ``index`` of a run with ``seed``
draws everything from ``numpy.random.SeedSequence([seed, index])``, so the output does not depend on the
number of workers or on the order in which they finish.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from src.atomic import atomic_open, write_json_atomic
from src.classes import BASE_CLASSES, GALAXY_CLASSES
from src.data.catalog import parse_gz2_class
from src.data.images import BANDS, SDSS_PIXEL_SCALE, lupton_rgb, tan_header, write_fits, write_jpeg
from src.data.via import IMAGE_DIR, VIA_FILE, polygon_area
from src.defaults import CUTOUT_SIZE
from src.synthetic import conditions, hart16, labels, neighbours, profiles, render, stars

MIN_SIZE = 32
#: ``sdss``: what a real SDSS cutout holds around it, under per-cutout conditions (the default, and what ``make
#: demo`` trains on); ``clean``: the annotated object with a few stars and small galaxies, fixed processing.
SCENES = ("clean", "sdss")
#: The scene of the embedded default (``make demo``, ``python -m src.synthetic``).
DEFAULT_SCENE = "sdss"
#: Folder of the FITS band images (``fits=True``), beside ``original/zoo2Main``.
FITS_DIR = "original/fits"
VAL_FRACTION = 0.2
#: The rasterised integer polygon covers ~4 % more than the pixels above its level (boundary pixels).
AREA_BIAS = 0.96
#: Lowest q each class can reach (to size the stamp so the isophote fits in it).
_Q_LOW = {"artifact": 0.1, "elliptical": 0.28, "spiral": 0.4, "spiral barred": 0.4, "spiral edge-on": 0.1}
#: Probability of a bright foreground star beside the target (teaches "a star next to the galaxy is background").
P_NEAR_STAR = 0.15


@dataclass
class Placed:
    """A rendered object: its (3, s, s) band stamp placed with its centre at ``centre`` (x, y) of the frame."""

    bands: np.ndarray
    centre: tuple[int, int]
    flux: float = 1.0  #: the factor the model's fluxes were scaled by


def validate(n: int, size: int, workers: int, seed: int, min_size: int = MIN_SIZE) -> None:
    """Clear ``ValueError`` for arguments that cannot give a data set."""
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    if not isinstance(size, (int, np.integer)) or size < min_size:
        raise ValueError(f"size must be an integer of at least {min_size} px, got {size!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if n > hart16.OBJID_SEED_BLOCK:
        raise ValueError(f"n must be at most {hart16.OBJID_SEED_BLOCK} per seed, got {n}")


def paste(canvas: np.ndarray, stamp: np.ndarray, centre: tuple[int, int]) -> None:
    """Add a (C, s, s) stamp (s odd) to a (C, H, W) canvas with its middle pixel at ``centre`` (x, y)."""
    half = stamp.shape[-1] // 2
    x0, y0 = centre[0] - half, centre[1] - half
    H, W = canvas.shape[-2:]
    ys, xs = slice(max(y0, 0), min(y0 + stamp.shape[-2], H)), slice(max(x0, 0), min(x0 + stamp.shape[-1], W))
    if ys.start >= ys.stop or xs.start >= xs.stop:
        return
    canvas[..., ys, xs] += stamp[..., ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def odd_stamp(half: float, limit: int) -> int:
    return 2 * int(min(np.ceil(half), limit // 2)) + 1


def isophote_level(detection: np.ndarray, area: float, centre_rc, iterations: int = 4) -> float:
    """Level whose isophote around ``centre_rc`` encloses ``area`` px (holes such as inter-arm gaps filled,
    as a person tracing the outline would): start from the ``area``-th brightest pixel, then correct.  Where that
    ends at a level of 0 or below, because the profile lights fewer than ``area`` pixels of the stamp (a compact,
    truncated model), the best positive level found is returned, else the faintest lit pixel's: the outline then
    encloses the whole object, less than ``area``."""
    from scipy import ndimage

    flat = detection.ravel()
    target = max(1, int(round(area)))
    rank = target
    level = 0.0
    best = (np.inf, 0.0)  # (|enclosed - target|, level) of the best positive level
    for _ in range(iterations):
        rank = int(np.clip(rank, 1, flat.size))
        level = float(np.partition(flat, flat.size - rank)[flat.size - rank])
        labelled, _count = ndimage.label(detection >= level)
        label = labelled[centre_rc]
        if label == 0:
            break
        enclosed = int(ndimage.binary_fill_holes(labelled == label).sum())
        if level > 0 and abs(enclosed - target) < best[0]:
            best = (abs(enclosed - target), level)
        if abs(enclosed - target) <= 0.02 * target:
            break
        rank = int(round(rank * target / enclosed))
    if level > 0 or best[1] > 0:
        return level if level > 0 else best[1]
    lit = flat[flat > 0]
    return float(lit.min()) if lit.size else 0.0


def draw_main(
    rng,
    cls,
    area: float,
    centre_xy,
    kernel,
    sky,
    threshold: float,
    scale: float,
    limit: int,
    seeing: float,
    sdss: bool = False,
):
    """Render the annotated object; returns (Placed, polygon (row, col) in frame coordinates, model)."""
    radius = np.sqrt(area / np.pi)
    ix, iy = int(np.floor(centre_xy[0] + 0.5)), int(np.floor(centre_xy[1] + 0.5))
    offset = (centre_xy[0] - ix, centre_xy[1] - iy)
    stamp = odd_stamp(2.5 * radius / np.sqrt(_Q_LOW[cls.group]) + kernel.shape[0], limit)
    model = profiles.build(rng, cls, radius, stamp, offset, seeing, sdss)
    bands = model.bands()
    detection = render.convolve(np.tensordot(1.0 / sky, bands, axes=1) / 3.0, kernel)
    half = stamp // 2
    level = isophote_level(detection, area * AREA_BIAS, (half, half))
    if level <= 0:
        raise RuntimeError(f"{cls.raw}: model too small for an isophote of {area:.0f} px on a {stamp} px stamp")
    flux = threshold / level
    vertices = render.isophote_polygon(
        detection * flux,
        threshold,
        (half + offset[1], half + offset[0]),
        min_vertices=30 if scale >= 0.5 else 8,
        spacing=2.0 * min(scale, 1.0) ** 0.5,
    )
    if vertices is None:
        raise RuntimeError(f"{cls.raw}: no closed isophote around the centre")
    vertices += (iy - half, ix - half)
    return Placed(bands * flux, (ix, iy), flux), vertices, model


def draw_neighbours(rng, canvas, kernel, sky, scale: float, avoid_xy, avoid_radius: float, count: int):
    """The ``clean`` scene's unannotated stars and small galaxies at random places away from ``avoid_xy``."""
    H, W = canvas.shape[-2:]
    for _ in range(count):
        for _try in range(10):
            x, y = rng.uniform(0, W - 1), rng.uniform(0, H - 1)
            if np.hypot(x - avoid_xy[0], y - avoid_xy[1]) > avoid_radius:
                break
        else:
            continue
        draw_extra(rng, canvas, kernel, sky, scale, (x, y), star=rng.random() < 0.55)


def draw_extra(rng, canvas, kernel, sky, scale, xy, star: bool, snr: float | None = None):
    """One unannotated source at ``xy`` with detection peak ``snr`` (sky sigmas, after the PSF).  Returns its
    ``(x, y)`` pixel and its total flux in g, r, i (generator units, before the PSF and clipping at the border)."""
    ix, iy = int(np.floor(xy[0] + 0.5)), int(np.floor(xy[1] + 0.5))
    if star:
        colour = np.array([rng.uniform(0.5, 1.3), 1.0, rng.uniform(0.9, 1.6)])
        peak = kernel.max() * np.dot(colour, 1.0 / sky) / 3.0
        snr = snr or float(np.exp(rng.uniform(np.log(3.0), np.log(200.0))))
        paste(canvas, (colour * snr / peak)[:, None, None], (ix, iy))
        return (ix, iy), colour * snr / peak
    stamp = 2 * int(np.ceil(30 * scale)) + kernel.shape[0]  # 6 x the largest neighbour radius, plus the PSF
    model = profiles.neighbour(rng, stamp, (xy[0] - ix, xy[1] - iy), scale)
    bands = model.bands()
    detection = render.convolve(np.tensordot(1.0 / sky, bands, axes=1) / 3.0, kernel)
    snr = snr or float(np.exp(rng.uniform(np.log(1.5), np.log(25.0))))
    paste(canvas, bands * (snr / detection.max()), (ix, iy))
    return (ix, iy), bands.sum(axis=(1, 2)) * (snr / detection.max())


def render_cutout(seed: int, index: int, size: int = CUTOUT_SIZE, balance: bool = False, scene: str = DEFAULT_SCENE):
    """Render object ``index`` of run ``seed``: ``(rgb uint8 (size, size, 3), record dict)``.

    The record holds the objid, the ``gz2_class`` string, its 15- and 5-class, the VIA polygon
    (``all_points_x``, ``all_points_y``), its rasterised area, the cutout's ``conditions``
    (:class:`conditions.Conditions`; its ``jpeg_quality`` is what the cutout is written with) and
    ``central_star`` (class A drawn as a bright star).
    """
    bands, record = render_bands(seed, index, size, balance, scene)
    return composite(bands, record["conditions"]), record


def composite(bands: np.ndarray, cond: conditions.Conditions) -> np.ndarray:
    """The cutout service's steps after the band images, with the settings of ``cond``: resampling (a Gaussian of
    ``noise_smoothing`` px, which correlates the sky noise), the sky level left after sky subtraction, the colour
    balance and the Lupton stretch: (3, H, W) g, r, i -> (H, W, 3) uint8."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(bands, (0, cond.noise_smoothing, cond.noise_smoothing), truncate=3.0)
    smooth += (cond.pedestal * cond.sky)[:, None, None].astype(np.float32)
    smooth *= cond.gains[:, None, None].astype(np.float32)
    return lupton_rgb(smooth, stretch=cond.stretch, q=cond.q)


def render_bands(seed: int, index: int, size: int = CUTOUT_SIZE, balance: bool = False, scene: str = DEFAULT_SCENE):
    """As :func:`render_cutout`, but the g, r, i band images before the cutout service's resampling and stretch:
    ``(float32 (3, size, size), record)``, in generator flux units (sky noise ``render.SKY_SIGMA`` within
    +-15 %; ``sdss`` scene: within ``conditions.SKY_FACTOR``).  ``scene``: ``clean`` (the annotated object, a few
    stars and small galaxies, fixed processing) or ``sdss`` (:func:`render_sdss_bands`)."""
    if scene not in SCENES:
        raise ValueError(f"scene {scene!r}: expected one of {', '.join(SCENES)}")
    if scene == "sdss":
        return render_sdss_bands(seed, index, size, balance)
    main_ss, noise_ss, _catalog_ss = np.random.SeedSequence([seed, index]).spawn(3)
    rng = np.random.default_rng(main_ss)
    scale = size / CUTOUT_SIZE
    group = labels.draw_group(rng, balance)
    gz2 = labels.draw_gz2_class(rng, group)
    cls = parse_gz2_class(gz2)
    area = min(labels.draw_area(rng, group, scale), 0.12 * size * size)
    seeing = round(rng.uniform(*render.SEEING_FWHM) * scale * 20) / 20
    kernel = render.psf_kernel(max(seeing, 0.5))
    sky = render.SKY_SIGMA * rng.uniform(0.85, 1.15)
    threshold = rng.uniform(0.9, 1.3)
    centre = (size - 1) / 2.0 + np.clip(rng.normal(0.0, 2.0 * scale, 2), -8 * scale, 8 * scale)

    canvas = np.zeros((3, size, size), dtype=np.float32)  # single precision: faster FFT and stretch
    main, vertices, model = draw_main(rng, cls, area, centre, kernel, sky, threshold, scale, size + 1, seeing)
    paste(canvas, main.bands, main.centre)
    if model.companion:  # merger: a fainter galaxy close to the main one
        _draw_companion(rng, canvas, kernel, sky, scale, centre, model.major_axis)
    n_neighbours = int(rng.poisson(1.3))
    draw_neighbours(rng, canvas, kernel, sky, scale, centre, model.major_axis * 1.3 + 4 * scale, n_neighbours)
    canvas = render.convolve(canvas, kernel.astype(np.float32))
    render.add_sky_noise(canvas, sky, int(noise_ss.generate_state(1)[0]))
    return canvas, _record(seed, index, size, gz2, cls, group, vertices, conditions.clean(seeing, sky), False)


def _draw_companion(rng, canvas, kernel, sky, scale, centre, major_axis) -> None:
    """Paint a merger's companion: a fainter galaxy 1.1 to 1.6 major axes from the main one.

    Parameters
    ----------
    rng : numpy.random.Generator
        The target's stream; draws the angle, the distance and the signal-to-noise ratio, in that order.
    canvas : numpy.ndarray
        ``(3, size, size)`` bands, painted in place.
    kernel : numpy.ndarray
        The PSF kernel.
    sky : float
        Sky noise level.
    scale : float
        Cutout size relative to ``CUTOUT_SIZE``.
    centre : numpy.ndarray
        ``(x, y)`` of the main galaxy.
    major_axis : float
        The main galaxy's major axis in pixels.
    """
    angle = rng.uniform(0, 2 * np.pi)
    dist = major_axis * rng.uniform(1.1, 1.6)
    draw_extra(
        rng,
        canvas,
        kernel,
        sky,
        scale,
        centre + dist * np.array([np.cos(angle), np.sin(angle)]),
        star=False,
        snr=float(rng.uniform(5, 20)),
    )


def _record(seed, index, size, gz2, cls, group, vertices, cond, central_star: bool) -> dict:
    xs, ys = render.integer_polygon(vertices, size)
    return {
        "index": index,
        "objid": hart16.objid(seed, index),
        "gz2_class": gz2,
        "base": cls.base,
        "group": group,
        "all_points_x": xs,
        "all_points_y": ys,
        "area": polygon_area(xs, ys, (size, size)),
        "conditions": cond,
        "central_star": central_star,
    }


def render_sdss_bands(seed: int, index: int, size: int = CUTOUT_SIZE, balance: bool = False):
    """The ``sdss`` scene: the annotated object among what a real SDSS cutout holds and a GZ2 annotation leaves out
    (field stars with saturated cores, spikes and bleed trails; faint field galaxies; sometimes a bright
    neighbour), with per-cutout observing and processing conditions (:mod:`conditions`); class A is mostly a
    bright central star.

    Streams: the target (class, size, profile) and the observing conditions, stars and neighbours draw from
    separate children of ``SeedSequence([seed, index])`` (the third child is the catalog row's)."""
    main_ss, noise_ss, _catalog_ss, field_ss = np.random.SeedSequence([seed, index]).spawn(4)
    rng, field_rng = np.random.default_rng(main_ss), np.random.default_rng(field_ss)
    scale = size / CUTOUT_SIZE
    group = labels.draw_group(rng, balance, "sdss")
    gz2 = labels.draw_gz2_class(rng, group)
    cls = parse_gz2_class(gz2)
    area = min(labels.draw_area(rng, group, scale), 0.12 * size * size)
    cond = conditions.draw(field_rng, scale)
    kernel = render.psf_kernel(cond.seeing)
    threshold = rng.uniform(0.9, 1.3) * conditions.outline_factor(cond, scale)
    centre = (size - 1) / 2.0 + np.clip(rng.normal(0.0, 2.0 * scale, 2), -8 * scale, 8 * scale)

    canvas = np.zeros((3, size, size), dtype=np.float32)  # single precision: faster FFT and stretch
    main, vertices, model = draw_main(
        rng, cls, area, centre, kernel, cond.sky, threshold, scale, size + 1, cond.seeing, sdss=True
    )
    paste(canvas, main.bands, main.centre)
    saturation = render.saturation_flux(cond.stretch, cond.q)
    saturated_at = stars.sat_flux(saturation, kernel)
    cores = np.zeros((0, 3))
    if model.star_flux:  # a central star (class A): spikes, violet core and bleed trails as the field's stars
        flux = model.star_flux * main.flux
        stars.bright_star(
            rng,
            canvas,
            centre[0],
            centre[1],
            flux,
            model.star_colour,
            cond.seeing,
            saturated_at,
            saturation,
            halo=False,
        )
        cores = np.array([[centre[0], centre[1], flux / saturated_at]])
    if model.companion:  # merger: a fainter galaxy close to the main one
        _draw_companion(rng, canvas, kernel, cond.sky, scale, centre, model.major_axis)
    target = (centre[0], centre[1], model.major_axis)
    neighbours.draw_bright_neighbours(field_rng, canvas, cond.sky, threshold, scale, cond.seeing, target, area)
    neighbours.draw_field_galaxies(
        field_rng, canvas, cond.galaxy_density, scale, (centre[0], centre[1], 0.5 * model.major_axis)
    )
    near = target if field_rng.random() < P_NEAR_STAR else None
    cores = np.concatenate(
        [
            cores,
            stars.draw_stars(field_rng, canvas, cond.star_density, cond.seeing, saturated_at, saturation, near, scale),
        ]
    )
    canvas = render.convolve(canvas, kernel.astype(np.float32))
    stars.paint_cores(field_rng, canvas, cores, cond.seeing, saturation)
    render.add_sky_noise(canvas, cond.sky, int(noise_ss.generate_state(1)[0]))
    return canvas, _record(seed, index, size, gz2, cls, group, vertices, cond, bool(model.star_flux))


def catalog_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of object ``index``'s catalog row (its own stream: independent of the rendering)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index]).spawn(3)[2])


def write_bands(stem, bands: np.ndarray, header) -> list[Path]:
    """``STEM_{g,r,i}.fits``: the float32 band images (generator flux units) with ``header`` (a TAN WCS) and
    their band name."""
    header["BUNIT"] = ("generator", "src.synthetic flux units")
    paths = []
    for band, image in zip(BANDS, bands):
        header["FILTER"] = (band, "SDSS-like band")
        paths.append(write_fits(Path(f"{stem}_{band}.fits"), image.astype(np.float32), header))
    return paths


def write_band_fits(fits_dir, seed: int, index: int, bands: np.ndarray) -> list[Path]:
    """``Dr7_<objid>_{g,r,i}.fits``: float32 band images (generator flux units) with a TAN WCS at the SDSS pixel
    scale whose image centre is the catalog's (ra, dec) of the object.  Row y of each array is row y of the JPEG."""
    objid = hart16.objid(seed, index)
    ra, dec = hart16.catalog_radec(catalog_rng(seed, index))
    header = tan_header(ra, dec, bands.shape[-2:], SDSS_PIXEL_SCALE)
    header["OBJID"] = (str(objid), "synthetic GZ2 objid (src.synthetic)")
    return write_bands(Path(fits_dir) / f"Dr7_{objid}", bands, header)


def _make_one(job):
    seed, index, size, balance, image_dir, fits_dir, scene = job
    bands, record = render_bands(seed, index, size, balance, scene)
    cond = record.pop("conditions")
    record["filename"] = f"Dr7_{record['objid']}.jpg"
    record["size"] = write_jpeg(Path(image_dir) / record["filename"], composite(bands, cond), cond.jpeg_quality)
    if fits_dir is not None:
        write_band_fits(fits_dir, seed, index, bands)
    return record


def split_of(objid: int, val_fraction: float = VAL_FRACTION) -> str:
    """ "train" or "val", from a hash of the objid (deterministic, independent of n and of the order)."""
    digest = hashlib.blake2b(str(objid).encode(), digest_size=8).digest()
    return "val" if int.from_bytes(digest, "big") / 2.0**64 < val_fraction else "train"


def via_entry(record: dict) -> dict:
    """A VIA 2 entry like the real raw annotations (one polygon, empty region attributes)."""
    return {
        "filename": record["filename"],
        "size": record["size"],
        "file_attributes": {},
        "regions": [
            {
                "shape_attributes": {
                    "name": "polygon",
                    "all_points_x": record["all_points_x"],
                    "all_points_y": record["all_points_y"],
                },
                "region_attributes": {},
            }
        ],
    }


def write_csv_atomic(path: Path, frame) -> None:
    with atomic_open(path, "w", newline="") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n")


def _context():
    """Worker processes forked from a clean server (no inherited threads or locks, unlike plain fork
    from a process where pyarrow or tqdm run threads), with the generator already imported."""
    if os.name != "posix":
        return get_context("spawn")
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def run_jobs(function, jobs, workers: int, progress: bool, desc: str):
    """Results of ``function`` over ``jobs`` in job order, serially or with a process pool."""
    from src.progress import progress_bar

    bar = progress_bar(total=len(jobs), desc=desc, unit="img", disable=not progress)
    results = []
    try:
        if workers == 1:
            for job in jobs:
                results.append(function(job))
                bar.update()
        else:
            chunk = max(1, min(16, len(jobs) // (4 * workers)))
            with _context().Pool(workers, initializer=profiles.warm_up) as pool:
                for result in pool.imap(function, jobs, chunksize=chunk):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results


def generate(
    out_dir,
    n: int,
    seed: int = 0,
    size: int = CUTOUT_SIZE,
    workers: int = 1,
    balance: bool = False,
    progress: bool = True,
    fits: bool = False,
    scene: str = DEFAULT_SCENE,
) -> dict:
    """Write a synthetic GZ2 data set of ``n`` cutouts of ``size`` px under ``out_dir`` (``scene``: ``SCENES``).

    Files: ``gz2_hart16.csv``, ``original/zoo2Main/Dr7_<objid>.jpg``, ``original/{train,val}/via_region_data.json``;
    with ``fits`` also ``original/fits/Dr7_<objid>_{g,r,i}.fits`` (:func:`write_band_fits`).
    Returns a summary: counts by 5-class (``by_class``) and 15-class (``by_base``), split sizes, objid range
    and paths.
    """
    import pandas as pd

    validate(n, size, workers, seed)
    if scene not in SCENES:
        raise ValueError(f"scene {scene!r}: expected one of {', '.join(SCENES)}")
    out = Path(out_dir)
    image_dir = out / IMAGE_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    fits_dir = str(out / FITS_DIR) if fits else None
    jobs = [(seed, i, size, balance, str(image_dir), fits_dir, scene) for i in range(n)]
    records = run_jobs(_make_one, jobs, workers, progress, "synthetic GZ2")

    rows, splits = [], {"train": {}, "val": {}}
    for record in records:
        rows.append(
            hart16.catalog_row(
                catalog_rng(seed, record["index"]), record["objid"], parse_gz2_class(record["gz2_class"])
            )
        )
        splits[split_of(record["objid"])][str(record["objid"])] = via_entry(record)
    catalog = out / "gz2_hart16.csv"
    write_csv_atomic(catalog, pd.DataFrame(rows, columns=list(hart16.COLUMNS)))
    via_paths = {}
    for split, entries in splits.items():
        via_paths[split] = out / VIA_FILE.format(split=split)
        write_json_atomic(via_paths[split], entries)

    by_class = dict.fromkeys(GALAXY_CLASSES, 0)
    by_base = dict.fromkeys(BASE_CLASSES, 0)
    for record in records:
        by_class[record["group"]] += 1
        by_base[record["base"]] += 1
    return {
        "n": n,
        "seed": seed,
        "size": size,
        "balance": balance,
        "scene": scene,
        "by_class": by_class,
        "by_base": by_base,
        "splits": {split: len(entries) for split, entries in splits.items()},
        "objids": [hart16.objid(seed, 0), hart16.objid(seed, n - 1)],
        "areas": [record["area"] for record in records],
        "paths": {
            "catalog": str(catalog),
            "images": str(image_dir),
            **{f"via_{k}": str(v) for k, v in via_paths.items()},
            **({"fits": fits_dir} if fits else {}),
        },
    }
