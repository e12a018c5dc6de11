"""Synthetic Galaxy Zoo 2: the embedded default data set, in the exact real on-disk formats.

``python -m src.synthetic --out DIR --n N`` (or :func:`generate`) writes what ``python -m src.download``
would fetch: ``DIR/gz2_hart16.csv`` (Hart et al. 2016 columns), ``DIR/original/zoo2Main/Dr7_<objid>.jpg``
(SDSS-like gri Lupton composites) and ``DIR/original/{train,val}/via_region_data.json`` (VIA 2, one polygon
per cutout).  ``--field`` (:func:`generate_field`) writes large fields with a COCO JSON of every annotated
object.  GalSim draws the profiles, PSF and noise.

Object ids: 18-digit integers ``900000000000000000 + (seed mod 10**8) * 10**9 + index`` (index < 10**9),
i.e. within [900000000000000000, 999999999999999999]; real SDSS DR7 objids start with 587 or 588, so the
two can never collide.

What it is: images whose classes, sizes, colours and pixel statistics resemble the real GZ2 cutouts, so
every code path runs unchanged and a model can learn something.  The default ``sdss`` scene puts around the
annotated object what real SDSS cutouts hold and real annotations leave out: field stars (saturated ones with
violet cores, halos, diffraction spikes and bleed trails), faint field galaxies and bright neighbours of every
class, drawn with per-cutout observing conditions (``conditions.py``) over at least the range measured on a real
SDSS frame (``bench/realism.py``).  The ``clean`` scene (the earlier default) has the object with a few stars and
small galaxies under fixed processing.  What it is not: a model of the real galaxy population, of SDSS
photometry or of volunteer votes; scores on it say nothing about real data.
"""

from src.synthetic.field import generate_field
from src.synthetic.generator import generate, render_cutout

__all__ = ["generate", "generate_field", "render_cutout"]
