"""Analysis of runs: plots, reports comparing runs, and message regression.

Importing this package (and :mod:`nip_core.analysis.report`,
:mod:`nip_core.analysis.plots`) does not import torch: ``nip report`` reads run
directories only. :mod:`nip_core.analysis.message_regression` uses torch and is
imported on its own by the trainers that need it.
"""

from nip_core.analysis.plots import write_comparison_plots, write_run_plots
from nip_core.analysis.report import (
    Estimate,
    NoMetricsError,
    Report,
    ReportError,
    RunData,
    RunGroup,
    RunNotFoundError,
    build_report,
    final_metrics,
    group_runs,
    load_run,
    mean_confidence_interval,
    resolve_run_paths,
)

__all__ = [
    "Estimate",
    "NoMetricsError",
    "Report",
    "ReportError",
    "RunData",
    "RunGroup",
    "RunNotFoundError",
    "build_report",
    "final_metrics",
    "group_runs",
    "load_run",
    "mean_confidence_interval",
    "resolve_run_paths",
    "write_comparison_plots",
    "write_run_plots",
]
