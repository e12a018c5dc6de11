"""``--field`` mode: large synthetic SDSS-like fields with many galaxies and a COCO JSON of every annotated object.

Objects sit on a jittered grid (one per ``CELL`` px cell at most, so isophotes rarely overlap), at the pixel
scale of the 256 px cutouts, with the cutout class mix, sizes and isophote polygons.  Stars and faint small
galaxies are added unannotated.  Field ``k`` of run ``seed`` draws from ``SeedSequence([seed, k, FIELD_TAG])``.
Each COCO annotation also records ``flux_gri``: the object's total flux in the g, r, i bands (generator units, in
which the sky noise per pixel is about ``render.SKY_SIGMA``), i.e. its brightness.  The unannotated sources are
listed too, under the COCO file's extra key ``unannotated`` (``image_id``, pixel ``x``, ``y``, ``star``,
``flux_gri``): the truth of the star/galaxy separation (``src.field.score.StarGalaxyScorer``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.atomic import write_json_atomic
from src.classes import GALAXY_CLASSES, class_id
from src.data.catalog import parse_gz2_class
from src.data.images import SDSS_PIXEL_SCALE, lupton_rgb, tan_header, write_jpeg
from src.defaults import CUTOUT_SIZE
from src.synthetic import hart16, labels, render
from src.synthetic.generator import draw_extra, draw_main, paste, run_jobs, validate, write_bands

CELL = 160
OCCUPANCY = 0.6  # fraction of grid cells holding an annotated object
MAX_AREA = 3000.0  # px; keeps neighbouring isophotes apart
FIELD_TAG = 0xF1E1D
MIN_FIELD_SIZE = CUTOUT_SIZE
ANNOTATIONS = "field_annotations.json"


def render_field(seed: int, index: int, size: int = 2048, balance: bool = False):
    """``(rgb (size, size, 3) uint8, [object dicts with gz2_class, group, polygon (x, y lists), flux_gri]``."""
    bands, objects = render_field_bands(seed, index, size, balance)
    return lupton_rgb(bands), objects


def render_field_bands(seed: int, index: int, size: int = 2048, balance: bool = False, with_extras: bool = False):
    """As :func:`render_field`, but the g, r, i band images before the stretch: ``(float32 (3, size, size),
    objects)`` in generator flux units; with ``with_extras`` also the unannotated sources ``[{x, y (px), star,
    flux_gri}]`` (field stars, and faint galaxies too small to annotate)."""
    main_ss, noise_ss = np.random.SeedSequence([seed, index, FIELD_TAG]).spawn(2)
    rng = np.random.default_rng(main_ss)
    seeing = round(rng.uniform(*render.SEEING_FWHM) * 20) / 20
    kernel = render.psf_kernel(seeing)
    sky = render.SKY_SIGMA * rng.uniform(0.85, 1.15)
    canvas = np.zeros((3, size, size), dtype=np.float32)
    objects = []
    cells = size // CELL
    margin = (size - cells * CELL) / 2
    for cy in range(cells):
        for cx in range(cells):
            if rng.random() > OCCUPANCY:
                continue
            centre = margin + CELL * (np.array([cx, cy]) + 0.5) + rng.uniform(-0.2, 0.2, 2) * CELL
            group = labels.draw_group(rng, balance)
            cls = parse_gz2_class(labels.draw_gz2_class(rng, group))
            area = min(labels.draw_area(rng, group), MAX_AREA)
            threshold = rng.uniform(0.9, 1.3)
            placed, vertices, _model = draw_main(
                rng, cls, area, centre, kernel, sky, threshold, 1.0, 2 * CELL - 1, seeing
            )
            paste(canvas, placed.bands, placed.centre)
            xs, ys = render.integer_polygon(vertices, size)
            objects.append(
                {
                    "gz2_class": cls.raw,
                    "base": cls.base,
                    "group": group,
                    "all_points_x": xs,
                    "all_points_y": ys,
                    "flux_gri": placed.bands.sum(axis=(1, 2)).tolist(),
                }
            )
    extras = []
    for _ in range(int(rng.poisson(1.5 * (size / CUTOUT_SIZE) ** 2))):
        star = rng.random() < 0.6
        (x, y), flux = draw_extra(rng, canvas, kernel, sky, 1.0, rng.uniform(0, size - 1, 2), star=star)
        extras.append({"x": x, "y": y, "star": bool(star), "flux_gri": [round(float(f), 3) for f in flux]})
    canvas = render.convolve(canvas, kernel.astype(np.float32))
    render.add_sky_noise(canvas, sky, int(noise_ss.generate_state(1)[0]))
    if with_extras:
        return canvas, objects, extras
    return canvas, objects


def field_radec(seed: int, index: int) -> tuple[float, float]:
    """The sky position (ra, dec in degrees) of the centre of field ``index`` of run ``seed`` (its own stream)."""
    return hart16.catalog_radec(np.random.default_rng(np.random.SeedSequence([seed, index, FIELD_TAG, 1])))


def write_field_fits(out_dir, seed: int, index: int, bands: np.ndarray) -> list[Path]:
    """``field_<k>_{g,r,i}.fits``: float32 band images (generator flux units) with a TAN WCS at the SDSS pixel
    scale centred on :func:`field_radec`.  Row y of each array is row y of the JPEG."""
    header = tan_header(*field_radec(seed, index), bands.shape[-2:], SDSS_PIXEL_SCALE)
    return write_bands(Path(out_dir) / f"field_{index:04d}", bands, header)


def _make_field(job):
    seed, index, size, balance, out_dir, fits = job
    bands, objects, extras = render_field_bands(seed, index, size, balance, with_extras=True)
    filename = f"field_{index:04d}.jpg"
    write_jpeg(Path(out_dir) / filename, lupton_rgb(bands))
    if fits:
        write_field_fits(out_dir, seed, index, bands)
    return filename, objects, extras


def coco_annotation(ann_id: int, image_id: int, obj: dict, size: int) -> dict:
    """The COCO annotation of an object.  COCO polygon coordinates put the corner of the first pixel at (0, 0)
    (pixel centres at k + 0.5), the VIA / scikit-image vertices pixel centres at k: the polygon is moved by half a
    pixel, so that pycocotools rasterises the pixels the annotation outlines; ``area`` is that raster's."""
    from pycocotools import mask as mask_utils

    xs, ys = obj["all_points_x"], obj["all_points_y"]
    x0, y0 = min(xs), min(ys)
    polygon = [float(v) + 0.5 for xy in zip(xs, ys) for v in xy]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": class_id(obj["group"]),
        "iscrowd": 0,
        "segmentation": [polygon],
        "area": float(mask_utils.area(mask_utils.frPyObjects([polygon], size, size))[0]),
        "bbox": [float(x0), float(y0), float(max(xs) - x0 + 1), float(max(ys) - y0 + 1)],
        "gz2_class": obj["gz2_class"],
        "gz2_class_15": obj["base"],
        "flux_gri": [round(float(f), 3) for f in obj["flux_gri"]],
    }


