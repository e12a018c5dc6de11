"""predict.py: catalog, segmentation maps and sky coordinates from known objects (ColourOracle), FITS inputs with a
known WCS, bad inputs, several processes, kill / resume, and the real CLI with a tiny exported model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from src.classes import CLASS_NAMES, COLOURS
from src.inference.objects import PROB_COLUMNS, write_catalog
from src.inference.predict import PredictConfig, main, predict
from src.modelling.model import build_config, build_processor
from tests.oracle_model import ColourOracle
from tests.tiny_data import catalog_row, scene, sky_wcs

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.fixture(scope="module")
def bright_oracle(oracle):
    """For stretched FITS images, whose sky noise reaches the default threshold here and there."""
    return ColourOracle.for_processor(oracle[1], threshold=120, num_queries=64), oracle[1]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    truth = {
        "two": scene(root / "two.png", (64, 64), [("elliptical", 18, 20, 9, 6), ("spiral", 44, 42, 12, 8)]),
        "wide": scene(root / "wide.png", (48, 80), [("spiral edge-on", 50, 24, 20, 4)], seed=1),
        "three": scene(
            root / "three.png",
            (70, 57),
            [("spiral barred", 15, 15, 7, 7), ("artifact", 40, 50, 5, 5), ("elliptical", 40, 20, 10, 9)],
            seed=2,
        ),
        "grey": scene(root / "grey.png", (40, 40), [("elliptical", 20, 19, 8, 6)], grey=True, seed=3),
    }
    return root, truth


def run(oracle, inputs, out, **kwargs) -> dict:
    model, processor = oracle
    cfg = PredictConfig(model="oracle", inputs=[str(i) for i in inputs], out=str(out), quiet=True, workers=0, **kwargs)
    return predict(cfg, model, processor)


@pytest.mark.parametrize("task", ["semantic", "instance", "panoptic"])
def test_catalog_of_known_objects(oracle, scenes, tmp_path, task):
    root, truth = scenes
    report = run(oracle, [root], tmp_path, task=task, batch_size=3)
    assert report["exit_status"] == 0 and report["counts"]["ok"] == 4 and report["counts"]["failed"] == 0
    catalog = pd.read_csv(tmp_path / "catalog.csv")
    assert list(catalog.columns[:4]) == ["source", "object", "class", "score"] and "ra" not in catalog
    for name, expected in truth.items():
        rows = catalog[catalog["source"] == str(root / f"{name}.png")].sort_values("object")
        assert list(rows["object"]) == list(range(1, len(expected) + 1)), name
        seg = np.asarray(Image.open(tmp_path / "segmentation" / f"{name}_objects.png"))
        classes = np.asarray(Image.open(tmp_path / "segmentation" / f"{name}_classes.png"))
        for (_, row), want in zip(rows.iterrows(), expected):
            if name != "grey":
                assert row["class"] == want["class"]
                assert row[PROB_COLUMNS[CLASS_NAMES.index(want["class"]) - 1]] > 0.99 and row["entropy"] < 0.01
            assert row["area_px"] == want["area_px"]
            assert abs(row["x"] - want["x"]) < 1e-3 and abs(row["y"] - want["y"]) < 1e-3
            assert [row[k] for k in ("x_min", "y_min", "x_max", "y_max")] == [
                want[k] for k in ("x_min", "y_min", "x_max", "y_max")
            ]
            assert row["score"] > 0.99
            assert np.array_equal(seg == row["object"], want["mask"])
            assert np.all(classes[want["mask"]] == CLASS_NAMES.index(row["class"]))
        assert np.count_nonzero(seg) == sum(w["area_px"] for w in expected)
    assert report["counts"]["objects"] == len(catalog) == 7


def test_tta_maps_the_views_back(oracle, scenes, tmp_path):
    """An oracle that sees the flipped / rotated image answers in that frame: averaged back, nothing changes."""
    root, _ = scenes
    plain = run(oracle, [root], tmp_path / "plain")
    tta = run(oracle, [root], tmp_path / "tta", tta=True, batch_size=5)
    assert plain["exit_status"] == tta["exit_status"] == 0
    model, _ = oracle
    first, second = pd.read_csv(tmp_path / "plain/catalog.csv"), pd.read_csv(tmp_path / "tta/catalog.csv")
    pd.testing.assert_frame_equal(first, second)


def test_resized_inputs_are_mapped_back(tmp_path):
    processor = build_processor(64, config=build_config("galaxy-tiny"))  # the processor resizes to 64 x 64
    model = ColourOracle.for_processor(processor, threshold=110)  # half way up the edges the resizing blurs
    expected = scene(tmp_path / "big.png", (100, 70), [("spiral barred", 30, 55, 14, 10)])
    cfg = PredictConfig(
        model="oracle", inputs=[str(tmp_path / "big.png")], out=str(tmp_path / "out"), quiet=True, workers=0
    )
    assert predict(cfg, model, processor)["exit_status"] == 0
    [row] = pd.read_csv(tmp_path / "out/catalog.csv").to_dict("records")
    assert row["class"] == "spiral barred" and abs(row["area_px"] / expected[0]["area_px"] - 1) < 0.05
    assert abs(row["x"] - expected[0]["x"]) < 0.6 and abs(row["y"] - expected[0]["y"]) < 0.6
    seg = np.asarray(Image.open(tmp_path / "out/segmentation/big_objects.png"))
    assert seg.shape == (100, 70)


# ------------------------------------------------------------------------------------------ FITS and WCS
def planted_frame(folder: Path, shape=(80, 96), sky_sigma=(0.004, 0.005, 0.008), seed=0, nan_patch=True):
    """g, r, i band files (nanomaggy-like units) with a TAN WCS and a round galaxy at a known sky position."""
    from astropy.io import fits

    from src.data.images import write_fits

    wcs = sky_wcs(shape)
    target = (150.1 - 10.0 / 3600, 2.2 + 4.0 / 3600)  # 10" (in RA) west, 4" north of the reference
    x0, y0 = (float(v) for v in wcs.world_to_pixel_values(*target))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    profile = np.exp(-0.5 * ((xx - x0) ** 2 + (yy - y0) ** 2) / 4.0**2)
    rng = np.random.default_rng(seed)
    header = wcs.to_header()
    bands = []
    for k, (band, flux) in enumerate(zip("gri", (0.6, 1.0, 1.3))):
        data = (flux * profile + 0.2 + rng.normal(0, sky_sigma[k], shape)).astype(np.float32)  # sky level 0.2
        if nan_patch:
            data[2:6, 2:9] = np.nan
        bands.append(data)
        write_fits(folder / f"gal_{band}.fits", data, header)
    fits.PrimaryHDU(np.stack(bands), header=header).writeto(folder / "cube.fits")
    return wcs, target, (x0, y0)


def test_fits_sky_position_and_wcs_of_the_segmentation(bright_oracle, tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS

    from src.data.images import TRAINING_SKY_SIGMA

    (tmp_path / "in").mkdir()
    wcs, target, (x0, y0) = planted_frame(tmp_path / "in")
    assert 20 < x0 < 76 and 20 < y0 < 60
    report = run(bright_oracle, [tmp_path / "in" / "*.fits"], tmp_path / "out")
    assert report["exit_status"] == 0 and report["counts"]["images"] == 2 and report["counts"]["no_wcs"] == 0
    catalog = pd.read_csv(tmp_path / "out/catalog.csv")
    assert set(catalog["source"]) == {str(tmp_path / "in" / "gal"), str(tmp_path / "in" / "cube.fits")}
    for _, row in catalog.iterrows():
        assert np.hypot(row["x"] - x0, row["y"] - y0) < 0.5
        separation = SkyCoord(row["ra"], row["dec"], unit="deg").separation(SkyCoord(*target, unit="deg")).arcsec
        assert separation < 0.5 * 0.4, separation
        assert abs(row["area_arcsec2"] - row["area_px"] * 0.16) < 1e-3
    for name in ("gal", "cube"):
        with fits.open(tmp_path / "out/segmentation" / f"{name}.fits") as hdul:
            objects, classes = hdul["OBJECTS"].data, hdul["CLASSES"].data
            for hdu in hdul:
                pixels = np.array([[0.0, 0.0], [95.0, 79.0], [x0, y0]])
                assert np.allclose(
                    WCS(hdu.header).all_pix2world(pixels, 0), wcs.all_pix2world(pixels, 0), rtol=0, atol=1e-10
                )
        assert objects.shape == (80, 96) and objects[int(round(y0)), int(round(x0))] == 1
        assert classes[int(round(y0)), int(round(x0))] > 0
        assert not objects[2:6, 2:9].any()  # blank pixels belong to no object
    records = {r["source"]: r for r in report["inputs"]}
    frame = records[str(tmp_path / "in" / "gal")]
    assert frame["masked_px"] == 28 and frame["wcs"] is True
    assert np.allclose(frame["sky_sigma"], (0.004, 0.005, 0.008), rtol=0.1)
    assert np.allclose(frame["sky_level"], 0.2, atol=0.002)
    assert np.allclose(frame["flux_scale"], TRAINING_SKY_SIGMA / np.asarray(frame["sky_sigma"]))


def test_synthetic_fits_frames_land_on_the_catalog_position(oracle, tmp_path):
    """End to end with the generator's --fits output: the object at the centre has the catalog's ra / dec (up to
    its pixel offset from the centre, as the WCS says)."""
    from astropy.coordinates import SkyCoord

    from src.data.catalog import load_catalog
    from src.synthetic import generate

    generate(tmp_path / "data", n=3, seed=4, size=96, progress=False, fits=True)
    model = ColourOracle.for_processor(oracle[1], threshold=90, num_queries=64)
    report = run((model, oracle[1]), [tmp_path / "data/original/fits"], tmp_path / "out", min_area=5)
    assert report["exit_status"] == 0 and report["counts"]["images"] == 3
    catalog = pd.read_csv(tmp_path / "out/catalog.csv")
    truth = load_catalog(tmp_path / "data/gz2_hart16.csv").set_index("dr7objid")
    for objid, row in truth.iterrows():
        rows = catalog[catalog["source"].str.endswith(f"Dr7_{objid}")]
        central = rows.loc[np.hypot(rows["x"] - 47.5, rows["y"] - 47.5).idxmin()]
        offset_px = np.hypot(central["x"] - 47.5, central["y"] - 47.5)
        assert offset_px < 6
        separation = (
            SkyCoord(central["ra"], central["dec"], unit="deg")
            .separation(SkyCoord(row["ra"], row["dec"], unit="deg"))
            .arcsec
        )
        assert abs(separation - 0.396 * offset_px) < 0.01


# ------------------------------------------------------------------------------------------ bad inputs
def test_bad_inputs(bright_oracle, scenes, tmp_path, capsys):
    oracle = bright_oracle
    from astropy.io import fits

    from src.data.images import write_fits

    root, _ = scenes
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.jpg").write_bytes(b"not an image at all")
    (bad / "cut.png").write_bytes((root / "two.png").read_bytes()[:200])
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.ones(3))])]
    ).writeto(bad / "table.fits")
    write_fits(bad / "four.fits", np.zeros((4, 40, 40), np.float32))
    write_fits(bad / "odd_g.fits", np.zeros((40, 40), np.float32))
    write_fits(bad / "odd_r.fits", np.zeros((40, 41), np.float32))
    write_fits(bad / "odd_i.fits", np.zeros((40, 40), np.float32))
    write_fits(bad / "half_g.fits", np.zeros((40, 40), np.float32))
    Image.fromarray(np.zeros((20, 50, 3), np.uint8)).save(bad / "tiny.png")
    (tmp_path / "empty").mkdir()
    nowcs = tmp_path / "nowcs"
    nowcs.mkdir()
    planted_frame(nowcs, nan_patch=False)
    for band in "gri":  # the same bands without their WCS
        data = fits.getdata(nowcs / f"gal_{band}.fits")
        write_fits(nowcs / f"plain_{band}.fits", data)
    (nowcs / "cube.fits").unlink()
    good = [str(root / "two.png"), str(nowcs)]

    # without --skip-bad: one clear message naming the file, exit 2, no catalog, no temporary file
    assert (
        main(
            [
                "--model",
                "x",
                str(bad / "garbage.jpg"),
                *good,
                "--out",
                str(tmp_path / "a"),
                "--quiet",
                "--workers",
                "0",
            ],
            *oracle,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "garbage.jpg" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a" / "catalog.csv").exists()
    assert not [p for p in (tmp_path / "a").rglob(".*") if p.is_file()]
    assert main(["--model", "x", str(tmp_path / "empty"), "--out", str(tmp_path / "b"), "--quiet"], *oracle) == 2
    assert "empty: no image files" in capsys.readouterr().err

    # --skip-bad: the run goes on, the report lists every bad input with its reason, exit 1
    assert (
        main(
            [
                "--model",
                "x",
                str(bad),
                str(tmp_path / "empty"),
                *good,
                "--out",
                str(tmp_path / "c"),
                "--skip-bad",
                "--quiet",
                "--workers",
                "1",
            ],
            *oracle,
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("no celestial WCS") == 1 and "plain" in err
    report = json.loads((tmp_path / "c" / "predict_report.json").read_text())
    failed = {Path(i["source"]).name: i["error"] for i in report["inputs"] if i["status"] != "ok"}
    assert set(failed) == {"garbage.jpg", "cut.png", "table.fits", "four.fits", "odd", "half", "empty", "tiny.png"}
    assert "smaller than 32 px" in failed["tiny.png"]
    assert "unreadable image" in failed["garbage.jpg"] and "no image HDU" in failed["table.fits"]
    assert "(4, 40, 40)" in failed["four.fits"] and "different shapes" in failed["odd"]
    assert "r, i missing" in failed["half"] and "no image files" in failed["empty"]
    assert all(str(bad) in e or "empty" in e for e in failed.values())
    assert report["counts"]["ok"] == 3 and report["counts"]["failed"] == 8 and report["counts"]["no_wcs"] == 1
    catalog = pd.read_csv(tmp_path / "c" / "catalog.csv")
    assert set(catalog["source"]) == {str(root / "two.png"), str(nowcs / "gal"), str(nowcs / "plain")}
    plain = catalog[catalog["source"] == str(nowcs / "plain")]
    assert plain["ra"].isna().all() and catalog.loc[catalog["source"] == str(nowcs / "gal"), "ra"].notna().all()


def test_settings_errors_and_refusals(oracle, scenes, tmp_path, capsys):
    root, _ = scenes
    args = ["--model", "x", str(root / "two.png"), "--out", str(tmp_path / "o"), "--quiet", "--workers", "0"]
    assert main(args + ["--flux-scale", "1", "2"], *oracle) == 2
    assert "--flux-scale takes 1 or 3" in capsys.readouterr().err
    assert main(args + ["--bands", "g", "g", "i"], *oracle) == 2
    assert "three distinct" in capsys.readouterr().err
    assert main(args + ["--field", "--task", "instance"], *oracle) == 2
    assert "applies to --strategy tiles only" in capsys.readouterr().err
    assert main(args, *oracle) == 0
    assert main(args, *oracle) == 2
    assert "--resume continues it" in capsys.readouterr().err
    assert main(args + ["--resume", "--min-area", "30"], *oracle) == 2
    assert "min_area: 10 -> 30" in capsys.readouterr().err
    assert main(args + ["--resume", "--precision", "bf16"], *oracle) == 2
    assert "precision: 'auto' -> 'bf16'" in capsys.readouterr().err
    assert main(args + ["--resume"], *oracle) == 0
    report = json.loads((tmp_path / "o" / "predict_report.json").read_text())
    assert report["counts"]["resumed"] == 1 and report["counts"]["processed_now"] == 0


def test_catalog_formats_round_trip(tmp_path):
    from astropy.table import Table

    rows = [
        catalog_row(),
        {
            "source": "b.png",
            "object": 1,
            "class": "elliptical",
            "score": 0.8,
            **dict.fromkeys(PROB_COLUMNS, 0.2),
            "entropy": 1.6,
            "x": 5.0,
            "y": 6.0,
            "x_min": 4,
            "y_min": 5,
            "x_max": 6,
            "y_max": 7,
            "area_px": 9,
        },
    ]
    frames = {}
    for fmt in ("csv", "ecsv", "fits", "parquet"):
        path = write_catalog(rows, tmp_path / f"catalog.{fmt}", fmt)
        frames[fmt] = pd.read_parquet(path) if fmt == "parquet" else Table.read(path).to_pandas()
        classes = [c.decode() if isinstance(c, bytes) else c for c in frames[fmt]["class"]]
        assert classes == ["spiral", "elliptical"] and frames[fmt]["area_px"].tolist() == [12, 9]
        assert frames[fmt]["ra"].iloc[0] == 150.0 and np.isnan(frames[fmt]["ra"].iloc[1])
    assert str(Table.read(tmp_path / "catalog.ecsv")["ra"].unit) == "deg"
    assert str(Table.read(tmp_path / "catalog.fits")["area_arcsec2"].unit) == "arcsec2"


# ------------------------------------------------------------------------------------------ processes
def _oracle_cli(args, torchrun: int = 0, exit_after: int | None = None):
    command = [PY, "tests/predict_oracle_main.py"]
    if torchrun:
        command = [
            PY,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(torchrun),
            "--master_port",
            str(29500 + os.getpid() % 1000),
            "tests/predict_oracle_main.py",
        ]
    if exit_after is not None:
        command += ["--exit-after-calls", str(exit_after)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        command + ["--model", "oracle", "--quiet", "--workers", "0", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def many(tmp_path_factory, oracle):
    """Twelve small scenes and the catalog of one uninterrupted process."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(5)
    names = list(CLASS_NAMES[1:])
    for k in range(12):
        scene(
            root / f"s{k:02d}.png",
            (48, 56),
            [
                (names[k % 5], 14 + rng.integers(0, 4), 14, 7, 5),
                (names[(k + 2) % 5], 38, 32 + rng.integers(0, 4), 9, 6),
            ],
            seed=k,
        )
    report = run(oracle, [root / "s*.png"], root / "one", batch_size=2)
    assert report["exit_status"] == 0 and report["world_size"] == 1
    return root, pd.read_csv(root / "one" / "catalog.csv")


