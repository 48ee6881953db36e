"""Running an experiment: the entry points ``run_experiment``, ``prepare_experiment``
and ``resume_run``.

``run_experiment(hyper_params)`` does, in order (see ``docs/experiment.md``):

1. base run: with ``base_run.base_run_type`` ``"parameters"`` or ``"rerun_tests"``,
   copy the hyper-parameters of a previous run (a local run directory, or a W&B run),
   keeping the fields marked as preserved for that type;
2. settings and run directory: ``<runs_dir>/<run_id>/`` with ``hyper_params.json``
   and ``settings.json``; if the directory already holds a checkpoint of the same
   experiment, the run continues from it (no prompt);
3. loggers (``jsonl`` always, ``wandb`` when configured, others as named);
4. the scenario instance (:func:`nip_core.factory.build_scenario_instance`);
5. the trainer, from the trainer registry, and ``trainer.train()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from nip_core import distributed
from nip_core.errors import (
    BackendError,
    CheckpointError,
    ConfigProblem,
    DatasetDamagedError,
    DatasetNotFoundError,
    MissingPluginError,
    NipConfigError,
    PluginError,
    RunInterrupted,
)
from nip_core.parameters.hyper_parameters import datasets_in, is_path_like_dataset
from nip_core.runs.context import IterationCallback, RunContext, StageCallback
from nip_core.runs.interrupts import interrupts_shielded
from nip_core.runs.run_dir import RunDirectory, new_run_id
from nip_core.settings import ExperimentSettings, check_device

logger = logging.getLogger(__name__)


@attrs.define
class RunResult:
    """What :func:`run_experiment` returns.

    Parameters
    ----------
    run_id : str
        The run's id.
    run_dir : Path | None
        The run directory (``None`` for test runs, which write nothing).
    metrics : list[dict]
        Every metrics record logged by this process, ``{"step": i, ...}``.
    trainer : Trainer
        The trainer, with the trained agents in its scenario instance.
    total_iterations : int
        The run's total iteration count (all progress-bar loops).
    resumed_from : int | None
        The iteration the run resumed from, when it continued a checkpoint.
    """

    run_id: str
    run_dir: Path | None
    metrics: list[dict[str, Any]]
    trainer: Any
    total_iterations: int
    resumed_from: int | None = None


@attrs.define
class PreparedExperiment:
    """What :func:`prepare_experiment` returns: everything built, nothing trained."""

    hyper_params: Any
    settings: ExperimentSettings
    scenario_instance: Any
    trainer: Any
    total_iterations: int


# --------------------------------------------------------------------------------------
# Base runs


def _params_dict_of_base_run(base_run: Any, settings: ExperimentSettings) -> dict:
    if base_run.source == "local":
        runs_dir = Path(settings.runs_dir).expanduser()
        run_dir = RunDirectory(runs_dir / base_run.run_id)
        if not run_dir.path.is_dir():
            # a misspelt id: name the setting and the run it probably meant
            raise NipConfigError(
                ConfigProblem(
                    "base_run.run_id",
                    _no_such_run_message(base_run.run_id, runs_dir, resume_hint=False),
                    base_run.run_id,
                )
            )
        return run_dir.read_hyper_params()
    from nip_core.runs.wandb_api import fetch_run_config

    return fetch_run_config(
        base_run.wandb_entity or settings.wandb_entity,
        base_run.wandb_project or settings.wandb_project,
        base_run.run_id,
    )


def _get_path(data: dict, path: str) -> Any:
    for part in path.split("."):
        data = data[part]
    return data


def _set_path(data: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        data = data.setdefault(part, {})
    data[parts[-1]] = value


def with_environment(hyper_params: Any) -> Any:
    """``hyper_params`` with what the sections the run reads would take from the
    environment written in (:meth:`SubParameters.resolved_from_environment
    <nip_core.parameters.SubParameters.resolved_from_environment>`: the endpoint of
    ``$OPENAI_BASE_URL`` for a text run on the ``openai`` backend), so that the
    saved parameters, and a resume, use what this run used."""
    from nip_core.parameters import HyperParameters
    from nip_core.parameters.validation import prefixed
    from nip_core.text.groups import text_backend_sections

    changed = {}
    problems = []
    for name in sorted(text_backend_sections(hyper_params)):
        section = hyper_params.sections.get(name)
        if section is None:
            continue
        try:
            resolved = section.resolved_from_environment()
        except NipConfigError as error:
            problems.extend(prefixed(error.problems, name))
            continue
        if resolved is not section:
            changed[name] = resolved.to_dict()
    if problems:
        raise NipConfigError(problems)
    if not changed:
        return hyper_params
    data = hyper_params.to_dict()
    data.update(changed)
    with warnings.catch_warnings():
        # what the parameters warn about was said when they were built
        warnings.simplefilter("ignore")
        return HyperParameters.from_dict(data)


def absolute_dataset_path(name: Any) -> Any:
    """A dataset name that is a path to one's own data (``./data/mine``,
    ``~/sets/x``), made absolute (``~`` expanded, against the working directory);
    any other name as it is."""
    if not isinstance(name, str) or not is_path_like_dataset(name):
        return name
    return os.path.abspath(os.path.expanduser(name))


def with_absolute_dataset(hyper_params: Any) -> Any:
    """``hyper_params`` with a relative own-data path made absolute
    (:func:`absolute_dataset_path`), so that the saved parameters name the data
    this run read wherever the run is resumed or re-run from."""
    dataset = getattr(hyper_params, "dataset", None)
    absolute = absolute_dataset_path(dataset)
    if absolute == dataset:
        return hyper_params
    from nip_core.parameters import HyperParameters

    data = hyper_params.to_dict()
    data["dataset"] = absolute
    with warnings.catch_warnings():
        # what the parameters warn about was said when they were built
        warnings.simplefilter("ignore")
        return HyperParameters.from_dict(data)


def apply_base_run(hyper_params: Any, settings: ExperimentSettings) -> Any:
    """Copy the hyper-parameters of the base run, if ``base_run`` names one.

    The ``base_run`` section itself and the fields preserved for the base-run type
    (e.g. ``rl.num_test_iterations`` for ``"rerun_tests"``) keep their current
    values.
    """
    base_run = getattr(hyper_params, "base_run", None)
    if base_run is None or base_run.base_run_type == "none":
        return hyper_params
    from nip_core.parameters.base_run import preserved_paths

    base_dict = _params_dict_of_base_run(base_run, settings)
    current = hyper_params.to_dict()
    merged = json.loads(json.dumps(base_dict))
    merged["base_run"] = current["base_run"]
    for path in preserved_paths(hyper_params, base_run.base_run_type):
        try:
            _set_path(merged, path, _get_path(current, path))
        except (KeyError, TypeError):
            continue
    with datasets_in(settings.data_dir):
        return type(hyper_params).from_dict(merged)


def _base_run_checkpoint(
    hyper_params: Any, settings: ExperimentSettings
) -> dict | None:
    """The latest checkpoint of the base run (for ``"rerun_tests"``)."""
    base_run = hyper_params.base_run
    if base_run.source == "local":
        run_dir = RunDirectory(Path(settings.runs_dir) / base_run.run_id)
        point = get_trainer_class(hyper_params).find_resume_point(run_dir, settings)
        checkpoint = None if point is None else point.checkpoint
    else:
        from nip_core.runs.wandb_api import download_checkpoint

        checkpoint = download_checkpoint(
            base_run.wandb_entity or settings.wandb_entity,
            base_run.wandb_project or settings.wandb_project,
            base_run.run_id,
            "latest",
            map_location=settings.device,
        )
    if checkpoint is None:
        raise CheckpointError(
            f"base run {base_run.run_id!r} has no checkpoint to re-run the tests of"
        )
    return checkpoint


# --------------------------------------------------------------------------------------
# Building


def get_trainer_class(hyper_params: Any) -> type:
    """The trainer class ``hyper_params.trainer`` names (trainer registry)."""
    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref

    spec = get_plugin_manager().trainers[hyper_params.trainer]
    return resolve_ref(spec.trainer_class)


def prepare_experiment(
    hyper_params: Any,
    settings: ExperimentSettings | None = None,
    *,
    report: bool = False,
) -> PreparedExperiment:
    """Build everything a run needs (datasets cached, agents, trainer), train nothing.

    Useful to fill the dataset and embedding caches before launching a sweep, and to
    learn how long a run is: ``prepare_experiment(hp).total_iterations``.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment.
    settings : ExperimentSettings, optional
        Its settings (defaults otherwise).
    report : bool
        Also print the total number of iterations.
    """
    from nip_core.factory import build_scenario_instance

    settings = settings if settings is not None else ExperimentSettings()
    hyper_params = apply_base_run(hyper_params, settings)
    scenario_instance = build_scenario_instance(hyper_params, settings)
    trainer_class = get_trainer_class(hyper_params)
    trainer = trainer_class(hyper_params, scenario_instance, settings, RunContext())
    total = trainer.get_total_num_iterations()
    if report:
        print(f"nip: experiment prepared; {total} iterations in total")
    return PreparedExperiment(hyper_params, settings, scenario_instance, trainer, total)


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), so that a
    reused pid is not taken for the process that wrote it; ``None`` where /proc
    does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _this_process() -> dict[str, Any]:
    """What ``run_info.json`` records of the process driving a run."""
    import socket

    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "start": _process_start(pid)}


def _run_lock_path(run_dir: RunDirectory) -> Path:
    return run_dir.path.parent / f".{run_dir.path.name}.lock"


@contextlib.contextmanager
def _run_lock(run_dir: RunDirectory) -> Iterator[None]:
    """Hold an exclusive lock on the run for the block: a second process driving
    the same run on this machine (two ``nip resume`` started together, a requeued
    job beside a manual resume) is refused at once, however close together they
    start. The lock is a hidden file beside the run directory
    (``<runs_dir>/.<run_id>.lock``, left in place: removing it would let two
    processes lock two different files), taken with ``flock``, which the system
    releases when the process ends, however it ends. Where ``flock`` does not
    exist (Windows) or the file system refuses it, only the pid check of
    :func:`_refuse_run_in_progress` applies."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    lock_path = _run_lock_path(run_dir)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise CheckpointError(
                f"run {run_dir.path.name} is being driven by {holder} on this "
                "machine; two processes driving one run would write over each "
                "other's checkpoints and metrics. Stop that process first (Ctrl-C "
                "saves a checkpoint), then resume it with "
                f"`nip resume {run_dir.path.name}`"
            ) from None
        except OSError:
            yield  # a file system without locks: the pid check alone
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def _refuse_run_in_progress(run_dir: RunDirectory) -> None:
    """Refuse to drive a run that another live process on this machine drives (a
    second terminal's ``nip resume``, a requeued job beside the old one): both
    would write its checkpoints and metrics.

    Known only for a run ``running`` on this host whose process still lives (the
    same pid and start time); a run on another host, or one whose process died
    without a word (SIGKILL, a power cut), is not refused.
    """
    import socket

    if not run_dir.run_info_path.is_file():
        return
    info = run_dir.read_run_info()
    process = info.get("process")
    if info.get("status") != "running" or not isinstance(process, dict):
        return
    pid = process.get("pid")
    if (
        not isinstance(pid, int)
        or pid == os.getpid()
        or process.get("host") != socket.gethostname()
    ):
        return
    start = _process_start(pid)
    if start is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass  # alive, another user's
    elif start != process.get("start"):
        return  # that process is gone; the pid was reused
    raise CheckpointError(
        f"run {run_dir.path.name} is running in process {pid} on this machine; "
        "two processes driving one run would write over each other's checkpoints "
        f"and metrics. Stop that process first (Ctrl-C saves a checkpoint), then "
        f"resume it with `nip resume {run_dir.path.name}`"
    )


