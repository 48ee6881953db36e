"""``nip report RUN [RUN ...]``: plots and a table of final metrics of runs.

One run: its curves are drawn into ``<run>/plots/``. Several runs (a sweep's seeds,
one run per protocol, ...): they are grouped by the hyper-parameters that differ
between them (except the seed) or by ``--group-by``, and each group's mean with a
confidence band is drawn into ``--out`` (default ``./report``). Either way the table
of final metrics is printed (``--json``: the whole report as JSON) and written as
``final_metrics.csv``, ``group_metrics.csv`` and ``report.json``.

Light: reads JSON files and draws with matplotlib; never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["add_report_parser", "run_report_command"]


def add_report_parser(
    subparsers: argparse._SubParsersAction,
) -> argparse.ArgumentParser:
    """Add the ``report`` sub-command to the ``nip`` parser's sub-parsers."""
    report = subparsers.add_parser(
        "report",
        help="plot runs and print a table of their final metrics",
        description="Draw accuracy, reward and episode-length plots for one run, "
        "or compare several runs (grouped by the hyper-parameters that differ "
        "between them except the seed: the mean of each group with a confidence "
        "band), and print a table of final metrics.",
    )
    report.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="a run directory, a run id under --runs-dir, or a glob of either "
        "(quote it: 'runs/2026*'); or a sweep directory of `nip run -m` "
        "(runs/sweeps/NAME), for all of its runs",
    )
    report.add_argument(
        "--runs-dir",
        metavar="DIR",
        default="runs",
        help="where run ids are looked up (default: runs)",
    )
    report.add_argument(
        "--out",
        metavar="DIR",
        help="where to write plots and tables (default: <run>/plots for one run, "
        "./report for several)",
    )
    report.add_argument(
        "--group-by",
        metavar="KEY",
        action="append",
        help="a dotted hyper-parameter labelling the groups, e.g. "
        "interaction_protocol; repeat it or separate keys by commas "
        "(default: every hyper-parameter that differs between the runs but the seed)",
    )
    report.add_argument(
        "--episodes",
        metavar="N",
        type=int,
        default=None,
        help="draw N episodes of each run's latest rollout sample, when its "
        "scenario has an episode renderer (default: 4; 0: none); given, a run "
        "of which none is drawn is said so",
    )
    report.add_argument(
        "--confidence",
        metavar="LEVEL",
        type=float,
        default=0.95,
        help="confidence level of the bands and intervals (default: 0.95)",
    )
    report.add_argument(
        "--smooth",
        metavar="N",
        type=int,
        default=1,
        help="draw each training curve as its trailing mean over N logged "
        "iterations (test curves and the tables as logged; default: 1, none)",
    )
    from nip_core.analysis.report import X_AXES

    report.add_argument(
        "--x-axis",
        choices=X_AXES,
        default="iteration",
        help="draw the curves against iterations (default) or against each run's "
        "wall-clock minutes (timing.elapsed_s; a group at its runs' mean)",
    )
    report.add_argument(
        "--json", action="store_true", help="print the report as JSON instead of text"
    )
    return report


def run_report_command(args: argparse.Namespace, file: TextIO | None = None) -> int:
    """Run ``nip report`` with parsed arguments; return the exit status.

    Raises :class:`~nip_core.analysis.report.ReportError` (a ``NipError``) for a run
    that does not exist or has no metrics, and for a ``--group-by`` key no run has;
    ``nip``'s main prints it without a traceback.
    """
    from nip_core.analysis.report import (
        DEFAULT_NUM_EPISODES,
        ReportError,
        build_report,
        resolve_run_paths,
    )
    from nip_core.errors import UsageError

    out = sys.stdout if file is None else file
    # bad options exit 2, as every command's do
    if not 0 < args.confidence < 1:
        raise UsageError(f"--confidence must lie in (0, 1), got {args.confidence}")
    if args.episodes is not None and args.episodes < 0:
        raise UsageError(f"--episodes must be 0 or more, got {args.episodes}")
    if args.smooth < 1:
        raise UsageError(f"--smooth must be 1 or more, got {args.smooth}")
    group_by = None
    if args.group_by:
        group_by = [key.strip() for item in args.group_by for key in item.split(",")]
        group_by = [key for key in group_by if key]
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ReportError(
            f"--out {args.out} is a file; the report writes a directory of tables "
            "and plots there: name a directory"
        )
    paths = resolve_run_paths(args.runs, args.runs_dir)
    report = build_report(
        paths,
        out_dir=args.out,
        group_by=group_by,
        num_episodes=DEFAULT_NUM_EPISODES if args.episodes is None else args.episodes,
        explain_episodes=args.episodes is not None,
        confidence=args.confidence,
        smooth=args.smooth,
        x_axis=args.x_axis,
    )
    for warning in report.warnings:
        print(f"nip: warning: {warning}", file=sys.stderr)
    if args.json:
        json.dump(report.to_dict(), out, indent=2)
        out.write("\n")
    else:
        out.write(report.format_text() + "\n")
    return 0
