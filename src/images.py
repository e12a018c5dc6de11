"""Image I/O and the one colour stretch of the project.

* :func:`lupton_rgb` turns g, r, i band images into the RGB composite the models see: astropy's
  ``make_lupton_rgb`` (Lupton et al. 2004 asinh stretch) with ``LUPTON_STRETCH`` and ``LUPTON_Q``.  The
  synthetic generator renders every cutout with it, and FITS frames given to ``predict.py`` go through it too.
* :func:`read_rgb` reads a JPEG / PNG (grey or RGB, any size) as an (H, W, 3) uint8 array;
  :func:`write_jpeg` / :func:`write_png` write one atomically.

Flux units of the stretch: the generator's, in which the r-band sky noise is about 1 (``SKY_SIGMA`` of
``src.synthetic.render`` gives the g, r, i ratios).  Bands in other units are first scaled to these.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from src.atomic import write_bytes_atomic

#: Lupton et al. (2004) asinh composite parameters, tuned to the real cutout pixel mean / std.
LUPTON_STRETCH = 16.0
LUPTON_Q = 7.0
#: The JPEG quality of the synthetic cutouts.
JPEG_QUALITY = 90


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


def write_png(path: str | os.PathLike, array: np.ndarray) -> int:
    """Write a uint8 / uint16 array (grey or RGB) as PNG atomically; returns the file size in bytes."""
    data = _encode(array, "PNG")
    write_bytes_atomic(path, data)
    return len(data)
