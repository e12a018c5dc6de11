"""The C allocator's settings for a process that runs a model on the CPU.

glibc serves a request of more than 128 KiB (its starting threshold) with a fresh ``mmap`` and returns it to the
system when freed, so every large temporary of a forward or backward pass (a feature map of batch 8 is 4-16 MiB)
comes back as new pages that the kernel must fault in and zero, each time.  Keeping such blocks on the heap, and not
trimming the heap at each free, lets the next pass reuse them: the demo model's batched forward pass ran 1.21x
faster on 2 cores, with the same peak memory; a training step, whose tensors live until the backward pass, ran at
the same speed (``bench/allocator.py``).  Freed memory stays with the process (``MMAP_THRESHOLD`` and
``TRIM_THRESHOLD`` bound how much).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

logger = logging.getLogger(__name__)

#: Requests up to this size come from the heap, not a fresh mapping: glibc's largest allowed value on 64 bits.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap beyond this is given back to the system.
TRIM_THRESHOLD = 512 * 1024 * 1024
#: Setting this environment variable (any value) leaves the allocator as it is.
OPT_OUT = "GALAXY_DEFAULT_MALLOC"
#: glibc's own ways to set the same values: when the user has set one, theirs win.
GLIBC_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_applied: bool | None = None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); ``True`` when they are set.

    Nothing is changed, and ``False`` returned, off Linux, without glibc's ``mallopt``, when :data:`OPT_OUT` is set,
    or when the user set glibc's own variables (:data:`GLIBC_SETTINGS`).  Processes forked afterwards (data loader
    workers) inherit the settings.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) is not None:
        return False
    if any(os.environ.get(name) for name in GLIBC_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # mallopt returns 1 on success; on a C library that only pretends to have it (musl) nothing is lost
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    logger.debug("allocator thresholds %s", "raised" if _applied else "unchanged")
    return _applied