def _warn_starting_again(run_dir: RunDirectory) -> None:
    """Say so when a run that logged iterations has nothing to resume from (it was
    stopped before its first checkpoint, or its checkpoints are gone): it starts
    again from iteration 0 and its metrics are written anew."""
    from nip_core.errors import CheckpointWarning

    try:
        logged = sum(1 for record in run_dir.read_metrics() if "step" in record)
    except (OSError, ValueError):
        logged = 0
    if logged:
        warnings.warn(
            f"run {run_dir.path.name} has {logged} logged "
            f"record{'s' if logged != 1 else ''} but no checkpoint to resume from "
            f"(none in {run_dir.checkpoints_dir}): it starts again from iteration "
            "0, and its metrics are written anew",
            CheckpointWarning,
            stacklevel=3,
        )


def _refuse_run_without_record(run_dir: RunDirectory) -> None:
    """Refuse a directory that holds a run's work (checkpoints, metrics) but not
    its ``hyper_params.json``: which experiment it is cannot be told, so neither
    resuming it nor writing a new run over it is safe."""
    if run_dir.exists() or not run_dir.path.is_dir():
        return
    has_checkpoints = run_dir.checkpoints_dir.is_dir() and any(
        run_dir.checkpoints_dir.iterdir()
    )
    has_metrics = (
        run_dir.metrics_path.is_file() and run_dir.metrics_path.stat().st_size > 0
    )
    if has_checkpoints or has_metrics:
        held = " and ".join(
            what
            for what, present in (
                ("checkpoints", has_checkpoints),
                ("metrics", has_metrics),
            )
            if present
        )
        raise CheckpointError(
            f"{run_dir.path} holds a run's {held} but no "
            f"{run_dir.hyper_params_path.name}, so which experiment it is cannot "
            "be told; nothing was written. "
            "Choose another run_id, or put the run's hyper_params.json back to "
            "resume it"
        )


