"""Fetch the real Galaxy Zoo 2 inputs into a data root.

=====================  ==============================================  =====================================
what                   from                                            to (under the data root)
=====================  ==============================================  =====================================
Hart16 catalog         data.galaxyzoo.org (``gz2_hart16.csv.gz``)      ``gz2_hart16.csv.gz``
VIA train polygons     hfarias/mask_galaxy README links                ``original/train/via_region_data.json``
VIA val polygons       hfarias/mask_galaxy README links                ``original/val/via_region_data.json``
SDSS cutouts           hfarias/mask_galaxy README (``zoo2Main``)       ``original/zoo2Main/Dr7_<objid>.jpg``
=====================  ==============================================  =====================================

Downloads go to ``<file>.part`` and resume from there (HTTP ``Range``) after an interruption; the size
is checked against the server's ``Content-Length`` (and the expected size when known), the SHA-256
against the expected digest when known, and every finished file is recorded with its size and
digest in ``download_manifest.json``, which later runs verify instead of downloading again.  The
image archive is unpacked safely (no paths outside the target) and kept unless ``--delete-archive``.

CLI: ``python -m src.download --data-root DIR [--only catalog annotations images] [--mirror URL]``
(``--mirror`` takes every file, by its base name, from another server: a local copy, a lab mirror).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from src.atomic import write_json_atomic
from src.cli import add_output_options, run_cli, setup_logging
from src.data.splits import file_sha256
from src.data.via import IMAGE_DIR, VIA_FILE

logger = logging.getLogger(__name__)
MANIFEST = "download_manifest.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One remote file: where it comes from, where it goes, and what it must be."""

    name: str
    url: str
    dest: str  #: path relative to the data root
    size: int | None = None  #: bytes, when published
    sha256: str | None = None  #: hex digest, when published
    extract_to: str | None = None  #: unpack this tar archive into that folder (relative to the root)


# Upstream publishes no checksums: the digest of what was fetched is recorded in the manifest.
RESOURCES = {
    "catalog": [Resource("Hart16 catalog", "https://gz2hart.s3.amazonaws.com/gz2_hart16.csv.gz", "gz2_hart16.csv.gz")],
    "annotations": [
        Resource(
            "VIA train annotations",
            "https://datascience-userena.s3.amazonaws.com/mask_galaxy-morphological_segmentation_of_galaxies/"
            "train_via_region_data.json",
            VIA_FILE.format(split="train"),
        ),
        Resource(
            "VIA val annotations",
            "https://datascience-userena.s3.amazonaws.com/mask_galaxy-morphological_segmentation_of_galaxies/"
            "val_via_region_data.json",
            VIA_FILE.format(split="val"),
        ),
    ],
    "images": [
        Resource(
            "SDSS cutouts (zoo2Main)",
            "https://datascience-userena.s3.amazonaws.com/zoo2Main.tar.gz",
            f"{IMAGE_DIR}.tar.gz",
            extract_to=IMAGE_DIR,
        )
    ],
}


