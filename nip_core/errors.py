"""Error classes of nip.

Every error a researcher can cause carries a message they can act on. The CLI prints
:class:`NipError` subclasses without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

NO_VALUE: object = object()
"""Sentinel for a :class:`ConfigProblem` that has no offending value to show."""


class NipError(Exception):
    """Base class of every error nip raises on purpose."""


class NipWarning(UserWarning):
    """Base class of nip's warnings; the ``nip`` command prints them as
    ``nip: warning: ...`` lines."""


class ParameterWarning(NipWarning):
    """Parameters that are valid but probably not what was meant (the message says
    which paths and why)."""


class LoggerWarning(NipWarning):
    """A metrics logger could not do what was asked and did something else (W&B
    offline when it could not be reached; the message says what and where)."""


class CheckpointWarning(NipWarning):
    """A checkpoint could not be used and an older one was (the message says which,
    and which iterations are done again)."""


class BackendWarning(NipWarning):
    """A text backend could not do what was asked and the run did something else
    (a fine-tune job the endpoint no longer knows, started again)."""


class FallbackWarning(NipWarning):
    """A speed setting could not be honoured and the run goes on without it
    (``run.compile_loss`` when ``torch.compile`` fails)."""


@attrs.frozen
class ConfigProblem:
    """One problem found in a configuration.

    Parameters
    ----------
    path : str
        The dotted path of the offending value (``"ppo.num_epochs"``,
        ``"agents.verifier.d_gnn"``); empty for problems with the whole configuration.
    message : str
        What is wrong, in words.
    value : object
        The offending value; :data:`NO_VALUE` when there is none.
    choices : tuple[str, ...]
        The valid choices, when they are a known, finite set.
    """

    path: str
    message: str
    value: object = NO_VALUE
    choices: tuple[str, ...] = ()

    def has_value(self) -> bool:
        return self.value is not NO_VALUE

    def format(self) -> str:
        where = self.path or "<config>"
        text = f"{where}: {self.message}"
        if self.has_value():
            text += f" (got {self.value!r})"
        if self.choices:
            text += f"; valid choices: {', '.join(self.choices)}"
        return text


class NipConfigError(NipError, ValueError):
    """An invalid configuration: every problem found, each with its dotted path."""

    def __init__(self, problems: Iterable[ConfigProblem] | ConfigProblem | str):
        if isinstance(problems, str):
            problems = [ConfigProblem(path="", message=problems)]
        elif isinstance(problems, ConfigProblem):
            problems = [problems]
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        n = len(self.problems)
        head = f"invalid configuration: {n} problem{'s' if n != 1 else ''}"
        return head + "".join(f"\n  - {p.format()}" for p in self.problems)


class UsageError(NipError):
    """A command-line option given a value it cannot take (or options that do not
    go together): ``nip`` exits with 2, as for an invalid configuration."""


class PluginError(NipError):
    """A plugin could not be loaded, or its hook implementations are invalid."""


class DuplicateKeyError(PluginError):
    """Two plugins registered the same key in one registry."""


class UnknownKeyError(NipError, KeyError):
    """A key is not in a registry. The message lists the known keys."""

    def __init__(self, message: str, key: str = "", known: Sequence[str] = ()):
        self.key = key
        self.known = tuple(known)
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class MissingPluginError(NipError):
    """Something needs a plugin that is not installed; the message says how to get
    it."""


class DatasetNotFoundError(NipError, FileNotFoundError):
    """A dataset is not available; the message says how to get it."""


class DatasetDamagedError(NipError):
    """A dataset's file is there but cannot be read (truncated, corrupt, of the
    wrong format); the message names the file and says how to replace it."""


class CheckpointError(NipError):
    """A checkpoint is missing, incomplete or does not match the run."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C (SIGINT), after saving what it could.

    A :class:`KeyboardInterrupt`, so code that stops on Ctrl-C still does; it
    carries what the ``nip`` command needs to say how to continue.

    Parameters
    ----------
    run_id : str
        The run's id.
    runs_dir : str
        The directory holding its run directory.
    checkpoint_iteration : int | None
        The iterations its newest checkpoint holds; ``None`` when it has none.
    checkpoint_note : str | None
        What its newest saved state holds, in words, for trainers whose state is
        not one per iteration (the staged text trainers: ``"stage
        'await_fine_tune_jobs' of iteration 0"``); ``None`` otherwise.
    """

    def __init__(
        self,
        run_id: str,
        runs_dir: str,
        checkpoint_iteration: int | None,
        checkpoint_note: str | None = None,
    ):
        super().__init__(run_id)
        self.run_id = run_id
        self.runs_dir = runs_dir
        self.checkpoint_iteration = checkpoint_iteration
        self.checkpoint_note = checkpoint_note

    def describe(self, terminated: bool = False) -> str:
        """How the run stopped and how to continue it, in words: what the ``nip``
        command prints (after ``nip: ``), and the ``error`` its ``run_info.json``
        records, so a stopped run does not read as a crash.

        Parameters
        ----------
        terminated : bool
            Whether SIGTERM stopped it (else Ctrl-C).
        """
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        command = f"nip resume {self.run_id}"
        if self.runs_dir != DEFAULT_RUNS_DIR:
            command += f" --runs-dir {self.runs_dir}"
        if self.checkpoint_note:
            return (
                f"{what}: run {self.run_id} saved its state ({self.checkpoint_note}); "
                f"continue it with: {command}"
            )
        if self.checkpoint_iteration is None:
            return (
                f"{what}: run {self.run_id} stopped before its first checkpoint; "
                f"start it again with: {command}"
            )
        return (
            f"{what}: run {self.run_id} saved a checkpoint after iteration "
            f"{self.checkpoint_iteration}; continue it with: {command}"
        )


DEFAULT_RUNS_DIR = "runs"
"""Where runs go unless ``--runs-dir`` (``runs_dir``) says otherwise."""


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C or SIGTERM; carries its directory, so the ``nip``
    command can say how to continue it (``nip run -m --resume-sweep DIR``)."""

    def __init__(self, sweep_dir: str):
        super().__init__(sweep_dir)
        self.sweep_dir = sweep_dir


class BackendError(NipError):
    """A model backend (for example an API) failed after its retries."""


class RemoteError(NipError):
    """A remote service (W&B) could not give what a run needs, after its retries.

    The message names what was fetched, the number of attempts, the last error and
    what to check.
    """


class RemoteNotFoundError(RemoteError):
    """A remote run or artifact does not exist (or these credentials cannot see
    it). Not retried."""
