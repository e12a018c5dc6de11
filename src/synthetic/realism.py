"""Image statistics of SDSS-like colour JPEGs, measured the same way on real frame crops and synthetic cutouts.

Everything is measured in JPEG pixel values (0-255): the real frames are colour composites, so the synthetic
cutouts are measured after their own stretch and JPEG round trip, on the same footing.  sep (SExtractor's
algorithms as a library) does the background, the detection and the photometry on the *detection image*, the
mean of R, G and B.

Per crop (:func:`measure_crop`):

* ``sky_level``, ``sky_sigma``: sep's global background and its rms (JPEG units);
* ``noise_corr1``, ``noise_corr3``: autocorrelation of the source-free sky at lags of 1 and 3 px (mean of x and y;
  white noise gives 0; resampling and JPEG compression correlate neighbouring pixels);
* ``n_sources``: sources above ``DETECT_SIGMA`` x ``sky_sigma`` (at least ``MIN_AREA`` px) whose centre lies outside
  the central disc of ``CENTRE_RADIUS`` px (the annotated object of a cutout is not a field source);
  ``n_point`` / ``n_extended`` of them point-like or not, ``n_saturated`` with a saturated core, ``blended``
  the share that sep deblended from a neighbour;
* ``brightest_star``: log10 of the detection-image flux of the brightest point-like or saturated source
  (0 when there is none);
* ``cover``: share of the crop's pixels (outside the central disc) inside a detected source.

Per source (pooled over crops): ``log_flux`` (log10 isophotal flux), ``r50`` (half-light radius, px),
``peak``, ``colour`` (``-2.5 log10(R / B)``: i - g up to a constant, as the composite maps i to R and g to B),
``point``, ``saturated`` and, for saturated ones at least 2 x ``CENTRE_RADIUS`` from the centre, ``spikes`` (m = 4
angular harmonic of the ring around the core, relative to its mean: a cross of diffraction spikes) and ``bleed`` (m = 2
harmonic: a one-way trail).

Point-like sources: in the stretched image the half-light radius of a star grows with its peak, so "point-like"
means ``r50 <= POINT_FACTOR`` x the stellar locus at that peak, the locus being the lower quartile of ``r50`` in
bins of log peak, per crop where a crop holds at least ``CROP_LOCUS_MIN`` sources (each crop has its own seeing),
else over the whole data set (:func:`classify_points`).  ``star_fwhm`` is 2 x the median ``r50`` of
unsaturated point-like sources with peaks of ``FWHM_PEAKS`` (for a Gaussian, FWHM = 2 r50).
"""

from __future__ import annotations

import numpy as np

from src.defaults import CUTOUT_SIZE

CROP = CUTOUT_SIZE
CENTRE_RADIUS = 24.0
DETECT_SIGMA = 3.0
MIN_AREA = 5
BACKGROUND_BOX = 64
SATURATED = 250
SATURATED_PIXELS = 2
POINT_FACTOR = 1.25
FWHM_PEAKS = (20.0, 120.0)
#: Sources a crop needs for its own stellar locus (else the data set's is used).
CROP_LOCUS_MIN = 20
#: Statistics of one crop, in table order.
CROP_STATS = (
    "sky_level",
    "sky_sigma",
    "noise_corr1",
    "noise_corr3",
    "n_sources",
    "n_point",
    "n_extended",
    "n_saturated",
    "blended",
    "brightest_star",
    "cover",
    "star_fwhm",
)
SOURCE_FIELDS = ("log_flux", "r50", "peak", "colour", "saturated", "spikes", "bleed", "crop")


def frame_crops(rgb: np.ndarray, size: int = CROP, per_side: int | None = None) -> list[np.ndarray]:
    """Square crops of ``size`` px on a regular grid covering the frame (edges included, slight overlaps)."""
    height, width = rgb.shape[:2]
    if min(height, width) < size:
        raise ValueError(f"frame of {width}x{height} px is smaller than a {size} px crop")
    out = []
    n_y = per_side or int(np.ceil(height / size))
    n_x = per_side or int(np.ceil(width / size))
    for y in np.linspace(0, height - size, n_y).round().astype(int):
        for x in np.linspace(0, width - size, n_x).round().astype(int):
            out.append(rgb[y : y + size, x : x + size])
    return out


def _autocorrelation(image: np.ndarray, mask: np.ndarray, lag: int) -> float:
    """Correlation of ``image`` with itself shifted by ``lag`` px, over pairs of pixels both in ``mask``
    (mean of the x and y shifts)."""
    values = []
    for a, b, ma, mb in (
        (image[:, :-lag], image[:, lag:], mask[:, :-lag], mask[:, lag:]),
        (image[:-lag], image[lag:], mask[:-lag], mask[lag:]),
    ):
        both = ma & mb
        if both.sum() < 100:
            return float("nan")
        x, y = a[both], b[both]
        x, y = x - x.mean(), y - y.mean()
        values.append(float((x * y).mean() / np.sqrt((x * x).mean() * (y * y).mean())))
    return float(np.mean(values))


