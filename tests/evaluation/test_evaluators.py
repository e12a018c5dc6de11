"""src/evaluation/evaluators.py: the reset / process / evaluate interface on tiny hand-made images with known
answers, and evaluate() feeding several evaluators from one forward pass per task."""

import json

import numpy as np
import pytest

from src.classes import LABEL2ID
from src.evaluation.evaluators import (
    EVALUATORS,
    DatasetEvaluator,
    InstanceEvaluator,
    PanopticEvaluator,
    SemanticEvaluator,
    gather_in_order,
)
from src.evaluation.metrics import image_confusions, semantic_report

SPIRAL, ELLIPTICAL = LABEL2ID["spiral"], LABEL2ID["elliptical"]


def square(y0, x0, side, shape=(8, 8)):
    mask = np.zeros(shape, bool)
    mask[y0 : y0 + side, x0 : x0 + side] = True
    return mask


def item(index, objects, shape=(8, 8)):
    """A data set item at native size: ``objects`` = [(class id, mask)], painted in order."""
    semantic, instance = np.zeros(shape, np.uint8), np.zeros(shape, np.int32)
    for k, (class_id, mask) in enumerate(objects, start=1):
        semantic[mask], instance[mask] = class_id, k
    return {
        "index": index,
        "objid": 1000 + index,
        "semantic": semantic,
        "instance": instance,
        "class_ids": [c for c, _ in objects],
    }


def test_every_task_has_one_evaluator_that_names_its_task_and_outputs():
    from src.defaults import TASKS
    from src.inference.segmentation import OUTPUTS

    assert tuple(EVALUATORS) == TASKS
    for task, evaluator in EVALUATORS.items():
        assert evaluator.task == evaluator.name == task and set(evaluator.outputs) <= set(OUTPUTS)


def test_semantic_evaluator_known_iou_in_data_set_order_and_reset():
    """Image 0: a 4 x 4 spiral (16 px), predicted as a 4 x 4 square shifted by 2 columns: 8 px shared, IoU 8 / 24.
    Image 1: predicted exactly.  Batches arrive out of order; the records are put back in data set order."""
    truth0, truth1 = item(0, [(SPIRAL, square(0, 0, 4))]), item(1, [(ELLIPTICAL, square(2, 2, 3))])
    shifted = np.where(square(0, 2, 4), SPIRAL, 0).astype(np.uint8)
    evaluator = SemanticEvaluator()
    evaluator.process([truth1], [{"class_map": truth1["semantic"]}])
    evaluator.process([truth0], [{"class_map": shifted}])
    metrics = evaluator.evaluate()
    seed = metrics["seed_protocol"]
    assert seed["n_images"] == 2 and seed["mean_iou"] == pytest.approx((8 / 24 + 1) / 2)
    assert seed["dice"] == pytest.approx((16 / 32 + 1) / 2) and seed["accuracy"] == 1.0
    in_order = semantic_report(
        image_confusions([truth0["semantic"], truth1["semantic"]], [shifted, truth1["semantic"]])
    )
    assert metrics == in_order
    assert metrics["semantic"]["per_class_iou"]["spiral"] == pytest.approx(8 / 24)
    evaluator.reset()
    assert evaluator.evaluate()["seed_protocol"]["n_images"] == 0


def test_instance_evaluator_coco_and_original_ap_and_predictions_file(tmp_path):
    """One galaxy per image.  Image 0 detected exactly (score 0.9), image 1 detected with the wrong class: COCO
    AP of the ellipticals 1, of the spirals 0; the original AP counts only the classes predicted (elliptical: 1)."""
    images = [item(0, [(ELLIPTICAL, square(1, 1, 5))]), item(1, [(SPIRAL, square(2, 2, 4))])]
    outputs = [
        {
            "instances": [{"class_id": ELLIPTICAL, "score": 0.9, "mask": square(1, 1, 5)}],
            "original_segments": [{"class_id": ELLIPTICAL, "score": 0.9, "mask": square(1, 1, 5)}],
        },
        {"instances": [{"class_id": ELLIPTICAL, "score": 0.8, "mask": square(2, 2, 4)}], "original_segments": []},
    ]
    out = tmp_path / "predictions.json"
    evaluator = InstanceEvaluator(top_k=7, predictions_out=out)
    evaluator.process(images, outputs)
    metrics = evaluator.evaluate()
    coco = metrics["coco"]
    assert coco["per_class_ap"]["elliptical"] == pytest.approx(1.0) and coco["per_class_ap"]["spiral"] == 0.0
    assert coco["n_ground_truth"] == 2 and coco["n_predictions"] == 2 and metrics["top_k"] == 7
    original = metrics["original_ap"]
    assert original["ap"] == 1.0 and original["n_images_without_prediction"] == 1
    saved = json.loads(out.read_text())
    assert [r["image_id"] for r in saved] == [1000, 1001] and metrics["predictions_file"] == str(out)