def _failed_with_nothing_to_keep(run_dir: RunDirectory) -> bool:
    """Whether ``run_dir`` is a run that failed before it saved anything: no
    checkpoint, no metrics, no rollout sample (its ``hyper_params.json`` and
    ``run_info.json`` are all it wrote)."""
    try:
        failed = run_dir.read_run_info().get("status") == "failed"
        metrics = run_dir.read_metrics()
    except (OSError, ValueError):
        return False

    def empty(directory: Any) -> bool:
        return not directory.exists() or not any(directory.iterdir())

    return (
        failed
        and not metrics
        and empty(run_dir.checkpoints_dir)
        and empty(run_dir.rollouts_dir)
    )


def _same_experiment(saved: dict, current: dict, ignore: Sequence[str] = ()) -> bool:
    """Whether saved hyper-parameters describe the ``current`` experiment.

    A dict saved by an older version is read back first (migrations, sections added
    since then at their defaults), so its run still counts as the same experiment.
    The dotted paths in ``ignore`` (how the run reaches its services, which ``nip
    resume --set`` may change) do not count.
    """

    def canonical(d: dict) -> str:
        # a copy (the caller's dict stays as it is), without what does not count
        d = json.loads(json.dumps({k: v for k, v in d.items() if k != "_meta"}))
        # a run saved before own-data paths were made absolute named it as given
        if "dataset" in d:
            d["dataset"] = absolute_dataset_path(d["dataset"])
        for path in ignore:
            *parents, leaf = path.split(".")
            node: Any = d
            for key in parents:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict):
                node.pop(leaf, None)
        return json.dumps(d, sort_keys=True)

    if canonical(saved) == canonical(current):
        return True
    from nip_core.errors import NipError

    try:
        read_back = _read_quietly(saved).to_dict()
    except NipError:
        return False
    return canonical(read_back) == canonical(current)


