"""src/evaluation/visual.py figures and post_training.ipynb executed headless (nbclient) on tiny data."""

import json
import os
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

matplotlib.use("Agg")

from src.classes import COLOURS, class_id  # noqa: E402
from src.data.datasets import GalaxyDataset  # noqa: E402
from src.evaluation.metrics import image_confusions, semantic_report  # noqa: E402
from src.evaluation.visual import (  # noqa: E402
    choose_samples,
    colourise,
    compare_models,
    draw_instances,
    metrics_figures,
    plot_confusion_matrix,
)
from src.modelling.model import build_config, build_processor, load_model, save_export  # noqa: E402
from tests.oracle_model import OracleModel  # noqa: E402
from tests.tiny_data import write_tiny_splits  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("visual")
    data = write_tiny_splits(root / "data", n_train=2, n_val=1, n_test=5, size=64)
    model, processor = load_model("galaxy-tiny")
    return {"root": root, "data": data, "export": save_export(model, processor, root / "export")}


def test_colourise_and_instances_use_class_colours():
    m = np.zeros((6, 6), np.uint8)
    m[1:3, 1:3] = class_id("spiral")
    rgb = colourise(m)
    assert tuple(rgb[1, 1]) == COLOURS["spiral"] and tuple(rgb[0, 0]) == COLOURS["background"]
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    drawn = draw_instances((9, 9), [(class_id("elliptical"), mask)])
    assert tuple(drawn[4, 4]) == COLOURS["elliptical"] and tuple(drawn[2, 2]) == (255, 255, 255)
    assert tuple(drawn[0, 0]) == (0, 0, 0)


def test_confusion_plot_drops_empty_classes():
    cm = np.zeros((6, 6), int)
    cm[2, 2], cm[3, 2] = 5, 1
    fig = plot_confusion_matrix(cm)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["elliptical", "spiral"]
    assert ax.images[0].get_array()[1, 0] == pytest.approx(1.0)  # row-normalised


def test_compare_models_shows_the_same_samples_for_every_model(tiny, tmp_path):
    ds = GalaxyDataset(tiny["data"], "test")
    items = [ds[i] for i in range(len(ds))]
    oracle = (OracleModel(items), build_processor(config=build_config("galaxy-tiny")))
    chosen = choose_samples(ds, 3, seed=0)
    assert chosen == choose_samples(ds, 3, seed=0) and len(set(chosen)) == 3
    for task in ("semantic", "instance"):
        # the oracle answers for items in dataset order: give it the chosen ones in that order
        oracle[0].items, oracle[0].cursor = [items[i] for i in chosen], 0
        out = tmp_path / f"{task}.png"
        fig = compare_models(
            {"oracle": oracle, "random": tiny["export"]}, tiny["data"], out, task=task, n_samples=3, score_threshold=0.5
        )
        assert out.is_file() and Image.open(out).size[0] > 300
        axes = np.array(fig.axes).reshape(3, 4)  # image | truth | oracle | random
        assert [a.get_title() for a in axes[0]] == ["image", "ground truth", "oracle", "random"]
        for row in axes:
            assert np.array_equal(row[2].images[0].get_array(), row[1].images[0].get_array())
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert labels[0] == "background" and "spiral edge-on" in labels


def test_metrics_figures_written(tmp_path):
    gts = [np.pad(np.full((4, 4), c, np.uint8), 2) for c in (2, 3, 5)]
    metrics = {
        "semantic": semantic_report(image_confusions(gts, gts)),
        "instance": {"coco": {"per_class_ap": {"elliptical": 0.5, "spiral": None}}},
    }
    figs = metrics_figures({"A": metrics, "B": metrics}, out_dir=tmp_path)
    assert set(figs) == {"confusion_matrix", "per_class_iou", "per_class_ap"}
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "confusion_matrix.png",
        "per_class_ap.png",
        "per_class_iou.png",
    ]


def test_post_training_notebook_runs_headless(tiny, monkeypatch):
    images, metrics_dir = tiny["root"] / "images", tiny["root"] / "metrics"
    for key, value in {
        "GALAXY_DATA_ROOT": tiny["data"],
        "GALAXY_MODELS": f"tiny={tiny['export']}",
        "GALAXY_IMAGES_DIR": images,
        "GALAXY_METRICS_DIR": metrics_dir,
        "GALAXY_N_SAMPLES": "2",
        "GALAXY_TASKS": "semantic,instance",
        "GALAXY_PROGRESS": "0",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }.items():
        monkeypatch.setenv(key, str(value))
    before = sorted(p.name for p in (REPO / "images").glob("*"))
    nb = nbformat.read(REPO / "post_training.ipynb", as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    assert sorted(p.name for p in images.glob("*.png")) == [
        "confusion_matrix.png",
        "per_class_ap.png",
        "per_class_iou.png",
        "seg_comparison.png",
        "seginst_comparison.png",
    ]
    saved = json.loads((metrics_dir / "metrics_tiny.json").read_text())
    assert saved["n_images"] == 5 and "coco" in saved["instance"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert sorted(p.name for p in (REPO / "images").glob("*")) == before  # the repo's figures are untouched
