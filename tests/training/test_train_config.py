"""Training options: resume takes what was not given from the checkpoint and refuses what changed (by name),
``--config`` re-runs a recorded configuration, and train_script.py reports mistakes without a traceback.

The checkpoints here are only their ``train_state.json``: every refusal happens before a model is built."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from src.training import (
    TrainConfig,
    data_fingerprint,
    load_config_file,
    main,
    resolve_config,
    resume_config,
    run_dir,
)
from tests.tiny_data import write_tiny_splits

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tmp_path):
    """A run started with ``--epochs 2 --image-size 64 --grad-clip 0.5`` that stopped after epoch 1."""
    data = write_tiny_splits(tmp_path / "data", n_train=2, n_val=1, n_test=1, size=32)
    output = tmp_path / "run"
    config = asdict(
        resolve_config(
            dict(
                data_root=str(data),
                output=str(output),
                model_card="galaxy-tiny",
                epochs=2,
                end_epoch=1,
                image_size=64,
                grad_clip=0.5,
            )
        )
    )
    ckpt = run_dir(output) / "checkpoints" / "epoch_1"
    ckpt.mkdir(parents=True)
    state = {
        "epoch": 1,
        "step": 1,
        "history": [],
        "config": config,
        "data_fingerprint": data_fingerprint(TrainConfig(**config)),
    }
    (ckpt / "train_state.json").write_text(json.dumps(state))
    return {"data": data, "output": output, "config": config, "ckpt": ckpt}


def _resume(run, capsys, *extra):
    code = main(["--output", str(run["output"]), "--resume-epoch", "1", *extra])
    return code, capsys.readouterr().err


def test_resume_takes_options_not_given_from_the_checkpoint(run):
    cfg = resume_config(run["config"], {"output": str(run["output"]), "resume": "1"}, run["ckpt"])
    assert (cfg.epochs, cfg.image_size, cfg.grad_clip, cfg.model_card) == (2, 64, 0.5, "galaxy-tiny")
    assert cfg.data_root == run["config"]["data_root"]
    assert cfg.end_epoch is None and cfg.resume == "1"  # per-run options are not inherited
    # an option given with the recorded value is accepted; a per-run one may be given freely
    cfg = resume_config(run["config"], {"epochs": 2, "end_epoch": 2, "num_workers": 1, "resume": "1"}, run["ckpt"])
    assert cfg.end_epoch == 2 and cfg.num_workers == 1
    # a checkpoint written before an option existed: the option had its default then
    old = {k: v for k, v in run["config"].items() if k != "crop_size"}
    assert resume_config(old, {"resume": "1"}, run["ckpt"]).crop_size is None


@pytest.mark.parametrize(
    "option, value, message",
    [
        (["--epochs", "5"], None, "epochs 2 -> 5"),
        (["--image-size", "128"], None, "image_size 64 -> 128"),
        (["--grad-clip", "1.0"], None, "grad_clip 0.5 -> 1.0"),
        (["--mixed-precision", "bf16"], None, "mixed_precision 'no' -> 'bf16'"),
        (["--class-balance", "0.5"], None, "class_balance 0.0 -> 0.5"),
        (["--data-root"], "other", "data_root"),
        (["--recipe", "sem_only"], None, "epochs 2 -> 5"),  # a recipe stands for the values it sets
    ],
)
def test_resume_refuses_explicitly_changed_options_by_name(run, capsys, tmp_path, option, value, message):
    if value is not None:
        option = option + [str(tmp_path / value)]
    code, err = _resume(run, capsys, *option)
    assert code == 2 and message in err and "options changed since the run started" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_resume_refuses_changed_split_content(run, capsys):
    train = run["data"] / "galaxy_train.json"
    entries = json.loads(train.read_text())
    entries.pop(next(iter(entries)))
    train.write_text(json.dumps(entries))
    code, err = _resume(run, capsys)
    assert code == 2 and "the data changed since the run started: galaxy_train.json" in err
    assert "galaxy_val.json" not in err and "Traceback" not in err


def test_resume_end_epoch_is_checked_against_the_recorded_epochs(run, capsys):
    state = json.loads((run["ckpt"] / "train_state.json").read_text())
    state["config"]["epochs"] = 8
    (run["ckpt"] / "train_state.json").write_text(json.dumps(state))
    assert main(["--output", str(run["output"]), "--resume-epoch", "1", "--end-epoch", "9"]) == 2
    assert "--end-epoch 9 must lie in 1..8" in capsys.readouterr().err  # 8 recorded epochs, not the default 5


def test_a_fresh_run_never_mixes_with_an_earlier_runs_checkpoints(run, capsys):
    assert main(["--output", str(run["output"]), "--data-root", str(run["data"]), "--model-card", "galaxy-tiny"]) == 2
    err = capsys.readouterr().err
    assert "holds checkpoints of an earlier run (epochs [1])" in err and "--resume latest" in err


def test_config_file_is_overridden_by_the_command_line(tmp_path):
    recorded = asdict(resolve_config(dict(model_card="galaxy-tiny", epochs=3, image_size=64, lr=2e-4, resume="latest")))
    path = tmp_path / "train_config.json"
    path.write_text(json.dumps(recorded))
    base = load_config_file(path)
    assert "resume" not in base  # resuming is decided by the new command line
    cfg = resolve_config({"epochs": 4}, base)
    assert (cfg.model_card, cfg.epochs, cfg.image_size, cfg.lr, cfg.resume) == ("galaxy-tiny", 4, 64, 2e-4, None)
    # a hand-written subset: its recipe fills what it does not say; the command line's recipe wins over it
    path.write_text(json.dumps({"recipe": "sem_only", "batch_size": 3}))
    cfg = resolve_config({}, load_config_file(path))
    assert (cfg.task, cfg.epochs, cfg.batch_size) == ("semantic", 5, 3)
    assert resolve_config({"recipe": "sem_inst"}, load_config_file(path)).epochs == 10
    assert resolve_config(TrainConfig(), {"epochs": 7}).epochs == 7


def test_config_file_mistakes_are_named(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epochs": 2, "learning_rate": 1e-3}))
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "learning_rate" in err and "Traceback" not in err
    bad.write_text("{not json")
    assert main(["--config", str(bad)]) == 2 and "not a JSON configuration" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "none.json")]) == 2
    assert "configuration file not found" in capsys.readouterr().err


def test_train_script_reports_a_mistake_in_one_line_with_status_2(tmp_path, capsys):
    # missing data: named before any model is built
    assert main(["--data-root", str(tmp_path / "missing"), "--model-card", "swin-tiny"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"train_script.py: error: {tmp_path / 'missing' / 'galaxy_train.json'}: split file not found "
        "(run the conversion step, or check --data-root)"
    ]
    # the script itself: exit status 2, one line, no traceback
    done = subprocess.run(
        [sys.executable, "train_script.py", "--epochs", "2", "--end-epoch", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stderr == "train_script.py: error: --end-epoch 3 must lie in 1..2\n"


def test_the_options_are_the_config_fields_and_their_help_shows_the_dataclass_defaults():
    from dataclasses import fields

    from src.training.cli import HELP, build_parser

    parser = build_parser()
    parsed = vars(parser.parse_args([]))
    names = {f.name for f in fields(TrainConfig)}
    options = {k for k in parsed if k not in ("config", "verbose", "quiet")}
    assert options == set(HELP) and options <= names  # every option is a field; none restates a default
    assert all(value is None for key, value in parsed.items() if key in options)  # a recipe can fill them
    text = " ".join(parser.format_help().split())
    assert f"(default: {TrainConfig.epochs})" in text and f"(default: {TrainConfig.model_card})" in text
    assert "(default: semantic instance)" in text  # random_tasks
    assert parser.parse_args(["--no-augment", "--cpu"]).augment is False
    assert parser.parse_args(["--resume-epoch", "3"]).resume == 3
