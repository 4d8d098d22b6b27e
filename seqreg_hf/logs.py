"""One switch for logging and one for progress bars, for the package and the libraries it drives.

`configure(log_level, disable_tqdm)` makes the `seqreg_hf` loggers follow `--log_level` (as transformers' and
datasets' do) and turns every progress bar off or on: the package's own (reading vectors, prediction) and those
of datasets (tokenizing, filtering) and transformers.
"""

import logging
import sys

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}
_state = {"progress": True}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (it may be replaced after configure())."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def progress_enabled():
    """Whether the package's own progress bars show (False after --disable_tqdm)."""
    return _state["progress"]


def level_of(log_level):
    """A logging level from --log_level; 'passive' (transformers' default) means INFO for seqreg_hf."""
    if isinstance(log_level, int):
        return log_level
    return _LEVELS.get(str(log_level).lower(), logging.INFO)


def configure(log_level="passive", disable_tqdm=False):
    import datasets
    import transformers

    level = level_of(log_level)
    root = logging.getLogger("seqreg_hf")
    root.setLevel(level)
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    if str(log_level).lower() != "passive":
        transformers.utils.logging.set_verbosity(level)
        datasets.utils.logging.set_verbosity(level)
    # The libraries' own stderr handlers keep the stream they were made with; in a process that runs several
    # commands (a notebook, a test session) that stream may since have been replaced and closed.
    transformers.utils.logging.get_logger()
    datasets.utils.logging.get_logger()
    for name in ("transformers", "datasets"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler and handler.stream is not sys.stdout:
                handler.__class__ = _StderrHandler
    _state["progress"] = not disable_tqdm
    if disable_tqdm:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    else:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
