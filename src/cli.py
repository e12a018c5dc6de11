"""What every command-line entry point shares.

* Errors: a mistake a user can fix (a wrong path, a bad option value, an unusable input file) is reported as one
  line, ``PROG: error: MESSAGE`` on stderr, and exit status 2 (as ``argparse`` does for a bad option); tracebacks
  are for bugs.  ``-v`` shows the traceback of a reported error too.
* Console output: the library code logs through ``logging`` (loggers ``src.*``); :func:`setup_logging` prints
  those messages as plain lines on stdout (as the Hugging Face example scripts do), warnings and errors on stderr
  as ``warning: ...``.  ``--quiet``: warnings and errors only; ``-v``: debug messages too.  Results (tables,
  summaries) are printed by the CLIs themselves.  Progress bars only on a terminal (``src.progress``).

The project's input errors derive from ``ValueError`` (``ViaError``, ``DatasetError``, ``ImageError``,
``CatalogError``, ``ModelSourceError``) and file-system problems are ``OSError``; both are reported this way.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable

#: Exit status of a reported user error (argparse uses 2 for bad options too).
USER_ERROR = 2
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def run_cli(
    prog: str,
    body: Callable[[], int | None],
    *,
    verbose: bool = False,
    errors: tuple[type[BaseException], ...] = USER_ERRORS,
) -> int:
    """Call ``body()``; its return value (``None`` -> 0) is the exit status.  An exception in ``errors`` becomes
    one line on stderr and :data:`USER_ERROR`; ``verbose`` prints its traceback first."""
    try:
        status = body()
    except errors as err:
        if verbose:
            traceback.print_exc()
        message = _message(err)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if status is None else int(status)


def _message(err: BaseException) -> str:
    """One line for a reported error; an ``OSError`` with a file name reads ``FILE: what went wrong`` (its
    ``[Errno N]`` prefix says nothing to a user)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        target = f" -> {err.filename2}" if err.filename2 is not None else ""
        return f"{err.filename}{target}: {err.strerror}"
    return str(err) or type(err).__name__


class _ConsoleHandler(logging.StreamHandler):
    """Messages below WARNING on ``sys.stdout``, the others on ``sys.stderr``: whatever those streams are when a
    record is written (redirected, captured)."""

    def __init__(self, errors: bool):
        self.errors = errors
        super().__init__()
        self.addFilter(lambda record: (record.levelno >= logging.WARNING) == errors)

    @property
    def stream(self):
        return sys.stderr if self.errors else sys.stdout

    @stream.setter
    def stream(self, value):
        pass


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def add_output_options(parser) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` (see :func:`setup_logging`)."""
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug messages too, and the traceback of a reported error"
    )


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Console output of a CLI: the ``src`` loggers' messages as plain lines, on stdout below WARNING and on
    stderr from WARNING on (INFO and up; ``quiet``: WARNING and up; ``verbose``: DEBUG too).  Off a terminal, the
    Hugging Face libraries' own progress bars are switched off (our bars turn into periodic status lines there,
    ``src.progress``)."""
    from src.progress import interactive

    logger = logging.getLogger("src")
    logger.handlers[:] = [_ConsoleHandler(errors=False), _ConsoleHandler(errors=True)]
    for handler in logger.handlers:
        handler.setFormatter(_ConsoleFormatter("%(message)s"))
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    if quiet or not interactive():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is imported
        for name in ("transformers", "datasets"):
            module = sys.modules.get(name)
            if module is not None:  # already imported: switch its bars off directly
                toggle = (
                    module.utils.logging.disable_progress_bar
                    if name == "transformers"
                    else module.disable_progress_bars
                )
                toggle()


def check_choice(what: str, value, choices, error: type[Exception] = ValueError) -> None:
    """Raise ``error("WHAT must be one of A, B, got 'value'")`` unless ``value`` is one of ``choices``.

    Parameters
    ----------
    what : str
        The setting's name as the message says it (e.g. ``"star rule"``, ``"--stars"``).
    value : object
        The value given.
    choices : sequence of str
        The accepted values, in the order the message lists them.
    error : exception class
        What to raise (``ValueError`` for library code, ``src.data.sources.InputError`` for a user's option).
    """
    if value not in choices:
        raise error(f"{what} must be one of {', '.join(choices)}, got {value!r}")