def generate_field(
    out_dir,
    n: int = 1,
    seed: int = 0,
    size: int = 2048,
    workers: int = 1,
    balance: bool = False,
    progress: bool = True,
    fits: bool = False,
) -> dict:
    """Write ``n`` fields ``field_<k>.jpg`` of ``size`` x ``size`` px and ``field_annotations.json`` (COCO)
    under ``out_dir``; with ``fits`` also their band images ``field_<k>_{g,r,i}.fits`` (:func:`write_field_fits`).
    Returns a summary with the object counts by 5-class and the paths."""
    validate(n, size, workers, seed, min_size=MIN_FIELD_SIZE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, k, size, balance, str(out), fits) for k in range(n)]
    results = run_jobs(_make_field, jobs, workers, progress, "synthetic fields")
    images, annotations, unannotated = [], [], []
    by_class = dict.fromkeys(GALAXY_CLASSES, 0)
    for image_id, (filename, objects, extras) in enumerate(results, start=1):
        images.append({"id": image_id, "file_name": filename, "width": size, "height": size})
        for obj in objects:
            annotations.append(coco_annotation(len(annotations) + 1, image_id, obj, size))
            by_class[obj["group"]] += 1
        unannotated += [{"image_id": image_id, **extra} for extra in extras]
    coco = {
        "info": {"description": "Synthetic GZ2 fields (src.synthetic --field)", "seed": seed, "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "unannotated": unannotated,
        "categories": [{"id": class_id(name), "name": name, "supercategory": "galaxy"} for name in GALAXY_CLASSES],
    }
    path = out / ANNOTATIONS
    write_json_atomic(path, coco)
    return {
        "n": n,
        "seed": seed,
        "size": size,
        "objects": len(annotations),
        "by_class": by_class,
        "paths": {"annotations": str(path), "images": [str(out / img["file_name"]) for img in images]},
    }
