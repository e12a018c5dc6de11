"""src/evaluation/evaluate.py and compute_scores.py on tiny data: known answers with an oracle model, files, CLI."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import compute_scores
from src.classes import LABEL2ID
from src.data.datasets import GalaxyDataset
from src.evaluation.evaluate import evaluate, format_table, normalise_tasks
from src.evaluation.metrics import coco_ground_truth
from src.inference.segmentation import instance_predictions
from src.modelling.model import build_config, build_processor, load_model, save_export
from tests.oracle_model import OracleModel
from tests.tiny_data import write_tiny_splits


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_tiny_splits(root / "data", n_train=2, n_val=1, n_test=5, size=64)
    model, processor = load_model("galaxy-tiny")
    export = save_export(model, processor, root / "export")
    return {"root": root, "data": data, "export": export, "model": model}


def oracle(data):
    items = [GalaxyDataset(data, "test")[i] for i in range(len(GalaxyDataset(data, "test")))]
    return OracleModel(items), build_processor(config=build_config("galaxy-tiny"))


def test_oracle_model_scores_one_everywhere(tiny):
    model, processor = oracle(tiny["data"])
    m = evaluate("oracle", tiny["data"], tasks="all", batch_size=2, progress=False, model=model, processor=processor)
    seed, sem = m["semantic"]["seed_protocol"], m["semantic"]["semantic"]
    assert m["n_images"] == 5 and seed["n_images"] == 5
    assert seed["mean_iou"] == seed["dice"] == seed["accuracy"] == 1.0
    assert sem["mean_iou"] == sem["pixel_accuracy"] == 1.0
    assert m["semantic"]["classification"]["accuracy"] == 1.0
    coco = m["instance"]["coco"]
    assert coco["ap"] == pytest.approx(1.0) and coco["ap50"] == pytest.approx(1.0)
    regions = [len(e["regions"]) for e in json.loads((tiny["data"] / "galaxy_test.json").read_text()).values()]
    assert coco["n_ground_truth"] == sum(regions) and max(regions) == 2  # every object, two in one image
    assert m["panoptic"]["all"]["pq"] == pytest.approx(1.0) and m["panoptic"]["things"]["rq"] == 1.0
    assert m["category_ids"] == LABEL2ID
    json.dumps(m, allow_nan=False)  # metrics.json is strict JSON


def test_instance_predictions_rank_and_resize():
    """Top-k over (query, galaxy class) pairs, masks resized to the image size, background never a detection."""
    classes = torch.full((1, 3, 7), -20.0)
    classes[0, 0, 0] = 20.0  # background query
    classes[0, 1, 2] = 20.0  # elliptical
    classes[0, 2, 6] = 20.0  # no object
    masks = torch.full((1, 3, 8, 8), -20.0)
    masks[0, 1, :4, :4] = 20.0
    out = type("O", (), {"class_queries_logits": classes, "masks_queries_logits": masks})
    [dets] = instance_predictions(out, [(32, 32)], top_k=5)
    assert len(dets) <= 5 and dets[0]["class_id"] == 2 and dets[0]["score"] == pytest.approx(1.0, abs=0.01)
    mask = dets[0]["mask"]  # the 4x4 block of an 8x8 logit map -> about 16x16 of 32x32 (bilinear corner cut)
    assert mask.shape == (32, 32) and mask[:15, :15].all() and not mask[16:].any() and not mask[:, 16:].any()
    assert all(d["class_id"] != 0 for d in dets)
    assert all(a["score"] >= b["score"] for a, b in zip(dets, dets[1:]))


def test_instance_detections_of_one_query_share_one_mask_and_encoding():
    """Top-k pairs repeat queries: each query's mask is resized once, and the COCO results equal encoding every
    detection on its own."""
    from src.evaluation.evaluators import coco_results
    from src.evaluation.metrics import masks_to_rles

    generator = torch.Generator().manual_seed(0)
    classes = torch.randn((1, 4, 7), generator=generator)
    masks = torch.randn((1, 4, 8, 8), generator=generator) * 4
    out = type("O", (), {"class_queries_logits": classes, "masks_queries_logits": masks})
    [dets] = instance_predictions(out, [(24, 24)], top_k=12)
    assert len(dets) == 12 and len({d["query"] for d in dets}) <= 4
    for d in dets:
        expected = (
            torch.nn.functional.interpolate(
                masks[:, d["query"]][None], size=(24, 24), mode="bilinear", align_corners=False
            )[0, 0]
            > 0
        )
        assert np.array_equal(d["mask"], expected.numpy())
    same_query = [d for d in dets if d["query"] == dets[0]["query"]]
    assert len(same_query) > 1 and all(d["mask"] is same_query[0]["mask"] for d in same_query)
    results = coco_results(123, dets)
    one_by_one = [masks_to_rles([d["mask"]])[0] for d in dets]
    assert [r["segmentation"] for r in results] == one_by_one
    assert [r["category_id"] for r in results] == [d["class_id"] for d in dets]


def test_cli_writes_metrics_and_reusable_coco_predictions(tiny, capsys):
    out, preds = tiny["root"] / "m" / "metrics.json", tiny["root"] / "m" / "predictions.json"
    rc = compute_scores.main(
        [
            "--model",
            str(tiny["export"]),
            "--data-root",
            str(tiny["data"]),
            "--task",
            "all",
            "--batch-size",
            "3",
            "--out",
            str(out),
            "--predictions-out",
            str(preds),
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "seed protocol" in printed and "COCO mask AP" in printed and "spiral edge-on" in printed
    metrics = json.loads(out.read_text())
    assert set(metrics) >= {"semantic", "instance", "panoptic", "category_ids"}
    results = json.loads(preds.read_text())
    test_ids = {int(k) for k in json.loads((tiny["data"] / "galaxy_test.json").read_text())}
    assert results and {r["image_id"] for r in results} <= test_ids
    assert all(r["segmentation"]["size"] == [64, 64] for r in results)
    assert {r["category_id"] for r in results} <= set(range(1, 6))
    # anyone can re-evaluate the file with pycocotools and gets the same AP
    ds = GalaxyDataset(tiny["data"], "test")
    images = [
        {
            "id": it["objid"],
            "height": 64,
            "width": 64,
            "objects": [(c, it["instance"] == k) for k, c in enumerate(it["class_ids"], 1)],
        }
        for it in (ds[i] for i in range(len(ds)))
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = coco_ground_truth(images)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(str(preds)), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert metrics["instance"]["coco"]["ap"] == pytest.approx(max(ev.stats[0], 0.0))


def test_bare_safetensors_state_dict(tiny):
    from safetensors.torch import save_model

    path = tiny["root"] / "bare.safetensors"
    save_model(tiny["model"], str(path))
    m = evaluate(path, tiny["data"], tasks=["semantic"], base_card="galaxy-tiny", progress=False, limit=2)
    assert m["n_images"] == 2 and 0.0 <= m["semantic"]["semantic"]["pixel_accuracy"] <= 1.0
    assert "model" in format_table(m)


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="unknown task"):
        normalise_tasks(["semantics"])
    assert normalise_tasks("all") == ("semantic", "instance", "panoptic")
    with pytest.raises(ValueError, match="predictions_out needs"):
        evaluate(tiny["export"], tiny["data"], tasks=["semantic"], predictions_out=tiny["root"] / "p.json")
    with pytest.raises(Exception, match="galaxy_nope.json"):
        evaluate(tiny["export"], tiny["data"], split="nope", progress=False)