def _read_quietly(data: Mapping[str, Any]) -> Any:
    """Saved hyper-parameters read back without their warnings (a conversion's
    list of changes): for comparisons, where the run's own reading has said them
    once already."""
    from nip_core.errors import NipWarning
    from nip_core.parameters import HyperParameters

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NipWarning)
        return HyperParameters.from_dict(dict(data))


def experiment_differences(
    saved: dict, current: dict, ignore: Sequence[str] = (), limit: int = 5
) -> str:
    """Where two experiments' hyper-parameter dicts differ, in words: ``" (rl.
    num_iterations: 2 there, 4 here)"``, the first ``limit`` dotted paths; ``""``
    when none can be named."""
    from nip_core.errors import NipError

    try:
        saved = _read_quietly(saved).to_dict()
    except NipError:
        pass
    ignored = set(ignore) | {"_meta"}

    def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(node, dict) and node:
            out: dict[str, Any] = {}
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                if path not in ignored:
                    out.update(leaves(value, path))
            return out
        return {prefix: node}

    there, here = leaves(saved), leaves(current)
    paths = sorted(
        p
        for p in set(there) | set(here)
        if there.get(p, _MISSING) != here.get(p, _MISSING)
    )
    if not paths:
        return ""

    def shown(value: Any) -> str:
        return "unset" if value is _MISSING else json.dumps(value)

    parts = [
        f"{p}: {shown(there.get(p, _MISSING))} there, {shown(here.get(p, _MISSING))} "
        "here"
        for p in paths[:limit]
    ]
    more = f", and {len(paths) - limit} more" if len(paths) > limit else ""
    return " (" + "; ".join(parts) + more + ")"


_MISSING = object()


def _saved_and_current(
    run_dir: Any, hyper_params: Any, settings: ExperimentSettings
) -> tuple[RunDirectory, dict | None, dict, Sequence[str]]:
    """The run directory, its saved hyper-parameters (``None`` when unreadable),
    ``hyper_params``' dict as :func:`run_experiment` would save it, and the paths
    that do not count (how the run reaches its services)."""
    from nip_core.errors import NipError
    from nip_core.parameters import preserved_paths
    from nip_core.parameters.base_run import RESUME

    if not isinstance(run_dir, RunDirectory):
        run_dir = RunDirectory(Path(run_dir))
    hyper_params = apply_base_run(hyper_params, settings)
    try:
        saved = run_dir.read_hyper_params()
    except (NipError, OSError, ValueError):
        saved = None
    return run_dir, saved, hyper_params.to_dict(), preserved_paths(hyper_params, RESUME)


