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

An interrupt must not be lost either: a signal's handler raises where the main
thread happens to be, and where that is code whose exceptions Python cannot pass on
(a ``__del__``, a weak reference's callback, the hooks a compiled module runs as it
is imported), Python drops the exception and prints it as "Exception ignored in".
Within :class:`interrupts_kept` (the ``nip`` command and a sweep's jobs enter it)
such an interrupt is instead delivered again, to be raised where it can propagate.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

__all__ = [
    "DeferredInterrupt",
    "Terminated",
    "ancestor_pids",
    "ignore_interrupts_until_exit",
    "ignores_signal",
    "interrupts_kept",
    "interrupts_shielded",
    "is_terminated",
    "descendant_pids",
    "signal_processes",
    "terminate_as_interrupt",
    "terminate_with_descendants",
    "wait_for_processes",
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
    is left alone, unless :attr:`replaces` says to replace it); on leaving, put the
    previous handler back."""

    signum: signal.Signals = signal.SIGINT
    default: Any = signal.default_int_handler
    replaces: bool = False

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return self
        if not self.replaces and signal.getsignal(self.signum) is not self.default:
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


def is_terminated(error: BaseException | None) -> bool:
    """Whether an interrupt was SIGTERM: :class:`Terminated` itself, or the cause
    (or context) of what it became, such as the
    :class:`~nip_core.errors.RunInterrupted` a run raises once it is marked
    killed."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, Terminated):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False


class terminate_as_interrupt(_SignalHandler):  # noqa: N801 - used like a function
    """A context in which SIGTERM raises :class:`Terminated` in the main thread.

    Installed only in the main thread and, unless ``replace``, only over the
    default handler (an application's own SIGTERM handling is left alone); the
    previous handler is put back on leaving.

    Parameters
    ----------
    replace : bool
        Install over any handler: for a sweep's job in a launcher's process, where
        the launcher's own handler would swallow the signal (submitit's jobs log
        "Bypassing signal SIGTERM" and train on until SIGKILL, leaving the run
        marked ``running``).

    A SIGTERM within :data:`DUPLICATE_SIGTERM_S` seconds of the one raised is
    taken as the same kill delivered twice (submitit's local controller forwards
    it to its job, which the sweep has signalled too; a kill of a process group
    reaches a job from its parent as well) and ignored, so it cannot cut short
    the run's record of the stop. One sent later stops a stop that hangs.
    """

    signum = signal.SIGTERM
    default = signal.SIG_DFL

    def __init__(self, replace: bool = False) -> None:
        super().__init__()
        self.replaces = replace
        self._raised_at: float | None = None

    def __enter__(self) -> terminate_as_interrupt:
        return super().__enter__()

    def _handle(self, signum: int, frame: Any) -> None:
        import time

        now = time.monotonic()
        if self._raised_at is not None and now - self._raised_at < DUPLICATE_SIGTERM_S:
            return
        self._raised_at = now
        raise Terminated("SIGTERM")


DUPLICATE_SIGTERM_S = 5.0
"""Seconds after a SIGTERM in which another is the same kill delivered twice."""


class terminate_with_descendants(terminate_as_interrupt):  # noqa: N801
    """:class:`terminate_as_interrupt` for a process whose work runs in child
    processes (a sweep's local jobs): SIGTERM is passed on to every process
    below this one, and the handler waits up to ``timeout`` seconds for them to
    stop *before* it raises :class:`Terminated`. Waiting first matters: once
    :class:`Terminated` reaches a launcher (joblib's, submitit's), its teardown
    kills the jobs with SIGKILL, possibly before they have marked their runs
    ``killed``. Processes that ignore or block SIGTERM (a resource tracker) are
    neither signalled nor waited for. A second SIGTERM while waiting stops the
    wait.

    Replaces the handler in place (the ``nip`` command's own), and puts it back
    on leaving. :attr:`signalled` and :attr:`left` (those still running when the
    wait ended) tell what happened.

    Parameters
    ----------
    timeout : float
        The most seconds to wait for the processes below to stop.
    stream : TextIO | None
        Where to say that it waits (standard error by default).
    pass_on : bool
        Whether to pass SIGTERM on at all. ``False`` where the work runs in this
        process (Hydra's basic launcher): the processes below are then its own
        helpers (a W&B service, a model's worker), which must outlive the stop's
        bookkeeping, and SIGTERM just raises :class:`Terminated`.
    targets : Callable[[], Iterable[int]] | None
        The processes the work runs in (a sweep's job processes), asked for when
        SIGTERM comes: of the processes below, only those are signalled and
        waited for, and their own helpers (a W&B service, data loader workers)
        are left to end with them, after the job has closed its run with their
        help. ``None``: every process below.
    """

    def __init__(
        self,
        timeout: float = 60.0,
        stream: TextIO | None = None,
        pass_on: bool = True,
        targets: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        super().__init__(replace=True)
        self.timeout = timeout
        self.stream = stream
        self.pass_on = pass_on
        self.targets = targets
        self.signalled: list[int] = []
        self.left: list[int] = []
        self._waiting = False

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.pass_on:
            super()._handle(signum, frame)
            return
        if self._waiting:
            raise Terminated("SIGTERM")
        self._waiting = True
        try:
            below = descendant_pids()
            if self.targets is not None:
                chosen = set(self.targets())
                below = [pid for pid in below if pid in chosen]
            below = [pid for pid in below if not ignores_signal(pid, signal.SIGTERM)]
            self.signalled = signal_processes(below, signal.SIGTERM)
            if self.signalled:
                stream = self.stream if self.stream is not None else sys.stderr
                print(
                    f"nip: waiting for {len(self.signalled)} job process(es) to stop",
                    file=stream,
                    flush=True,
                )
                # a second SIGTERM raises out of the wait: those still running
                # then are left too
                self.left = list(self.signalled)
                self.left = wait_for_processes(self.signalled, self.timeout)
        finally:
            self._waiting = False
            self.left = [pid for pid in self.left if _running(pid)]
        raise Terminated("SIGTERM")


def ignores_signal(pid: int, signum: int) -> bool:
    """Whether process ``pid`` ignores or blocks ``signum`` (``SigIgn`` and
    ``SigBlk`` in ``/proc/<pid>/status``); ``False`` where that cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    bit = 1 << (int(signum) - 1)
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("SigIgn", "SigBlk"):
            try:
                if int(value.strip(), 16) & bit:
                    return True
            except ValueError:
                continue
    return False


def ancestor_pids(pid: int | None = None) -> list[int]:
    """The processes above ``pid`` (this process by default): its parent, that
    one's parent, and so on, read from ``/proc`` (empty where there is none)."""
    import os

    pid = os.getpid() if pid is None else pid
    parents = _parent_pids()
    found: list[int] = []
    while (parent := parents.get(pid, 0)) > 0 and parent not in found:
        found.append(parent)
        pid = parent
    return found


def _parent_pids() -> dict[int, int]:
    """``{pid: parent pid}`` of every process this one can see, from ``/proc``
    (empty where there is none)."""
    import os

    parents: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return parents
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                text = stat.read().decode("utf-8", "replace")
        except OSError:
            continue  # gone meanwhile
        # "pid (command) state ppid ...": the command may hold spaces and ")"
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) >= 2 and fields[1].isdigit():
            parents[int(entry)] = int(fields[1])
    return parents


def descendant_pids(root: int | None = None) -> list[int]:
    """The processes below ``root`` (this process by default): its children,
    their children, and so on, read from ``/proc`` (empty where there is none).
    A process that left its parent's tree (a daemon that forked twice) is not
    found."""
    import os

    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for pid, parent in _parent_pids().items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return sorted(found)


def signal_processes(pids: Sequence[int], signum: int) -> list[int]:
    """Send ``signum`` to each of ``pids``; return those it reached."""
    import os

    reached = []
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            continue
        reached.append(pid)
    return reached


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet waited for, does not)."""
    import os

    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    state = text[text.rfind(")") + 2 :][:1]
    return state not in ("Z", "X")


def wait_for_processes(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to end; return those still
    running then."""
    import time

    deadline = time.monotonic() + timeout
    left = [pid for pid in pids if _running(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if _running(pid)]
    return left


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


REDELIVERY_DELAY_S = 0.01


def _deliver_later(signum: int) -> None:
    import time

    time.sleep(REDELIVERY_DELAY_S)
    _thread.interrupt_main(signum)


class interrupts_kept:  # noqa: N801 - used like a function
    """A context in which an interrupt that Python would drop is raised again.

    A :class:`KeyboardInterrupt` (or :class:`Terminated`) that a signal's handler
    raises inside code whose exceptions cannot propagate (a ``__del__``, a weak
    reference's callback, a compiled module's import-time hooks) reaches
    :data:`sys.unraisablehook`: Python would print it with a traceback and carry
    on, so the Ctrl-C or SIGTERM would be lost. Here it is delivered again to the
    main thread (:func:`_thread.interrupt_main`, SIGTERM for :class:`Terminated`)
    once this hook has returned, and the handler raises it again, until it is
    raised where it can propagate; nothing is printed.
    Every other dropped exception goes to the hook that was in place before.
    Leaving the context puts that hook back.
    """

    def __init__(self) -> None:
        self._previous: Any = None

    def __enter__(self) -> interrupts_kept:
        self._previous = sys.unraisablehook
        sys.unraisablehook = self._hook
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if sys.unraisablehook is self._hook:
            sys.unraisablehook = self._previous

    def _hook(self, unraisable: Any) -> None:
        error = unraisable.exc_value
        if isinstance(error, KeyboardInterrupt) and (
            threading.current_thread() is threading.main_thread()
        ):
            signum = signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT
            # Delivered from another thread, a moment later: a signal pending now
            # would be handled (and dropped again) before this hook returns. One
            # that Python does not handle (ignored, default) is not delivered. A
            # bare thread: threading's own locks may be held where this runs.
            _thread.start_new_thread(_deliver_later, (signum,))
            return
        self._previous(unraisable)
