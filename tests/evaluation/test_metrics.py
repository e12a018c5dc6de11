"""Hand-made cases with known answers for src/evaluation/metrics.py (no model)."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from src.classes import CLASS_NAMES, class_id
from src.evaluation.metrics import (
    PanopticAccumulator,
    classification_report,
    coco_ground_truth,
    coco_mask_ap,
    image_confusion,
    image_confusions,
    image_labels,
    mask_to_rle,
    masks_to_rles,
    seed_protocol,
    semantic_report,
    semantic_scores,
)
from tests.tiny_data import box_mask

E, S, SB, SE = (class_id(n) for n in ("elliptical", "spiral", "spiral barred", "spiral edge-on"))
SIZE = 32


def box(r0, r1, c0, c1, size=SIZE):
    return box_mask(r0, r1, c0, c1, size)


def semantic(*objects, size=SIZE):
    out = np.zeros((size, size), np.uint8)
    for cls, mask in objects:
        out[mask] = cls
    return out


@pytest.fixture
def scene():
    """Image 0: one elliptical (10x10); image 1: a spiral (8x8) and a spiral barred (4x4)."""
    a, b, c = box(2, 12, 2, 12), box(2, 10, 2, 10), box(20, 24, 20, 24)
    gts = [semantic((E, a)), semantic((S, b), (SB, c))]
    objects = [[(E, a)], [(S, b), (SB, c)]]
    return gts, objects


def test_perfect_prediction_scores_one(scene):
    gts, objects = scene
    report = semantic_report(image_confusions(gts, gts))
    seed, sem, cls = report["seed_protocol"], report["semantic"], report["classification"]
    assert seed["mean_iou"] == seed["dice"] == seed["accuracy"] == 1.0
    assert seed["n_images"] == 2 and seed["n_multi_class_images"] == 1
    assert sem["pixel_accuracy"] == sem["mean_iou"] == sem["mean_dice"] == 1.0
    # classes absent from both maps have no IoU and stay out of the mean
    assert sem["per_class_iou"]["artifact"] is None and sem["per_class_iou"]["spiral edge-on"] is None
    assert cls["accuracy"] == 1.0 and cls["per_class"]["elliptical"]["f1"] == 1.0

    images = [
        {"id": 100_000_000_000_000_000 + i, "height": SIZE, "width": SIZE, "objects": objs}
        for i, objs in enumerate(objects)
    ]
    results = [
        {"image_id": im["id"], "category_id": c, "segmentation": mask_to_rle(m), "score": 0.9}
        for im in images
        for c, m in im["objects"]
    ]
    ap = coco_mask_ap(coco_ground_truth(images), results)
    assert ap["ap"] == pytest.approx(1.0) and ap["ap50"] == pytest.approx(1.0)
    assert ap["per_class_ap"]["elliptical"] == pytest.approx(1.0) and ap["per_class_ap"]["artifact"] is None

    pq = PanopticAccumulator()
    for objs in objects:
        seg = np.zeros((SIZE, SIZE), np.int32)
        for k, (_, m) in enumerate(objs, start=1):
            seg[m] = k
        classes = {0: 0, **{k: c for k, (c, _) in enumerate(objs, start=1)}}
        pq.update(seg, classes, seg, classes)
    scores = pq.scores()
    assert scores["all"]["pq"] == scores["all"]["sq"] == scores["all"]["rq"] == 1.0
    assert scores["things"]["n_classes"] == 3 and scores["stuff"]["n_classes"] == 1


def test_empty_prediction(scene):
    gts, objects = scene
    preds = [np.zeros_like(g) for g in gts]
    report = semantic_report(image_confusions(gts, preds))
    seed, sem = report["seed_protocol"], report["semantic"]
    assert seed["mean_iou"] == seed["dice"] == seed["accuracy"] == 0.0
    assert seed["n_no_prediction"] == 2
    galaxy_pixels = 100 + 64 + 16
    assert sem["pixel_accuracy"] == pytest.approx(1 - galaxy_pixels / (2 * SIZE * SIZE))
    assert sem["per_class_iou"]["background"] == pytest.approx((2 * SIZE * SIZE - galaxy_pixels) / (2 * SIZE * SIZE))
    assert sem["per_class_iou"]["elliptical"] == 0.0
    assert report["classification"]["per_class"]["elliptical"]["recall"] == 0.0
    images = [{"id": i + 1, "height": SIZE, "width": SIZE, "objects": objs} for i, objs in enumerate(objects)]
    ap = coco_mask_ap(coco_ground_truth(images), [])
    assert ap["ap"] == 0.0 and ap["n_predictions"] == 0
    # panoptic: post_process_panoptic_segmentation answers a map of -1 and no segment
    pq = PanopticAccumulator()
    for objs in objects:
        seg = np.zeros((SIZE, SIZE), np.int32)
        for k, (_, m) in enumerate(objs, start=1):
            seg[m] = k
        pq.update(seg, {0: 0, **{k: c for k, (c, _) in enumerate(objs, start=1)}}, np.full_like(seg, -1), {})
    scores = pq.scores()
    assert scores["all"]["pq"] == 0.0 and scores["per_class"]["spiral"]["fn"] == 1
    assert scores["per_class"]["background"]["fn"] == 2


def test_class_swapped():
    m = box(4, 14, 4, 14)
    gt, pred = semantic((S, m)), semantic((SB, m))
    cm = image_confusion(gt, pred)
    assert cm[S, SB] == 100 and cm[S, S] == 0
    report = semantic_report(cm[None])
    assert report["seed_protocol"]["mean_iou"] == 0.0 and report["seed_protocol"]["accuracy"] == 0.0
    assert report["semantic"]["per_class_iou"]["background"] == 1.0
    assert report["semantic"]["per_class_iou"]["spiral"] == 0.0
    assert report["classification"]["confusion_matrix"][S][SB] == 1
    images = [{"id": 7, "height": SIZE, "width": SIZE, "objects": [(S, m)]}]
    ap = coco_mask_ap(
        coco_ground_truth(images), [{"image_id": 7, "category_id": SB, "segmentation": mask_to_rle(m), "score": 0.99}]
    )
    assert ap["ap"] == 0.0 and ap["per_class_ap"]["spiral"] == 0.0


def test_partial_overlap_known_iou_and_dice():
    gt = semantic((E, box(0, 10, 0, 10)))
    pred = semantic((E, box(0, 10, 5, 15)))  # 50 shared pixels, union 150
    seed = seed_protocol(image_confusion(gt, pred)[None])
    assert seed["mean_iou"] == pytest.approx(1 / 3) and seed["dice"] == pytest.approx(0.5)
    assert seed["accuracy"] == 1.0


def test_two_objects_in_one_image():
    big, small = box(0, 10, 0, 10), box(20, 25, 20, 25)  # spiral 100 px, elliptical 25 px
    gt = semantic((S, big), (E, small))
    pred = semantic((S, box(0, 10, 0, 5)), (S, small))  # half the spiral; the elliptical called spiral
    seed = seed_protocol(image_confusion(gt, pred)[None])
    # spiral: inter 50, union 100 + 75 - 50 = 125 -> 0.4; elliptical: 0 -> image IoU = mean = 0.2
    assert seed["mean_iou"] == pytest.approx(0.2)
    assert seed["dice"] == pytest.approx((2 * 50 / 175 + 0) / 2)
    # image label: the dominant class, spiral, on both sides
    assert seed["accuracy"] == 1.0 and seed["n_multi_class_images"] == 1
    gt_label, pred_label = image_labels(image_confusion(gt, pred)[None])
    assert gt_label.tolist() == [S] and pred_label.tolist() == [S]
    # prediction dominated by the smaller object's class -> wrong
    pred2 = semantic((E, box(0, 12, 0, 12)))
    assert seed_protocol(image_confusion(gt, pred2)[None])["accuracy"] == 0.0


def test_image_without_object_is_skipped_and_counted():
    gts = [semantic((E, box(0, 4, 0, 4))), np.zeros((SIZE, SIZE), np.uint8)]
    seed = seed_protocol(image_confusions(gts, gts))
    assert seed["n_images"] == 1 and seed["n_skipped_no_object"] == 1 and seed["mean_iou"] == 1.0


def test_vectorised_matches_naive_loop():
    rng = np.random.default_rng(1)
    gts = rng.integers(0, 6, (3, 9, 11))
    preds = rng.integers(0, 6, (3, 9, 11))
    cms = image_confusions(gts, preds)
    naive = np.zeros((3, 6, 6), int)
    for n in range(3):
        for g, p in zip(gts[n].ravel(), preds[n].ravel()):
            naive[n, g, p] += 1
    assert np.array_equal(cms, naive)
    sem = semantic_scores(cms)
    tp = naive.sum(0).diagonal()
    union = naive.sum(0).sum(0) + naive.sum(0).sum(1) - tp
    assert sem["mean_iou"] == pytest.approx(np.mean(tp / union))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="outside 0..5"):
        image_confusion(np.full((2, 2), 6), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="differ in shape"):
        image_confusion(np.zeros((2, 2), int), np.zeros((2, 3), int))


def test_classification_report_known_values():
    y_true = [E, E, E, S, S, SB]
    y_pred = [E, E, S, S, 0, SB]  # 0 = no galaxy predicted
    rep = classification_report(y_true, y_pred)
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["per_class"]["elliptical"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert rep["per_class"]["spiral"]["precision"] == 0.5 and rep["per_class"]["spiral"]["recall"] == 0.5
    assert "artifact" not in rep["per_class"]
    assert rep["confusion_matrix"][S][0] == 1
    assert rep["macro_avg"]["recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)


def test_coco_ap_matches_pycocotools_called_directly():
    """Two elliptical objects, a true positive, a false positive with a lower score, one miss; plus a spiral."""
    g1, g2, g3 = box(0, 10, 0, 10), box(20, 30, 20, 30), box(0, 8, 20, 28)
    images = [
        {"id": 587_741_534_399_692_859, "height": SIZE, "width": SIZE, "objects": [(E, g1), (E, g2)]},
        {"id": 587_741_534_399_692_860, "height": SIZE, "width": SIZE, "objects": [(S, g3)]},
    ]
    results = [
        {"image_id": images[0]["id"], "category_id": E, "segmentation": mask_to_rle(g1), "score": 0.9},
        {"image_id": images[0]["id"], "category_id": E, "segmentation": mask_to_rle(box(12, 18, 0, 6)), "score": 0.8},
        {"image_id": images[1]["id"], "category_id": S, "segmentation": mask_to_rle(box(0, 8, 21, 28)), "score": 0.7},
    ]
    ours = coco_mask_ap(coco_ground_truth(images), results)
    as_rle = [{**im, "objects": [(c, mask_to_rle(m)) for c, m in im["objects"]]} for im in images]
    assert coco_ground_truth(as_rle) == coco_ground_truth(images)

    # the same evaluation written straight against pycocotools
    anns, k = [], 0
    for im in images:
        for c, m in im["objects"]:
            k += 1
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            anns.append(
                {
                    "id": k,
                    "image_id": im["id"],
                    "category_id": c,
                    "segmentation": rle,
                    "area": float(m.sum()),
                    "bbox": list(mask_utils.toBbox(rle)),
                    "iscrowd": 0,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {
            "images": [{"id": im["id"], "height": SIZE, "width": SIZE} for im in images],
            "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in enumerate(CLASS_NAMES) if i],
        }
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours["ap"] == pytest.approx(ev.stats[0]) and ours["ap50"] == pytest.approx(ev.stats[1])
    # by hand: elliptical recall 0.5 at precision 1 at every IoU threshold -> 51 of 101 recall points;
    # spiral IoU 56/64 = 0.875 -> a hit at the thresholds .50 ... .85 (8 of 10), a miss at .90 and .95
    assert ours["per_class_ap"]["elliptical"] == pytest.approx(51 / 101)
    assert ours["per_class_ap"]["spiral"] == pytest.approx(8 / 10)
    assert ours["ap"] == pytest.approx((51 / 101 + 0.8) / 2)


def test_panoptic_quality_known_values():
    gt = np.zeros((SIZE, SIZE), np.int32)
    gt[box(0, 10, 0, 10)] = 1  # elliptical, 100 px
    gt[box(20, 30, 20, 30)] = 2  # spiral, 100 px
    pred = np.zeros((SIZE, SIZE), np.int32)  # 0 = no segment
    pred[:] = 5  # background segment
    pred[box(0, 10, 0, 8)] = 3  # elliptical, IoU 0.8
    pred[box(20, 30, 20, 30)] = 4  # spiral but called spiral barred -> FN + FP
    acc = PanopticAccumulator()
    acc.update(gt, {0: 0, 1: E, 2: S}, pred, {3: E, 4: SB, 5: 0})
    s = acc.scores()
    assert s["per_class"]["elliptical"] == {
        "pq": pytest.approx(0.8),
        "sq": pytest.approx(0.8),
        "rq": 1.0,
        "tp": 1,
        "fp": 0,
        "fn": 0,
    }
    assert s["per_class"]["spiral"]["pq"] == 0.0 and s["per_class"]["spiral"]["fn"] == 1
    assert s["per_class"]["spiral barred"]["fp"] == 1
    bg_iou = (SIZE * SIZE - 200) / (SIZE * SIZE - 200 + 20)
    assert s["per_class"]["background"]["sq"] == pytest.approx(bg_iou)
    assert s["things"]["pq"] == pytest.approx(0.8 / 3)
    assert s["all"]["pq"] == pytest.approx((0.8 + bg_iou) / 4)


def test_masks_to_rles_matches_pycocotools_one_by_one():
    rng = np.random.default_rng(3)
    masks = rng.random((7, 19, 23)) < 0.3
    masks[2] = False  # an empty mask
    masks[4, :, :] = False
    masks[4, 5:9, 11:13] = True  # a small block: the copied region is cut to all masks' span
    expected = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    expected = [{"size": e["size"], "counts": e["counts"].decode("ascii")} for e in expected]
    column_major = np.ascontiguousarray(masks.transpose(0, 2, 1)).transpose(0, 2, 1)  # Fortran-ordered masks
    for given in (masks, list(masks), column_major, masks.astype(np.uint8)):
        assert masks_to_rles(given) == expected
    assert masks_to_rles(masks[4:5] & False) == [mask_to_rle(np.zeros((19, 23), bool))]
    assert masks_to_rles([]) == [] and mask_to_rle(masks[0]) == expected[0]
    assert np.array_equal(mask_utils.decode(masks_to_rles(masks)), masks.transpose(1, 2, 0))
    with pytest.raises(ValueError, match="shape"):
        masks_to_rles(np.zeros((2, 3), bool))


def _random_coco_case(seed: int, size: int = 128):
    """Eight images (consecutive 18-digit objids), 0-3 objects (squares, discs) each of any galaxy class and of
    every COCO area range; overlapping detections (shifted or stretched copies of the objects, random boxes), some
    of another class, scores rounded to 2 decimals so that many tie."""
    rng = np.random.default_rng(seed)
    images, results = [], []
    for i in range(8):
        image_id = 587_741_534_399_692_859 + i
        objects = []
        for _ in range(rng.integers(0, 4)):
            side = int(rng.choice([12, 40, 110]))  # small (< 32^2), medium, large (> 96^2) areas
            r0, c0 = rng.integers(0, size - side + 1, 2)
            mask = box(r0, r0 + side, c0, c0 + side, size)
            if rng.random() < 0.5:  # a disc in that box: area != box area
                yy, xx = np.mgrid[:size, :size]
                mask &= (yy - r0 - side / 2) ** 2 + (xx - c0 - side / 2) ** 2 <= (side / 2) ** 2
            objects.append((int(rng.integers(1, 6)), mask))
        images.append({"id": image_id, "height": size, "width": size, "objects": objects})
        for object_class, mask in objects:
            for _ in range(rng.integers(0, 5)):
                det = np.roll(mask, tuple(rng.integers(-6, 7, 2)), axis=(0, 1))
                if rng.random() < 0.3:
                    det = det | np.roll(det, 3, axis=0)
                cls = object_class if rng.random() < 0.7 else int(rng.integers(1, 6))
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": cls,
                        "segmentation": mask_to_rle(det),
                        "score": round(float(rng.random()), 2),
                    }
                )
        for _ in range(rng.integers(0, 4)):  # false positives anywhere
            r0, c0 = rng.integers(0, size - 8, 2)
            side = int(rng.integers(4, 60))
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(rng.integers(1, 6)),
                    "segmentation": mask_to_rle(box(r0, r0 + side, c0, c0 + side, size)),
                    "score": round(float(rng.random()), 2),
                }
            )
    if not any(im["objects"] for im in images):
        images[0]["objects"].append((E, box(0, 10, 0, 10, size)))
    return images, results


@pytest.mark.parametrize("seed", range(6))
def test_faster_coco_eval_matches_pycocotools(seed):
    """faster-coco-eval (the default) against pycocotools (the reference) on random overlapping detections."""
    images, results = _random_coco_case(seed)
    ground_truth = coco_ground_truth(images)
    fast = coco_mask_ap(ground_truth, results)
    ref = coco_mask_ap(ground_truth, results, backend="pycocotools")
    assert fast["backend"] == "faster-coco-eval" and ref["backend"] == "pycocotools"
    assert ref["ap"] is not None and 0 < ref["n_predictions"] == fast["n_predictions"]
    for key in ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"):
        if ref[key] is None:
            assert fast[key] is None, key
        else:
            assert fast[key] == pytest.approx(ref[key], abs=1e-9, rel=0), key
    assert fast["per_class_ap"].keys() == ref["per_class_ap"].keys()
    for name, value in ref["per_class_ap"].items():
        assert (
            (fast["per_class_ap"][name] is None)
            if value is None
            else fast["per_class_ap"][name] == pytest.approx(value, abs=1e-9, rel=0)
        ), name
    # the inputs are left as they were (both back-ends index copies)
    assert "id" not in results[0] and "area" not in results[0]


def test_coco_backend_errors():
    images = [{"id": 1, "height": SIZE, "width": SIZE, "objects": [(E, box(0, 4, 0, 4))]}]
    gt = coco_ground_truth(images)
    dets = [{"image_id": 2, "category_id": E, "segmentation": mask_to_rle(box(0, 4, 0, 4)), "score": 0.5}]
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_mask_ap(gt, dets)
    with pytest.raises(ValueError, match="unknown COCO backend"):
        coco_mask_ap(gt, dets, backend="detectron")
    with pytest.raises(ValueError, match="carries a 'bbox'"):
        coco_mask_ap(gt, [{**dets[0], "image_id": 1, "bbox": [0, 0, 4, 4]}], backend="pycocotools")