def run_holds_experiment(
    run_dir: Any, hyper_params: Any, settings: ExperimentSettings
) -> bool:
    """Whether the run directory ``run_dir`` (a path or :class:`RunDirectory`)
    holds ``hyper_params``'s experiment, as :func:`run_experiment` decides it
    (after the base run's settings are applied; how the run reaches its services
    does not count). ``False`` when it holds no readable hyper-parameters.

    A run that failed before it saved anything counts as holding it: the
    experiment would take its place there."""
    run_dir, saved, current, ignore = _saved_and_current(
        run_dir, hyper_params, settings
    )
    if saved is None:
        return False
    return _same_experiment(saved, current, ignore) or _failed_with_nothing_to_keep(
        run_dir
    )


def run_differences(
    run_dir: Any, hyper_params: Any, settings: ExperimentSettings
) -> str:
    """Where the experiment in ``run_dir`` differs from ``hyper_params``', in
    words (:func:`experiment_differences`); ``""`` when it cannot be read."""
    _, saved, current, ignore = _saved_and_current(run_dir, hyper_params, settings)
    return "" if saved is None else experiment_differences(saved, current, ignore)


def run_experiment(
    hyper_params: Any,
    settings: ExperimentSettings | None = None,
    *,
    run_id: str | None = None,
    callbacks: Sequence[IterationCallback] = (),
    stage_callbacks: Sequence[StageCallback] = (),
) -> RunResult:
    """Run an experiment from its hyper-parameters.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment (reproducible from this alone).
    settings : ExperimentSettings, optional
        Device, run directory, loggers, checkpointing (defaults otherwise).
    run_id : str, optional
        The run's id (overrides ``settings.run_id``). When ``<runs_dir>/<run_id>``
        holds a checkpoint of the same experiment, the run continues from it.
    callbacks : Sequence[IterationCallback]
        ``callback(trainer, iteration, metrics)`` after each training iteration.
    stage_callbacks : Sequence[StageCallback]
        ``callback(trainer, iteration, stage)`` after each stage of staged (text)
        trainers.

    Returns
    -------
    RunResult

    Raises
    ------
    CheckpointError
        When the run directory holds a different experiment.
    """
    with contextlib.ExitStack() as held:
        return _run_experiment(
            hyper_params,
            settings,
            run_id=run_id,
            callbacks=callbacks,
            stage_callbacks=stage_callbacks,
            held=held,
        )


