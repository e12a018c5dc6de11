"""Galaxy Zoo 2 segmentation data: VIA polygons -> semantic / instance maps -> OneFormer batches.

On disk (the output of the conversion step)::

    DATA_ROOT/galaxy_{train,val,test}.json      VIA dicts keyed by objid; region_attributes.object_name = class
    DATA_ROOT/original/zoo2Main/Dr7_<objid>.jpg  RGB cutouts (256 x 256 px for the real data)
    DATA_ROOT/dataset_stats.json                 {"mean": [r, g, b], "std": [r, g, b]} in 0-255 units

An item holds the RGB image (H, W, 3 uint8), the semantic map (0 background, class ids 1-5 of ``src.classes``),
the instance map (0 background, 1..k in region order; a later polygon covers an earlier one where they overlap),
the class id of each instance, the objid and the OneFormer task.  :class:`OneFormerCollator` turns a list of
items into the model's batch with the processor (normalisation with the dataset mean/std, masks, texts): see
``src.data.batching``.  The COCO files of :class:`CocoFieldDataset` are read by ``src.data.coco``.

Randomness (augmentation, the task of the ``random`` mode) is a function of ``(seed, epoch, index)`` only, so
it does not depend on DataLoader workers and a resumed run sees the same samples as an uninterrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from src.classes import class_id
from src.data.batching import OneFormerCollator
from src.data.coco import DatasetError, load_coco_fields, segmentation_crop
from src.data.images import ImageError, read_rgb
from src.data.splits import SplitError, check_split_set, split_path
from src.data.via import (
    MIN_VERTICES,
    ViaError,
    entry_objid,
    entry_regions,
    load_via,
    polygon_mask,
    polygon_problems,
    region_polygon,
)
from src.data.via import image_path as via_image_path
from src.defaults import CUTOUT_SIZE, DATASET_STATS, RANDOM_TASK, RANDOM_TASKS, TASKS, TRAIN_TASKS


def require_split_file(data_root, split: str) -> Path:
    """The path of ``galaxy_<split>.json``; ``DatasetError`` naming it when it is absent."""
    path = split_path(data_root, split)
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found (run the conversion step, or check --data-root)")
    return path


def load_split(data_root, split: str) -> dict[str, dict]:
    """The VIA dict of ``galaxy_<split>.json``; a missing or empty split, or split files that are not one
    disjoint set (``src.data.splits.check_split_set``), is an error naming the file."""
    path = require_split_file(data_root, split)
    try:
        via = load_via(path)
    except ViaError as err:
        raise DatasetError(str(err)) from None
    if not via:
        raise DatasetError(f"{path}: the {split!r} split is empty")
    try:
        check_split_set(data_root, split, via)
    except SplitError as err:
        raise DatasetError(str(err)) from None
    return via


def load_stats(data_root) -> tuple[list[float], list[float]] | None:
    """The training images' pixel statistics, written by the conversion (``--stats``).

    Parameters
    ----------
    data_root : str or os.PathLike
        The data root holding ``src.defaults.DATASET_STATS`` (``dataset_stats.json``).

    Returns
    -------
    tuple of list of float, or None
        ``(mean, std)`` of R, G, B in 0-255 units; ``None`` when the file is absent.

    Raises
    ------
    DatasetError
        A file without 3 means and 3 positive standard deviations.
    """
    path = Path(data_root) / DATASET_STATS
    if not path.is_file():
        return None
    stats = json.loads(path.read_text())
    try:
        mean, std = [float(v) for v in stats["mean"]], [float(v) for v in stats["std"]]
    except (KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"{path}: needs 'mean' and 'std' lists of 3 numbers ({err})") from None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise DatasetError(f"{path}: 'mean'/'std' must hold 3 values, std > 0")
    return mean, std


def build_augment(image_size: int | None, augment: bool) -> A.Compose | None:
    """Optional square resize (bilinear image, nearest masks), then h/v flips and 90/180/270 degree rotations."""
    ops = []
    if image_size is not None:
        ops.append(
            A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
        )
    if augment:
        ops += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=1.0)]
    return A.Compose(ops, seed=0) if ops else None


def _augmented_sample(dataset, seed: int, image, semantic, instance, class_ids: list, objid) -> dict:
    """Apply a dataset's seeded augmentation, draw its task, and pack one sample.

    Parameters
    ----------
    dataset : GalaxyDataset or CocoFieldDataset
        Supplies ``_transform``, ``task`` and ``random_tasks``.
    seed : int
        Per-item seed of the augmentation and of the random task draw.
    image, semantic, instance : numpy.ndarray
        The (cropped) image and its label maps, passed to the transform as they are.
    class_ids : list
        Class id of each instance, in instance order.
    objid
        Identifier of the entry.

    Returns
    -------
    dict
        ``image``, ``semantic``, ``instance`` (C-contiguous), ``class_ids``, ``objid`` and ``task``.
    """
    if dataset._transform is not None:
        dataset._transform.set_random_seed(seed)
        out = dataset._transform(image=image, masks=[semantic, instance])
        image, (semantic, instance) = out["image"], out["masks"]
    task = dataset.task
    if task == RANDOM_TASK:
        task = dataset.random_tasks[np.random.default_rng(seed).integers(len(dataset.random_tasks))]
    return {
        "image": np.ascontiguousarray(image),
        "semantic": np.ascontiguousarray(semantic),
        "instance": np.ascontiguousarray(instance),
        "class_ids": class_ids,
        "objid": objid,
        "task": task,
    }


class GalaxyDataset(torch.utils.data.Dataset):
    """One split of the converted Galaxy Zoo 2 data.

    ``task``: ``semantic``, ``instance``, ``panoptic`` or ``random`` (per sample one of ``random_tasks``, drawn
    uniformly: repeat a task in it to weight it).
    ``crop_size``: cut a square of that side (pixels, native resolution) holding the annotated objects: at a
    random position that keeps their bounding box inside when ``augment``, centred on it otherwise (``None``:
    the whole image).  Training on crops keeps the native resolution at a fraction of the cost of the full
    image, so a model trained on 128 px crops of 256 px cutouts then runs on the full cutouts.
    ``image_size``: square side in pixels after resizing (``None``: native size).  ``augment``: flips and
    90-degree rotations.  ``in_memory``: decode every image and mask once at construction.  ``skip_bad``:
    leave out unusable entries and count them in ``skipped`` (else the first one raises ``DatasetError``); the
    images are then decoded in full at construction, so that a file whose header reads but whose body is
    truncated is caught here, not in the middle of an epoch (without it only the header is read here).
    ``processor`` is kept for :meth:`collator`.
    """

    def __init__(
        self,
        data_root,
        split: str,
        processor=None,
        task: str = "semantic",
        image_size: int | None = None,
        augment: bool = False,
        in_memory: bool = False,
        skip_bad: bool = False,
        seed: int = 0,
        random_tasks: tuple[str, ...] = RANDOM_TASKS,
        crop_size: int | None = None,
    ):
        if task not in TRAIN_TASKS:
            raise ValueError(f"task {task!r}: expected one of {', '.join(TRAIN_TASKS)}")
        if not random_tasks or any(t not in TASKS for t in random_tasks):
            raise ValueError(f"random_tasks {tuple(random_tasks)!r}: expected some of {', '.join(TASKS)}")
        self.data_root = Path(data_root)
        self.split = split
        self.source = split_path(data_root, split)
        self.processor = processor
        self.task = task
        self.random_tasks = tuple(random_tasks)
        self.image_size = image_size
        if crop_size is not None and int(crop_size) < 1:
            raise ValueError(f"crop_size must be a positive number of pixels, got {crop_size!r}")
        self.crop_size = None if crop_size is None else int(crop_size)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.skipped: list[tuple[str, str]] = []
        self.records: list[dict] = []
        for key, entry in load_split(data_root, split).items():
            try:
                self.records.append(self._record(key, entry, decode=skip_bad))
            except DatasetError as err:
                if not skip_bad:
                    raise
                self.skipped.append((key, str(err)))
        if not self.records:
            raise DatasetError(f"{self.source}: no usable entries ({len(self.skipped)} skipped)")
        self._transform = build_augment(image_size, augment)
        self._cache = [self._load(i) for i in range(len(self.records))] if in_memory else None

    # ------------------------------------------------------------------ validation and loading
    def _record(self, key: str, entry: dict, decode: bool = False) -> dict:
        """An entry's polygons, classes and image facts; ``decode``: decode the whole image (catches truncated
        files), else read its header only."""
        where = f"{self.source}: entry {key!r}"
        try:
            objid = entry_objid(key, entry, str(self.source))
        except ViaError as err:
            raise DatasetError(str(err)) from None
        try:
            image_path = via_image_path(self.data_root, entry["filename"], where)
        except ViaError as err:
            raise DatasetError(str(err)) from None
        try:
            if decode:
                height, width = read_rgb(image_path).shape[:2]
            else:
                with Image.open(image_path) as im:
                    width, height = im.size
        except ImageError as err:
            raise DatasetError(f"{where}: {err}") from None
        except FileNotFoundError:
            raise DatasetError(f"{where}: image {image_path} not found") from None
        except (UnidentifiedImageError, OSError) as err:
            raise DatasetError(f"{where}: image {image_path} unreadable ({err})") from None
        regions = entry_regions(entry)
        if not regions:
            raise DatasetError(f"{where}: no annotated region")
        polygons, classes = [], []
        for r, region in enumerate(regions):
            try:
                xs, ys = region_polygon(region, f"{where} region {r}")
            except ViaError as err:
                raise DatasetError(str(err)) from None
            problem = polygon_problems([(xs, ys)], [(height, width)])[0]
            if problem == "too_few_vertices":
                raise DatasetError(f"{where} region {r}: polygon has {xs.size} vertices (needs {MIN_VERTICES})")
            if problem == "outside_image":
                raise DatasetError(
                    f"{where} region {r}: polygon outside the {width}x{height} image "
                    f"(x {xs.min():g}..{xs.max():g}, y {ys.min():g}..{ys.max():g})"
                )
            name = (region.get("region_attributes") or {}).get("object_name")
            try:
                classes.append(class_id(name))
            except ValueError as err:
                raise DatasetError(f"{where} region {r}: {err}") from None
            if classes[-1] == 0:
                raise DatasetError(f"{where} region {r}: 'background' is not an object class")
            polygons.append((xs, ys))
        return {
            "key": key,
            "objid": objid,
            "path": image_path,
            "shape": (height, width),
            "polygons": polygons,
            "classes": classes,
        }

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image, semantic, instance)`` at native size."""
        rec = self.records[index]
        try:
            image = read_rgb(rec["path"])
        except ImageError as err:
            raise DatasetError(f"{self.source}: entry {rec['key']!r}: {err}") from None
        shape = image.shape[:2]
        semantic = np.zeros(shape, dtype=np.uint8)
        instance = np.zeros(shape, dtype=np.uint8)
        for k, ((xs, ys), cid) in enumerate(zip(rec["polygons"], rec["classes"]), start=1):
            mask = polygon_mask(xs, ys, shape)
            semantic[mask] = cid
            instance[mask] = k
        return image, semantic, instance

    # ------------------------------------------------------------------ Dataset protocol
    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of ``epoch`` (augmentations, random tasks)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _rng_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])

    def _crop_box(self, instance: np.ndarray, seed: int) -> tuple[int, int]:
        """Top-left ``(y, x)`` of the crop: the objects' bounding box inside it (random place when augmenting)."""
        height, width = instance.shape
        size = self.crop_size
        ys, xs = np.nonzero(instance)
        if ys.size == 0:  # no object pixel left (e.g. a degenerate polygon): the centre of the image
            ys, xs = np.array([height // 2]), np.array([width // 2])
        rng = np.random.default_rng([seed, 1])
        start = []
        for lo_obj, hi_obj, extent in ((ys.min(), ys.max(), height), (xs.min(), xs.max(), width)):
            lo, hi = hi_obj + 1 - size, lo_obj  # offsets that keep [lo_obj, hi_obj] inside the crop
            if lo > hi:  # object larger than the crop: centre it
                lo = hi = (lo_obj + hi_obj + 1 - size) // 2
            lo, hi = max(0, lo), min(extent - size, hi)
            if lo > hi:  # image edge: the nearest valid offset
                lo = hi = min(max(0, lo), max(0, extent - size))
            start.append(int(rng.integers(lo, hi + 1)) if self.augment else (lo + hi) // 2)
        return start[0], start[1]

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        image, semantic, instance = self._cache[index] if self._cache is not None else self._load(index)
        seed = self._rng_seed(index)
        if self.crop_size is not None:
            if min(image.shape[:2]) < self.crop_size:
                raise DatasetError(
                    f"{self.source}: entry {rec['key']!r}: image {image.shape[1]}x{image.shape[0]} "
                    f"is smaller than crop_size {self.crop_size}"
                )
            y0, x0 = self._crop_box(instance, seed)
            window = (slice(y0, y0 + self.crop_size), slice(x0, x0 + self.crop_size))
            image, semantic, instance = image[window], semantic[window], instance[window]
        return _augmented_sample(self, seed, image, semantic, instance, list(rec["classes"]), rec["objid"])

    def collator(self, training: bool = True) -> OneFormerCollator:
        if self.processor is None:
            raise ValueError("GalaxyDataset(processor=...) is needed to build OneFormer batches")
        return OneFormerCollator(self.processor, training=training, resized=self.image_size is not None)


class CocoFieldDataset(torch.utils.data.Dataset):
    """Fields annotated in COCO (the instance format most users have; ``python -m src.synthetic --field`` writes
    it): every galaxy of a large image has a polygon (or RLE) and a category, the categories being the project's
    classes (names and ids of ``src.classes``).  Items are square crops of ``crop_size`` px at native resolution,
    in the item format of :class:`GalaxyDataset` (``objid`` = the COCO image id), so the same collator and training
    loop run on them.

    ``crops_per_image`` items per image and epoch.  Each crop holds one annotated object chosen at random (its
    bounding box inside the crop when it fits) when ``augment``; otherwise (validation) object ``k mod n`` at the
    centre for the image's ``k``-th crop, so validation crops do not change between epochs.  Objects cut by the
    crop keep their visible part; instances are numbered 1..k in annotation order (a later one covers an earlier).
    Image paths are relative to the annotation file's folder.  ``image_ids``: use only these images (a split).
    ``in_memory``: decode each image once.  ``skip_bad``: leave out (and count in ``skipped``) images that are
    missing, unreadable, smaller than the crop or without annotation, instead of stopping at the first.
    """

    def __init__(
        self,
        annotation_file,
        processor=None,
        task: str = "semantic",
        crop_size: int = CUTOUT_SIZE,
        crops_per_image: int = 16,
        image_size: int | None = None,
        augment: bool = False,
        in_memory: bool = False,
        skip_bad: bool = False,
        seed: int = 0,
        random_tasks: tuple[str, ...] = RANDOM_TASKS,
        image_ids=None,
    ):
        if task not in TRAIN_TASKS:
            raise ValueError(f"task {task!r}: expected one of {', '.join(TRAIN_TASKS)}")
        if int(crop_size) < 1 or int(crops_per_image) < 1:
            raise ValueError(f"crop_size ({crop_size}) and crops_per_image ({crops_per_image}) must be >= 1")
        self.source = Path(annotation_file)
        self.processor, self.task, self.random_tasks = processor, task, tuple(random_tasks)
        self.crop_size, self.crops_per_image = int(crop_size), int(crops_per_image)
        self.image_size, self.augment, self.seed, self.epoch = image_size, augment, seed, 0
        self.skipped: list[tuple[str, str]] = []
        self.records = []
        for record in load_coco_fields(self.source, image_ids):
            try:
                self._check(record)
            except DatasetError as err:
                if not skip_bad:
                    raise
                self.skipped.append((str(record["id"]), str(err)))
                continue
            self.records.append(record)
        if not self.records:
            raise DatasetError(f"{self.source}: no usable image ({len(self.skipped)} skipped)")
        self._transform = build_augment(image_size, augment)
        self._images = [self._read(r) for r in self.records] if in_memory else None

    def _check(self, record: dict) -> None:
        where = f"{self.source}: image {record['id']} ({record['path']})"
        if not record["annotations"]:
            raise DatasetError(f"{where}: no annotated object")
        if not record["path"].is_file():
            raise DatasetError(f"{where}: file not found")
        if min(record["shape"]) < self.crop_size:
            raise DatasetError(
                f"{where}: {record['shape'][1]}x{record['shape'][0]} px is smaller than the crop ({self.crop_size} px)"
            )

    def _read(self, record: dict) -> np.ndarray:
        try:
            with Image.open(record["path"]) as im:
                image = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise DatasetError(f"{self.source}: image {record['id']}: {record['path']} unreadable ({err})") from None
        if image.shape[:2] != record["shape"]:
            height, width = record["shape"]
            raise DatasetError(
                f"{self.source}: image {record['id']}: {record['path']} is {image.shape[1]}x"
                f"{image.shape[0]} px, the annotation file says {width}x{height}"
            )
        return image

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records) * self.crops_per_image

    def _crop_origin(self, record: dict, k: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left (y, x) of crop ``k`` of an image: around one annotated object (see the class docstring)."""
        height, width = record["shape"]
        size = self.crop_size
        anns = record["annotations"]
        ann = anns[int(rng.integers(len(anns)))] if self.augment else anns[k % len(anns)]
        x, y, w, h = ann["bbox"]
        origin = []
        for lo_obj, extent_obj, extent in ((y, h, height), (x, w, width)):
            lo, hi = int(np.ceil(lo_obj + extent_obj)) - size, int(np.floor(lo_obj))
            if lo > hi or not self.augment:
                lo = hi = int(round(lo_obj + extent_obj / 2 - size / 2))
            lo, hi = max(0, lo), min(extent - size, hi)
            if lo > hi:
                lo = hi = min(max(0, lo), extent - size)
            origin.append(int(rng.integers(lo, hi + 1)))
        return origin[0], origin[1]

    def __getitem__(self, index: int) -> dict:
        image_index, k = divmod(index, self.crops_per_image)
        record = self.records[image_index]
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        rng = np.random.default_rng([seed, 1])
        y0, x0 = self._crop_origin(record, k, rng)
        size = self.crop_size
        image = self._images[image_index] if self._images is not None else self._read(record)
        image = image[y0 : y0 + size, x0 : x0 + size]
        instance = np.zeros((size, size), dtype=np.int32)
        classes = []
        for ann in record["annotations"]:
            x, y, w, h = ann["bbox"]
            if x >= x0 + size or y >= y0 + size or x + w <= x0 or y + h <= y0:
                continue
            mask = segmentation_crop(ann["segmentation"], record["shape"], y0, x0, size)
            classes.append(ann["class_id"])
            instance[mask.astype(bool)] = len(classes)
        visible = np.unique(instance[instance > 0])
        lut = np.zeros(len(classes) + 1, dtype=np.int32)
        lut[visible] = np.arange(1, visible.size + 1)
        instance = lut[instance]
        class_ids = [classes[v - 1] for v in visible]
        semantic = np.zeros((size, size), dtype=np.uint8)
        for j, cid in enumerate(class_ids, start=1):
            semantic[instance == j] = cid
        instance = instance.astype(np.uint8 if len(class_ids) < 256 else np.uint16)
        return _augmented_sample(self, seed, np.ascontiguousarray(image), semantic, instance, class_ids, record["id"])

    def collator(self, training: bool = True) -> OneFormerCollator:
        if self.processor is None:
            raise ValueError("CocoFieldDataset(processor=...) is needed to build OneFormer batches")
        return OneFormerCollator(self.processor, training=training, resized=self.image_size is not None)
