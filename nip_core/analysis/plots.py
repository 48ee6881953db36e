"""PNG plots of runs: one run's curves, or groups of runs compared.

Figures (see :func:`nip_core.analysis.report.report_panels`), each written only when
the runs logged some of its metrics. The core's:

``accuracy.png``
    Verifier accuracy (``mean_accuracy``; solo-agent trainers' per-agent
    ``train_accuracy``) over iterations, test accuracy dashed with markers.
``rewards.png``
    Each agent's mean episode reward (and test reward).
``episode_length.png``
    Mean episode length (and test episode length).
``fine_tune_examples.png``
    Staged text trainers: the examples each shared model group was fine-tuned on.
``message_regression.png``
    Each agent's message-regression held-out accuracy.

Plugins add figures for their own metrics (``register_report_panels``).

Matplotlib is imported when a figure is drawn, and only its object-oriented API
with the Agg canvas is used: no pyplot, no global backend switch, so drawing is safe
inside a training process or a notebook.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nip_core.analysis.report import (
    DEFAULT_CONFIDENCE,
    PANEL_BOUNDS,
    X_AXES,
    MetricFamily,
    RunData,
    RunGroup,
    Series,
    aggregate_series,
    classify_metric,
    elapsed_minutes,
    load_run,
    metric_families,
    report_panels,
    smooth_series,
)
from nip_core.runs.run_dir import PLOTS_DIR, RunDirectory

__all__ = ["mean_positions", "write_comparison_plots", "write_run_plots"]

_DPI = 100
_COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip

SeriesKey = tuple[str, bool]
"""(subject, test): the agent a metric is about (``""`` for none) and whether it is
a test metric."""


def _panel_series(
    run: RunData, panel: str, families: Sequence[MetricFamily], smooth: int = 1
) -> dict[SeriesKey, tuple[str, Series]]:
    found: dict[SeriesKey, tuple[str, Series]] = {}
    for name, series in run.series.items():
        info = classify_metric(name, families)
        if info is None or info.family.panel != panel or not series:
            continue
        if not info.family.test:
            series = smooth_series(series, smooth)
        found.setdefault((info.subject, info.family.test), (name, series))
    return found


def _order(keys: Sequence[SeriesKey]) -> list[SeriesKey]:
    return sorted(keys, key=lambda k: (k[0], k[1]))


def _new_figure(ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4 * min(ncols, 3) ** 0.8, 4.2 * nrows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, axes


_TITLE_CHARACTERS = 58
"""About the characters of a title that fit one axes' width at matplotlib's title
size; longer titles are wrapped, not cut off at the figure's edges."""


def _wrapped(title: str, ncols: int = 1) -> str:
    """``title`` wrapped to the width of ``ncols`` axes of :func:`_new_figure`."""
    import textwrap

    width = int(_TITLE_CHARACTERS * min(ncols, 3) ** 0.8)
    return textwrap.fill(title, width=width, break_long_words=False)


_LEGEND_CHARACTERS = 40
"""The longest legend line: a longer group label is wrapped, so the legend stays
within the axes' width instead of running off the figure."""


def _legend_label(label: str) -> str:
    """A legend entry wrapped to :data:`_LEGEND_CHARACTERS`, breaking after the
    commas between keys where it can."""
    import textwrap

    return textwrap.fill(
        label, width=_LEGEND_CHARACTERS, break_long_words=True, break_on_hyphens=False
    )


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # a figure too crowded to lay out tightly is still drawn, as it is
        warnings.filterwarnings("ignore", message="Tight layout not applied")
        figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    figure.savefig(tmp, dpi=_DPI, format="png")
    os.replace(tmp, path)
    return path


_X_LABELS = {"iteration": "iteration", "minutes": "minutes (wall clock)"}


def _check_x_axis(x_axis: str) -> None:
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {', '.join(X_AXES)}, got {x_axis!r}")


def _placed(
    steps: Sequence[int], x_of: Mapping[int, float] | None
) -> tuple[list[float], list[int]]:
    """The x positions of ``steps`` (the steps themselves without ``x_of``) and the
    indices of the steps kept: a step ``x_of`` has no position for is left out."""
    if x_of is None:
        return [float(step) for step in steps], list(range(len(steps)))
    kept = [i for i, step in enumerate(steps) if step in x_of]
    return [x_of[steps[i]] for i in kept], kept


def mean_positions(positions: Sequence[Mapping[int, float]]) -> dict[int, float]:
    """Per step that every run has a position for, the mean of their positions:
    where a group's point at that step is drawn against wall-clock time. Steps
    only some runs reached are left out: a mean over fewer, faster or slower
    runs would move the curve back and forth along the time axis."""
    if not positions:
        return {}
    common = set(positions[0]).intersection(*positions[1:])
    return {
        step: sum(one[step] for one in positions) / len(positions)
        for step in sorted(common)
    }


