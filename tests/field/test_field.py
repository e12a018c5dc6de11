"""Survey fields (src/field): detection, the stamp rule, merging across tiles, one owner per pixel, scoring."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from src.field.assemble import FieldObject, crop_to_mask, merge_views, resolve
from src.field.detect import detect, detect_array, detection_image
from src.field.score import load_truth
from src.field.stamps import GZ2_MEDIAN_AREA, Window, cut, stamp_side
from src.field.tiles import tile_origins, tile_windows
from tests.tiny_data import write_tiny_field


def _blobs(shape, centres, sigma=3.0, peak=40.0, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(0.0, 1.0, shape).astype(np.float32)
    for x, y in centres:
        image += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)).astype(np.float32)
    return image


def _disc(shape, x, y, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2 <= r * r


def _probs_for(mask, class_id=2):
    probs = np.zeros((6,) + mask.shape, np.float32)
    probs[0][~mask] = 1.0
    probs[class_id][mask] = 1.0
    return probs


# ------------------------------------------------------------------------------------------------ stamp rule
def test_stamp_rule_matches_real_annotations(real_dir):
    """The stamp rule's constant is the median rasterised area of the real GZ2 test annotations."""
    from src.data.via import entry_regions, load_via, polygon_area, region_polygon

    areas = [
        polygon_area(*region_polygon(r), (256, 256))
        for e in load_via(real_dir / "galaxy_test_via.json").values()
        for r in entry_regions(e)
    ]
    assert len(areas) == 2828
    assert np.median(areas) == GZ2_MEDIAN_AREA
    assert stamp_side(GZ2_MEDIAN_AREA) == 256


def test_stamp_side_scales_with_size_and_is_clipped():
    assert list(stamp_side([GZ2_MEDIAN_AREA, 4 * GZ2_MEDIAN_AREA])) == [256, 512]
    assert stamp_side(1) == 32 and stamp_side(1e9) == 2048


def test_cut_pads_outside_the_frame():
    rgb = np.full((10, 12, 3), 7, np.uint8)
    stamp, valid = cut(lambda r, c: (rgb[r, c], None), rgb.shape[:2], Window.centred(0.0, 0.0, 8))
    assert stamp.shape == (8, 8, 3) and valid.sum() == 16 and stamp[valid].min() == 7 and stamp[~valid].max() == 0
    assert Window.centred(0.0, 0.0, 8).padded(rgb.shape[:2]) and not Window(1, 1, 8).padded(rgb.shape[:2])


# ------------------------------------------------------------------------------------------------ detection
def test_detection_finds_sources_masks_nan_and_accepts_empty_frames():
    image = _blobs((96, 96), [(25, 30), (70, 60)])
    table, seg, rms = detect_array(image, 3.0)
    assert len(table) == 2 and 0.8 < rms < 1.2
    assert sorted(np.round(table["x"]).astype(int).tolist()) == [25, 70]
    assert (seg[30, 25] > 0) and (seg[60, 70] > 0) and (seg[5, 5] == 0)
    blank = image.copy()
    blank[40:80, 50:90] = np.nan  # a NaN region over the second source: masked, not detected
    table, seg, _ = detect_array(blank, 3.0)
    assert len(table) == 1 and round(table["x"][0]) == 25 and seg[40:80, 50:90].max() == 0
    empty, seg, _ = detect_array(np.random.default_rng(1).normal(0, 1, (64, 64)), 5.0)
    assert len(empty) == 0 and seg.max() == 0


def test_detection_image_of_rgb_and_bands():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 30
    assert np.allclose(detection_image(rgb), 10.0)
    bands = np.ones((3, 4, 4), np.float32) * np.array([0.8, 1.0, 1.3], np.float32)[:, None, None]
    assert np.allclose(detection_image(bands, [0.8, 1.0, 1.3]), 1.0)


def test_chunked_detection_finds_each_source_once():
    centres = [(20, 20), (63, 64), (64, 130), (150, 66), (130, 140), (180, 180)]
    image = _blobs((200, 200), centres)

    def read(rows, cols):
        return image[rows, cols], None

    whole = detect(read, image.shape, 3.0)
    chunked = detect(read, image.shape, 3.0, chunk=64, margin=32)
    assert len(whole) == len(chunked) == len(centres)
    key = lambda t: sorted(zip(np.round(t["x"]).astype(int), np.round(t["y"]).astype(int)))  # noqa: E731
    assert key(whole.table) == key(chunked.table)
    labels = np.unique(chunked.segmentation)
    assert labels.tolist() == list(range(len(centres) + 1))
    for k, (x, y) in enumerate(zip(chunked.table["x"], chunked.table["y"]), start=1):
        assert chunked.segmentation[int(round(y)), int(round(x))] == k


