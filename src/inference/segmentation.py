"""Running a OneFormer model: one batched forward pass conditioned on a task, then the post-processing of each
task into plain numpy results.  :func:`run_model` is the one inference path: ``src.evaluation.evaluate`` (scores),
``src.evaluation.visual`` (figures), ``src.inference.predict`` (``predict.py``) and ``src.field`` (survey fields)
all run models through it.

* :func:`forward`: images (H, W, 3 uint8 RGB) -> the processor (resize and normalisation of the model's export)
  -> the model, under ``torch.inference_mode``.
* The post-processings, each written once: :func:`class_probabilities` (per-pixel class probabilities),
  :func:`semantic_maps` (class-id maps, HF ``post_process_semantic_segmentation``; pixels that no query claims are
  background, :func:`claim_background`), :func:`instance_predictions` (Mask2Former / OneFormer instance inference,
  top-k query x class pairs), :func:`hf_instance_segments` (HF's instance segments, for the original project's AP)
  and :func:`panoptic_segments` (segment-id maps with the class of each segment, background fused).
* :func:`run_model`: images of any size (and test-time augmentation), in batches -> the post-processings asked
  for, in each image's own grid.  :func:`segment`: its ``(probabilities, task result, seconds)`` form
  (``predict.py`` and survey fields).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch

from src.classes import THING_IDS
from src.cli import check_choice

#: Detections kept per image for COCO AP (COCO's maxDets).
TOP_K = 100
#: A pixel where no class reaches this share of the semantic mixture is background (:func:`claim_background`).
MIN_CLAIM = 0.1
#: Most pixels of native-size images in one forward pass of :func:`run_model` (src.data.sources.MAX_PIXELS: a pass
#: on that many pixels peaks near 9.4 GB with swin-tiny).
PASS_PIXELS = 4096 * 4096
#: Inference precisions (:func:`resolve_precision`).
PRECISIONS = ("auto", "fp32", "bf16")
#: The test-time augmentations: (quarter turns, then a left-right flip).
VIEWS = tuple((k, flip) for flip in (False, True) for k in range(4))


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA, else Apple MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of inference for ``precision`` (one of :data:`PRECISIONS`); ``None``: float32.

    ``auto`` is bf16 on a CPU with AMX (Intel Sapphire Rapids and later: bf16 matrix tiles), where the forward
    pass runs about 1.3x faster with the same labels on more than 99.9 % of pixels (BENCHMARKS.md "Inference
    precision"), and float32 everywhere else.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        fast_bf16 = device.type == "cpu" and torch.cpu._is_amx_tile_supported()
        return torch.bfloat16 if fast_bf16 else None
    return torch.bfloat16 if precision == "bf16" else None


def set_precision(model, dtype: torch.dtype | None) -> None:
    """Run ``model``'s forward passes of this module under autocast to ``dtype`` (``None``: float32)."""
    model.inference_autocast = dtype


@torch.inference_mode()
def forward(model, processor, images: Sequence[np.ndarray], task: str):
    """One batched forward pass conditioned on ``task`` (images: HWC uint8 RGB), under the model's inference
    precision (:func:`set_precision`; float32 unless set).  The logits come back as float32."""
    inputs = processor(images=list(images), task_inputs=[task] * len(images), return_tensors="pt")
    device = next(model.parameters()).device
    kwargs = {k: inputs[k].to(device) for k in ("pixel_values", "pixel_mask", "task_inputs") if k in inputs}
    dtype = getattr(model, "inference_autocast", None)
    if dtype is None:
        return model(**kwargs)
    with torch.autocast(device.type, dtype=dtype):
        outputs = model(**kwargs)
    outputs.class_queries_logits = outputs.class_queries_logits.float()
    outputs.masks_queries_logits = outputs.masks_queries_logits.float()
    return outputs


