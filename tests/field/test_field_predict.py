"""Fields end to end with a model that segments what it sees (tests.oracle_model.ColourOracle): the cutout and
tiles strategies find every object once with its class; edge objects, empty and tiny frames."""

from __future__ import annotations

import numpy as np
import pytest

from src.data.images import read_rgb
from src.field.frame import RgbFrame
from src.field.run import FieldSettings, measure, predict_field
from src.field.score import FieldEvaluator, MaskEncoder, load_truth, object_predictions
from tests.tiny_data import write_tiny_field


@pytest.fixture(scope="module")
def oracle():
    from src.modelling.model import build_config, build_processor
    from tests.oracle_model import ColourOracle

    processor = build_processor(None, config=build_config("galaxy-tiny"))
    return ColourOracle.for_processor(processor, num_queries=24), processor


def _score(tmp_path, oracle, settings, **field):
    truth = load_truth(write_tiny_field(tmp_path, **field))
    [image] = truth["images"]
    frame = RgbFrame(read_rgb(image["path"]))
    result = predict_field(frame, *oracle, settings)
    predictions, class_map = object_predictions(result.objects, MaskEncoder(frame.shape))
    scorer = FieldEvaluator()
    scorer.add(image, truth["truth"][image["id"]], predictions, class_map)
    return result, scorer.evaluate(), truth["truth"][image["id"]]


CENTRES = [(30, 30), (90, 28), (150, 40), (40, 100), (110, 95), (160, 140), (60, 150)]
CLASSES = ["elliptical", "spiral", "spiral barred", "spiral edge-on", "artifact", "spiral", "elliptical"]


@pytest.mark.parametrize("strategy, task", [("cutout", "semantic"), ("tiles", "semantic"), ("tiles", "instance")])
def test_every_object_found_once_with_its_class(tmp_path, oracle, strategy, task):
    settings = FieldSettings(
        strategy=strategy,
        stamp_pixels=128,
        min_candidate_area=20,
        tile=96,
        overlap=48,
        batch_size=4,
        task=task,
        outline="model",
    )  # the model's own masks, pixel for pixel
    result, scores, truth = _score(
        tmp_path, oracle, settings, size=192, centres=CENTRES, classes=CLASSES, semi_axes=(10.0, 6.0)
    )
    assert scores["n_truth"] == len(CENTRES) and scores["n_predicted"] == len(CENTRES)
    assert scores["detection"]["completeness"] == 1.0 and scores["detection"]["purity"] == 1.0
    assert scores["classification"]["accuracy"] == 1.0
    assert scores["coco"]["ap50"] == pytest.approx(1.0)
    assert min(scores["semantic"]["per_class_iou"][c] for c in CLASSES) > 0.8
    if strategy == "tiles":  # objects at (90, 28), (110, 95) lie across tile borders (tiles start at 0, 48, 96)
        assert result.counts["merged_views"] > 0 and result.counts["tiles"] == 9


def test_field_catalog_rows_and_edge_flags(tmp_path, oracle):
    centres = [(4, 50), (60, 50)]  # the first object is cut by the frame's left border
    settings = FieldSettings(strategy="cutout", stamp_pixels=64, min_candidate_area=20)
    result, scores, truth = _score(
        tmp_path, oracle, settings, size=96, centres=centres, classes=["spiral", "elliptical"]
    )
    rows = measure(result)
    by_x = sorted(rows, key=lambda r: r["x"])
    assert [r["class"] for r in by_x] == ["spiral", "elliptical"]
    assert [r["edge"] for r in by_x] == [True, False]
    assert by_x[0]["x_min"] == 0 and abs(by_x[1]["x"] - 60) < 1 and abs(by_x[1]["y"] - 50) < 1
    assert sum(r["area_px"] for r in rows) == (result.object_map > 0).sum()


def test_frame_without_sources_gives_no_object(oracle):
    frame = RgbFrame(np.random.default_rng(0).integers(0, 12, (80, 80, 3)).astype(np.uint8))
    for strategy in ("cutout", "tiles"):
        result = predict_field(frame, *oracle, FieldSettings(strategy=strategy, stamp_pixels=64, tile=64, overlap=16))
        assert result.objects == [] and result.object_map.max() == 0


