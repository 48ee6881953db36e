"""``nip run`` (one run or a Hydra sweep) and ``nip resume``.

A single run composes its config, validates it and calls
:func:`nip_core.experiment.run_experiment` in this process. ``--multirun`` hands the
sweep to Hydra's sweeper and launcher (the basic launcher runs jobs one after the
other; ``hydra/launcher=joblib`` runs them in parallel processes); each job validates
its own config and calls ``run_experiment``. Before anything is launched, every job
of a basic sweep is composed and validated, so a typo in the tenth value of a sweep
fails at once rather than after nine runs.

Every job of a sweep gets a stable run id (the sweep directory's name and a hash of
its experiment, see :mod:`nip_core.sweeps`), so ``nip run -m --resume-sweep DIR``
restarts a killed sweep: finished runs are skipped, unfinished ones continue from
their last checkpoint, and no run id is used twice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from nip_core.cli import compose as composer
from nip_core.errors import ConfigProblem, MissingPluginError, NipConfigError, NipError
from nip_core.runs.interrupts import (
    DeferredInterrupt,
    ancestor_pids,
    interrupts_kept,
    is_terminated,
    terminate_as_interrupt,
    terminate_with_descendants,
)

log = logging.getLogger(__name__)


@attrs.frozen
class JobOutcome:
    """What one job of a sweep came to (picklable, so it returns from any launcher).

    Parameters
    ----------
    ok : bool
        Whether the run finished.
    error : str | None
        The error message of a failed job.
    config_error : bool
        Whether it failed because its config is invalid.
    traceback : str | None
        The traceback of an unexpected error.
    run_dir : str | None
        The run directory, when the experiment reports one.
    skipped : bool
        Whether the job did nothing because its run had finished (resumed sweeps).
    interrupted : bool
        Whether the job's run stopped on Ctrl-C (in a launcher's worker process,
        after saving its checkpoint): the sweep stops as interrupted.
    """

    ok: bool
    error: str | None = None
    config_error: bool = False
    traceback: str | None = None
    run_dir: str | None = None
    skipped: bool = False
    interrupted: bool = False


def check_plugins_for_run() -> None:
    """Refuse to run when no scenario or no trainer is registered.

    Raises
    ------
    MissingPluginError
        Saying which plugins to install and how.
    """
    from nip_core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    lacking = [
        kind
        for kind, registry in (("scenario", pm.scenarios), ("trainer", pm.trainers))
        if len(registry) == 0
    ]
    if lacking:
        reason = " and no ".join(lacking)
        raise MissingPluginError(
            composer.missing_plugins_message(f"no {reason} plugin is installed")
        )


def compose_for_run(
    app: Any,
    config_name: str | None,
    overrides: Sequence[str],
    *,
    multirun: bool = False,
    with_log_configuration: bool = False,
) -> Any:
    """Compose the config for ``nip run``; ``None`` means the ``default`` config.

    Raises
    ------
    MissingPluginError
        When no config is named and there is no ``default`` config.
    """
    from hydra.errors import MissingConfigException

    name = config_name or composer.DEFAULT_CONFIG_NAME
    try:
        return composer.compose(
            app,
            name,
            overrides,
            multirun=multirun,
            with_log_configuration=with_log_configuration,
        )
    except NipConfigError as error:
        cause = error.__cause__
        if (
            config_name is None
            and isinstance(cause, MissingConfigException)
            and cause.missing_cfg_file == composer.DEFAULT_CONFIG_NAME
        ):
            raise MissingPluginError(
                composer.missing_plugins_message(
                    f"there is no config named {composer.DEFAULT_CONFIG_NAME!r} "
                    "(a scenario plugin provides one)"
                )
            ) from None
        raise


def run_single(config_name: str | None, overrides: Sequence[str]) -> int:
    """Compose, validate and run one experiment in this process."""
    from nip_core.experiment import run_experiment

    check_plugins_for_run()
    with composer.hydra_app() as app:
        cfg = compose_for_run(app, config_name, overrides)
        config = composer.to_plain_dict(cfg)
    hyper_params, settings = composer.build_experiment(
        config, config_name=config_name or composer.DEFAULT_CONFIG_NAME
    )
    result = run_experiment(hyper_params, settings)
    _report_finished(result)
    return 0


def _report_finished(result: Any) -> None:
    """Print the summary of a finished run: final accuracies, rewards, directory."""
    from nip_core.analysis.summary import summary_lines
    from nip_core.distributed import is_main_process

    run_id = getattr(result, "run_id", None)
    if run_id is None or not is_main_process():
        return
    run_dir = getattr(result, "run_dir", None)
    records = getattr(result, "metrics", None) or []
    if run_dir is not None:
        # the whole run's records: a resumed process logged only its own part
        from nip_core.runs.run_dir import RunDirectory

        try:
            records = RunDirectory(run_dir).read_metrics() or records
        except Exception:  # noqa: BLE001 - a summary must never fail the run
            pass
    print(f"nip: run {run_id} finished", file=sys.stderr)
    for line in summary_lines(records, run_dir):
        print(f"  {line}", file=sys.stderr)
    if run_dir is not None and (Path(run_dir) / "plots").is_dir():
        print(f"  plots: {Path(run_dir) / 'plots'}", file=sys.stderr)


def run_sweep(
    config_name: str | None,
    overrides: Sequence[str],
    *,
    debug: bool = False,
    stream: TextIO | None = None,
    resume_sweep: str | None = None,
) -> int:
    """Run a Hydra sweep; every job calls ``run_experiment``.

    Parameters
    ----------
    config_name, overrides
        As on the command line. Resuming, the config is the sweep's own, and so are
        the overrides when none are given (then its extensions are resumed too);
        overrides given extend the sweep (:func:`merge_overrides`).
    debug : bool
        Print the traceback of failed jobs.
    stream : TextIO | None
        Where the summary goes (standard error by default).
    resume_sweep : str | None
        A sweep directory (or its name under ``<runs_dir>/sweeps``) to continue:
        jobs whose run finished are skipped, the others continue from their last
        checkpoint.

    Returns
    -------
    int
        0 when every job finished; 2 when every failed job had an invalid config; 1
        otherwise.
    """
    from nip_core import sweeps

    stream = stream if stream is not None else sys.stderr
    check_plugins_for_run()
    previous = None
    # the launches: (overrides, job subdirectory prefix); a resumed sweep also
    # resumes the extensions launched into it
    launches: list[tuple[list[str], str]] = [(list(overrides), "")]
    if resume_sweep is not None:
        sweep_path = sweeps.resolve_sweep_dir(resume_sweep, _runs_dir_hint(overrides))
        previous = sweeps.read_manifest(sweep_path)
        default = composer.DEFAULT_CONFIG_NAME
        if config_name is not None and config_name != (previous.config_name or default):
            raise sweeps.SweepError(
                f"{sweep_path} is a sweep of config "
                f"{previous.config_name or default!r}; "
                "extend it with overrides only (or start a new sweep with "
                f"--config-name {config_name})"
            )
        config_name = previous.config_name
        pinned_dir = f"hydra.sweep.dir={_quote_override_value(str(sweep_path))}"
        if not overrides:
            launches = [(previous.overrides, "")] + [
                (extension, sweeps.extension_prefix(k))
                for k, extension in enumerate(previous.extensions, 1)
            ]
        else:
            # given overrides extend the sweep: added to its own, replacing those
            # of the same keys; the new jobs get their own job directories
            merged = merge_overrides(previous.overrides, overrides)
            if merged == previous.overrides:
                launches = [(merged, "")]
            else:
                known = previous.extensions
                k = known.index(merged) + 1 if merged in known else len(known) + 1
                launches = [(merged, sweeps.extension_prefix(k))]
        launches = [([*o, pinned_dir], prefix) for o, prefix in launches]
    name = config_name or composer.DEFAULT_CONFIG_NAME
    returns: list[Any] = []
    with composer.hydra_app() as app:
        for launch_overrides, prefix in launches:
            batches, sweep_dir = _launch_sweep(
                app,
                config_name,
                name,
                launch_overrides,
                prefix,
                previous=previous,
                debug=debug,
            )
            returns += batches
            # a later launch of this sweep updates its manifest
            previous = sweeps.read_manifest(sweep_dir)

    results = [job for batch in returns for job in batch]
    failed = [(job, job.return_value) for job in results if not job.return_value.ok]
    skipped = sum(1 for job in results if job.return_value.skipped)
    note = f" ({skipped} skipped: their runs had finished)" if skipped else ""
    print(
        f"nip: sweep finished: {len(results) - len(failed)} of {len(results)} jobs "
        f"succeeded{note}; Hydra's job configs and logs are in {sweep_dir}",
        file=stream,
    )
    from nip_core.settings import redact_secrets

    for job, outcome in failed:
        print(
            f"  job {job.hydra_cfg.hydra.job.num} "
            f"[{' '.join(map(composer.display_override, job.overrides))}] "
            f"failed: {redact_secrets(str(outcome.error))}",
            file=stream,
        )
        if debug and outcome.traceback:
            print(outcome.traceback, file=stream)
    if failed:
        print(
            f"  continue the sweep with: nip run -m --resume-sweep {sweep_dir}",
            file=stream,
        )
    if not failed:
        return 0
    return 2 if all(outcome.config_error for _, outcome in failed) else 1


def _launch_sweep(
    app: Any,
    config_name: str | None,
    name: str,
    overrides: Sequence[str],
    prefix: str,
    *,
    previous: Any,
    debug: bool,
) -> tuple[list[Any], str]:
    """Launch one set of a sweep's jobs (its first launch, a resume, or an
    extension whose job directories are ``<prefix><job number>``); return Hydra's
    batches of job returns and the sweep directory."""
    from nip_core import sweeps
    from nip_core.errors import SweepInterrupted

    given = [composer.refer_to_secrets(o) for o in overrides]
    normalised = composer.normalise_overrides(app, given)
    master = compose_for_run(app, config_name, normalised, multirun=True)
    # a variable an `api_key_env` names holds a credential whatever its name: its
    # value given here becomes a reference too, before Hydra saves or sends any
    if composer.declare_key_variables(master, normalised):
        given = [composer.refer_to_secrets(o) for o in overrides]
        normalised = composer.normalise_overrides(app, given)
        master = compose_for_run(app, config_name, normalised, multirun=True)
    overrides = normalised
    if problems := composer.literal_credential_problems(overrides):
        raise NipConfigError(problems)
    # `${now:...}` in the sweep dir resolves anew in every config object; fix it
    # once so that every job and the summary name the same directory
    with composer.hydra_errors():
        sweep_dir = str(master.hydra.sweep.dir)
    if previous is None and sweeps.is_sweep_dir(sweep_dir):
        raise sweeps.SweepError(
            f"{sweep_dir} already holds a sweep; continue it with "
            f"`nip run -m --resume-sweep {sweep_dir}`, or give another "
            "hydra.sweep.dir"
        )
    jobs = sweep_jobs(app, master, given)
    if jobs is not None:
        validate_sweep(
            app, name, [job for batch in jobs for job in batch], sweep_dir=sweep_dir
        )
    pinned = f"hydra.sweep.dir={_quote_override_value(sweep_dir)}"
    launch_overrides = [
        o for o in overrides if not o.startswith("hydra.sweep.dir=")
    ] + [pinned]
    if prefix:
        launch_overrides.append(f"hydra.sweep.subdir={prefix}${{hydra.job.num}}")
    launch_overrides += _launcher_fixes(master)
    # Hydra would save each job's config and overrides as given, secrets and all:
    # the job saves them itself, hidden (SweepJob)
    launch_overrides.append("hydra.output_subdir=null")
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    sweeps.forget_job_processes(sweep_dir)
    recorded = [
        o
        for o in map(composer.record_override, overrides)
        if not o.startswith("hydra.sweep.dir=")
    ]
    if previous is None:
        sweeps.write_manifest(sweep_dir, config_name, recorded)
    else:
        extensions = list(previous.extensions)
        if prefix and recorded not in extensions:
            extensions.append(recorded)
        sweeps.write_manifest(
            sweep_dir,
            previous.config_name,
            previous.overrides,
            previous=previous,
            extensions=extensions,
        )
    # Local worker processes (joblib) get the terminal's Ctrl-C too and stop at
    # the end of their iteration, after its checkpoint: the nip process waits for
    # them instead of tearing them down (a second Ctrl-C does)
    waiting = (
        _WaitForJobs()
        if str(master.hydra.launcher.get("_target_", "")) in _LOCAL_WORKER_LAUNCHERS
        else contextlib.nullcontext()
    )
    # SIGTERM goes on to the jobs' processes (submitit's local jobs would train on
    # as orphans), and the sweep waits for them to mark their runs killed and end
    # before the launcher sees the interrupt (its teardown SIGKILLs its jobs). Not
    # with the basic launcher: its jobs run in this process, and the processes
    # below are their helpers, such as a W&B service still needed to close a run.
    # Only the jobs' own processes are signalled: their helpers (a W&B service,
    # data loader workers) are still needed to close the runs, and end with them.
    launcher_target = str(master.hydra.launcher.get("_target_", ""))
    terminating = terminate_with_descendants(
        timeout=JOB_STOP_TIMEOUT_S,
        pass_on=launcher_target != _BASIC_LAUNCHER,
        targets=functools.partial(sweeps.job_process_pids, sweep_dir),
    )
    task = SweepJob(
        debug=debug,
        sweep_dir=sweep_dir,
        resume=previous is not None,
        hydra_subdir=master.hydra.get("output_subdir", None),
    )
    try:
        with composer.hydra_errors(), waiting, terminating:
            if jobs is None:
                try:
                    batches = app.multirun(
                        config_name=name, task_function=task, overrides=launch_overrides
                    )
                finally:
                    # another sweeper saved the sweep's config as given
                    _redact_saved_config(Path(sweep_dir) / MULTIRUN_CONFIG)
            else:
                batches = _run_basic_sweep(app, name, launch_overrides, jobs, task)
        batches = list(batches)
        if getattr(waiting, "requested", False) or any(
            getattr(job.return_value, "interrupted", False)
            for batch in batches
            for job in batch
        ):
            raise KeyboardInterrupt
        return batches, sweep_dir
    except KeyboardInterrupt as error:
        left = terminating.left
        if left:
            print(
                f"nip: {len(left)} job process(es) still running "
                f"{JOB_STOP_TIMEOUT_S:.0f} s after SIGTERM: "
                + " ".join(map(str, left)),
                file=sys.stderr,
            )
        # one job's Ctrl-C stops the sweep: say how to continue all of it
        raise SweepInterrupted(sweep_dir) from error
    except NipError:
        raise
    except Exception as error:
        # Jobs report their own failures (SweepJob returns them): this is the
        # launcher failing to start (no Slurm here, no Ray cluster at the address)
        if previous is None:
            _remove_unstarted_sweep(sweep_dir)
        launcher = str(master.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
        raise sweeps.SweepError(
            f"the sweep's launcher ({launcher or 'unknown'}) could not start it: "
            f"{type(error).__name__}: {_first_lines(error)}"
        ) from error


JOB_STOP_TIMEOUT_S = 60.0
"""How long a sweep stopped by SIGTERM waits for its jobs' processes to stop."""

