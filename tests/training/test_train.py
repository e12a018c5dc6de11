"""Training loop: exact resume, atomic checkpoints under SIGKILL, time budget, recipes, outputs."""

import csv
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import OneFormerForUniversalSegmentation, OneFormerProcessor

from src.training import (
    RECIPES,
    EpochSampler,
    WarmupPolyLR,
    class_balance_weights,
    find_checkpoint,
    list_checkpoints,
    main,
    resolve_config,
    run_dir,
    train,
)
from tests.tiny_data import write_tiny_splits

REPO = Path(__file__).resolve().parents[2]
TINY = dict(model_card="galaxy-tiny", task="random", epochs=2, batch_size=4, image_size=64, seed=5)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_tiny_splits(tmp_path_factory.mktemp("gz2"), n_train=8, n_val=2, n_test=1, size=64)


def _weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_exact_resume_and_outputs(data, tmp_path):
    straight = train(dict(TINY, data_root=str(data), output=str(tmp_path / "straight")))
    # same schedule, stopped after epoch 1, then resumed through the CLI entry point
    train(dict(TINY, data_root=str(data), output=str(tmp_path / "split"), end_epoch=1))
    assert sorted(list_checkpoints(tmp_path / "split")) == [1]
    # as the original's users type it: options not given come from the checkpoint's recorded configuration
    # (data root, epochs, image size, seed, ...); one given with the same value is accepted
    assert main(["--output", str(tmp_path / "split"), "--model-card", "galaxy-tiny", "--resume", "latest"]) == 0
    a = _weights(find_checkpoint(tmp_path / "straight", 2))
    b = _weights(find_checkpoint(tmp_path / "split", 2))
    assert a.keys() == b.keys() and any("text_mapper" in k for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    start = _weights(find_checkpoint(tmp_path / "split", 1))
    assert any(not torch.equal(start[k], a[k]) for k in a)  # epoch 2 did train
    ea, eb = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert all(torch.equal(ea[k], eb[k]) for k in ea)

    out = tmp_path / "straight"
    rows = list(csv.DictReader(open(out / "loss_history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["val_loss"]) > 0 for r in rows)
    assert float(rows[-1]["lr"]) == 0.0  # polynomial decay ends at 0 after the whole schedule
    assert len(straight["history"]) == 2
    assert (out / "loss_curve.png").stat().st_size > 1000 and (out / "train_config.json").is_file()
    split_rows = list(csv.DictReader(open(tmp_path / "split" / "loss_history.csv")))
    assert [r["train_loss"] for r in split_rows] == [r["train_loss"] for r in rows]
    model = OneFormerForUniversalSegmentation.from_pretrained(out)
    processor = OneFormerProcessor.from_pretrained(out)
    assert model.config.num_labels == 6 and processor.image_processor.size.height == 64

    with pytest.raises(ValueError, match="batch_size 4 -> 2"):
        train(dict(TINY, batch_size=2, data_root=str(data), output=str(tmp_path / "split"), resume="1"))
    with pytest.raises(FileNotFoundError, match="have epochs"):
        train(dict(TINY, data_root=str(data), output=str(tmp_path / "split"), resume="7"))


KILLED_SAVE = textwrap.dedent("""
    import sys, time, torch
    from accelerate import Accelerator
    from src.training import save_checkpoint
    out, ready = sys.argv[1], sys.argv[2]
    acc = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters())
    model, opt = acc.prepare(model, opt)
    torch.nn.init.constant_(model.weight, 1.0)
    save_checkpoint(acc, out, 1, {"epoch": 1})
    torch.nn.init.constant_(model.weight, 2.0)
    save_checkpoint(acc, out, 2, {"epoch": 2})          # complete
    torch.nn.init.constant_(model.weight, 3.0)
    real = acc.save_state
    def stalled(path, **kw):                             # killed in the middle of a checkpoint write
        real(path, **kw)
        open(ready, "w").write("x")
        time.sleep(120)
    acc.save_state = stalled
    save_checkpoint(acc, out, 2, {"epoch": 2})          # overwrite epoch 2 ...
""")


def test_sigkill_during_checkpoint_keeps_previous(tmp_path):
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVE, str(tmp_path / "run"), str(ready)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 90
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in (run_dir(tmp_path / "run") / "checkpoints").iterdir()]
    assert ".epoch_2.tmp" in leftovers  # the interrupted write, never taken for a checkpoint
    assert sorted(list_checkpoints(tmp_path / "run")) == [1, 2]
    latest = find_checkpoint(tmp_path / "run", "latest")
    assert latest.name == "epoch_2"
    assert torch.equal(_weights(latest)["weight"], torch.full((4, 4), 2.0))  # the previous complete state


def test_time_budget_stops_and_exports(data, tmp_path):
    result = train(dict(TINY, epochs=50, data_root=str(data), output=str(tmp_path / "b"), max_minutes=0.001))
    assert result["stopped_by_budget"] and len(result["history"]) == 1
    assert result["history"][0]["partial"] == 1 and result["history"][0]["step"] < 100
    model = OneFormerForUniversalSegmentation.from_pretrained(tmp_path / "b")
    assert model.config.num_labels == 6


def test_class_balance_draws_rare_classes_as_often_as_asked():
    classes = [1] * 10 + [2] * 90  # 10 % artifacts, 90 % ellipticals
    weights, drawn = class_balance_weights(classes, 0.0)
    assert drawn == pytest.approx({1: 0.1, 2: 0.9}) and set(weights) == {1.0}
    weights, drawn = class_balance_weights(classes, 1.0)
    assert drawn == pytest.approx({1: 0.5, 2: 0.5}) and weights[0] == pytest.approx(9 * weights[-1])
    _, drawn = class_balance_weights(classes, 0.5)
    assert drawn[1] == pytest.approx(0.25)  # sqrt(0.1) / (sqrt(0.1) + sqrt(0.9))

    sampler = EpochSampler(len(classes), seed=3, weights=weights)
    counts = torch.zeros(3)
    for epoch in range(50):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == 100 and len(set(order)) < 100  # drawn with replacement
        counts += torch.bincount(torch.tensor([classes[i] for i in order]), minlength=3)
    assert abs(counts[1] / counts.sum() - 0.5) < 0.03  # 5,000 draws: the binomial sd is 0.007
    sampler.set_epoch(7)
    first = list(sampler)
    sampler.set_epoch(8)
    assert list(sampler) != first
    sampler.set_epoch(7)
    assert list(sampler) == first  # (seed, epoch) alone fix the draw, as in a resumed run
    with pytest.raises(ValueError, match="positive weights"):
        EpochSampler(3, seed=0, weights=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="class-balance 1.5 must lie in 0..1"):
        resolve_config(dict(class_balance=1.5))


def test_class_balanced_training_run_records_its_setting(data, tmp_path, caplog):
    caplog.set_level("INFO")
    train(dict(TINY, epochs=1, data_root=str(data), output=str(tmp_path / "cb"), class_balance=1.0))
    assert '"class_balance": 1.0' in (tmp_path / "cb" / "train_config.json").read_text()
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("class balance 1:"))
    shares = [float(part.rsplit(" ", 1)[1].rstrip("%")) for part in line.split(": ", 1)[1].split(", ")]
    assert len(shares) >= 2 and max(shares) - min(shares) <= 1  # every class of the split equally often


def test_schedule_and_recipes():
    s = WarmupPolyLR(warmup=2, total=10, power=0.9)
    factors = [s(i) for i in range(11)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a > b for a, b in zip(factors[2:10], factors[3:11])) and factors[10] == 0.0
    assert RECIPES["sem_only"]["task"] == "semantic" and RECIPES["sem_only"]["epochs"] == 5
    assert RECIPES["sem_inst"]["task"] == "random" and RECIPES["sem_inst"]["batch_size"] == 2
    cfg = resolve_config({"recipe": "sem_inst", "model_card": "swin-tiny", "epochs": 3})
    assert (cfg.model_card, cfg.task, cfg.epochs, cfg.batch_size, cfg.num_queries) == ("swin-tiny", "random", 3, 2, 150)
    assert cfg.output.endswith("sem_inst")
    with pytest.raises(ValueError, match="end-epoch"):
        resolve_config({"epochs": 2, "end_epoch": 3})


def test_budget_refits_horizon_and_warmup():
    from src.training.budget import apply_budget

    now = time.monotonic()
    # 3 steps took 5 s (5/3 s per step), 10 s of a 100 s budget spent: ~45 more steps fit in 85 s
    s = WarmupPolyLR(warmup=500, total=10_000)
    assert not apply_budget(s, 4, now - 10, 100, 3, (now - 5, 1), planned_total=10_000, rescale_warmup=True)
    assert 47 <= s.total <= 50 and s.warmup == 4  # default warmup cut to its share, never below the steps done
    s = WarmupPolyLR(warmup=500, total=10_000)
    apply_budget(s, 4, now - 10, 100, 3, (now - 5, 1), planned_total=10_000)
    assert s.warmup == s.total - 1  # an explicit warmup is only capped by the horizon
    s = WarmupPolyLR(warmup=1, total=20)
    apply_budget(s, 4, now - 10, 100, 3, (now - 5, 1), planned_total=20)
    assert s.total == 20  # never beyond the planned schedule
    # refitted every 10 steps: slower steps since then shorten the horizon again
    s = WarmupPolyLR(warmup=1, total=10_000)
    apply_budget(s, 14, now - 50, 100, 3, (now - 45, 1), planned_total=10_000)
    assert s.total == 14 + int(35 / (45 / 13))
    assert apply_budget(s, 15, now - 86, 100, 3, (now - 80, 1))  # 85 % of the budget spent: stop


def test_recipe_applies_to_a_trainconfig_object():
    from src.training import RECIPES, TrainConfig, resolve_config

    config = resolve_config(TrainConfig(recipe="sem_only", data_root="somewhere"))
    for key, value in RECIPES["sem_only"].items():
        assert getattr(config, key) == value, key
    assert config.data_root == "somewhere"
    # an explicit non-default value still wins over the recipe
    assert resolve_config(TrainConfig(recipe="sem_only", batch_size=8)).batch_size == 8


def test_budget_keeps_the_measured_reserve():
    from src.training.budget import apply_budget

    now = time.monotonic()
    # 90 s of a 100 s budget spent: the default reserve (15 %) stops the run, a measured 5 s reserve does not
    assert apply_budget(WarmupPolyLR(warmup=1, total=10_000), 20, now - 90, 100, 3, (now - 80, 1))
    s = WarmupPolyLR(warmup=1, total=10_000)
    assert not apply_budget(s, 14, now - 50, 100, 3, (now - 45, 1), reserve_s=5)
    assert s.total in (14 + 12, 14 + 13)  # 45 s left at 45/13 s per step (the clock moved a little since "now")


def test_moving_average_of_the_weights():
    from src.training import moving_average

    model = torch.nn.Linear(2, 1)
    torch.nn.init.zeros_(model.weight)
    assert moving_average(model, 0) is None
    with pytest.raises(ValueError, match="ema-decay"):
        moving_average(model, 1.0)
    ema = moving_average(model, 0.9)
    ema.update_parameters(model)  # the first update copies the weights
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.1))


