"""How the ``nip`` command logs: one plain format for nip and the libraries it
runs (standard library only; imported by the command at start-up).

Libraries that install a handler of their own on import (TorchRL's coloured one;
huggingface_hub's and datasets' plain ones, which also pass every record on, so
each line was printed twice) have it taken away: their records go through nip's
handler, warnings and errors only unless ``NIP_LOG_LEVEL`` asks for more. A
library imported after :func:`configure_logging` ran is taken over by
:func:`adopt_library_loggers`, which code calls right after importing it.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = [
    "ENV_LOG_LEVEL",
    "THIRD_PARTY_LOGGERS",
    "BarSafeStreamHandler",
    "adopt_library_loggers",
    "configure_logging",
]

THIRD_PARTY_LOGGERS: tuple[str, ...] = (
    "torchrl",
    "tensordict",
    "hydra",
    "wandb",
    # the OpenAI-compatible backend's client: httpx logs every request at INFO
    # (openai 3 runs on httpx2 and httpcore2, which log under those names)
    "httpx",
    "httpcore",
    "httpx2",
    "httpcore2",
    "openai",
    # the Hugging Face hub client and datasets (code validation's hub datasets,
    # the transformers backend's models): a handler of their own each, on import
    "huggingface_hub",
    "datasets",
)
"""Libraries whose log records go through nip's handler, warnings and errors only
unless ``NIP_LOG_LEVEL`` asks for more (``NIP_LOG_LEVEL=INFO``)."""

ENV_LOG_LEVEL = "NIP_LOG_LEVEL"

_library_level: int | None = None
"""The libraries' level once :func:`configure_logging` ran; ``None`` before (nip
used as a library: its caller's logging is left alone)."""


class BarSafeStreamHandler(logging.StreamHandler):
    """A stream handler that writes each record above the tqdm progress bars drawn
    on its stream (training, dataset generation) instead of onto a bar's line: once
    tqdm is imported, records go through ``tqdm.write``, which clears the bars,
    writes the line and draws them again."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm_module = sys.modules.get("tqdm")
        if tqdm_module is None:
            super().emit(record)
            return
        try:
            tqdm_module.tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except RecursionError:  # pragma: no cover - as logging.StreamHandler
            raise
        except Exception:  # noqa: BLE001 - logging reports its own failures
            self.handleError(record)


def configure_logging(*, take_over_torchrl: bool = True) -> None:
    """One plain log format for nip and the libraries it runs.

    nip's own records (``INFO`` and up) and the libraries' warnings and errors go to
    standard error through one handler (:class:`BarSafeStreamHandler`: above any
    progress bar, not on its line); the libraries' own handlers are removed.
    ``NIP_LOG_LEVEL`` (``DEBUG``, ``INFO``, ``WARNING``) sets the libraries' level.

    ``take_over_torchrl``: import TorchRL now to take its handler away. Commands
    that never run it (``nip datasets``) say ``False``: importing TorchRL also makes
    ``spawn`` the default start method of :mod:`multiprocessing`.
    """
    global _library_level

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            handlers=[BarSafeStreamHandler(sys.stderr)],
            level=logging.INFO,
            format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s",
            datefmt="%H:%M:%S",
        )
    level_name = os.environ.get(ENV_LOG_LEVEL, "WARNING").strip().upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        level = logging.WARNING
    _library_level = level
    if take_over_torchrl:
        _take_over_torchrl()
    adopt_library_loggers(*THIRD_PARTY_LOGGERS)


def _take_over_torchrl() -> None:
    try:
        # TorchRL installs a coloured handler of its own on import: import it now to
        # take that handler away
        import torchrl  # noqa: F401
    except ImportError:  # pragma: no cover - torchrl is a dependency
        pass


def adopt_library_loggers(*names: str) -> None:
    """Route the named libraries' loggers through nip's handler at the level
    :func:`configure_logging` chose: their own handlers removed, their records
    passed on. Call it right after importing a library that installs a handler on
    import (``import datasets``). Does nothing unless :func:`configure_logging`
    ran (the ``nip`` command), so nip used as a library leaves its caller's
    logging alone."""
    if _library_level is None:
        return
    for name in names:
        library = logging.getLogger(name)
        for handler in list(library.handlers):
            library.removeHandler(handler)
        library.propagate = True
        library.setLevel(_library_level)
