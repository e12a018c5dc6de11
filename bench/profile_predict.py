"""Where a cutout's time goes in ``predict.py``: each stage of one input timed on its own, over the same cutouts.

    .venv/bin/python bench/profile_predict.py [--model safetensors/galaxy_demo] [--n 128] [--batch-size 8]

Stages, in milliseconds per cutout, 2 threads, the demo's synthetic cutouts of ``bench/old_vs_new.py predict``
(``data/bench_predict/old_vs_new``, made there): reading (``src.data.sources.load``), the star/galaxy measurements
(``src.field.stars.separate_image``; of it ``sep.extract`` with the project's deblending settings alone), and the
segmentation (``src.inference.segmentation.segment``: processor, forward pass at ``predict.py``'s automatic precision,
class probabilities).  The last line is the sum, as cutouts per second with no overlap.  The allocator is tuned
first (``src.allocator.tune_allocator``), as in ``predict.py``, whose ``load_model`` does it before any cutout is
read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.allocator import tune_allocator  # noqa: E402
from src.data.sources import discover, load  # noqa: E402
from src.field import detect  # noqa: E402
from src.field.stars import separate_image  # noqa: E402
from src.inference.segmentation import resolve_precision, segment, set_precision  # noqa: E402
from src.modelling.model import load_model  # noqa: E402

CUTOUTS = Path("data/bench_predict/old_vs_new/original/zoo2Main")


def per_cutout_ms(function, items) -> float:
    start = time.perf_counter()
    for item in items:
        function(item)
    return 1e3 * (time.perf_counter() - start) / len(items)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="safetensors/galaxy_demo")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    tune_allocator()
    paths = sorted(str(path) for path in CUTOUTS.glob("*.jpg"))[: args.n]
    if len(paths) < args.n:
        raise SystemExit(f"{CUTOUTS}: {len(paths)} cutouts; make them with bench/old_vs_new.py ../old predict")
    sources = discover(paths).sources
    read = per_cutout_ms(load, sources)
    images = [load(source)["rgb"] for source in sources]
    stars = per_cutout_ms(separate_image, images)

    def extract(rgb):
        import sep

        data = detect.detection_image(rgb)
        background = sep.Background(
            data, bw=detect.BACK_SIZE, bh=detect.BACK_SIZE, fw=detect.BACK_FILTER, fh=detect.BACK_FILTER
        )
        sep.extract(
            data - background.back(),
            3.0,
            err=background.globalrms,
            minarea=detect.MIN_PIXELS,
            deblend_nthresh=detect.DEBLEND_NTHRESH,
            deblend_cont=detect.DEBLEND_CONT,
            segmentation_map=True,
        )

    sep_ms = per_cutout_ms(extract, images)
    model, processor = load_model(args.model)
    set_precision(model, resolve_precision("auto", torch.device("cpu")))
    segment(model, processor, images[: args.batch_size], "semantic", batch_size=args.batch_size)  # warm-up
    batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    model_ms = (
        per_cutout_ms(lambda batch: segment(model, processor, batch, "semantic", batch_size=args.batch_size), batches)
        / args.batch_size
    )
    total = read + stars + model_ms
    print(f"{len(images)} cutouts, {args.model}, batch {args.batch_size}, 2 threads, ms per cutout:")
    print(f"reading {read:.1f}; star/galaxy {stars:.1f} (sep.extract {sep_ms:.1f}); segmentation {model_ms:.1f}")
    print(f"RESULT {total:.1f} ms per cutout = {1e3 / total:.1f} cutouts/s with no overlap (files not included)")


if __name__ == "__main__":
    main()