# ------------------------------------------------------------------------------------------------ assembly
def test_object_split_by_a_tile_border_is_reported_once():
    """A disc cut by the right border of tile A lies whole in tile B: one object, with the probabilities of both."""
    shape = (64, 128)
    disc = _disc(shape, 60, 32, 10)
    other = _disc(shape, 100, 20, 5)
    tile_a, tile_b = (0, 64, 0, 64), (0, 64, 40, 104)

    def view(window, mask, class_id):
        y0, y1, x0, x1 = window
        local = mask[y0:y1, x0:x1]
        return crop_to_mask(FieldObject(y0, x0, local, _probs_for(local, class_id), 0.9, False, [window]))

    views = [view(tile_a, disc, 2), view(tile_b, disc, 3), view(tile_b, other, 4)]
    merged, fused = merge_views(views)
    assert fused == 1 and len(merged) == 2
    whole = next(o for o in merged if o.area == disc.sum())
    assert (whole.y0, whole.x0) == (22, 50)
    mean = whole.probs[:, whole.mask].mean(axis=1)
    left = whole.probs[:, whole.mask][:, 0]  # a pixel seen by both tiles
    assert mean[2] > 0.3 and mean[3] > 0.3 and np.isclose(left[2], 0.5) and np.isclose(left[3], 0.5)
    object_map, objects, counts = resolve(merged, shape)
    assert object_map.max() == 2 and counts == {"duplicate": 0, "too_small": 0}
    assert (object_map == 1).sum() == disc.sum()  # numbered by decreasing area


def test_resolve_gives_one_owner_per_pixel_and_drops_duplicates():
    shape = (40, 40)
    a, b, c = _disc(shape, 15, 20, 8), _disc(shape, 16, 20, 8), _disc(shape, 27, 20, 6)

    def obj(mask, score, edge=False):
        return FieldObject(0, 0, mask, _probs_for(mask), score, edge)

    object_map, objects, counts = resolve([obj(a, 0.9), obj(b, 0.5), obj(c, 0.7)], shape, min_area=5)
    assert counts == {"duplicate": 1, "too_small": 0} and len(objects) == 2
    assert ((object_map == 1) == a).all()  # the best-scoring disc keeps all its pixels
    assert ((object_map == 2) == (c & ~a)).all()  # the overlap went to the higher score
    edge = _disc(shape, 2, 20, 5)
    _, [touching], _ = resolve([obj(edge, 0.9)], shape)
    assert touching.edge


def test_tile_grid_covers_the_frame_with_the_overlap():
    assert tile_origins(100, 64, 16) == [0, 36]
    assert tile_origins(40, 64, 16) == [0]
    assert tile_origins(200, 64, 16) == [0, 48, 96, 136]
    windows = tile_windows((100, 200), 64, 16)
    covered = np.zeros((100, 200), int)
    for w in windows:
        covered[w.y0 : w.y0 + 64, w.x0 : w.x0 + 64] += 1
    assert covered.min() >= 1
    with pytest.raises(ValueError, match="overlap"):
        tile_origins(100, 64, 64)


# ------------------------------------------------------------------------------------------------ scoring
def test_sep_baseline_scores_on_a_tiny_field(tmp_path):
    from src.data.images import read_rgb
    from src.field.frame import RgbFrame
    from src.field.run import FieldSettings, predict_field
    from src.field.score import FieldEvaluator, MaskEncoder, object_predictions

    truth = load_truth(write_tiny_field(tmp_path, size=96))
    [image] = truth["images"]
    frame = RgbFrame(read_rgb(tmp_path / image["file_name"]))
    result = predict_field(frame, None, None, FieldSettings(strategy="sep", min_candidate_area=20))
    scorer = FieldEvaluator(classes=False)
    predictions, _ = object_predictions(result.objects, MaskEncoder(frame.shape), classes=False)
    scorer.add(image, truth["truth"][1], predictions)
    scores = scorer.evaluate()
    assert scores["n_truth"] == 3 and scores["n_predicted"] == result.counts["candidates"] == 3
    assert scores["detection"]["completeness"] == 1.0 and scores["detection"]["purity"] == 1.0
    assert scores["coco_agnostic"]["ap50"] == pytest.approx(1.0) and "coco" not in scores
    assert scores["galaxy_iou"] > 0.5
    by_flux = scores["detection"]["completeness_by_flux_r"]
    assert sum(b["n"] for b in by_flux) == 3


