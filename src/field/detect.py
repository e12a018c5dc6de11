"""Source detection in a frame with sep (SExtractor's algorithms as a library).

The steps are SExtractor's: a background map (``sep.Background``: sigma-clipped mode in ``BACK_SIZE`` px meshes,
median-filtered over ``BACK_FILTER`` meshes, interpolated), subtracted; then ``sep.extract`` on the residual with a
threshold of ``thresh`` times the global background rms, the default 3 x 3 matched filter, at least ``min_pixels``
connected pixels, and deblending (``DEBLEND_NTHRESH`` sub-thresholds, minimum contrast ``DEBLEND_CONT``).  Pixels
marked invalid (blank / NaN in a FITS frame) are masked: they are neither detected nor used for the background.

The detection image (:func:`detection_image`):

* RGB input (JPEG / PNG): the mean of the three channels.  These are asinh-stretched (Lupton), so a threshold is
  an isophote of the stretched image.
* Band input (FITS, already in the training set's units, ``src.data.images``): the mean over g, r, i of band / sky
  sigma, the detection image of the synthetic generator, whose annotations trace its 0.9-1.3 sigma isophote.

The thresholds :data:`RGB_THRESH` and :data:`BAND_THRESH` are those whose isophotes best reproduce the annotated
outlines of synthetic fields (``bench/field_detection.py`` on 4 calibration fields, not the scored ones: median
IoU 0.85 and 0.87, median annotated / sep area 0.92 and 1.04; see BENCHMARKS.md).

Frames larger than ``chunk`` px on a side are detected chunk by chunk (each with a ``margin`` px border so that
objects across a chunk border are whole in one of them); an object belongs to the chunk holding its centroid, so
each is found once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Detection threshold, in units of the background rms, for RGB (stretched) and band (linear) images.
RGB_THRESH = 3.0
BAND_THRESH = 2.0
#: Background mesh and median filter sizes (px, meshes): SExtractor's defaults.
BACK_SIZE = 64
BACK_FILTER = 3
#: sep's minimum number of connected pixels above the threshold.
MIN_PIXELS = 5
DEBLEND_NTHRESH = 32
DEBLEND_CONT = 0.005
#: Frames up to this side are detected in one piece; larger ones in chunks of this side (memory: a chunk's bands).
CHUNK = 2048
#: Border added around each chunk (px): larger than the largest object expected.
MARGIN = 256

#: Columns of :class:`Detections.table`: sep's names and types (``x``, ``y``, bounds in frame pixels, 0-based);
#: the shape measurements of ``src.field.stars.measure_shapes`` (``r50``: half-flux radius, px; ``fwhm``: isophotal
#: FWHM, px; ``nsat``: saturated pixels; ``spikes``: diffraction-spike contrast); and ``rms``, the background rms of
#: the chunk the source was found in.
SEP_COLUMNS = ("x", "y", "npix", "a", "b", "theta", "flux", "peak", "xmin", "xmax", "ymin", "ymax", "flag")
TABLE_DTYPE = np.dtype(
    [
        ("x", "f8"),
        ("y", "f8"),
        ("npix", "i8"),
        ("a", "f8"),
        ("b", "f8"),
        ("theta", "f8"),
        ("flux", "f8"),
        ("peak", "f8"),
        ("xmin", "i8"),
        ("xmax", "i8"),
        ("ymin", "i8"),
        ("ymax", "i8"),
        ("flag", "i8"),
        ("r50", "f8"),
        ("fwhm", "f8"),
        ("nsat", "i8"),
        ("spikes", "f8"),
        ("rms", "f8"),
    ]
)


@dataclass
class Detections:
    """What sep found in a frame.

    ``table``: one row per source (structured array, :data:`TABLE_DTYPE`; ``npix`` = isophotal area in px,
    ``flux`` in the detection image's units above the background, ``a``, ``b`` semi-axes in px, ``theta`` in
    radians).  ``segmentation``: int32 map of the frame, 0 = no source, ``k`` = row ``k - 1`` (``None`` when not
    asked for).  ``rms``: the global background rms of each chunk (one value for a single-piece frame).
    """

    table: np.ndarray
    segmentation: np.ndarray | None
    rms: list[float]

    def __len__(self) -> int:
        return len(self.table)

    def snr(self) -> np.ndarray:
        """Isophotal signal-to-noise of each source: flux / (rms sqrt(npix)) (the rms of its chunk)."""
        return self.table["flux"] / (self.table["rms"] * np.sqrt(np.maximum(self.table["npix"], 1)))


def detection_image(pixels: np.ndarray, sky_sigma=None) -> np.ndarray:
    """The image sep runs on, float32 (h, w): ``pixels`` (h, w, 3) RGB -> channel mean; (3, h, w) bands ->
    mean of band / ``sky_sigma`` (per band).  NaNs are kept (they are masked by :func:`detect_array`)."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 3 and pixels.dtype == np.uint8:
        # the channel mean, summed plane by plane (a reduction over an axis of 3 is 10x slower in numpy): the sum of
        # three bytes is exact in float32, so the result is bit for bit that of pixels.mean(axis=2, dtype=float32)
        total = pixels[..., 0].astype(np.float32)
        total += pixels[..., 1]
        total += pixels[..., 2]
        return total / np.float32(3)
    if pixels.ndim != 3 or pixels.shape[0] != 3:
        raise ValueError(f"expected (h, w, 3) uint8 RGB or (3, h, w) bands, got {pixels.dtype} {pixels.shape}")
    sigma = np.ones(3) if sky_sigma is None else np.asarray(sky_sigma, float)
    weights = (1.0 / (3.0 * sigma)).astype(np.float32)
    return np.tensordot(weights, pixels.astype(np.float32, copy=False), axes=1)


