"""The findings of the hostile-input review (issue 23), one test each: resumed runs with other inputs, exclusive
use of --out, what a failed run leaves, path traversal through VIA file names, bad polygons, duplicate keys,
model files, option ranges, units, symbolic links, broken WCS, non-ASCII paths, huge images, and messages that
name their file.  The generated bad-input families are in ``tests/test_bad_input.py``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from src.inference.predict import PredictConfig, main, predict
from src.modelling.model import build_config, build_processor
from tests.tiny_data import catalog_row, scene


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for k in range(4):
        scene(root / f"X{k}.png", (40, 48), [("elliptical", 14, 14, 6, 5), ("spiral", 32, 26, 8, 6)], seed=k)
    return root


def run(oracle, inputs, out, **kwargs) -> dict:
    model, processor = oracle
    cfg = PredictConfig(model="oracle", inputs=[str(i) for i in inputs], out=str(out), quiet=True, workers=0, **kwargs)
    return predict(cfg, model, processor)


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "records").glob("*.json")}


def _one_line(capsys, *names) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------ 1: resume, other inputs
def test_resume_with_other_inputs_extends_the_run_and_keeps_every_row(oracle, images, tmp_path):
    out = tmp_path / "O"
    assert run(oracle, [images / "X0.png", images / "X1.png"], out)["exit_status"] == 0
    report = run(oracle, [images / "X2.png", images / "X3.png"], out, resume=True)
    assert report["exit_status"] == 0 and report["counts"]["earlier_run"] == {"ok": 2, "failed": 0}
    catalog = pd.read_csv(out / "catalog.csv")
    on_disk = [row for r in _records(out).values() if r["status"] == "ok" for row in r["rows"]]
    assert sorted(catalog["source"].unique()) == [str(images / f"X{k}.png") for k in range(4)]
    assert len(catalog) == len(on_disk) == 8
    assert sorted(map(tuple, catalog[["source", "object"]].values.tolist())) == sorted(
        (r["source"], r["object"]) for r in on_disk
    )


def test_resume_keeps_an_earlier_input_whose_name_a_new_one_takes(oracle, images, tmp_path):
    """a/x.png then b/x.png: both are named x; the second gets x-2, and x's record and maps stay."""
    for sub, k in (("a", 0), ("b", 1)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.png").write_bytes((images / f"X{k}.png").read_bytes())
    out = tmp_path / "O"
    run(oracle, [tmp_path / "a" / "x.png"], out)
    first = (out / "segmentation" / "x_objects.png").read_bytes()
    assert run(oracle, [tmp_path / "b" / "x.png"], out, resume=True)["exit_status"] == 0
    records = _records(out)
    assert {n: r["source"] for n, r in records.items()} == {
        "x": str(tmp_path / "a" / "x.png"),
        "x-2": str(tmp_path / "b" / "x.png"),
    }
    assert (out / "segmentation" / "x_objects.png").read_bytes() == first
    assert set(pd.read_csv(out / "catalog.csv")["source"]) == {str(tmp_path / s / "x.png") for s in "ab"}


# ------------------------------------------------------------------------------------------ 14, 16, 17, 20
def test_a_failed_run_leaves_nothing_and_the_corrected_command_runs(oracle, images, tmp_path, capsys):
    out = tmp_path / "O"
    (tmp_path / "garbage.png").write_bytes(b"no image")
    args = ["--model", "x", "--out", str(out), "--quiet", "--workers", "0"]
    assert main([str(tmp_path / "garbage.png"), *args], *oracle) == 2
    _one_line(capsys, "garbage.png")
    assert not out.exists()
    out.mkdir()  # an existing folder: emptied of what the run wrote
    assert main([str(tmp_path / "garbage.png"), *args, "--min-area", "3"], *oracle) == 2
    assert list(out.iterdir()) == []
    assert main([str(images / "X0.png"), *args], *oracle) == 0  # other settings, same folder, no --resume


def test_a_run_killed_before_its_first_record_can_restart_with_other_settings(oracle, images, tmp_path):
    out = tmp_path / "O"
    out.mkdir()
    (out / "predict_settings.json").write_text(json.dumps({"model": "old", "min_area": 3}))
    (out / "records").mkdir()
    assert run(oracle, [images / "X0.png"], out)["exit_status"] == 0


def test_resume_into_a_folder_of_other_files_says_so(oracle, images, tmp_path, capsys):
    out = tmp_path / "O"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([str(images / "X0.png"), "--model", "x", "--out", str(out), "--resume", "--quiet"], *oracle) == 2
    line = _one_line(capsys, out, "nothing to resume")
    assert "None ->" not in line
    (out / "catalog.csv").write_text("mine")
    assert main([str(images / "X0.png"), "--model", "x", "--out", str(out), "--quiet"], *oracle) == 2
    _one_line(capsys, out, "catalog.csv", "not the output of a predict.py run")
    assert (out / "catalog.csv").read_text() == "mine"
    (out / "catalog.csv").unlink()
    (out / "records").mkdir()
    (out / "records" / "a.json").write_text("{}")
    assert main([str(images / "X0.png"), "--model", "x", "--out", str(out), "--resume", "--quiet"], *oracle) == 2
    _one_line(capsys, out, "no predict_settings.json")


def test_a_second_run_into_the_same_folder_is_refused_naming_the_first(oracle, images, tmp_path, capsys):
    import os
    import socket

    from src.atomic import folder_lock

    out = tmp_path / "O"
    with folder_lock(out, ".predict.lock", "predict.py"):  # as a concurrent run holds it
        assert main([str(images / "X0.png"), "--model", "x", "--out", str(out), "--quiet"], *oracle) == 2
        line = _one_line(capsys, out, "in use by another run", f"pid {os.getpid()}", socket.gethostname())
        assert "predict.py" in line
        assert not (out / "catalog.csv").exists()
    assert not (out / ".predict.lock").exists()
    assert main([str(images / "X0.png"), "--model", "x", "--out", str(out), "--quiet"], *oracle) == 0
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_out_that_is_a_file_is_named(oracle, images, tmp_path, capsys):
    (tmp_path / "O").write_text("a file")
    assert main([str(images / "X0.png"), "--model", "x", "--out", str(tmp_path / "O"), "--quiet"], *oracle) == 2
    line = _one_line(capsys, tmp_path / "O", "not a folder")
    assert "Errno" not in line


def test_a_full_disk_names_the_file(tmp_path, capsys):
    """write() errors such as ENOSPC carry no file name: the atomic writer adds it, the CLI prints FILE: reason."""
    import errno

    from src.atomic import atomic_open
    from src.cli import run_cli

    def body():
        with atomic_open(tmp_path / "catalog.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")

    assert run_cli("prog", body) == 2
    assert _one_line(capsys) == f"prog: error: {tmp_path / 'catalog.csv'}: No space left on device"
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ 8
@pytest.mark.parametrize("value", ["2", "nan", "-0.1", "inf"])
def test_score_threshold_outside_0_1_is_refused(oracle, images, tmp_path, capsys, value):
    out = tmp_path / "O"
    assert (
        main(
            [
                str(images / "X0.png"),
                "--model",
                "x",
                "--out",
                str(out),
                "--quiet",
                "--task",
                "instance",
                "--score-threshold",
                value,
            ],
            *oracle,
        )
        == 2
    )
    _one_line(capsys, "--score-threshold", "[0, 1]")
    assert not out.exists()


# ------------------------------------------------------------------------------------------ VIA: 2, 3, 7, 13
def _raw(tmp_path, n=12):
    from tests.tiny_data import write_tiny_raw

    root = write_tiny_raw(tmp_path / "data", n=n, size=64)
    train = root / "original" / "train" / "via_region_data.json"
    return root, train, json.loads(train.read_text())


def test_image_paths_outside_the_data_root_are_counted_and_never_read(tmp_path, monkeypatch):
    import os

    import PIL.Image

    from src.data.conversion import convert
    from src.data.datasets import DatasetError, GalaxyDataset

    root, train, via = _raw(tmp_path)
    secret = tmp_path / "secret.jpg"
    PIL.Image.new("RGB", (64, 64)).save(secret)
    keys = list(via)[:3]
    via[keys[0]]["filename"] = "../../../secret.jpg"
    via[keys[1]]["filename"] = str(secret)
    link = root / "original" / "zoo2Main" / via[keys[2]]["filename"]
    link.unlink()
    os.symlink(secret, link)  # a link out of the folder
    train.write_text(json.dumps(via))
    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(
        PIL.Image, "open", lambda fp, *a, **k: (opened.append(Path(fp).resolve()), real_open(fp, *a, **k))[1]
    )
    report = convert(root, image_size=64, min_area=20, check_images=True, stats=True)
    assert report["skipped"]["outside_data_root"] == 3 and report["kept"] == 9
    assert secret.resolve() not in opened and opened
    written = "".join((root / f"galaxy_{s}.json").read_text() for s in ("train", "val", "test"))
    assert "secret" not in written and keys[2] not in written
    # a split file edited by hand: the dataset (training, compute_scores, the HF export) refuses it by name
    split = json.loads((root / "galaxy_train.json").read_text())
    key = next(iter(split))
    split[key]["filename"] = "../../../secret.jpg"
    (root / "galaxy_train.json").write_text(json.dumps(split))
    (root / "galaxy_splits.json").unlink()  # the manifest would (rightly) say the file changed
    with pytest.raises(DatasetError, match=f"{key}.*secret.jpg.*not inside"):
        GalaxyDataset(root, "train")
    assert secret.resolve() not in opened
    dataset = GalaxyDataset(root, "train", skip_bad=True)
    assert [k for k, _ in dataset.skipped] == [key] and secret.resolve() not in opened


def test_a_non_finite_polygon_vertex_is_one_line_naming_the_entry(tmp_path, capsys):
    from src.data.conversion import main as conversion_main

    root, train, via = _raw(tmp_path)
    key = list(via)[1]
    via[key]["regions"][0]["shape_attributes"]["all_points_x"][3] = float("nan")
    train.write_text(json.dumps(via))  # json writes NaN, and reads it back
    assert conversion_main(["--data-root", str(root), "--quiet"]) == 2
    _one_line(capsys, train, key, "non-finite")
    via[key]["regions"][0]["shape_attributes"]["all_points_x"][3] = float("inf")
    train.write_text(json.dumps(via))
    assert conversion_main(["--data-root", str(root), "--quiet"]) == 2
    _one_line(capsys, train, key, "non-finite")


def test_a_key_twice_in_one_via_file_is_a_counted_duplicate_keeping_the_first(tmp_path):
    from src.data.conversion import convert
    from src.data.via import ViaError, load_via

    root, train, via = _raw(tmp_path)
    key = list(via)[0]
    first = json.dumps(via[key])
    second = dict(via[key], file_attributes={"second": True})
    text = json.dumps(via)
    train.write_text(text[:-1] + f", {json.dumps(key)}: {json.dumps(second)}}}")
    report = convert(root, image_size=64, min_area=20)
    assert report["skipped"] == {"duplicate_entry": 1} and report["annotations"] == 13 and report["kept"] == 12
    everything = json.loads((root / "galaxy_segment_classes.json").read_text())
    assert everything[key]["file_attributes"] == json.loads(first)["file_attributes"] == {}
    with pytest.raises(ViaError, match=f"entry '{key}' appears more than once"):
        load_via(train)  # a split file must not hold one
    train.write_text(text.replace('"file_attributes": {}', '"file_attributes": {}, "filename": "x.jpg"', 1))
    with pytest.raises(ViaError, match="key 'filename' appears more than once"):
        load_via(train, duplicates=[])


def test_an_objid_mismatch_between_key_and_filename_is_counted(tmp_path):
    from src.data.conversion import convert

    root, train, via = _raw(tmp_path)
    keys = list(via)
    via[keys[0]]["filename"] = via[keys[1]]["filename"]  # the key says one galaxy, the file another
    train.write_text(json.dumps(via))
    report = convert(root, image_size=64, min_area=20)
    assert report["skipped"] == {"objid_mismatch": 1} and report["annotations"] == 12
    assert keys[0] in report["skipped_examples"]["objid_mismatch"][0]


# ------------------------------------------------------------------------------------------ model files: 4, 9; 18
@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    from src.modelling.model import load_model, save_export

    folder = tmp_path_factory.mktemp("model") / "tiny"
    save_export(*load_model("galaxy-tiny"), folder)
    return folder


def _copy_export(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_safetensors_file_is_one_line_in_every_cli(tiny_export, images, tmp_path, capsys, damage):
    import compute_scores
    from src.training import main as train_main
    from tests.tiny_data import write_tiny_splits

    model = _copy_export(tiny_export, tmp_path / "model")
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00garbage" * 64)
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(weights.read_bytes())
    out = tmp_path / "O"
    assert main([str(images / "X0.png"), "--model", str(model), "--out", str(out), "--quiet"]) == 2
    _one_line(capsys, weights, "not a readable .safetensors")
    assert not out.exists()
    assert (
        main([str(images / "X0.png"), "--model", str(bare), "--base-card", "galaxy-tiny", "--out", str(out), "--quiet"])
        == 2
    )
    _one_line(capsys, bare, "not a readable .safetensors")
    split = write_tiny_splits(tmp_path / "data", n_train=1, n_val=1, n_test=1, size=32)
    assert compute_scores.main(["--model", str(model), "--data-root", str(split), "--quiet", "--task", "semantic"]) == 2
    _one_line(capsys, weights)
    assert (
        train_main(
            [
                "--data-root",
                str(split),
                "--model-card",
                str(model),
                "--output",
                str(tmp_path / "t"),
                "--epochs",
                "1",
                "--cpu",
                "--quiet",
            ]
        )
        == 2
    )
    _one_line(capsys, weights)


def test_a_config_of_another_architecture_is_refused(tiny_export, images, tmp_path, capsys):
    model = _copy_export(tiny_export, tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "mask2former"}))
    assert main([str(images / "X0.png"), "--model", str(model), "--out", str(tmp_path / "O"), "--quiet"]) == 2
    _one_line(capsys, model, "'mask2former'", "OneFormer models only")
    (model / "config.json").write_text("{not json")
    assert main([str(images / "X0.png"), "--model", str(model), "--out", str(tmp_path / "O"), "--quiet"]) == 2
    _one_line(capsys, model / "config.json", "unreadable")


