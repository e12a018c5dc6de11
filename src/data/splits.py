"""The split files as one set.

Under a data root the conversion writes ``galaxy_train.json``, ``galaxy_val.json`` and ``galaxy_test.json`` (VIA
dicts keyed by objid) and ``galaxy_splits.json``, the manifest of that set: the SHA-256 of each split file, their
sizes, and where the membership came from (a seeded stratified split, or ``--splits-from`` reference files).

* :func:`write_split_set`: the new split files are written beside their targets, then the manifest (with the new
  digests) replaces the old one, then each file is renamed into place.  A run killed at any moment leaves either the
  old set with its manifest, or a manifest that some files do not match, which every load reports.
* :func:`check_split_set` (called by every load of a split, ``src.data.datasets.load_split``): the split files match the
  manifest when there is one, and no objid is in two splits.
* :func:`reference_membership`: the objids of the original project's ``galaxy_{train,val,test}.json`` (or
  ``galaxy_<split>_via.json``) in a folder, for ``python -m src.conversion --splits-from DIR``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from src.atomic import atomic_path, write_json_atomic

SPLITS = ("train", "val", "test")
#: The file of each split under a data root (``SPLIT_FILE.format(split=...)``) and the manifest of the set.
SPLIT_FILE = "galaxy_{split}.json"
MANIFEST = "galaxy_splits.json"
#: The other name of a reference split file (``--splits-from``), as the original project also ships them.
REFERENCE_VIA_FILE = "galaxy_{split}_via.json"


class SplitError(ValueError):
    """Split files that do not form one consistent set; the message names the files."""


def split_path(data_root, split: str) -> Path:
    """The split file of ``split`` under a data root.

    Parameters
    ----------
    data_root : str or os.PathLike
        The data root.
    split : str
        ``train``, ``val`` or ``test``.

    Returns
    -------
    pathlib.Path
        ``data_root / SPLIT_FILE`` (``galaxy_<split>.json``).
    """
    return Path(data_root) / SPLIT_FILE.format(split=split)


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, read in blocks of 1 MiB (the project's one file digest).

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    str
        The hex digest (64 lower-case characters).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(data_root) -> dict | None:
    """The manifest of the split set under ``data_root`` (``None`` for splits written without one)."""
    path = Path(data_root) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        manifest["files"].items()
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise SplitError(f"{path}: not a split manifest ({err})") from None
    return manifest


def write_split_set(data_root, outputs: dict[str, dict], info: dict) -> dict:
    """Write ``outputs`` (split name -> VIA dict) as ``galaxy_<split>.json`` plus the manifest, as one set.

    ``info`` (JSON-ready: seed, reference files, ...) is recorded in the manifest.  Returns the manifest."""
    root = Path(data_root)
    _check_disjoint({split_path(root, name).name: entries.keys() for name, entries in outputs.items()})
    data = {name: json.dumps(entries).encode() for name, entries in outputs.items()}
    manifest = {
        "files": {split_path(root, name).name: hashlib.sha256(blob).hexdigest() for name, blob in data.items()},
        "entries": {name: len(entries) for name, entries in outputs.items()},
        **info,
    }
    with contextlib.ExitStack() as stack:
        temporary = {name: stack.enter_context(atomic_path(split_path(root, name))) for name in outputs}
        for name, path in temporary.items():
            path.write_bytes(data[name])
        write_json_atomic(root / MANIFEST, manifest, indent=1)
    # leaving the stack renamed each file into place (a killed run leaves files the new manifest does not match)
    return manifest


def check_split_set(data_root, split: str, entries: dict) -> None:
    """Every load of a split: the split files match the manifest (when there is one), and ``entries`` (the
    loaded ``split``) share no objid with the other split files under ``data_root``."""
    root = Path(data_root)
    manifest = read_manifest(root)
    if manifest is not None:
        for name, digest in manifest["files"].items():
            path = root / name
            if not path.is_file() or file_sha256(path) != digest:
                state = "is missing" if not path.is_file() else "differs from the one written with the others"
                raise SplitError(
                    f"{path} {state} (see {root / MANIFEST}): the split files are not one set; "
                    "a conversion was interrupted or a file was changed: run the conversion again"
                )
    keys = {split_path(root, split).name: entries.keys()}
    for other in SPLITS:
        path = split_path(root, other)
        if other != split and path.is_file():
            try:
                keys[path.name] = json.loads(path.read_bytes()).keys()
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
                raise SplitError(f"{path}: not a VIA split file ({err})") from None
    _check_disjoint(keys, root)


def _check_disjoint(keys: dict[str, object], root=None) -> None:
    names = list(keys)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(set(keys[a]) & set(keys[b]))
            if common:
                where = f"{root}: " if root is not None else ""
                raise SplitError(
                    f"{where}{a} and {b} share {len(common)} entries (e.g. {common[:3]}): the splits "
                    "must be disjoint; run the conversion again"
                )


def reference_membership(folder) -> dict[str, dict]:
    """The split membership of reference split files (``python -m src.conversion --splits-from``).

    Parameters
    ----------
    folder : str or os.PathLike
        A folder holding, for some splits, ``SPLIT_FILE`` or ``REFERENCE_VIA_FILE`` (``galaxy_<split>.json`` or
        ``galaxy_<split>_via.json``; keys = objids, or the objid in the entry's file name).

    Returns
    -------
    dict
        ``{split: {"file", "sha256", "objids"}}`` for each split found.

    Raises
    ------
    FileNotFoundError
        No such folder, or no split file in it.
    SplitError
        Two files for one split, or an objid in two splits (the message names the files).
    """
    from src.data.via import entry_objid, load_via

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--splits-from {folder}: no such folder")
    found = {}
    for split in SPLITS:
        names = (SPLIT_FILE.format(split=split), REFERENCE_VIA_FILE.format(split=split))
        paths = [p for p in (folder / name for name in names) if p.is_file()]
        if len(paths) > 1:
            raise SplitError(f"{folder}: both {paths[0].name} and {paths[1].name} give the {split} split; keep one")
        if paths:
            via = load_via(paths[0])
            found[split] = {
                "file": str(paths[0]),
                "sha256": file_sha256(paths[0]),
                "objids": {entry_objid(key, entry, str(paths[0])) for key, entry in via.items()},
            }
    if not found:
        raise FileNotFoundError(
            f"--splits-from {folder}: no galaxy_{{train,val,test}}.json (or galaxy_<split>_via.json) there"
        )
    _check_disjoint({Path(v["file"]).name: v["objids"] for v in found.values()}, folder)
    return found
