"""Every CLI reports a user's mistake as one line ``PROG: error: ...`` on stderr and exit status 2, no traceback;
and compute_scores.py takes the original project's command as its users type it."""

import json
import socket

import pytest
import torch
from safetensors.torch import save_model
from transformers import OneFormerForUniversalSegmentation

import compute_scores
from src import demo
from src.data import conversion, download
from src.modelling.model import build_config
from src.synthetic import __main__ as synthetic_cli
from tests.tiny_data import write_tiny_raw, write_tiny_splits


def _one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: ") and "Traceback" not in err, err
    return lines[0]


def test_compute_scores_original_command_without_extension(tmp_path, monkeypatch, capsys):
    # python compute_scores.py --model safetensors/galaxy_sem_5_1  (the file is galaxy_sem_5_1.safetensors)
    data = write_tiny_splits(tmp_path / "data", n_train=1, n_val=1, n_test=2, size=32)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "safetensors").mkdir()
    torch.manual_seed(0)
    save_model(OneFormerForUniversalSegmentation(build_config("galaxy-tiny")), "safetensors/galaxy_sem_5_1.safetensors")
    assert (
        compute_scores.main(
            [
                "--model",
                "safetensors/galaxy_sem_5_1",
                "--base-card",
                "galaxy-tiny",
                "--data-root",
                str(data),
                "--task",
                "semantic",
                "--no-progress",
            ]
        )
        == 0
    )
    assert not (tmp_path / "metrics.json").exists()  # beside the model, never the current folder by default
    metrics = json.loads((tmp_path / "safetensors" / "galaxy_sem_5_1.metrics.json").read_text())
    assert metrics["model"] == "safetensors/galaxy_sem_5_1" and metrics["n_images"] == 2
    capsys.readouterr()
    # a name that is not there: named, with what was tried; never a download attempt
    assert compute_scores.main(["--model", "safetensors/galaxy_sem_inst_10_2", "--data-root", str(data)]) == 2
    line = _one_error_line(capsys, "compute_scores.py")
    assert "safetensors/galaxy_sem_inst_10_2.safetensors" in line and "not found" in line
    # a split that does not exist
    assert (
        compute_scores.main(
            ["--model", "galaxy-tiny", "--data-root", str(data), "--split", "nope", "--out", str(tmp_path / "m.json")]
        )
        == 2
    )
    assert "galaxy_nope.json: split file not found" in _one_error_line(capsys, "compute_scores.py")


def test_conversion_download_synthetic_demo_report_mistakes(tmp_path, capsys):
    assert conversion.main(["--data-root", str(tmp_path / "none")]) == 2
    assert "gz2_hart16.csv" in _one_error_line(capsys, "python -m src.conversion")

    write_tiny_raw(tmp_path / "raw", n=4, size=32)
    (tmp_path / "raw" / "original" / "val" / "via_region_data.json").write_text("{oops")
    assert conversion.main(["--data-root", str(tmp_path / "raw"), "--quiet"]) == 2
    assert "via_region_data.json: malformed JSON" in _one_error_line(capsys, "python -m src.conversion")

    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert (
        download.main(
            [
                "--data-root",
                str(tmp_path / "dl"),
                "--only",
                "catalog",
                "--quiet",
                "--timeout",
                "5",
                "--mirror",
                f"http://127.0.0.1:{port}",
            ]
        )
        == 2
    )
    assert "cannot reach" in _one_error_line(capsys, "python -m src.download")

    assert synthetic_cli.main(["--out", str(tmp_path / "syn"), "--n", "0"]) == 2
    assert "n must be a positive" in _one_error_line(capsys, "python -m src.synthetic")
    (tmp_path / "file").write_text("x")
    assert synthetic_cli.main(["--out", str(tmp_path / "file" / "sub"), "--n", "1", "--quiet"]) == 2
    _one_error_line(capsys, "python -m src.synthetic")

    assert demo.main(["--minutes", "0", "--data-root", str(tmp_path / "d"), "--output", str(tmp_path / "m")]) == 2
    assert "--minutes must be positive" in _one_error_line(capsys, "python -m src.demo")


def test_verbose_shows_the_traceback(tmp_path, capsys):
    assert conversion.main(["--data-root", str(tmp_path), "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("python -m src.conversion: error:")


@pytest.mark.parametrize("cli", [compute_scores.main, conversion.main, download.main, synthetic_cli.main, demo.main])
def test_bad_options_exit_2(cli, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(["--no-such-option"])
    assert stop.value.code == 2 and "error:" in capsys.readouterr().err
