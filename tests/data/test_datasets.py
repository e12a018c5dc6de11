"""GalaxyDataset: polygons -> maps, multi-object images, augmentation, determinism, bad input, OneFormer batches."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from src.data.datasets import DatasetError, GalaxyDataset, load_split, load_stats
from src.data.via import polygon_mask
from src.modelling.model import build_config, build_processor
from tests.tiny_data import write_tiny_splits


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_splits(tmp_path_factory.mktemp("gz2"), n_train=9, size=64)


@pytest.fixture(scope="module")
def processor(data):
    mean, std = load_stats(data)
    return build_processor(image_size=64, mean=mean, std=std, config=build_config("galaxy-tiny"))


def _dihedral(a):
    """The 8 flips/rotations of an array (H, W, ...)."""
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out += [r, np.flip(r, 1)]
    return out


def test_items_match_polygons_multi_object(data):
    ds = GalaxyDataset(data, "train")
    via = load_split(data, "train")
    counts = []
    for i, (key, entry) in enumerate(via.items()):
        item = ds[i]
        assert item["objid"] == int(key) and item["image"].shape == (64, 64, 3) and item["image"].dtype == np.uint8
        k = len(entry["regions"])
        counts.append(k)
        assert len(item["class_ids"]) == k
        assert set(np.unique(item["instance"])) <= set(range(k + 1))
        for n, region in enumerate(entry["regions"], start=1):
            shape = region["shape_attributes"]
            mask = polygon_mask(shape["all_points_x"], shape["all_points_y"], (64, 64))
            cid = item["class_ids"][n - 1]
            assert cid == ds.records[i]["classes"][n - 1] and 1 <= cid <= 5
            # pixels of instance n carry its class in the semantic map
            assert (item["semantic"][item["instance"] == n] == cid).all()
            assert (item["instance"][mask] > 0).all()
        assert ((item["semantic"] > 0) == (item["instance"] > 0)).all()
    assert max(counts) == 2 and min(counts) == 1  # some images hold two galaxies


def test_augmentation_same_transform_and_deterministic(data):
    plain = GalaxyDataset(data, "train")
    aug = GalaxyDataset(data, "train", augment=True, seed=3)
    changed = 0
    for i in range(len(plain)):
        p, a = plain[i], aug[i]
        matches = [j for j, img in enumerate(_dihedral(p["image"])) if np.array_equal(img, a["image"])]
        assert matches, "augmented image is not a flip/rotation of the original"
        j = matches[0]
        assert np.array_equal(_dihedral(p["semantic"])[j], a["semantic"])
        assert np.array_equal(_dihedral(p["instance"])[j], a["instance"])
        changed += j != 0
        assert np.array_equal(aug[i]["image"], a["image"])  # a function of (seed, epoch, index)
    assert changed > 0
    before = [aug[i]["image"] for i in range(len(aug))]
    aug.set_epoch(1)
    assert any(not np.array_equal(before[i], aug[i]["image"]) for i in range(len(aug)))


def test_resize_random_task_and_in_memory(data):
    ds = GalaxyDataset(data, "train", task="random", image_size=32)
    tasks = {ds[i]["task"] for i in range(len(ds))}
    assert tasks == {"semantic", "instance"}
    item = ds[0]
    assert item["image"].shape == (32, 32, 3) and item["semantic"].shape == (32, 32)
    assert set(np.unique(item["semantic"])) <= {0, *item["class_ids"]}  # nearest-neighbour masks
    mem = GalaxyDataset(data, "train", task="random", image_size=32, in_memory=True)
    for i in range(len(ds)):
        a, b = ds[i], mem[i]
        assert a["task"] == b["task"] and np.array_equal(a["image"], b["image"])
        assert np.array_equal(a["instance"], b["instance"])


def test_collator_batches(data, processor):
    ds = GalaxyDataset(data, "train", processor, task="random", image_size=64, augment=True)
    items = [ds[i] for i in range(len(ds))]
    batch = ds.collator(training=True)(items)
    n = len(items)
    assert batch["pixel_values"].shape == (n, 3, 64, 64) and batch["pixel_mask"].shape == (n, 64, 64)
    assert batch["task_inputs"].shape == (n, 77) and batch["text_inputs"].shape[:2] == (n, 6)
    for item, masks, labels in zip(items, batch["mask_labels"], batch["class_labels"]):
        assert masks.shape[0] == labels.shape[0]
        if item["task"] == "semantic":  # one mask per class present, background included
            assert labels.tolist() == sorted({0, *item["class_ids"]})
        else:  # one mask per galaxy, no background
            assert sorted(labels.tolist()) == sorted(item["class_ids"])
            for m, c in zip(masks, labels):
                assert ((torch.from_numpy(item["semantic"]) == c) | (m == 0)).all()
    # normalisation with dataset_stats.json
    mean, std = load_stats(data)
    restored = batch["pixel_values"][0].permute(1, 2, 0).numpy() * np.array(std) + np.array(mean)
    assert np.abs(restored - items[0]["image"]).max() < 0.5
    val = ds.collator(training=False)(items[:2])
    assert "text_inputs" not in val and val["pixel_values"].shape[0] == 2


@pytest.mark.parametrize("preset", ["galaxy-tiny", "swin-tiny"])
def test_collator_encodes_as_the_processor(data, preset):
    """The collator (memoised text tokenisation) gives exactly the tensors of ``OneFormerProcessor.__call__``,
    in mixed-task batches with several objects (the texts depend on the objects earlier in the batch)."""
    mean, std = load_stats(data)
    processor = build_processor(image_size=64, mean=mean, std=std, config=build_config(preset))
    ds = GalaxyDataset(
        data,
        "train",
        processor,
        task="random",
        random_tasks=("semantic", "instance", "panoptic"),
        image_size=64,
        augment=True,
    )
    collator = ds.collator(training=True)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        items = [ds[i] for i in range(len(ds))]
        assert len({item["task"] for item in items}) == 3 and max(len(item["class_ids"]) for item in items) == 2
        for batch_items in (items[:4], items[4:], items[:1]):
            new = collator(batch_items)
            maps = [item["semantic"] if item["task"] == "semantic" else item["instance"] for item in batch_items]
            mappings = [
                None if item["task"] == "semantic" else {0: 0, **dict(enumerate(item["class_ids"], 1))}
                for item in batch_items
            ]
            old = processor(
                images=[item["image"] for item in batch_items],
                task_inputs=[i["task"] for i in batch_items],
                segmentation_maps=maps,
                instance_id_to_semantic_id=mappings,
                return_tensors="pt",
                do_resize=False,
            )
            assert sorted(new) == sorted(old)
            for key in new:
                pairs = zip(new[key], old[key]) if isinstance(new[key], list) else [(new[key], old[key])]
                assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in pairs), key
    assert new["text_inputs"].shape[1] == build_config(preset).num_queries - build_config(preset).text_encoder_n_ctx
    assert 0 < len(collator._tokens) < 40  # a few distinct text lists, each tokenised once


def _write(root, split, via):
    (root / f"galaxy_{split}.json").write_text(json.dumps(via))


@pytest.mark.parametrize(
    "problem, message",
    [
        ("missing_image", "not found"),
        ("outside", "outside the 64x64 image"),
        ("unknown_class", "unknown class name 'lenticular'"),
        ("unreadable", "unreadable"),
    ],
)
def test_bad_entries_named_or_counted(tmp_path, problem, message):
    root = write_tiny_splits(tmp_path, n_train=4, size=64)
    via = load_split(root, "train")
    key = list(via)[1]
    entry = via[key]
    if problem == "missing_image":
        entry["filename"] = "Dr7_0.jpg"
    elif problem == "outside":
        entry["regions"][0]["shape_attributes"]["all_points_x"][0] = 90
    elif problem == "unknown_class":
        entry["regions"][0]["region_attributes"]["object_name"] = "lenticular"
    else:
        (root / "original" / "zoo2Main" / entry["filename"]).write_bytes(b"not a jpeg")
    _write(root, "train", via)
    with pytest.raises(DatasetError, match=message) as err:
        GalaxyDataset(root, "train")
    assert key in str(err.value) and "galaxy_train.json" in str(err.value)
    ds = GalaxyDataset(root, "train", skip_bad=True)
    assert len(ds) == 3 and len(ds.skipped) == 1 and ds.skipped[0][0] == key


def test_empty_or_missing_split(tmp_path):
    root = write_tiny_splits(tmp_path, n_train=2, size=64)
    _write(root, "val", {})
    with pytest.raises(DatasetError, match="galaxy_val.json.*empty"):
        GalaxyDataset(root, "val")
    with pytest.raises(DatasetError, match="galaxy_nope.json.*not found"):
        load_split(root, "nope")


def test_crop_keeps_objects_native_resolution(data):
    full = GalaxyDataset(data, "train", task="instance")
    centred = GalaxyDataset(data, "train", task="instance", crop_size=56)
    jittered = GalaxyDataset(data, "train", task="instance", crop_size=56, augment=True, seed=3)
    for i in range(len(full)):
        counts = np.bincount(full[i]["instance"].ravel(), minlength=4)[1:]
        for ds in (centred, jittered):
            item = ds[i]
            assert item["image"].shape == (56, 56, 3) and item["instance"].shape == (56, 56)
            # every object pixel is inside the crop, at native resolution (no resize)
            assert np.array_equal(np.bincount(item["instance"].ravel(), minlength=4)[1:], counts)
    # centred crops of an unaugmented split are pixel-exact windows of the image
    item, whole = centred[0], full[0]
    windows = [
        (y, x)
        for y in range(9)
        for x in range(9)
        if np.array_equal(whole["image"][y : y + 56, x : x + 56], item["image"])
    ]
    assert windows
    # random placement: a function of (seed, epoch, index), varying with the epoch
    first = [jittered[i]["image"] for i in range(len(jittered))]
    assert all(np.array_equal(a, jittered[i]["image"]) for i, a in enumerate(first))
    jittered.set_epoch(1)
    assert any(not np.array_equal(a, jittered[i]["image"]) for i, a in enumerate(first))
    with pytest.raises(DatasetError, match="smaller than crop_size 80"):
        GalaxyDataset(data, "train", crop_size=80)[0]


def test_random_tasks_weighting(data):
    ds = GalaxyDataset(data, "train", task="random", random_tasks=("instance",))
    assert {ds[i]["task"] for i in range(len(ds))} == {"instance"}
    with pytest.raises(ValueError, match="random_tasks"):
        GalaxyDataset(data, "train", task="random", random_tasks=("random",))


def _truncate(path):
    """Keep the JPEG header and the first part of its body: the size reads, decoding fails."""
    data = path.read_bytes()
    scan = data.index(b"\xff\xda")  # start of scan: the header ends here
    path.write_bytes(data[: scan + (len(data) - scan) // 2])
    with Image.open(path) as im:
        assert im.size[0] > 0  # the header still reads


def test_truncated_jpeg_is_caught_where_the_dataset_is_built_with_skip_bad(tmp_path):
    root = write_tiny_splits(tmp_path, n_train=4, n_val=1, n_test=1, size=32)
    key = next(iter(json.loads((root / "galaxy_train.json").read_text())))
    _truncate(root / "original" / "zoo2Main" / f"Dr7_{key}.jpg")
    ds = GalaxyDataset(root, "train", skip_bad=True)
    assert len(ds) == 3 and [k for k, _ in ds.skipped] == [key]
    assert "unreadable image" in ds.skipped[0][1] and f"Dr7_{key}.jpg" in ds.skipped[0][1]
    assert all(ds[i]["image"].shape == (32, 32, 3) for i in range(len(ds)))  # the epoch runs through
    # without --skip-bad only headers are read at construction; the bad file is then named when it is loaded
    strict = GalaxyDataset(root, "train")
    index = [r["key"] for r in strict.records].index(key)
    with pytest.raises(DatasetError, match=f"entry '{key}'.*Dr7_{key}.jpg: unreadable image"):
        strict[index]


def test_truncated_jpeg_is_caught_by_the_conversion_check(tmp_path):
    from src.data.conversion import convert
    from tests.tiny_data import write_tiny_raw

    root = write_tiny_raw(tmp_path, n=10, size=64)
    victim = sorted((root / "original" / "zoo2Main").glob("*.jpg"))[0]
    _truncate(victim)
    report = convert(root, image_size=64, min_area=20, check_images=True)
    assert (
        report["skipped"]["unreadable_image"] == 1
        and victim.stem[4:] in report["skipped_examples"]["unreadable_image"][0]
    )