def detect_array(
    image: np.ndarray,
    thresh: float,
    valid: np.ndarray | None = None,
    min_pixels: int = MIN_PIXELS,
    segmentation: bool = True,
    deblend_cont: float = DEBLEND_CONT,
    saturated: np.ndarray | None = None,
):
    """sep on one (h, w) detection image: ``(table, segmentation map or None, background rms)``.

    ``valid``: False where pixels are blank (masked).  ``saturated``: True where a pixel reached the detector's or
    the image's saturation (counted per source in ``nsat``; None: unknown, 0).  A frame where nothing reaches the
    threshold gives an empty table, not an error; so does a frame with no valid pixel.
    """
    import sep

    data = np.ascontiguousarray(image, dtype=np.float32)
    mask = ~np.isfinite(data)
    if valid is not None:
        mask |= ~np.asarray(valid, bool)
    if mask.all():
        return _empty_table(), (np.zeros(data.shape, np.int32) if segmentation else None), 0.0
    if mask.any():
        data = np.where(mask, np.float32(0), data)
    height, width = data.shape
    box_h, box_w = min(BACK_SIZE, height), min(BACK_SIZE, width)
    background = sep.Background(
        data, mask=mask if mask.any() else None, bw=box_w, bh=box_h, fw=BACK_FILTER, fh=BACK_FILTER
    )
    rms = float(background.globalrms)
    residual = data - background.back()
    if not np.isfinite(rms) or rms <= 0:  # a constant image: no noise to measure, nothing to detect
        return _empty_table(), (np.zeros(data.shape, np.int32) if segmentation else None), 0.0
    # sep allocates the whole pixel stack at each call; an image cannot hold more pixels than it has
    sep.set_extract_pixstack(min(data.size, max(300_000, data.size // 4)))
    sep.set_sub_object_limit(4096)
    found, segmap = sep.extract(
        residual,
        thresh,
        err=rms,
        mask=mask if mask.any() else None,
        minarea=min_pixels,
        deblend_nthresh=DEBLEND_NTHRESH,
        deblend_cont=deblend_cont,
        segmentation_map=True,
    )
    table = _select(found)
    from src.field.stars import measure_shapes

    measure_shapes(table, residual, segmap, rms, saturated)
    return table, (segmap.astype(np.int32, copy=False) if segmentation else None), rms


def _select(table: np.ndarray) -> np.ndarray:
    out = np.zeros(len(table), dtype=TABLE_DTYPE)
    for name in SEP_COLUMNS:
        out[name] = table[name]
    return out


def _empty_table() -> np.ndarray:
    return np.zeros(0, dtype=TABLE_DTYPE)


def detect(
    read: Callable[[slice, slice], tuple[np.ndarray, np.ndarray | None]],
    shape: tuple[int, int],
    thresh: float,
    min_pixels: int = MIN_PIXELS,
    segmentation: bool = True,
    chunk: int = CHUNK,
    margin: int = MARGIN,
    deblend_cont: float = DEBLEND_CONT,
    saturated: Callable[[slice, slice], np.ndarray | None] | None = None,
) -> Detections:
    """Detect the sources of a frame of ``shape`` (height, width) px.

    ``read(rows, cols)`` returns ``(detection image, valid or None)`` of a region (see :func:`detection_image`):
    the frame is read chunk by chunk, so a memory-mapped frame larger than memory is never loaded whole.
    ``saturated(rows, cols)``: the region's saturated pixels (bool, or None when unknown).
    """
    height, width = shape
    tables, rms_values = [], []
    segmap = np.zeros(shape, dtype=np.int32) if segmentation else None
    step = max(1, int(chunk))
    for y0 in range(0, height, step):
        for x0 in range(0, width, step):
            core = (y0, min(y0 + step, height), x0, min(x0 + step, width))
            ry0, ry1 = max(0, core[0] - margin), min(height, core[1] + margin)
            rx0, rx1 = max(0, core[2] - margin), min(width, core[3] + margin)
            if height <= step and width <= step:
                ry0, ry1, rx0, rx1 = 0, height, 0, width
            image, valid = read(slice(ry0, ry1), slice(rx0, rx1))
            sat = None if saturated is None else saturated(slice(ry0, ry1), slice(rx0, rx1))
            table, local_seg, rms = detect_array(image, thresh, valid, min_pixels, segmentation, deblend_cont, sat)
            cx, cy = table["x"] + rx0, table["y"] + ry0
            inside = (cy >= core[0] - 0.5) & (cy < core[1] - 0.5) & (cx >= core[2] - 0.5) & (cx < core[3] - 0.5)
            kept = np.flatnonzero(inside)
            table = table[kept]
            for name, offset in (("x", rx0), ("xmin", rx0), ("xmax", rx0), ("y", ry0), ("ymin", ry0), ("ymax", ry0)):
                table[name] += offset
            table["rms"] = rms
            if segmap is not None and kept.size:
                lut = np.zeros(int(local_seg.max()) + 1, dtype=np.int32)
                first = sum(len(t) for t in tables)
                lut[kept + 1] = first + 1 + np.arange(kept.size, dtype=np.int32)
                relabelled = lut[local_seg]
                region = segmap[ry0:ry1, rx0:rx1]
                np.copyto(region, relabelled, where=relabelled > 0)
            tables.append(table)
            rms_values.append(rms)
    table = np.concatenate(tables) if tables else _empty_table()
    return Detections(table, segmap, rms_values)