def claim_background(mixture: torch.Tensor, min_claim: float = MIN_CLAIM) -> torch.Tensor:
    """Give background the pixels that no query claims: where every class of the semantic mixture
    ``(..., classes, height, width)`` stays below ``min_claim``, background's value is raised to ``min_claim``
    (in place; returned).

    The mixture ``sum_q p_q(class) * mask_q`` is near 1 for the winning class wherever a query covers a pixel,
    background included.  On an image unlike the training set (a deep-field tile with no bright object) it can be
    ~1e-3 everywhere, and the argmax of such noise labelled a whole crop galaxy (bench/real_crops.py).  On the
    synthetic test split no pixel changes at 0.1 (docs/results-history.md).
    """
    background = mixture.select(-3, 0)
    background[mixture.amax(-3) < min_claim] = min_claim
    return mixture


def semantic_maps(processor, outputs, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Class-id maps (uint8) at ``sizes`` (height, width): the argmax of HF's semantic mixture, where pixels that
    no query claims are background (:func:`claim_background`)."""
    results = processor.post_process_semantic_segmentation(
        outputs, target_sizes=list(sizes), return_segmentation_scores=True
    )
    return [claim_background(r.segmentation_scores.float()).argmax(0).to("cpu", torch.uint8).numpy() for r in results]


@torch.inference_mode()
def instance_predictions(
    outputs, sizes: Sequence[tuple[int, int]], top_k: int = TOP_K, thing_ids: Sequence[int] = THING_IDS
) -> list[list[dict]]:
    """Per image, up to ``top_k`` detections ``{"class_id", "score", "mask", "query"}`` (mask: bool array at the
    size; detections of one query share one mask array).

    Mask2Former's ``instance_inference``: every (query, class) pair is a candidate with the class probability;
    the ``top_k`` best galaxy-class pairs are kept, their mask logits resized to the image size and cut at 0,
    and the score multiplied by the mean mask probability inside the mask.  Empty masks are dropped.  A query
    often wins for several classes, so each kept query's mask is resized once.
    """
    probs = outputs.class_queries_logits.softmax(-1)[..., :-1]  # (B, Q, K) without the "no object"
    thing = torch.as_tensor(list(thing_ids), device=probs.device)
    results = []
    for i, (height, width) in enumerate(sizes):
        scores = probs[i][:, thing]  # (Q, T)
        n_things = scores.shape[1]
        k = min(top_k, scores.numel())
        top_scores, top_index = scores.flatten().topk(k)
        queries = top_index // n_things
        labels = thing[top_index % n_things]
        kept, inverse = torch.unique(queries, return_inverse=True)
        logits = outputs.masks_queries_logits[i][kept].float()  # (u, h, w), u <= k
        logits = torch.nn.functional.interpolate(
            logits[None], size=(height, width), mode="bilinear", align_corners=False
        )[0]
        masks = logits > 0
        area = masks.flatten(1).sum(1)
        mask_score = (logits.sigmoid() * masks).flatten(1).sum(1) / area.clamp(min=1)
        final = (top_scores * mask_score[inverse]).cpu().numpy()
        query_masks = list(masks.cpu().numpy())
        inverse_np, area_np = inverse.cpu().numpy(), area.cpu().numpy()
        labels_np, queries_np = labels.cpu().numpy(), queries.cpu().numpy()
        results.append(
            [
                {
                    "class_id": int(labels_np[j]),
                    "score": float(final[j]),
                    "mask": query_masks[inverse_np[j]],
                    "query": int(queries_np[j]),
                }
                for j in range(k)
                if area_np[inverse_np[j]] > 0
            ]
        )
    return results


def _one_image_at_size(outputs, i: int, size) -> SimpleNamespace:
    """Image ``i`` of a batch's outputs with its mask logits resized (bilinear) to ``size``."""
    logits = torch.nn.functional.interpolate(
        outputs.masks_queries_logits[i : i + 1].float(), size=tuple(size), mode="bilinear", align_corners=False
    )
    return SimpleNamespace(class_queries_logits=outputs.class_queries_logits[i : i + 1], masks_queries_logits=logits)


def panoptic_segments(processor, outputs, sizes: Sequence[tuple[int, int]]) -> list[tuple[np.ndarray, dict]]:
    """``(segment-id map, {segment id: class id})`` per image; the background is fused into one segment.

    The mask logits are resized to the image size first (bilinear, as Mask2Former's panoptic inference) and the
    processor is called without ``target_sizes``: with them, ``OneFormerImageProcessorPil`` (transformers 5.23)
    needs torchvision, which this project does not install.
    """
    out = []
    for i, size in enumerate(sizes):
        single = _one_image_at_size(outputs, i, size)
        [r] = processor.post_process_panoptic_segmentation(single, label_ids_to_fuse={0})
        out.append(
            (
                r["segmentation"].to("cpu", torch.int32).numpy(),
                {int(s["id"]): int(s["label_id"]) for s in r["segments_info"]},
            )
        )
    return out


def hf_instance_segments(
    processor, outputs, sizes: Sequence[tuple[int, int]], threshold: float = 0.5
) -> list[list[dict]]:
    """Per image, the segments of HF's ``post_process_instance_segmentation`` (its defaults: class probability
    > ``threshold``, masks at probability 0.5, overlaps resolved into one map) as ``{"class_id", "score", "mask"}``,
    in the order it lists them.  This is what the original project's AP routine consumed (see
    ``src.evaluation.metrics.original_ap``); the COCO AP uses :func:`instance_predictions`.

    As in :func:`panoptic_segments` the mask logits are resized first (``target_sizes`` would need torchvision).
    transformers 5.23 tests ``"ade20k" in class_info_file``, which fails on our ``None``: a copy of the image
    processor with an empty name is used.
    """
    import copy

    image_processor = copy.copy(processor.image_processor)
    image_processor.class_info_file = ""
    out = []
    for i, size in enumerate(sizes):
        single = _one_image_at_size(outputs, i, size)
        [r] = image_processor.post_process_instance_segmentation(single, threshold=threshold)
        segmentation = r["segmentation"].to("cpu").numpy()
        out.append(
            [
                {"class_id": int(s["label_id"]), "score": float(s["score"]), "mask": segmentation == s["id"]}
                for s in r["segments_info"]
            ]
        )
    return out


@torch.inference_mode()
def class_probabilities(outputs, sizes: Sequence[tuple[int, int]], native: bool = True) -> list[torch.Tensor]:
    """Per image, the per-pixel class probabilities ``(num_labels, height, width)`` float32 at ``sizes``.

    The semantic mixture of Mask2Former / OneFormer (what ``post_process_semantic_segmentation`` takes the argmax
    of): ``sum_q softmax(class_q)[c] * sigmoid(mask_q)``, bilinearly resized, then normalised over the classes
    at each pixel (a pixel that no query claims is background: :func:`claim_background`).  ``native``: the images
    went into the model at their own size (the processor does not resize): the mask logits, at 1/stride of the model's
    padded input, are upsampled by the stride and cropped to the image, so that pixels stay aligned; otherwise (the
    processor
    resized the images) they are resized to ``sizes`` directly.
    """
    classes = outputs.class_queries_logits.softmax(-1)[..., :-1]  # (B, Q, K)
    masks = outputs.masks_queries_logits.float().sigmoid()  # (B, Q, h, w)
    mixture = torch.bmm(classes.float().transpose(1, 2), masks.flatten(2)).view(*classes.shape[::2], *masks.shape[-2:])
    mixture[:, 0] += 1e-6  # a pixel no query covers is background (and no division by 0)
    out = []
    same = len(set(map(tuple, sizes))) == 1
    for start in range(0, len(sizes), len(sizes) if same else 1):  # one resize for a batch of one size
        height, width = sizes[start]
        low = mixture[start : start + (len(sizes) if same else 1)]
        if native:
            stride = -(-height // low.shape[-2])
            up = torch.nn.functional.interpolate(low, scale_factor=stride, mode="bilinear", align_corners=False)
            up = up[..., :height, :width]
        else:
            up = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
        up = claim_background(up)
        out += list(up / up.sum(1, keepdim=True))
    return out


# ---------------------------------------------------------------------- images of any size, test-time augmentation
def _view(image: np.ndarray, view) -> np.ndarray:
    k, flip = view
    out = np.rot90(image, k, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _unview(probs: torch.Tensor, view) -> torch.Tensor:
    k, flip = view
    if not k and not flip:
        return probs
    if flip:
        probs = probs.flip(-1)
    return torch.rot90(probs, -k, dims=(-2, -1))


def _padded(size, outputs, native: bool):
    """The size at which mask logits cover the model's (stride-padded) input, native mode; else ``size``."""
    if not native:
        return size
    h4, w4 = outputs.masks_queries_logits.shape[-2:]
    stride = -(-size[0] // h4)
    return stride * h4, stride * w4


#: What :func:`run_model` can give per image, each a post-processing of the same forward pass (the first averaged
#: over the views with test-time augmentation, the others from the un-augmented view).
OUTPUTS = ("probabilities", "class_map", "instances", "original_segments", "panoptic")


def _post_process(name: str, processor, outputs, sizes, top_k: int) -> list:
    """Output ``name`` (one of :data:`OUTPUTS` but ``probabilities``) of a batch at ``sizes``."""
    if name == "class_map":
        return semantic_maps(processor, outputs, sizes)
    if name == "instances":
        return instance_predictions(outputs, sizes, top_k)
    if name == "original_segments":
        return hf_instance_segments(processor, outputs, sizes)
    return panoptic_segments(processor, outputs, sizes)


def _crop(name: str, value, height: int, width: int):
    """Output ``name`` of one image cut from the model's padded grid to the image's ``height`` x ``width`` px
    (unchanged when it is already that size; detections of one query keep sharing one mask array)."""
    if name in ("class_map", "panoptic"):
        array = value if name == "class_map" else value[0]
        if array.shape == (height, width):
            return value
        return array[:height, :width] if name == "class_map" else (array[:height, :width], value[1])
    cropped: dict[int, np.ndarray] = {}
    for d in value:
        if d["mask"].shape != (height, width):
            d["mask"] = cropped.setdefault(id(d["mask"]), d["mask"][:height, :width])
    return value


def run_model(
    model,
    processor,
    images: Sequence[np.ndarray],
    task: str,
    outputs: Sequence[str] = ("probabilities",),
    tta: bool = False,
    batch_size: int = 8,
    top_k: int = TOP_K,
) -> list[dict]:
    """Run the model on RGB images conditioned on ``task``, in batches, and post-process each batch into the
    ``outputs`` asked for: the one inference path of scoring, figures, ``predict.py`` and survey fields.

    Images of one size go through the model together, at most ``batch_size`` (and :data:`PASS_PIXELS` pixels) at
    a time; when the processor keeps sizes, images of different sizes are never padded into one pass, and each
    output is cut from the model's grid to its image's own grid.

    Parameters
    ----------
    model, processor
        A OneFormer model and its processor (:func:`src.modelling.model.load_model`).
    images : sequence of numpy.ndarray
        RGB images, (H, W, 3) uint8, of any size.
    task : str
        The task the model is conditioned on (one of ``src.defaults.TASKS``).
    outputs : sequence of str
        Any of :data:`OUTPUTS`, each computed only when asked for:

        * ``probabilities``: (K, H, W) float32 numpy per-pixel class probabilities (:func:`class_probabilities`;
          the mean over the 8 views with ``tta``); what ``predict.py`` and the survey fields use.
        * ``class_map``: (H, W) uint8 class ids (:func:`semantic_maps`: HF's semantic post-processing, the argmax
          of the un-normalised mixture); what the scores and figures use.  On a trained model it is the argmax of
          ``probabilities`` on nearly every pixel, but not on all of them by construction:
          :func:`class_probabilities` adds 1e-6 to background and normalises, which can tip a near-tie.
        * ``instances``: detections ``{"class_id", "score", "mask", "query"}`` (:func:`instance_predictions`, up
          to ``top_k``).
        * ``original_segments``: HF's instance segments (:func:`hf_instance_segments`; the original project's AP).
        * ``panoptic``: ``(segment map, {segment id: class id})`` (:func:`panoptic_segments`).
    tta : bool
        Test-time augmentation: ``probabilities`` averaged over the 8 views of :data:`VIEWS`.
    batch_size : int
        Most images in one forward pass.
    top_k : int
        Detections kept per image for ``instances``.

    Returns
    -------
    list of dict
        Per image, in the order of ``images``: each output asked for, and ``seconds``, the image's share of the
        forward passes and post-processing (s).
    """
    unknown = [name for name in outputs if name not in OUTPUTS]
    if unknown:
        raise ValueError(f"unknown output(s) {unknown}: expected some of {', '.join(OUTPUTS)}")
    per_view = [name for name in outputs if name != "probabilities"]
    native = not getattr(processor.image_processor, "do_resize", False)
    views = VIEWS if tta else VIEWS[:1]
    jobs = [(i, v) for i in range(len(images)) for v in views]
    groups: dict = {}
    for job in jobs:  # one forward pass per input size when the processor keeps sizes: no padding between images
        shape = _view(images[job[0]], job[1]).shape[:2] if native else None
        groups.setdefault(shape, []).append(job)
    sums = [None] * len(images)
    results: list[dict] = [{} for _ in images]
    seconds = np.zeros(len(images))
    for shape, group in groups.items():
        # memory: at most PASS_PIXELS pixels in one forward pass (a batch of large images runs a few at a time)
        step = max(1, min(batch_size, PASS_PIXELS // (shape[0] * shape[1]))) if shape else batch_size
        for start in range(0, len(group), step):
            chunk = group[start : start + step]
            arrays = [_view(images[i], v) for i, v in chunk]
            tic = time.perf_counter()
            raw = forward(model, processor, arrays, task)
            sizes = [a.shape[:2] for a in arrays]
            if "probabilities" in outputs:
                for (i, v), p in zip(chunk, class_probabilities(raw, sizes, native=native)):
                    p = _unview(p, v)
                    sums[i] = p if sums[i] is None else sums[i] + p
            plain = [j for j, (_i, v) in enumerate(chunk) if v == VIEWS[0]]
            if per_view and plain:
                sub = SimpleNamespace(
                    class_queries_logits=raw.class_queries_logits[plain],
                    masks_queries_logits=raw.masks_queries_logits[plain],
                )
                padded = [_padded(sizes[j], raw, native) for j in plain]
                for name in per_view:
                    for j, value in zip(plain, _post_process(name, processor, sub, padded, top_k)):
                        results[chunk[j][0]][name] = _crop(name, value, *sizes[j])
            elapsed = time.perf_counter() - tic
            for i, _v in chunk:
                seconds[i] += elapsed / len(chunk)
    for result, total, t in zip(results, sums, seconds):
        if "probabilities" in outputs:
            result["probabilities"] = (total if len(views) == 1 else total / len(views)).cpu().numpy()
        result["seconds"] = t
    return results


def segment(model, processor, images: list[np.ndarray], task: str, tta: bool = False, batch_size: int = 8):
    """Run the model on RGB images; per image ``(probs (K, H, W) float32 numpy, task_result, model seconds)``.

    ``probs``: per-pixel class probabilities in the image's own grid (the mean over the 8 views with ``tta``).
    ``task_result``: None (semantic), the instance detections with masks at the image size (instance) or
    ``(segment map, {segment: class})`` (panoptic), from the un-augmented view.  :func:`run_model` with the
    ``probabilities`` and the task's own output.
    """
    results_of_task = {"semantic": None, "instance": "instances", "panoptic": "panoptic"}
    if task not in results_of_task:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(results_of_task)}")
    result = results_of_task[task]
    outputs = ("probabilities",) if result is None else ("probabilities", result)
    return [
        (r["probabilities"], None if result is None else r[result], r["seconds"])
        for r in run_model(model, processor, images, task, outputs, tta, batch_size)
    ]
