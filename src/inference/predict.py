"""Apply a trained model to your own images: cutouts (JPEG / PNG / TIFF) and FITS frames -> a catalog of objects
(class, probabilities, pixel and sky positions, areas), segmentation maps and overlays.  ``predict.py`` is the CLI.

The run, for each process (``accelerate launch`` / ``torchrun`` start several; Accelerate's
``split_between_processes`` gives each its share of the inputs):

1. a DataLoader whose workers read the images (FITS: flux scaling + Lupton stretch, ``src.data.images``) while the
   model runs;
2. batched forward passes (``src.inference.segmentation``) through the export's processor (its resize and
   normalisation); images the processor does not resize go in at their own size, grouped by size, and the masks are
   mapped back
   pixel for pixel; resized ones are mapped back by bilinear resizing.  ``tta``: the 8 flips / 90° rotations of
   each image, their per-pixel class probabilities turned back and averaged;
3. objects and their measurements (``src.inference.objects``), the segmentation map, the overlay, and a record
   ``records/<name>.json`` written last (atomically): an input with a record is done, ``--resume`` skips it;
4. the main process merges the records of all inputs into one catalog and ``predict_report.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from src.atomic import folder_lock, write_json_atomic
from src.classes import GALAXY_CLASSES
from src.cli import check_choice
from src.data.images import BANDS, ImageError
from src.data.sources import InputError, Source, discover, load
from src.defaults import MIN_CANDIDATE_AREA, STAMP_SIZE, TASKS, TILE, TILE_OVERLAP
from src.field.stars import STAR_AGREEMENT, STAR_RULES, apply_star_rule, separate_image, sources_of_objects
from src.inference.objects import (
    CATALOG_FORMATS,
    MIN_AREA,
    SCORE_THRESHOLD,
    class_map,
    find_objects,
    measure_objects,
    write_catalog,
    write_segmentation,
)
from src.inference.segmentation import PRECISIONS, resolve_precision, segment, set_precision

logger = logging.getLogger(__name__)

SETTINGS_FILE = "predict_settings.json"
REPORT_FILE = "predict_report.json"
RECORDS = "records"
#: Settings that change the results: a run can only be resumed with the same ones.
RESULT_SETTINGS = (
    "model",
    "base_card",
    "task",
    "tta",
    "bands",
    "flux_scale",
    "min_area",
    "score_threshold",
    "field",
    "strategy",
    "stamp_pixels",
    "stamp_scale",
    "min_candidate_area",
    "detect_thresh",
    "tile",
    "overlap",
    "stars",
    "outline",
    "precision",
)


def _option(default=dataclasses.MISSING, help: str | None = None, group: str | None = None, convert=None, **cli):
    """A :class:`PredictConfig` field and its ``predict.py`` option, spelled once.

    Parameters
    ----------
    default : object, optional
        The field's default, also the option's (absent: a required option).
    help : str, optional
        The option's ``--help`` text (argparse expands ``%(default)s``); ``None``: no option of its own.
    group : str, optional
        The argument group of the option (``None``: the main list).
    convert : callable, optional
        Turns the parsed value into the field's (e.g. a list into a tuple).
    **cli
        More ``ArgumentParser.add_argument`` keywords (``type``, ``choices``, ``nargs``, ``metavar``, ``action``,
        ``flags`` for names other than ``--<field-name>``).

    Returns
    -------
    dataclasses.Field
        The field, its option in ``metadata``.
    """
    metadata = {"help": help, "group": group, "convert": convert, "cli": cli}
    return dataclasses.field(default=default, metadata=metadata)


def _tuple_or_none(values):
    return None if values is None else tuple(values)


#: The argument group of the ``--field`` options.
FIELD_GROUP = "survey frames (--field; see README)"


@dataclass
class PredictConfig:
    """The options of ``predict.py``: each field is one option, its default and ``--help`` text given here only
    (:func:`build_parser` builds the parser from these fields, in this order)."""

    model: str = _option(
        help="save_pretrained folder (safetensors/NAME), bare .safetensors state dict or preset", required=True
    )
    inputs: list = _option(
        help="image files (JPEG/PNG/TIFF/FITS), folders, glob patterns, or @list.txt",
        convert=list,
        flags=("inputs",),
        nargs="+",
        metavar="INPUT",
    )
    out: str = _option(help="output folder", required=True)
    task: str = _option(
        "semantic",
        "the task the model is conditioned on, which decides what an object is (default semantic: "
        "connected regions of galaxy pixels; see README)",
        choices=TASKS,
    )
    batch_size: int = _option(8, "images per forward pass (default %(default)s)", type=int)
    #: DataLoader workers; None: :func:`default_workers`.
    workers: int | None = _option(
        None,
        "DataLoader worker processes reading images (default: 0 on machines of 2 cores or fewer, where "
        "reading runs between forward passes, else 1)",
        type=int,
    )
    device: str | None = _option(None, "cuda, cuda:1, mps, cpu (default: CUDA, else MPS, else CPU)")
    cpu: bool = _option(False, "force the CPU (same as --device cpu)", action="store_true")
    #: The model's precision: auto (bf16 on AMX CPUs), fp32 or bf16.
    precision: str = _option(
        "auto",
        "the model's arithmetic: auto = bf16 on CPUs with AMX (1.3x faster, labels agree on > 99.9 %% "
        "of pixels), else fp32 (default %(default)s)",
        choices=PRECISIONS,
    )
    tta: bool = _option(
        False,
        "test-time augmentation: 8 flips / 90° rotations, probabilities averaged (8x slower)",
        action="store_true",
    )
    skip_bad: bool = _option(
        False, "go on past unusable inputs (listed in the report; exit status 1)", action="store_true"
    )
    overlays: bool = _option(
        False,
        "write overlays/NAME.png (outlines and labels); with --field the whole frame is drawn "
        "in memory (about 8 bytes per pixel: ~3 GB for 20k x 20k)",
        action="store_true",
    )
    catalog_format: str = _option("csv", "(default %(default)s)", choices=CATALOG_FORMATS)
    bands: tuple = _option(
        BANDS,
        f"FITS band suffixes, blue to red, shown as B, G, R (default: {' '.join(BANDS)})",
        convert=tuple,
        nargs=3,
        metavar=("G", "R", "I"),
    )
    flux_scale: tuple | None = _option(
        None,
        "FITS: multiply the sky-subtracted bands by these 1 or 3 factors instead of scaling their "
        "measured sky noise to the training set's",
        convert=_tuple_or_none,
        type=float,
        nargs="+",
        metavar="F",
    )
    min_area: int = _option(MIN_AREA, "smallest object, px (default %(default)s)", type=int)
    score_threshold: float = _option(
        SCORE_THRESHOLD, "instance task: lowest detection score (default %(default)s)", type=float
    )
    base_card: str | None = _option(None, "architecture of a bare .safetensors state dict")
    resume: bool = _option(False, "continue a run in --out: skip the inputs already done", action="store_true")
    #: Point sources: class A, or the model's class (src.field.stars).
    stars: str = _option(
        "artifact",
        "point sources (the star/galaxy separation of src.field.stars: each frame's PSF measured from "
        "its stellar locus, diffraction spikes): artifact = catalogued as class A, 'star or "
        "artifact' as in GZ2 (default); model = keep the model's class, to see everything. Either "
        "way the catalog has the columns model_class, stellarity, point_source, saturated",
        choices=STAR_RULES,
    )
    #: Write OUT/report.html (src.inference.report) after the catalog.
    report: bool = _option(
        False,
        "also write OUT/report.html: the image(s), outlines and catalog in one offline page (python -m src.report OUT)",
        action="store_true",
    )
    quiet: bool = _option(False)  # -q of src.cli.add_output_options
    #: Survey frames: every galaxy of each input (src.field).
    field: bool = _option(
        False,
        "each INPUT is a survey frame: detect, cut out, segment and classify every galaxy",
        FIELD_GROUP,
        action="store_true",
    )
    #: Field strategy: cutout (sep + GZ2-scale stamps) or tiles.
    strategy: str = _option(
        "cutout",
        "cutout (models trained on GZ2 cutouts; default): sep candidates -> stamps at the GZ2 scale; "
        "tiles (models trained on fields): overlapping tiles, objects merged across borders",
        FIELD_GROUP,
        choices=("cutout", "tiles"),
    )
    stamp_pixels: int = _option(
        STAMP_SIZE, "cutout: stamp side given to the model (default %(default)s)", FIELD_GROUP, type=int
    )
    stamp_scale: str = _option(
        "fill",
        "cutout: the stamp's side in the frame: fill = the GZ2 rule, the object fills the stamp as the "
        "median GZ2 galaxy its cutout (models trained on cutouts scaled to their galaxy); native = "
        "--stamp-pixels px, no resampling (models trained at the frame's pixel scale, e.g. the "
        "synthetic set) (default fill; see README)",
        FIELD_GROUP,
        choices=("fill", "native"),
    )
    min_candidate_area: int = _option(
        MIN_CANDIDATE_AREA,
        "cutout: sep isophotal area (px) a source needs to get a stamp (default %(default)s)",
        FIELD_GROUP,
        type=int,
    )
    detect_thresh: float | None = _option(
        None,
        "cutout: sep threshold in background rms (default 3 for JPEG/PNG, 2 for FITS bands)",
        FIELD_GROUP,
        type=float,
    )
    #: Field cutout strategy: the object's outline from sep or from the model.
    outline: str = _option(
        "sep",
        "cutout: an object's outline: sep = the candidate's sep isophote segment (3 sigma, deblended; "
        "it reaches the galaxy's visible edge), the model giving its class and score (default); "
        "model = the model's central region of the stamp",
        FIELD_GROUP,
        choices=("sep", "model"),
    )
    tile: int = _option(TILE, "tiles: tile side, px (default %(default)s)", FIELD_GROUP, type=int)
    overlap: int = _option(
        TILE_OVERLAP,
        "tiles: overlap of neighbouring tiles, px, at least the largest object (default %(default)s)",
        FIELD_GROUP,
        type=int,
    )

    def field_settings(self):
        """The settings of a ``--field`` run.

        Returns
        -------
        src.field.run.FieldSettings
            Each of its fields set to this config's field of the same name.
        """
        from src.field.run import FieldSettings

        return FieldSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(FieldSettings)})

    def check(self) -> None:
        """``InputError`` for settings that cannot work."""
        check_choice("precision", self.precision, PRECISIONS, InputError)
        check_choice("task", self.task, TASKS, InputError)
        check_choice("catalog format", self.catalog_format, CATALOG_FORMATS, InputError)
        if self.batch_size < 1 or (self.workers is not None and self.workers < 0) or self.min_area < 1:
            raise InputError("batch size and min area must be >= 1, workers >= 0")
        if self.flux_scale is not None and (
            len(self.flux_scale) not in (1, 3) or not all(np.isfinite(f) and f > 0 for f in self.flux_scale)
        ):
            raise InputError(f"--flux-scale takes 1 or 3 positive factors, got {list(self.flux_scale)}")
        if not self.inputs:
            raise InputError("no INPUT given")
        check_choice("--stars", self.stars, STAR_RULES, InputError)
        if self.field:
            if self.strategy not in ("cutout", "tiles"):
                raise InputError(f"--strategy must be cutout or tiles, got {self.strategy!r}")
            if self.strategy == "cutout" and self.task != "semantic":
                raise InputError(
                    f"--strategy cutout keeps the central object of each stamp's semantic map; "
                    f"--task {self.task} applies to --strategy tiles only"
                )
            try:
                self.field_settings().check()
            except ValueError as err:
                raise InputError(str(err)) from None

    def result_settings(self) -> dict:
        values = dataclasses.asdict(self)
        values["bands"] = list(self.bands)
        values["flux_scale"] = None if self.flux_scale is None else list(np.broadcast_to(self.flux_scale, 3).tolist())
        return {k: values[k] for k in RESULT_SETTINGS}


# ------------------------------------------------------------------------------------------ reading
class SourceDataset(torch.utils.data.Dataset):
    """Reads source ``i`` (in a DataLoader worker); a file that cannot be used gives ``{"error": message}``."""

    def __init__(self, sources: list[Source], flux_scale=None):
        self.sources, self.flux_scale = sources, flux_scale

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> dict:
        start = time.perf_counter()
        try:
            item = load(self.sources[i], self.flux_scale)
        except ImageError as err:
            return {"index": i, "error": str(err)}
        except Exception as err:  # noqa: BLE001 - any library failure on a bad file is that file's error
            return {"index": i, "error": f"{self.sources[i].source}: unreadable ({type(err).__name__}: {err})"}
        item.update(index=i, read_s=time.perf_counter() - start)
        try:  # the star/galaxy measurements need only the image: here, beside the model
            item["stars"] = separate_image(item["rgb"], valid=item["valid"])
        except Exception as err:  # noqa: BLE001 - sep failing on an odd image is that image's error
            return {
                "index": i,
                "error": f"{self.sources[i].source}: star/galaxy measurement failed ({type(err).__name__}: {err})",
            }
        return item


def default_workers() -> int:
    """DataLoader workers reading the inputs when ``--workers`` is not given: 0 on a machine of 2 cores or fewer
    (reading and the star measurements then run between forward passes: on 2 cores a worker process only takes a
    core from the model's two threads, 15 against 17 cutouts/s, BENCHMARKS.md), else 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else 1


def _collate(items):
    return items


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # the workers share the cores with the model


# ------------------------------------------------------------------------------------------ outputs of one input
def _record_head(source: Source, status: str, rank: int) -> dict:
    """The first keys of every record: which input, its status and the process that wrote it."""
    return {"name": source.name, "source": source.source, "paths": list(source.paths), "status": status, "rank": rank}


def _write_record(out: Path, source: Source, record: dict) -> dict:
    """Write ``record`` as ``OUT/records/NAME.json`` (atomically: an input with a record is done); returns it."""
    write_json_atomic(out / RECORDS / f"{source.name}.json", record)
    return record


def _write_maps(cfg: PredictConfig, out: Path, source: Source, object_map, rows: list[dict], wcs, rgb) -> list[Path]:
    """The segmentation map of one input and, with ``cfg.overlays``, its overlay.

    Parameters
    ----------
    cfg : PredictConfig
        The run's settings (``overlays``).
    out : pathlib.Path
        The run's output folder.
    source : src.data.sources.Source
        The input (its name names the files; FITS inputs get a FITS map).
    object_map : numpy.ndarray
        (H, W) int object map of the input, objects 1..n in catalog order, 0 elsewhere.
    rows : list of dict
        The catalog rows of the objects (their classes colour the map and the overlay).
    wcs : astropy.wcs.WCS or None
        The input's celestial WCS, written into a FITS map's header.
    rgb : callable
        ``rgb()`` -> the (H, W, 3) uint8 image, called only for the overlay.

    Returns
    -------
    list of pathlib.Path
        The files written: ``segmentation/NAME.png|fits`` (and its companions), then ``overlays/NAME.png``.
    """
    seg = out / "segmentation" / (source.name + (".fits" if source.is_fits else ".png"))
    files = write_segmentation(seg, object_map, class_map(object_map, rows), wcs, source.source)
    if cfg.overlays:
        from src.data.images import write_png
        from src.evaluation.visual import overlay

        files.append(out / "overlays" / f"{source.name}.png")
        write_png(files[-1], overlay(rgb(), object_map, rows))
    return files


def _finish(
    cfg: PredictConfig, out: Path, source: Source, item: dict, probs, task_result, model_s: float, rank: int, writer
) -> Future:
    """Objects and catalog rows of one input (here), then its files, written by the ``writer`` thread pool
    (mostly waiting for the disk, which the model's compute then hides): segmentation, overlay, and the record
    last.  Returns the future of the record."""
    tic = time.perf_counter()
    objects, scores, dropped = find_objects(
        probs, task_result, cfg.task, item["valid"], cfg.min_area, cfg.score_threshold
    )
    rows = measure_objects(objects, probs, scores, item["wcs"])
    table, stars = item["stars"]
    agreement = apply_star_rule(rows, sources_of_objects(objects, table), stars, cfg.stars)
    rows = [{"source": source.source, **row} for row in rows]
    record = {
        **_record_head(source, "ok", rank),
        "n_objects": len(rows),
        "dropped": int(dropped),
        "rows": rows,
        "stars": {**stars.summary(), **agreement},
        "size": list(item["rgb"].shape[:2]),
        "wcs": item["wcs"] is not None if source.is_fits else None,
        **item["info"],
        "read_s": round(item["read_s"], 4),
        "model_s": round(model_s, 4),
    }

    def write() -> dict:
        files = _write_maps(cfg, out, source, objects, rows, item["wcs"], lambda: item["rgb"])
        record.update(outputs=[str(f.relative_to(out)) for f in files], post_s=round(time.perf_counter() - tic, 4))
        return _write_record(out, source, record)

    return writer.submit(write)


def _finish_field(cfg: PredictConfig, out: Path, source: Source, model, processor, flux_scale, rank: int) -> dict:
    """One survey frame (``--field``): read region by region (FITS memory-mapped), its objects found by the field
    strategy (``src.field.run``), then the same outputs as for a cutout: catalog rows (with ``edge``),
    segmentation map with the frame's WCS, overlay, and the record last."""
    from src.field.frame import open_frame
    from src.field.run import measure, peak_rss_gib, predict_field

    tic = time.perf_counter()
    frame = open_frame(source, flux_scale)
    try:
        result = predict_field(frame, model, processor, cfg.field_settings(), progress=not cfg.quiet)
        step = time.perf_counter()
        rows = [{"source": source.source, **row} for row in measure(result, frame.wcs, cfg.stars)]
        result.timings["measure_s"] = time.perf_counter() - step
        step = time.perf_counter()
        whole = (slice(None), slice(None))
        files = _write_maps(cfg, out, source, result.object_map, rows, frame.wcs, lambda: frame.region(*whole)[0])
        result.timings["write_s"] = time.perf_counter() - step
        record = {
            **_record_head(source, "ok", rank),
            "n_objects": len(rows),
            "dropped": result.counts.get("duplicate", 0) + result.counts.get("too_small", 0),
            "rows": rows,
            "size": list(frame.shape),
            "wcs": frame.wcs is not None if source.is_fits else None,
            **frame.info(),
            "stars": {**result.stars.summary(), **{k: result.counts.get(k, 0) for k in STAR_AGREEMENT}},
            "field": {
                "strategy": cfg.strategy,
                "counts": result.counts,
                "timings": {k: round(v, 4) for k, v in result.timings.items()},
                "peak_rss_gib": {**result.peak_rss_gib, "written": peak_rss_gib()},
            },
            "outputs": [str(f.relative_to(out)) for f in files],
            "seconds": round(time.perf_counter() - tic, 4),
        }
    finally:
        frame.close()
    return _write_record(out, source, record)


def _failed(out: Path, source: Source, error: str, rank: int) -> dict:
    """The record of an input that failed (``error``: the message naming it), written."""
    return _write_record(out, source, {**_record_head(source, "failed", rank), "error": error})


def _done(out: Path, source: Source, overlays: bool) -> bool:
    """Has ``source`` a record of success whose outputs all exist, its overlay too when ``overlays`` (resume)?"""
    path = out / RECORDS / f"{source.name}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    wanted = [*record.get("outputs", []), *([f"overlays/{source.name}.png"] if overlays else [])]
    return (
        record.get("status") == "ok"
        and record.get("source") == source.source
        and all((out / f).is_file() for f in wanted)
    )


# ------------------------------------------------------------------------------------------ the run
def _pending(cfg: PredictConfig, out: Path, sources: list[Source]) -> list[Source]:
    """The sources still to do; refuses an ``out`` that holds another run, or a resume with other settings.
    An ``out`` whose earlier run wrote no record (it failed or was killed first) counts as new."""
    settings_path = out / SETTINGS_FILE
    if not _has_records(out):
        _refuse_foreign(cfg, out)
        return list(sources)
    if not settings_path.is_file():
        raise InputError(
            f"{out}: holds {RECORDS}/ but no {SETTINGS_FILE}: not the output of a predict.py run; choose another --out"
        )
    if not cfg.resume:
        raise InputError(f"{out} holds the results of an earlier run: --resume continues it, or choose another --out")
    previous = _read_settings(settings_path)
    settings = cfg.result_settings()
    changed = [
        f"{k}: {previous.get(k)!r} -> {settings[k]!r}" for k in RESULT_SETTINGS if previous.get(k) != settings[k]
    ]
    if changed:
        raise InputError(f"{out}: cannot resume with other settings ({'; '.join(changed)})")
    _keep_earlier_names(out, sources)
    return [s for s in sources if not _done(out, s, cfg.overlays)]


#: What a run writes in --out (besides src.atomic's temporary files and the lock).
OWN_FILES = (SETTINGS_FILE, REPORT_FILE, *(f"catalog.{fmt}" for fmt in CATALOG_FORMATS))
OWN_FOLDERS = (RECORDS, "segmentation", "overlays")
LOCK_FILE = ".predict.lock"


def check_values(cfg: PredictConfig) -> None:
    """``InputError`` for option values outside their range (argparse's ``float`` takes ``nan`` and ``inf``)."""
    if not 0.0 <= cfg.score_threshold <= 1.0:  # false for NaN too
        raise InputError(f"--score-threshold must be a number in [0, 1], got {cfg.score_threshold}")
    if cfg.detect_thresh is not None and not (np.isfinite(cfg.detect_thresh) and cfg.detect_thresh > 0):
        raise InputError(f"--detect-thresh must be a positive number, got {cfg.detect_thresh}")


def _has_records(out: Path) -> bool:
    return (out / RECORDS).is_dir() and any((out / RECORDS).glob("*.json"))


def _read_settings(path: Path) -> dict:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: unreadable ({err}); not the settings of a predict.py run") from None
    if not isinstance(settings, dict) or "model" not in settings:
        raise InputError(f"{path}: not the settings of a predict.py run")
    return settings


def _refuse_foreign(cfg: PredictConfig, out: Path) -> None:
    """``out`` without a record of a predict.py run: refuse to write over files of the same names that no run
    wrote (no settings file beside them), and a ``--resume`` of a folder that holds no run."""
    if not out.is_dir() or (out / SETTINGS_FILE).is_file():
        return
    ours = [name for name in (*OWN_FILES, *OWN_FOLDERS) if (out / name).exists()]
    if ours:
        raise InputError(
            f"{out}: holds {', '.join(ours)} but no {SETTINGS_FILE}: not the output of a predict.py "
            f"run, which would replace them; choose another --out"
        )
    others = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
    if cfg.resume and others:
        raise InputError(
            f"{out}: nothing to resume: no predict.py run in this folder (no {SETTINGS_FILE}; it holds "
            f"{', '.join(others[:3])}{', ...' if len(others) > 3 else ''})"
        )


def _read_record(path: Path) -> dict | None:
    """A record, or None (logged) for a file in ``records/`` that is not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        logger.warning(f"{path}: not a record of predict.py, left out ({err})")
        return None
    if not isinstance(record, dict) or not isinstance(record.get("source"), str) or "status" not in record:
        logger.warning(f"{path}: not a record of predict.py, left out")
        return None
    return record


def _keep_earlier_names(out: Path, sources: list[Source]) -> None:
    """A resumed run may be given other INPUTs than the earlier one (the run is extended; every earlier record
    stays in the catalog): a source whose output name is taken by a record of another source gets the next free
    ``NAME-k``, so that no earlier record or segmentation map is replaced."""
    earlier = {}
    for path in (out / RECORDS).glob("*.json"):
        record = _read_record(path)
        earlier[path.stem] = None if record is None else record["source"]
    taken = {name.casefold() for name in earlier} | {s.name.casefold() for s in sources}
    for source in sources:
        if earlier.get(source.name, source.source) == source.source:
            continue
        k = 2
        while f"{source.name}-{k}".casefold() in taken:
            k += 1
        source.name = f"{source.name}-{k}"
        taken.add(source.name.casefold())


def _earlier_records(out: Path, names: set[str]) -> list[dict]:
    """The records in ``out`` of inputs that are not among this run's (``names``): an earlier run extended with
    ``--resume`` and other INPUTs.  In name order."""
    records = []
    for path in sorted((out / RECORDS).glob("*.json")):
        if path.stem not in names:
            record = _read_record(path)
            if record is not None:
                records.append(record)
    return records


def _warn_wcs(inputs: list[dict], no_wcs: list[str]) -> None:
    """FITS inputs without sky coordinates: one line for those without a WCS, one per input whose WCS is broken
    (saying what is wrong with it)."""
    broken = {i["source"]: i["wcs_problem"] for i in inputs if i.get("wcs_problem") and i["source"] in no_wcs}
    plain = [s for s in no_wcs if s not in broken]
    if plain:
        logger.warning(
            f"{len(plain)} FITS input(s) have no celestial WCS; their objects have pixel coordinates "
            f"only (e.g. {plain[0]})"
        )
    for problem in broken.values():
        logger.warning(f"unusable WCS: {problem}; its objects have pixel coordinates only")


@contextmanager
def _claim(out: Path, main_process: bool):
    """The main process's exclusive use of ``out`` (``src.atomic.folder_lock``: a second run into it is refused,
    naming this one).  When the run fails before any record is written, what it wrote is removed (and ``out``
    itself when it created it): the corrected command then runs in the same folder, with any settings."""
    if not main_process:
        yield
        return
    existed = out.exists()
    before = {name for name in OWN_FOLDERS if (out / name).exists()}
    failed = False
    try:
        with folder_lock(out, LOCK_FILE, "predict.py"):
            try:
                yield
            except BaseException:
                failed = True
                if not _has_records(out):
                    (out / SETTINGS_FILE).unlink(missing_ok=True)
                    for name in set(OWN_FOLDERS) - before:
                        shutil.rmtree(out / name, ignore_errors=True)
                raise
    finally:
        if failed and not existed:
            try:
                out.rmdir()  # only when empty
            except OSError:
                pass


def _remove_temporary_files(out: Path) -> None:
    """What a killed run left half-written (``src.atomic`` names its temporary files ``.NAME.*``)."""
    stale = [*out.glob(".catalog.*"), *out.glob(".predict_*")]
    for folder in (RECORDS, "segmentation", "overlays"):
        stale += (out / folder).glob(".*")
    for path in stale:
        path.unlink()


def _run_field_share(
    cfg: PredictConfig, out: Path, mine: list[Source], model, processor, flux_scale, rank: int, progress
) -> list[dict]:
    """``--field``: this process's frames one at a time (each read region by region, the model run on its stamps
    or tiles); returns their records."""
    processed = []
    for source in mine:
        try:
            processed.append(_finish_field(cfg, out, source, model, processor, flux_scale, rank))
        except (ImageError, OSError, ValueError) as err:  # frames are read lazily: astropy / sep errors land here
            message = str(err) if isinstance(err, ImageError) else f"{source.source}: unreadable frame ({err})"
            if not cfg.skip_bad:
                raise ImageError(f"{message} (--skip-bad goes on without it)") from None
            processed.append(_failed(out, source, message, rank))
        progress(1)
    return processed


def _run_share(
    cfg: PredictConfig, out: Path, mine: list[Source], model, processor, rank: int, progress=lambda n: None
) -> list[dict]:
    """Segment this process's sources; returns their records.  ``progress(n)``: n more sources are done."""
    flux_scale = None if cfg.flux_scale is None else np.broadcast_to(np.asarray(cfg.flux_scale, float), 3)
    if cfg.field:
        return _run_field_share(cfg, out, mine, model, processor, flux_scale, rank, progress)
    workers = default_workers() if cfg.workers is None else cfg.workers
    loader = torch.utils.data.DataLoader(
        SourceDataset(mine, flux_scale),
        batch_size=cfg.batch_size,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
    )
    processed: list = []  # records, or futures of records
    writer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict-writer")

    def fail(source: Source, error: str) -> None:
        if not cfg.skip_bad:
            raise ImageError(error + " (--skip-bad goes on without it)")
        processed.append(_failed(out, source, error, rank))

    try:
        for batch in loader:
            for item in batch:
                if "error" in item:
                    fail(mine[item["index"]], item["error"])
            good = [item for item in batch if "error" not in item]
            results = segment(model, processor, [item["rgb"] for item in good], cfg.task, cfg.tta, cfg.batch_size)
            for item, (probs, task_result, model_s) in zip(good, results):
                source = mine[item["index"]]
                if not np.isfinite(probs).all():  # a broken model: said, never turned into background
                    fail(source, f"{source.source}: the model's output is not finite (NaN / inf)")
                    continue
                future = _finish(cfg, out, source, item, probs, task_result, model_s, rank, writer)
                future.source = source
                processed.append(future)
            progress(len(batch))
    finally:
        writer.shutdown(wait=True)
    return [_written(p, cfg, out, rank) for p in processed]


