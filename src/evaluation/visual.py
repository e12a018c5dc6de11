"""Evaluation figures: confusion matrix, per-class bars, and the side-by-side model comparisons
(``images/seg_comparison.png``, ``images/seginst_comparison.png``).  Colours come from ``src.classes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from skimage.segmentation import find_boundaries

from src.atomic import atomic_path
from src.classes import CLASS_NAMES, COLOURS, GALAXY_CLASSES, colour_palette

#: Detections drawn in the instance comparison: score above this (the HF demo threshold).  A display choice, not
#: ``src.inference.objects.SCORE_THRESHOLD`` (0.2, calibrated: the lowest score of what ``predict.py`` calls an object).
FIGURE_SCORE_THRESHOLD = 0.5
#: What :func:`compare_models` draws for each task it can draw: the output of
#: ``src.inference.segmentation.run_model`` that becomes a panel.
DRAWN_OUTPUT = {"semantic": "class_map", "instance": "instances"}
#: Image-level labels: 0 means that no galaxy pixel was predicted.
IMAGE_CLASS_NAMES = ("no galaxy", *GALAXY_CLASSES)


def save_figure(fig, path, dpi: int = 110, palette: bool = False, **savefig_kwargs) -> Path:
    """``fig.savefig`` atomically (temporary file beside ``path``, then rename); default ``bbox_inches="tight"``.
    ``palette``: a PNG with an adaptive 256-colour palette (README figures stay small)."""
    import io

    from PIL import Image

    savefig_kwargs.setdefault("bbox_inches", "tight")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, keep_suffix=True) as tmp:
        if not palette:
            fig.savefig(tmp, dpi=dpi, **savefig_kwargs)
        else:
            buffer = io.BytesIO()
            fig.savefig(buffer, dpi=dpi, format="png", **savefig_kwargs)
            buffer.seek(0)
            Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(
                tmp, format="PNG", optimize=True
            )
    return Path(path)


def colourise(class_map: np.ndarray) -> np.ndarray:
    """RGB uint8 image of a class-id map (background black)."""
    palette = np.asarray(colour_palette(), dtype=np.uint8)
    return palette[np.asarray(class_map, dtype=np.intp)]


def draw_instances(shape: tuple[int, int], instances: Sequence[tuple[int, np.ndarray]]) -> np.ndarray:
    """RGB uint8 image of ``[(class_id, mask)]`` painted in order (later on top), instance outlines in white."""
    out = np.zeros((*shape, 3), dtype=np.uint8)
    palette = np.asarray(colour_palette(), dtype=np.uint8)
    for class_id, mask in instances:
        out[mask] = palette[class_id]
    for _, mask in instances:
        out[find_boundaries(mask, mode="inner")] = 255
    return out


def class_legend(fig, class_names: Sequence[str] = CLASS_NAMES, **kwargs):
    handles = [Patch(facecolor=np.asarray(COLOURS[n]) / 255, edgecolor="grey", label=n) for n in class_names]
    return fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, **kwargs)


def plot_confusion_matrix(
    confusion, class_names: Sequence[str] = CLASS_NAMES, normalise: bool = True, title: str = "", ax=None
):
    """Heat map of a confusion matrix (rows = truth); ``normalise`` divides each row by its total.
    Rows and columns that are empty on both sides are left out; counts are printed in the cells."""
    cm = np.asarray(confusion, dtype=float)
    keep = [i for i in range(len(cm)) if cm[i].sum() > 0 or cm[:, i].sum() > 0]
    cm = cm[np.ix_(keep, keep)]
    names = [class_names[i] for i in keep]
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for r in range(len(names)):
        for c in range(len(names)):
            label = f"{shown[r, c]:.2f}\n({int(cm[r, c])})" if normalise else f"{int(cm[r, c])}"
            ax.text(
                c,
                r,
                label,
                ha="center",
                va="center",
                fontsize=7,
                color="white" if shown[r, c] > 0.6 * max(shown.max(), 1e-9) else "black",
            )
    ax.set_title(title)
    return ax.figure


def plot_per_class(
    values_by_model: Mapping[str, Mapping[str, float | None]],
    title: str = "",
    ylabel: str = "",
    class_names: Sequence[str] = GALAXY_CLASSES,
    ax=None,
):
    """Grouped bars: one group per class, one bar per model (``None`` values drawn as empty)."""
    labels = list(values_by_model)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.4 * len(class_names) + 2, 3.2))
    width = 0.8 / max(len(labels), 1)
    x = np.arange(len(class_names))
    for k, label in enumerate(labels):
        vals = [values_by_model[label].get(n) for n in class_names]
        bars = ax.bar(x + (k - (len(labels) - 1) / 2) * width, [v or 0 for v in vals], width, label=label)
        for bar, v in zip(bars, vals):
            ax.annotate(
                "-" if v is None else f"{v:.2f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(x, class_names, rotation=20)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(labels) > 1:
        ax.legend(fontsize=8)
    return ax.figure


def metrics_figures(metrics_by_model: Mapping[str, dict], out_dir=None) -> dict[str, object]:
    """Confusion matrices (image-level classification, one panel per model) and per-class IoU / AP bars from
    ``metrics.json`` dicts keyed by model label; with ``out_dir`` also saved as PNGs there."""
    figures = {}
    with_sem = {k: m["semantic"] for k, m in metrics_by_model.items() if m.get("semantic")}
    with_ap = {k: m["instance"]["coco"] for k, m in metrics_by_model.items() if (m.get("instance") or {}).get("coco")}
    if with_sem:
        fig, axes = plt.subplots(1, len(with_sem), figsize=(6 * len(with_sem), 5), squeeze=False)
        for ax, (label, sem) in zip(axes[0], with_sem.items()):
            plot_confusion_matrix(
                sem["classification"]["confusion_matrix"],
                IMAGE_CLASS_NAMES,
                title=f"{label}: image class (majority of galaxy pixels)",
                ax=ax,
            )
        fig.tight_layout()
        figures["confusion_matrix"] = fig
        figures["per_class_iou"] = plot_per_class(
            {k: s["semantic"]["per_class_iou"] for k, s in with_sem.items()},
            title="per-class IoU (semantic task, all pixels)",
            ylabel="IoU",
        )
    if with_ap:
        figures["per_class_ap"] = plot_per_class(
            {k: c["per_class_ap"] for k, c in with_ap.items()},
            title="per-class COCO mask AP .5:.95 (instance task)",
            ylabel="AP",
        )
    if out_dir is not None:
        for name, fig in figures.items():
            save_figure(fig, Path(out_dir) / f"{name}.png")
    return figures


# ------------------------------------------------------------------------------------------ comparisons
def comparison_figure(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Mapping[str, Sequence[np.ndarray]],
    title: str = "",
    row_labels: Sequence[str] | None = None,
):
    """Grid: one row per sample, columns image | ground truth | model A | model B ... (RGB arrays)."""
    columns = ["image", "ground truth", *predictions]
    n = len(images)
    fig, axes = plt.subplots(n, len(columns), figsize=(2.2 * len(columns), 2.2 * n + 0.8), squeeze=False)
    for r in range(n):
        panels = [images[r], truths[r], *(predictions[label][r] for label in predictions)]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
        if row_labels is not None:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    class_legend(fig, fontsize=8)
    return fig


def choose_samples(dataset, n_samples: int, seed: int = 0) -> list[int]:
    """Indices of ``n_samples`` images, one per galaxy class first (classes in turn), then at random; fixed
    by ``seed`` so that every model is shown on the same images."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    first_class = {}
    records = getattr(dataset, "records", None)  # GalaxyDataset: class ids without decoding images
    for i in order:
        classes = records[int(i)]["classes"] if records is not None else dataset[int(i)]["class_ids"]
        first_class.setdefault(int(classes[0]), int(i))
        if len(first_class) == len(GALAXY_CLASSES):
            break
    chosen = list(first_class.values())[:n_samples]
    chosen += [int(i) for i in order if int(i) not in chosen][: n_samples - len(chosen)]
    return sorted(chosen)


