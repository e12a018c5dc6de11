"""The split files: written as one set and checked on every load; --splits-from reproduces another split."""

import json
import os

import pytest

from src.data.conversion import convert, main
from src.data.datasets import DatasetError, GalaxyDataset, load_split
from src.data.splits import MANIFEST, SPLITS, SplitError, check_split_set, file_sha256, write_split_set
from src.data.via import load_via
from tests.tiny_data import objid, write_tiny_raw, write_tiny_splits


def _keys(root, split):
    return set(json.loads((root / f"galaxy_{split}.json").read_text()))


def test_reference_membership_is_kept_and_losses_named(tmp_path):
    root = write_tiny_raw(tmp_path / "raw", n=30, size=64)
    convert(root, image_size=64, min_area=20, seed=1)
    reference = tmp_path / "reference"
    reference.mkdir()
    # the reference split: this conversion's split with another seed, under the original project's file names
    convert(root, image_size=64, min_area=20, seed=7)
    wanted = {s: _keys(root, s) for s in SPLITS}
    for s in SPLITS:
        (reference / f"galaxy_{s}.json").write_bytes((root / f"galaxy_{s}.json").read_bytes())
    # the catalog loses one test objid, the VIA files another (both are reported by key), and one annotated
    # entry is in no reference split (skipped and counted, never silently put somewhere)
    lost_catalog, lost_via = sorted(wanted["test"])[:2]
    catalog = (root / "gz2_hart16.csv").read_text().splitlines()
    (root / "gz2_hart16.csv").write_text(
        "\n".join(line for line in catalog if not line.startswith(lost_catalog)) + "\n"
    )
    val_via = root / "original/val/via_region_data.json"
    train_via = root / "original/train/via_region_data.json"
    for via_file in (val_via, train_via):
        data = json.loads(via_file.read_text())
        data.pop(lost_via, None)
        via_file.write_text(json.dumps(data))
    extra = json.loads(train_via.read_text())
    outsider = str(objid(999))
    extra[outsider] = dict(next(iter(extra.values())), filename=f"Dr7_{outsider}.jpg")
    train_via.write_text(json.dumps(extra))
    catalog_lines = (root / "gz2_hart16.csv").read_text().splitlines()
    (root / "gz2_hart16.csv").write_text("\n".join(catalog_lines + [f"{outsider},0,0,original,Er,0.5,0.5,0.5"]) + "\n")

    report = convert(root, image_size=64, min_area=20, seed=1, splits_from=reference)
    for s in SPLITS:
        expected = wanted[s] - ({lost_catalog, lost_via} if s == "test" else set())
        assert _keys(root, s) == expected, s
    assert report["splits_from"]["not_kept"]["test"] == {
        "no_catalog_match": [lost_catalog],
        "not_in_via_files": [lost_via],
    }
    assert report["splits_from"]["files"]["test"]["sha256"] == file_sha256(reference / "galaxy_test.json")
    assert report["skipped"]["not_in_reference_splits"] == 1
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["membership"]["method"] == "reference"
    assert manifest["membership"]["splits_from"]["test"]["file"] == str(reference / "galaxy_test.json")


def test_original_test_split_from_the_real_file(tmp_path, real_dir, capsys):
    """``--splits-from ../shared/real``: the original test split (galaxy_test_via.json) is reproduced exactly;
    the other annotated entries are split 70:20 into train and val."""
    real = load_via(real_dir / "galaxy_test_via.json")
    keys = list(real)
    extra = {str(objid(i)): dict(real[keys[i]], filename=f"Dr7_{objid(i)}.jpg") for i in range(900)}
    abbrev = {"artifact": "A", "elliptical": "Er", "spiral": "Sc2m", "spiral barred": "SBb2t", "spiral edge-on": "Sen"}
    (tmp_path / "original/train").mkdir(parents=True)
    (tmp_path / "original/val").mkdir(parents=True)
    (tmp_path / "original/train/via_region_data.json").write_text(
        json.dumps({**{k: real[k] for k in keys[:2000]}, **extra})
    )
    (tmp_path / "original/val/via_region_data.json").write_text(json.dumps({k: real[k] for k in keys[2000:]}))
    rows = [
        f"{k},0,0,original,{abbrev[v['regions'][0]['region_attributes']['object_name']]}"
        for k, v in {**real, **extra}.items()
        if k != keys[5]
    ]  # one test objid missing from the catalog
    (tmp_path / "gz2_hart16.csv").write_text("dr7objid,ra,dec,sample,gz2_class\n" + "\n".join(rows) + "\n")
    assert main(["--data-root", str(tmp_path), "--splits-from", str(real_dir)]) == 0
    printed = capsys.readouterr().out
    assert "galaxy_test_via.json (2828 entries); not kept: no_catalog_match 1" in printed
    assert _keys(tmp_path, "test") == set(keys) - {keys[5]}
    train, val = _keys(tmp_path, "train"), _keys(tmp_path, "val")
    assert train | val == set(extra) and len(train) == pytest.approx(700, abs=5)
    report = json.loads((tmp_path / "conversion_report.json").read_text())
    assert report["splits_from"]["not_kept"] == {"test": {"no_catalog_match": [keys[5]]}}


