#!/usr/bin/env python
"""Segment and classify galaxies in your own images with a trained model — thin CLI over ``src.inference.predict``
(``python predict.py --help``).

    python predict.py --model safetensors/NAME INPUT... --out DIR [--task semantic|instance|panoptic] [--tta]
        [--batch-size B] [--workers W] [--device D] [--skip-bad] [--overlays] [--catalog-format csv|ecsv|fits|parquet]
        [--bands g r i] [--flux-scale F...] [--resume] [--quiet]

Several processes: ``accelerate launch predict.py ...`` (or ``torchrun --nproc_per_node N predict.py ... --cpu``).
"""

from src.inference.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
