"""Exports: replaced as a whole folder, never file by file; the run's state lives beside them; each has a model
card (README.md, Hugging Face conventions) with the figures of metrics.json."""

import pytest
import yaml

from src.data.splits import file_sha256
from src.evaluation.evaluate import write_metrics
from src.modelling.model import check_export_folder, load_model, save_export
from src.modelling.model_card import data_origin
from src.training import main


@pytest.fixture(scope="module")
def tiny_model():
    return load_model("galaxy-tiny")


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_export_replaces_the_whole_folder_or_nothing(tmp_path, tiny_model, monkeypatch):
    model, processor = tiny_model
    folder = tmp_path / "export"
    save_export(model, processor, folder)
    (folder / "metrics.json").write_text("{}")  # scores of the former model
    weights = file_sha256(folder / "model.safetensors")

    # an export killed half way (here: while writing the card) leaves the former export as it was
    def killed(staging, path):
        raise KeyboardInterrupt

    monkeypatch.setattr("src.modelling.model_card.write_model_card", killed)
    with pytest.raises(KeyboardInterrupt):
        save_export(model, processor, folder)
    assert (folder / "metrics.json").is_file() and file_sha256(folder / "model.safetensors") == weights
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging folder left behind
    monkeypatch.undo()
    # a complete export replaces the folder as a whole: nothing of the former one (its metrics) survives
    save_export(model, processor, folder, extra_json={"training_data.json": {"origin": "synthetic"}})
    assert not (folder / "metrics.json").exists() and (folder / "training_data.json").is_file()
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    load_model(str(folder))


def test_an_output_folder_that_is_not_an_export_is_refused(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and not a model export"):
        check_export_folder(notes)
    old = tmp_path / "old_run"
    (old / "checkpoints" / "epoch_1").mkdir(parents=True)
    (old / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="checkpoints/, which now live beside the export"):
        check_export_folder(old)
    # train_script.py refuses before any work, and nothing is deleted
    assert main(["--output", str(notes), "--model-card", "galaxy-tiny"]) == 2
    assert "not empty and not a model export" in capsys.readouterr().err
    assert (notes / "todo.txt").read_text() == "keep me"
    check_export_folder(tmp_path / "new")  # absent or empty: fine
    (tmp_path / "empty").mkdir()
    check_export_folder(tmp_path / "empty")


def test_model_card_follows_hf_conventions_and_shows_the_metrics(tmp_path, tiny_model):
    model, processor = tiny_model
    folder = tmp_path / "galaxy_demo"
    training = {
        "data_root": "data/synthetic",
        "origin": "synthetic",
        "train_images": 70,
        "val_images": 20,
        "split_membership": {"method": "stratified", "seed": 42},
    }
    save_export(model, processor, folder, extra_json={"training_data.json": training})
    card = (folder / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-segmentation"
    assert "synthetic-data" in meta["tags"] and "model-index" not in meta  # not scored yet
    assert "**Trained on synthetic data**" in card and "Not scored yet" in card and card.count("# galaxy_demo\n") == 1
    assert f'from_pretrained("{folder}")' in card
    for section in (
        "## Model details",
        "## Intended use",
        "## Training data",
        "## Evaluation",
        "## Limitations",
        "## How to load",
        "## Citation",
    ):
        assert section in card, section
    # scoring that writes metrics.json into the export refreshes the card
    metrics = {
        "model": str(folder),
        "split": "test",
        "n_images": 99,
        "data_root": "data/synthetic",
        "split_sha256": "ab" * 32,
        "semantic": {
            "seed_protocol": {"mean_iou": 0.7425, "dice": 0.8029, "accuracy": 0.8788},
            "semantic": {"mean_iou": 0.7369},
        },
        "instance": {"coco": {"ap": 0.6475, "ap50": 0.9001}, "original_ap": {"ap": 0.55}},
    }
    write_metrics(metrics, folder / "metrics.json")
    card = (folder / "README.md").read_text()
    results = _front_matter(card)["model-index"][0]["results"]
    values = {m["name"]: m["value"] for result in results for m in result["metrics"]}
    assert values["mIoU (seed protocol)"] == 0.7425 and values["COCO mask AP .5:.95"] == 0.6475
    assert values["original project's 11-point AP"] == 0.55
    assert "| mIoU, seed protocol (semantic task) | 0.7425 |" in card and "scores on synthetic test images" in card
    # metrics.json written elsewhere leaves the card alone
    write_metrics({**metrics, "n_images": 5}, tmp_path / "elsewhere.json")
    assert "(99 images" in (folder / "README.md").read_text()


def test_data_origin():
    assert data_origin([900_000_000_000_000_001, 900_000_001_000_000_000]) == "synthetic"
    assert data_origin([587741534399692859, 588023240745943289]) == "real"
    assert data_origin([100_000_000_000_000_000]) == data_origin([]) == "unknown"
