"""python -m src.synthetic --out DIR --n N [--seed S] [--size 256] [--workers K] [--balance] [--fits] [--field]
[--scene clean|sdss]"""

from __future__ import annotations

import argparse
import json

from src.cli import add_output_options, run_cli, setup_logging
from src.defaults import CUTOUT_SIZE
from src.synthetic import generate, generate_field
from src.synthetic.generator import DEFAULT_SCENE, SCENES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m src.synthetic",
        description="Write a synthetic Galaxy Zoo 2 data set in the real on-disk formats (catalog CSV, "
        "Dr7_<objid>.jpg cutouts, VIA polygons), or with --field large fields with a COCO JSON.",
    )
    parser.add_argument("--out", required=True, help="output folder (the data root of the conversion)")
    parser.add_argument("--n", type=int, required=True, help="number of cutouts (or of fields with --field)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--size", type=int, default=None, help=f"image size in px (default {CUTOUT_SIZE}; 2048 with --field)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--balance", action="store_true", help="equal 5-class mix (oversample rare classes)")
    parser.add_argument(
        "--fits",
        action="store_true",
        help="also write each cutout's g, r, i band images (float32, before the stretch, TAN WCS at "
        "0.396 arcsec/px centred on the catalog ra/dec) as original/fits/Dr7_<objid>_{g,r,i}.fits; "
        "with --field each field's as field_<k>_{g,r,i}.fits beside its JPEG",
    )
    parser.add_argument("--field", action="store_true", help="large fields with many objects + COCO JSON")
    parser.add_argument(
        "--scene",
        choices=SCENES,
        default=DEFAULT_SCENE,
        help="cutouts: sdss = what a real SDSS cutout holds around the object (field stars with "
        "saturated cores and spikes, faint galaxies, neighbours) under per-cutout seeing, sky, "
        "resampling, stretch and JPEG quality (default; what make demo trains on); clean = the "
        "object with a few stars and small galaxies, fixed processing",
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)
    kwargs = dict(n=args.n, seed=args.seed, workers=args.workers, balance=args.balance, progress=not args.quiet)

    def body():
        if args.field:
            summary = generate_field(args.out, size=args.size or 2048, fits=args.fits, **kwargs)
        else:
            summary = generate(args.out, size=args.size or CUTOUT_SIZE, fits=args.fits, scene=args.scene, **kwargs)
        if not args.quiet:
            summary.pop("areas", None)
            print(json.dumps(summary, indent=1))

    return run_cli("python -m src.synthetic", body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
