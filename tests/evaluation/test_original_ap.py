"""The original project's AP (src.evaluation.metrics.original_ap): each quirk of its routine on a hand-made case,
worked out
by hand, beside what the COCO AP says of the same predictions."""

import numpy as np
import pytest

from src.classes import LABEL2ID
from src.evaluation.metrics import (
    coco_ground_truth,
    coco_mask_ap,
    mask_to_rle,
    original_ap,
    original_record,
    original_top_prediction,
)
from tests.tiny_data import box_mask

E, S, SB = LABEL2ID["elliptical"], LABEL2ID["spiral"], LABEL2ID["spiral barred"]
SIZE = 20


def _box(y0, y1, x0, x1):
    return box_mask(y0, y1, x0, x1, SIZE)


GALAXY = _box(5, 15, 5, 15)  # 100 px
ELSEWHERE = _box(0, 3, 0, 3)  # no overlap with GALAXY


def _image(gt_class, segments):
    """One image holding one ground-truth galaxy (GALAXY) of ``gt_class``; ``segments``: (class, score, mask)."""
    return {"gt": (gt_class, GALAXY), "segments": [{"class_id": c, "score": s, "mask": m} for c, s, m in segments]}


def _original(images):
    records = [original_record(im["segments"], im["gt"][1].astype(np.uint8), [im["gt"][0]]) for im in images]
    return original_ap(records)


def _coco(images):
    gt = coco_ground_truth(
        [{"id": i + 1, "height": SIZE, "width": SIZE, "objects": [im["gt"]]} for i, im in enumerate(images)]
    )
    results = [
        {"image_id": i + 1, "category_id": s["class_id"], "segmentation": mask_to_rle(s["mask"]), "score": s["score"]}
        for i, im in enumerate(images)
        for s in im["segments"]
    ]
    return coco_mask_ap(gt, results, backend="pycocotools")


def test_quirk_1_one_prediction_per_image_the_others_never_count():
    # image 1: a correct spiral, plus a wrong elliptical (lower class id: not the top one) -> ignored;
    # image 2: a correct elliptical at a lower score than that wrong one
    images = [_image(S, [(S, 0.9, GALAXY), (E, 0.8, ELSEWHERE)]), _image(E, [(E, 0.5, GALAXY)])]
    assert _original(images)["ap"] == 1.0
    coco = _coco(images)
    assert coco["per_class_ap"]["elliptical"] == pytest.approx(0.5)  # COCO: the wrong elliptical ranks first


def test_quirk_2_top_prediction_is_the_highest_class_id_not_the_highest_score():
    top = original_top_prediction(
        [
            {"class_id": E, "score": 0.95, "mask": GALAXY},
            {"class_id": SB, "score": 0.30, "mask": ELSEWHERE},
            {"class_id": SB, "score": 0.40, "mask": GALAXY},
            {"class_id": 0, "score": 0.99, "mask": ~GALAXY},
        ]
    )  # background: never
    assert (top["class_id"], top["score"]) == (SB, 0.40)  # highest id; within it the higher score
    # image 1: a confident correct elliptical loses to a faint wrong barred spiral -> SB AP 0, E AP 1 (image 2)
    images = [_image(E, [(E, 0.95, GALAXY), (SB, 0.3, ELSEWHERE)]), _image(E, [(E, 0.9, GALAXY)])]
    result = _original(images)
    assert result["per_class_ap"] == {"elliptical": 1.0, "spiral barred": 0.0} and result["ap"] == 0.5
    assert original_top_prediction([{"class_id": 0, "score": 0.9, "mask": GALAXY}]) is None