def _run_experiment(
    hyper_params: Any,
    settings: ExperimentSettings | None,
    *,
    run_id: str | None,
    callbacks: Sequence[IterationCallback],
    stage_callbacks: Sequence[StageCallback],
    held: contextlib.ExitStack,
) -> RunResult:
    """:func:`run_experiment`, with ``held`` holding the run's lock until it
    returns."""
    from nip_core.factory import build_scenario_instance
    from nip_core.runs.loggers import (
        build_loggers,
        last_elapsed_seconds,
        truncate_metrics_records,
    )

    settings = settings if settings is not None else ExperimentSettings()
    # Before anything is written: a run refused here leaves no run directory
    check_device(settings)
    if run_id is not None:
        settings = attrs.evolve(settings, run_id=run_id)
    if settings.run_id is None:
        settings = attrs.evolve(settings, run_id=new_run_id())
    # Under torchrun: join the process group, take rank 0's run id and this
    # process's GPU (nothing changes in a single process)
    settings = distributed.prepare_process_settings(settings)
    hyper_params = apply_base_run(hyper_params, settings)
    # what the run takes from the environment is saved with it
    hyper_params = with_environment(hyper_params)
    hyper_params = with_absolute_dataset(hyper_params)
    params_dict = hyper_params.to_dict()

    trainer_class = get_trainer_class(hyper_params)
    from nip_core.trainers.sharding import check_sharding

    # Refuse a sharded run the trainer or the processes cannot do, before writing
    check_sharding(hyper_params, trainer_class)
    run_dir: RunDirectory | None = None
    resume = None
    # A resume builds its scenario and checks its data before it changes anything
    # in the run directory: one refused there leaves the run as it was
    scenario_instance = None
    if not settings.test_run:
        run_dir = RunDirectory.for_settings(settings)
        # Across processes, rank 0 alone writes the run directory; the others read
        # the checkpoint to resume from once it has
        with distributed.main_process_first():
            _refuse_run_without_record(run_dir)
            if distributed.is_main_process():
                held.enter_context(_run_lock(run_dir))
                _refuse_run_in_progress(run_dir)
            if run_dir.exists():
                from nip_core.parameters import preserved_paths
                from nip_core.parameters.base_run import RESUME

                connection = preserved_paths(hyper_params, RESUME)
                if not _same_experiment(
                    run_dir.read_hyper_params(), params_dict, connection
                ):
                    if not _failed_with_nothing_to_keep(run_dir):
                        differences = experiment_differences(
                            run_dir.read_hyper_params(), params_dict, connection
                        )
                        raise CheckpointError(
                            f"run directory {run_dir.path} holds a different "
                            f"experiment{differences}; choose another run_id, or "
                            f"resume it with `nip resume {settings.run_id}`"
                        )
                    # A run refused while it was being built (a config problem
                    # only the built experiment shows): this one takes its place
                    if distributed.is_main_process():
                        run_dir.run_info_path.unlink(missing_ok=True)
                else:
                    resume = trainer_class.find_resume_point(run_dir, settings)
                    if resume is None:
                        _warn_starting_again(run_dir)
            if resume is not None and distributed.is_main_process():
                scenario_instance = build_scenario_instance(hyper_params, settings)
                try:
                    _record_or_check_datasets(
                        run_dir, scenario_instance, hyper_params, resume
                    )
                except BaseException:
                    scenario_instance.close()
                    raise
            if distributed.is_main_process():
                run_dir.create()
                if resume is not None:
                    _remove_stale_temporary_files(run_dir)
                if resume is None:
                    run_dir.write_hyper_params(params_dict)
                run_dir.write_settings(settings)
                run_dir.write_run_info(status="running", process=_this_process())
            else:
                run_dir = None

    resumed_from = None if resume is None else resume.iteration
    loggers = None
    if run_dir is not None:
        resume_from_step: int | None = resumed_from or 0
        if resume is not None and resume.metrics_records is not None:
            # The trainer's state says how many records it had logged: keep exactly
            # those (a stage may have logged at the step it resumes at)
            truncate_metrics_records(run_dir, resume.metrics_records)
            resume_from_step = None
        try:
            loggers = build_loggers(
                run_dir, settings, params_dict, resume_from_step=resume_from_step
            )
        except BaseException as error:
            if scenario_instance is not None:
                scenario_instance.close()
            # the run directory says why the run stopped, and a Ctrl-C here gets
            # the resume hint like one during training
            interrupted = isinstance(error, KeyboardInterrupt)
            stop = (
                RunInterrupted(settings.run_id, settings.runs_dir, resumed_from)
                if interrupted
                else None
            )
            with interrupts_shielded() if interrupted else contextlib.nullcontext():
                _mark_stopped(run_dir, error, stop)
                if resume is None:
                    _remove_if_never_started(run_dir, error)
            if stop is not None:
                raise stop from error
            raise
    # A resumed run's clock goes on from its last kept record (None: it had none)
    elapsed_offset: float | None = (
        last_elapsed_seconds(run_dir)
        if run_dir is not None and resume is not None
        else 0.0
    )
    run = RunContext(
        run_dir,
        loggers,
        callbacks,
        None if resume is None else resume.checkpoint,
        stage_callbacks=stage_callbacks,
        metrics_records=0 if resume is None else (resume.metrics_records or 0),
        elapsed_offset=elapsed_offset,
    )
    base_run = getattr(hyper_params, "base_run", None)

    try:
        # Inside the try: a failed download marks the run failed and closes loggers
        if base_run is not None and base_run.base_run_type == "rerun_tests":
            run.base_checkpoint = _base_run_checkpoint(hyper_params, settings)
        if scenario_instance is None:
            scenario_instance = build_scenario_instance(hyper_params, settings)
            if run_dir is not None:
                _record_or_check_datasets(
                    run_dir, scenario_instance, hyper_params, resume
                )
        trainer = trainer_class(hyper_params, scenario_instance, settings, run)
        total = trainer.get_total_num_iterations()
        try:
            trainer.train()
        finally:
            scenario_instance.close()
    except BaseException as error:
        # After a Ctrl-C, another one while the stop is recorded would leave the
        # run marked running, its logs unclosed and the resume command unsaid
        interrupted = isinstance(error, KeyboardInterrupt)
        stop = (
            RunInterrupted(
                settings.run_id,
                settings.runs_dir,
                run.checkpoint_iteration,
                run.checkpoint_note,
            )
            if interrupted and run_dir is not None
            else None
        )
        with interrupts_shielded() if interrupted else contextlib.nullcontext():
            if run_dir is not None:
                _mark_stopped(run_dir, error, stop)
            run.finish()
            if run_dir is not None and resume is None:
                _remove_if_never_started(run_dir, error)
        if stop is not None:
            raise stop from error
        raise
    if run_dir is not None:
        run_dir.write_run_info(status="finished", error=None)
    run.finish()
    if run_dir is not None:
        from nip_core.analysis.plots import write_run_plots

        write_run_plots(run_dir.path)
    return RunResult(
        run_id=settings.run_id,
        run_dir=None if run_dir is None else run_dir.path,
        metrics=run.history,
        trainer=trainer,
        total_iterations=total,
        resumed_from=resumed_from,
    )