class DownloadError(RuntimeError):
    """A download that failed or does not match what was expected; the message names the file."""


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "galaxy-oneformer/1.0"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def fetch(
    url: str,
    dest: Path,
    size: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> dict:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial file; returns size and digest.

    The finished file appears under ``dest`` only after its size (and digest, when given) are checked.
    """
    from src.progress import progress_bar

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is already complete (or longer than the file)
            response = None
        else:
            raise DownloadError(f"{dest.name}: HTTP {err.code} from {url}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(
            f"{dest.name}: cannot reach {url} ({getattr(err, 'reason', err)}); fetch it elsewhere and put it at "
            f"{dest}, or use --mirror"
        ) from None
    if response is not None:
        with response:
            resumed = offset and response.status == 206
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            with (
                open(part, "ab" if resumed else "wb") as fh,
                progress_bar(
                    total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                ) as bar,
            ):
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, ValueError) as err:  # connection lost: keep the .part for a resume
                        raise DownloadError(
                            f"{dest.name}: interrupted at {fh.tell()} bytes ({err}); run again to resume"
                        ) from None
                    if not block:
                        break
                    fh.write(block)
                    bar.update(len(block))
        got = part.stat().st_size
        if total is not None and got != total:
            raise DownloadError(f"{dest.name}: got {got} bytes, expected {total}; run again to resume")
    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise DownloadError(f"{dest.name}: size {got} bytes, expected {size}; the partial file was removed")
    digest = file_sha256(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink()
        raise DownloadError(f"{dest.name}: SHA-256 {digest} does not match the expected {sha256}")
    os.replace(part, dest)
    return {"url": url, "size": got, "sha256": digest}


def extract_archive(archive: Path, target: Path) -> int:
    """Unpack a tar(.gz) of cutouts so that the images end up directly in ``target``; returns their count.

    Members are extracted with tarfile's ``data`` filter (no absolute paths, no ``..``, no links out).
    A single top-level folder in the archive (e.g. ``zoo2Main/``) is flattened into ``target``.
    """
    target = Path(target)
    staging = target.with_name(target.name + ".extracting")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"{archive}: cannot unpack ({err})") from None
    root = staging
    children = [p for p in staging.iterdir() if not p.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir():
        root = children[0]
    files = [p for p in root.rglob("*") if p.is_file()]
    seen: dict[str, Path] = {}
    for path in files:
        if path.name in seen:
            shutil.rmtree(staging, ignore_errors=True)
            raise DownloadError(
                f"{archive}: two members share the name {path.name} "
                f"({seen[path.name].relative_to(staging)}, {path.relative_to(staging)})"
            )
        seen[path.name] = path
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        os.replace(path, target / path.name)
    shutil.rmtree(staging, ignore_errors=True)
    return len(files)


def _load_manifest(root: Path) -> dict:
    path = root / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def download(
    data_root=".",
    only=("catalog", "annotations", "images"),
    mirror: str | None = None,
    resources: dict[str, list[Resource]] | None = None,
    progress: bool = True,
    delete_archive: bool = False,
    timeout: float = 60.0,
) -> dict:
    """Fetch the named groups of ``resources`` (default: the real files) into ``data_root``.

    Files already present and matching the manifest are not fetched again.  Returns the manifest.
    """
    root = Path(data_root)
    root.mkdir(parents=True, exist_ok=True)
    resources = RESOURCES if resources is None else resources
    unknown = [group for group in only if group not in resources]
    if unknown:
        raise ValueError(f"unknown download group(s) {unknown}; choose from {sorted(resources)}")
    manifest = _load_manifest(root)
    for group in only:
        for res in resources[group]:
            url = mirror.rstrip("/") + "/" + res.url.rsplit("/", 1)[-1] if mirror else res.url
            dest = root / res.dest
            known = manifest.get(res.dest)
            target = root / res.extract_to if res.extract_to else None
            # an archive is done once its unpacking is recorded (the record is written after the last file)
            unpacked = bool(target and known and known.get("unpacked_files") and target.is_dir())
            if dest.is_file() and known and dest.stat().st_size == known["size"]:
                if file_sha256(dest) != known["sha256"]:
                    raise DownloadError(
                        f"{dest}: differs from the file recorded in {MANIFEST}; delete it to download again"
                    )
                logger.info(f"{res.name}: present and verified ({dest})")
            elif unpacked:
                logger.info(f"{res.name}: unpacked earlier into {target} ({known['unpacked_files']} files)")
            else:
                manifest[res.dest] = fetch(
                    url, dest, size=res.size, sha256=res.sha256, progress=progress, timeout=timeout
                )
                write_json_atomic(root / MANIFEST, manifest, indent=2)
            if target is not None:
                if not unpacked:  # also redoes an unpacking that was interrupted
                    count = extract_archive(dest, target)
                    manifest[res.dest]["unpacked_files"] = count
                    write_json_atomic(root / MANIFEST, manifest, indent=2)
                    logger.info(f"{res.name}: {count} files unpacked into {target}")
                if delete_archive:
                    dest.unlink(missing_ok=True)
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.download", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=".", help="where the files go (default: .)")
    parser.add_argument(
        "--only",
        nargs="+",
        default=["catalog", "annotations", "images"],
        choices=sorted(RESOURCES),
        help="which groups to fetch (default: all)",
    )
    parser.add_argument("--mirror", help="take every file by its base name from this URL instead")
    parser.add_argument("--delete-archive", action="store_true", help="remove zoo2Main.tar.gz once unpacked")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout per request (s)")
    add_output_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.verbose)

    def body():
        download(
            args.data_root,
            only=args.only,
            mirror=args.mirror,
            progress=not args.quiet,
            delete_archive=args.delete_archive,
            timeout=args.timeout,
        )
        print(f"done; next: python -m src.conversion --data-root {args.data_root} --stats")

    return run_cli("python -m src.download", body, verbose=args.verbose, errors=(DownloadError, ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
