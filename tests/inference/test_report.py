"""The interactive report (src.inference.report) of real predict.py runs on tiny synthetic inputs, opened in headless
Chromium
(Debian's ``chromium``, driven by Playwright; ``make test`` installs it): objects drawn and table rows equal the
catalog's, hover and tap show the right object's class and RA/Dec, the class toggles hide a class, the page makes
no network request, screenshots are written."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from src.classes import COLOURS
from src.inference.predict import main as predict_main
from src.inference.report import MAX_INLINE, load_run, write_report
from src.modelling.model import build_config, build_processor
from tests.oracle_model import ColourOracle
from tests.tiny_data import scene, sky_wcs

expect = pytest.importorskip(
    "playwright.sync_api", reason="playwright not installed: pip install -r requirements.txt"
).expect

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
#: Objects of the FITS frame: class, centre x, y, radius (px).
DISCS = [("elliptical", 24, 22, 8), ("spiral", 70, 26, 9), ("spiral barred", 46, 54, 7)]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed: pip install -r requirements.txt"
    )
    if CHROMIUM is None:
        pytest.skip(
            "headless Chromium not found: `make test` installs it (apt-get install chromium, as root); "
            "or set CHROMIUM to a Chromium executable"
        )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def oracle():
    processor = build_processor(None, config=build_config("galaxy-tiny"))
    return ColourOracle.for_processor(processor, threshold=120, num_queries=32), processor


def coloured_frame(path: Path, shape=(72, 96), seed=0):
    """A g, r, i cube with a TAN WCS and flat discs whose band fluxes follow their class colours (i -> R, r -> G,
    g -> B: the Lupton composite keeps the hue), so the colour oracle classifies them."""
    from src.data.images import write_fits

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    bands = 0.2 + rng.normal(0, 0.005, (3, *shape))
    for name, cx, cy, radius in DISCS:
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        r, g, b = COLOURS[name]
        for k, value in enumerate((b, g, r)):  # g, r, i planes
            bands[k][disc] += value / 255.0
    write_fits(path, bands.astype(np.float32), sky_wcs(shape).to_header())


@pytest.fixture(scope="module")
def frame_run(tmp_path_factory, oracle):
    """predict.py --report on one FITS frame with a WCS and three objects (the CLI, as a user runs it)."""
    root = tmp_path_factory.mktemp("frame")
    coloured_frame(root / "frame.fits")
    out = root / "out"
    assert (
        predict_main(
            ["--model", "oracle", str(root / "frame.fits"), "--out", str(out), "--report", "--quiet", "--workers", "0"],
            *oracle,
        )
        == 0
    )
    catalog = pd.read_csv(out / "catalog.csv")
    assert sorted(catalog["class"]) == sorted(d[0] for d in DISCS) and catalog["ra"].notna().all()
    return out, catalog


@pytest.fixture(scope="module")
def cutouts_run(tmp_path_factory, oracle):
    """predict.py --report on 50 small cutouts (PNG), two objects each."""
    root = tmp_path_factory.mktemp("cutouts")
    names = list(COLOURS)[1:]
    rng = np.random.default_rng(1)
    for k in range(50):
        scene(
            root / f"c{k:02d}.png",
            (40, 48),
            [
                (names[k % 5], 12 + rng.integers(0, 3), 12, 6, 5),
                (names[(k + 2) % 5], 32, 26 + rng.integers(0, 3), 8, 6),
            ],
            seed=k,
        )
    out = root / "out"
    model, processor = oracle
    cutout_oracle = ColourOracle.for_processor(processor)
    assert (
        predict_main(
            [
                "--model",
                "oracle",
                str(root / "c*.png"),
                "--out",
                str(out),
                "--report",
                "--quiet",
                "--workers",
                "0",
                "--batch-size",
                "10",
            ],
            cutout_oracle,
            processor,
        )
        == 0
    )
    return out, pd.read_csv(out / "catalog.csv")


# ------------------------------------------------------------------------------------------ the browser side
class Page:
    """A report opened offline in Chromium; every request it makes is kept in ``requests``."""

    def __init__(self, browser, path: Path):
        self.context = browser.new_context(viewport={"width": 1700, "height": 1200})
        self.context.set_offline(True)
        self.page = self.context.new_page()
        self.requests, self.errors = [], []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(path.as_uri())
        self.page.wait_for_function(
            "() => window.Bokeh && Bokeh.documents.length > 0 && "
            "Bokeh.documents[0].get_model_by_name('image') != null && "
            "Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('image')) != null"
        )
        self.page.wait_for_timeout(300)

    def js(self, code: str, arg=None):
        return self.page.evaluate(code, arg)

    def drawn(self) -> dict:
        """Objects drawn per outline renderer (visible ones, rows in its view that have an outline)."""
        return self.js("""() => {
          const doc = Bokeh.documents[0], xs = doc.get_model_by_name('catalog').data['xs'], out = {};
          for (const r of doc.all_models) {
            if (r.name && r.name.startsWith('outlines:'))
              out[r.name.slice(9)] = r.visible ? Array.from(r.view.indices).filter(i => xs[i].length > 0).length : 0;
          }
          return out;
        }""")

    def labels(self) -> dict:
        """Whether each class's labels are shown."""
        return self.js("""() => Object.fromEntries([...Bokeh.documents[0].all_models]
          .filter(r => r.name && r.name.startsWith('labels:')).map(r => [r.name.slice(7), r.visible]))""")

    def table_rows(self) -> tuple[int, int]:
        """(rows in the table's view, rows the grid shows)."""
        n = self.js("() => Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('table')).data.getLength()")
        return n, self.page.locator(".slick-row").count()

    def screen(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of plot coordinates (x, y)."""
        return tuple(
            self.js(
                """([x, y]) => {
          const pv = Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('image'));
          const box = pv.canvas_view.el.getBoundingClientRect();
          return [box.left + pv.frame.x_scale.compute(x), box.top + pv.frame.y_scale.compute(y)];
        }""",
                [x, y],
            )
        )

    def tap(self, x: float, y: float) -> None:
        """Click plot coordinates (x, y), apart enough in time from the last click not to be a double tap."""
        self.page.wait_for_timeout(500)
        self.page.mouse.click(*self.screen(x, y))

    def crop(self, x: float, y: float, half: float = 14) -> np.ndarray:
        sx, sy = self.screen(x, y)
        png = self.page.screenshot(clip={"x": sx - half, "y": sy - half, "width": 2 * half, "height": 2 * half})
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)

    def close(self):
        self.context.close()

    def check_offline(self):
        assert not self.errors, self.errors
        remote = [u for u in self.requests if not u.startswith(("file:", "data:"))]
        assert self.requests and not remote, remote


def _sky(text: str) -> tuple[float, float]:
    ra = float(re.search(r"\bra\s+([-\d.]+)", text).group(1))
    dec = float(re.search(r"\bdec\s+([-\d.]+)", text).group(1))
    return ra, dec


def test_frame_report_in_a_browser(browser, frame_run, tmp_path):
    out, catalog = frame_run
    page = Page(browser, out / "report.html")
    try:
        assert sum(page.drawn().values()) == len(catalog) == 3
        assert page.table_rows() == (3, 3)
        # hover, then tap, each object: the right class and RA/Dec
        for _, row in catalog.iterrows():
            page.page.mouse.move(*page.screen(row["x"], row["y"]))
            tooltip = page.page.locator(".report-tooltip")
            tooltip.wait_for(state="visible")
            text = tooltip.inner_text()
            assert re.search(rf"class\s+{row['class']}\n", text), text
            assert np.allclose(_sky(text), (row["ra"], row["dec"]), rtol=0, atol=2e-6), text
            page.tap(row["x"], row["y"])
            expect(page.page.locator(".selected-object")).to_contain_text(f"id {row['object']}\n")
            details = page.page.locator(".selected-object").inner_text()
            assert re.search(rf"class\s+{row['class']}\n", details)
            assert np.allclose(_sky(details), (row["ra"], row["dec"]), rtol=0, atol=2e-6)
            # the tapped object's row is the table's selected row
            selected = page.page.locator(".slick-row.active, .slick-row:has(.selected)").first.inner_text()
            assert row["class"] in selected and f"{row['ra']:.6f}" in selected
        page.page.screenshot(path=tmp_path / "frame_report.png", full_page=True)
        assert Image.open(tmp_path / "frame_report.png").size[0] >= 1000

        # a table row selects its object
        page.page.locator(".slick-row").nth(0).locator(".slick-cell").nth(2).click()
        first = page.js("() => Bokeh.documents[0].get_model_by_name('catalog').selected.indices")
        assert len(first) == 1

        # the class filter: spiral unticked -> neither drawn nor in the table; the others unchanged
        spiral = catalog[catalog["class"] == "spiral"].iloc[0]
        other = catalog[catalog["class"] == "elliptical"].iloc[0]
        page.page.mouse.move(5, 5)
        page.js("() => { Bokeh.documents[0].get_model_by_name('catalog').selected.indices = [] }")
        before, before_other = page.crop(spiral["x"], spiral["y"] - 9), page.crop(other["x"], other["y"] - 8)
        page.page.get_by_role("checkbox", name="spiral", exact=True).uncheck()
        page.page.wait_for_timeout(200)
        assert page.drawn()["spiral"] == 0 and sum(page.drawn().values()) == 2
        assert page.table_rows() == (2, 2)
        assert np.abs(page.crop(spiral["x"], spiral["y"] - 9) - before).max() > 60  # its outline is gone
        assert np.abs(page.crop(other["x"], other["y"] - 8) - before_other).max() < 10
        page.page.get_by_role("checkbox", name="spiral", exact=True).check()
        page.page.wait_for_timeout(200)
        assert sum(page.drawn().values()) == 3

        # the legend toggles a class in the plot
        page.page.get_by_text("elliptical (1)", exact=True).click()
        page.page.mouse.move(5, 5)
        page.page.wait_for_timeout(200)
        assert page.drawn()["elliptical"] == 0
        assert np.abs(page.crop(other["x"], other["y"] - 8) - before_other).max() > 60
        assert page.labels() == {"elliptical": False, "spiral": True, "spiral barred": True}  # its labels too
        page.page.get_by_text("elliptical (1)", exact=True).click()
        page.page.wait_for_timeout(200)
        assert page.labels() == dict.fromkeys(("elliptical", "spiral", "spiral barred"), True)
        page.page.get_by_role("checkbox", name="labels").uncheck()
        assert not any(page.labels().values())
        page.page.get_by_role("checkbox", name="labels").check()

        # the score slider drives plot and table
        page.js("() => { Bokeh.documents[0].get_model_by_name('score_slider').value = 1.0 }")
        page.page.wait_for_timeout(200)
        keep = int((catalog["score"] >= 1.0).sum())
        assert sum(page.drawn().values()) == keep and page.table_rows()[0] == keep
        report = json.loads((out / "predict_report.json").read_text())
        header = page.page.locator(".report-header").inner_text()
        assert "Model oracle" in header and report["created"] in header and "objects 3" in header
        assert "full resolution" in header and "3 of 3 catalog objects are outlined" in header
        assert "Not in this catalog" not in header  # predict.py writes the star/galaxy columns
        stated = float(re.search(r"Page size: ([\d.]+) MB \(limit 20 MB\)", header).group(1))
        assert abs(stated - (out / "report.html").stat().st_size / 2**20) < 0.06
        page.check_offline()
    finally:
        page.close()


def test_many_cutouts_one_page(browser, cutouts_run, tmp_path):
    out, catalog = cutouts_run
    run = load_run(out)
    assert len(run.inputs) == 50
    drawn_rows = sum(len(item.rows) for item in run.inputs[:MAX_INLINE])
    page = Page(browser, out / "report.html")
    try:
        assert sum(page.drawn().values()) == drawn_rows < len(catalog) == 100
        assert page.table_rows()[0] == len(catalog)
        thumbnails = page.js("() => Bokeh.documents[0].get_model_by_name('images').data_source.data['url'].length")
        assert thumbnails == MAX_INLINE
        assert page.page.get_by_text(f"{MAX_INLINE} of 50 inputs are drawn").count() == 1
        links = page.page.locator(".report-links a").evaluate_all("(links) => links.map(a => a.getAttribute('href'))")
        rest = [item.name for item in run.inputs[MAX_INLINE:]]
        assert sorted({Path(link).name.split("_")[0] for link in links}) == sorted(rest)
        assert all((out / link).is_file() for link in links)
        # a thumbnail's object: hover shows it
        item = run.inputs[3]
        row = item.rows[0]
        index = sum(len(r.rows) for r in run.inputs[:3])
        xs = page.js("(i) => Array.from(Bokeh.documents[0].get_model_by_name('catalog').data['xs'][i])", index)
        ys = page.js("(i) => Array.from(Bokeh.documents[0].get_model_by_name('catalog').data['ys'][i])", index)
        page.page.mouse.move(*page.screen(float(np.mean(xs)), float(np.mean(ys))))
        tooltip = page.page.locator(".report-tooltip")
        tooltip.wait_for(state="visible")
        assert re.search(rf"class\s+{row['class']}\n", tooltip.inner_text())
        assert f"source {Path(item.source).name}" in tooltip.inner_text()
        page.page.screenshot(path=tmp_path / "cutouts_report.png", full_page=True)
        assert (tmp_path / "cutouts_report.png").stat().st_size > 10_000
        page.check_offline()
    finally:
        page.close()


def _with_star_columns(source: Path, target: Path) -> pd.DataFrame:
    """A copy of a run whose records carry the real-frames columns (stellarity, point_source, saturated,
    model_class): the spiral is called a point source."""
    shutil.copytree(source, target)
    for path in (target / "records").glob("*.json"):
        record = json.loads(path.read_text())
        for row in record.get("rows", []):
            star = row["class"] == "spiral"
            row.update(stellarity=0.93 if star else 0.05, point_source=star, saturated=star, model_class=row["class"])
        path.write_text(json.dumps(record))
    (target / "report.html").unlink()
    return pd.DataFrame([r for p in (target / "records").glob("*.json") for r in json.loads(p.read_text())["rows"]])


def test_point_sources_are_their_own_group(browser, frame_run, tmp_path):
    out, _ = frame_run
    rows = _with_star_columns(out, tmp_path / "run")
    done = subprocess.run(
        [sys.executable, "-m", "src.report", str(tmp_path / "run"), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    page = Page(browser, tmp_path / "run" / "report.html")
    try:
        assert page.drawn() == {"elliptical": 1, "spiral barred": 1, "point source": 1}
        star = rows[rows["point_source"]].iloc[0]
        page.page.mouse.move(*page.screen(star["x"], star["y"]))
        tooltip = page.page.locator(".report-tooltip")
        tooltip.wait_for(state="visible")
        text = tooltip.inner_text()
        assert re.search(r"stellarity\s+0\.930", text) and re.search(r"point_source\s+yes", text)
        assert re.search(r"model_class\s+spiral", text) and re.search(r"saturated\s+yes", text)
        page.page.get_by_role("checkbox", name="point source").uncheck()
        page.page.wait_for_timeout(200)
        assert page.drawn()["point source"] == 0 and page.table_rows()[0] == 2
        page.page.get_by_text("point source (1)", exact=True).click()
        assert page.js("() => Bokeh.documents[0].get_model_by_name('outlines:point source').visible") is False
        page.check_offline()
    finally:
        page.close()


def test_large_images_are_downsampled_and_positions_kept(browser, oracle, tmp_path):
    model, processor = oracle
    scene(tmp_path / "big.png", (300, 400), [("spiral", 100, 90, 30, 20), ("elliptical", 300, 200, 25, 25)])
    out = tmp_path / "out"
    assert (
        predict_main(
            ["--model", "oracle", str(tmp_path / "big.png"), "--out", str(out), "--quiet", "--workers", "0"],
            ColourOracle.for_processor(processor),
            processor,
        )
        == 0
    )
    path = write_report(out, max_side=128)
    text = path.read_text()
    assert "downsampled by 4" in text
    image = re.search(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", text).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(image))).size == (100, 75)
    catalog = pd.read_csv(out / "catalog.csv")
    page = Page(browser, path)
    try:
        assert sum(page.drawn().values()) == 2
        for _, row in catalog.iterrows():  # the axes are the full image's pixels
            page.tap(row["x"], row["y"])
            expect(page.page.locator(".selected-object")).to_contain_text(f"id {row['object']}\n")
            assert re.search(rf"class\s+{row['class']}\n", page.page.locator(".selected-object").inner_text())
        # zoomed in on one object, a table row of the other brings it into view
        first, second = catalog.iloc[0], catalog.iloc[1]
        page.js(
            """([x, y]) => { const p = Bokeh.documents[0].get_model_by_name('image');
                  Bokeh.documents[0].get_model_by_name('catalog').selected.indices = [];
                  p.x_range.setv({start: x - 20, end: x + 20}); p.y_range.setv({start: y + 20, end: y - 20}); }""",
            [first["x"], first["y"]],
        )
        page.page.locator(".slick-row", has_text=second["class"]).locator(".slick-cell").nth(2).click()
        expect(page.page.locator(".selected-object")).to_contain_text(f"class {second['class']}")
        start, end = page.js(
            "() => { const r = Bokeh.documents[0].get_model_by_name('image').x_range; return [r.start, r.end] }"
        )
        assert start < second["x"] < end and end - start == pytest.approx(40)
        page.check_offline()
    finally:
        page.close()


def test_field_run_shows_edge_flags(browser, oracle, tmp_path):
    """predict.py --field: the frame's objects with their edge flag (the first touches the left border)."""
    from tests.tiny_data import write_tiny_field

    write_tiny_field(tmp_path / "field", size=96, centres=[(4, 50), (60, 50)], classes=["spiral", "elliptical"])
    out = tmp_path / "out"
    assert (
        predict_main(
            [
                "--model",
                "oracle",
                str(tmp_path / "field" / "field_0000.png"),
                "--out",
                str(out),
                "--field",
                "--stamp-pixels",
                "64",
                "--min-candidate-area",
                "20",
                "--report",
                "--quiet",
                "--workers",
                "0",
            ],
            ColourOracle.for_processor(oracle[1], num_queries=24),
            oracle[1],
        )
        == 0
    )
    catalog = pd.read_csv(out / "catalog.csv")
    assert sorted(catalog["edge"]) == [False, True]
    page = Page(browser, out / "report.html")
    try:
        assert sum(page.drawn().values()) == page.table_rows()[0] == 2
        for _, row in catalog.iterrows():
            page.tap(row["x"], row["y"])
            details = page.page.locator(".selected-object")
            expect(details).to_contain_text(f"class {row['class']}")
            assert re.search(rf"edge\s+{'yes' if row['edge'] else 'no'}\n", details.inner_text())
        page.check_offline()
    finally:
        page.close()


