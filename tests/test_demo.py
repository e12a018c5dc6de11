"""The demo pipeline end to end with tiny settings (96 px cutouts of the default scene, galaxy-tiny, a few
seconds of training)."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from src.data.splits import file_sha256
from src.demo import REAL_RESULTS, main
from tests.tiny_data import TINY_DEMO_ARGS

TINY_ARGS = list(TINY_DEMO_ARGS)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    # no --images-dir: the comparison figures go beside the model, never into the checkout's images/
    paths = {"data": root / "data", "model": root / "model", "images": root / "model"}
    argv = TINY_ARGS + ["--data-root", str(paths["data"]), "--output", str(paths["model"])]
    return paths, argv


def test_demo_end_to_end_then_reuse(demo_run, capsys):
    paths, argv = demo_run
    assert main(argv) == 0
    out = capsys.readouterr().out
    data, model, images = paths["data"], paths["model"], paths["images"]

    for name in (
        "gz2_hart16.csv",
        "demo_data.json",
        "galaxy_train.json",
        "galaxy_val.json",
        "galaxy_test.json",
        "dataset_stats.json",
    ):
        assert (data / name).is_file(), name
    assert len(list((data / "original" / "zoo2Main").glob("Dr7_*.jpg"))) == 24
    for name in (
        "config.json",
        "model.safetensors",
        "processor_config.json",
        "metrics.json",
        "loss_history.csv",
        "loss_curve.png",
        "confusion_matrix.png",
        "demo_train.json",
        "demo_summary.json",
    ):
        assert (model / name).is_file(), name
    assert not (model / "checkpoints").exists() and not (model.parent / "model.run").exists()
    card = (model / "README.md").read_text()  # the model card, with the figures of metrics.json
    assert "Trained on synthetic data" in card and "pipeline_tag: image-segmentation" in card
    for name in ("seg_comparison.png", "seginst_comparison.png"):
        assert (images / name).stat().st_size > 1000, name

    metrics = json.loads((model / "metrics.json").read_text())
    n_test = len(json.loads((data / "galaxy_test.json").read_text()))
    assert metrics["split"] == "test" and metrics["n_images"] == n_test > 0
    seed = metrics["semantic"]["seed_protocol"]
    coco = metrics["instance"]["coco"]
    for value in (
        seed["mean_iou"],
        seed["dice"],
        seed["accuracy"],
        metrics["semantic"]["semantic"]["mean_iou"],
        coco["ap"],
        coco["ap50"],
    ):
        assert 0.0 <= value <= 1.0

    summary = json.loads((model / "demo_summary.json").read_text())
    assert summary["results"]["seed_miou"] == seed["mean_iou"] and summary["results"]["coco_ap"] == coco["ap"]
    assert set(summary["timings_s"]) == {"data", "convert", "train", "score", "figures", "total"}
    assert not any(stage["skipped"] for stage in summary["stages"].values())
    assert set(summary["stage_seconds"]) == {"data", "convert", "train", "score", "figures"}
    ran = summary["stage_seconds"]
    train_info = json.loads((model / "demo_train.json").read_text())
    assert train_info["settings"]["crop_size"] == 48 and train_info["settings"]["task"] == "random"
    assert train_info["stopped_by_budget"] or train_info["epochs"] == 2

    # the table: real and synthetic rows, clearly labelled, with the demo's own figures
    assert "REAL data" in out and "SYNTHETIC data" in out
    assert f"{REAL_RESULTS['sem_only']['mIoU']:.4f}" in out and f"{REAL_RESULTS['sem+inst']['AP']:.4f}" in out
    assert f"{seed['mean_iou']:.4f}" in out and f"{coco['ap']:.4f}" in out

    # a second run reuses every stage and leaves the model and the metrics untouched
    stamps = {p: (model / p).stat().st_mtime_ns for p in ("model.safetensors", "metrics.json")}
    assert main(argv) == 0
    summary = json.loads((model / "demo_summary.json").read_text())
    assert all(stage["skipped"] for stage in summary["stages"].values())
    assert summary["stage_seconds"] == ran  # the wall times of the run that did the work are kept
    assert stamps == {p: (model / p).stat().st_mtime_ns for p in stamps}
    assert "REAL data" in capsys.readouterr().out

    # re-use is by content, not by file times: touched files change nothing ...
    weights = file_sha256(model / "model.safetensors")
    for path in list(data.rglob("*")) + list(model.rglob("*")):
        os.utime(path, (1, 1))
    assert main(argv) == 0
    assert all(stage["skipped"] for stage in json.loads((model / "demo_summary.json").read_text())["stages"].values())
    # ... changed content re-runs the stage that reads it, and what depends on what it writes: the statistics file
    # edited by hand -> conversion again; it writes the same splits, so the model is kept
    (data / "dataset_stats.json").write_text("{}")
    assert main(argv) == 0
    stages = json.loads((model / "demo_summary.json").read_text())["stages"]
    assert [name for name, stage in stages.items() if not stage["skipped"]] == ["convert"]
    assert json.loads((data / "dataset_stats.json").read_text())["mean"]
    # another figure setting redraws the figures only
    assert main(argv[: argv.index("--n-samples")] + ["--n-samples", "1"] + argv[argv.index("--n-samples") + 2 :]) == 0
    stages = json.loads((model / "demo_summary.json").read_text())["stages"]
    assert [name for name, stage in stages.items() if not stage["skipped"]] == ["figures"]
    capsys.readouterr()

    # --rescore scores again (cheap) without training
    assert main(argv + ["--rescore"]) == 0
    summary = json.loads((model / "demo_summary.json").read_text())
    assert summary["stages"]["train"]["skipped"] and not summary["stages"]["score"]["skipped"]
    assert file_sha256(model / "model.safetensors") == weights


def test_demo_rejects_bad_budget(tmp_path, capsys):
    assert main(["--minutes", "0", "--data-root", str(tmp_path / "d"), "--output", str(tmp_path / "m")]) == 2
    assert "--minutes must be positive" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_each_scene_keeps_its_own_files_and_recipe():
    from pathlib import Path

    from src.demo import build_parser, resolve_scene_defaults, train_settings

    sdss = build_parser().parse_args([])
    resolve_scene_defaults(sdss)
    assert sdss.scene == "sdss" and (sdss.data_root, sdss.output, sdss.images_dir) == (
        Path("data/synthetic"),
        Path("safetensors/galaxy_demo"),
        Path("safetensors/galaxy_demo"),
    )
    readme = build_parser().parse_args(["--readme-figures"])
    resolve_scene_defaults(readme)
    assert (readme.output, readme.images_dir) == (Path("safetensors/galaxy_demo"), Path("images"))
    with pytest.raises(SystemExit):  # one place for the figures, not two
        build_parser().parse_args(["--readme-figures", "--images-dir", "elsewhere"])
    with pytest.raises(ValueError, match="--readme-figures"):
        resolve_scene_defaults(build_parser().parse_args(["--readme-figures", "--scene", "clean"]))
    clean = build_parser().parse_args(["--scene", "clean"])
    resolve_scene_defaults(clean)
    assert (clean.data_root, clean.output, clean.images_dir) == (
        Path("data/synthetic_clean"),
        Path("safetensors/galaxy_demo_clean"),
        Path("safetensors/galaxy_demo_clean"),
    )
    given = build_parser().parse_args(["--scene", "clean", "--output", "elsewhere"])
    resolve_scene_defaults(given)
    assert given.output == Path("elsewhere") and given.images_dir == Path("elsewhere")
    # recipe: whole cutouts with rare classes drawn more often for the sdss scene, crops for the clean one,
    # unless given
    assert (sdss.crop_size, sdss.batch_size, sdss.class_balance) == (0, 2, 0.5)
    assert (clean.crop_size, clean.batch_size, clean.class_balance) == (128, 4, 0.0)
    crops = build_parser().parse_args(["--crop-size", "128", "--batch-size", "4", "--class-balance", "0"])
    resolve_scene_defaults(crops)
    assert (crops.crop_size, crops.batch_size, crops.class_balance) == (128, 4, 0.0)
    assert train_settings(sdss)["class_balance"] == 0.5