def _written(p, cfg: PredictConfig, out: Path, rank: int) -> dict:
    """The record of ``p`` (a record, or the future of one).  A ``ValueError`` while writing one input's outputs
    (a value its formats cannot hold) is that input's failure, skipped with ``--skip-bad`` like an unreadable
    image; any other error (``OSError``: a full disk) stops the run."""
    if not isinstance(p, Future):
        return p
    try:
        return p.result()
    except ValueError as err:
        message = f"{p.source.source}: its outputs cannot be written ({err})"
        if not cfg.skip_bad:
            raise ImageError(message + " (--skip-bad goes on without it)") from None
        return _failed(out, p.source, message, rank)


def predict(cfg: PredictConfig, model=None, processor=None) -> dict:
    """Run ``cfg``; returns the report (the main process writes it with the catalog) with ``exit_status``.

    ``model`` / ``processor``: an already loaded pair (tests, notebooks); otherwise ``cfg.model`` is loaded with
    ``src.modelling.model.load_model``.  Raises ``InputError`` (settings that cannot work, INPUTs that give nothing) and
    ``ImageError`` (an unusable image) unless ``skip_bad``.
    """
    from accelerate import PartialState

    cfg.check()
    check_values(cfg)
    started = time.perf_counter()
    state = PartialState(cpu=cfg.cpu or cfg.device == "cpu")
    with _claim(Path(cfg.out), state.is_main_process):
        return _predict(cfg, model, processor, state, started)


