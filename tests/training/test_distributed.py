"""Several processes on the CPU (torchrun, gloo): training equals one process with --grad-accum 2, checkpoints and
resume, sharded scoring equals one process; the sharding itself (disjoint shares, order from (seed, epoch))."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from safetensors.torch import load_file
from torch.utils.data import BatchSampler

from src.data.batching import ShardBatches
from src.data.datasets import GalaxyDataset, load_stats
from src.evaluation.evaluate import evaluate
from src.modelling.model import load_model, set_training_mode
from src.modelling.patches import freeze_unused_parameters
from src.training import EpochSampler, list_checkpoints, run_dir, train
from tests.tiny_data import write_tiny_splits

REPO = Path(__file__).resolve().parents[2]
# one object per image, as in the real cutouts: then every batch of a task has the same number of target masks
TRAIN_ARGS = [
    "--model-card",
    "galaxy-tiny",
    "--task",
    "random",
    "--epochs",
    "2",
    "--batch-size",
    "2",
    "--image-size",
    "64",
    "--seed",
    "5",
    "--cpu",
]


def torchrun(*args, timeout=240):
    """``torchrun --standalone --nproc_per_node 2 ARGS`` with one thread per process (as torchrun's default)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same float operations as each torchrun process
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """2 processes: epoch 1 (with a time budget, whose decision the main process broadcasts), stop, resume."""
    root = tmp_path_factory.mktemp("ddp")
    data = write_tiny_splits(root / "data", n_train=8, n_val=5, n_test=5, size=64, max_objects=1)
    out = root / "two"
    log = torchrun(
        "train_script.py", "--data-root", data, "--output", out, *TRAIN_ARGS, "--end-epoch", "1", "--max-minutes", "60"
    )
    log += torchrun("train_script.py", "--data-root", data, "--output", out, *TRAIN_ARGS, "--resume", "latest")
    return {"root": root, "data": data, "out": out, "log": log}


def _history(folder):
    return list(csv.DictReader(open(Path(folder) / "loss_history.csv")))


def test_two_processes_train_like_one_with_grad_accum(two_process_run, one_thread):
    run = two_process_run
    assert "2 processes: 4 training images per process and epoch" in run["log"]
    assert "resumed from" in run["log"]
    ckpts = list_checkpoints(run["out"])
    assert sorted(ckpts) == [1, 2]
    # no partial save
    assert not [p for p in (run_dir(run["out"]) / "checkpoints").iterdir() if p.name.startswith(".")]
    for ckpt in ckpts.values():  # written once by the main process; each rank added its own RNG state
        assert json.loads((ckpt / "train_state.json").read_text())["num_processes"] == 2
        assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
        assert not (ckpt / "random_states_2.pkl").exists()

    reference = train(
        {
            "data_root": str(run["data"]),
            "output": str(run["root"] / "one"),
            "model_card": "galaxy-tiny",
            "task": "random",
            "epochs": 2,
            "batch_size": 2,
            "grad_accum": 2,
            "image_size": 64,
            "seed": 5,
        }
    )
    two, one = _history(run["out"]), _history(reference["output"])
    assert [r["step"] for r in two] == [r["step"] for r in one] == ["2", "4"]
    # Same micro-batches, same random draws, gradients averaged the same way: measured bit-identical with one
    # thread per process.  The tolerance leaves room for float32 reduction order (threads, all-reduce).
    for key in ("train_loss", "val_loss", "lr"):
        assert [float(r[key]) for r in two] == pytest.approx([float(r[key]) for r in one], rel=1e-5, abs=1e-12), key
    a = load_file(str(run["out"] / "model.safetensors"))
    b = load_file(str(Path(reference["output"]) / "model.safetensors"))
    # AdamW divides by sqrt(v): a last-bit gradient difference on a near-zero gradient can move a weight by ~lr
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-3
    with pytest.raises(ValueError, match="trained with 2 process"):
        train(
            {
                "data_root": str(run["data"]),
                "output": str(run["out"]),
                "model_card": "galaxy-tiny",
                "task": "random",
                "epochs": 2,
                "batch_size": 2,
                "image_size": 64,
                "seed": 5,
                "resume": "latest",
            }
        )


def test_two_processes_score_like_one(two_process_run, one_thread):
    run = two_process_run
    out = run["root"] / "scores"
    log = torchrun(
        "compute_scores.py",
        "--model",
        run["out"],
        "--data-root",
        run["data"],
        "--task",
        "all",
        "--batch-size",
        "2",
        "--out",
        out / "m2.json",
        "--predictions-out",
        out / "p2.json",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert log.count("wrote ") == 1  # only the main process writes
    two = json.loads((out / "m2.json").read_text())
    one = evaluate(run["out"], run["data"], tasks="all", batch_size=2, progress=False, predictions_out=out / "p1.json")
    assert (two["n_processes"], one["n_processes"]) == (2, 1)
    for key in ("created", "n_processes"):
        two.pop(key), one.pop(key)
    two["instance"].pop("predictions_file"), one["instance"].pop("predictions_file")
    assert two == json.loads(json.dumps(one))  # every figure to the last bit
    predictions = json.loads((out / "p1.json").read_text())
    assert predictions and json.loads((out / "p2.json").read_text()) == predictions
    assert len({p["image_id"] for p in predictions}) > 1  # detections from images of both processes


def test_shards_are_disjoint_whole_batches_in_seed_epoch_order():
    n, batch, world = 11, 2, 2
    sampler = EpochSampler(n, seed=3, multiple=batch * world)
    one_process = EpochSampler(n, seed=3)
    assert len(sampler) == 8
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        one_process.set_epoch(epoch)
        order = list(sampler)
        assert order == list(one_process)[:8]  # the one-process order, its last n % 4 images left out
        shards = [list(BatchSamplerShard(BatchSampler(sampler, batch, False), world, rank)) for rank in range(world)]
        assert [len(s) for s in shards] == [2, 2] and all(len(b) == batch for s in shards for b in s)
        flat = [[i for b in s for i in b] for s in shards]
        assert not set(flat[0]) & set(flat[1])
        # process r gets batches r, r + 2, ... of the epoch order
        assert [i for k in range(2) for rank in range(world) for i in shards[rank][k]] == order
        orders.append(order)
    assert orders[0] == orders[2] != orders[1]

    val = [ShardBatches(5, 2, rank, 2) for rank in range(2)]
    assert [list(v) for v in val] == [[[0, 1], [4]], [[2, 3]]] and list(val[0].positions()) == [0, 2]
    assert list(ShardBatches(5, 2)) == [[0, 1], [2, 3], [4]]


def test_every_trainable_parameter_gets_a_gradient(tmp_path):
    """What DistributedDataParallel needs: no parameter that requires a gradient is left without one, whatever
    the task."""
    data = write_tiny_splits(tmp_path, n_train=2, n_val=1, n_test=1, size=64)
    mean, std = load_stats(data)
    model, processor = load_model("galaxy-tiny", image_size=64, mean=mean, std=std)
    set_training_mode(model, True)
    frozen = freeze_unused_parameters(model)
    assert frozen == [
        "model.pixel_level_module.encoder.swin.layernorm.weight",
        "model.pixel_level_module.encoder.swin.layernorm.bias",
    ]
    for task in ("semantic", "instance", "panoptic"):
        dataset = GalaxyDataset(data, "train", processor, task=task, image_size=64, augment=True)
        model.zero_grad(set_to_none=True)
        model(**dataset.collator(training=True)([dataset[0], dataset[1]])).loss.backward()
        assert [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == [], task
        assert all(p.grad is None for name, p in model.named_parameters() if name in frozen)
