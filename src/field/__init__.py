"""Survey fields: detect, cut out, segment and classify every galaxy of a frame (``predict.py --field``).

* :mod:`.detect`: sep (SExtractor's background, threshold, deblending) on a detection image of the frame.
* :mod:`.stamps`: the stamp rule (an object fills its stamp as a Galaxy Zoo 2 galaxy fills its cutout), cutting
  and resampling.
* :mod:`.assemble`: objects from many views (stamps, tiles) -> merged across tile borders, one owner per pixel.
"""