def _predict(cfg: PredictConfig, model, processor, state, started: float) -> dict:
    from src.progress import progress_bar

    out = Path(cfg.out)
    discovery = discover(cfg.inputs, cfg.bands)
    if discovery.problems and not cfg.skip_bad:
        more = len(discovery.problems) - 5
        raise InputError(
            "; ".join(p["error"] for p in discovery.problems[:5])
            + (f" (and {more} more)" if more > 0 else "")
            + " (--skip-bad goes on without them)"
        )
    if not discovery.sources and not discovery.problems:
        raise InputError("no images found in the INPUTs")
    pending = _pending(cfg, out, discovery.sources)
    if cfg.resume and state.is_main_process:
        _remove_temporary_files(out)
    state.wait_for_everyone()  # every process has listed what is done before anyone writes
    if state.is_main_process:
        write_json_atomic(out / SETTINGS_FILE, cfg.result_settings(), indent=1)

    # With several processes each one takes its own accelerator (state.device); only --device cpu overrides that.
    several = state.num_processes > 1
    device = state.device if several or not cfg.device else torch.device(cfg.device)
    asked = torch.device(cfg.device) if cfg.device else None
    if several and asked is not None and (asked.type, asked.index or device.index) != (device.type, device.index):
        logger.warning(f"--device {cfg.device} ignored: with {state.num_processes} processes each uses {device}")
    if device.type == "cpu" and state.num_processes > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // state.num_processes))
    load_s = 0.0
    if pending and model is None:
        from src.modelling.model import load_model

        tic = time.perf_counter()
        model, processor = load_model(cfg.model, base_card=cfg.base_card, device=device)
        load_s = time.perf_counter() - tic
    if model is not None:
        model.to(device).eval()
        set_precision(model, resolve_precision(cfg.precision, device))

    tic = time.perf_counter()
    with state.split_between_processes(pending) as mine:
        with progress_bar(
            total=len(pending), desc="predict", unit="img", disable=cfg.quiet or not state.is_main_process
        ) as bar:
            # the main process's bar stands for all of them (they have equal shares)
            processed = _run_share(
                cfg,
                out,
                mine,
                model,
                processor,
                state.process_index,
                lambda n: bar.update(min(n * state.num_processes, bar.total - bar.n)),
            )
    predict_s = time.perf_counter() - tic
    state.wait_for_everyone()
    if not state.is_main_process:
        return {"exit_status": int(any(r["status"] != "ok" for r in processed))}
    timings = {"model_load_s": round(load_s, 3), "predict_s": round(predict_s, 3)}
    report = merge(cfg, discovery, pending, state.num_processes, timings, started)
    if cfg.report:
        from src.inference.report import write_report

        write_report(out)
    return report


