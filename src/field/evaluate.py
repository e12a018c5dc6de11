"""Score a field strategy on annotated fields (``compute_scores.py --fields DIR``): every frame of the COCO file
through ``src.field.run.predict_field``, then ``src.field.score``.

The three set-ups of the README's field table are scored the same way on the same frames: ``cutout`` with a model
trained on cutouts, ``tiles`` with a model trained on fields, ``sep`` alone (class-agnostic).
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

from src.field.frame import RgbFrame
from src.field.run import FieldSettings, predict_field
from src.field.score import FieldEvaluator, MaskEncoder, StarGalaxyScorer, load_truth, object_predictions
from src.field.stars import sources_of_objects

#: The annotation file looked for in a fields folder (what ``python -m src.synthetic --field`` writes).
ANNOTATIONS = "field_annotations.json"


def annotation_path(fields) -> Path:
    """``fields``: a folder holding :data:`ANNOTATIONS`, or a COCO JSON file."""
    path = Path(fields)
    if path.is_dir():
        path = path / ANNOTATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no COCO annotation file (expected a folder with {ANNOTATIONS}, or the file)")
    return path


def evaluate_fields(
    fields,
    model_path=None,
    settings: FieldSettings | None = None,
    limit: int | None = None,
    device=None,
    base_card: str | None = None,
    progress: bool = True,
    model=None,
    processor=None,
) -> dict:
    """Metrics of ``settings.strategy`` on the annotated fields ``fields`` (see ``src.field.score``), with
    ``timings`` (seconds per frame and in total).  ``model_path`` is needed unless the strategy is ``sep``
    (or a loaded ``model`` / ``processor`` pair is given)."""
    from src.data.images import read_rgb
    from src.inference.segmentation import pick_device

    settings = settings or FieldSettings()
    settings.check()
    path = annotation_path(fields)
    truth = load_truth(path)
    images = truth["images"][:limit] if limit is not None else truth["images"]
    uses_model = settings.strategy != "sep"
    load_s = 0.0
    if uses_model and model is None:
        from src.modelling.model import load_model

        if model_path is None:
            raise ValueError(f"the {settings.strategy!r} strategy needs a model (--model)")
        tic = time.perf_counter()
        model, processor = load_model(model_path, base_card=base_card, device=pick_device(device))
        model.eval()
        load_s = time.perf_counter() - tic
    evaluator, star_scorer = FieldEvaluator(classes=uses_model), StarGalaxyScorer()
    per_frame, counts = [], {}
    for image in images:
        tic = time.perf_counter()
        rgb = read_rgb(image["path"])
        frame = RgbFrame(rgb, name=str(image["path"]))
        result = predict_field(frame, model, processor, settings, progress=progress)
        seconds = time.perf_counter() - tic
        sources = sources_of_objects(result.object_map, result.detections.table)
        artifacts = frozenset()
        if uses_model and settings.stars == "artifact":
            artifacts = frozenset(number - 1 for number, k in sources.items() if result.stars.point_source[k])
        predictions, class_map = object_predictions(
            result.objects, MaskEncoder(frame.shape), classes=uses_model, artifacts=artifacts
        )
        star_scorer.add(
            truth["truth"][image["id"]],
            truth["unannotated"][image["id"]],
            result.detections,
            result.stars,
            {k: predictions[number - 1]["class_id"] for number, k in sources.items()} if uses_model else None,
        )
        evaluator.process(
            [{"image": image, "truth": truth["truth"][image["id"]], "frame": rgb}],
            [{"predictions": predictions, "class_map": class_map if uses_model else None}],
        )
        per_frame.append(
            {
                "image": image["file_name"],
                "seconds": round(seconds, 3),
                "objects": len(result.objects),
                **{k: round(v, 3) for k, v in result.timings.items()},
            }
        )
        for key, value in result.counts.items():
            counts[key] = counts.get(key, 0) + int(value)
    metrics = evaluator.evaluate()
    metrics["star_galaxy"] = star_scorer.scores()
    metrics.update(
        {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "fields": str(path),
            "model": None if not uses_model else str(model_path or type(model).__name__),
            "strategy": settings.strategy,
            "settings": vars(settings).copy(),
            "counts": counts,
            "timings": {
                "model_load_s": round(load_s, 3),
                "frames": per_frame,
                "total_s": round(sum(f["seconds"] for f in per_frame), 3),
            },
        }
    )
    return metrics


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_field_table(metrics: dict) -> str:
    """A plain-text summary of :func:`evaluate_fields`' metrics."""
    det = metrics["detection"]
    lines = [
        f"fields: {metrics['fields']} ({metrics['n_fields']} frames, {metrics['n_truth']} annotated objects)",
        f"strategy: {metrics['strategy']}  model: {metrics['model']}",
        f"predicted objects: {metrics['n_predicted']}",
        f"completeness (IoU >= {det['match_iou']}): {_fmt(det['completeness'])}   purity: {_fmt(det['purity'])}",
        f"COCO mask AP (class-agnostic): {_fmt(metrics['coco_agnostic']['ap'])}  "
        f"AP50 {_fmt(metrics['coco_agnostic']['ap50'])}",
        f"galaxy-pixel IoU: {_fmt(metrics['galaxy_iou'])}",
    ]
    if "coco" in metrics:
        lines.append(f"COCO mask AP (5 classes): {_fmt(metrics['coco']['ap'])}  AP50 {_fmt(metrics['coco']['ap50'])}")
        lines.append(
            f"classification accuracy of matched objects: {_fmt(metrics['classification']['accuracy'])} "
            f"(n = {metrics['classification']['n']})"
        )
        iou = metrics["semantic"]["per_class_iou"]
        lines.append("per-class IoU: " + ", ".join(f"{k} {_fmt(v, 2)}" for k, v in iou.items()))
    for key, label in (
        ("completeness_by_area", "completeness by area (px)"),
        ("completeness_by_flux_r", "completeness by r flux"),
        ("purity_by_area", "purity by area (px)"),
        ("completeness_by_brightness", "completeness by measured brightness"),
        ("purity_by_brightness", "purity by measured brightness"),
    ):
        if key in det:
            cells = [
                f"[{_fmt(b['min'], 0)}, {_fmt(b['max'], 0)}): {_fmt(b['fraction'], 2)} (n={b['n']})" for b in det[key]
            ]
            lines.append(f"{label}: " + "; ".join(cells))
    for view, label in (("classical", "point sources (src.field.stars)"), ("catalog", "catalogued as class A")):
        separation = metrics.get("star_galaxy", {}).get(view, {})
        if not separation.get("n"):
            continue
        high = separation["above_10_sigma"]
        lines.append(
            f"star/galaxy, stars = {label}, above 10 sigma: stars {high['n_stars']} (completeness "
            f"{_fmt(high['star_completeness'])}, purity {_fmt(high['star_purity'])}), galaxies "
            f"{high['n_galaxies']} (completeness {_fmt(high['galaxy_completeness'])}, purity "
            f"{_fmt(high['galaxy_purity'])})"
        )
        for b in separation["by_snr"]:
            lines.append(
                f"  S/N [{_fmt(b['min'], 0)}, {_fmt(b['max'], 0)}): stars {b['n_stars']} c "
                f"{_fmt(b['star_completeness'], 2)} p {_fmt(b['star_purity'], 2)}; galaxies {b['n_galaxies']} "
                f"c {_fmt(b['galaxy_completeness'], 2)} p {_fmt(b['galaxy_purity'], 2)}"
            )
    lines.append(
        f"time: {metrics['timings']['total_s']:.1f} s for {metrics['n_fields']} frames "
        f"(+ {metrics['timings']['model_load_s']:.1f} s model load)"
    )
    return "\n".join(lines)