def _subject_label(panel: str, subject: str) -> str:
    if subject:
        return subject
    return "verifier" if panel == "accuracy" else ""


def write_run_plots(
    run: str | os.PathLike | RunDirectory | RunData,
    out_dir: str | os.PathLike | None = None,
    *,
    smooth: int = 1,
    x_axis: str = "iteration",
) -> list[Path]:
    """Draw a run's curves as PNG files.

    Parameters
    ----------
    run : str | os.PathLike | RunDirectory | RunData
        The run directory (or a loaded run).
    out_dir : str | os.PathLike | None
        Where to write; default ``<run>/plots/``.
    smooth : int
        Draw the training curves as trailing means over this many logged points
        (test curves as they are).
    x_axis : str
        ``"iteration"``, or ``"minutes"``: against the run's wall-clock minutes
        (``timing.elapsed_s``; nothing is drawn for a run that never logged it).

    Returns
    -------
    list[Path]
        The files written: one per figure whose metrics the run logged; empty when
        the run has logged nothing yet (never an error, so a trainer can call it
        whatever happened).
    """
    if isinstance(run, RunDirectory):
        run = run.path
    if not isinstance(run, RunData):
        path = Path(run)
        if not path.is_dir():
            return []
        run = load_run(path, require_metrics=False)
    _check_x_axis(x_axis)
    out = Path(out_dir) if out_dir is not None else run.path / PLOTS_DIR
    minutes = x_axis == "minutes"
    written: list[Path] = []
    families = metric_families()
    for panel, (title, ylabel) in report_panels().items():
        series = _panel_series(run, panel, families, smooth)
        if minutes:
            # each value at the clock of the record it was logged in
            series = {
                key: (name, [(s, v) for s, v in values if s in run.clock.get(name, {})])
                for key, (name, values) in series.items()
            }
            series = {key: found for key, found in series.items() if found[1]}
        if not series:
            continue
        figure, axes = _new_figure()
        ax = axes[0][0]
        subjects = sorted({subject for subject, _ in series})
        for key in _order(list(series)):
            subject, test = key
            name, values = series[key]
            color = _COLORS[subjects.index(subject) % len(_COLORS)]
            x_of = elapsed_minutes(run, name) if minutes else None
            steps, _ = _placed([s for s, _ in values], x_of)
            ys = [v for _, v in values]
            label = (
                " ".join(
                    p
                    for p in (_subject_label(panel, subject), "test" if test else "")
                    if p
                )
                or name
            )
            ax.plot(
                steps,
                ys,
                color=color,
                linestyle="--" if test else "-",
                marker="o" if test or len(values) == 1 else None,
                markersize=4 if test and len(values) > 1 else None,
                label=label,
            )
        ax.set_title(_wrapped(f"{title} — {run.run_id}"))
        ax.set_xlabel(_X_LABELS[x_axis])
        _whole_iterations(ax, x_axis)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        written.append(_save(figure, out / f"{panel}.png"))
    return written


def _whole_iterations(ax: Any, x_axis: str) -> None:
    """Iterations are whole numbers: no ticks at 0.5 (matplotlib's default for a
    short run)."""
    if x_axis == "iteration":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def interval_bounds(
    means: Sequence[float],
    half_widths: Sequence[float],
    bounds: tuple[float, float] | None = None,
) -> tuple[list[float], list[float]]:
    """Lower and upper ends of ``mean ± half_width`` (a ``nan`` half-width is 0),
    cut to ``bounds``: an accuracy's interval never leaves [0, 1]."""
    low, high = -math.inf, math.inf
    if bounds is not None:
        low, high = bounds
    lower, upper = [], []
    for mean, half in zip(means, half_widths, strict=True):
        half = 0.0 if math.isnan(half) else half
        lower.append(min(max(mean - half, low), high))
        upper.append(max(min(mean + half, high), low))
    return lower, upper


def _draw_group(
    ax: Any,
    series: Sequence[Series],
    color: str,
    label: str | None,
    test: bool,
    confidence: float,
    x_offset: float = 0.0,
    bounds: tuple[float, float] | None = None,
    x_of: Mapping[int, float] | None = None,
) -> bool:
    """Draw one group's curve (or test points); whether anything was drawn."""
    aggregated = aggregate_series(series, confidence)
    steps, kept = _placed([step for step, _ in aggregated], x_of)
    if not kept:
        return False
    aggregated = [aggregated[i] for i in kept]
    means = [e.mean for _, e in aggregated]
    half = [e.half_width for _, e in aggregated]
    lower, upper = interval_bounds(means, half, bounds)
    if test and all(len(one) <= 1 for one in series):
        # Runs that tested once (at the end): markers with error bars. Groups' test
        # points share a step: shift them apart so none hides another
        ax.errorbar(
            [step + x_offset for step in steps],
            means,
            yerr=[
                [max(m - lo, 0.0) for m, lo in zip(means, lower, strict=True)],
                [max(hi - m, 0.0) for m, hi in zip(means, upper, strict=True)],
            ],
            color=color,
            marker="o",
            linestyle="none",
            capsize=4,
            label=label,
        )
        return True
    ax.plot(
        steps,
        means,
        color=color,
        linestyle="--" if test else "-",
        # a test during training (rl.test_period): a point per test
        marker="o" if test or len(steps) == 1 else None,
        markersize=4 if test and len(steps) > 1 else None,
        label=label,
    )
    has_band = [not math.isnan(h) for h in half]
    if any(has_band):
        ax.fill_between(
            steps,
            lower,
            upper,
            where=has_band,
            color=color,
            alpha=0.2,
            linewidth=0,
        )
    return True


