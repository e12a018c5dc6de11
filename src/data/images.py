"""Image I/O and the one colour stretch of the project.

* :func:`lupton_rgb` turns g, r, i band images into the RGB composite the models see: astropy's
  ``make_lupton_rgb`` (Lupton et al. 2004 asinh stretch) with ``LUPTON_STRETCH`` and ``LUPTON_Q``.  The
  synthetic generator renders every cutout with it, and FITS frames given to ``predict.py`` go through it too.
* :func:`read_rgb` reads a JPEG / PNG (grey or RGB, any size) as an (H, W, 3) uint8 array;
  :func:`write_jpeg` / :func:`write_png` write one atomically.
* FITS: :class:`FitsBands` opens a g, r, i frame (a 3-plane cube or three band files) memory-mapped, with its
  celestial WCS, and reads it whole or region by region; :func:`stretch_bands` applies the flux-scaling rule and
  the stretch to any region; :func:`read_fits_rgb` does both for a whole frame; :func:`write_fits` writes.

The flux-scaling rule for FITS bands: per band, the sky level and sky noise are measured (sigma-clipped median
and MAD standard deviation, :meth:`FitsBands.sky`); the band minus its sky level is multiplied by
``TRAINING_SKY_SIGMA[band] / measured noise`` (:func:`flux_scale_for`), so that its sky noise equals the training
set's.  Nanomaggies, counts or any other linear unit then give the image the models were trained on; a
``flux_scale`` given by the user replaces the measured factors (the sky level is still subtracted).

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
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides by the intensity, 0 on blank pixels
        return make_lupton_rgb(i, r, g, minimum=0.0, stretch=stretch, Q=q)


#: The largest JPEG / PNG frame ``predict.py --field`` decodes (1.07 Gpx, 3.2 GB of RGB in memory), above PIL's
#: decompression-bomb limit (179 Mpx), which it lifts deliberately for frames; the environment variable
#: ``GALAXY_MAX_FRAME_PIXELS`` raises or lowers it.  FITS frames are memory-mapped and have no such cap.
FRAME_MAX_PIXELS = 1 << 30


def frame_max_pixels() -> int:
    """:data:`FRAME_MAX_PIXELS`, or the environment's ``GALAXY_MAX_FRAME_PIXELS``."""
    value = os.environ.get("GALAXY_MAX_FRAME_PIXELS")
    if value is None:
        return FRAME_MAX_PIXELS
    try:
        pixels = int(value)
    except ValueError:
        pixels = 0
    if pixels < 1:
        raise ImageError(f"GALAXY_MAX_FRAME_PIXELS={value!r}: expected a positive number of pixels")
    return pixels