def test_ema_run_exports_the_average_and_resumes_exactly(data, tmp_path):
    settings = dict(TINY, data_root=str(data), ema_decay=0.5)
    straight = train(dict(settings, output=str(tmp_path / "straight")))
    exported = _weights(tmp_path / "straight")
    last = straight["last_weights"].state_dict()
    assert any(not torch.equal(exported[k], last[k]) for k in exported)  # the average, not the last weights
    train(dict(settings, output=str(tmp_path / "split"), end_epoch=1))
    train(dict(settings, output=str(tmp_path / "split"), resume="latest"))
    resumed = _weights(tmp_path / "split")
    assert all(torch.equal(exported[k], resumed[k]) for k in exported)  # the average was checkpointed too
    with pytest.raises(ValueError, match="ema_decay"):
        train(dict(settings, ema_decay=0.9, output=str(tmp_path / "split"), resume="latest"))


def test_val_limit_validates_on_the_first_images(data, tmp_path):
    settings = dict(TINY, data_root=str(data), epochs=1)
    full = train(dict(settings, output=str(tmp_path / "full")))["history"][0]["val_loss"]
    first = train(dict(settings, output=str(tmp_path / "first"), val_limit=1))["history"][0]["val_loss"]
    again = train(dict(settings, output=str(tmp_path / "again"), val_limit=1))["history"][0]["val_loss"]
    assert first == again and first != full  # same training, validated on 1 of the 2 validation images
    with pytest.raises(ValueError, match="--val-limit 0 must be >= 1"):
        resolve_config(dict(settings, output=str(tmp_path / "zero"), val_limit=0))