def write_comparison_plots(
    groups: Sequence[RunGroup],
    out_dir: str | os.PathLike,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    smooth: int = 1,
    x_axis: str = "iteration",
) -> list[Path]:
    """Draw groups of runs against each other.

    Each group's curve is its runs' mean at every iteration, with a band of the
    Student-t confidence interval over the runs that logged that iteration (no band
    where only one did). Test metrics (usually one point, at the end) are drawn as
    markers with error bars. Per-agent metrics get one sub-plot per agent.

    Parameters
    ----------
    groups : Sequence[RunGroup]
        The groups (see :func:`nip_core.analysis.report.group_runs`).
    out_dir : str | os.PathLike
        Where to write ``<figure>.png``.
    confidence : float
        The confidence level of the bands.
    smooth : int
        Each run's training curves are trailing means over this many logged points
        before the groups are averaged (test curves as they are).
    x_axis : str
        ``"iteration"``, or ``"minutes"``: each group's point at an iteration is
        drawn at the mean over its runs of their wall-clock minutes there
        (``timing.elapsed_s`` of the records the values came from), up to the
        iteration every run of the group reached (:func:`mean_positions`).

    Returns
    -------
    list[Path]
        The files written.
    """
    _check_x_axis(x_axis)
    out = Path(out_dir)
    written: list[Path] = []
    families = metric_families()
    minutes = x_axis == "minutes"
    for panel, (title, ylabel) in report_panels().items():
        per_group = [
            [_panel_series(run, panel, families, smooth) for run in group.runs]
            for group in groups
        ]
        subjects = sorted(
            {subject for runs in per_group for found in runs for subject, _ in found}
        )
        if not subjects:
            continue
        ncols = min(len(subjects), 3)
        nrows = math.ceil(len(subjects) / ncols)
        figure, axes = _new_figure(ncols, nrows)
        flat_axes = [ax for row in axes for ax in row]
        for ax in flat_axes[len(subjects) :]:
            ax.set_visible(False)
        last_step = max(
            (
                values[-1][0]
                for runs in per_group
                for found in runs
                for _, values in found.values()
            ),
            default=1,
        )
        # groups' test points at one iteration are shifted apart; against time
        # each point stays where its runs logged it
        spread = 0.0 if minutes else 0.012 * max(last_step, 1)
        for ax, subject in zip(flat_axes, subjects, strict=False):
            for index, (group, runs) in enumerate(zip(groups, per_group, strict=True)):
                color = _COLORS[index % len(_COLORS)]
                labelled = False
                for test in (False, True):
                    logged = [
                        (run, found[(subject, test)])
                        for run, found in zip(group.runs, runs, strict=True)
                        if (subject, test) in found
                    ]
                    series = [values for _, (_, values) in logged]
                    if not series:
                        continue
                    x_of = (
                        mean_positions(
                            [elapsed_minutes(run, name) for run, (name, _) in logged]
                        )
                        if minutes
                        else None
                    )
                    label = (
                        None
                        if labelled
                        else _legend_label(
                            f"{group.display_label} (n={len(group.runs)})"
                        )
                    )
                    offset = (index - (len(groups) - 1) / 2) * spread
                    labelled |= _draw_group(
                        ax,
                        series,
                        color,
                        label,
                        test,
                        confidence,
                        x_offset=offset,
                        bounds=PANEL_BOUNDS.get(panel),
                        x_of=x_of,
                    )
            sub_title = _subject_label(panel, subject)
            ax.set_title(_wrapped(sub_title if len(subjects) > 1 else title))
            ax.set_xlabel(_X_LABELS[x_axis])
            _whole_iterations(ax, x_axis)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        if len(subjects) > 1:
            figure.suptitle(_wrapped(title, ncols))
        percent = f"{confidence * 100:g}%"
        figure.text(
            0.99,
            0.005,
            f"band: {percent} t-interval over runs"
            + (
                " (drawn within [{:g}, {:g}])".format(*PANEL_BOUNDS[panel])
                if panel in PANEL_BOUNDS
                else ""
            )
            + "; dashed/markers: test",
            ha="right",
            va="bottom",
            fontsize="x-small",
            color="#555555",
        )
        written.append(_save(figure, out / f"{panel}.png"))
    return written
