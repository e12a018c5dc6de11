"""The training data: the datasets (cutout splits or crops of annotated fields), their loaders (one epoch order per
(seed, epoch), sharded over processes) and what an export records of them."""

from __future__ import annotations

import logging

from torch.utils.data import DataLoader

from src.classes import CLASS_NAMES
from src.data.batching import ShardBatches, loader_worker_init
from src.data.coco import load_coco_fields
from src.data.datasets import CocoFieldDataset, GalaxyDataset
from src.defaults import CUTOUT_SIZE
from src.training.config import TrainConfig
from src.training.process import log_once
from src.training.sampler import EpochSampler, class_balance_weights

#: Crop side (px) of COCO fields when ``crop_size`` is not given: a cutout's.
FIELD_CROP = CUTOUT_SIZE


def build_datasets(cfg: TrainConfig, processor):
    """``(train, validation)`` datasets.

    Parameters
    ----------
    cfg : TrainConfig
    processor : transformers.OneFormerProcessor
        Encodes the images and targets.

    Returns
    -------
    tuple of datasets
        The cutout splits under ``data_root``, or with ``coco`` crops of annotated fields
        (``src.data.datasets.CocoFieldDataset``; validation: ``val_coco``, else every 5th image of ``coco``).
    """
    val_task = "semantic" if cfg.task == "random" else cfg.task
    shared = dict(image_size=cfg.image_size, in_memory=cfg.in_memory, skip_bad=cfg.skip_bad, seed=cfg.seed)
    if cfg.coco is None:
        common = dict(crop_size=cfg.crop_size, **shared)
        train_ds = GalaxyDataset(
            cfg.data_root,
            "train",
            processor,
            task=cfg.task,
            augment=cfg.augment,
            random_tasks=cfg.random_tasks,
            **common,
        )
        val_ds = GalaxyDataset(cfg.data_root, cfg.val_split, processor, task=val_task, augment=False, **common)
        return train_ds, val_ds
    common = dict(crop_size=cfg.crop_size or FIELD_CROP, crops_per_image=cfg.crops_per_image, **shared)
    train_ids = val_ids = None
    if cfg.val_coco is None:
        ids = [record["id"] for record in load_coco_fields(cfg.coco)]
        if len(ids) < 2:
            raise ValueError(
                f"{cfg.coco}: a single image cannot be split into training and validation fields; "
                "give validation fields with --val-coco"
            )
        val_ids = ids[4::5] or ids[-1:]
        train_ids = [i for i in ids if i not in set(val_ids)]
    train_ds = CocoFieldDataset(
        cfg.coco,
        processor,
        task=cfg.task,
        augment=cfg.augment,
        random_tasks=cfg.random_tasks,
        image_ids=train_ids,
        **common,
    )
    val_ds = CocoFieldDataset(
        cfg.val_coco or cfg.coco, processor, task=val_task, augment=False, image_ids=val_ids, **common
    )
    return train_ds, val_ds


def _class_weights(cfg: TrainConfig, train_ds, accelerator):
    """Sampling weights of ``--class-balance`` (``None`` without it)."""
    if not cfg.class_balance:
        return None
    if cfg.coco is not None:
        raise ValueError("--class-balance applies to the cutout splits, not to --coco fields")
    first_class = [rec["classes"][0] if rec["classes"] else 0 for rec in train_ds.records]  # 0: no object
    weights, drawn = class_balance_weights(first_class, cfg.class_balance)
    log_once(
        accelerator,
        f"class balance {cfg.class_balance:g}: expected share of each class per epoch "
        + ", ".join(f"{CLASS_NAMES[c]} {v:.0%}" for c, v in sorted(drawn.items())),
    )
    return weights


def build_loaders(cfg: TrainConfig, train_ds, val_ds, accelerator):
    """The epoch sampler and the training and validation loaders of this process.

    Several processes: Accelerate gives process r the batches r, r + N, ... of the epoch order; whole global
    batches only, so the shares are disjoint (and one step of N processes = one of ``--grad-accum N`` in one).
    Validation is sharded here, not by Accelerate (whose ``even_batches`` would count some images twice).

    Parameters
    ----------
    cfg : TrainConfig
    train_ds, val_ds : datasets
        From :func:`build_datasets`.
    accelerator : accelerate.Accelerator

    Returns
    -------
    sampler : EpochSampler
    train_loader, val_loader : torch.utils.data.DataLoader
    """
    for ds in (train_ds, val_ds):
        if ds.skipped:
            log_once(
                accelerator,
                f"skipped {len(ds.skipped)} bad entries of {ds.source} (--skip-bad); first: {ds.skipped[0][1]}",
                logging.WARNING,
            )
    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = cfg.batch_size * world
    if world > 1 and len(train_ds) < global_batch:
        raise ValueError(
            f"{train_ds.source}: {len(train_ds)} training images, fewer than one global batch "
            f"({world} processes x batch size {cfg.batch_size})"
        )
    weights = _class_weights(cfg, train_ds, accelerator)
    sampler = EpochSampler(len(train_ds), cfg.seed, multiple=global_batch if world > 1 else 1, weights=weights)
    if world > 1:
        log_once(
            accelerator,
            f"{world} processes: {len(sampler) // world} training images per process and epoch; "
            f"{len(train_ds) - len(sampler)} left out of each epoch (different ones each epoch)",
        )
    # no persistent workers: the epoch's augmentation stream is set on the dataset in this process (set_epoch),
    # which workers only see when they are started anew for each epoch
    loader_kwargs = dict(
        num_workers=cfg.num_workers,
        worker_init_fn=loader_worker_init if cfg.num_workers else None,
        pin_memory=accelerator.device.type == "cuda",
    )
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=train_ds.collator(training=True),
        **loader_kwargs,
    )
    n_val = len(val_ds) if cfg.val_limit is None else min(len(val_ds), cfg.val_limit)  # the first n_val images
    val_loader = DataLoader(
        val_ds,
        batch_sampler=ShardBatches(n_val, cfg.batch_size, rank, world),
        collate_fn=val_ds.collator(training=False),
        **loader_kwargs,
    )
    return sampler, train_loader, val_loader


def training_data(cfg: TrainConfig, train_ds, val_ds, fingerprint: dict) -> dict:
    """What the export records of its training data (``training_data.json``, read by the model card).

    Parameters
    ----------
    cfg : TrainConfig
    train_ds, val_ds : datasets
        The datasets the run trained and validated on.
    fingerprint : dict
        :func:`src.training.resume.data_fingerprint` of the run.

    Returns
    -------
    dict
    """
    from src.data.splits import read_manifest
    from src.modelling.model_card import data_origin

    if cfg.coco is not None:
        origin, membership = "fields (COCO)", None
    else:
        origin = data_origin([record["objid"] for record in train_ds.records])
        membership = (read_manifest(cfg.data_root) or {}).get("membership")
    return {
        "data_root": str(cfg.data_root),
        "coco": cfg.coco,
        "origin": origin,
        "train_images": len(train_ds),
        "val_images": len(val_ds),
        "split_membership": membership,
        "data_fingerprint": fingerprint,
    }