def test_compute_scores_writes_beside_the_model_and_replaces_only_its_own_files(
    tiny_export, tmp_path, capsys, monkeypatch
):
    import compute_scores
    from tests.tiny_data import write_tiny_splits

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics.json").write_text("my notes")
    model = _copy_export(tiny_export, tmp_path / "model")
    split = write_tiny_splits(tmp_path / "data", n_train=1, n_val=1, n_test=1, size=32)
    args = ["--data-root", str(split), "--task", "semantic", "--quiet", "--no-progress"]
    assert compute_scores.main(["--model", str(model), *args]) == 0
    assert (tmp_path / "metrics.json").read_text() == "my notes"
    assert json.loads((model / "metrics.json").read_text())["model"] == str(model)
    capsys.readouterr()
    assert compute_scores.main(["--model", str(model), *args, "--out", "metrics.json"]) == 2
    _one_line(capsys, "metrics.json", "not a metrics file of compute_scores.py")
    assert (tmp_path / "metrics.json").read_text() == "my notes"
    assert compute_scores.main(["--model", str(model), *args]) == 0  # its own file: replaced, said
    assert f"replacing {model / 'metrics.json'} (metrics of an earlier run)" in capsys.readouterr().err
    assert compute_scores.main(["--model", "galaxy-tiny", *args]) == 2  # a preset: no place beside it
    _one_line(capsys, "--out is required")
    (tmp_path / "preds.json").write_text("mine")
    assert (
        compute_scores.main(["--model", str(model), *args, "--task", "instance", "--predictions-out", "preds.json"])
        == 2
    )
    _one_line(capsys, "preds.json", "not a COCO predictions file")
    assert (tmp_path / "preds.json").read_text() == "mine"


