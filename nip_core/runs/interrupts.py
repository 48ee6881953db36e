"""Ctrl-C during training: finish the iteration, save a checkpoint, then stop.

A run interrupted at an arbitrary instruction is in no state to save: an optimizer
step may be half applied, a rollout half collected. While a trainer's training loop
runs, :class:`DeferredInterrupt` therefore turns the first SIGINT into a request; the
trainer sees it at the end of the iteration
(:meth:`~nip_core.trainers.Trainer.maybe_save_checkpoint`), saves a checkpoint there
and raises :class:`KeyboardInterrupt`. A second Ctrl-C stops at once.

The handler is installed only in the main thread, and only over Python's default
handler, so a debugger's or an application's own SIGINT handling is left alone.

SIGTERM (``kill``, ``timeout``, a Slurm cancellation or preemption) stops at once,
like a second Ctrl-C: within :func:`terminate_as_interrupt` (the ``nip`` command
enters it) it raises :class:`Terminated`, a :class:`KeyboardInterrupt`, so the run is
marked ``killed`` and the command says how to resume it instead of dying silently
with the run still marked ``running``. Its checkpoints are the periodic ones: a
scheduler's grace period is rarely long enough to finish an iteration.

Once a run stops for an interrupt, more Ctrl-C must not undo the stop's own
bookkeeping: :class:`interrupts_shielded` holds further Ctrl-C off while the run is
marked ``killed`` and its loggers closed (SIGTERM still stops), and the ``nip``
command, ending its process on an interrupt, ignores Ctrl-C for the rest of the
interpreter's shutdown (:func:`ignore_interrupts_until_exit`): Python puts the
default signal action back while it finalises, so a Ctrl-C pressed then would kill
the process by the signal instead of its exit status.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

__all__ = [
    "DeferredInterrupt",
    "Terminated",
    "ignore_interrupts_until_exit",
    "interrupts_shielded",
    "terminate_as_interrupt",
]

SHIELDED_INTERRUPT_MESSAGE = (
    "nip: already stopping: recording the run as killed and closing its logs "
    "(send SIGTERM to stop without that)"
)

FIRST_INTERRUPT_MESSAGE = (
    "nip: interrupted: stopping at the end of this iteration, once its checkpoint "
    "is saved (press Ctrl-C again to stop at once and lose the iteration)"
)


class _SignalHandler:
    """Base of the contexts here: on entering, install :meth:`_handle` for
    :attr:`signum`, only in the main thread and only over the default handler
    (:attr:`default`: a debugger's, a launcher's or an application's own handling
    is left alone); on leaving, put the previous handler back."""

    signum: signal.Signals = signal.SIGINT
    default: Any = signal.default_int_handler

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return self
        if signal.getsignal(self.signum) is not self.default:
            return self
        self._previous = signal.signal(self.signum, self._handle)
        self._installed = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._restore()

    @property
    def active(self) -> bool:
        """Whether the handler is installed."""
        return self._installed

    def _restore(self) -> None:
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        raise NotImplementedError  # pragma: no cover - every context defines it


class DeferredInterrupt(_SignalHandler):
    """A context in which the first Ctrl-C is a request to stop, not an exception.

    Parameters
    ----------
    on_leave : Callable[[], None] | None
        Called when the context is left normally with a request pending (Ctrl-C
        after the loop's last check): saves the checkpoint the request was promised,
        before :class:`KeyboardInterrupt` is raised.
    stream : TextIO | None
        Where to say that the interrupt was received (standard error by default).
    """

    def __init__(
        self,
        on_leave: Callable[[], None] | None = None,
        stream: TextIO | None = None,
    ):
        super().__init__()
        self.on_leave = on_leave
        self.stream = stream
        self.requested = False

    def __enter__(self) -> DeferredInterrupt:
        return super().__enter__()

    def __exit__(self, exc_type: Any, *exc_info: Any) -> None:
        self._restore()
        if self.requested and exc_type is None:
            if self.on_leave is not None:
                self.on_leave()
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        stream = self.stream if self.stream is not None else sys.stderr
        print(f"\n{FIRST_INTERRUPT_MESSAGE}", file=stream, flush=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interrupt (see :func:`terminate_as_interrupt`)."""


class terminate_as_interrupt(_SignalHandler):  # noqa: N801 - used like a function
    """A context in which SIGTERM raises :class:`Terminated` in the main thread.

    Installed only in the main thread and only over the default handler (a
    launcher's or an application's own SIGTERM handling is left alone); the
    previous handler is put back on leaving.
    """

    signum = signal.SIGTERM
    default = signal.SIG_DFL

    def __enter__(self) -> terminate_as_interrupt:
        return super().__enter__()

    def _handle(self, signum: int, frame: Any) -> None:
        raise Terminated("SIGTERM")


class interrupts_shielded(_SignalHandler):  # noqa: N801 - used like a function
    """A context in which Ctrl-C is noted, not raised: for the bookkeeping of a
    stop that an interrupt already caused.

    Installed only in the main thread and only over Python's default handler, like
    :class:`DeferredInterrupt`; the first Ctrl-C inside says that the stop is under
    way (once). SIGTERM is left alone, so a stop that hangs can still be ended.

    Parameters
    ----------
    stream : TextIO | None
        Where to say so (standard error by default).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.received = 0

    def __enter__(self) -> interrupts_shielded:
        return super().__enter__()

    def _handle(self, signum: int, frame: Any) -> None:
        self.received += 1
        if self.received == 1:
            stream = self.stream if self.stream is not None else sys.stderr
            print(f"\n{SHIELDED_INTERRUPT_MESSAGE}", file=stream, flush=True)


def ignore_interrupts_until_exit() -> None:
    """Ignore Ctrl-C from now on: for a process that is about to end because of
    an interrupt (the ``nip`` command's own exit), so that a Ctrl-C pressed again
    while the interpreter shuts down (torch and the run's threads can take a
    while) neither prints a traceback nor kills the process by the signal in place
    of its exit status. Python leaves an ignored signal ignored while it
    finalises, where it would put the default action back in place of a handler.
    Only from the main thread; never for code that goes on running."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