def compare_models(
    models: Mapping[str, object],
    data_root,
    out_png,
    task: str = "semantic",
    n_samples: int = 4,
    split: str = "test",
    seed: int = 0,
    base_card: str | None = None,
    device=None,
    score_threshold: float = FIGURE_SCORE_THRESHOLD,
    batch_size: int = 4,
):
    """Run every model on the same ``n_samples`` images of ``split`` conditioned on ``task`` and save the grid.

    Parameters
    ----------
    models : mapping
        Label -> anything :func:`src.modelling.model.load_model` accepts, or a ``(model, processor)`` pair.
    data_root : path-like
        The folder of the split files and images.
    out_png : path-like
        The figure, written atomically.
    task : str
        ``"semantic"``: predicted class maps; ``"instance"``: the detections scoring above ``score_threshold``,
        painted in their class colour with white outlines (highest score on top).  See :data:`DRAWN_OUTPUT`.
    n_samples : int
        Images shown (:func:`choose_samples`).
    split : str
        The split they come from.
    seed : int
        Fixes the images shown.
    base_card : str, optional
        Architecture of a bare ``.safetensors`` state dict.
    device : str or torch.device, optional
        Default: CUDA, else MPS, else CPU.
    score_threshold : float
        Lowest detection score drawn (class probability x mean mask probability, 0-1).
    batch_size : int
        Images in one forward pass (``src.inference.segmentation.run_model``, the path of the scores too).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import torch

    from src.evaluation.evaluate import ground_truth_dataset
    from src.inference.segmentation import pick_device, run_model
    from src.modelling.model import load_model

    if task not in DRAWN_OUTPUT:
        raise ValueError(f"task {task!r}: compare_models draws {' or '.join(map(repr, DRAWN_OUTPUT))}")
    if not models:
        raise ValueError("compare_models needs at least one model")
    dataset = ground_truth_dataset(data_root, split)
    items = [dataset[i] for i in choose_samples(dataset, n_samples, seed)]
    if DRAWN_OUTPUT[task] == "class_map":
        truths = [colourise(item["semantic"]) for item in items]
    else:
        truths = [
            draw_instances(
                item["semantic"].shape, [(c, item["instance"] == k) for k, c in enumerate(item["class_ids"], start=1)]
            )
            for item in items
        ]
    device = pick_device(device)
    predictions: dict[str, list[np.ndarray]] = {}
    for label, source in models.items():
        if isinstance(source, tuple):
            model, processor = source
            model.to(device)
        else:
            model, processor = load_model(str(source), base_card=base_card, device=device)
        results = run_model(
            model, processor, [item["image"] for item in items], task, (DRAWN_OUTPUT[task],), batch_size=batch_size
        )
        if DRAWN_OUTPUT[task] == "class_map":
            panels = [colourise(r["class_map"]) for r in results]
        else:
            panels = []
            for item, r in zip(items, results):
                kept = sorted((d for d in r["instances"] if d["score"] > score_threshold), key=lambda d: d["score"])
                panels.append(draw_instances(item["semantic"].shape, [(d["class_id"], d["mask"]) for d in kept]))
        predictions[str(label)] = panels
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    what = f"{task} task" + (
        "" if DRAWN_OUTPUT[task] == "class_map" else f" (detections scoring > {score_threshold:g})"
    )
    fig = comparison_figure(
        [item["image"] for item in items],
        truths,
        predictions,
        title=f"{split} samples, conditioned on the {what}",
        row_labels=[str(item["objid"]) for item in items],
    )
    save_figure(fig, out_png)
    return fig


def overlay(rgb: np.ndarray, objects: np.ndarray, rows: Sequence[Mapping], min_side: int = 384) -> np.ndarray:
    """The image with each object's outline in its class colour and a label ``<object> <class abbrev.> <score>``
    (``predict.py --overlays``).  ``rows``: catalog rows of the objects (``object``, ``class``, ``score``,
    ``x_min``, ``y_min`` in the map's pixels).  Images smaller than ``min_side`` px are enlarged by an integer
    factor (nearest neighbour) so that the labels stay readable.  Returns an RGB uint8 array."""
    from PIL import Image, ImageDraw

    from src.classes import ABBREVIATIONS

    factor = max(1, -(-min_side // max(objects.shape)))
    big = np.repeat(np.repeat(objects, factor, axis=0), factor, axis=1)
    out = np.repeat(np.repeat(np.asarray(rgb, np.uint8), factor, axis=0), factor, axis=1).copy()
    palette = np.asarray(colour_palette(), dtype=np.uint8)
    lut = np.zeros(int(objects.max(initial=0)) + 1, dtype=np.uint8)
    for row in rows:
        lut[row["object"]] = CLASS_NAMES.index(row["class"])
    edges = find_boundaries(big, mode="inner") & (big > 0)
    out[edges] = palette[lut[big[edges]]]
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    for row in rows:
        x, y = row["x_min"] * factor, max(0, row["y_min"] * factor - 11)
        text = f"{row['object']} {ABBREVIATIONS[row['class']]} {row['score']:.2f}"
        draw.text((x + 1, y + 1), text, fill=(0, 0, 0))
        draw.text((x, y), text, fill=tuple(int(v) for v in palette[CLASS_NAMES.index(row["class"])]))
    return np.asarray(image)