# ------------------------------------------------------------------------------------------ 12: links
def test_dangling_and_looping_links_are_counted_and_named(oracle, images, tmp_path, capsys):
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.png").write_bytes((images / "X0.png").read_bytes())
    os.symlink(tmp_path / "gone.png", folder / "dangling.png")
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    os.symlink(tmp_path / "gone.txt", folder / "notes.txt")
    args = ["--model", "x", "--quiet", "--workers", "0"]
    assert main([str(folder), "--out", str(tmp_path / "a"), *args], *oracle) == 2
    _one_line(capsys, folder / "dangling.png", "broken symbolic link")
    assert not (tmp_path / "a").exists()
    assert main([str(folder), "--out", str(tmp_path / "b"), "--skip-bad", *args], *oracle) == 1
    assert capsys.readouterr().err.count("broken symbolic link") == 3
    report = json.loads((tmp_path / "b" / "predict_report.json").read_text())
    failed = {Path(i["source"]).name: i["error"] for i in report["inputs"] if i["status"] != "ok"}
    assert set(failed) == {"dangling.png", "loop_a.jpg", "loop_b.jpg"}
    assert all("broken symbolic link" in e for e in failed.values())
    assert report["counts"]["ok"] == 1 and report["counts"]["ignored_files"] == 1  # notes.txt
    assert main([str(folder / "*.jpg"), "--out", str(tmp_path / "c"), *args], *oracle) == 2
    _one_line(capsys, "loop_a.jpg", "broken symbolic link")


