"""Fields end to end with a model that segments what it sees (tests.oracle_model.ColourOracle): the cutout and
tiles strategies find every object once with its class; edge objects, empty and tiny frames."""
from __future__ import annotations

import numpy as np
import pytest

from src.field.frame import RgbFrame
from src.field.run import FieldSettings, measure, predict_field
from src.field.score import FieldScorer, MaskEncoder, load_truth, object_predictions
from src.images import read_rgb
from tests.tiny_data import write_tiny_field


@pytest.fixture(scope="module")
def oracle():
    from src.model import build_config, build_processor
    from tests.oracle_model import ColourOracle

    processor = build_processor(None, config=build_config("galaxy-tiny"))
    return ColourOracle.for_processor(processor, num_queries=24), processor


def _score(tmp_path, oracle, settings, **field):
    truth = load_truth(write_tiny_field(tmp_path, **field))
    [image] = truth["images"]
    frame = RgbFrame(read_rgb(image["path"]))
    result = predict_field(frame, *oracle, settings)
    predictions, class_map = object_predictions(result.objects, MaskEncoder(frame.shape))
    scorer = FieldScorer()
    scorer.add(image, truth["truth"][image["id"]], predictions, class_map)
    return result, scorer.scores(), truth["truth"][image["id"]]


CENTRES = [(30, 30), (90, 28), (150, 40), (40, 100), (110, 95), (160, 140), (60, 150)]
CLASSES = ["elliptical", "spiral", "spiral barred", "spiral edge-on", "artifact", "spiral", "elliptical"]


@pytest.mark.parametrize("strategy", ["cutout", "tiles"])
def test_every_object_found_once_with_its_class(tmp_path, oracle, strategy):
    settings = FieldSettings(strategy=strategy, stamp_pixels=128, min_candidate_area=20, tile=96, overlap=48,
                             batch_size=4)
    result, scores, truth = _score(tmp_path, oracle, settings, size=192, centres=CENTRES, classes=CLASSES,
                                   semi_axes=(10.0, 6.0))
    assert scores["n_truth"] == len(CENTRES) and scores["n_predicted"] == len(CENTRES)
    assert scores["detection"]["completeness"] == 1.0 and scores["detection"]["purity"] == 1.0
    assert scores["classification"]["accuracy"] == 1.0
    assert scores["coco"]["ap50"] == pytest.approx(1.0)
    assert min(scores["semantic"]["per_class_iou"][c] for c in CLASSES) > 0.8
    if strategy == "tiles":   # objects at (90, 28), (110, 95) lie across tile borders (tiles start at 0, 48, 96)
        assert result.counts["merged_views"] > 0 and result.counts["tiles"] == 9


def test_field_catalog_rows_and_edge_flags(tmp_path, oracle):
    centres = [(4, 50), (60, 50)]                # the first object is cut by the frame's left border
    settings = FieldSettings(strategy="cutout", stamp_pixels=64, min_candidate_area=20)
    result, scores, truth = _score(tmp_path, oracle, settings, size=96, centres=centres,
                                   classes=["spiral", "elliptical"])
    rows = measure(result)
    by_x = sorted(rows, key=lambda r: r["x"])
    assert [r["class"] for r in by_x] == ["spiral", "elliptical"]
    assert [r["edge"] for r in by_x] == [True, False]
    assert by_x[0]["x_min"] == 0 and abs(by_x[1]["x"] - 60) < 1 and abs(by_x[1]["y"] - 50) < 1
    assert sum(r["area_px"] for r in rows) == (result.object_map > 0).sum()


def test_frame_without_sources_gives_no_object(oracle):
    frame = RgbFrame(np.random.default_rng(0).integers(0, 12, (80, 80, 3)).astype(np.uint8))
    for strategy in ("cutout", "tiles"):
        result = predict_field(frame, *oracle, FieldSettings(strategy=strategy, stamp_pixels=64, tile=64,
                                                             overlap=16))
        assert result.objects == [] and result.object_map.max() == 0


def test_frame_smaller_than_a_stamp_is_padded(tmp_path, oracle):
    """A 40 px frame: the stamp (and the tile) reach past its borders; the object is still found, flagged."""
    settings = FieldSettings(strategy="cutout", stamp_pixels=64, min_candidate_area=20)
    result, scores, _ = _score(tmp_path, oracle, settings, size=40, centres=[(20, 20)], classes=["spiral"],
                               semi_axes=(8.0, 5.0))
    assert result.counts["padded"] == 1 and scores["detection"]["completeness"] == 1.0
    [obj] = result.objects
    assert not obj.edge                          # padded stamp, but the object itself is inside the frame
    result, scores, _ = _score(tmp_path / "t", oracle, FieldSettings(strategy="tiles", tile=64, overlap=16),
                               size=40, centres=[(20, 20)], classes=["spiral"], semi_axes=(8.0, 5.0))
    assert scores["detection"]["completeness"] == 1.0 and len(result.objects) == 1
