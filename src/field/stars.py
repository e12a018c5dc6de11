"""Star/galaxy separation: each frame's point-spread function measured from its own stars, and a stellarity for
every source.  Survey pipelines separate stars from galaxies before they do morphology (SDSS: psf - model
magnitude; SExtractor: CLASS_STAR, SPREAD_MODEL); a model trained on GZ2 cutouts, which are centred on
spectroscopic galaxies, never learns what a field star looks like once the stamp rule has zoomed it up.

The measurements (:func:`measure_shapes`, run by ``src.field.detect`` on each detection chunk's
background-subtracted image):

* ``r50``: the half-flux radius (px; ``sep.flux_radius`` within twice the isophotal radius, other sources' pixels
  masked);
* ``fwhm``: the isophotal FWHM (px): ``2 sqrt(N / pi)`` with ``N`` the source's pixels at or above half its peak
  (SExtractor's FWHM_IMAGE);
* ``nsat``: the source's saturated pixels (the frame's saturation mask: a JPEG / PNG channel at 250 or more, a
  FITS band at its ``SATURATE`` level);
* ``spikes``: the contrast of diffraction spikes.  The source's surroundings are sampled on an annulus outside
  its core, in 2 degree steps; the median over radius at each angle gives an angular profile.  A spike pattern is
  four bright arms 90 degrees apart at any orientation: ``spikes`` is the largest, over orientations, of the
  faintest of the four arms, above the profile's median, in units of the profile's noise.  An elongated galaxy has
  two bright and two faint arms, so its ``spikes`` stays near 0; a neighbour adds one arm only.

The decision (:func:`separate`), frame by frame:

1. **The stellar sequence** (:func:`stellar_sequence`).  Stars share one profile, so in the linear part of the
   image's stretch (unsaturated, peak at most ``linear_peak``, signal-to-noise ``LOCUS_MIN_SNR`` or more) their
   FWHM is the same at every brightness, as on SExtractor's FWHM-magnitude diagram.  The ridge (mode of the smaller
   half) of log10 ``fwhm`` in the faintest flux bins of 0.2 dex gives the **PSF FWHM** and its scatter ``sigma``.
   It is a stellar sequence only if ``LOCUS_MIN_STARS`` sources lie within 0.1 dex of it and they are as
   concentrated as stars (median FWHM / (2 ``r50``) at least ``SEQUENCE_MIN_CONCENTRATION``); otherwise the frame
   has no measurable PSF (a deep field of galaxies, a frame with no stars) and the PSF FWHM is NaN.
2. **Stellarity** of the sources in the linear part: ``1 / (1 + exp((d - 3 sigma) / sigma))`` with ``d`` the
   excess of log10 ``fwhm`` over the PSF's: 0.5 at 3 sigma above it.
3. **Bright sources** (saturated, or flattened by the stretch) cannot be judged by their FWHM.  In a
   **star-dominated** frame (the sequence is flat over its bins, rising at most ``SEQUENCE_MAX_SLOPE`` dex per dex,
   or holds too few bins to show a slope, as in a cutout; and most linear-part sources are on it, as at low
   galactic latitude), the bright end of the size-flux locus is
   made of stars: the ridge of log10 ``r50`` against log10 flux (:func:`fit_bright_locus`) continues it, and the
   stellarity of a bright source is the same logistic of its ``r50`` excess over that ridge.  Elsewhere (a deep
   field, where the bright ridge is made of compact galaxies) bright sources get NaN stellarity.
4. **Point source** (catalogued as class A, "star or artifact", as in GZ2): stellarity >= ``POINT_SOURCE_MIN``, or
   a spike contrast of ``SPIKE_MIN`` or more (a saturated star with diffraction spikes, in any frame).

These rules were set on the real SDSS and HST frames of ``../shared/real/fields`` and on GalSim frames
(``tests/field/test_stars.py``); ``bench/real_frames.py`` measures their outcome.  A single cutout holds few stars: its
PSF is measured when it holds ``LOCUS_MIN_STARS`` unsaturated ones, and its bright central star is a point source
only through its spikes or a star-dominated locus.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from src.cli import check_choice

#: Saturation of 8-bit images: a channel value at or above this.
RGB_SATURATION = 250
#: Spike contrast (in units of the angular profile's noise) from which a source is a star with diffraction spikes.
SPIKE_MIN = 8.0
#: Sources brighter than this many times the noise (peak) are measured for spikes.
SPIKE_MIN_PEAK = 20.0
#: Sources used to trace the locus: peak at least this many times the noise, no saturated pixel.
LOCUS_MIN_SNR = 10.0
#: A flux bin traces the locus if it holds at least this many sources.
LOCUS_MIN_COUNT = 8
#: Fewer sources than this within 2 sigma of the locus: the frame has no usable stellar locus.
LOCUS_MIN_STARS = 10
#: A flux bin traces the stellar sequence if it holds at least this many sources.
SEQUENCE_MIN_COUNT = 5
#: Width of the flux bins, dex.
LOCUS_BIN_DEX = 0.2
#: Smallest scatter of the locus, dex (pixelisation).
LOCUS_MIN_SIGMA = 0.02
#: 8-bit images (JPEG / PNG): sources whose peak above the background is at most this are in the near-linear part
#: of the stretch (half the 8-bit range; brighter ones are flattened by the asinh stretch and the 255 clip).
RGB_LINEAR_PEAK = 127.5
#: The stellar sequence is traced over this many flux bins (the faintest well-populated ones) ...
SEQUENCE_BINS = 4
#: ... and is flat (made of stars) if its FWHM rises by at most this much (dex per dex of flux) over them.
SEQUENCE_MAX_SLOPE = 0.12
#: ... and is made of stars if their median FWHM / (2 r50) reaches this (Moffat stars about 0.82, real SDSS stars
#: 0.87; exponential discs and deep-field galaxies 0.71-0.74, measured with tests/field/test_stars.py's frames and the
#: real frames of ../shared/real/fields).
SEQUENCE_MIN_CONCENTRATION = 0.78
#: A frame is star-dominated when at least this share of its unsaturated sources are point-like.
STAR_DOMINATED = 0.5
#: Size excess, in units of the locus scatter, at which stellarity is 0.5.
STELLARITY_SIGMAS = 3.0
#: Stellarity from which a source is a point source.
POINT_SOURCE_MIN = 0.5


# ------------------------------------------------------------------------------------------ measurements
def measure_shapes(
    table: np.ndarray, residual: np.ndarray, segmap: np.ndarray, rms: float, saturated: np.ndarray | None = None
) -> None:
    """Fill ``r50``, ``fwhm``, ``nsat`` and ``spikes`` of a detection ``table`` (``src.field.detect``'s) in place.

    Parameters
    ----------
    table : structured array
        sep's sources of ``residual`` (``x``, ``y``, ``npix``, ``peak``, ``flux`` in px and image units).
    residual : (h, w) float32
        The background-subtracted detection image.
    segmap : (h, w) int
        sep's segmentation map of ``table`` (``k`` = row ``k - 1``).
    rms : float
        The background rms (image units).
    saturated : (h, w) bool, optional
        Saturated pixels; None: unknown (``nsat`` 0).
    """
    import sep

    n = len(table)
    if n == 0:
        return
    ids = np.arange(1, n + 1, dtype=np.int32)
    radius = np.sqrt(np.maximum(table["npix"], 1) / np.pi)
    r50, _flag = sep.flux_radius(
        residual,
        table["x"],
        table["y"],
        2.0 * radius + 2.0,
        0.5,
        seg_id=ids,
        segmap=segmap.astype(np.int32, copy=False),
        subpix=5,
    )
    table["r50"] = r50
    inside = segmap > 0
    labels = segmap[inside]
    half = residual[inside] >= 0.5 * table["peak"][labels - 1]
    table["fwhm"] = 2.0 * np.sqrt(np.bincount(labels[half], minlength=n + 1)[1:] / np.pi)
    if saturated is not None:
        table["nsat"] = np.bincount(segmap[inside & saturated], minlength=n + 1)[1:]
    bright = np.flatnonzero(table["peak"] >= SPIKE_MIN_PEAK * rms)
    for k in bright:
        core = max(2.0 * r50[k], np.sqrt(table["nsat"][k] / np.pi) + 2.0, 3.0)
        table["spikes"][k] = spike_contrast(
            residual, table["x"][k], table["y"][k], core, core + max(8.0, 2.0 * core), rms
        )


def spike_contrast(
    image: np.ndarray, x: float, y: float, r_in: float, r_out: float, rms: float, step_deg: float = 2.0
) -> float:
    """Diffraction-spike contrast of the source at (``x``, ``y``) px (see the module docstring): the faintest of
    four arms 90 degrees apart, at the best orientation, above the median of the angular profile sampled between
    ``r_in`` and ``r_out`` px, in units of the profile's noise (``rms`` per pixel).  0 when the annulus leaves
    the image."""
    from scipy.ndimage import map_coordinates, maximum_filter1d

    height, width = image.shape
    if x - r_out < 0 or y - r_out < 0 or x + r_out > width - 1 or y + r_out > height - 1:
        return 0.0
    n_angles = int(round(360.0 / step_deg)) // 4 * 4
    angles = np.arange(n_angles) * (2.0 * np.pi / n_angles)
    radii = np.arange(r_in, r_out, 1.0)
    if radii.size < 3:
        return 0.0
    rows = y + radii[:, None] * np.sin(angles)
    cols = x + radii[:, None] * np.cos(angles)
    samples = map_coordinates(image, [rows, cols], order=1, mode="nearest")
    profile = np.median(samples, axis=0)
    arms = maximum_filter1d(profile, 3, mode="wrap").reshape(4, n_angles // 4)
    strongest = arms.min(axis=0).max()
    noise = 1.2533 * rms / np.sqrt(radii.size)  # the standard error of a median of radii.size pixels
    return float(max(strongest - np.median(profile), 0.0) / noise)


def rgb_saturation(rgb: np.ndarray) -> np.ndarray:
    """Saturated pixels of an 8-bit RGB image (h, w, 3): any channel at or above :data:`RGB_SATURATION`."""
    rgb = np.asarray(rgb)
    brightest = np.maximum.reduce([rgb[..., c] for c in range(rgb.shape[-1])])  # a max over axis -1 is 15x slower
    return brightest >= RGB_SATURATION


# ------------------------------------------------------------------------------------------ decision
@dataclass
class StarGalaxy:
    """The star/galaxy decision of one frame's sources (arrays: one value per row of the detection table).

    ``psf_fwhm``: the frame's PSF FWHM (px; NaN when it has no stellar sequence); ``n_psf_stars``: the stars it was
    measured on; ``sigma``: the scatter of their log10 FWHM (dex); ``star_dominated``: stars are most of the
    frame's unsaturated sources, so its bright-end locus is stellar too; ``locus``: (log10 flux, log10 r50) points
    of that bright-end locus (empty when not traced); ``stellarity`` (0-1, NaN where neither locus judges the
    source), ``point_source``, ``saturated``, ``spiky``.
    """

    psf_fwhm: float
    n_psf_stars: int
    sigma: float
    star_dominated: bool
    locus: np.ndarray = field(repr=False)
    stellarity: np.ndarray = field(repr=False)
    point_source: np.ndarray = field(repr=False)
    saturated: np.ndarray = field(repr=False)
    spiky: np.ndarray = field(repr=False)

    def summary(self) -> dict:
        """What a frame's record keeps: PSF FWHM (px), the stars it came from, and the decision's counts."""
        return {
            "psf_fwhm_px": None if not np.isfinite(self.psf_fwhm) else round(float(self.psf_fwhm), 3),
            "psf_stars": int(self.n_psf_stars),
            "psf_sigma_dex": round(float(self.sigma), 4),
            "star_dominated": bool(self.star_dominated),
            "point_sources_detected": int(self.point_source.sum()),
            "spiky": int(self.spiky.sum()),
            "saturated": int(self.saturated.sum()),
        }


def _ridge(values: np.ndarray, width: float = 0.02) -> float:
    """The mode of the smaller half of ``values`` (a histogram of bins ``width`` wide, smoothed over three)."""
    low = np.sort(values)[: max(3, (values.size + 1) // 2)]
    edges = np.arange(low[0] - width, low[-1] + 2 * width, width)
    counts = np.convolve(np.histogram(low, edges)[0], np.ones(3), mode="same")
    peak = int(np.argmax(counts))
    near = low[np.abs(low - 0.5 * (edges[peak] + edges[peak + 1])) <= 1.5 * width]
    return float(np.median(near))


def _logistic(excess: np.ndarray, sigma: float) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp((excess - STELLARITY_SIGMAS * sigma) / sigma))


def fit_bright_locus(table: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, float]:
    """The locus of log10 ``r50`` against log10 ``flux`` of the sources ``use``: ``((m, 2) points, scatter dex)``,
    the ridge of each 0.2 dex flux bin holding at least ``LOCUS_MIN_COUNT`` sources (a tenth of the sources, at
    least 3, when there are fewer than 80: a cutout; 3 once the locus has started), made non-decreasing with flux (a
    brighter star is never smaller in a stretched image)."""
    lf, lr = np.log10(table["flux"][use]), np.log10(table["r50"][use])
    first = min(LOCUS_MIN_COUNT, max(3, lf.size // 10))  # a cutout's few sources: 3 to 8 per bin
    if lf.size < first:
        return np.zeros((0, 2)), LOCUS_MIN_SIGMA
    points, spreads = [], []
    for lo in np.arange(lf.min(), lf.max() + LOCUS_BIN_DEX, LOCUS_BIN_DEX):
        inside = (lf >= lo) & (lf < lo + LOCUS_BIN_DEX)
        if inside.sum() < (3 if points else first):
            continue
        ridge = _ridge(lr[inside])
        points.append((float(np.median(lf[inside])), ridge))
        near = lr[inside][np.abs(lr[inside] - ridge) <= 0.1]
        if near.size >= 3:
            spreads.append(1.4826 * np.median(np.abs(near - ridge)))
    if not points:
        return np.zeros((0, 2)), LOCUS_MIN_SIGMA
    locus = np.array(points)
    locus[:, 1] = np.maximum.accumulate(locus[:, 1])
    return locus, max(float(np.median(spreads)) if spreads else LOCUS_MIN_SIGMA, LOCUS_MIN_SIGMA)


def stellar_sequence(
    flux: np.ndarray, log_fwhm: np.ndarray, concentration: np.ndarray
) -> tuple[float, float, bool | None] | None:
    """The stellar sequence of unsaturated sources in the linear part of the stretch: ``(log10 PSF FWHM, scatter
    dex, flat)``, or None when too few sources lie on it or they are not concentrated like stars (the median of
    their ``concentration`` = FWHM / (2 r50) is under ``SEQUENCE_MIN_CONCENTRATION``: a ridge of galaxies, as in
    a frame with no stars or a deep field).  The PSF FWHM is the ridge of the faintest ``SEQUENCE_BINS`` flux bins
    holding ``SEQUENCE_MIN_COUNT`` sources or more (after the faintest, whose half-maximum areas the noise shrinks);
    ``flat``: the ridge rises by at most ``SEQUENCE_MAX_SLOPE`` dex per dex of flux over them (stars keep one FWHM
    at every brightness; a sequence that grows is made of barely resolved galaxies); None when fewer than three
    bins are populated (a cutout), so that the slope cannot be seen."""
    if flux.size < LOCUS_MIN_STARS:
        return None
    lf = np.log10(flux)
    centres, ridges = [], []
    for lo in np.arange(lf.min(), lf.max() + LOCUS_BIN_DEX, LOCUS_BIN_DEX):
        inside = (lf >= lo) & (lf < lo + LOCUS_BIN_DEX)
        if inside.sum() >= SEQUENCE_MIN_COUNT:
            centres.append(float(np.median(lf[inside])))
            ridges.append(_ridge(log_fwhm[inside]))
        if len(ridges) == SEQUENCE_BINS + 1:
            break
    if len(ridges) > 3:  # the faintest bin's half-maximum areas are shrunk by the noise
        centres, ridges = centres[1:], ridges[1:]
    if not ridges:  # a small image (a cutout): one ridge over all its sources
        centres, ridges = [float(np.median(lf))], [_ridge(log_fwhm)]
    log_psf = float(np.median(ridges))
    near = np.abs(log_fwhm - log_psf) <= 0.1
    if near.sum() < LOCUS_MIN_STARS or np.median(concentration[near]) < SEQUENCE_MIN_CONCENTRATION:
        return None
    sigma = max(LOCUS_MIN_SIGMA, 1.4826 * float(np.median(np.abs(log_fwhm[near] - log_psf))))
    if len(ridges) < 3:  # too few bins to see a slope (a cutout): flatness unknown
        return log_psf, sigma, None
    return log_psf, sigma, bool(np.polyfit(centres, ridges, 1)[0] <= SEQUENCE_MAX_SLOPE)


def separate(table: np.ndarray, rms=None, linear_peak: float = np.inf) -> StarGalaxy:
    """The star/galaxy decision for every source of a detection ``table`` (see the module docstring).

    ``rms``: the background rms of each source, image units (default: the table's ``rms`` column);
    ``linear_peak``: the highest peak (image units above the background) in the linear part of the image's stretch
    (:data:`RGB_LINEAR_PEAK` for 8-bit images; linear FITS bands: no limit but saturation).
    """
    n = len(table)
    rms = np.broadcast_to(np.asarray(table["rms"] if rms is None else rms, float), (n,))
    stellarity = np.full(n, np.nan)
    psf_fwhm, n_stars, sigma, dominated, locus = np.nan, 0, LOCUS_MIN_SIGMA, False, np.zeros((0, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = table["peak"] / rms
        log_fwhm = np.log10(table["fwhm"])
    linear = (table["nsat"] == 0) & (snr >= LOCUS_MIN_SNR) & (table["fwhm"] > 0) & (table["peak"] <= linear_peak)
    concentration = table["fwhm"] / (2.0 * np.maximum(table["r50"], 1e-6))
    sequence = stellar_sequence(table["flux"][linear], log_fwhm[linear], concentration[linear])
    if sequence is not None:
        log_psf, sigma, flat = sequence
        stars = linear & (np.abs(log_fwhm - log_psf) <= 2 * sigma)
        psf_fwhm, n_stars = float(10**log_psf), int(stars.sum())
        stellarity[linear] = _logistic(log_fwhm[linear] - log_psf, sigma)
        dominated = flat is not False and bool(np.mean(stellarity[linear] >= POINT_SOURCE_MIN) >= STAR_DOMINATED)
    if dominated:
        locus, locus_sigma = fit_bright_locus(table, (snr >= LOCUS_MIN_SNR) & (table["r50"] > 0))
        bright = np.isnan(stellarity) & (table["r50"] > 0) & (table["flux"] > 0)
        if len(locus) and bright.any():
            lf = np.log10(table["flux"][bright])
            expected = np.interp(lf, locus[:, 0], locus[:, 1])
            if len(locus) >= 2:  # beyond the last bin: the slope of the last two
                slope = (locus[-1, 1] - locus[-2, 1]) / max(locus[-1, 0] - locus[-2, 0], 1e-6)
                expected = np.where(lf > locus[-1, 0], locus[-1, 1] + slope * (lf - locus[-1, 0]), expected)
            stellarity[bright] = _logistic(np.log10(table["r50"][bright]) - expected, locus_sigma)
    spiky = table["spikes"] >= SPIKE_MIN
    with np.errstate(invalid="ignore"):
        point = (stellarity >= POINT_SOURCE_MIN) | spiky
    return StarGalaxy(psf_fwhm, n_stars, sigma, dominated, locus, stellarity, point, table["nsat"] > 0, spiky)


# ------------------------------------------------------------------------------------------ catalog
#: What ``predict.py --stars`` does with a point source: catalogue it as class A ("artifact": star or artifact, as
#: in GZ2), or keep the model's class.
STAR_RULES = ("artifact", "model")
#: Catalog columns of the decision (``model_class``: the model's class before the rule).
STAR_COLUMNS = ("model_class", "stellarity", "point_source", "saturated")
#: The counts of :func:`apply_star_rule` (records and reports keep them).
STAR_AGREEMENT = ("point_sources", "reclassified_as_artifact", "point_source_model_galaxy", "model_artifact_extended")


def sources_of_objects(object_map: np.ndarray, table: np.ndarray, origin: tuple[int, int] = (0, 0)) -> dict[int, int]:
    """``{object number: detection row}``: for each object of ``object_map`` (0 = none, k = object k; its pixel
    (0, 0) is frame pixel ``origin`` = (y0, x0)), the brightest detection whose centroid falls on it."""
    if len(table) == 0:
        return {}
    height, width = object_map.shape
    rows = np.floor(table["y"] + 0.5).astype(int) - origin[0]
    cols = np.floor(table["x"] + 0.5).astype(int) - origin[1]
    inside = np.flatnonzero((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width))
    owners = object_map[rows[inside], cols[inside]]
    best: dict[int, int] = {}
    for k, owner in zip(inside[owners > 0], owners[owners > 0]):
        if int(owner) not in best or table["flux"][k] > table["flux"][best[int(owner)]]:
            best[int(owner)] = int(k)
    return best


def apply_star_rule(rows: list[dict], sources: dict[int, int], decision: StarGalaxy, rule: str = "artifact") -> dict:
    """Add :data:`STAR_COLUMNS` to catalog ``rows`` (in place; row ``i`` is object ``i + 1``) from the decision of
    their sources (``sources_of_objects``; an object with no source gets NaN stellarity and no point source), and
    with ``rule`` "artifact" give point sources class A.

    The classical decision and the model's class disagree in two ways, both counted in the returned dict:
    ``point_source_model_galaxy`` (a point source the model gave a galaxy class: the classical decision wins, the
    frame's own PSF says it is unresolved, and a model trained on GZ2 cutouts has rarely seen a zoomed-up star) and
    ``model_artifact_extended`` (the model says A, the decision says resolved: the model's A stands, as trails,
    ghosts and diffraction debris are resolved yet not galaxies).  ``reclassified_as_artifact``: rows changed to A.
    """
    check_choice("star rule", rule, STAR_RULES)
    counts = {
        "point_sources": 0,
        "reclassified_as_artifact": 0,
        "point_source_model_galaxy": 0,
        "model_artifact_extended": 0,
    }
    for number, row in enumerate(rows, start=1):
        k = sources.get(number)
        value = np.nan if k is None else float(decision.stellarity[k])
        point = k is not None and bool(decision.point_source[k])
        row.update(
            model_class=row["class"],
            stellarity=None if not np.isfinite(value) else round(value, 4),
            point_source=point,
            saturated=k is not None and bool(decision.saturated[k]),
        )
        counts["point_sources"] += point
        counts["point_source_model_galaxy"] += point and row["class"] != "artifact"
        counts["model_artifact_extended"] += (
            row["class"] == "artifact" and np.isfinite(value) and value < POINT_SOURCE_MIN and not point
        )
        if point and rule == "artifact" and row["class"] != "artifact":
            row["class"] = "artifact"
            counts["reclassified_as_artifact"] += 1
    return {k: int(v) for k, v in counts.items()}


def separate_image(rgb: np.ndarray, thresh: float = 3.0, valid: np.ndarray | None = None):
    """sep and the star/galaxy decision on one RGB image held in memory (a cutout): ``(detections table,
    StarGalaxy)``."""
    from src.field.detect import detect_array, detection_image

    table, _seg, rms = detect_array(
        detection_image(rgb), thresh, valid, segmentation=False, saturated=rgb_saturation(rgb)
    )
    table["rms"] = rms
    return table, separate(table, linear_peak=RGB_LINEAR_PEAK)