# ------------------------------------------------------------------------------------------ 15, 20: FITS messages
def _frame(folder: Path, header_cards: dict, nan_band: str | None = None):
    from astropy.io import fits

    from src.data.images import write_fits

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    header = fits.Header()
    for key, value in header_cards.items():
        header[key] = value
    for band in "gri":
        data = (
            rng.normal(0, 1, (40, 48))
            + 20 * np.exp(-((np.mgrid[:40, :48][1] - 24) ** 2 + (np.mgrid[:40, :48][0] - 20) ** 2) / 20)
        ).astype(np.float32)
        if band == nan_band:
            data[:] = np.nan
        write_fits(folder / f"f_{band}.fits", data, header)
    return folder


TAN = {
    "CTYPE1": "RA---TAN",
    "CTYPE2": "DEC--TAN",
    "CRVAL1": 150.0,
    "CRVAL2": 2.0,
    "CRPIX1": 24.0,
    "CRPIX2": 20.0,
    "CDELT1": -1e-4,
    "CDELT2": 1e-4,
}


@pytest.mark.parametrize(
    "cards, says",
    [
        (
            {**TAN, "CTYPE1": "GARBAGE", "CTYPE2": "JUNK"},
            "CTYPE1 'GARBAGE', CTYPE2 'JUNK': not a pair of celestial axes",
        ),
        ({**TAN, "PC1_1": 1.0, "PC1_2": 1.0, "PC2_1": 1.0, "PC2_2": 1.0}, "singular"),
        ({}, None),
    ],
)
def test_a_broken_wcs_says_what_is_wrong(oracle, tmp_path, capsys, cards, says):
    from src.data.images import FitsBands

    folder = _frame(tmp_path / "in", cards)
    with FitsBands([folder / f"f_{b}.fits" for b in "gri"]) as frame:
        assert frame.wcs is None
        assert (
            (frame.wcs_problem is None)
            if says is None
            else (says in frame.wcs_problem and "f_g.fits" in frame.wcs_problem)
        )
    assert (
        main([str(folder), "--model", "x", "--out", str(tmp_path / "out"), "--quiet", "--workers", "0"], *oracle) == 0
    )
    err = capsys.readouterr().err
    [record] = json.loads((tmp_path / "out" / "predict_report.json").read_text())["inputs"]
    assert record["wcs"] is False and record.get("wcs_problem") == frame.wcs_problem
    if says is None:
        assert "have no celestial WCS" in err
    else:
        assert f"unusable WCS: {frame.wcs_problem}" in err and "no celestial WCS" not in err