def test_frame_smaller_than_a_stamp_is_padded(tmp_path, oracle):
    """A 40 px frame: the stamp (and the tile) reach past its borders; the object is still found, flagged."""
    settings = FieldSettings(strategy="cutout", stamp_pixels=64, min_candidate_area=20)
    result, scores, _ = _score(
        tmp_path, oracle, settings, size=40, centres=[(20, 20)], classes=["spiral"], semi_axes=(8.0, 5.0)
    )
    assert result.counts["padded"] == 1 and scores["detection"]["completeness"] == 1.0
    [obj] = result.objects
    assert not obj.edge  # padded stamp, but the object itself is inside the frame
    result, scores, _ = _score(
        tmp_path / "t",
        oracle,
        FieldSettings(strategy="tiles", tile=64, overlap=16),
        size=40,
        centres=[(20, 20)],
        classes=["spiral"],
        semi_axes=(8.0, 5.0),
    )
    assert scores["detection"]["completeness"] == 1.0 and len(result.objects) == 1


# ------------------------------------------------------------------------------------------------ predict.py --field
def _fits_frame(folder, shape=(96, 120), nan_patch=(slice(60, 90), slice(80, 115)), seed=0):
    """g, r, i band files with a TAN WCS: two round galaxies, the second under a blank (NaN) patch."""
    from astropy.wcs import WCS

    from src.data.images import tan_header, write_fits

    folder.mkdir(parents=True, exist_ok=True)
    header = tan_header(150.1, 2.2, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    rng = np.random.default_rng(seed)
    for k, band in enumerate("gri"):
        data = 0.3 + rng.normal(0, 0.01, shape)
        for x, y in ((35, 40), (97, 75)):
            data += (0.6 + 0.3 * k) * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 5.0**2)
        data[nan_patch] = np.nan
        write_fits(folder / f"frame_{band}.fits", data.astype(np.float32), header)
    return WCS(header)


def test_predict_field_cli_outputs(tmp_path, oracle, capsys):
    """--field writes what predict.py writes for cutouts: catalog (with edge and, for FITS, RA/Dec), segmentation
    maps (FITS with the frame's WCS), overlays, report; a frame with no source gives no row, not an error."""
    import pandas as pd
    from astropy.io import fits
    from PIL import Image

    from src.inference.predict import main
    from tests.oracle_model import ColourOracle

    write_tiny_field(tmp_path / "png", size=192, centres=CENTRES[:4], classes=CLASSES[:4], semi_axes=(10.0, 6.0))
    Image.fromarray(np.random.default_rng(2).integers(0, 12, (64, 80, 3)).astype(np.uint8)).save(
        tmp_path / "png" / "empty.png"
    )
    wcs = _fits_frame(tmp_path / "fits")
    model, processor = oracle
    bright = ColourOracle.for_processor(processor, threshold=120, num_queries=24)
    status = main(
        [
            str(tmp_path / "png"),
            "--model",
            "oracle",
            "--out",
            str(tmp_path / "out"),
            "--field",
            "--stamp-pixels",
            "128",
            "--min-candidate-area",
            "20",
            "--overlays",
            "--quiet",
        ],
        model,
        processor,
    )
    assert status == 0
    catalog = pd.read_csv(tmp_path / "out/catalog.csv")
    assert sorted(catalog["class"]) == sorted(CLASSES[:4]) and not catalog["edge"].any()
    assert (tmp_path / "out/overlays/field_0000.png").is_file() and (tmp_path / "out/overlays/empty.png").is_file()
    seg = np.asarray(Image.open(tmp_path / "out/segmentation/field_0000_objects.png"))
    assert seg.shape == (192, 192) and seg.max() == 4
    report = __import__("json").loads((tmp_path / "out/predict_report.json").read_text())
    records = {r["source"].split("/")[-1]: r for r in report["inputs"]}
    assert records["empty.png"]["status"] == "ok" and records["empty.png"]["n_objects"] == 0
    assert records["field_0000.png"]["field"]["counts"]["candidates"] == 4

    def field_args(inputs, out):
        """predict.py's arguments of this test: oracle model, field mode, 128 px stamps."""
        field = ["--field", "--stamp-pixels", "128", "--min-candidate-area", "20", "--quiet"]
        return [str(inputs), "--model", "oracle", "--out", str(out)] + field

    status = main(field_args(tmp_path / "fits", tmp_path / "fout"), bright, processor)
    assert status == 0
    [row] = pd.read_csv(tmp_path / "fout/catalog.csv").to_dict("records")  # the other one is blank (NaN)
    assert abs(row["x"] - 35) < 1 and abs(row["y"] - 40) < 1
    ra, dec = wcs.pixel_to_world_values(row["x"], row["y"])
    assert abs(row["ra"] - ra) < 1e-7 and abs(row["dec"] - dec) < 1e-7  # catalog: 8 decimals
    with fits.open(tmp_path / "fout/segmentation/frame.fits") as hdul:
        assert hdul["OBJECTS"].data[40, 35] == 1 and not hdul["OBJECTS"].data[60:90, 80:115].any()
        assert hdul["OBJECTS"].header["CRVAL1"] == 150.1

    # a band file cut short after a complete header: named, skipped with --skip-bad, the other frame still done
    import shutil

    shutil.copytree(tmp_path / "fits", tmp_path / "cut", dirs_exist_ok=True)
    for band in "gri":
        shutil.copy(tmp_path / "fits" / f"frame_{band}.fits", tmp_path / "cut" / f"other_{band}.fits")
    victim = tmp_path / "cut" / "other_r.fits"
    victim.write_bytes(victim.read_bytes()[: 2880 + 4000])
    args = field_args(tmp_path / "cut", tmp_path / "cout")
    capsys.readouterr()
    assert main(args, bright, processor) == 2
    assert "other_r.fits: unreadable FITS data" in capsys.readouterr().err
    args[args.index(str(tmp_path / "cout"))] = str(tmp_path / "cout2")
    assert main(args + ["--skip-bad"], bright, processor) == 1
    report = __import__("json").loads((tmp_path / "cout2/predict_report.json").read_text())
    status = {r["source"].split("/")[-1]: r["status"] for r in report["inputs"]}
    assert status == {"frame": "ok", "other": "failed"}
    assert "other_r.fits: unreadable FITS" in [r for r in report["inputs"] if r["status"] == "failed"][0]["error"]