def test_real_sdss_frame(browser, oracle, real_dir, tmp_path):
    """The real SDSS frame (../shared/real/fields/mask_galaxy_bench.jpg, 1000 x 1000 px) through predict.py --field
    --report, with the colour oracle for a model (it outlines every bright blob): the page opens offline with every
    object drawn and in the table."""
    out = tmp_path / "out"
    model = ColourOracle.for_processor(oracle[1], num_queries=128)
    assert (
        predict_main(
            [
                "--model",
                "oracle",
                str(real_dir / "fields" / "mask_galaxy_bench.jpg"),
                "--out",
                str(out),
                "--field",
                "--stamp-pixels",
                "128",
                "--report",
                "--quiet",
                "--workers",
                "0",
            ],
            model,
            oracle[1],
        )
        == 0
    )
    catalog = pd.read_csv(out / "catalog.csv")
    assert len(catalog) > 50
    page = Page(browser, out / "report.html")
    try:
        assert sum(page.drawn().values()) == page.table_rows()[0] == len(catalog)
        row = catalog.iloc[0]
        page.tap(row["x"], row["y"])
        expect(page.page.locator(".selected-object")).to_contain_text(f"class {row['class']}")
        page.page.screenshot(path=tmp_path / "real_report.png")
        assert "1000×1000 px) is shown at full resolution" in page.page.locator(".report-header").inner_text()
        page.check_offline()
    finally:
        page.close()


def test_page_size_limit_and_errors(frame_run, tmp_path, capsys):
    from src.inference.report import ReportError, main

    out, _ = frame_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    text = write_report(copy, max_side=32).read_text()  # FITS read in strips, 3 x 3 block means
    image = re.search(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", text).group(1)
    assert Image.open(io.BytesIO(base64.b64decode(image))).size == (32, 24) and "downsampled by 3" in text
    with pytest.raises(ReportError, match="limit 0.5 MB"):
        write_report(out, max_bytes=512 * 1024)  # Bokeh alone is larger than that
    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "predict_report.json: not found" in err