def test_an_all_nan_band_is_named_by_band_and_file(oracle, tmp_path, capsys):
    folder = _frame(tmp_path / "in", TAN, nan_band="r")
    assert main([str(folder), "--model", "x", "--out", str(tmp_path / "O"), "--quiet", "--workers", "0"], *oracle) == 2
    line = _one_line(capsys, folder / "f_r.fits", "band r has no finite pixel")
    assert "band 1" not in line and not (tmp_path / "O").exists()


# ------------------------------------------------------------------------------------------ 5, 11: paths, units
def test_non_ascii_fits_paths_survive_into_every_output(oracle, tmp_path):
    from urllib.parse import unquote

    from astropy.io import fits
    from astropy.table import Table

    folder = _frame(tmp_path / "données ñ 星", TAN)
    report = run(oracle, [folder], tmp_path / "out", catalog_format="fits")
    assert report["exit_status"] == 0 and report["counts"]["ok"] == 1
    source = str(folder / "f")
    catalog = Table.read(tmp_path / "out" / "catalog.fits")
    values = {v.decode() if isinstance(v, bytes) else v for v in catalog["source"]}
    assert values == {source} and len(catalog) >= 1
    with fits.open(tmp_path / "out" / "segmentation" / "f.fits") as hdul:
        header = hdul[0].header
        assert header["SRCENC"] == "percent" and unquote(header["SOURCE"]) == source


