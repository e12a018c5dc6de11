"""Progress reporting: a tqdm bar on a terminal (or in a notebook), a periodic one-line status elsewhere.

Written to a file or a pipe (``make demo > log``), a tqdm bar is one line per update, thousands of them.  There
:func:`progress_bar` gives a bar that logs tqdm's own status text (``epoch 1/10:  40%|4/10 [00:12<00:18, loss=...]``)
through ``logging`` (logger ``src.progress``) at most every :data:`STATUS_SECONDS`, and once at the end.
"""

from __future__ import annotations

import logging
import sys
import time

#: Seconds between two status lines when the output is not a terminal.
STATUS_SECONDS = 30.0

logger = logging.getLogger(__name__)


class _Sink:
    """Where the non-terminal bar's own writes go: nowhere (its lines go through logging)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def interactive(stream=None) -> bool:
    """A terminal, or a Jupyter kernel (whose tqdm draws a widget)."""
    stream = stream if stream is not None else sys.stderr
    return _in_jupyter_kernel() or bool(getattr(stream, "isatty", lambda: False)())


def _in_jupyter_kernel() -> bool:
    """This process is a Jupyter kernel (not merely one that imported ipykernel, as nbclient's callers do)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _status_bar_class():
    from tqdm.std import tqdm

    class StatusBar(tqdm):
        """tqdm that logs a status line every ``STATUS_SECONDS`` and at the end instead of redrawing."""

        def __init__(self, *args, **kwargs):
            self._last_line = None
            self._final = False
            kwargs.update(
                file=_Sink(),
                mininterval=STATUS_SECONDS,
                maxinterval=STATUS_SECONDS,
                ascii=True,
                ncols=80,
                dynamic_ncols=False,
            )
            super().__init__(*args, **kwargs)

        def display(self, msg=None, pos=None):
            now = time.monotonic()
            due = self._last_line is None or now - self._last_line >= STATUS_SECONDS
            if self.n and (self._final or due):
                logger.info(msg if msg else self.__str__())
                self._last_line = now
            return True

        def close(self):
            self._final = True
            super().close()

    return StatusBar


def progress_bar(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)`` on a terminal or in a notebook; otherwise the same bar as periodic status
    lines through logging (same interface: iterate, ``update``, ``set_postfix``, ``close``)."""
    from tqdm.auto import tqdm

    console = logging.getLogger("src")
    if console.handlers and not console.isEnabledFor(logging.INFO):  # a CLI run with --quiet
        kwargs["disable"] = True
    if kwargs.get("disable") or interactive(kwargs.get("file")):
        return tqdm(iterable, **kwargs)
    return _status_bar_class()(iterable, **kwargs)