def read_rgb(path: str | os.PathLike, max_pixels: int | None = None, too_large: str = "") -> np.ndarray:
    """An 8-bit image file as (H, W, 3) uint8 RGB (grey and palette images are converted); ``ImageError`` when it
    cannot be decoded (truncated files included) or holds 16-bit or float pixels.

    ``max_pixels``: the largest image read, checked on the header before anything is decoded (``too_large`` is
    added to the message); PIL's decompression-bomb limit is lifted for it.  Default: PIL's limit (179 Mpx),
    a larger image is an ``ImageError`` too."""
    path = Path(path)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        if max_pixels is not None:
            Image.MAX_IMAGE_PIXELS = None  # our own check below; PIL's is global (restored in finally)
        with Image.open(path) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageError(f"{path}: {im.width}x{im.height} px is more than {max_pixels:,} px{too_large}")
            im.load()  # decode now: a truncated body fails here, not later
            if im.mode.startswith(("I", "F")):  # PIL's RGB conversion would clip or zero them, not scale them
                raise ImageError(
                    f"{path}: {im.mode} (16-bit integer or float) images are not supported: give 8-bit "
                    f"images, or the linear data as FITS"
                )
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{path}: {err.args[0] if err.args else err} (predict.py --field reads frames up to "
            f"GALAXY_MAX_FRAME_PIXELS = {frame_max_pixels():,} px)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise ImageError(f"{path}: unreadable image ({err})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


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


def fits_text(text: str) -> tuple[str, bool]:
    """``(value, encoded)``: ``text`` as a FITS header value, which must be ASCII: non-ASCII text is
    percent-encoded UTF-8 (``urllib.parse.quote``; ``urllib.parse.unquote`` gives it back) and ``encoded`` is
    true (the writer says so in a keyword beside it)."""
    from urllib.parse import quote

    if text.isascii() and text.isprintable():
        return text, False
    return quote(text.encode("utf-8", "surrogateescape"), safe="/:@!$&'()*+,;=-._~ "), True  # file names: any bytes


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


# ----------------------------------------------------------------------------------------------- FITS
#: File name endings read as FITS.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz", ".fz")
#: Header keywords that say a WCS is meant (a header without any of them simply has none).
WCS_KEYWORDS = ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CD1_1", "CD2_2", "PC1_1", "PC2_2", "CDELT1", "CDELT2")
#: Pixels used to measure the sky of one band (a regular grid of them on large frames).
SKY_SAMPLE = 1_000_000


def is_fits(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(FITS_SUFFIXES)


class FitsBands:
    """The g, r, i bands of one frame: a 3-plane cube or three single-band files, read lazily.

    Files stay open (memory-mapped where astropy can: uncompressed, not gzipped) until :meth:`close`, so a
    caller can read a 20k x 20k frame region by region with :meth:`read`.  Integer data are scaled with
    BSCALE / BZERO here and their BLANK pixels become NaN, as are non-finite pixels of float data.

    ``header``: the header of the cube or of the first band (the WCS source); ``wcs``: its celestial
    ``astropy.wcs.WCS`` (2-D), or None when the header has none or an unusable one (``wcs_problem`` then says
    what is wrong with it, naming the file).  ``shape``: (height, width) in px.
    Raises :class:`ImageError` naming the file: unreadable, no image HDU, wrong shape, bands of different shapes,
    bands whose WCS disagree by more than ``max_offset`` px at the frame centre (not aligned: reproject first).
    """

    def __init__(self, paths, max_offset: float = 1.0):
        self.paths = tuple(Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths))
        if len(self.paths) not in (1, 3):
            raise ImageError(f"{', '.join(map(str, self.paths))}: need one 3-plane cube or three band files")
        self._files, self._planes, self._notes = [], [], {}
        try:
            if len(self.paths) == 1:
                hdu = self._image_hdu(self.paths[0])
                shape = tuple(s for s in hdu.shape if s != 1) if len(hdu.shape) > 3 else hdu.shape
                if len(shape) != 3 or shape[0] != 3:
                    raise ImageError(
                        f"{self.paths[0]}: image HDU of shape {hdu.shape}: expected a 3-plane g, r, i "
                        f"cube (3, height, width), or give the bands as files X_g / X_r / X_i"
                    )
                lead = (0,) * (len(hdu.shape) - 3)
                self._planes = [(hdu, lead + (k,), self.paths[0]) for k in range(3)]
                self.headers = [hdu.header]
            else:
                hdus = [self._image_hdu(p) for p in self.paths]
                shapes = [tuple(s for s in h.shape if s != 1) for h in hdus]
                for path, s in zip(self.paths, shapes):
                    if len(s) != 2:
                        raise ImageError(f"{path}: image HDU of shape {s}: a band file must hold one 2-D image")
                if len(set(shapes)) > 1:
                    raise ImageError(
                        "bands of different shapes: "
                        + ", ".join(f"{p} {s[0]}x{s[1]}" for p, s in zip(self.paths, shapes))
                    )
                self._planes = [(h, (0,) * (len(h.shape) - 2), p) for h, p in zip(hdus, self.paths)]
                self.headers = [h.header for h in hdus]
            self.shape = tuple(int(s) for s in self._planes[0][0].shape[-2:])
            self.header = self.headers[0]
            self.wcs = self._check_wcs(max_offset)
        except BaseException:
            self.close()
            raise

    def _image_hdu(self, path: Path):
        import warnings

        from astropy.io import fits

        try:
            with warnings.catch_warnings(record=True) as caught:  # astropy would print them on stderr
                warnings.simplefilter("always")
                hdul = fits.open(path, memmap=True, do_not_scale_image_data=True)
                self._files.append(hdul)
                for hdu in hdul:  # reading the headers (lazily) may warn too
                    _ = hdu.header
            self._notes[path] = "; ".join(dict.fromkeys(str(w.message) for w in caught))  # said if the data fail
            for hdu in hdul:
                if hdu.is_image and hdu.header.get("NAXIS", 0) >= 2 and all(s > 0 for s in hdu.shape):
                    return hdu
        except FileNotFoundError:
            raise ImageError(f"{path}: file not found") from None
        except (OSError, ValueError, TypeError) as err:
            raise ImageError(f"{path}: unreadable FITS ({err})") from None
        kinds = ", ".join(f"{type(h).__name__}{tuple(h.shape) if h.is_image else ''}" for h in hdul)
        raise ImageError(f"{path}: no image HDU with data (HDUs: {kinds})")

    @staticmethod
    def _celestial(header, shape=(1, 1)):
        """``(celestial WCS or None, what is wrong with it or None)``: a header without WCS keywords has no problem,
        one whose WCS cannot be used says why (unreadable, axes not celestial, singular matrix, failing
        transformation)."""
        import warnings

        from astropy.wcs import WCS, FITSFixedWarning

        meant = any(k in header for k in WCS_KEYWORDS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            try:
                wcs = WCS(header)
            except Exception as err:  # noqa: BLE001 - astropy raises many types on broken headers
                return None, f"unreadable WCS ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if not (wcs.has_celestial and wcs.celestial.naxis == 2):
            axes = ", ".join(f"CTYPE{k} {header.get(f'CTYPE{k}', '')!r}" for k in (1, 2))
            return None, (f"{axes}: not a pair of celestial axes" if meant else None)
        celestial = wcs.celestial
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                det = float(np.linalg.det(celestial.pixel_scale_matrix))
                centre = ((shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0)
                back = celestial.world_to_pixel_values(*celestial.pixel_to_world_values(*centre))
                ok = bool(np.all(np.isfinite(back)) and np.allclose(back, centre, atol=1e-3))
            except Exception as err:  # noqa: BLE001 - e.g. astropy's SingularMatrixError
                return None, f"the pixel <-> sky transformation fails ({type(err).__name__}: {err})"
        if not (np.isfinite(det) and det != 0.0):
            return None, "singular CD / PC matrix (determinant 0): the pixel <-> sky transformation cannot be inverted"
        if not ok:
            return None, "the pixel <-> sky transformation does not invert at the frame centre"
        return celestial, None

    def _check_wcs(self, max_offset: float):
        found = [(p, *self._celestial(h, self.shape)) for p, h in zip(self.paths, self.headers)]
        systems = [(p, w) for p, w, _ in found if w is not None]
        self.wcs_problem = next((f"{p}: {problem}" for p, w, problem in found if problem is not None), None)
        if not systems:
            return None
        self.wcs_problem = None
        ref_path, ref = systems[0]
        centre = ((self.shape[1] - 1) / 2.0, (self.shape[0] - 1) / 2.0)
        sky = ref.pixel_to_world(*centre)
        for path, other in systems[1:]:
            x, y = other.world_to_pixel(sky)
            offset = float(np.hypot(x - centre[0], y - centre[1]))
            if not offset <= max_offset:
                raise ImageError(
                    f"{path}: its WCS puts the centre of {ref_path} {offset:.1f} px away: the bands are "
                    f"not aligned (reproject them onto one pixel grid first)"
                )
        return ref

    def read(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """(3, h, w) float32 of a region (``rows``, ``cols``: slices of the frame, steps allowed); NaN where a
        pixel is blank or not finite."""
        out = []
        for hdu, lead, path in self._planes:
            try:
                raw = np.asarray(hdu.section[lead + (rows, cols)])
            except (OSError, ValueError, TypeError) as err:  # e.g. a file cut short after a complete header
                note = self._notes.get(Path(path))
                raise ImageError(f"{path}: unreadable FITS data ({err}{'; ' + note if note else ''})") from None
            header = hdu.header
            data = raw.astype(np.float32)
            if raw.dtype.kind in "iu":
                if "BLANK" in header:
                    data[raw == header["BLANK"]] = np.nan
                scale, zero = header.get("BSCALE", 1.0), header.get("BZERO", 0.0)
                if scale != 1.0 or zero != 0.0:
                    data = data * np.float32(scale) + np.float32(zero)
            data[~np.isfinite(data)] = np.nan
            out.append(data)
        return np.stack(out)

    def sky(self, max_pixels: int = SKY_SAMPLE) -> tuple[np.ndarray, np.ndarray]:
        """Per band, the sky level and sky noise: sigma-clipped (3 sigma) median and MAD standard deviation
        (astropy ``sigma_clipped_stats``) of the finite pixels, on a regular grid of at most ``max_pixels`` of
        them.  ``ImageError`` when a band has no finite pixel or no measurable noise."""
        from astropy.stats import sigma_clipped_stats

        step = max(1, int(np.ceil(np.sqrt(self.shape[0] * self.shape[1] / max_pixels))))
        sample = self.read(slice(None, None, step), slice(None, None, step))
        levels, sigmas = np.zeros(3), np.zeros(3)
        for k, band in enumerate(sample):
            finite = band[np.isfinite(band)]
            if finite.size == 0:
                raise ImageError(f"{self._planes[k][2]}: band {BANDS[k]} has no finite pixel (all blank or NaN)")
            _mean, levels[k], sigmas[k] = sigma_clipped_stats(finite, sigma=3.0, stdfunc="mad_std")
        return levels, sigmas

    def scaling(self, flux_scale=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(sky level, sky sigma, flux scale)`` per band: the flux-scaling rule (:func:`flux_scale_for`) on the
        measured sky noise, or ``flux_scale`` (1 or 3 factors) when given."""
        level, sigma = self.sky()
        if flux_scale is not None:
            return level, sigma, np.broadcast_to(np.asarray(flux_scale, float), 3)
        if not np.all(sigma > 0):
            raise ImageError(
                f"{self.name}: no measurable sky noise in band(s) "
                f"{', '.join(BANDS[k] for k in range(3) if not sigma[k] > 0)} (constant sky): give the "
                f"flux scale (--flux-scale)"
            )
        return level, sigma, flux_scale_for(sigma)

    @property
    def name(self) -> str:
        return ", ".join(map(str, self.paths))

    def close(self) -> None:
        for hdul in self._files:
            hdul.close()
        self._files = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def flux_scale_for(sky_sigma: np.ndarray) -> np.ndarray:
    """The rule that brings bands in any unit to the training set's: multiply band k by
    ``TRAINING_SKY_SIGMA[k] / sky_sigma[k]`` (after subtracting its sky level)."""
    return TRAINING_SKY_SIGMA / np.asarray(sky_sigma, float)


def stretch_bands(bands: np.ndarray, level: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, h, w) bands -> ``(rgb (h, w, 3) uint8, valid (h, w) bool)``: ``(band - level) * scale`` per band, then
    :func:`lupton_rgb`.  A pixel blank (NaN) in any band is invalid and drawn as sky (0 after the subtraction), so
    it neither spreads into its neighbours nor stands out.  Works on any region of a frame with the frame's
    ``level`` and ``scale``: the stretch is per pixel."""
    valid = np.isfinite(bands).all(axis=0)
    scaled = (bands - np.asarray(level, np.float32)[:, None, None]) * np.asarray(scale, np.float32)[:, None, None]
    scaled[:, ~valid] = 0.0
    return lupton_rgb(scaled), valid


def read_fits_rgb(paths, flux_scale=None, max_pixels: int | None = None) -> dict:
    """A whole FITS frame (a cube or three band files) as the RGB composite the models see.

    Returns ``{"rgb", "valid", "header", "wcs", "sky_level", "sky_sigma", "flux_scale"}``; ``flux_scale`` (3
    factors, or None for the measured rule of :func:`flux_scale_for`) multiplies the sky-subtracted bands.
    ``max_pixels``: ``ImageError`` for a larger frame, before its pixels are read.
    """
    with FitsBands(paths) as frame:
        if max_pixels is not None and frame.shape[0] * frame.shape[1] > max_pixels:
            raise ImageError(
                f"{frame.name}: {frame.shape[1]}x{frame.shape[0]} px is more than {max_pixels:,} px "
                f"for one pass of the model; predict.py --field processes frames of any size"
            )
        level, sigma, scale = frame.scaling(flux_scale)
        rgb, valid = stretch_bands(frame.read(), level, scale)
        return {
            "rgb": rgb,
            "valid": valid,
            "header": frame.header.copy(),
            "wcs": frame.wcs,
            "wcs_problem": frame.wcs_problem,
            "sky_level": level.tolist(),
            "sky_sigma": sigma.tolist(),
            "flux_scale": np.asarray(scale).tolist(),
        }
