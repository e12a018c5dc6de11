"""A frame read region by region: the RGB the models see, the detection image sep runs on, and the valid pixels.

:class:`RgbFrame` wraps a decoded JPEG / PNG.  Frames too large for memory are FITS files read through astropy's
memory mapping (``src.data.images.FitsBands``): :class:`FitsFrame` stretches each region when it is asked for (the
Lupton stretch is per pixel, so a region stretched alone equals the same region of the stretched frame).
"""

from __future__ import annotations

import numpy as np

from src.field.detect import BAND_THRESH, RGB_THRESH, detection_image
from src.field.stars import RGB_LINEAR_PEAK


class RgbFrame:
    """An (H, W, 3) uint8 RGB image held in memory.  ``name``: for messages; ``wcs``: None (no sky coordinates)."""

    detect_thresh = RGB_THRESH
    #: Peaks above this (detection image units) are flattened by the stretch (``src.field.stars``).
    linear_peak = RGB_LINEAR_PEAK

    def __init__(self, rgb: np.ndarray, name: str = "frame", wcs=None, header=None):
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        self.array, self.name, self.wcs, self.header = rgb, name, wcs, header
        self.shape = rgb.shape[:2]

    def region(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray | None]:
        """``(rgb (h, w, 3) uint8, valid (h, w) bool or None when every pixel is)`` of a region."""
        return self.array[rows, cols], None

    def detection(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray | None]:
        return detection_image(self.array[rows, cols]), None

    def saturation(self, rows: slice, cols: slice) -> np.ndarray:
        """Saturated pixels of a region: a channel at ``src.field.stars.RGB_SATURATION`` or more."""
        from src.field.stars import rgb_saturation

        return rgb_saturation(self.array[rows, cols])

    def info(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class BandFrame:
    """g, r, i bands (3, H, W) in any linear unit, read region by region through ``read(rows, cols)`` (e.g.
    ``src.data.images.FitsBands.read``), brought to the training set's units with the sky ``level`` and ``scale`` of
    ``src.data.images`` (subtract, multiply, per band) and stretched with ``src.data.images.stretch_bands``.  Blank
    (NaN)
    pixels are invalid: drawn as sky and masked from detection."""

    detect_thresh = BAND_THRESH

    def __init__(
        self,
        read,
        shape: tuple[int, int],
        level,
        scale,
        name: str = "frame",
        wcs=None,
        header=None,
        close=None,
        info: dict | None = None,
        band_headers=None,
    ):
        self._read, self.shape, self.name, self.wcs, self.header = read, tuple(shape), name, wcs, header
        self.level = np.asarray(level, np.float32)
        self.scale = np.asarray(scale, np.float32)
        self._close, self._info = close, dict(info or {})
        self.band_headers = list(band_headers) if band_headers is not None else [header] * 3

    def _scaled(self, rows, cols) -> np.ndarray:
        bands = self._read(rows, cols)
        return (bands - self.level[:, None, None]) * self.scale[:, None, None]

    def region(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray | None]:
        """``(rgb (h, w, 3) uint8, valid (h, w) bool)`` of a region."""
        from src.data.images import stretch_bands

        return stretch_bands(self._read(rows, cols), self.level, self.scale)

    def detection(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray | None]:
        from src.data.images import TRAINING_SKY_SIGMA

        scaled = self._scaled(rows, cols)
        valid = np.isfinite(scaled).all(axis=0)
        return detection_image(scaled, TRAINING_SKY_SIGMA), valid

    def saturation(self, rows: slice, cols: slice) -> np.ndarray | None:
        """Saturated pixels of a region: any band at or above its header's ``SATURATE`` level (None when no band
        states one)."""
        levels = [h.get("SATURATE") if h is not None else None for h in self.band_headers]
        if all(level is None for level in levels):
            return None
        bands = self._read(rows, cols)
        out = np.zeros(bands.shape[1:], dtype=bool)
        for band, level in zip(bands, levels):
            if level is not None:
                out |= band >= float(level)
        return out

    def info(self) -> dict:
        return dict(self._info)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def open_frame(source, flux_scale=None):
    """The reader of a ``src.data.sources.Source``: FITS bands memory-mapped and stretched region by region
    (:class:`BandFrame`, with the frame's sky level and the flux-scaling rule of ``src.data.images``), any other image
    decoded whole (:class:`RgbFrame`).  ``ImageError`` names the file when it cannot be used."""
    from src.data.images import FitsBands, frame_max_pixels, read_rgb

    if not source.is_fits:
        return RgbFrame(
            read_rgb(source.paths[0], frame_max_pixels(), " (GALAXY_MAX_FRAME_PIXELS raises the cap)"),
            name=source.source,
        )
    bands = FitsBands(source.paths)
    try:
        level, sigma, scale = bands.scaling(flux_scale)
    except BaseException:
        bands.close()
        raise
    info = {"sky_level": level.tolist(), "sky_sigma": sigma.tolist(), "flux_scale": np.asarray(scale).tolist()}
    if bands.wcs_problem:
        info["wcs_problem"] = bands.wcs_problem
    return BandFrame(
        bands.read,
        bands.shape,
        level,
        scale,
        name=bands.name,
        wcs=bands.wcs,
        header=bands.header,
        close=bands.close,
        info=info,
        band_headers=bands.headers if len(bands.headers) == 3 else None,
    )
