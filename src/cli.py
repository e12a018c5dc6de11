"""What every command-line entry point shares.

A mistake a user can fix (a wrong path, a bad option value, an unusable input file) is reported as one line,
``PROG: error: MESSAGE`` on stderr, and exit status 2 (as ``argparse`` does for a bad option); tracebacks are
for bugs.  ``-v`` shows the traceback of a reported error too.

The project's input errors derive from ``ValueError`` (``ViaError``, ``DatasetError``, ``ImageError``,
``CatalogError``, ``ModelSourceError``) and file-system problems are ``OSError``; both are reported this way.
"""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

#: Exit status of a reported user error (argparse uses 2 for bad options too).
USER_ERROR = 2
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def run_cli(prog: str, body: Callable[[], int | None], *, verbose: bool = False,
            errors: tuple[type[BaseException], ...] = USER_ERRORS) -> int:
    """Call ``body()``; its return value (``None`` -> 0) is the exit status.  An exception in ``errors`` becomes
    one line on stderr and :data:`USER_ERROR`; ``verbose`` prints its traceback first."""
    try:
        status = body()
    except errors as err:
        if verbose:
            traceback.print_exc()
        message = str(err) or type(err).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)
