"""Image I/O and the one colour stretch of the project.

* :func:`lupton_rgb` turns g, r, i band images into the RGB composite the models see: astropy's
  ``make_lupton_rgb`` (Lupton et al. 2004 asinh stretch) with ``LUPTON_STRETCH`` and ``LUPTON_Q``.  The
  synthetic generator renders every cutout with it, and FITS frames given to ``predict.py`` go through it too.
* :func:`read_rgb` reads a JPEG / PNG (grey or RGB, any size) as an (H, W, 3) uint8 array;
  :func:`write_jpeg` / :func:`write_png` write one atomically.

Flux units of the stretch: the generator's, in which the sky noise of the g, r, i bands is
``TRAINING_SKY_SIGMA`` (the r band's is 1).  Bands in other units are first scaled to these.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from src.atomic import atomic_path, write_bytes_atomic

#: Lupton et al. (2004) asinh composite parameters, tuned to the real cutout pixel mean / std.
LUPTON_STRETCH = 16.0
LUPTON_Q = 7.0
#: The JPEG quality of the synthetic cutouts.
JPEG_QUALITY = 90
#: The training set's sky noise: the standard deviation of the sky in the g, r, i bands of the synthetic cutouts
#: (generator flux units, before the stretch; each cutout draws its own within +-15 % of these).  FITS bands in
#: any unit are scaled so that their measured sky noise equals these values before :func:`lupton_rgb`.
TRAINING_SKY_SIGMA = np.array([0.80, 1.0, 1.30])
#: Band names of the three planes, blue to red (i -> R, r -> G, g -> B in the composite).
BANDS = ("g", "r", "i")
#: SDSS pixel scale, arcsec per pixel.
SDSS_PIXEL_SCALE = 0.396


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file."""


def lupton_rgb(bands: np.ndarray, stretch: float = LUPTON_STRETCH, q: float = LUPTON_Q) -> np.ndarray:
    """(3, H, W) g, r, i -> (H, W, 3) uint8 Lupton composite (i -> R, r -> G, g -> B)."""
    from astropy.visualization import make_lupton_rgb

    g, r, i = bands
    with np.errstate(invalid="ignore", divide="ignore"):   # astropy divides by the intensity, 0 on blank pixels
        return make_lupton_rgb(i, r, g, minimum=0.0, stretch=stretch, Q=q)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (grey and palette images are converted); ``ImageError`` when it
    cannot be decoded, truncated files included."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()   # decode now: a truncated body fails here, not later
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{path}: unreadable image ({err})") from None


def _encode(rgb: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb)).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write_jpeg(path: str | os.PathLike, rgb: np.ndarray, quality: int = JPEG_QUALITY) -> int:
    """Write an (H, W, 3) uint8 array as JPEG atomically; returns the file size in bytes."""
    data = _encode(rgb, "JPEG", quality=quality)
    write_bytes_atomic(path, data)
    return len(data)


def tan_header(ra: float, dec: float, shape: tuple[int, int], pixel_scale: float = SDSS_PIXEL_SCALE):
    """A FITS header with a gnomonic (TAN) WCS: pixel scale ``pixel_scale`` arcsec/px, north up and east left in
    the usual FITS display (CD1_1 < 0, CD2_2 > 0), and (``ra``, ``dec``) in degrees at the centre of an image of
    ``shape`` (height, width) px, i.e. at FITS pixel ((width + 1) / 2, (height + 1) / 2)."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [float(ra), float(dec)]
    wcs.wcs.crpix = [(shape[1] + 1) / 2.0, (shape[0] + 1) / 2.0]
    scale = pixel_scale / 3600.0
    wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    wcs.wcs.radesys = "ICRS"
    return wcs.to_header()


def write_fits(path: str | os.PathLike, data: np.ndarray, header=None) -> Path:
    """Write one image (primary HDU) atomically."""
    from astropy.io import fits

    with atomic_path(path, keep_suffix=True) as tmp:
        fits.PrimaryHDU(data=np.asarray(data), header=header).writeto(tmp, overwrite=True)
    return Path(path)


def write_png(path: str | os.PathLike, array: np.ndarray) -> int:
    """Write a uint8 / uint16 array (grey or RGB) as PNG atomically; returns the file size in bytes."""
    data = _encode(array, "PNG")
    write_bytes_atomic(path, data)
    return len(data)