def test_the_parquet_catalog_keeps_its_units(tmp_path):
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from src.inference.objects import write_catalog

    rows = [catalog_row()]
    table = Table.read(write_catalog(rows, tmp_path / "catalog.parquet"))
    assert str(table["ra"].unit) == "deg" and str(table["area_px"].unit) == "pix2"
    sky = SkyCoord(table["ra"], table["dec"])
    assert abs(sky[0].ra.deg - 150.0) < 1e-12
    assert pd.read_parquet(tmp_path / "catalog.parquet")["area_px"].tolist() == [12]


# ------------------------------------------------------------------------------------------ 6, 19: image sizes
def test_field_frames_over_pils_bomb_limit_are_read_up_to_a_cap(oracle, tmp_path, monkeypatch, capsys):
    """PIL refuses images over 2 x MAX_IMAGE_PIXELS as possible decompression bombs (179 Mpx; here lowered to keep
    the test small): an ImageError naming the file; --field lifts it deliberately, up to GALAXY_MAX_FRAME_PIXELS."""
    import PIL.Image

    from tests.tiny_data import write_tiny_field

    write_tiny_field(tmp_path / "f", size=96)  # 9,216 px
    frame = tmp_path / "f" / "field_0000.png"
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 2000)
    args = ["--model", "x", "--quiet", "--workers", "0", "--stamp-pixels", "64", "--min-candidate-area", "20"]
    from src.data.images import ImageError, read_rgb

    with pytest.raises(ImageError, match="decompression bomb.*GALAXY_MAX_FRAME_PIXELS"):
        read_rgb(frame)  # e.g. the dataset: PIL's limit stands
    assert main([str(frame), "--out", str(tmp_path / "b"), "--field", *args], *oracle) == 0
    assert PIL.Image.MAX_IMAGE_PIXELS == 2000  # PIL's own limit is left as it was
    report = json.loads((tmp_path / "b" / "predict_report.json").read_text())
    assert report["counts"]["objects"] == 3
    monkeypatch.setenv("GALAXY_MAX_FRAME_PIXELS", "9000")
    assert main([str(frame), "--out", str(tmp_path / "c"), "--field", *args], *oracle) == 2
    _one_line(capsys, frame, "96x96 px is more than 9,000 px", "GALAXY_MAX_FRAME_PIXELS")
    assert not (tmp_path / "c").exists()


