"""The run context a trainer writes through: run directory, loggers, callbacks.

:func:`nip_core.experiment.run_experiment` builds one per run and hands it to the
trainer. A trainer built without one (in a unit test, say) gets an in-memory context:
metrics are kept in :attr:`RunContext.history` and no files are written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from nip_core.runs.interrupts import DeferredInterrupt
from nip_core.runs.loggers import LoggerGroup, flatten_metrics
from nip_core.runs.run_dir import ELAPSED_METRIC

if TYPE_CHECKING:
    from nip_core.runs.run_dir import RunDirectory

IterationCallback = Callable[[Any, int, Mapping[str, Any]], None]
"""``callback(trainer, iteration, metrics)``, called after each training iteration
(after its checkpoint, if any). Raising from it stops the run, like a kill."""

StageCallback = Callable[[Any, int, str], None]
"""``callback(trainer, iteration, stage)``, called by staged trainers (the text
world's) after each stage, once its state is saved; ``stage`` is the stage that
comes next. Raising from it stops the run, like a kill."""


class RunContext:
    """What a trainer needs from the run it belongs to.

    Parameters
    ----------
    run_dir : RunDirectory | None
        The run directory; ``None`` for an in-memory run (no files, no checkpoints).
    loggers : LoggerGroup | None
        The run's metric loggers.
    callbacks : Sequence[IterationCallback]
        Called after every training iteration.
    resume_checkpoint : dict | None
        The checkpoint the run continues from, if it is resuming.
    base_checkpoint : dict | None
        The latest checkpoint of the base run, when re-running its tests
        (``base_run.base_run_type="rerun_tests"``): the trainer loads its agents and
        runs only the test loop.
    stage_callbacks : Sequence[StageCallback]
        Called by staged trainers after every stage.
    metrics_records : int
        Metric records logged before this process (when resuming).
    elapsed_offset : float | None
        Seconds the run had been running before this process (when resuming: the
        ``timing.elapsed_s`` of its last kept record), so that the clock goes on
        where it stopped. ``None``: the run has no clock (it was started before
        nip-core logged one), and its records get none.
    """

    def __init__(
        self,
        run_dir: RunDirectory | None = None,
        loggers: LoggerGroup | None = None,
        callbacks: Sequence[IterationCallback] = (),
        resume_checkpoint: dict[str, Any] | None = None,
        base_checkpoint: dict[str, Any] | None = None,
        stage_callbacks: Sequence[StageCallback] = (),
        metrics_records: int = 0,
        elapsed_offset: float | None = 0.0,
    ):
        self.run_dir = run_dir
        self.loggers = loggers if loggers is not None else LoggerGroup([])
        self.callbacks = list(callbacks)
        self.stage_callbacks = list(stage_callbacks)
        self.resume_checkpoint = resume_checkpoint
        self.base_checkpoint = base_checkpoint
        self.history: list[dict[str, Any]] = []
        self.metrics_records = int(metrics_records)
        """Metric records the run has logged so far, in every process (a resumed
        run starts from the count its trainer saved)."""
        self.checkpoint_iteration: int | None = (
            None if resume_checkpoint is None else int(resume_checkpoint["iteration"])
        )
        """The iterations the run's newest checkpoint holds (``None``: none yet)."""
        self.checkpoint_note: str | None = None
        """What the newest saved state holds, in words, when it is not a checkpoint
        per iteration (the staged text trainers save after every stage)."""
        self._interrupt: DeferredInterrupt | None = None
        self._timed = elapsed_offset is not None
        self._elapsed_offset = float(elapsed_offset or 0.0)
        self._clock_start = time.monotonic()

    @property
    def writes_files(self) -> bool:
        return self.run_dir is not None

    def deferred_interrupts(
        self, on_leave: Callable[[], None] | None = None
    ) -> DeferredInterrupt:
        """A context in which Ctrl-C asks the run to stop at the end of the current
        iteration, after saving a checkpoint (see :mod:`nip_core.runs.interrupts`).
        """
        self._interrupt = DeferredInterrupt(on_leave)
        return self._interrupt

    @property
    def interrupt_requested(self) -> bool:
        """Whether Ctrl-C asked the run to stop at the end of this iteration."""
        return self._interrupt is not None and self._interrupt.requested

    @property
    def elapsed_s(self) -> float:
        """The run's wall-clock seconds so far: since this context was made (the
        start of the run, or of this process when resuming), plus the time the run
        had run before it (``elapsed_offset``)."""
        return self._elapsed_offset + (time.monotonic() - self._clock_start)

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Log a record of metrics at ``step``, with the run's clock
        (``timing.elapsed_s``, :attr:`elapsed_s`) added to it (unless the run has
        none: ``elapsed_offset=None``)."""
        flat = flatten_metrics(metrics)
        if self._timed:
            flat[ELAPSED_METRIC] = round(self.elapsed_s, 3)
        self.history.append({"step": step, **flat})
        self.loggers.log_metrics(step, flat)
        self.metrics_records += 1

    def log_artifact(
        self,
        path: str | os.PathLike,
        name: str,
        artifact_type: str,
        *,
        aliases: Sequence[str] = (),
    ) -> None:
        self.loggers.log_artifact(path, name, artifact_type, aliases=aliases)

    def run_callbacks(self, trainer: Any, iteration: int, metrics: Mapping[str, Any]):
        for callback in self.callbacks:
            callback(trainer, iteration, metrics)

    def run_stage_callbacks(self, trainer: Any, iteration: int, stage: str) -> None:
        for callback in self.stage_callbacks:
            callback(trainer, iteration, stage)

    def finish(self) -> None:
        self.loggers.finish()
