"""The converted splits as a Hugging Face ``datasets.DatasetDict``, saved with ``save_to_disk`` (ready for
``push_to_hub``), since ML users load data that way.

    python -m src.hf_dataset --data-root DIR --out DIR/hf_dataset [--splits train val test]

One row per cutout of ``galaxy_<split>.json``:

==================  ==========================================================================================
``image``           the cutout, the original JPEG bytes (``datasets.Image``; decodes to an RGB ``PIL.Image``)
``semantic_mask``   class id per pixel, 0 = background, 1-5 = ``src.classes`` (PNG, ``datasets.Image``)
``instance_mask``   object id per pixel, 0 = background, k = k-th polygon of the entry (PNG; a later polygon
                    covers an earlier one where they overlap, as in training)
``class``           the image's class: the class of its largest object (``ClassLabel``, the ``src.classes`` ids)
``instance_classes``  the class of object k at position k - 1 (``Sequence(ClassLabel)``)
``objid``           the SDSS DR7 objid (int64; 18 digits fit)
==================  ==========================================================================================

The masks are drawn by :class:`src.data.datasets.GalaxyDataset` at native size, so they are exactly what training and
scoring use.  The folder is written beside ``--out`` and put in its place as a whole.

    from datasets import load_from_disk
    data = load_from_disk("DIR/hf_dataset")          # DatasetDict({"train": ..., "val": ..., "test": ...})
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from src.classes import CLASS_NAMES
from src.data.splits import SPLITS


def features():
    """The ``datasets.Features`` of a row."""
    from datasets import ClassLabel, Features, Image, Sequence, Value

    classes = ClassLabel(names=list(CLASS_NAMES))
    return Features(
        {
            "image": Image(),
            "semantic_mask": Image(),
            "instance_mask": Image(),
            "class": classes,
            "instance_classes": Sequence(classes),
            "objid": Value("int64"),
        }
    )


def rows(data_root, split: str, skip_bad: bool = False):
    """The rows of one split (a generator for ``Dataset.from_generator``)."""
    from src.data.datasets import GalaxyDataset

    dataset = GalaxyDataset(data_root, split, skip_bad=skip_bad)
    for index, record in enumerate(dataset.records):
        item = dataset[index]
        areas = [int((item["instance"] == k).sum()) for k in range(1, len(item["class_ids"]) + 1)]
        yield {
            "image": {"bytes": Path(record["path"]).read_bytes(), "path": Path(record["path"]).name},
            "semantic_mask": item["semantic"],
            "instance_mask": item["instance"],
            "class": item["class_ids"][int(np.argmax(areas))],
            "instance_classes": item["class_ids"],
            "objid": item["objid"],
        }


def export(data_root, out, splits=SPLITS, skip_bad: bool = False, progress: bool = False):
    """Build the ``DatasetDict`` of ``splits`` and ``save_to_disk`` it as ``out`` (replaced as a whole)."""
    import datasets

    from src.atomic import replace_folder
    from src.data.datasets import load_split

    for split in splits:  # a missing or inconsistent split file is named here, not inside the generator
        load_split(data_root, split)
    if not progress:
        datasets.disable_progress_bars()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.cache.") as cache:
            try:
                parts = {
                    split: datasets.Dataset.from_generator(
                        rows,
                        features=features(),
                        cache_dir=cache,
                        gen_kwargs={"data_root": str(data_root), "split": split, "skip_bad": skip_bad},
                    )
                    for split in splits
                }
            except datasets.exceptions.DatasetGenerationError as err:  # an unusable entry: its own message
                raise (err.__cause__ or err) from None
            dataset = datasets.DatasetDict(parts)
            dataset.save_to_disk(str(staging))
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dataset


def main(argv=None) -> int:
    from src.cli import add_output_options, run_cli, setup_logging

    parser = argparse.ArgumentParser(prog="python -m src.hf_dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=".", help="folder with galaxy_<split>.json and original/zoo2Main")
    parser.add_argument("--out", required=True, help="the DatasetDict folder (save_to_disk)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="splits to export (default: all three)")
    parser.add_argument("--skip-bad", action="store_true", help="leave out (and count) unusable entries")
    add_output_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)

    def body():
        dataset = export(args.data_root, args.out, args.splits, skip_bad=args.skip_bad, progress=not args.quiet)
        print(f"wrote {args.out}: " + ", ".join(f"{name} {len(part)} rows" for name, part in dataset.items()))

    return run_cli("python -m src.hf_dataset", body, verbose=args.verbose)


if __name__ == "__main__":
    raise SystemExit(main())