def test_sep_outlines_keep_the_model_class_and_every_candidate(tmp_path, oracle):
    """--outline sep: each candidate's object is its sep segment (whatever the model outlines), classed by the
    model; the catalog rows carry the star/galaxy columns."""
    settings = FieldSettings(strategy="cutout", stamp_pixels=128, min_candidate_area=20, batch_size=4, outline="sep")
    result, scores, truth = _score(
        tmp_path, oracle, settings, size=192, centres=CENTRES, classes=CLASSES, semi_axes=(10.0, 6.0)
    )
    segments = result.detections.segmentation
    assert segments is not None and len(result.objects) == len(CENTRES)
    for obj in result.objects:
        y0, y1, x0, x1 = obj.box
        labels = np.unique(segments[y0:y1, x0:x1][obj.mask])
        assert labels.size == 1 and labels[0] > 0  # exactly one sep segment
    assert scores["classification"]["accuracy"] == 1.0
    rows = measure(result)
    assert all({"model_class", "stellarity", "point_source", "saturated"} <= set(r) for r in rows)
    assert not any(r["point_source"] for r in rows)  # 7 ellipses: no stellar sequence, no spikes


def test_sep_outlined_objects_are_ranked_by_their_detection_signal_to_noise(tmp_path, oracle):
    from src.field.cutout import SCORE_SNR, detection_score
    from src.field.stars import sources_of_objects

    assert detection_score(0) == 0.0 and detection_score(SCORE_SNR) == pytest.approx(1 - np.exp(-1))
    assert detection_score(10) < detection_score(100) < 1.0
    settings = FieldSettings(strategy="cutout", stamp_pixels=128, min_candidate_area=20, batch_size=4)
    result, _scores, _truth = _score(
        tmp_path, oracle, settings, size=192, centres=CENTRES, classes=CLASSES, semi_axes=(10.0, 6.0)
    )
    snr = result.detections.snr()
    for number, k in sources_of_objects(result.object_map, result.detections.table).items():
        assert result.objects[number - 1].score == pytest.approx(detection_score(snr[k]))
