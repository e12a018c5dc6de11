"""Survey-frame speed and memory: ``predict.py --field`` end to end against the original sliding window.

    python bench/bench_field.py --model MODEL FRAME... [--strategy cutout|tiles] [--runs 3] [--windows 24]
        [--predict-args "--tile 512 --overlap 224"] [--wait-idle 60]
    python bench/bench_field.py --model MODEL BIG_g.fits BIG_r.fits BIG_i.fits --peak-rss --windows 0
    python bench/bench_field.py --make-big DIR --from FIELD_STEM [--repeat 4]     # an 8192 px FITS frame

End to end: ``predict.py FRAME... --field --strategy S --cpu --quiet`` in a fresh interpreter (imports, model
load, reading, detection, the model, catalog and segmentation writing), wall-clock seconds, median of ``--runs``;
its peak resident memory (the child's ``ru_maxrss``) with ``--peak-rss``.  ``--wait-idle S``: before each run, wait
up to S seconds for a 1-minute load average under 1.5 (the load at the start of each run is printed).

The original method (the seed project's notebook): a 256 px window slid in 5 px steps over the frame, one forward
pass per window at batch 1, each window normalised by its own mean and standard deviation, then the semantic map
of each window (box NMS afterwards, not timed).  ``--windows`` windows at random grid positions are timed in this
process with the same model and ``--threads`` torch threads (after 2 warm-up windows); the median per window times
the number of windows of the frame is the method's time for the frame.  The speed-up (original / end to end) is
printed last.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WINDOW, STEP = 256, 5


def wait_for_idle(max_seconds: float, below: float = 1.5) -> float:
    """Wait (up to ``max_seconds``) until the 1-minute load average is under ``below``; returns it."""
    deadline = time.monotonic() + max_seconds
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def end_to_end(model: str, frames: list[str], strategy: str, out: Path, extra: list[str]) -> tuple[float, dict]:
    import json

    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        str(REPO / "predict.py"),
        *frames,
        "--model",
        model,
        "--out",
        str(out),
        "--field",
        "--strategy",
        strategy,
        "--cpu",
        "--quiet",
        *extra,
    ]
    tic = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"predict.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, json.loads((out / "predict_report.json").read_text())


def original_window_seconds(
    model_path: str, frame_paths: list[str], windows: int, threads: int, seed: int = 0
) -> tuple[float, tuple[int, int]]:
    """Median seconds of one sliding-window step of the original method, and the frame's shape."""
    import torch

    from src.data.sources import discover
    from src.field.frame import open_frame
    from src.inference.segmentation import forward, semantic_maps
    from src.modelling.model import load_model

    torch.set_num_threads(threads)
    [source] = discover(frame_paths).sources
    frame = open_frame(source)
    height, width = frame.shape
    model, processor = load_model(model_path, device="cpu")
    model.eval()
    rng = np.random.default_rng(seed)
    ny, nx = (height - WINDOW) // STEP + 1, (width - WINDOW) // STEP + 1
    times = []
    for k in range(windows + 2):
        y0, x0 = STEP * int(rng.integers(ny)), STEP * int(rng.integers(nx))
        tic = time.perf_counter()
        rgb, _ = frame.region(slice(y0, y0 + WINDOW), slice(x0, x0 + WINDOW))
        window = rgb.astype(np.float32)
        window = (window - window.mean()) / max(float(window.std()), 1e-6)  # its own statistics
        window = np.clip(window * 40 + 128, 0, 255).astype(np.uint8)  # back to the processor's input
        outputs = forward(model, processor, [window], "semantic")
        semantic_maps(processor, outputs, [(WINDOW, WINDOW)])
        if k >= 2:
            times.append(time.perf_counter() - tic)
    frame.close()
    return float(np.median(times)), (height, width)


def make_big(out_dir: Path, stem: str, repeat: int) -> None:
    """An ``repeat`` x ``repeat`` mosaic of a synthetic field's FITS bands: ``big_{g,r,i}.fits`` with a TAN WCS."""
    from astropy.io import fits

    from src.data.images import tan_header, write_fits

    out_dir.mkdir(parents=True, exist_ok=True)
    for band in "gri":
        data = fits.getdata(f"{stem}_{band}.fits").astype(np.float32)
        big = np.tile(data, (repeat, repeat))
        write_fits(out_dir / f"big_{band}.fits", big, tan_header(150.0, 2.0, big.shape))
        print(f"wrote {out_dir / f'big_{band}.fits'} {big.shape}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("frames", nargs="*", help="one frame: an image, a FITS cube, or its three band files")
    p.add_argument("--model")
    p.add_argument("--strategy", default="cutout", choices=("cutout", "tiles"))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--windows", type=int, default=24, help="sliding windows timed (0: skip the original method)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peak-rss", action="store_true", help="report the peak resident memory of predict.py")
    p.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each timed run, wait up to this long for a 1-minute load average under 1.5",
    )
    p.add_argument("--make-big", type=Path, help="write an FITS mosaic into this folder and stop")
    p.add_argument("--from", dest="source_stem", help="--make-big: FIELD_STEM of FIELD_STEM_{g,r,i}.fits")
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--predict-args", default="", help='more options for predict.py, e.g. "--tile 512"')
    args = p.parse_args(argv)
    if args.make_big:
        make_big(args.make_big, args.source_stem, args.repeat)
        return
    if not args.frames or not args.model:
        p.error("FRAME and --model are needed")
    extra = shlex.split(args.predict_args)
    print(
        f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; predict.py threads: torch default "
        f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            load = wait_for_idle(args.wait_idle) if args.wait_idle else os.getloadavg()[0]
            s, report = end_to_end(args.model, args.frames, args.strategy, Path(tmp) / "out", extra)
            seconds.append(s)
            [record] = report["inputs"]
            print(
                f"run {run + 1} (load {load:.2f} at start): {s:.2f} s end to end, {record['n_objects']} objects, "
                f"field counts {record['field']['counts']}, timings {record['field']['timings']}, peak RSS "
                f"{record['field']['peak_rss_gib']} GiB"
            )
    wall = float(np.median(seconds))
    print(
        f"end to end ({args.strategy}): median {wall:.2f} s of {args.runs} run(s): "
        + ", ".join(f"{s:.2f}" for s in seconds)
    )
    if args.peak_rss:
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"peak RSS of predict.py: {peak_kib / 1024**2:.2f} GiB")
    if args.windows:
        if args.wait_idle:
            wait_for_idle(args.wait_idle)
        print(f"load average before the sliding window: {os.getloadavg()[0]:.2f}")
        per_window, (height, width) = original_window_seconds(args.model, args.frames, args.windows, args.threads)
        n = ((height - WINDOW) // STEP + 1) * ((width - WINDOW) // STEP + 1)
        total = per_window * n
        print(
            f"original method: {n:,} windows of {WINDOW} px at {STEP} px steps on {width}x{height}, "
            f"{per_window * 1000:.1f} ms per window (median of {args.windows}) -> {total:,.0f} s "
            f"({total / 3600:.1f} h)"
        )
        print(
            f"speed-up of predict.py --field --strategy {args.strategy} over the original method: {total / wall:,.0f}x"
        )


if __name__ == "__main__":
    main()