def test_panoptic_evaluator_counts_matches_misses_and_false_segments():
    """Image: background + one spiral.  Predicted exactly: PQ 1.  Then the same segments with the spiral called an
    elliptical: background a true positive of IoU 1, the spiral a false negative, the elliptical a false positive."""
    truth = item(0, [(SPIRAL, square(0, 0, 4))])
    segments = np.where(square(0, 0, 4), 2, 1).astype(np.int32)
    evaluator = PanopticEvaluator()
    evaluator.process([truth], [{"panoptic": (truth["instance"].copy(), {0: 0, 1: SPIRAL})}])
    assert evaluator.evaluate()["all"]["pq"] == 1.0
    evaluator.reset()
    evaluator.process([truth], [{"panoptic": (segments, {1: 0, 2: ELLIPTICAL})}])
    per_class = evaluator.evaluate()["per_class"]
    assert per_class["background"]["pq"] == 1.0 and per_class["background"]["tp"] == 1
    assert per_class["spiral"]["fn"] == 1 and per_class["elliptical"]["fp"] == 1
    assert per_class["spiral"]["pq"] == per_class["elliptical"]["pq"] == 0.0


def test_gather_in_order_one_process_sorts_by_index():
    assert gather_in_order([(2, "c"), (0, "a"), (1, "b")]) == ["a", "b", "c"]


def test_evaluate_runs_the_model_once_per_task_for_all_its_evaluators(tmp_path):
    """Two evaluators of the semantic task share one forward pass per batch; each gets every image."""
    from src.data.datasets import GalaxyDataset
    from src.evaluation.evaluate import evaluate
    from src.modelling.model import build_config, build_processor
    from tests.oracle_model import OracleModel
    from tests.tiny_data import write_tiny_splits

    class ImageCounter(DatasetEvaluator):
        name, task, outputs = "counter", "semantic", ("class_map",)

        def record(self, item, output):
            return int(output["class_map"].shape[0])

        def metrics(self, records):
            return {"n": len(records), "sides": sorted(set(records))}

    class CountingOracle(OracleModel):
        calls = 0

        def forward(self, *args, **kwargs):
            CountingOracle.calls += 1
            return super().forward(*args, **kwargs)

    data = write_tiny_splits(tmp_path / "data", n_train=2, n_val=1, n_test=5, size=64)
    dataset = GalaxyDataset(data, "test")
    model = CountingOracle([dataset[i] for i in range(len(dataset))])
    processor = build_processor(config=build_config("galaxy-tiny"))
    evaluators = [SemanticEvaluator(), ImageCounter()]
    metrics = evaluate(
        "oracle", data, batch_size=2, progress=False, model=model, processor=processor, evaluators=evaluators
    )
    assert CountingOracle.calls == 3  # batches of 2, 2, 1
    assert metrics["tasks"] == ["semantic"] and metrics["counter"] == {"n": 5, "sides": [64]}
    assert metrics["semantic"]["seed_protocol"]["mean_iou"] == 1.0 and "instance" not in metrics
    with pytest.raises(ValueError, match="InstanceEvaluator"):
        evaluate("oracle", data, model=model, processor=processor, evaluators=evaluators, predictions_out="p.json")


def test_run_model_outputs_are_the_post_processings_of_one_forward_pass():
    """run_model's outputs equal the post-processing functions applied to forward(); segment is its predict form."""
    import torch

    from src.inference.segmentation import (
        class_probabilities,
        forward,
        instance_predictions,
        run_model,
        segment,
        semantic_maps,
    )
    from src.modelling.model import load_model

    model, processor = load_model("galaxy-tiny")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    outputs = forward(model, processor, images, "instance")
    results = run_model(model, processor, images, "instance", ("probabilities", "class_map", "instances"), batch_size=3)
    for r, p, m, dets in zip(
        results,
        class_probabilities(outputs, [(64, 64)] * 3),
        semantic_maps(processor, outputs, [(64, 64)] * 3),
        instance_predictions(outputs, [(64, 64)] * 3),
    ):
        assert torch.equal(torch.from_numpy(r["probabilities"]), p) and np.array_equal(r["class_map"], m)
        assert [(d["class_id"], d["score"]) for d in r["instances"]] == [(d["class_id"], d["score"]) for d in dets]
        assert all(np.array_equal(a["mask"], b["mask"]) for a, b in zip(r["instances"], dets))
        assert r["seconds"] > 0
    for (probs, task_result, _), r in zip(segment(model, processor, images, "instance", batch_size=3), results):
        assert np.array_equal(probs, r["probabilities"]) and len(task_result) == len(r["instances"])
    with pytest.raises(ValueError, match="unknown output"):
        run_model(model, processor, images, "semantic", ("logits",))
