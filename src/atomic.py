"""Every output file is written the same way: into a temporary file beside it, then renamed over it.

A killed process therefore leaves either the old file or the new one, never a half-written one.  The
temporary names start with a dot and end in ``.tmp`` (or the target's suffix, for libraries that pick the
format from the name), so a listing of outputs does not show them.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    For writers that take a file name (``fig.savefig``, astropy ``writeto``, ``Table.write``).
    ``keep_suffix``: the temporary name ends in ``path``'s suffix (writers that choose the format from it).
    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem if keep_suffix else path.name}.",
                               suffix=path.suffix if keep_suffix else ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs):
    """``open(path, mode)`` on a temporary file that replaces ``path`` when the block ends without error."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes whole files: mode must start with 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = None) -> Path:
    """JSON, written atomically (``json.dumps`` uses the C encoder; ``json.dump(fh)`` does not)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent))


def replace_folder(staging: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Put the complete folder ``staging`` in the place of ``final`` (renames only; ``final`` may exist).

    The old folder is first renamed aside, then ``staging`` renamed into place, then the old one deleted, so
    at every moment ``final`` is either the complete old folder or the complete new one (a crash between the
    two renames leaves ``final`` absent and the old copy beside it as ``.NAME.old``).
    """
    staging, final = Path(staging), Path(final)
    if final.exists():
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(staging, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    return final