def test_cutouts_too_large_are_refused_from_the_header(oracle, tmp_path, monkeypatch, capsys):
    """The header is enough: a file whose body is cut short is refused for its size, not for its body."""
    import src.data.sources
    from src.data.images import write_png

    write_png(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    data = (tmp_path / "big.png").read_bytes()
    (tmp_path / "big.png").write_bytes(data[:200])  # header intact, pixels gone
    monkeypatch.setattr(src.data.sources, "MAX_PIXELS", 4000)
    assert main([str(tmp_path / "big.png"), "--model", "x", "--out", str(tmp_path / "O"), "--quiet"], *oracle) == 2
    _one_line(capsys, "big.png", "96x80 px is more than 4,000 px", "--field")


def test_a_batch_of_large_images_runs_a_few_at_a_time(oracle, monkeypatch):
    """Memory per forward pass is bounded by PASS_PIXELS, whatever the batch size."""
    import src.inference.segmentation

    sizes = []
    real_forward = src.inference.segmentation.forward

    def counting(model, processor, images, task):
        sizes.append(len(images))
        return real_forward(model, processor, images, task)

    monkeypatch.setattr(src.inference.segmentation, "forward", counting)
    monkeypatch.setattr(src.inference.segmentation, "PASS_PIXELS", 2 * 40 * 48)
    images = [np.zeros((40, 48, 3), np.uint8)] * 5 + [np.zeros((32, 32, 3), np.uint8)]
    results = src.inference.segmentation.segment(oracle[0], oracle[1], images, "semantic", batch_size=8)
    assert len(results) == 6 and sizes == [2, 2, 1, 1]


def test_an_input_whose_outputs_cannot_be_written_is_skipped_with_skip_bad(
    oracle, images, tmp_path, monkeypatch, capsys
):
    """e.g. a value a FITS header cannot hold (before the fix: non-ASCII paths): that input fails, not the run."""
    import src.inference.predict

    real = src.inference.predict.write_segmentation

    def refuse_x1(path, *args, **kwargs):
        if Path(path).stem == "X1":
            raise ValueError("Illegal value")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(src.inference.predict, "write_segmentation", refuse_x1)
    inputs = [str(images / f"X{k}.png") for k in range(3)]
    args = ["--model", "x", "--quiet", "--workers", "0", "--batch-size", "1"]
    assert main([*inputs, "--out", str(tmp_path / "a"), *args, "--skip-bad"], *oracle) == 1
    report = json.loads((tmp_path / "a" / "predict_report.json").read_text())
    assert report["counts"]["ok"] == 2 and report["counts"]["failed"] == 1
    [failed] = [i for i in report["inputs"] if i["status"] != "ok"]
    assert failed["source"] == inputs[1] and "Illegal value" in failed["error"]
    capsys.readouterr()
    assert main([*inputs, "--out", str(tmp_path / "b"), *args], *oracle) == 2
    _one_line(capsys, "X1.png", "outputs cannot be written", "--skip-bad")


# ------------------------------------------------------------------------------------------ 10: the threshold
def test_the_threshold_calibration_finds_galaxies_the_default_misses(tmp_path):
    """bench/calibrate_score_threshold.py with a model that finds every galaxy but scores it 0.4 (class
    probability 0.4, as the review's central galaxies at 0.35 and 0.48): the default 0.5 misses them all, the
    calibrated threshold finds them all."""
    import importlib.util
    import math

    from src.evaluation.evaluate import ground_truth_dataset
    from src.inference.objects import SCORE_THRESHOLD
    from tests.oracle_model import OracleModel
    from tests.tiny_data import write_tiny_splits

    spec = importlib.util.spec_from_file_location(
        "calibrate", Path(__file__).resolve().parents[1] / "bench" / "calibrate_score_threshold.py"
    )
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)

    class Unsure(OracleModel):
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            logits = out.class_queries_logits
            winner = logits[..., :-1].argmax(-1, keepdim=True)
            found = logits[..., -1] < 0  # queries that answer an object
            logits[found] = -20.0
            logits[..., -1][found] = math.log(1.5)  # p(class) = 1 / (1 + 1.5) = 0.4
            logits.scatter_(-1, winner, torch.where(found[..., None], 0.0, logits.gather(-1, winner)))
            return out

    import torch

    data = write_tiny_splits(tmp_path / "data", n_train=1, n_val=6, n_test=1, size=48)
    dataset = ground_truth_dataset(data, "val")
    items = [dataset[i] for i in range(len(dataset))]
    result = calibrate.calibrate(
        Unsure(items), build_processor(config=build_config("galaxy-tiny")), dataset, batch_size=2
    )
    rows = {r["threshold"]: r for r in result["thresholds"]}
    assert rows[0.5]["recall"] == 0 and rows[0.5]["central_recall"] == 0  # the former default
    assert rows[SCORE_THRESHOLD]["recall"] == 1 and SCORE_THRESHOLD == 0.2
    assert rows[0.35]["recall"] == 1 and rows[0.35]["precision"] == 1 and rows[0.35]["central_recall"] == 1
    assert result["best"]["threshold"] <= 0.4 and result["best"]["f1"] == 1
