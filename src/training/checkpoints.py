"""The run folder beside an export (``OUTPUT.run/``): its checkpoints (``checkpoints/epoch_K``, each complete or
absent) and its history (``loss_history.csv``, ``loss_curve.png``)."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from src.atomic import atomic_open, atomic_path, replace_folder, write_json_atomic
from src.defaults import TRAIN_STATE

#: Files of the run folder copied into each export.
RUN_FILES = ("train_config.json", "loss_history.csv", "loss_curve.png")
#: Columns of ``loss_history.csv``, one row per epoch.
HISTORY_FIELDS = ["epoch", "step", "train_loss", "val_loss", "lr", "seconds", "images_per_second", "partial"]


def run_dir(output) -> Path:
    """The working state of the run that exports to ``output``: ``OUTPUT.run/`` beside the export folder.

    Parameters
    ----------
    output : str or Path
        The export folder.

    Returns
    -------
    Path
    """
    output = Path(output)
    return output.with_name(output.name + ".run")


def checkpoint_dir(output, epoch: int) -> Path:
    """The checkpoint folder of the end of ``epoch`` (1-based) of the run exporting to ``output``."""
    return run_dir(output) / "checkpoints" / f"epoch_{epoch}"


def list_checkpoints(output) -> dict[int, Path]:
    """Complete checkpoints by epoch (temporary ``.epoch_K.tmp*`` folders of a killed save are ignored).

    Parameters
    ----------
    output : str or Path
        The export folder of the run.

    Returns
    -------
    dict of int to Path
        Checkpoint folder by epoch; a folder counts once its ``train_state.json`` is written.
    """
    root = run_dir(output) / "checkpoints"
    found = {}
    if root.is_dir():
        for path in root.iterdir():
            name = path.name
            if name.startswith("epoch_") and name[6:].isdigit() and (path / TRAIN_STATE).is_file():
                found[int(name[6:])] = path
    return found


def find_checkpoint(output, which) -> Path:
    """``which`` = ``"latest"`` or an epoch number; a clear error when it does not exist.

    Parameters
    ----------
    output : str or Path
        The export folder of the run.
    which : str or int
        ``"latest"`` or an epoch number.

    Returns
    -------
    Path
        The checkpoint folder.
    """
    found = list_checkpoints(output)
    if not found:
        raise FileNotFoundError(f"{run_dir(output) / 'checkpoints'}: no complete checkpoint to resume from")
    if str(which) == "latest":
        return found[max(found)]
    epoch = int(which)
    if epoch not in found:
        raise FileNotFoundError(f"{checkpoint_dir(output, epoch)}: no such checkpoint; have epochs {sorted(found)}")
    return found[epoch]


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def save_checkpoint(accelerator, output, epoch: int, state: dict, model_config=None) -> Path:
    """Write the full training state to a temporary folder, then rename it to ``checkpoints/epoch_K``.

    Parameters
    ----------
    accelerator : accelerate.Accelerator
        Saves the registered objects (model, optimiser, scheduler, RNG states, moving average).
    output : str or Path
        The export folder of the run.
    epoch : int
        The epoch just finished (1-based).
    state : dict
        Written last as ``train_state.json``, which marks the folder complete.
    model_config : transformers.PretrainedConfig, optional
        Written as ``model_config.json``.

    Returns
    -------
    Path
        The checkpoint folder.
    """
    final = checkpoint_dir(output, epoch)
    tmp = final.parent / f".{final.name}.tmp"
    if accelerator.is_main_process:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        if model_config is not None:
            model_config.to_json_file(str(tmp / "model_config.json"))
        write_json_atomic(tmp / TRAIN_STATE, state, indent=1)  # written last: marks the folder complete
        _fsync_tree(tmp)
        replace_folder(tmp, final)  # re-running an epoch replaces the old folder as a whole
    accelerator.wait_for_everyone()
    return final


def write_history(output, history: list[dict]) -> None:
    """Write ``loss_history.csv`` (:data:`HISTORY_FIELDS`) and ``loss_curve.png`` into the folder ``output``."""
    output = Path(output)
    with atomic_open(output / "loss_history.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)
    plot_history(history, output / "loss_curve.png")


def plot_history(history: list[dict], path) -> None:
    """Training and validation loss by epoch, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train (incl. contrastive)")
    ax.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("OneFormer loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