def test_quirk_3_recall_over_predictions_and_quirk_4_eleven_points():
    # elliptical: 4 top predictions (scores 0.9 TP, 0.8 FP, 0.7 TP, 0.6 FP) and 4 more elliptical galaxies whose
    # top prediction is a (wrong) spiral.  By hand, recall over the 4 predictions: precision 1, 1/2, 2/3, 1/2 at
    # recall 1/4, 1/4, 1/2, 1/2 -> 11-point: r = 0, .1, .2 -> 1; r = .3, .4, .5 -> 2/3; r >= .6 -> 0: 5/11.
    images = [
        _image(E, [(E, 0.9, GALAXY)]),
        _image(E, [(E, 0.8, ELSEWHERE)]),
        _image(E, [(E, 0.7, GALAXY)]),
        _image(E, [(E, 0.6, ELSEWHERE)]),
    ] + [_image(E, [(S, 0.5, GALAXY)]) for _ in range(4)]
    result = _original(images)
    assert result["per_class_ap"]["elliptical"] == pytest.approx(5 / 11)
    # with recall over the 8 elliptical galaxies (the standard definition) it would be 2.667 / 11
    assert result["per_class_ap"]["spiral"] == 0.0 and result["ap"] == pytest.approx(5 / 22)
    assert _coco(images)["per_class_ap"]["elliptical"] < 5 / 11 / 2


def test_quirk_4_mean_over_iou_thresholds():
    partial = GALAXY.copy()
    partial[5:15, 5:8] = False  # 70 px inside the 100 px galaxy: IoU 0.70 -> a hit for t = .5 ... .7
    result = _original([_image(E, [(E, 0.9, partial)])])
    assert result["per_class_ap"]["elliptical"] == pytest.approx(5 / 10)
    assert result["ap50"] == 1.0 and result["ap75"] == 0.0


def test_quirk_5_classes_never_predicted_are_left_out():
    # a spiral galaxy with no galaxy segment at all (nothing above the threshold): no record, no spiral class
    images = [_image(E, [(E, 0.9, GALAXY)]), _image(S, [])]
    result = _original(images)
    assert result["per_class_ap"] == {"elliptical": 1.0} and result["ap"] == 1.0
    assert result["n_images"] == 2 and result["n_images_without_prediction"] == 1
    assert _coco(images)["ap"] == pytest.approx(0.5)  # COCO counts the missed spiral class as 0


def test_iou_is_with_the_ground_truth_object_of_the_predicted_class():
    instance = np.zeros((SIZE, SIZE), dtype=np.uint8)
    instance[ELSEWHERE] = 1  # object 1: a spiral, where the prediction is not
    instance[GALAXY] = 2  # object 2: an elliptical
    segment = [{"class_id": E, "score": 0.8, "mask": GALAXY}]
    assert original_record(segment, instance, [S, E])["iou"] == 1.0
    assert original_record(segment, instance, [S, S])["iou"] == 0.0  # no elliptical in the image
    assert original_ap([None, None])["ap"] == 0.0


def test_evaluate_reports_it_beside_coco_ap(tmp_path):
    """Through ``evaluate``: HF's instance segments of an oracle model (the truth) -> original AP 1, beside COCO."""
    from src.data.datasets import GalaxyDataset
    from src.evaluation.evaluate import evaluate, format_table
    from src.modelling.model import build_config, build_processor
    from tests.oracle_model import OracleModel
    from tests.tiny_data import write_tiny_splits

    data = write_tiny_splits(tmp_path, n_train=1, n_val=1, n_test=4, size=48)
    test = GalaxyDataset(data, "test")
    oracle = OracleModel([test[i] for i in range(len(test))])
    metrics = evaluate(
        "oracle",
        data,
        tasks=["instance"],
        batch_size=3,
        progress=False,
        model=oracle,
        processor=build_processor(config=build_config("galaxy-tiny")),
    )
    original = metrics["instance"]["original_ap"]
    assert original["ap"] == 1.0 and original["n_images"] == 4 and original["n_images_without_prediction"] == 0
    assert metrics["instance"]["coco"]["ap"] == pytest.approx(1.0)
    assert "original project's AP (its 11-point routine, not COCO" in format_table(metrics)