def test_split_files_are_one_set_checked_on_every_load(tmp_path):
    root = write_tiny_raw(tmp_path, n=20, size=64)
    convert(root, image_size=64, min_area=20)
    assert len(GalaxyDataset(root, "test")) == len(_keys(root, "test"))
    # a re-run killed after the new manifest and one renamed file: the load names the file of the other set
    before = (root / "galaxy_val.json").read_bytes()
    convert(root, image_size=64, min_area=20, seed=3)
    (root / "galaxy_val.json").write_bytes(before)
    with pytest.raises(DatasetError, match="galaxy_val.json differs from the one written with the others"):
        load_split(root, "train")
    (root / "galaxy_val.json").unlink()
    with pytest.raises(DatasetError, match="galaxy_val.json is missing"):
        load_split(root, "test")


def test_killed_write_leaves_the_old_set_or_a_detected_mix(tmp_path, monkeypatch):
    entries = {str(objid(i)): {"filename": f"Dr7_{objid(i)}.jpg", "regions": []} for i in range(6)}
    old = {
        "train": dict(list(entries.items())[:4]),
        "val": dict(list(entries.items())[4:5]),
        "test": dict(list(entries.items())[5:]),
    }
    write_split_set(tmp_path, old, {})
    new = {
        "train": dict(list(entries.items())[2:]),
        "val": dict(list(entries.items())[:1]),
        "test": dict(list(entries.items())[1:2]),
    }
    renames = []
    real_replace = os.replace

    def killed_after_one_rename(src, dst):
        if str(dst).endswith(".json") and "galaxy_" in str(dst) and not str(dst).endswith(MANIFEST):
            if renames:
                raise KeyboardInterrupt("killed")
            renames.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_one_rename)
    with pytest.raises(KeyboardInterrupt):
        write_split_set(tmp_path, new, {})
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(renames) == 1 and not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    with pytest.raises(SplitError, match="not one set"):
        check_split_set(tmp_path, "train", json.loads((tmp_path / "galaxy_train.json").read_text()))


def test_overlapping_splits_are_refused_on_load(tmp_path):
    root = write_tiny_splits(tmp_path, n_train=3, n_val=2, n_test=2, size=32)  # written without a manifest
    train = json.loads((root / "galaxy_train.json").read_text())
    test = json.loads((root / "galaxy_test.json").read_text())
    key = next(iter(train))
    test[key] = train[key]
    (root / "galaxy_test.json").write_text(json.dumps(test))
    with pytest.raises(DatasetError, match=f"galaxy_train.json and galaxy_test.json share 1 entries .*{key}"):
        GalaxyDataset(root, "train")
    with pytest.raises(SplitError, match="must be disjoint"):
        write_split_set(tmp_path / "new", {"train": train, "test": test}, {})


def test_reference_folder_mistakes(tmp_path):
    root = write_tiny_raw(tmp_path / "raw", n=10, size=64)
    with pytest.raises(FileNotFoundError, match="no galaxy_"):
        convert(root, image_size=64, min_area=20, splits_from=tmp_path)
    ref = tmp_path / "ref"
    ref.mkdir()
    one = {str(objid(0)): {"filename": f"Dr7_{objid(0)}.jpg", "regions": []}}
    (ref / "galaxy_train.json").write_text(json.dumps(one))
    (ref / "galaxy_test_via.json").write_text(json.dumps(one))
    with pytest.raises(SplitError, match="galaxy_train.json and galaxy_test_via.json share 1"):
        convert(root, image_size=64, min_area=20, splits_from=ref)
    (ref / "galaxy_test.json").write_text(json.dumps({}))
    with pytest.raises(SplitError, match="both galaxy_test.json and galaxy_test_via.json"):
        convert(root, image_size=64, min_area=20, splits_from=ref)


def test_metrics_record_the_split_file_and_warn_for_bare_state_dicts_on_other_splits(tmp_path):
    import torch
    from safetensors.torch import save_model
    from transformers import OneFormerForUniversalSegmentation

    from src.evaluation.evaluate import evaluate, format_table
    from src.modelling.model import build_config

    root = write_tiny_raw(tmp_path / "raw", n=30, size=64)
    torch.manual_seed(0)
    weights = tmp_path / "galaxy_sem_5_1.safetensors"
    save_model(OneFormerForUniversalSegmentation(build_config("galaxy-tiny")), str(weights))

    def score():
        return evaluate(weights, root, tasks=["semantic"], base_card="galaxy-tiny", progress=False, limit=1)

    convert(root, image_size=64, min_area=20)
    metrics = score()
    assert metrics["split_file"] == str(root / "galaxy_test.json")
    assert metrics["split_sha256"] == file_sha256(root / "galaxy_test.json")
    assert metrics["split_membership"]["method"] == "stratified"
    assert "--splits-from" in metrics["warnings"][0] and "WARNING: scoring a bare state dict" in format_table(metrics)
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "galaxy_test.json").write_bytes((root / "galaxy_test.json").read_bytes())
    convert(root, image_size=64, min_area=20, splits_from=reference)
    metrics = score()
    assert "warnings" not in metrics and metrics["split_membership"]["method"] == "reference"
    assert metrics["split_membership"]["splits_from"]["test"]["sha256"] == file_sha256(reference / "galaxy_test.json")
