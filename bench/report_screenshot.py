"""A screenshot of a run's interactive report (``OUT/report.html``, ``src.inference.report``) in headless Chromium, for
the README / docs: the page as it opens, with the tooltip of one object shown (the highest-scoring one unless
``--object``), saved as a palette PNG (192 colours, octree) to stay small.

    .venv/bin/python bench/report_screenshot.py OUT images/report_real_sdss.png [--object 3] [--width 1500]

Needs Debian's ``chromium`` (``make browser``) and the ``playwright`` package; ``CHROMIUM`` names another build.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from src.atomic import write_bytes_atomic

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the run folder (with report.html)")
    parser.add_argument("png", help="the screenshot to write")
    parser.add_argument(
        "--object",
        type=int,
        default=None,
        help="the object whose tooltip is shown (catalog row's `object`; default: the best score)",
    )
    parser.add_argument("--width", type=int, default=1500, help="browser window width, px (default 1500)")
    parser.add_argument("--height", type=int, default=1000, help="browser window height, px (default 1000)")
    parser.add_argument("--colours", type=int, default=192, help="palette size of the PNG (default 192)")
    args = parser.parse_args()
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("report_screenshot.py: error: chromium not found (make browser installs it)")
    page_path = Path(args.out) / "report.html"
    rows = [
        r
        for p in sorted((Path(args.out) / "records").glob("*.json"))
        for r in json.loads(p.read_text()).get("rows", [])
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": args.width, "height": args.height})
        context.set_offline(True)
        page = context.new_page()
        page.goto(page_path.resolve().as_uri())
        page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length > 0 && "
            "Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('image')) != null"
        )
        page.wait_for_timeout(500)
        if rows:
            chosen = [r for r in rows if r["object"] == args.object] if args.object else []
            if not chosen:  # the best score among objects away from the borders (room for the tooltip)
                xmax, ymax = max(r["x_max"] for r in rows), max(r["y_max"] for r in rows)
                chosen = [r for r in rows if 0.25 < r["x"] / xmax < 0.6 and 0.3 < r["y"] / ymax < 0.75] or rows
            row = max(chosen, key=lambda r: r["score"]) if args.object is None else chosen[0]
            index = page.evaluate(
                """([source, object]) => {
              const d = Bokeh.documents[0].get_model_by_name('catalog').data;
              for (let i = 0; i < d['object'].length; i++)
                if (d['source'][i] === source && d['object'][i] === object) return i;
              return -1; }""",
                [row["source"], row["object"]],
            )
            x, y = page.evaluate(
                """(i) => {
              const d = Bokeh.documents[0].get_model_by_name('catalog').data;
              const pv = Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('image'));
              const box = pv.canvas_view.el.getBoundingClientRect();
              const xs = d['xs'][i], ys = d['ys'][i];
              const cx = xs.reduce((a, b) => a + b, 0) / xs.length, cy = ys.reduce((a, b) => a + b, 0) / ys.length;
              return [box.left + pv.frame.x_scale.compute(cx), box.top + pv.frame.y_scale.compute(cy)]; }""",
                index,
            )
            page.mouse.move(x, y)
            page.wait_for_timeout(500)
        png = page.screenshot(full_page=True)
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(args.colours, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    write_bytes_atomic(args.png, buffer.getvalue())
    print(f"wrote {args.png} ({image.size[0]}x{image.size[1]} px, {len(buffer.getvalue()) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
