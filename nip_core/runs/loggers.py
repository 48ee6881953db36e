"""Metric loggers: where per-iteration metrics and artifacts go.

Every logger subclasses :class:`MetricLogger`. The core registers ``jsonl`` (the run
directory's ``metrics.jsonl``, always on), ``wandb``, ``csv`` and ``tensorboard``
(the last two through TorchRL's logger classes) with the ``register_loggers`` hook;
plugins add more the same way. A run feeds all of its loggers through one
:class:`LoggerGroup`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nip_core.errors import LoggerWarning, MissingPluginError
from nip_core.runs.io import json_safe
from nip_core.runs.wandb_api import DEFAULT_WANDB_PROJECT

if TYPE_CHECKING:
    from nip_core.runs.run_dir import RunDirectory
    from nip_core.settings import ExperimentSettings


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts to dotted keys and tensors / NumPy scalars to floats."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
            continue
        if hasattr(value, "item") and callable(value.item):
            value = value.item()
        flat[name] = value
    return flat


class MetricLogger(ABC):
    """Base class of metric loggers.

    Parameters
    ----------
    run_dir : RunDirectory
        The run's directory.
    settings : ExperimentSettings
        The run's settings.
    hyper_params_dict : dict
        The run's hyper-parameters as a dict (for loggers that record a config).
    resume_from_step : int | None
        When resuming: the first step that will be logged again. Loggers that keep
        local files drop records at or after it, so a resumed run's history matches
        an uninterrupted one.
    """

    name: str = ""

    def __init__(
        self,
        run_dir: RunDirectory,
        settings: ExperimentSettings,
        hyper_params_dict: dict[str, Any],
        resume_from_step: int | None = None,
    ):
        self.run_dir = run_dir
        self.settings = settings
        self.hyper_params_dict = hyper_params_dict
        self.resume_from_step = resume_from_step

    @abstractmethod
    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Log one step's metrics (already flattened to ``name -> number``)."""

    def log_artifact(  # noqa: B027 (optional hook, nothing to do by default)
        self,
        path: str | os.PathLike,
        name: str,
        artifact_type: str,
        *,
        aliases: Sequence[str] = (),
    ) -> None:
        """Record a file or directory as an artifact (default: nothing to do, the
        file is already in the run directory).

        ``aliases`` name this version besides ``latest`` (checkpoints get
        ``iter_<n>``, see :func:`nip_core.runs.wandb_api.checkpoint_alias`)."""

    def finish(self) -> None:  # noqa: B027 (optional hook)
        """Flush and close."""


class JsonlLogger(MetricLogger):
    """Appends ``{"step": i, ...metrics}`` lines to ``metrics.jsonl``."""

    name = "jsonl"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.path = self.run_dir.metrics_path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume_from_step is not None:
            if self.path.is_file():
                self._truncate(self.resume_from_step)
            elif self.resume_from_step > 0:
                _warn_lost_records(
                    self.path,
                    f"missing: the run's metrics start again at step "
                    f"{self.resume_from_step}, the records of steps 0 to "
                    f"{self.resume_from_step - 1} are lost",
                )
        self._file = open(self.path, "a", encoding="utf-8")

    def _truncate(self, first_dropped_step: int) -> None:
        from nip_core.runs.io import atomic_write_text
        from nip_core.runs.run_dir import iter_metric_records

        # a line half written when the run was killed is the last one, passed
        # over; any other that cannot be read was damaged since
        damaged: list[int] = []
        records = [
            record
            for _, record in iter_metric_records(self.path, damaged=damaged)
            if record.get("step", -1) < first_dropped_step
        ]
        kept = [json.dumps(record) + "\n" for record in records]
        steps = {record.get("step") for record in records}
        missing = [step for step in range(first_dropped_step) if step not in steps]
        if damaged or missing:
            parts = []
            if damaged:
                parts.append(f"line(s) {_listing(damaged)} cannot be read")
            if missing:
                parts.append(f"step(s) {_listing(missing)} have no record")
            _warn_lost_records(
                self.path,
                f"before step {first_dropped_step}, where the run resumes: "
                + " and ".join(parts)
                + "; the resumed run's metrics lack them (the file keeps what "
                "could be read)",
            )
        atomic_write_text(self.path, "".join(kept))

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"step": step}
        # JSON has no NaN / inf: written as strings, so a reader sees what happened
        record.update(json_safe(dict(metrics)))
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def finish(self) -> None:
        if not self._file.closed:
            self._file.close()