def _no_such_run_message(
    run_id: str, runs_dir: Path, *, resume_hint: bool = True
) -> str:
    from nip_core.parameters.validation import closest

    message = f"no run {run_id!r} in {runs_dir}"
    if runs_dir.is_dir():
        runs = sorted(p.name for p in runs_dir.iterdir() if RunDirectory(p).exists())
        suggestion = closest(run_id, runs)
        if suggestion is not None:
            message += f"; did you mean {suggestion!r}?"
        elif runs:
            shown = ", ".join(runs[-5:])
            message += f" (its newest runs: {shown})"
    else:
        message += " (no such directory)"
    if not resume_hint:
        return message
    return (
        message + ("" if message.endswith("?") else ".") + " A run started with "
        f"run.runs_dir=DIR is resumed with `nip resume {run_id} --runs-dir DIR`"
    )


_NOT_BUILDABLE_HERE = (
    NipConfigError,
    DatasetNotFoundError,
    DatasetDamagedError,
    MissingPluginError,
    PluginError,
    BackendError,
)
"""Errors that say the experiment cannot be built as configured on this machine (a
setting only the built experiment refuses, data not there or damaged, a package
missing, a plugin whose registered class reference names nothing, a text backend
that cannot serve the run: no API key, a model that is not there): fixed by
changing the config or the machine, not by resuming."""


def _remove_stale_temporary_files(run_dir: RunDirectory) -> None:
    """Remove the half-written files a process killed while saving left (a
    checkpoint's ``.latest.pt.<random>.tmp``): the rename that would have made
    them a file never happened, and nothing reads them."""
    from nip_core.runs.io import stale_temporary_files

    for directory in (run_dir.path, run_dir.checkpoints_dir):
        for path in stale_temporary_files(directory):
            with contextlib.suppress(OSError):
                path.unlink()
                logger.info("removed %s, left by a process killed while saving", path)


def _remove_if_never_started(run_dir: RunDirectory, error: BaseException) -> None:
    """Remove the directory of a new run that could not be built (one of
    :data:`_NOT_BUILDABLE_HERE`) and saved nothing: it would only be a failed run
    among the user's runs. Other failures keep theirs, to be resumed or read."""
    if not isinstance(error, _NOT_BUILDABLE_HERE) or not _failed_with_nothing_to_keep(
        run_dir
    ):
        return
    try:
        shutil.rmtree(run_dir.path)
    except OSError as remove_error:
        logger.warning("could not remove run %s: %s", run_dir.path, remove_error)
    else:
        logger.info("run %s removed: it failed before it started", run_dir.path)
        # its lock file too, while this process still holds the lock: a process
        # that opened it meanwhile is refused, a later one makes a new one
        with contextlib.suppress(OSError):
            _run_lock_path(run_dir).unlink()


def _mark_stopped(
    run_dir: RunDirectory, error: BaseException, stop: RunInterrupted | None
) -> None:
    """Record why a run stopped, if the run directory can still be written (a full
    or read-only disk may be why it stopped): ``failed`` with the error, or, when
    Ctrl-C or SIGTERM stopped it (``stop``), ``killed`` with what the ``nip``
    command says: how it stopped and how to continue it."""
    if stop is None:
        status, reason = "failed", f"{type(error).__name__}: {error}"
    else:
        from nip_core.runs.interrupts import is_terminated

        status, reason = "killed", stop.describe(terminated=is_terminated(error))
    try:
        run_dir.write_run_info(status=status, error=reason)
    except OSError as write_error:
        logger.warning(
            "could not mark run %s %s: %s", run_dir.path, status, write_error
        )