def test_two_processes_give_the_same_catalog(many, tmp_path):
    root, one = many
    done = _oracle_cli([str(root / "s*.png"), "--out", str(tmp_path / "two"), "--batch-size", "2", "--cpu"], torchrun=2)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "two" / "predict_report.json").read_text())
    assert report["world_size"] == 2 and report["ranks_seen"] == [0, 1]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "two" / "catalog.csv"), one)


def test_killed_run_resumes_to_the_same_catalog(many, oracle, tmp_path):
    root, one = many
    args = [str(root / "s*.png"), "--out", str(tmp_path / "run"), "--batch-size", "2"]
    killed = _oracle_cli(args, exit_after=3)  # dies at the 4th batch
    assert killed.returncode == 137
    done = len(list((tmp_path / "run" / "records").glob("*.json")))  # batches 1-3, less what was being written
    assert 1 <= done <= 6 and not (tmp_path / "run" / "catalog.csv").exists()
    assert main(["--model", "oracle", "--quiet", "--workers", "0", *args, "--resume"], *oracle) == 0
    assert not list((tmp_path / "run").rglob(".*"))  # temporary files of the killed run removed
    report = json.loads((tmp_path / "run" / "predict_report.json").read_text())
    assert report["counts"]["resumed"] == done and report["counts"]["processed_now"] == 12 - done
    catalog = pd.read_csv(tmp_path / "run" / "catalog.csv")
    assert not catalog.duplicated(["source", "object"]).any()
    pd.testing.assert_frame_equal(catalog, one)


