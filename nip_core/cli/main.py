"""The ``nip`` command.

Subcommands::

    nip run [--config-name NAME] [--multirun] [OVERRIDE ...]
    nip run --multirun --resume-sweep SWEEP_DIR [OVERRIDE ...]
    nip resume RUN_ID [--runs-dir DIR] [--device DEVICE] [--set PATH=VALUE ...]
    nip config show [--config-name NAME] [--raw] [OVERRIDE ...]
    nip config validate FILE | --config-name NAME [OVERRIDE ...]
    nip plugins [--json]
    nip datasets generate SCENARIO NAME [--data-dir DIR] [BUILDER OPTIONS ...]
    nip datasets list [--data-dir DIR]

This module imports only the standard library at start-up: ``nip --help`` and
``nip plugins`` never import torch (nor Hydra). Each command imports what it needs.

Errors nip raises on purpose (:class:`~nip_core.errors.NipError`) are printed
without a traceback; an invalid configuration exits with status 2, any other such
error with 1. ``nip --debug ...`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from nip_core.logs import (  # noqa: F401 - the command's logging, named here too
    ENV_LOG_LEVEL,
    THIRD_PARTY_LOGGERS,
    configure_logging,
)

EXIT_ERROR = 1
EXIT_CONFIG_ERROR = 2

_OVERRIDES_HELP = (
    "Hydra overrides: key=value to set any parameter, ~key to remove one, "
    "group=option to pick a config (e.g. rl.num_epochs=4 "
    "interaction_protocol=debate run.device=cuda)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``nip`` argument parser (every subcommand)."""
    from nip_core import __version__
    from nip_core.settings import DATA_DIR_RULE

    parser = argparse.ArgumentParser(
        prog="nip",
        description="Neural interactive proofs: train verifier and prover agents "
        "under interaction protocols. Scenarios, trainers and more come from plugins "
        "(see `nip plugins`).",
    )
    parser.add_argument("--version", action="version", version=f"nip {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of errors nip reports",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser(
        "run",
        help="run an experiment (or a sweep with --multirun)",
        description="Compose a config with Hydra, validate it and run the "
        "experiment. Without --config-name the config named 'default' is used.",
    )
    run.add_argument(
        "--config-name",
        "-c",
        metavar="NAME",
        help="the config to compose, e.g. graph_isomorphism/nip_vanilla_ppo "
        "(default: default)",
    )
    run.add_argument(
        "--multirun",
        "-m",
        action="store_true",
        help="sweep: run one job per combination of comma-separated override values "
        "(seed=1,2,3); pick a launcher with hydra/launcher=joblib",
    )
    run.add_argument(
        "--resume-sweep",
        metavar="SWEEP_DIR",
        help="continue a killed or failed sweep (implies --multirun): its runs that "
        "finished are skipped, the others continue from their last checkpoint; "
        "SWEEP_DIR is the sweep's directory or its name under runs/sweeps; without "
        "overrides the sweep's own are used",
    )
    run.add_argument("overrides", nargs="*", metavar="OVERRIDE", help=_OVERRIDES_HELP)

    resume = commands.add_parser(
        "resume",
        help="continue a run from its last checkpoint",
        description="Continue a stopped run from its last checkpoint, with the "
        "hyper-parameters and settings it was started with.",
    )
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument(
        "--runs-dir",
        metavar="DIR",
        help="the directory holding run directories (default: runs)",
    )
    resume.add_argument(
        "--device",
        metavar="DEVICE",
        help="continue on another device (cuda, cpu) than the run started on",
    )
    resume.add_argument(
        "--set",
        dest="parameter_overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="change how the run reaches its services, e.g. "
        "openai_backend.base_url=http://gpu2:8000/v1 (only such settings: an "
        "endpoint, timeouts, retries; not the experiment); repeatable",
    )

    config = commands.add_parser(
        "config",
        help="show or validate configs",
        description="Show the composed, validated config, or validate a file.",
    )
    config_commands = config.add_subparsers(dest="config_command", metavar="COMMAND")
    config_commands.required = True
    show = config_commands.add_parser(
        "show",
        help="print the resolved, validated config as YAML",
        description="Compose a config as `nip run` would, validate it and print "
        "what the run uses (defaults included) as YAML: every section the trainer, "
        "the protocol and the scenario read, and any section set to other values "
        "than its defaults. --all prints every section.",
    )
    show.add_argument("--config-name", "-c", metavar="NAME")
    show.add_argument(
        "--raw",
        action="store_true",
        help="print the config as Hydra composed it, without validating it",
    )
    show.add_argument(
        "--all",
        dest="show_all",
        action="store_true",
        help="print every section, also those the run does not read",
    )
    show.add_argument("overrides", nargs="*", metavar="OVERRIDE", help=_OVERRIDES_HELP)
    validate = config_commands.add_parser(
        "validate",
        help="validate a config file, or a named config with overrides",
        description="Validate a config file: a YAML config (composed with Hydra "
        "when it has a defaults list), a config printed by `nip config show`, or a "
        "run's hyper_params.json. With --config-name, validate that config with "
        "the overrides, as `nip run` composes it.",
    )
    validate.add_argument("--config-name", "-c", metavar="NAME")
    validate.add_argument(
        "arguments",
        nargs="*",
        metavar="FILE | OVERRIDE",
        help="the file to validate; with --config-name, overrides instead",
    )

    plugins = commands.add_parser(
        "plugins",
        help="list installed plugins and what they contribute",
        description="List the built-in and installed plugins, their versions, what "
        "each registers, and plugins that failed to load.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")

    datasets = commands.add_parser(
        "datasets", help="generate and list datasets", description="Datasets."
    )
    dataset_commands = datasets.add_subparsers(
        dest="datasets_command", metavar="COMMAND"
    )
    dataset_commands.required = True
    generate = dataset_commands.add_parser(
        "generate",
        help="generate a dataset with a scenario's builder",
        description="Generate a dataset with the builder a scenario plugin "
        "registers. The builder's options are flags: see them with "
        "`nip datasets generate SCENARIO NAME --help`.",
    )
    generate.add_argument("scenario", metavar="SCENARIO")
    generate.add_argument("name", metavar="NAME", help="the new dataset's name")
    generate.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"where to write it (default: {DATA_DIR_RULE})",
    )
    generate.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a dataset of that name that already exists",
    )
    generate.add_argument(
        "builder_options",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="the builder's options",
    )
    listing = dataset_commands.add_parser(
        "list",
        help="list scenarios' datasets and builders",
        description="List each scenario's named datasets, the datasets on disk and "
        "the builder command.",
    )
    listing.add_argument(
        "--data-dir", metavar="DIR", help=f"where to look (default: {DATA_DIR_RULE})"
    )

    from nip_core.cli.report_cmd import add_report_parser

    add_report_parser(commands)
    analyse = commands.add_parser(
        "analyse",
        help="run rollout analysers on the text rollouts a run saved",
        description="Run rollout analysers (see `nip plugins` for the registered "
        "ones) on every rollouts file of a text run; write "
        "<run>/analysis/<analyser>.jsonl and print a summary.",
    )
    analyse.add_argument(
        "run", metavar="RUN", help="a run directory, or a run id under --runs-dir"
    )
    analyse.add_argument(
        "--analyser",
        dest="analysers",
        metavar="NAME",
        action="append",
        required=True,
        help="an analyser to run (repeat it for several)",
    )
    analyse.add_argument(
        "--runs-dir",
        metavar="DIR",
        default="runs",
        help="where run ids are looked up (default: runs)",
    )
    analyse.add_argument(
        "--split",
        dest="splits",
        choices=("train", "test"),
        action="append",
        help="which rollouts to analyse (default: both)",
    )
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "plugins":
        from nip_core.cli.plugins_cmd import run_plugins_command

        return run_plugins_command(as_json=args.json)
    if args.command == "run":
        configure_logging()
        from nip_core.cli import run_cmd

        if args.multirun or args.resume_sweep is not None:
            return run_cmd.run_sweep(
                args.config_name,
                args.overrides,
                debug=args.debug,
                resume_sweep=args.resume_sweep,
            )
        return run_cmd.run_single(args.config_name, args.overrides)
    if args.command == "resume":
        configure_logging()
        from nip_core.cli import run_cmd

        return run_cmd.resume(
            args.run_id,
            args.runs_dir,
            device=args.device,
            parameter_overrides=args.parameter_overrides,
        )
    if args.command == "config":
        from nip_core.cli import config_cmd

        if args.config_command == "show":
            return config_cmd.show(
                args.config_name, args.overrides, raw=args.raw, show_all=args.show_all
            )
        if args.config_name is not None:
            return config_cmd.validate_named(args.config_name, args.arguments)
        if len(args.arguments) != 1:
            from nip_core.errors import UsageError

            raise UsageError(
                "nip config validate takes one FILE, or --config-name NAME and "
                "overrides"
                + (f" (got {' '.join(args.arguments)})" if args.arguments else "")
            )
        return config_cmd.validate(args.arguments[0])
    if args.command == "datasets":
        configure_logging(take_over_torchrl=False)
        from nip_core.cli import datasets_cmd

        if args.datasets_command == "generate":
            return datasets_cmd.generate(
                args.scenario,
                args.name,
                args.builder_options,
                data_dir=args.data_dir,
                overwrite=args.overwrite,
            )
        return datasets_cmd.list_datasets(data_dir=args.data_dir)
    if args.command == "analyse":
        return _analyse(args)
    if args.command == "report":
        from nip_core.cli.report_cmd import run_report_command

        return run_report_command(args)
    raise AssertionError(f"unhandled command {args.command!r}")