def merge(cfg: PredictConfig, discovery, pending: list[Source], world_size: int, timings: dict, started: float) -> dict:
    """Catalog and report from the records of all inputs (main process)."""
    tic = time.perf_counter()
    out = Path(cfg.out)
    pending_names = {s.name for s in pending}
    rows, inputs, ranks, no_wcs = [], [], set(), []
    for source in discovery.sources:
        path = out / RECORDS / f"{source.name}.json"
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or record.get("source") != source.source:  # a record of another input: not this one's
            record = {"status": "missing", "source": source.source}
        if record["status"] == "ok":
            rows += record["rows"]
            if record.get("wcs") is False:
                no_wcs.append(source.source)
        if source.name in pending_names and "rank" in record:
            ranks.add(record["rank"])
        inputs.append(
            {k: v for k, v in record.items() if k not in ("rows", "paths", "name")}
            | {"resumed": source.name not in pending_names}
        )
    failed = [i for i in inputs if i["status"] != "ok"]
    earlier = _earlier_records(out, {s.name for s in discovery.sources})  # the catalog holds every record's rows
    rows = [row for r in earlier if r["status"] == "ok" for row in r.get("rows", [])] + rows
    inputs = [
        {k: v for k, v in r.items() if k not in ("rows", "paths", "name")} | {"earlier_run": True} for r in earlier
    ] + inputs
    skipped = [{"source": p["input"], "status": "failed", "error": p["error"]} for p in discovery.problems]
    catalog = write_catalog(rows, out / f"catalog.{cfg.catalog_format}", cfg.catalog_format)
    counts = Counter(r["class"] for r in rows)
    _warn_wcs(inputs, no_wcs)
    for item in failed + skipped:
        logger.warning(f"skipped: {item.get('error', item['status'])}")
    timings.update(merge_s=round(time.perf_counter() - tic, 3), total_s=round(time.perf_counter() - started, 3))
    report = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": cfg.model,
        "settings": {
            **cfg.result_settings(),
            "batch_size": cfg.batch_size,
            "workers": default_workers() if cfg.workers is None else cfg.workers,
            "catalog_format": cfg.catalog_format,
            "overlays": cfg.overlays,
            "skip_bad": cfg.skip_bad,
            "resume": cfg.resume,
        },
        "world_size": world_size,
        "ranks_seen": sorted(ranks),
        "counts": {
            "inputs": len(discovery.sources) + len(discovery.problems),
            "images": len(discovery.sources),
            "ok": len(discovery.sources) - len(failed),
            "failed": len(failed) + len(skipped),
            "processed_now": len(pending),
            "resumed": len(discovery.sources) - len(pending),
            "duplicates": discovery.duplicates,
            "ignored_files": discovery.ignored,
            "objects": len(rows),
            "by_class": {name: counts.get(name, 0) for name in GALAXY_CLASSES},
            "point_sources": sum(bool(r.get("point_source")) for r in rows),
            **{key: sum(i.get("stars", {}).get(key, 0) for i in inputs) for key in STAR_AGREEMENT[1:]},
            "no_wcs": len(no_wcs),
            "earlier_run": {
                "ok": sum(r["status"] == "ok" for r in earlier),
                "failed": sum(r["status"] != "ok" for r in earlier),
            },
        },
        "catalog": str(catalog.relative_to(out)),
        "timings": timings,
        "inputs": inputs + skipped,
    }
    write_json_atomic(out / REPORT_FILE, report, indent=1)
    report["exit_status"] = 1 if failed or skipped else 0
    return report


