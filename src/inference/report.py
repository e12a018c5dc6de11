"""The interactive report of a prediction run: ``OUT/report.html``, one self-contained page (Bokeh, its
JavaScript and CSS inlined) that opens offline from disk, written from a finished run's outputs.

* **The image** with pan and zoom (wheel, box), the objects' outlines (contours of the segmentation map)
  coloured by class, a legend whose entries hide a class (or the point sources, when the catalog has
  ``point_source``), and the objects' labels.  One input: the image at its pixel coordinates, downsampled by an
  integer factor (block mean) when its longer side exceeds ``max_side``.  Several inputs (a run of cutouts): a
  grid of thumbnails, the first ``max_inline`` of them, the others listed with links to their files.
* **Hover or tap an object**: its id, class, score, class probabilities, the star columns when present
  (``stellarity``, ``point_source``, ``saturated``, ``model_class``), area, pixel and sky position, and its
  ``edge`` / ``padded`` flags.  A tap also selects its row in the table and fills the panel under it.
* **The catalog as a table** (sortable, sharing the plot's data: selecting a row highlights its object), and a
  class filter and score slider that drive both.
* The model, settings, date and counts of ``predict_report.json``, and how the page was reduced.

The page's size is kept under ``max_bytes`` (default 20 MB): images are JPEG (quality ``JPEG_QUALITY``),
outlines simplified to a tolerance of half a displayed pixel; when the page is still larger, the image is
downsampled further (one input) or fewer thumbnails are inlined (several).  ``python -m src.report OUT`` rebuilds the
page of an existing run folder.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.classes import ABBREVIATIONS, COLOURS, GALAXY_CLASSES

logger = logging.getLogger(__name__)

REPORT_HTML = "report.html"
#: Longest side (px) of the image of a one-input page; larger images are downsampled by an integer factor.
MAX_SIDE = 2048
#: Side (px) of a thumbnail in the grid of a many-input page.
THUMB_SIDE = 256
#: Inputs drawn inline on a many-input page; the others are listed and linked.
MAX_INLINE = 48
#: The page's size limit, bytes.
MAX_BYTES = 20 * 1024 * 1024
JPEG_QUALITY = 85
#: Flag columns shown when the catalog has them.
FLAG_COLUMNS = ("edge", "padded", "point_source", "saturated")
#: The star columns of the real-frames catalog, shown when present.
STAR_COLUMNS = ("stellarity", "point_source", "saturated", "model_class")
STAR_GROUP = "point source"
STAR_COLOUR = "#ffffff"
#: Colours of classes that ``src.classes`` does not know (none today: a catalog of a newer model).
EXTRA_COLOURS = ("#ff8c00", "#00ced1", "#ff69b4", "#a0a0a0", "#9acd32")


class ReportError(ValueError):
    """A run folder the report cannot be written from (no ``predict_report.json``, broken records)."""


# ------------------------------------------------------------------------------------------ reading a run
@dataclass
class Input:
    """One input of the run that has a record of success: its record and the rows of its objects."""

    name: str
    record: dict
    rows: list = field(default_factory=list)

    @property
    def source(self) -> str:
        return self.record["source"]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), px."""
        return tuple(int(s) for s in self.record["size"])

    def output(self, suffixes: tuple[str, ...]) -> str | None:
        for path in self.record.get("outputs", []):
            if path.endswith(suffixes):
                return path
        return None


@dataclass
class Run:
    out: Path
    report: dict
    inputs: list[Input]
    failed: list[dict]