def _harmonics(image: np.ndarray, x: float, y: float, r_in: float, r_out: float) -> tuple[float, float]:
    """Amplitudes of the m = 4 and m = 2 angular harmonics of ``image`` in the ring [r_in, r_out] around
    (x, y), relative to the ring's mean (0 for a round profile)."""
    half = int(np.ceil(r_out)) + 1
    x0, y0 = int(round(x)), int(round(y))
    ys, xs = np.mgrid[y0 - half : y0 + half + 1, x0 - half : x0 + half + 1]
    inside = (ys >= 0) & (xs >= 0) & (ys < image.shape[0]) & (xs < image.shape[1])
    r = np.hypot(xs - x, ys - y)
    ring = inside & (r >= r_in) & (r <= r_out)
    if ring.sum() < 24:
        return float("nan"), float("nan")
    theta = np.arctan2(ys[ring] - y, xs[ring] - x)
    values = image[ys[ring], xs[ring]]
    mean = values.mean()
    if mean <= 0:
        return float("nan"), float("nan")
    amp = [abs(np.mean(values * np.exp(-1j * m * theta))) * 2 / mean for m in (4, 2)]
    return float(amp[0]), float(amp[1])


def measure_crop(rgb: np.ndarray, crop_index: int = 0) -> tuple[dict, dict]:
    """``(crop statistics, per-source arrays)`` of one (H, W, 3) uint8 image (``star_fwhm`` and the point-like
    counts are filled in by :func:`classify_points` once the whole data set is measured)."""
    import sep
    from scipy import ndimage

    rgb = np.asarray(rgb)
    channels = rgb.astype(np.float32)
    detection = np.ascontiguousarray(channels.mean(axis=2))
    background = sep.Background(detection, bw=BACKGROUND_BOX, bh=BACKGROUND_BOX, fw=3, fh=3)
    sub = detection - background.back()
    sigma = float(background.globalrms)
    objects, segmap = sep.extract(
        sub, DETECT_SIGMA, err=sigma, minarea=MIN_AREA, segmentation_map=True, deblend_cont=0.005
    )
    height, width = detection.shape
    yy, xx = np.mgrid[0:height, 0:width]
    centre_mask = np.hypot(xx - (width - 1) / 2, yy - (height - 1) / 2) < CENTRE_RADIUS
    sky_mask = ~ndimage.binary_dilation(segmap > 0, iterations=3)
    sky = np.where(sky_mask, sub, 0.0)

    n = len(objects)
    r50 = np.zeros(n)
    if n:
        r50, _ = sep.flux_radius(
            sub,
            objects["x"],
            objects["y"],
            6.0 * np.maximum(objects["a"], 0.5),
            0.5,
            normflux=np.maximum(objects["flux"], 1e-3),
            subpix=5,
        )
    labels = np.arange(1, n + 1)
    red = ndimage.sum_labels(channels[..., 0] - np.median(channels[..., 0][sky_mask]), segmap, labels) if n else []
    blue = ndimage.sum_labels(channels[..., 2] - np.median(channels[..., 2][sky_mask]), segmap, labels) if n else []
    full = rgb.max(axis=2) >= SATURATED  # the composite keeps colours: one channel clips
    saturated_px = ndimage.sum_labels(full, segmap, labels) if n else []
    centre_dist = np.hypot(objects["x"] - (width - 1) / 2, objects["y"] - (height - 1) / 2)
    field = centre_dist >= CENTRE_RADIUS

    sources = {k: [] for k in SOURCE_FIELDS}
    for i in np.flatnonzero(field):
        saturated = saturated_px[i] >= SATURATED_PIXELS
        spikes = bleed = float("nan")
        if saturated and centre_dist[i] >= 2 * CENTRE_RADIUS:  # the ring must not hold the cutout's target
            core = np.sqrt(saturated_px[i] / np.pi)
            spikes, bleed = _harmonics(sub, objects["x"][i], objects["y"][i], core + 3, core + 12)
        colour = (-2.5 * np.log10(red[i] / blue[i])) if red[i] > 0 and blue[i] > 0 else float("nan")
        for key, value in (
            ("log_flux", np.log10(max(objects["flux"][i], 1.0))),
            ("r50", r50[i]),
            ("peak", objects["peak"][i] + background.globalback),
            ("colour", colour),
            ("saturated", bool(saturated)),
            ("spikes", spikes),
            ("bleed", bleed),
            ("crop", crop_index),
        ):
            sources[key].append(value)
    stats = {
        "sky_level": float(background.globalback),
        "sky_sigma": sigma,
        "noise_corr1": _autocorrelation(sky, sky_mask, 1),
        "noise_corr3": _autocorrelation(sky, sky_mask, 3),
        "n_sources": int(field.sum()),
        "n_saturated": int(np.sum(sources["saturated"])),
        "blended": float(np.mean((objects["flag"][field] & sep.OBJ_MERGED) > 0)) if field.any() else 0.0,
        "cover": float(((segmap > 0) & ~centre_mask).sum() / (~centre_mask).sum()),
    }
    return stats, {k: np.asarray(v) for k, v in sources.items()}