def _analyse(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nip_core.errors import CheckpointError
    from nip_core.text.analysis import analyse_run

    run_dir = Path(args.run)
    if not run_dir.is_dir():
        run_dir = Path(args.runs_dir) / args.run
    if not run_dir.is_dir():
        raise CheckpointError(
            f"no run directory {args.run!r} (looked in . and in {args.runs_dir})"
        )
    results = analyse_run(
        run_dir, args.analysers, splits=tuple(args.splits or ("train", "test"))
    )
    for name, records in results.items():
        print(f"{name} -> {run_dir / 'analysis' / (name + '.jsonl')}")
        for record in records:
            print(f"  {record['file']}: {format_analysis_record(record)}")
    return 0


ANALYSIS_RECORD_KEYS = ("file", "split", "iteration")
"""What an analysis record says besides its metrics (not printed as one)."""


def format_analysis_record(record: Mapping[str, Any]) -> str:
    """A record's metrics as ``name=value`` for ``nip analyse``'s summary: every
    number, ``nan`` included (a metric with nothing to measure, such as a judge's
    when no reply parsed, says so rather than going missing)."""
    return ", ".join(
        f"{key}={value:.3g}"
        for key, value in record.items()
        if key not in ANALYSIS_RECORD_KEYS
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    )


def _shown(message: object) -> str:
    """An error as printed: a credential's value in it (a key pasted into a
    setting, echoed as the bad value) shown as its variable's name."""
    from nip_core.settings import redact_secrets

    return redact_secrets(str(message))


def main(argv: Sequence[str] | None = None, *, ends_process: bool = False) -> int:
    """Run the ``nip`` command; return its exit status.

    Parameters
    ----------
    argv : Sequence[str] | None
        The arguments (without the program name); ``sys.argv[1:]`` by default.
    ends_process : bool
        Whether the process ends with this command (the console script,
        :func:`console_main`): stopped by Ctrl-C or SIGTERM, it then ignores
        Ctrl-C until it has exited, so that its exit status is the command's
        (see :func:`~nip_core.runs.interrupts.ignore_interrupts_until_exit`).
        Leave it ``False`` where code goes on after the call.
    """
    from nip_core.cli.plugins_cmd import install_plugin_warning_format
    from nip_core.errors import NipConfigError, NipError, UsageError
    from nip_core.runs.interrupts import interrupts_kept, terminate_as_interrupt

    install_plugin_warning_format()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with interrupts_kept(), terminate_as_interrupt():
            status = _dispatch(args)
        # inside the try: a closed pipe shows up when the output is flushed
        sys.stdout.flush()
        return status
    except NipError as error:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"nip: error: {_shown(error)}", file=sys.stderr)
        return (
            EXIT_CONFIG_ERROR
            if isinstance(error, NipConfigError | UsageError)
            else EXIT_ERROR
        )
    except KeyboardInterrupt as error:
        if ends_process:
            from nip_core.runs.interrupts import ignore_interrupts_until_exit

            ignore_interrupts_until_exit()
        print(interrupted_message(error), file=sys.stderr)
        return EXIT_TERMINATED if _terminated(error) else EXIT_INTERRUPTED
    except BrokenPipeError:
        # `nip datasets list | head`: the reader has what it wanted
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (OSError, MemoryError, RuntimeError) as error:
        message = environment_error_message(error)
        if message is None:
            raise
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"nip: error: {_shown(message)}", file=sys.stderr)
        return EXIT_ERROR


EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it terminated
EXIT_BROKEN_PIPE = 141


def _terminated(error: BaseException | None) -> bool:
    """Whether an interrupt was SIGTERM (itself, or the cause of a run's)."""
    from nip_core.runs.interrupts import is_terminated

    return is_terminated(error)


def interrupted_message(error: BaseException) -> str:
    """What ``nip`` prints on Ctrl-C or SIGTERM: for a run or a sweep, how to
    continue it."""
    from nip_core.errors import RunInterrupted, SweepInterrupted

    what = "terminated (SIGTERM)" if _terminated(error) else "interrupted"
    if isinstance(error, SweepInterrupted):
        return (
            f"nip: {what}: sweep {error.sweep_dir} stopped; its finished runs are "
            "kept, the others continue from their last checkpoint with: "
            f"nip run -m --resume-sweep {error.sweep_dir}"
        )
    if not isinstance(error, RunInterrupted):
        return f"nip: {what}"
    return f"nip: {error.describe(terminated=_terminated(error))}"


def environment_error_message(error: BaseException) -> str | None:
    """One line for a fault of the machine rather than of nip: a disk nip cannot
    write (read-only, full, no permission) or memory that runs out. ``None`` for
    any other error (a bug, shown with its traceback)."""
    from nip_core.runs.io import describe_storage_error, is_storage_error

    if is_storage_error(error):
        assert isinstance(error, OSError)
        return (
            f"{describe_storage_error(error)}. Free space or choose a writable "
            "directory (run.runs_dir=DIR for runs, --data-dir DIR or run.data_dir "
            "for datasets, run.cache_dir for caches)"
        )
    text = str(error)
    out_of_memory = isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError)
        and ("can't allocate memory" in text or "out of memory" in text.lower())
    )
    if out_of_memory:
        first = text.strip().splitlines()[0] if text.strip() else ""
        detail = first.split("DefaultCPUAllocator: ", 1)[-1] if first else ""
        return (
            f"out of memory{f' ({detail})' if detail else ''}. Make the run "
            "smaller (rl.frames_per_batch, rl.minibatch_size, the agents' widths) "
            "or use a machine with more memory"
        )
    return None


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def console_main() -> None:
    """The ``nip`` console script: :func:`main` on ``sys.argv``, ending the
    process with its exit status."""
    sys.exit(main(sys.argv[1:], ends_process=True))


if __name__ == "__main__":
    console_main()
