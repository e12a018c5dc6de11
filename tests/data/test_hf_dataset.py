"""The converted splits as a Hugging Face DatasetDict (save_to_disk), row for row what training sees."""

import json

import numpy as np

from src.data.datasets import GalaxyDataset
from src.data.hf_dataset import main
from src.data.images import read_rgb
from tests.tiny_data import write_tiny_splits


def test_datasetdict_rows_match_the_training_data(tmp_path, capsys):
    from datasets import load_from_disk

    root = write_tiny_splits(tmp_path / "data", n_train=4, n_val=2, n_test=3, size=32)
    out = tmp_path / "hf"
    assert main(["--data-root", str(root), "--out", str(out), "--quiet"]) == 0
    assert "train 4 rows, val 2 rows, test 3 rows" in capsys.readouterr().out
    data = load_from_disk(str(out))
    assert set(data) == {"train", "val", "test"}
    assert data["train"].features["class"].names[1:] == [
        "artifact",
        "elliptical",
        "spiral",
        "spiral barred",
        "spiral edge-on",
    ]
    truth = GalaxyDataset(root, "test")
    keys = list(json.loads((root / "galaxy_test.json").read_text()))
    for k, row in enumerate(data["test"]):
        item = truth[k]
        assert row["objid"] == item["objid"] == int(keys[k])
        image = np.asarray(row["image"].convert("RGB"))
        assert np.array_equal(image, read_rgb(root / "original" / "zoo2Main" / f"Dr7_{keys[k]}.jpg"))
        assert np.array_equal(np.asarray(row["semantic_mask"]), item["semantic"])
        assert np.array_equal(np.asarray(row["instance_mask"]), item["instance"])
        assert row["instance_classes"] == item["class_ids"]
        areas = [(item["instance"] == i).sum() for i in range(1, len(item["class_ids"]) + 1)]
        assert row["class"] == item["class_ids"][int(np.argmax(areas))]
    assert any(len(row["instance_classes"]) == 2 for split in data.values() for row in split)  # multi-object rows
    # exported again: the folder is replaced as a whole; a mistake is one line and status 2
    assert main(["--data-root", str(root), "--out", str(out), "--splits", "test", "--quiet"]) == 0
    assert set(load_from_disk(str(out))) == {"test"}
    assert main(["--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "galaxy_train.json: split file not found" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