class _TorchRlScalarLogger(MetricLogger):
    """Shared code of the loggers backed by ``torchrl.record.loggers``."""

    subdir: str = ""

    def _make(self, log_dir: Path) -> Any:
        raise NotImplementedError  # each subclass builds its TorchRL logger

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.log_dir = self.run_dir.path / self.subdir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._logger = self._make(self.log_dir)

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self._logger.log_scalar(name, float(value), step=step)


class CsvLogger(_TorchRlScalarLogger):
    """One CSV file per metric (``csv/scalars/<metric>.csv``: ``step,value`` lines),
    through :class:`torchrl.record.loggers.CSVLogger`."""

    name = "csv"
    subdir = "csv"

    def _make(self, log_dir: Path) -> Any:
        from torchrl.record.loggers import CSVLogger

        # TorchRL writes to <log_dir>/<exp_name>; an empty name keeps it at log_dir
        return CSVLogger(exp_name="", log_dir=str(log_dir))

    def finish(self) -> None:
        for f in getattr(self._logger.experiment, "files", {}).values():
            f.close()


class TensorboardLogger(_TorchRlScalarLogger):
    """TensorBoard event files under ``tensorboard/``, through
    :class:`torchrl.record.loggers.TensorboardLogger`."""

    name = "tensorboard"
    subdir = "tensorboard"

    def _make(self, log_dir: Path) -> Any:
        from torchrl.record.loggers import TensorboardLogger as TorchRlTensorboard

        return TorchRlTensorboard(exp_name="", log_dir=str(log_dir))

    def finish(self) -> None:
        self._logger.experiment.flush()
        self._logger.experiment.close()


class WandbLogger(MetricLogger):
    """Weights & Biases: metrics, the config, and artifacts (checkpoints, rollouts).

    The W&B run's id is the nip run id, so a resumed run continues the same W&B run.
    The mode comes from :meth:`ExperimentSettings.resolved_wandb_mode` (offline when
    no credentials are found); local files go to ``<run_dir>/wandb/``.
    """

    name = "wandb"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        import wandb

        self._wandb = wandb
        mode = self.settings.resolved_wandb_mode()
        try:
            self.run = self._init(mode)
        except Exception as error:
            if mode != "online":
                raise
            # A run never fails for want of a network: it logs offline instead,
            # to be uploaded later
            warnings.warn(
                f"W&B could not start run {self.run_dir.run_id} online "
                f"({type(error).__name__}: {error}); it logs to W&B offline in "
                f"{self.run_dir.path / 'wandb'} instead: upload it later with "
                "`wandb sync`",
                LoggerWarning,
                stacklevel=2,
            )
            mode = "offline"
            # the failed attempt keeps W&B's service holding the run id: start
            # afresh
            with contextlib.suppress(Exception):
                wandb.teardown()
            self.run = self._init(mode)
        self._mode = mode
        self.run_dir.write_run_info(
            wandb_mode=mode,
            wandb_run_path=None if mode == "disabled" else _run_path(self.run),
            wandb_dir=None if mode == "disabled" else str(getattr(self.run, "dir", "")),
        )

    def _init(self, mode: str) -> Any:
        from nip_core.settings import redact_secrets

        config = {k: v for k, v in self.hyper_params_dict.items() if k != "_meta"}
        # a credential pasted into a W&B setting goes neither to W&B nor into its
        # files in the run directory: shown by its variable's name, as in
        # settings.json
        project, entity, tags = redact_secrets(
            [
                self.settings.wandb_project or DEFAULT_WANDB_PROJECT,
                self.settings.wandb_entity,
                list(self.settings.wandb_tags),
            ]
        )
        return self._wandb.init(
            project=project,
            entity=entity,
            id=self.run_dir.run_id,
            name=self.run_dir.run_id,
            dir=str(self.run_dir.path),
            mode=mode,
            tags=tags or None,
            config=config,
            resume="allow",
            reinit="create_new",
            settings=self._wandb.Settings(silent=True, console="off"),
        )

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_artifact(
        self,
        path: str | os.PathLike,
        name: str,
        artifact_type: str,
        *,
        aliases: Sequence[str] = (),
    ) -> None:
        if self._mode == "disabled":
            return
        artifact = self._wandb.Artifact(name=name, type=artifact_type)
        path = Path(path)
        if path.is_dir():
            artifact.add_dir(str(path))
        else:
            artifact.add_file(str(path))
        # explicit aliases replace W&B's default ["latest"]: keep it
        self.run.log_artifact(artifact, aliases=["latest", *aliases])

    def finish(self) -> None:
        self.run.finish()