EXIT_TERMINATED = 143
"""A job process's exit status once SIGTERM stopped its run (128 + SIGTERM)."""


def _exit_process(status: int) -> None:
    """End this process at once with ``status``, its output and logs flushed and
    its temporary directories removed: a launcher's worker process, which would
    otherwise go on waiting for work."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _remove_temporary_directories()
    os._exit(status)


def _remove_temporary_directories() -> None:
    """Remove the process's :class:`tempfile.TemporaryDirectory` directories, as
    their finalisers would at a normal exit: ``os._exit`` runs none, and importing
    W&B alone makes two (``*wandb-media``, ``*wandb-artifacts``), which each
    killed sweep job would leave in the temporary directory."""
    import gc
    import tempfile

    for obj in gc.get_objects():
        if isinstance(obj, tempfile.TemporaryDirectory):
            with contextlib.suppress(Exception):
                obj.cleanup()


_RAY_LAUNCHER = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
_BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
_LOCAL_WORKER_LAUNCHERS = frozenset(
    {"hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
)


class _WaitForJobs(DeferredInterrupt):
    """The nip process's Ctrl-C while local worker processes run the jobs: they
    got it too (one process group) and stop at the end of their iteration, after
    its checkpoint; the first press waits for them, a second stops them at once."""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nnip: interrupted: the running jobs stop at the end of their "
            "iteration, once their checkpoints are saved (press Ctrl-C again to "
            "stop them at once and lose those iterations)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc_info: Any) -> None:
        # the sweep decides what a pending request means (it raises then)
        self._restore()


def _launcher_fixes(master: Any) -> list[str]:
    """Overrides that make a launcher's documented use work.

    Hydra's Ray launcher sets ``object_store_memory`` for ``ray.init`` unless the
    config does, and Ray refuses that option when it connects to a running cluster
    (``hydra.launcher.ray.init.address=auto``): leave it to the cluster there.
    """
    launcher = master.hydra.launcher
    if launcher.get("_target_", None) != _RAY_LAUNCHER:
        return []
    init = launcher.get("ray", {}).get("init", {}) or {}
    if init.get("address", None) is None or "object_store_memory" in init:
        return []
    return ["++hydra.launcher.ray.init.object_store_memory=null"]


def _first_lines(error: BaseException, lines: int = 3) -> str:
    text = str(error).strip().splitlines()
    return " ".join(line.strip() for line in text[:lines]) + (
        " ..." if len(text) > lines else ""
    )


def _remove_unstarted_sweep(sweep_dir: str) -> None:
    """Take back what a first launch wrote before its launcher failed (its
    manifest and Hydra's ``multirun.yaml``), when no job started."""
    from nip_core import sweeps

    path = Path(sweep_dir)
    if any(path.glob(f"*/{sweeps.JOB_RECORD}")):
        return
    for name in (sweeps.MANIFEST, MULTIRUN_CONFIG):
        (path / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (path / sweeps.JOB_PROCESSES).rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def merge_overrides(base: Sequence[str], given: Sequence[str]) -> list[str]:
    """``base`` with ``given`` added: a given override replaces the base's of the
    same key (``seed=7`` replaces ``seed=1,2``), in the base's place; new keys
    come after."""

    def key(text: str) -> str:
        return text.lstrip("+~").split("=", 1)[0].strip()

    replacing = {key(o): o for o in given}
    merged = [replacing.pop(key(o), o) for o in base]
    return merged + [o for o in given if key(o) in replacing]


def _runs_dir_hint(overrides: Sequence[str]) -> str:
    """``run.runs_dir`` when an override sets it (to find a sweep by name)."""
    for text in overrides:
        key, _, value = text.lstrip("+").partition("=")
        if key == "run.runs_dir" and value:
            return value.strip("'\"")
    return "runs"


def _quote_override_value(value: str) -> str:
    # in Hydra's quoted strings a backslash escapes only a quote
    escaped = value.replace("'", "\\'")
    return f"'{escaped}'"


_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_jobs(
    app: Any, master: Any, overrides: Sequence[str]
) -> list[list[list[str]]] | None:
    """The jobs of a basic sweep, in the sweeper's batches; ``None`` for other
    sweepers.

    The overrides of every job, as Hydra's basic sweeper makes them from the
    config's ``hydra.sweeper.params`` and the command line's ``overrides`` as given
    (before :func:`~nip_core.cli.compose.normalise_overrides`): one list of values
    per key as written (``Override.get_key_element``: ``seed``, ``+seed``,
    ``++seed`` and ``~seed`` are four keys, ``rl.lr`` one), the command line's
    replacing the params' of the same key, and the jobs their product. Then each
    job's overrides are normalised, as a single run's are. The sweep launches
    exactly these jobs (:func:`_run_basic_sweep`), after
    :func:`validate_sweep` has checked them.

    Normalised first, ``seed=0`` would be ``++seed=0``: another key than the
    params' ``seed``, and the sweep would multiply the two instead of the first
    replacing the second.

    Parameters
    ----------
    app
        The Hydra application.
    master
        The sweep's config, composed from ``overrides`` (``--multirun``).
    overrides
        The command line's overrides, as given.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = master.hydra.sweeper
    if sweeper.get("_target_", "") != _BASIC_SWEEPER:
        return None
    params = sweeper.get("params") or {}
    arguments = [f"{key}={value}" for key, value in params.items()]
    parser = OverridesParser.create(config_loader=app.config_loader)
    with composer.hydra_errors():
        # Hydra's own overrides set the sweep's config, not a job's
        arguments += [
            override.input_line
            for override in parser.parse_overrides(list(overrides))
            if not override.is_hydra_override()
        ]
        batches = BasicSweeper.split_arguments(
            parser.parse_overrides(arguments), sweeper.get("max_batch_size")
        )
    return [
        [composer.normalise_overrides(app, job) for job in batch] for batch in batches
    ]


def _run_basic_sweep(
    app: Any,
    config_name: str,
    overrides: Sequence[str],
    jobs: Sequence[Sequence[Sequence[str]]],
    task_function: Any,
) -> list[Any]:
    """Launch the jobs of a basic sweep (:func:`sweep_jobs`) batch by batch, as
    Hydra's basic sweeper would launch its own; return the batches of job returns.

    ``Hydra.multirun`` and ``BasicSweeper.sweep`` with the jobs nip made and
    checked: the sweeper would split the overrides into jobs again, from the
    normalised ones, and save the sweep's config (``multirun.yaml``) with every
    secret given in it.
    """
    from hydra._internal.callbacks import Callbacks
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode

    cfg = app.compose_config(
        config_name=config_name,
        overrides=list(overrides),
        run_mode=RunMode.MULTIRUN,
        with_log_configuration=True,
    )
    callbacks = Callbacks(cfg)
    callbacks.on_multirun_start(config=cfg, config_name=config_name)
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(
            config_loader=app.config_loader, callbacks=callbacks
        ),
        task_function=task_function,
        config=cfg,
    )
    save_redacted_config(cfg, Path(str(cfg.hydra.sweep.dir)) / MULTIRUN_CONFIG)
    returns = []
    first = 0
    for batch in jobs:
        # what the sweeper checks before a batch: each job composes as the
        # launcher will compose it
        for job in batch:
            app.config_loader.load_sweep_config(cfg, list(job))
        results = launcher.launch(batch, initial_job_idx=first)
        for result in results:
            _ = result.return_value  # a job's exception ends the sweep, as there
        returns.append(results)
        first += len(batch)
    callbacks.on_multirun_end(config=cfg, config_name=config_name)
    return returns


MULTIRUN_CONFIG = "multirun.yaml"
"""Hydra's copy of a sweep's config, in the sweep directory."""

HYDRA_JOB_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")
"""The files Hydra keeps of a job's config, in its ``hydra.output_subdir``."""


def redacted_yaml(cfg: Any) -> str:
    """A config as Hydra saves it (YAML, interpolations unresolved), with every
    secret hidden (:func:`~nip_core.cli.compose.redact_config`)."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    return OmegaConf.to_yaml(OmegaConf.create(composer.redact_config(data)))


def save_redacted_config(cfg: Any, path: Path) -> None:
    """Save a config as Hydra would, with every secret hidden."""
    from nip_core.runs.io import atomic_write_text

    atomic_write_text(path, redacted_yaml(cfg))


def _redact_saved_config(path: Path) -> None:
    """Save again, secrets hidden, a config Hydra saved with secrets in it (a
    sweeper's ``multirun.yaml``). Never raises: it runs as a sweep ends, whatever
    ended it."""
    from omegaconf import OmegaConf

    try:
        if not path.is_file():
            return
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        if composer.redact_config(data) != data:
            save_redacted_config(OmegaConf.create(data), path)
    except Exception as error:  # noqa: BLE001 - said, and the sweep's own error kept
        log.warning("could not hide the secrets given in %s: %s", path, error)


def validate_sweep(
    app: Any,
    config_name: str,
    job_overrides: Sequence[Sequence[str]],
    *,
    sweep_dir: str | None = None,
) -> None:
    """Compose and validate every job's config before launching any.

    Refuses two jobs whose config gives them the same ``run.run_id``; with
    ``sweep_dir``, also two jobs that are the same experiment (they would share a
    run id, see :func:`nip_core.sweeps.sweep_run_id`).

    Raises
    ------
    NipConfigError
        With every problem of every job, each path prefixed by the job's overrides.
    """
    from nip_core.sweeps import sweep_run_id

    problems: list[ConfigProblem] = []
    labels_by_run_id: dict[str, str] = {}
    labels_by_given_run_id: dict[str, str] = {}
    for overrides in job_overrides:
        label = " ".join(map(composer.display_override, overrides)) or "<no overrides>"
        try:
            cfg = composer.compose(app, config_name, overrides, multirun=True)
            hyper_params, settings = composer.build_experiment(
                composer.to_plain_dict(cfg), config_name=config_name
            )
        except NipConfigError as error:
            for problem in error.problems:
                problems.append(
                    attrs.evolve(problem, message=f"{problem.message} [job: {label}]")
                )
            continue
        if settings.run_id is not None:
            # A run id the config gives: it must tell the jobs apart (an
            # interpolation of the swept values, say `run_${seed}`)
            if settings.run_id in labels_by_given_run_id:
                problems.append(
                    ConfigProblem(
                        path="run.run_id",
                        message=f"jobs [{labels_by_given_run_id[settings.run_id]}] "
                        f"and [{label}] would write the same run directory; leave "
                        "it null so each job gets its own, or make it differ "
                        "between jobs (interpolate the swept values: "
                        "run_${seed})" + _given_twice_hint(overrides),
                        value=settings.run_id,
                    )
                )
            labels_by_given_run_id.setdefault(settings.run_id, label)
            continue
        if sweep_dir is None:
            continue
        run_id = sweep_run_id(sweep_dir, hyper_params.to_dict())
        if run_id in labels_by_run_id:
            problems.append(
                ConfigProblem(
                    path="",
                    message=f"jobs [{labels_by_run_id[run_id]}] and [{label}] are "
                    "the same experiment (they differ only in run settings), so "
                    "they would write the same run directory"
                    + _given_twice_hint(overrides),
                )
            )
        labels_by_run_id.setdefault(run_id, label)
    if problems:
        raise NipConfigError(problems)


def _given_twice_hint(overrides: Sequence[str]) -> str:
    """Why jobs that differ in their overrides can be one experiment: a key given
    twice in each (``seed=1,2`` beside ``++seed=7``), the last one winning."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - a hint must never hide the real problem
        return ""
    keys = [override.key_or_group for override in parsed]
    twice = next((key for i, key in enumerate(keys) if key in keys[:i]), None)
    if twice is None:
        return ""
    return (
        f"; each job gives {twice} twice, and the last one wins (Hydra keeps "
        f"{twice}, +{twice}, ++{twice} and ~{twice} apart: one does not replace "
        f"another): give {twice} one way only"
    )


@attrs.frozen
class SweepJob:
    """Hydra's task function for one job of a sweep.

    Catches every error, so that one failed job neither stops the sweep nor makes
    Hydra print its own traceback; the error travels back in the
    :class:`JobOutcome`. Picklable: remote launchers (submitit, Ray) run it in
    another process, where plugins load from their entry points as usual.

    Parameters
    ----------
    debug : bool
        Keep the traceback of nip's own errors too.
    sweep_dir : str | None
        The sweep directory: the job's run id is derived from its name and the
        experiment (:func:`nip_core.sweeps.sweep_run_id`) unless ``run.run_id`` is
        set. ``None``: a fresh id per job.
    resume : bool
        Continue a sweep: a job whose run finished is skipped, an unfinished run
        continues from its last checkpoint. Without it, a job refuses to write into
        an existing run directory.
    hydra_subdir : str | None
        Where in its job directory the job saves Hydra's files of its config
        (:data:`HYDRA_JOB_FILES`), with every secret hidden: the sweep is launched
        with ``hydra.output_subdir=null`` so that Hydra saves none as given.
        ``None``: no files.
    """

    debug: bool = False
    sweep_dir: str | None = None
    resume: bool = False
    hydra_subdir: str | None = None
    launching_pid: int = attrs.field(factory=os.getpid)
    launching_host: str = attrs.field(factory=socket.gethostname)

    def _in_nip_process(self) -> bool:
        """Whether this is the ``nip`` process itself (the basic launcher), not a
        launcher's process; a PID alone could match on another machine."""
        return (
            os.getpid() == self.launching_pid
            and socket.gethostname() == self.launching_host
        )

    def _below_nip_process(self) -> bool:
        """Whether this process runs below the ``nip`` process, on its machine."""
        return (
            socket.gethostname() == self.launching_host
            and self.launching_pid in ancestor_pids()
        )

    def __call__(self, cfg: Any) -> JobOutcome:
        from nip_core import sweeps
        from nip_core.experiment import run_experiment

        try:
            self._save_hydra_files(cfg)
            hyper_params, settings = composer.build_experiment(
                composer.to_plain_dict(cfg)
            )
            settings, skipped = self._assign_run(hyper_params, settings)
            if skipped is not None:
                return skipped
            # In a launcher's process (submitit, joblib, Ray), SIGTERM stops the
            # run and marks it killed, whatever the launcher's own handler does
            # with it (submitit's bypasses it)
            in_launcher = not self._in_nip_process()
            registered = (
                sweeps.job_process_registered(self.sweep_dir)
                if in_launcher and self.sweep_dir is not None
                else contextlib.nullcontext()
            )
            with (
                interrupts_kept(),
                terminate_as_interrupt(replace=in_launcher),
                registered,
            ):
                result = run_experiment(hyper_params, settings)
        except KeyboardInterrupt as error:
            if self._in_nip_process():
                raise  # in the nip process: the sweep stops here
            # (the run raises RunInterrupted, caused by Terminated)
            if is_terminated(error) and self._below_nip_process():
                # SIGTERM passed on by the nip process, which waits for this
                # process to end: the run is marked killed, so end it now (a
                # joblib worker would wait for more work; the launcher's
                # teardown would SIGKILL it)
                _exit_process(EXIT_TERMINATED)
            # a worker process of the launcher (joblib): the run stopped on
            # Ctrl-C after its checkpoint; the outcome carries it back
            return JobOutcome(
                ok=False,
                error=f"interrupted ({type(error).__name__})",
                interrupted=True,
            )
        except NipError as error:
            log.error("%s", error)
            return JobOutcome(
                ok=False,
                error=str(error),
                config_error=isinstance(error, NipConfigError),
                traceback=traceback.format_exc() if self.debug else None,
            )
        except Exception as error:
            log.exception("job failed")
            return JobOutcome(
                ok=False,
                error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(),
            )
        run_dir = getattr(result, "run_dir", None)
        return JobOutcome(
            ok=True, run_dir=str(run_dir) if run_dir is not None else None
        )

    def _save_hydra_files(self, cfg: Any) -> None:
        """Save the job's config, Hydra's config and the job's overrides where
        Hydra would (:attr:`hydra_subdir` of the job directory), secrets hidden."""
        from hydra.core.hydra_config import HydraConfig

        if self.hydra_subdir is None or not HydraConfig.initialized():
            return
        hydra_cfg = HydraConfig.instance().cfg
        directory = Path(str(hydra_cfg.hydra.runtime.output_dir)) / self.hydra_subdir
        job_config, hydra_config, overrides = HYDRA_JOB_FILES
        save_redacted_config(cfg, directory / job_config)
        save_redacted_config(hydra_cfg, directory / hydra_config)
        save_redacted_config(hydra_cfg.hydra.overrides.task, directory / overrides)

    def _assign_run(self, hyper_params: Any, settings: Any) -> tuple[Any, Any]:
        """Give the job its stable run id and record it in the Hydra job directory.

        Returns the settings and, when the job has nothing to do (its run
        finished and the sweep is resumed), the outcome to report.
        """
        from nip_core import sweeps
        from nip_core.errors import CheckpointError

        if self.sweep_dir is None or settings.test_run:
            return settings, None
        if settings.run_id is None:
            settings = attrs.evolve(
                settings,
                run_id=sweeps.sweep_run_id(self.sweep_dir, hyper_params.to_dict()),
            )
        run_dir = Path(settings.runs_dir) / settings.run_id
        job_dir = _hydra_job_dir()
        if job_dir is not None:
            sweeps.write_job_record(job_dir, settings.run_id, run_dir)
        if not run_dir.exists():
            return settings, None
        from nip_core.experiment import run_differences, run_holds_experiment

        if not run_holds_experiment(run_dir, hyper_params, settings):
            # (a run_id template that gives two experiments one id, say): neither
            # skipped as finished nor resumed
            raise CheckpointError(
                f"run directory {run_dir} holds a different experiment than this "
                f"job's{run_differences(run_dir, hyper_params, settings)}; give the "
                "job another run.run_id (a template naming what differs between "
                "the experiments), or leave run.run_id unset for one derived from "
                "the experiment"
            )
        if self.resume and sweeps.run_is_finished(run_dir):
            log.info("run %s had finished; skipped", settings.run_id)
            return settings, JobOutcome(ok=True, run_dir=str(run_dir), skipped=True)
        if not self.resume:
            raise CheckpointError(
                f"run directory {run_dir} exists already; continue the sweep with "
                f"`nip run -m --resume-sweep {self.sweep_dir}`"
            )
        return settings, None


def _hydra_job_dir() -> str | None:
    """The output directory of the Hydra job running now, if any."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return str(HydraConfig.get().runtime.output_dir)


def _resumable_setting(path: str) -> str:
    """The run setting ``run.<name>`` names, if a resume may change it (every one
    but the run's id and directory, which say which run it is)."""
    import attrs as _attrs

    from nip_core.settings import ExperimentSettings

    name = path.removeprefix("run.")
    fixed = {"run_id": "the run's id", "runs_dir": "--runs-dir"}
    names = [f.name for f in _attrs.fields(ExperimentSettings)]
    choices = tuple(f"run.{n}" for n in names if n not in fixed)
    if name in fixed:
        raise NipConfigError(
            ConfigProblem(
                path,
                f"a resume cannot change {fixed[name]}: it says which run to resume",
            )
        )
    if f"run.{name}" not in choices:
        from nip_core.parameters.validation import closest

        suggestion = closest(path, choices)
        raise NipConfigError(
            ConfigProblem(
                path,
                "unknown run setting"
                + (f"; did you mean {suggestion!r}?" if suggestion else ""),
                choices=() if suggestion else choices,
            )
        )
    return name


def resume(
    run_id: str,
    runs_dir: str | None,
    *,
    device: str | None = None,
    parameter_overrides: Sequence[str] = (),
) -> int:
    """Continue a run from its last checkpoint (optionally on another device, or
    with ``PATH=VALUE`` changes to how it reaches its services)."""
    import yaml

    from nip_core.errors import ConfigProblem, NipConfigError
    from nip_core.experiment import resume_run

    kwargs: dict[str, Any] = {}
    if runs_dir is not None:
        kwargs["runs_dir"] = runs_dir
    if device is not None:
        kwargs["device"] = device
    overrides: dict[str, Any] = {}
    settings_overrides: dict[str, Any] = {}
    for text in parameter_overrides:
        path, sep, value = text.partition("=")
        path = path.strip()
        if not sep or not path:
            raise NipConfigError(ConfigProblem("--set", "expected PATH=VALUE", text))
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            parsed = value
        if path.startswith("run."):
            # run settings change how the run runs, not what it learns
            settings_overrides[_resumable_setting(path)] = parsed
        else:
            overrides[path] = parsed
    if overrides:
        kwargs["parameter_overrides"] = overrides
    kwargs.update(settings_overrides)
    _report_finished(resume_run(run_id, **kwargs))
    return 0