def test_cli_with_an_exported_model(scenes, tmp_path):
    """A (random) galaxy-small export loaded from its folder, through the CLI's main: every output is written.
    (Not galaxy-tiny: with random weights its outputs overflow to NaN on some inputs, which predict reports.)"""
    from src.modelling.model import load_model, save_export

    root, _ = scenes
    model, processor = load_model("galaxy-small")
    save_export(model, processor, tmp_path / "model")
    assert (
        main(
            [
                "--model",
                str(tmp_path / "model"),
                str(root / "two.png"),
                str(root / "wide.png"),
                "--out",
                str(tmp_path / "out"),
                "--overlays",
                "--tta",
                "--catalog-format",
                "ecsv",
                "--quiet",
                "--min-area",
                "1",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "predict_report.json").read_text())
    assert report["counts"]["ok"] == 2 and report["catalog"] == "catalog.ecsv"
    assert (tmp_path / "out/catalog.ecsv").is_file()
    for name in ("two", "wide"):
        overlay = np.asarray(Image.open(tmp_path / "out/overlays" / f"{name}.png"))
        assert overlay.shape[2] == 3 and max(overlay.shape[:2]) >= 384
        assert (
            Image.open(tmp_path / "out/segmentation" / f"{name}_objects.png").size
            == Image.open(root / f"{name}.png").size
        )


def test_a_missing_model_is_one_message(scenes, tmp_path, capsys):
    root, _ = scenes
    assert main(["--model", str(tmp_path / "nope"), str(root / "two.png"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_class_probabilities_agree_with_the_semantic_post_processing():
    """Their argmax is HF's semantic map (same mixture); they sum to 1; odd sizes come back at their own size."""
    import torch

    from src.inference.segmentation import class_probabilities, forward, semantic_maps
    from src.modelling.model import load_model

    model, processor = load_model("galaxy-small")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    outputs = forward(model, processor, images, "semantic")
    probs = class_probabilities(outputs, [(64, 64)] * 2)
    for p, m in zip(probs, semantic_maps(processor, outputs, [(64, 64)] * 2)):
        assert torch.allclose(p.sum(0), torch.ones(64, 64), atol=1e-5)
        assert np.array_equal(p.argmax(0).numpy(), m)
    odd = forward(model, processor, [images[0][:50, :37]], "semantic")
    [p] = class_probabilities(odd, [(50, 37)])
    assert p.shape == (6, 50, 37) and torch.allclose(p.sum(0), torch.ones(50, 37), atol=1e-5)


def test_pixels_no_query_claims_are_background_not_the_argmax_of_noise():
    """One query says spiral with a mask on the left half; the right half is claimed by no query.  HF's argmax alone
    labels the whole image spiral (a 'flooded' crop); with the claim rule the right half is background, in the
    semantic maps and in the class probabilities of predict.py alike."""
    from types import SimpleNamespace

    import torch

    from src.classes import LABEL2ID
    from src.inference.segmentation import MIN_CLAIM, class_probabilities, semantic_maps
    from src.modelling.model import build_processor

    spiral = LABEL2ID["spiral"]
    classes = torch.full((1, 2, 7), -10.0)
    classes[0, 0, spiral] = 10.0  # query 0: spiral
    classes[0, 1, 6] = 10.0  # query 1: no object
    masks = torch.full((1, 2, 16, 16), -8.0)
    masks[0, 0, :, :8] = 8.0
    outputs = SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks)
    processor = build_processor()
    plain = processor.post_process_semantic_segmentation(outputs, target_sizes=[(16, 16)])[0]
    assert (plain == spiral).all()  # without the rule: the whole image
    [semantic] = semantic_maps(processor, outputs, [(16, 16)])
    assert (semantic[:, :7] == spiral).all() and (semantic[:, 9:] == 0).all()
    [probs] = class_probabilities(outputs, [(16, 16)], native=False)
    assert np.array_equal(probs.argmax(0).numpy(), semantic)
    assert float(probs[0, :, 12].min()) > 0.9 and MIN_CLAIM == 0.1


def test_frames_too_large_for_one_pass_are_refused_before_reading(oracle, scenes, tmp_path, monkeypatch):
    import src.data.sources

    root, _ = scenes
    (tmp_path / "in").mkdir()
    planted_frame(tmp_path / "in")
    monkeypatch.setattr(src.data.sources, "MAX_PIXELS", 4000)  # wide.png: 3,840 px; two.png: 4,096 px
    report = run(
        oracle, [tmp_path / "in" / "cube.fits", root / "two.png", root / "wide.png"], tmp_path / "out", skip_bad=True
    )
    failed = {Path(i["source"]).name: i["error"] for i in report["inputs"] if i["status"] != "ok"}
    assert set(failed) == {"cube.fits", "two.png"} and "96x80 px is more than 4,000 px" in failed["cube.fits"]
    assert report["exit_status"] == 1 and report["counts"]["ok"] == 1


def test_output_names_are_unique_whatever_the_paths(tmp_path):
    from src.data.images import write_png
    from src.data.sources import discover

    rgb = np.zeros((40, 40, 3), np.uint8)
    paths = ["d/x y.png", "d/x_y.png", "a/x.png", "b/x.png", "c/a__x.png", "e/X.png"]
    for rel in paths:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        write_png(tmp_path / rel, rgb)
    names = [s.name for s in discover([str(tmp_path / rel) for rel in paths]).sources]
    assert len({n.casefold() for n in names}) == len(paths), names
    assert names[:2] == ["d__x_y", "d__x_y-2"]  # clashing stems take their paths; then a suffix, in input order


def test_cutout_stars_are_catalogued_as_class_a_unless_told_otherwise(oracle, tmp_path):
    """A crowded cutout of Gaussian stars (one PSF) and one large ellipse: the stars the model outlines become
    class A (their model class kept in model_class), the ellipse keeps its class; --stars model keeps every class."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:256, :256]
    image = rng.normal(12, 3, (256, 256))
    centres = [(x, y) for x in range(12, 250, 24) for y in range(12, 250, 24) if np.hypot(x - 128, y - 128) > 50][:70]
    for (x, y), peak in zip(centres, rng.uniform(50, 110, len(centres))):
        image += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.6**2))
    grey = np.clip(image, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    ellipse = ((xx - 128) / 30) ** 2 + ((yy - 128) / 18) ** 2 <= 1
    rgb[ellipse] = COLOURS["spiral"]
    Image.fromarray(rgb).save(tmp_path / "crowded.png")
    oracle = ColourOracle.for_processor(oracle[1], threshold=35, num_queries=128), oracle[1]
    report = run(oracle, [tmp_path / "crowded.png"], tmp_path / "a")
    catalog = pd.read_csv(tmp_path / "a" / "catalog.csv")
    assert {"model_class", "stellarity", "point_source", "saturated"} <= set(catalog.columns)
    spiral = catalog[catalog["area_px"] == catalog["area_px"].max()].iloc[0]
    assert spiral["class"] == "spiral" and not spiral["point_source"] and not spiral["stellarity"] >= 0.5
    stars = catalog[catalog["area_px"] < 100]
    assert len(stars) >= 30 and stars["point_source"].mean() >= 0.8
    assert (stars.loc[stars["point_source"], "class"] == "artifact").all()
    assert (stars["model_class"] != "artifact").all()
    [record] = report["inputs"]
    assert 3.0 <= record["stars"]["psf_fwhm_px"] <= 4.6  # a Gaussian of sigma 1.6 px: FWHM 3.77 px
    assert report["counts"]["point_sources"] == stars["point_source"].sum()
    assert report["counts"]["reclassified_as_artifact"] == record["stars"]["point_source_model_galaxy"]
    run(oracle, [tmp_path / "crowded.png"], tmp_path / "b", stars="model")
    kept = pd.read_csv(tmp_path / "b" / "catalog.csv")
    assert (kept["class"] == kept["model_class"]).all() and kept["point_source"].sum() == stars["point_source"].sum()


def test_inference_precision_choice_and_parity():
    """auto is bf16 only on AMX CPUs; bf16 logits come back as float32 and give the fp32 labels."""
    import torch

    from src.inference.segmentation import class_probabilities, forward, resolve_precision, set_precision
    from src.modelling.model import load_model

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None and resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", cpu) is (torch.bfloat16 if torch.cpu._is_amx_tile_supported() else None)
    assert resolve_precision("auto", torch.device("cuda")) is None
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)
    torch.manual_seed(0)
    model, processor = load_model("galaxy-small")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 40, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    images[0][24:40, 20:44] += 120
    probs = {}
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        set_precision(model, dtype)
        outputs = forward(model, processor, images, "semantic")
        assert outputs.masks_queries_logits.dtype == outputs.class_queries_logits.dtype == torch.float32
        probs[name] = torch.stack(class_probabilities(outputs, [(64, 64)] * 2))
    agree = (probs["fp32"].argmax(1) == probs["bf16"].argmax(1)).float().mean().item()
    assert agree >= 0.995 and (probs["fp32"] - probs["bf16"]).abs().max() < 0.1
    assert not torch.equal(probs["fp32"], probs["bf16"])  # bf16 did run


def test_default_workers_leave_two_cores_to_the_model(monkeypatch):
    from src.inference import predict as predict_module

    monkeypatch.setattr(predict_module.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert predict_module.default_workers() == 0
    monkeypatch.setattr(predict_module.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert predict_module.default_workers() == 1