def _resume_overrides(params: dict, overrides: Mapping[str, Any]) -> dict:
    """``params`` (a saved hyper-parameters dict) with ``overrides`` applied, each
    checked to be a field a resume may change."""
    import copy

    from nip_core.errors import ConfigProblem, NipConfigError
    from nip_core.parameters import preserved_paths
    from nip_core.parameters.base_run import RESUME

    allowed = preserved_paths(_read_quietly(params), RESUME)
    problems = [
        ConfigProblem(
            path,
            "a resume may change only how the run reaches its services, not the "
            "experiment; start a new run to change it",
            value,
            tuple(allowed),
        )
        for path, value in overrides.items()
        if path not in allowed
    ]
    if problems:
        raise NipConfigError(problems)
    out = copy.deepcopy(params)
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def _record_or_check_datasets(
    run_dir: Any, scenario_instance: Any, hyper_params: Any, resume: Any
) -> None:
    """A new run records its datasets' fingerprints (and the data directory it
    read) in ``run_info.json``; a resumed one checks that they are the same
    (:mod:`nip_core.runs.fingerprint`)."""
    from nip_core.runs.fingerprint import check_same_datasets, dataset_fingerprints

    info = run_dir.read_run_info()
    data_dir = getattr(
        getattr(scenario_instance, "train_dataset", None), "data_dir", None
    )
    if resume is not None and "datasets" in info:
        check_same_datasets(
            info["datasets"],
            scenario_instance,
            dataset=str(hyper_params.dataset),
            data_dir=info.get("data_dir"),
            run_id=run_dir.path.name,
        )
        return
    run_dir.write_run_info(
        datasets=dataset_fingerprints(scenario_instance),
        data_dir=None if data_dir is None else str(data_dir),
    )


def resume_run(
    run_id: str,
    runs_dir: str | Path = "runs",
    *,
    callbacks: Sequence[IterationCallback] = (),
    stage_callbacks: Sequence[StageCallback] = (),
    parameter_overrides: Mapping[str, Any] | None = None,
    **settings_overrides: Any,
) -> RunResult:
    """Continue a run from its last checkpoint, with no prompt.

    The hyper-parameters and settings are read from the run directory;
    ``settings_overrides`` change settings (``device="cuda"``, ``show_progress=False``),
    ``parameter_overrides`` the hyper-parameters that say how the run reaches its
    services (``{"openai_backend.base_url": "http://gpu2:8000/v1"}``: the fields
    marked :func:`~nip_core.parameters.base_run.resume_overridable`), written back to
    ``hyper_params.json``. ``nip resume RUN_ID [--set PATH=VALUE ...]`` calls this.

    Raises
    ------
    CheckpointError
        When ``<runs_dir>/<run_id>`` is not a run directory.
    NipConfigError
        When an override names a field that is part of the experiment (not one a
        resume may change), or gives it an invalid value.
    """
    from nip_core.parameters import HyperParameters

    run_dir = RunDirectory(Path(runs_dir) / run_id)
    if not run_dir.exists():
        if run_dir.path.is_dir() and any(run_dir.path.iterdir()):
            raise CheckpointError(
                f"run directory {run_dir.path} has no hyper_params.json: which "
                "experiment it holds cannot be told, so it cannot be resumed (put "
                "the file back, or start a new run)"
            )
        raise CheckpointError(_no_such_run_message(run_id, Path(runs_dir).expanduser()))
    params_dict = run_dir.read_hyper_params()
    if parameter_overrides:
        params_dict = _resume_overrides(params_dict, parameter_overrides)
    if not run_dir.settings_path.is_file():
        from nip_core.errors import CheckpointWarning

        warnings.warn(
            f"{run_dir.path} has no settings.json: the run resumes with the default "
            "settings (checkpoint period, loggers, data directory) and those given "
            "to `nip resume`",
            CheckpointWarning,
            stacklevel=2,
        )
    settings_dict = run_dir.read_settings()
    # None means "as saved" (the CLI passes its unset options as None)
    settings_dict.update({k: v for k, v in settings_overrides.items() if v is not None})
    settings_dict["run_id"] = run_id
    settings_dict["runs_dir"] = str(runs_dir)
    settings = ExperimentSettings.from_dict(settings_dict)
    with datasets_in(settings.data_dir):
        try:
            hyper_params = HyperParameters.from_dict(params_dict)
        except NipConfigError as error:
            # the values are the saved ones (or a --set's): say where they are
            where = f" (saved in {run_dir.hyper_params_path})"
            raise NipConfigError(
                [
                    attrs.evolve(p, message=p.message + where)
                    if p.path not in (parameter_overrides or {})
                    else p
                    for p in error.problems
                ]
            ) from error
    if parameter_overrides:
        run_dir.write_hyper_params(params_dict)
        logger.info(
            "run %s resumes with %s",
            run_id,
            ", ".join(f"{k}={v!r}" for k, v in parameter_overrides.items()),
        )
    # the settings are checked before anything is said of what the resume does
    check_device(settings)
    if run_dir.read_run_info().get("status") == "finished":
        logger.info("run %s had finished: there is nothing left to run", run_id)
    return run_experiment(
        hyper_params, settings, callbacks=callbacks, stage_callbacks=stage_callbacks
    )
