"""Messages and progress bars: one knob, the level of the ``adapterx`` logger.

Library modules log through ``logging.getLogger(__name__)`` (all under ``adapterx``) and never configure
logging themselves. An application sets the level: the CLI's ``--verbose`` (DEBUG), default (INFO) and ``--quiet``
(WARNING, see `console`). tqdm bars on long work (training, evaluation, the bench) show unless the caller turned
them off or the ``adapterx`` logger's own level is above INFO, so `--quiet` hides them too and a library user
hides them with ``logging.getLogger("adapterx").setLevel(logging.WARNING)``.
"""

from __future__ import annotations

import logging
import sys

ROOT = "adapterx"


def show_progress(requested: bool = True) -> bool:
    """Whether a progress bar should show: `requested` and the adapterx logger not set above INFO."""
    level = logging.getLogger(ROOT).level
    return requested and level <= logging.INFO


class _Stderr(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (test harnesses and notebooks replace it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def console(level: int) -> None:
    """For applications (the CLI), never called by the library: messages of the adapterx loggers at `level` and
    above go to stderr as plain lines. Calling it again replaces the earlier set-up."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, _Stderr)]:
        logger.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