def load_run(out: str | os.PathLike) -> Run:
    """The report and records of the run in ``out`` (the records of successful inputs, in the catalog's order)."""
    out = Path(out)
    report_path = out / "predict_report.json"
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        raise ReportError(
            f"{report_path}: not found (is {out} the --out folder of a finished predict.py run?)"
        ) from None
    except ValueError as err:
        raise ReportError(f"{report_path}: not JSON ({err})") from None
    records = {}
    for path in sorted((out / "records").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except ValueError as err:
            raise ReportError(f"{path}: not JSON ({err})") from None
        if record.get("status") == "ok":
            records.setdefault(record["source"], Input(path.stem, record, list(record.get("rows", []))))
    inputs, failed = [], []
    for item in report.get("inputs", []):
        if item.get("status") == "ok":
            if item["source"] not in records:
                raise ReportError(f"{out / 'records'}: no record of {item['source']} (listed as done in {report_path})")
            inputs.append(records.pop(item["source"]))
        else:
            failed.append(item)
    return Run(out, report, inputs, failed)


def read_object_map(run: Run, item: Input) -> np.ndarray | None:
    """The object map (int, 0 = none) of an input, None (logged) when its file is missing."""
    path = item.output(("_objects.png", ".fits"))
    if path is None or not (run.out / path).is_file():
        logger.warning(
            f"{run.out / (path or 'segmentation')}: segmentation map of {item.source} not found; "
            f"its objects are in the table but not drawn"
        )
        return None
    if path.endswith(".fits"):
        from astropy.io import fits

        with fits.open(run.out / path, memmap=True) as hdul:
            return np.asarray(hdul["OBJECTS"].data)
    from PIL import Image

    with Image.open(run.out / path) as im:
        return np.asarray(im)


def read_display_image(item: Input, factor: int) -> np.ndarray | None:
    """The input as the model saw it (FITS: the recorded sky level and flux scale, Lupton stretch), block-averaged
    by ``factor``; None (logged) when the input cannot be read any more."""
    from PIL import Image

    from src.data.images import FitsBands, ImageError, is_fits, read_rgb, stretch_bands

    record = item.record
    paths = record.get("paths") or [record["source"]]

    def reduce(rgb):
        return rgb if factor == 1 else np.asarray(Image.fromarray(rgb).reduce(factor))

    try:
        if not is_fits(paths[0]):
            return reduce(read_rgb(paths[0]))
        with FitsBands(paths) as bands:
            if "sky_level" in record and "flux_scale" in record:
                level, scale = np.asarray(record["sky_level"]), np.asarray(record["flux_scale"])
            else:
                level, _sigma, scale = bands.scaling()
            height, width = bands.shape
            strip = max(1, 1024 // factor) * factor  # whole blocks per strip: the reduction is unchanged
            parts = []
            for top in range(0, height, strip):
                rows = slice(top, min(top + strip, height))
                rgb, _valid = stretch_bands(bands.read(rows, slice(0, width)), level, scale)
                parts.append(reduce(rgb))
            return np.concatenate(parts)
    except (ImageError, OSError) as err:
        logger.warning(f"{item.source}: input image not readable ({err}); its outlines are drawn on a blank field")
        return None


def jpeg_data_url(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def outlines(objects: np.ndarray, tolerance: float = 0.5) -> dict[int, np.ndarray]:
    """``{object: (n, 2) array of x, y}``: each object's outer contour (its longest one, at the pixels' edges),
    in the map's pixel coordinates (pixel centres at integers), simplified to ``tolerance`` px."""
    from scipy import ndimage
    from skimage.measure import approximate_polygon, find_contours

    found = {}
    for k, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        mask = np.pad(objects[box] == k, 1).astype(np.float32)
        contours = find_contours(mask, 0.5, fully_connected="high")
        if not contours:
            continue
        contour = approximate_polygon(max(contours, key=len), tolerance)
        found[k] = np.column_stack([contour[:, 1] + box[1].start - 1, contour[:, 0] + box[0].start - 1])
    return found


# ------------------------------------------------------------------------------------------ the page
@dataclass
class Layout:
    """Where each drawn input goes in the plot: display = offset + scale * pixel coordinate."""

    single: bool
    tiles: dict = field(default_factory=dict)  # input index -> (x0, y0, scale, factor)
    width: float = 0.0
    height: float = 0.0


def _layout(inputs: list[Input], max_inline: int, max_side: int) -> Layout:
    if len(inputs) == 1:
        height, width = inputs[0].size
        factor = max(1, math.ceil(max(height, width) / max_side))
        return Layout(True, {0: (0.0, 0.0, 1.0, factor)}, float(width), float(height))
    shown = inputs[:max_inline]
    columns = min(8, max(1, math.ceil(math.sqrt(len(shown) * 1.5))))
    pitch = THUMB_SIDE * 1.15
    layout = Layout(False)
    for i, item in enumerate(shown):
        height, width = item.size
        scale = THUMB_SIDE / max(height, width)
        factor = max(1, math.floor(1 / scale))
        layout.tiles[i] = ((i % columns) * pitch, (i // columns) * pitch + 0.15 * THUMB_SIDE, scale, factor)
    rows = math.ceil(len(shown) / columns)
    layout.width, layout.height = min(len(shown), columns) * pitch, rows * pitch + 0.15 * THUMB_SIDE
    return layout


def _colour(name: str, extra: dict) -> str:
    if name == STAR_GROUP:
        return STAR_COLOUR
    if name in COLOURS:
        return "#{:02x}{:02x}{:02x}".format(*COLOURS[name])
    return extra.setdefault(name, EXTRA_COLOURS[len(extra) % len(EXTRA_COLOURS)])


def _flag(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return "yes" if bool(value) else "no"


def _columns(rows: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """(probability columns, star/flag columns, sky columns) present in some row."""
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    probs = [c for c in sorted(present) if c.startswith("p_")]
    order = {c: i for i, c in enumerate("p_" + n.replace(" ", "_").replace("-", "_") for n in GALAXY_CLASSES)}
    probs.sort(key=lambda c: order.get(c, len(order)))
    extra = [c for c in ("stellarity", "model_class", *FLAG_COLUMNS) if c in present]
    sky = [c for c in ("ra", "dec") if c in present]
    return probs, extra, sky


def _plot_data(run: Run, layout: Layout) -> tuple[dict, dict]:
    """``(columns, facts)``: the columns of the data source that the plot and the table share (one row per
    catalog row, in the catalog's order, with its outline in plot coordinates: empty for inputs not drawn) and
    what the page says about them (``images``: ``[(data URL, x, y, w, h)]`` in plot coordinates, counts)."""
    rows = [row for item in run.inputs for row in item.rows]
    probs, extra, sky = _columns(rows)
    stars = "point_source" in extra
    data = {
        k: []
        for k in (
            "index",
            "source",
            "name",
            "object",
            "class",
            "group",
            "colour",
            "score",
            "area_px",
            "x",
            "y",
            "xs",
            "ys",
            "label_x",
            "label_y",
            "label",
            "drawn",
            *probs,
            *extra,
            *sky,
        )
    }
    extra_colours: dict = {}
    images, unreadable, tile_labels = [], [], {"x": [], "y": [], "text": []}
    for i, item in enumerate(run.inputs):
        tile = layout.tiles.get(i)
        contours, drawn_here = {}, False
        if tile is not None:
            x0, y0, scale, factor = tile
            objects = read_object_map(run, item)
            if objects is not None:
                contours = outlines(objects, tolerance=max(0.5, 0.5 * factor))
            rgb = read_display_image(item, factor)
            height, width = item.size
            if rgb is None:
                unreadable.append(item.source)
                rgb = np.zeros((max(1, height // factor), max(1, width // factor), 3), np.uint8)
            images.append((jpeg_data_url(rgb), x0 - 0.5 * scale, y0 - 0.5 * scale, width * scale, height * scale))
            if not layout.single:
                tile_labels["x"].append(x0)
                tile_labels["y"].append(y0 - 0.02 * THUMB_SIDE)
                tile_labels["text"].append(_short(Path(item.source).name, 24))
            drawn_here = True
        for row in item.rows:
            group = STAR_GROUP if stars and _flag(row.get("point_source")) == "yes" else row["class"]
            contour = contours.get(row["object"]) if drawn_here else None
            data["index"].append(len(data["index"]))
            data["source"].append(row.get("source", item.source))
            data["name"].append(Path(row.get("source", item.source)).name)
            for col in ("object", "class", "score", "area_px", "x", "y"):
                data[col].append(row.get(col))
            data["group"].append(group)
            data["colour"].append(_colour(group, extra_colours))
            for col in probs + sky + [c for c in ("stellarity",) if c in extra]:
                value = row.get(col)
                data[col].append(float("nan") if value is None else float(value))
            if "model_class" in extra:
                data["model_class"].append(str(row.get("model_class") or ""))
            for col in FLAG_COLUMNS:
                if col in extra:
                    data[col].append(_flag(row.get(col)))
            if contour is not None:
                x0, y0, scale, _factor = tile
                data["xs"].append((x0 + scale * contour[:, 0]).astype(np.float32))
                data["ys"].append((y0 + scale * contour[:, 1]).astype(np.float32))
                data["label_x"].append(x0 + scale * float(row["x"]))
                data["label_y"].append(y0 + scale * float(row["y_min"]) - 1.0 * (1 if layout.single else scale))
                data["drawn"].append(True)
            else:
                data["xs"].append(np.zeros(0, np.float32))
                data["ys"].append(np.zeros(0, np.float32))
                data["label_x"].append(float("nan"))
                data["label_y"].append(float("nan"))
                data["drawn"].append(False)
            data["label"].append(f"{row['object']} {ABBREVIATIONS.get(row['class'], row['class'])}")
    facts = {
        "images": images,
        "unreadable": unreadable,
        "tile_labels": tile_labels,
        "probs": probs,
        "extra": extra,
        "sky": sky,
        "stars": stars,
        "n_rows": len(rows),
        "n_drawn": int(sum(data["drawn"])),
        "n_stars": data["group"].count(STAR_GROUP),
    }
    return data, facts


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def _header(run: Run, layout: Layout, facts: dict, max_side: int, max_inline: int) -> str:
    report = run.report
    counts = report.get("counts", {})
    settings = report.get("settings", {})
    by_class = counts.get("by_class", {})
    esc = html.escape
    parts = [
        f"<h2 style='margin:4px 0'>predict.py report: {esc(str(run.out.name))}</h2>",
        f"<p><b>Model</b> {esc(str(report.get('model', '?')))} &nbsp; <b>Date</b> "
        f"{esc(str(report.get('created', '?')))} &nbsp; <b>Catalog</b> {esc(str(report.get('catalog', '?')))}"
        f"</p>",
    ]
    count_text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items() if not isinstance(v, dict))
    class_text = ", ".join(f"{k} {v}" for k, v in by_class.items())
    stars = f"; point sources {facts['n_stars']}" if facts["stars"] else ""
    parts.append(f"<p><b>Counts</b> {esc(count_text)}<br><b>Objects by class</b> {esc(class_text + stars)}</p>")
    shown = {k: v for k, v in settings.items() if v not in (None, False, [], "")}
    parts.append(
        "<details><summary><b>Settings</b></summary><p style='font-family:monospace;font-size:90%'>"
        + esc(", ".join(f"{k}={v}" for k, v in shown.items()))
        + "</p></details>"
    )
    notes = []
    if layout.single:
        item = run.inputs[0]
        height, width = item.size
        factor = layout.tiles[0][3]
        if factor > 1:
            notes.append(
                f"The image ({width}×{height} px) is shown downsampled by {factor} (block mean of "
                f"{factor}×{factor} px, JPEG quality {JPEG_QUALITY}) to keep the page small (longest side "
                f"at most {max_side} px); outlines are simplified to {0.5 * factor:g} px; positions and "
                f"axes are in the full image's pixels."
            )
        else:
            notes.append(
                f"The image ({width}×{height} px) is shown at full resolution (JPEG quality "
                f"{JPEG_QUALITY}); axes are its pixel coordinates (0-based, y down)."
            )
    else:
        n = len(run.inputs)
        drawn = len(layout.tiles)
        notes.append(
            f"{drawn} of {n} inputs are drawn as thumbnails ({THUMB_SIDE} px, JPEG quality "
            f"{JPEG_QUALITY})"
            + (
                f"; the page holds at most {max_inline}: the objects of the other "
                f"{n - drawn} are in the table, their files are linked below."
                if drawn < n
                else "."
            )
        )
    notes.append(
        f"{facts['n_drawn']} of {facts['n_rows']} catalog objects are outlined. Page size: __REPORT_PAGE_SIZE__."
    )
    if facts["unreadable"]:
        notes.append(
            f"Input image not readable (moved?), outlines drawn on black: "
            f"{', '.join(facts['unreadable'][:5])}" + (" …" if len(facts["unreadable"]) > 5 else "") + "."
        )
    missing = [c for c in STAR_COLUMNS if c not in facts["extra"]]
    if missing:
        notes.append("Not in this catalog (an older run?): " + ", ".join(missing) + ".")
    parts.append("<p style='color:#444'>" + esc(" ".join(notes)) + "</p>")
    if run.failed:
        listed = "".join(
            f"<li>{esc(str(f.get('source')))}: {esc(str(f.get('error', f.get('status'))))}</li>"
            for f in run.failed[:10]
        )
        more = f"<li>… and {len(run.failed) - 10} more</li>" if len(run.failed) > 10 else ""
        parts.append(
            f"<details><summary><b>{len(run.failed)} input(s) failed</b></summary><ul>{listed}{more}</ul></details>"
        )
    return "<div class='report-header'>" + "".join(parts) + "</div>"


def _links(run: Run, layout: Layout) -> str:
    rest = [item for i, item in enumerate(run.inputs) if i not in layout.tiles]
    if not rest:
        return ""
    items = []
    for item in rest:
        files = list(item.record.get("outputs", []))
        overlay = f"overlays/{item.name}.png"
        if (run.out / overlay).is_file() and overlay not in files:
            files.append(overlay)
        links = " ".join(f"<a href='{html.escape(f)}'>{html.escape(Path(f).name)}</a>" for f in files)
        items.append(f"<li>{html.escape(item.source)} ({len(item.rows)} objects): {links}</li>")
    return (
        f"<details open class='report-links'><summary><b>{len(rest)} inputs not drawn on this page</b> (their "
        f"segmentation maps and overlays)</summary><ul>{''.join(items)}</ul></details>"
    )


FILTER_JS = """
const classes = checks.labels, on = new Set(checks.active.map(i => classes[i]));
const d = source.data, n = d['group'].length, keep = new Array(n);
for (let i = 0; i < n; i++) keep[i] = on.has(d['group'][i]) && !(d['score'][i] < slider.value);
filter.booleans = keep;
"""

DETAILS_JS = """
const i = source.selected.indices[0];
if (i === undefined) { div.text = 'Tap an object or a row.'; return; }
const d = source.data, digits = {ra: 6, dec: 6, x: 2, y: 2}, lines = [];
const esc = (t) => String(t).replace(/&/g, '&amp;').replace(/</g, '&lt;');
for (const [key, label] of fields) {
  let v = d[key][i];
  if (typeof v === 'number')
    v = Number.isNaN(v) ? '' : (key === 'object' || key === 'area_px') ? String(v) : v.toFixed(digits[key] ?? 3);
  lines.push('<b>' + esc(label) + '</b> ' + esc(v));
}
div.text = '<div class="selected-object">' + lines.join('<br>') + '</div>';
// a row chosen in the table whose object is out of view: centre the view on it
const x = d['label_x'][i], y = d['label_y'][i];
const inside = (v, r) => v >= Math.min(r.start, r.end) && v <= Math.max(r.start, r.end);
if (Number.isFinite(x) && !(inside(x, xr) && inside(y, yr))) {
  const w = xr.end - xr.start, h = yr.end - yr.start;
  xr.setv({start: x - w / 2, end: x + w / 2});
  yr.setv({start: y - h / 2, end: y + h / 2});
}
"""


def build(run: Run, max_side: int = MAX_SIDE, max_inline: int = MAX_INLINE):
    """The Bokeh layout of the page and the text of its header (``__REPORT_PAGE_SIZE__`` to be filled in)."""
    from bokeh.layouts import column, row
    from bokeh.models import (
        BooleanFilter,
        CDSView,
        CheckboxGroup,
        ColumnDataSource,
        CustomJS,
        DataTable,
        Div,
        GroupFilter,
        HoverTool,
        Legend,
        LegendItem,
        NumberFormatter,
        Range1d,
        Slider,
        TableColumn,
        TapTool,
    )
    from bokeh.plotting import figure

    if not run.inputs:
        raise ReportError(f"{run.out}: no input of this run has a record of success: nothing to show")
    layout = _layout(run.inputs, max_inline, max_side)
    data, facts = _plot_data(run, layout)
    source = ColumnDataSource(data, name="catalog")
    groups = list(
        dict.fromkeys(
            [c for c in GALAXY_CLASSES if c in data["group"]]
            + sorted(set(data["group"]) - set(GALAXY_CLASSES) - {STAR_GROUP})
            + ([STAR_GROUP] if STAR_GROUP in data["group"] else [])
        )
    )
    keep = BooleanFilter(booleans=[True] * len(data["index"]), name="visible")

    frame_width = 760 if layout.single else 900
    aspect = layout.height / max(layout.width, 1.0)
    frame_height = int(min(900, max(60, frame_width * aspect)))
    frame_width = int(min(frame_width, frame_height / aspect)) if aspect > 0 else frame_width
    pad = 0.02 * max(layout.width, layout.height)
    plot = figure(
        name="image",
        frame_width=frame_width,
        frame_height=frame_height,
        x_range=Range1d(-0.5 - pad, layout.width - 0.5 + pad),
        y_range=Range1d(layout.height - 0.5 + pad, -0.5 - pad),  # y down: row 0 at the top
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        toolbar_location="above",
        background_fill_color="#202020",
        output_backend="canvas",
    )
    plot.tools[2].match_aspect = True
    plot.toolbar.logo = None
    if not layout.single:
        plot.axis.visible = False
        plot.grid.visible = False
    else:
        plot.xaxis.axis_label, plot.yaxis.axis_label = "x (px)", "y (px)"
        plot.grid.visible = False
    urls = [image[0] for image in facts["images"]]
    plot.image_url(
        url=urls,
        x=[i[1] for i in facts["images"]],
        y=[i[2] for i in facts["images"]],
        w=[i[3] for i in facts["images"]],
        h=[i[4] for i in facts["images"]],
        anchor="top_left",
        name="images",
    )
    if facts["tile_labels"]["text"]:
        plot.text(
            x="x",
            y="y",
            text="text",
            source=ColumnDataSource(facts["tile_labels"]),
            text_color="#dddddd",
            text_font_size="9px",
            text_baseline="bottom",
            name="tile_labels",
        )

    items, renderers, labels = [], [], []
    show_labels = not layout.single or facts["n_drawn"] <= 60
    for group in groups:
        in_group = GroupFilter(column_name="group", group=group)
        dashed = group == STAR_GROUP
        glyph = plot.patches(
            xs="xs",
            ys="ys",
            source=source,
            view=CDSView(filter=in_group & keep),
            fill_color="colour",
            fill_alpha=0.08,
            line_color="colour",
            line_width=2,
            line_dash="dashed" if dashed else "solid",
            selection_line_width=4,
            selection_fill_alpha=0.3,
            selection_line_color="colour",
            nonselection_line_alpha=0.6,
            nonselection_fill_alpha=0.05,
            name=f"outlines:{group}",
        )
        text = plot.text(
            x="label_x",
            y="label_y",
            text="label",
            source=source,
            view=CDSView(filter=in_group & keep),
            text_color="colour",
            text_font_size="10px",
            text_align="center",
            text_baseline="bottom",
            name=f"labels:{group}",
        )
        text.visible = show_labels
        renderers.append(glyph)
        labels.append(text)
        items.append(LegendItem(label=f"{group} ({data['group'].count(group)})", renderers=[glyph]))
    legend = Legend(
        items=items,
        click_policy="hide",
        location="top_left",
        background_fill_alpha=0.7,
        label_text_font_size="11px",
        name="legend",
    )
    plot.add_layout(legend, "right")

    probs, extra, sky = facts["probs"], facts["extra"], facts["sky"]
    fields = [("object", "id"), ("name", "source"), ("class", "class"), ("score", "score")]
    fields += [(c, c) for c in probs]
    fields += [(c, c) for c in extra]
    fields += [("area_px", "area (px)"), ("x", "x"), ("y", "y")] + [(c, c) for c in sky]
    formats = dict.fromkeys(("score", "stellarity", *probs), "{0.000}")
    formats.update(ra="{0.000000}", dec="{0.000000}", x="{0.0}", y="{0.0}")
    tooltips = "".join(f"<div><b>{label}</b> @{{{key}}}{formats.get(key, '')}</div>" for key, label in fields)
    plot.add_tools(
        HoverTool(renderers=renderers, tooltips=f"<div class='report-tooltip'>{tooltips}</div>", name="hover")
    )
    plot.add_tools(TapTool(renderers=renderers))

    def col(key, title, fmt=None, width=60):
        extra = {} if fmt is None else {"formatter": NumberFormatter(format=fmt)}
        return TableColumn(field=key, title=title, width=width, **extra)

    columns = [
        col("object", "id", width=35),
        col("name", "source", width=110),
        col("class", "class", width=90),
        col("score", "score", "0.000", 50),
    ]
    columns += [
        col(c, ABBREVIATIONS.get(c[2:].replace("_", " ").replace("edge on", "edge-on"), c[2:]), "0.000", 45)
        for c in probs
    ]
    columns += [col(c, c.replace("_", " "), "0.000" if c == "stellarity" else None, 60) for c in extra]
    columns += [col("area_px", "area px", width=50), col("x", "x", "0.0", 45), col("y", "y", "0.0", 45)]
    columns += [col(c, c, "0.000000", 85) for c in sky]
    table = DataTable(
        source=source,
        view=CDSView(filter=keep),
        columns=columns,
        width=720,
        height=min(frame_height, 560),
        sortable=True,
        reorderable=False,
        selectable=True,
        index_position=None,
        name="table",
    )

    checks = CheckboxGroup(labels=groups, active=list(range(len(groups))), inline=True, name="class_filter")
    # the labels of a class show while its outlines do (legend) and the labels box is ticked
    label_box = CheckboxGroup(
        labels=["labels (object number, class)"], active=[0] if show_labels else [], name="labels_toggle"
    )
    sync = CustomJS(
        args=dict(pairs=[[g, t] for g, t in zip(renderers, labels)], box=label_box),
        code="for (const [g, t] of pairs) t.visible = g.visible && box.active.length > 0;",
    )
    label_box.js_on_change("active", sync)
    for glyph in renderers:
        glyph.js_on_change("visible", sync)
    slider = Slider(start=0.0, end=1.0, value=0.0, step=0.01, title="lowest score", width=300, name="score_slider")
    update = CustomJS(args=dict(source=source, filter=keep, checks=checks, slider=slider), code=FILTER_JS)
    checks.js_on_change("active", update)
    slider.js_on_change("value", update)
    details = Div(text="Tap an object or a row.", width=720, name="details")
    source.selected.js_on_change(
        "indices",
        CustomJS(
            args=dict(source=source, div=details, fields=fields, xr=plot.x_range, yr=plot.y_range), code=DETAILS_JS
        ),
    )
    header = Div(text=_header(run, layout, facts, max_side, max_inline), width=1500, name="header")
    links = Div(text=_links(run, layout), width=1500, name="links")
    body = column(
        header, row(plot, column(Div(text="<b>Show</b>"), checks, row(slider, label_box), table, details)), links
    )
    return body, facts


def render(
    run: Run, max_side: int = MAX_SIDE, max_inline: int = MAX_INLINE, max_bytes: int = MAX_BYTES
) -> tuple[str, dict]:
    """The page's HTML (Bokeh's ``file_html`` with its resources inlined) and the facts of its drawing."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    body, facts = build(run, max_side, max_inline)
    page = file_html(body, resources=INLINE, title=f"predict.py report: {run.out.name}")
    size = len(page.encode("utf-8"))
    return page.replace("__REPORT_PAGE_SIZE__", f"{size / 2**20:.1f} MB (limit {max_bytes / 2**20:.0f} MB)"), facts


def write_report(
    out: str | os.PathLike, max_side: int = MAX_SIDE, max_inline: int = MAX_INLINE, max_bytes: int = MAX_BYTES
) -> Path:
    """Write ``out/report.html`` from the run in ``out``; returns its path.  When the page exceeds
    ``max_bytes``, the image's longest side is halved (one-input pages) or fewer thumbnails are inlined, until it
    fits (``ReportError`` if it never does)."""
    from src.atomic import write_text_atomic

    run = load_run(out)
    while True:
        page, facts = render(run, max_side, max_inline, max_bytes)
        size = len(page.encode("utf-8"))
        if size <= max_bytes:
            break
        if len(run.inputs) == 1 and max_side > 256:
            max_side //= 2
        elif len(run.inputs) > 1 and max_inline > 1:
            max_inline //= 2
        else:
            raise ReportError(
                f"{Path(out) / REPORT_HTML}: {size / 2**20:.1f} MB even with the image reduced "
                f"(limit {max_bytes / 2**20:.1f} MB): the catalog is too large for one page"
            )
        logger.info(f"report: {size / 2**20:.1f} MB is over {max_bytes / 2**20:.1f} MB; reducing the image")
    path = write_text_atomic(Path(out) / REPORT_HTML, page)
    logger.info(f"report: {path} ({size / 2**20:.1f} MB, {facts['n_drawn']} of {facts['n_rows']} objects drawn)")
    return path


def main(argv=None) -> int:
    from src.cli import add_output_options, run_cli, setup_logging

    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", metavar="OUT", help="the --out folder of a finished predict.py run")
    parser.add_argument(
        "--max-side",
        type=int,
        default=MAX_SIDE,
        help=f"one input: longest side of the drawn image, px (default {MAX_SIDE})",
    )
    parser.add_argument(
        "--max-inline",
        type=int,
        default=MAX_INLINE,
        help=f"several inputs: thumbnails on the page (default {MAX_INLINE})",
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)

    def body():
        path = write_report(args.out, args.max_side, args.max_inline)
        if not args.quiet:
            print(f"wrote {path}")

    return run_cli("python -m src.report", body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
