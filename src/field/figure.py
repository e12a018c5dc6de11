"""The field figure of the README (``images/field_example.png``): a synthetic field, its annotations and the
objects each set-up finds, side by side, in the class colours of ``src.classes`` (sep alone: grey, no class).

    python -m src.field.figure --fields DIR [--image-id 1] [--crop X Y SIDE] --out images/field_example.png \\
        --panel "cutout, demo model=cutout:MODEL" --panel "tiles, field model=tiles:MODEL" --panel "sep alone=sep"

STRATEGY: ``cutout`` (GZ2 stamp rule), ``cutout-native`` (``--stamp-scale native``), ``tiles`` or ``sep``.
"""

from __future__ import annotations

import argparse

import numpy as np

SEP_GREY = (170, 170, 170)


def _instances(objects, probs_class: bool) -> list[tuple[int, np.ndarray, tuple[int, int]]]:
    from src.field.score import object_class

    return [(object_class(o.probs, o.mask) if probs_class else -1, o.mask, (o.y0, o.x0)) for o in objects]


def paint(shape: tuple[int, int], instances, window) -> np.ndarray:
    """RGB of ``(class id or -1 for no class, mask, (y0, x0))`` objects inside ``window`` (y0, x0, side), with
    white outlines."""
    from skimage.segmentation import find_boundaries

    from src.classes import colour_palette

    y0, x0, side = window
    palette = np.asarray(colour_palette(), dtype=np.uint8)
    out = np.zeros((side, side, 3), dtype=np.uint8)
    edges = np.zeros((side, side), dtype=bool)
    for class_id, mask, (oy, ox) in instances:
        full = np.zeros((side, side), dtype=bool)
        ys, xs = np.nonzero(mask)
        ys, xs = ys + oy - y0, xs + ox - x0
        inside = (ys >= 0) & (ys < side) & (xs >= 0) & (xs < side)
        if not inside.any():
            continue
        full[ys[inside], xs[inside]] = True
        out[full] = palette[class_id] if class_id >= 0 else SEP_GREY
        edges |= find_boundaries(full, mode="inner")
    out[edges] = 255
    return out


def field_figure(fields, image_id: int, panels: list[tuple[str, str, str | None]], out, crop=None):
    """Draw the figure: ``panels`` = ``(title, strategy, model path or None)``."""
    import matplotlib.pyplot as plt
    from pycocotools import mask as mask_utils

    from src.classes import CLASS_NAMES
    from src.data.images import read_rgb
    from src.evaluation.visual import class_legend, save_figure
    from src.field.evaluate import annotation_path
    from src.field.frame import RgbFrame
    from src.field.run import FieldSettings, predict_field
    from src.field.score import load_truth
    from src.modelling.model import load_model

    truth = load_truth(annotation_path(fields))
    image = next(im for im in truth["images"] if im["id"] == image_id)
    rgb = read_rgb(image["path"])
    x0, y0, side = crop if crop else (0, 0, min(rgb.shape[:2]))
    window = (y0, x0, side)
    frame = RgbFrame(rgb)
    columns = [("frame", rgb[y0 : y0 + side, x0 : x0 + side])]
    gt = [(a["class_id"], mask_utils.decode(a["rle"]).astype(bool), (0, 0)) for a in truth["truth"][image_id]]
    columns.append((f"annotations ({len(gt)})", paint(frame.shape, gt, window)))
    models = {}
    for title, strategy, model_path in panels:
        model = processor = None
        if model_path is not None:
            if model_path not in models:
                models[model_path] = load_model(model_path, device="cpu")
                models[model_path][0].eval()
            model, processor = models[model_path]
        scale = "native" if strategy == "cutout-native" else "fill"
        settings = FieldSettings(strategy=strategy.removesuffix("-native"), stamp_scale=scale)
        result = predict_field(frame, model, processor, settings)
        columns.append(
            (
                f"{title} ({len(result.objects)})",
                paint(frame.shape, _instances(result.objects, settings.strategy != "sep"), window),
            )
        )
    fig, axes = plt.subplots(1, len(columns), figsize=(3.3 * len(columns), 3.7))
    for ax, (title, picture) in zip(np.atleast_1d(axes), columns):
        ax.imshow(picture)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    class_legend(fig, CLASS_NAMES[1:], fontsize=8)
    fig.suptitle(
        f"{image['file_name']}: {side} x {side} px from ({x0}, {y0}); counts are for the whole frame", fontsize=9
    )
    save_figure(fig, out)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.field.figure", description=__doc__.split("\n\n")[0])
    p.add_argument("--fields", required=True, help="folder with field_annotations.json, or the file")
    p.add_argument("--image-id", type=int, default=1)
    p.add_argument("--crop", type=int, nargs=3, metavar=("X", "Y", "SIDE"), help="the region shown (default all)")
    p.add_argument("--panel", action="append", required=True, metavar="TITLE=STRATEGY[:MODEL]")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    panels = []
    for spec in args.panel:
        title, _, how = spec.partition("=")
        strategy, _, model = how.partition(":")
        panels.append((title, strategy, model or None))
    field_figure(args.fields, args.image_id, panels, args.out, args.crop)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
