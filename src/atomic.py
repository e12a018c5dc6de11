"""Every output file is written the same way: into a temporary file beside it, then renamed over it.

A killed process therefore leaves either the old file or the new one, never a half-written one.  The
temporary names start with a dot and end in ``.tmp`` (or the target's suffix, for libraries that pick the
format from the name), so a listing of outputs does not show them.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
import socket
import sys
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
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem if keep_suffix else path.name}.",
            suffix=path.suffix if keep_suffix else ".tmp",
            dir=path.parent,
        )
    except OSError as err:
        raise _named(err, path) from None
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp, path)
    except OSError as err:  # e.g. a full disk: a bare "[Errno 28]" from write() names no file
        raise _named(err, path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` when it names no file (``write`` / ``fsync`` errors such as ENOSPC do not)."""
    if err.filename is not None or err.errno is None:
        return err
    named = type(err)(err.errno, err.strerror or os.strerror(err.errno), str(path))
    named.__traceback__ = err.__traceback__
    return named


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


# ----------------------------------------------------------------------------------------------- exclusive use
class FolderInUseError(OSError):
    """Another process holds the lock of an output folder; the message names it (pid, host, since when)."""


@contextmanager
def folder_lock(folder: str | os.PathLike, name: str = ".lock", what: str = ""):
    """Exclusive use of ``folder`` (created when absent) while the block runs: an ``fcntl.flock`` on the file
    ``folder/name``, which holds the holder's pid, host, start time and ``what`` (e.g. the program).

    A second process asking for the same folder gets :class:`FolderInUseError` naming the holder, at once (it does
    not wait).  The lock file is removed when the block ends; a killed holder leaves the file but not the lock
    (the kernel drops it), so the next run takes it over.  ``NotADirectoryError`` names ``folder`` when it is a
    file.
    """
    import fcntl

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise FolderInUseError(
                f"{folder}: in use by another run ({holder}); wait for it to end or choose another folder"
            ) from None
        try:  # the former holder may have removed the file between our open and our lock: then lock the new one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "what": what or os.path.basename(sys.argv[0]),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        try:
            os.unlink(path)  # still holding the lock: a run waiting on this file sees it gone and retries
        finally:
            os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"{info.get('what') or 'a process'}, pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