# ------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    """The parser of ``predict.py``, one option per :class:`PredictConfig` field (defaults and help from there).

    Returns
    -------
    argparse.ArgumentParser
        The options in the fields' order, then ``src.cli``'s output options, then the ``--field`` group.
    """
    from src.cli import add_output_options

    p = argparse.ArgumentParser(
        prog="predict.py",
        description="Segment and classify galaxies in your own images with a trained model: a catalog "
        "(pixel and sky coordinates), segmentation maps, overlays.",
        epilog="Several processes: accelerate launch predict.py ... (or torchrun --nproc_per_node N predict.py ...).",
    )
    options = [f for f in dataclasses.fields(PredictConfig) if f.metadata.get("help") is not None]
    for f in options:
        if f.metadata["group"] is None:
            _add_option(p, f)
    add_output_options(p)
    groups = {}
    for f in options:
        name = f.metadata["group"]
        if name is not None:
            if name not in groups:
                groups[name] = p.add_argument_group(name)
            _add_option(groups[name], f)
    return p


def _add_option(parser, f: dataclasses.Field) -> None:
    """The option of :class:`PredictConfig` field ``f`` (see :func:`_option`), added to ``parser`` (or a group)."""
    cli = dict(f.metadata["cli"])
    flags = cli.pop("flags", ("--" + f.name.replace("_", "-"),))
    if f.default is not dataclasses.MISSING:
        cli["default"] = f.default
    parser.add_argument(*flags, help=f.metadata["help"], **cli)


def config_from_args(args: argparse.Namespace) -> PredictConfig:
    """The :class:`PredictConfig` of parsed ``predict.py`` arguments (:func:`build_parser`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments: one attribute per field.

    Returns
    -------
    PredictConfig
        Each field's value, converted by its ``convert`` (a list of bands -> a tuple, ...).
    """
    values = {}
    for f in dataclasses.fields(PredictConfig):
        convert = f.metadata.get("convert")
        value = getattr(args, f.name)
        values[f.name] = value if convert is None else convert(value)
    return PredictConfig(**values)


def main(argv=None, model=None, processor=None) -> int:
    """The CLI; returns the exit status: 0 all done, 1 some inputs failed (--skip-bad), 2 a user's mistake or an
    unusable input (one line naming it; ``-v`` adds the traceback)."""
    from src.cli import run_cli, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.quiet, args.verbose)

    def body() -> int:
        report = predict(config_from_args(args), model, processor)
        if not args.quiet and "counts" in report:
            counts = report["counts"]
            print(
                f"{counts['ok']} of {counts['images']} images, {counts['objects']} objects -> "
                f"{Path(args.out) / report['catalog']} ({report['timings']['total_s']:.1f} s)"
            )
        return report["exit_status"]

    return run_cli("predict.py", body, verbose=args.verbose)