def test_field_scorer_with_classes_counts_misclassification_and_misses(tmp_path):
    from pycocotools import mask as mask_utils

    from src.field.score import FieldEvaluator, load_truth
    from tests.tiny_data import write_tiny_field

    truth = load_truth(write_tiny_field(tmp_path, size=96))
    [image] = truth["images"]
    anns = truth["truth"][1]
    masks = [mask_utils.decode(a["rle"]).astype(bool) for a in anns]
    class_map = np.zeros((96, 96), np.uint8)
    predictions = []
    for k, (ann, mask) in enumerate(zip(anns[:2], masks[:2])):  # the third object is missed
        cid = ann["class_id"] if k == 0 else ann["class_id"] % 5 + 1  # the second is misclassified
        class_map[mask] = cid
        predictions.append({"rle": ann["rle"], "class_id": cid, "score": 0.9, "area": ann["area"]})
    scorer = FieldEvaluator()
    scorer.add(image, anns, predictions, class_map)
    scores = scorer.evaluate()
    det = scores["detection"]
    assert det["completeness"] == pytest.approx(2 / 3) and det["purity"] == 1.0 and det["matched"] == 2
    assert scores["classification"]["accuracy"] == 0.5 and scores["classification"]["n"] == 2
    assert scores["coco"]["ap50"] < scores["coco_agnostic"]["ap50"] == pytest.approx(2 / 3, abs=0.02)
    iou = scores["semantic"]["per_class_iou"]
    assert iou[truth_name(anns[0]["class_id"])] == 1.0
    # the evaluator interface: process() takes frames as add() does; reset() forgets them
    through_process = FieldEvaluator()
    through_process.process([{"image": image, "truth": anns}], [{"predictions": predictions, "class_map": class_map}])
    assert through_process.evaluate() == scores
    through_process.reset()
    with pytest.raises(ValueError, match="nothing to score"):
        through_process.evaluate()


def test_field_scorer_purity_and_completeness_by_measured_brightness():
    """Flat 4 x 4 px squares on a black frame: brightness = 16 px x the square's mean of R, G, B.  Truths 10, 40, 80,
    160 -> 160, 640, 1280, 2560; quartile edges 520, 960, 1600.  Predictions: the faintest and brightest truths
    exactly, the second truth with 8 sky pixels more (IoU 2/3: matched, still 640), a faint false positive (5 -> 80)
    and two bright ones (200, 220 -> 3200, 3520)."""
    from pycocotools import mask as mask_utils

    from src.field.score import FieldEvaluator

    frame = np.zeros((64, 64, 3), np.uint8)

    def square(y, x, value, extra=0):
        frame[y : y + 4, x : x + 4] = (value - 3, value, value + 3)  # mean of R, G, B = value
        mask = np.zeros((64, 64), np.uint8, order="F")
        mask[y : y + 4 + extra, x : x + 4] = 1
        rle = mask_utils.encode(mask)
        return {"rle": rle, "area": float(mask.sum())}

    truth = [{**square(2, 2 + 8 * k, v), "class_id": 2, "flux": None} for k, v in enumerate((10, 40, 80, 160))]
    wider_t2 = {
        "rle": mask_utils.encode(np.asfortranarray(np.pad(np.ones((6, 4), np.uint8), ((2, 56), (10, 50))))),
        "area": 24.0,
    }
    predictions = [
        {**p, "class_id": None, "score": 0.9}
        for p in (
            {"rle": truth[0]["rle"], "area": 16.0},
            {"rle": truth[3]["rle"], "area": 16.0},
            wider_t2,
            square(30, 2, 5),
            square(30, 20, 200),
            square(30, 40, 220),
        )
    ]
    image = {"id": 1, "height": 64, "width": 64, "file_name": "hand.png"}
    scorer = FieldEvaluator(classes=False)
    scorer.add(image, truth, predictions, frame=frame)
    det = scorer.evaluate()["detection"]
    assert det["purity"] == 0.5 and det["completeness"] == 0.75
    assert [b["max"] for b in det["purity_by_brightness"]] == pytest.approx([520, 960, 1600, None])
    assert [(b["n"], b["fraction"]) for b in det["completeness_by_brightness"]] == [
        (1, 1.0),
        (1, 1.0),
        (1, 0.0),
        (1, 1.0),
    ]
    purity = [(b["n"], b["fraction"]) for b in det["purity_by_brightness"]]
    assert purity[0] == (2, 0.5) and purity[1] == (1, 1.0) and purity[2] == (0, None)
    assert purity[3] == (3, pytest.approx(1 / 3))
    assert "completeness_by_flux_r" not in det

    unmeasured = FieldEvaluator(classes=False)  # no frame: no brightness bins, the rest unchanged
    unmeasured.add(image, truth, predictions)
    assert "purity_by_brightness" not in unmeasured.evaluate()["detection"]
    with pytest.raises(ValueError, match="hand.png"):
        scorer.add(image, truth, predictions, frame=frame[:32])


