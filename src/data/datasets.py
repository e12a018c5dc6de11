"""Galaxy Zoo 2 segmentation data: VIA polygons -> semantic / instance maps -> OneFormer batches.

On disk (the output of the conversion step)::

    DATA_ROOT/galaxy_{train,val,test}.json      VIA dicts keyed by objid; region_attributes.object_name = class
    DATA_ROOT/original/zoo2Main/Dr7_<objid>.jpg  RGB cutouts (256 x 256 px for the real data)
    DATA_ROOT/dataset_stats.json                 {"mean": [r, g, b], "std": [r, g, b]} in 0-255 units

An item holds the RGB image (H, W, 3 uint8), the semantic map (0 background, class ids 1-5 of ``src.classes``),
the instance map (0 background, 1..k in region order; a later polygon covers an earlier one where they overlap),
the class id of each instance, the objid and the OneFormer task.  :class:`OneFormerCollator` turns a list of
items into the model's batch with the processor (normalisation with the dataset mean/std, masks, texts).

Randomness (augmentation, the task of the ``random`` mode) is a function of ``(seed, epoch, index)`` only, so
it does not depend on DataLoader workers and a resumed run sees the same samples as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from src.classes import class_id
from src.data.images import ImageError, read_rgb
from src.data.splits import SplitError, check_split_set, split_path
from src.data.via import ViaError, entry_objid, entry_regions, load_via, polygon_inside, polygon_mask, region_polygon
from src.data.via import image_path as via_image_path

TASKS = ("semantic", "instance", "panoptic", "random")


class DatasetError(ValueError):
    """Unusable input; the message names the file and the entry."""


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
    """``(mean, std)`` RGB in 0-255 units from ``dataset_stats.json``, or ``None`` when absent."""
    path = Path(data_root) / "dataset_stats.json"
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
        random_tasks: tuple[str, ...] = ("semantic", "instance"),
        crop_size: int | None = None,
    ):
        if task not in TASKS:
            raise ValueError(f"task {task!r}: expected one of {', '.join(TASKS)}")
        if not random_tasks or any(t not in TASKS[:3] for t in random_tasks):
            raise ValueError(f"random_tasks {tuple(random_tasks)!r}: expected some of {', '.join(TASKS[:3])}")
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
            if xs.size < 3:
                raise DatasetError(f"{where} region {r}: polygon has {xs.size} vertices (needs 3)")
            if not polygon_inside(xs, ys, (height, width)):
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
        if self._transform is not None:
            self._transform.set_random_seed(seed)
            out = self._transform(image=image, masks=[semantic, instance])
            image, (semantic, instance) = out["image"], out["masks"]
        task = self.task
        if task == "random":
            task = self.random_tasks[np.random.default_rng(seed).integers(len(self.random_tasks))]
        return {
            "image": np.ascontiguousarray(image),
            "semantic": np.ascontiguousarray(semantic),
            "instance": np.ascontiguousarray(instance),
            "class_ids": list(rec["classes"]),
            "objid": rec["objid"],
            "task": task,
        }

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
        crop_size: int = 256,
        crops_per_image: int = 16,
        image_size: int | None = None,
        augment: bool = False,
        in_memory: bool = False,
        skip_bad: bool = False,
        seed: int = 0,
        random_tasks: tuple[str, ...] = ("semantic", "instance"),
        image_ids=None,
    ):
        if task not in TASKS:
            raise ValueError(f"task {task!r}: expected one of {', '.join(TASKS)}")
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
        from pycocotools import mask as mask_utils

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
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):  # polygons: shifted into the crop, clipped by the rasteriser
                shifted = [[v - (x0 if i % 2 == 0 else y0) for i, v in enumerate(poly)] for poly in segmentation]
                mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(shifted, size, size)))
            else:
                height, width = record["shape"]
                rle = (
                    segmentation
                    if isinstance(segmentation.get("counts"), str)
                    else mask_utils.frPyObjects(segmentation, height, width)
                )
                mask = mask_utils.decode(rle)[y0 : y0 + size, x0 : x0 + size]
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
        if self._transform is not None:
            self._transform.set_random_seed(seed)
            out = self._transform(image=np.ascontiguousarray(image), masks=[semantic, instance])
            image, (semantic, instance) = out["image"], out["masks"]
        task = self.task
        if task == "random":
            task = self.random_tasks[np.random.default_rng(seed).integers(len(self.random_tasks))]
        return {
            "image": np.ascontiguousarray(image),
            "semantic": np.ascontiguousarray(semantic),
            "instance": np.ascontiguousarray(instance),
            "class_ids": class_ids,
            "objid": record["id"],
            "task": task,
        }

    def collator(self, training: bool = True) -> OneFormerCollator:
        if self.processor is None:
            raise ValueError("CocoFieldDataset(processor=...) is needed to build OneFormer batches")
        return OneFormerCollator(self.processor, training=training, resized=self.image_size is not None)


def load_coco_fields(path, image_ids=None) -> list[dict]:
    """The images of a COCO instance file as ``{"id", "path", "shape" (h, w), "file_name", "annotations": [{"bbox",
    "segmentation", "class_id", "flux_gri" (or None)}]}``, in image-id order.  The categories must be the
    project's classes (same name and id as ``src.classes``); anything else is an error naming the file and the
    entry."""
    path = Path(path)
    try:
        coco = json.loads(path.read_text())
        images, annotations, categories = coco["images"], coco["annotations"], coco["categories"]
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not a COCO instance file (needs images, annotations, categories: {err})") from None
    known = {}
    for cat in categories:
        try:
            cid = class_id(cat.get("name"))
        except ValueError as err:
            raise DatasetError(f"{path}: category {cat.get('id')}: {err}") from None
        if cid == 0 or cat.get("id") != cid:
            raise DatasetError(
                f"{path}: category {cat.get('name')!r} has id {cat.get('id')}; the project's id is "
                f"{cid} (src/classes.py) and 'background' is not a category"
            )
        known[cid] = cat["name"]
    wanted = None if image_ids is None else {int(i) for i in image_ids}
    records = {}
    for k, im in enumerate(images):
        try:
            image_id, name, shape = int(im["id"]), str(im["file_name"]), (int(im["height"]), int(im["width"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DatasetError(f"{path}: image entry {k}: needs id, file_name, height, width ({err})") from None
        if wanted is None or image_id in wanted:
            records[image_id] = {
                "id": image_id,
                "path": path.parent / name,
                "file_name": name,
                "shape": shape,
                "annotations": [],
            }
    for k, ann in enumerate(annotations):
        where = f"{path}: annotation {k} (id {ann.get('id')})"
        if ann.get("category_id") not in known:
            raise DatasetError(f"{where}: category_id {ann.get('category_id')!r} is not a category of the file")
        if "segmentation" not in ann or not isinstance(ann.get("bbox"), list) or len(ann["bbox"]) != 4:
            raise DatasetError(f"{where}: needs a segmentation and a bbox [x, y, width, height]")
        record = records.get(ann.get("image_id"))
        if record is None:
            if wanted is None:
                raise DatasetError(f"{where}: image_id {ann.get('image_id')!r} is not an image of the file")
            continue
        if ann.get("iscrowd", 0):
            raise DatasetError(f"{where}: crowd regions (iscrowd 1) are not supported: annotate each galaxy")
        record["annotations"].append(
            {
                "bbox": [float(v) for v in ann["bbox"]],
                "segmentation": ann["segmentation"],
                "class_id": int(ann["category_id"]),
                "flux_gri": ann.get("flux_gri"),
            }
        )
    return [records[i] for i in sorted(records)]


class OneFormerCollator:
    """List of dataset items -> OneFormer batch (``pixel_values``, ``pixel_mask``, ``mask_labels``,
    ``class_labels``, ``task_inputs``, and ``text_inputs`` when ``training``).

    Per task the image processor gets: semantic -> the semantic map; instance / panoptic -> the instance map with
    ``instance_id_to_semantic_id`` (0 -> background).  It pads images, masks and class lists.  ``resized``: the
    items already have the model's size, so the processor does not resize again.

    The texts are tokenised as ``OneFormerProcessor.__call__`` does it, but each distinct text list only once:
    an image's ``num_text`` prompts (134 for swin-tiny) take a few distinct forms ("a photo with a <class>" for
    its objects, then a task filler), and tokenising them for every image was most of the pipeline's time.
    """

    #: Distinct text lists kept (a few dozen occur: task x classes present); the cache restarts beyond this.
    CACHE_SIZE = 4096

    def __init__(self, processor, training: bool = True, resized: bool = False):
        self.processor = processor
        self.training = training
        self.resized = resized
        self._tokens: dict[tuple[tuple[str, ...], int], torch.Tensor] = {}

    def tokens(self, texts: tuple[str, ...], length: int) -> torch.Tensor:
        """``(len(texts), length)`` token ids, as the processor's own text encoding, memoised."""
        key = (texts, length)
        ids = self._tokens.get(key)
        if ids is None:
            if len(self._tokens) >= self.CACHE_SIZE:
                self._tokens.clear()
            ids = self._tokens[key] = self.processor._preprocess_text(list(texts), max_length=length)
        return ids

    def __call__(self, items: list[dict]) -> dict:
        maps, mappings, tasks = [], [], [item["task"] for item in items]
        for item in items:
            if item["task"] == "semantic":
                maps.append(item["semantic"])
                mappings.append(None)
            else:
                maps.append(item["instance"])
                mappings.append({0: 0, **dict(enumerate(item["class_ids"], start=1))})
        kwargs = {"do_resize": False} if self.resized else {}
        batch = dict(
            self.processor.image_processor(
                images=[item["image"] for item in items],
                task_inputs=tasks,
                segmentation_maps=maps,
                instance_id_to_semantic_id=mappings,
                return_tensors="pt",
                **kwargs,
            )
        )
        batch["task_inputs"] = torch.cat(
            [self.tokens((f"the task is {task}",), self.processor.task_seq_length) for task in tasks]
        )
        texts = batch.pop("text_inputs", None)
        if self.training and texts is not None:
            batch["text_inputs"] = torch.stack([self.tokens(tuple(t), self.processor.max_seq_length) for t in texts])
        return batch


class ShardBatches(torch.utils.data.Sampler):
    """Batches of ``range(n)`` in order (the last one may be smaller); process ``rank`` of ``world`` takes the
    batches at positions ``rank, rank + world, ...`` (one process: all of them, as a plain loader).  A batch
    sampler for ``DataLoader(batch_sampler=...)``; :meth:`positions` gives each yielded batch's position."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size < 1 or not 0 <= rank < world:
            raise ValueError(f"ShardBatches: batch_size {batch_size} must be >= 1 and rank {rank} in 0..{world - 1}")
        self.batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        self.rank, self.world = rank, world

    def positions(self) -> range:
        return range(self.rank, len(self.batches), self.world)

    def __iter__(self):
        return (self.batches[p] for p in self.positions())

    def __len__(self) -> int:
        return len(self.positions())


def loader_worker_init(worker_id: int) -> None:
    """Workers share the 2 cores with the model: one thread each."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