def _run_path(run: Any) -> str | None:
    try:
        return "/".join(run.path) if isinstance(run.path, list) else str(run.path)
    except Exception:  # offline runs may not know their entity
        return None


def _takes_aliases(method: Any) -> bool:
    """Whether a logger's ``log_artifact`` accepts ``aliases`` (plugin loggers
    written before the keyword existed do not)."""
    import inspect

    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "aliases" or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )


class LoggerGroup:
    """Fans metrics and artifacts out to several loggers."""

    def __init__(self, loggers: Iterable[MetricLogger]):
        self.loggers = list(loggers)

    def __getitem__(self, name: str) -> MetricLogger:
        for logger in self.loggers:
            if logger.name == name:
                return logger
        raise KeyError(name)

    def names(self) -> list[str]:
        return [logger.name for logger in self.loggers]

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        flat = flatten_metrics(metrics)
        for logger in self.loggers:
            logger.log_metrics(step, flat)

    def log_artifact(
        self,
        path: str | os.PathLike,
        name: str,
        artifact_type: str,
        *,
        aliases: Sequence[str] = (),
    ) -> None:
        for logger in self.loggers:
            if aliases and _takes_aliases(logger.log_artifact):
                logger.log_artifact(path, name, artifact_type, aliases=tuple(aliases))
            else:
                logger.log_artifact(path, name, artifact_type)

    def finish(self) -> None:
        for logger in self.loggers:
            logger.finish()


def _listing(numbers: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _warn_lost_records(path: Path, what: str) -> None:
    """A resume found records of the metrics it keeps damaged or missing."""
    import warnings

    from nip_core.errors import CheckpointWarning

    warnings.warn(f"{path}: {what}", CheckpointWarning, stacklevel=4)


def truncate_metrics_records(run_dir: RunDirectory, keep: int) -> None:
    """Keep the first ``keep`` records of ``metrics.jsonl`` (and drop a line half
    written when the run was killed).

    Used when a resumed trainer knows how many records its saved state accounts for.
    """
    from nip_core.runs.io import atomic_write_text

    path = run_dir.metrics_path
    if not path.is_file():
        if keep > 0:
            _warn_lost_records(
                path,
                f"missing: the {keep} record(s) the run had logged before the "
                "stage it resumes at are lost",
            )
        return
    kept: list[str] = []
    damaged: list[int] = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for number, line in enumerate(lines):
        if len(kept) >= keep:
            break
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError:
            if number < len(lines) - 1 or line.endswith("\n"):
                damaged.append(number + 1)
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    if damaged or len(kept) < keep:
        _warn_lost_records(
            path,
            f"holds {len(kept)} readable record(s) of the {keep} the run had logged "
            "before the stage it resumes at"
            + (f" (line(s) {_listing(damaged)} cannot be read)" if damaged else "")
            + ": the resumed run's metrics lack the others",
        )
    atomic_write_text(path, "".join(kept))


def build_loggers(
    run_dir: RunDirectory,
    settings: ExperimentSettings,
    hyper_params_dict: dict[str, Any],
    resume_from_step: int | None = None,
) -> LoggerGroup:
    """Build the loggers ``settings.active_loggers()`` names, from the registry."""
    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref

    registry = get_plugin_manager().loggers
    loggers = []
    for name in settings.active_loggers():
        spec = registry[name]
        try:
            cls = resolve_ref(spec.logger_class)
            loggers.append(cls(run_dir, settings, hyper_params_dict, resume_from_step))
        except ImportError as error:
            LoggerGroup(loggers).finish()
            hint = spec.install_hint() if spec.requires else f"pip install {error.name}"
            raise MissingPluginError(
                f"the {name} logger cannot start, a package it needs is missing "
                f"({error}); install it with: {hint}"
            ) from error
    return LoggerGroup(loggers)


def last_elapsed_seconds(run_dir: RunDirectory) -> float | None:
    """Where a resumed run's clock goes on from: the ``timing.elapsed_s`` of the
    last record in ``metrics.jsonl`` that has one; 0 without any record; ``None``
    when there are records but none has the clock (a run started before nip-core
    logged it: its clock cannot be known, and it is left without one). Call it
    after the records the run continues from were kept
    (:func:`truncate_metrics_records` or the JSONL logger's truncation)."""
    from nip_core.runs.run_dir import ELAPSED_METRIC, iter_metric_records

    elapsed: float | None = None
    records = 0
    for _, record in iter_metric_records(run_dir.metrics_path):
        records += 1
        value = record.get(ELAPSED_METRIC)
        if isinstance(value, int | float) and math.isfinite(value):
            elapsed = float(value)
    return 0.0 if records == 0 else elapsed