def truth_name(class_id):
    from src.classes import CLASS_NAMES

    return CLASS_NAMES[class_id]


# ------------------------------------------------------------------------------------------------ COCO training data
def test_coco_field_dataset_crops_hold_the_objects(tmp_path):
    from src.data.datasets import CocoFieldDataset, DatasetError

    path = write_tiny_field(tmp_path, size=96)
    data = CocoFieldDataset(path, task="instance", crop_size=48, crops_per_image=3, augment=True, seed=1)
    assert len(data) == 3
    for index in range(3):
        item = data[index]
        assert item["image"].shape == (48, 48, 3) and item["objid"] == 1 and item["task"] == "instance"
        assert 1 <= len(item["class_ids"]) and item["instance"].max() == len(item["class_ids"])
        for k, cid in enumerate(item["class_ids"], start=1):  # semantic map = instance map's classes
            assert (item["semantic"][item["instance"] == k] == cid).all()
    again = CocoFieldDataset(path, task="instance", crop_size=48, crops_per_image=3, augment=True, seed=1)
    assert all((again[i]["image"] == data[i]["image"]).all() for i in range(3))  # (seed, epoch, index) only
    centred = CocoFieldDataset(path, crop_size=48, crops_per_image=3)  # validation: object k centred
    truth = load_truth(path)["truth"][1]
    for k in range(3):
        item = centred[k]
        assert item["class_ids"][0] == truth[k]["class_id"] or truth[k]["class_id"] in item["class_ids"]
    with pytest.raises(DatasetError, match="smaller than the crop"):
        CocoFieldDataset(path, crop_size=128)
    bad = json.loads(path.read_text())
    bad["categories"][0]["id"] = 9
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="bad.json: category"):
        CocoFieldDataset(tmp_path / "bad.json")


def test_train_script_accepts_a_coco_file(tmp_path):
    from src.training import main

    fields = tmp_path / "fields"
    for k in range(2):
        write_tiny_field(fields / f"f{k}", size=96, seed=k)
    merged = {"images": [], "annotations": [], "categories": None}
    for k in range(2):
        coco = json.loads((fields / f"f{k}" / "field_annotations.json").read_text())
        merged["categories"] = coco["categories"]
        merged["images"].append({**coco["images"][0], "id": k + 1, "file_name": f"f{k}/field_0000.png"})
        merged["annotations"] += [
            {**a, "id": len(merged["annotations"]) + j + 1, "image_id": k + 1}
            for j, a in enumerate(coco["annotations"])
        ]
    (fields / "all.json").write_text(json.dumps(merged))
    assert (
        main(
            [
                "--coco",
                str(fields / "all.json"),
                "--crop-size",
                "64",
                "--crops-per-image",
                "2",
                "--model-card",
                "galaxy-tiny",
                "--task",
                "instance",
                "--epochs",
                "1",
                "--batch-size",
                "2",
                "--output",
                str(tmp_path / "model"),
                "--cpu",
            ]
        )
        == 0
    )  # main is the CLI: it returns the exit status
    [row] = csv.DictReader(open(tmp_path / "model" / "loss_history.csv"))
    assert float(row["train_loss"]) > 0 and float(row["val_loss"]) > 0 and row["step"] == "1"  # 2 crops, 1 field
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_compute_scores_fields_cli(tmp_path, capsys):
    """compute_scores.py --fields: sep alone needs no model; a model strategy without --model is one message."""
    from compute_scores import main

    write_tiny_field(tmp_path / "fields", size=96)
    assert (
        main(
            [
                "--fields",
                str(tmp_path / "fields"),
                "--strategy",
                "sep",
                "--out",
                str(tmp_path / "m.json"),
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["strategy"] == "sep" and metrics["n_truth"] == 3 and metrics["detection"]["completeness"] == 1.0
    assert main(["--fields", str(tmp_path / "fields"), "--strategy", "cutout"]) == 2
    assert "needs a --model" in capsys.readouterr().err
    assert main(["--fields", str(tmp_path / "nowhere"), "--strategy", "sep", "--out", str(tmp_path / "n.json")]) == 2
    assert "no COCO annotation file" in capsys.readouterr().err