def stellar_locus(log_peak: np.ndarray, r50: np.ndarray, width: float = 0.15, minimum: int = 8):
    """(bin centres, lower-quartile r50) in bins of log10 peak holding at least ``minimum`` sources."""
    edges = np.arange(np.floor(log_peak.min() / width) * width, log_peak.max() + width, width)
    centres, locus = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (log_peak >= lo) & (log_peak < hi)
        if inside.sum() >= minimum:
            centres.append((lo + hi) / 2)
            locus.append(np.percentile(r50[inside], 25))
    return np.asarray(centres), np.asarray(locus)


def classify_points(crops: list[dict], sources: dict) -> None:
    """Mark point-like sources (``sources["point"]``) and fill each crop's ``n_point``, ``n_extended``,
    ``brightest_star`` and the data set's ``star_fwhm``, in place."""
    n = len(sources["r50"])
    point = np.zeros(n, bool)
    log_peak = np.log10(np.maximum(sources["peak"], 1.0))
    if n >= 8:
        centres, locus = stellar_locus(log_peak, sources["r50"])
        if len(centres):
            point = sources["r50"] <= POINT_FACTOR * np.interp(log_peak, centres, locus)
    for index in range(len(crops)):  # a crop with enough sources has its own locus (its own seeing)
        mine = sources["crop"] == index
        if mine.sum() >= CROP_LOCUS_MIN:
            centres, locus = stellar_locus(log_peak[mine], sources["r50"][mine], minimum=5)
            if len(centres) >= 2:
                point[mine] = sources["r50"][mine] <= POINT_FACTOR * np.interp(log_peak[mine], centres, locus)
    point |= sources["saturated"].astype(bool)
    sources["point"] = point
    clean = (
        point
        & ~sources["saturated"].astype(bool)
        & (sources["peak"] >= FWHM_PEAKS[0])
        & (sources["peak"] <= FWHM_PEAKS[1])
    )
    fwhm = float(2 * np.median(sources["r50"][clean])) if clean.sum() >= 5 else float("nan")
    for index, crop in enumerate(crops):
        mine = sources["crop"] == index
        crop["n_point"] = int((point & mine).sum())
        crop["n_extended"] = int((~point & mine).sum())
        stars = sources["log_flux"][point & mine]
        crop["brightest_star"] = float(stars.max()) if len(stars) else 0.0
        crop["star_fwhm"] = fwhm


def measure_set(images) -> tuple[list[dict], dict]:
    """Measure every image of an iterable of (H, W, 3) uint8 arrays: ``(crop statistics, pooled sources)``."""
    crops, pooled = [], {k: [] for k in SOURCE_FIELDS}
    for index, rgb in enumerate(images):
        stats, sources = measure_crop(rgb, index)
        crops.append(stats)
        for key in SOURCE_FIELDS:
            pooled[key].append(sources[key])
    sources = {k: np.concatenate(v) if v else np.zeros(0) for k, v in pooled.items()}
    classify_points(crops, sources)
    return crops, sources


def summary(crops: list[dict], sources: dict) -> dict:
    """The comparison table's figures for one data set: per-crop medians, and pooled source figures."""

    def median(key):
        values = np.asarray([c[key] for c in crops], float)
        values = values[np.isfinite(values)]
        return float(np.median(values)) if len(values) else float("nan")

    def quantile(values, q):
        values = np.asarray(values, float)
        values = values[np.isfinite(values)]
        return float(np.percentile(values, q)) if len(values) else float("nan")

    point, saturated = sources["point"], sources["saturated"].astype(bool)
    out = {key: median(key) for key in CROP_STATS}
    out.update(
        {
            "n_crops": len(crops),
            "point_share": float(point.mean()) if len(point) else float("nan"),
            "flux_p10": quantile(sources["log_flux"], 10),
            "flux_p50": quantile(sources["log_flux"], 50),
            "flux_p90": quantile(sources["log_flux"], 90),
            "star_colour": quantile(sources["colour"][point & ~saturated], 50),
            "star_colour_spread": quantile(sources["colour"][point & ~saturated], 84)
            - quantile(sources["colour"][point & ~saturated], 16),
            "galaxy_colour": quantile(sources["colour"][~point], 50),
            "saturated_per_crop": float(saturated.sum() / max(len(crops), 1)),
            "spikes": quantile(sources["spikes"][saturated], 50),
            "bleed": quantile(sources["bleed"][saturated], 50),
        }
    )
    return out
