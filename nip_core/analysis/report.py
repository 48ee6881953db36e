"""Reports on runs: load run directories, group them, summarise their final metrics.

A report reads only what a run wrote to its directory (``hyper_params.json`` and
``metrics.jsonl``, see :mod:`nip_core.runs.run_dir`), so it works on finished,
crashed and running runs alike and never imports torch.

Runs are grouped by a label made of hyper-parameters (by default the ones that
differ between the runs, except the seed: ``interaction_protocol=debate``). Each
group's value of a metric is the mean over its runs with a confidence interval (a
Student-t interval over the runs; a single run has none).

The metrics a report knows (:func:`metric_families`) come from the report panels
plugins register (``register_report_panels``). The core's panels hold verifier
accuracy (``mean_accuracy``), per-agent mean episode reward
(``{agent}.mean_episode_reward``), mean episode length (``mean_episode_length``),
their ``test_`` variants, the solo-agent accuracies (``{agent}.train_accuracy``,
``{agent}.test_accuracy``), the fine-tune examples of staged text trainers
(``fine_tune.{group}.num_examples``) and message regression
(``{agent}.message_regression_test_accuracy``); trainer plugins add their own.
Whatever else a run logged is ignored; whatever of these it did not log is left
out.
"""

from __future__ import annotations

import csv
import difflib
import glob
import json
import math
import re
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from nip_core.errors import NipError
from nip_core.runs.run_dir import (
    ELAPSED_METRIC,
    HYPER_PARAMS_FILE,
    METRICS_FILE,
    PLOTS_DIR,
    ROLLOUTS_DIR,
    iter_metric_records,
)

__all__ = [
    "DEFAULT_CONFIDENCE",
    "Estimate",
    "MetricFamily",
    "NoMetricsError",
    "Report",
    "ReportError",
    "RunData",
    "RunGroup",
    "RunNotFoundError",
    "X_AXES",
    "aggregate_series",
    "build_report",
    "elapsed_minutes",
    "timed_from_the_start",
    "final_metrics",
    "group_runs",
    "load_run",
    "mean_confidence_interval",
    "metric_families",
    "report_panels",
    "resolve_run_paths",
    "smooth_series",
    "t_critical_value",
    "write_episode_pictures",
]

DEFAULT_CONFIDENCE = 0.95
"""The confidence level of the intervals in reports and comparison plots."""

DEFAULT_NUM_EPISODES = 4
"""Episode pictures drawn per run when the scenario has a renderer."""

X_AXES = ("iteration", "minutes")
"""What plots draw against: the iteration (the logged step), or the run's wall-clock
minutes at it (``timing.elapsed_s``, which the run context logs with every record)."""

GROUP_EXCLUDED_KEYS = frozenset({"seed"})
"""Hyper-parameters never used to tell groups apart: runs that differ only in them
are repetitions of one experiment."""


class ReportError(NipError):
    """A report cannot be made from the runs given."""


class RunNotFoundError(ReportError, FileNotFoundError):
    """A run named on the command line is neither a directory nor a run id."""


class NoMetricsError(ReportError):
    """A run directory holds no logged metrics (yet)."""


# --------------------------------------------------------------------------------------
# Which metrics a report shows


@attrs.frozen
class MetricFamily:
    """A kind of metric the trainers log, matched by name.

    Parameters
    ----------
    panel : str
        The figure it is drawn in (a key of :func:`report_panels`).
    pattern : str
        Regular expression matching the full metric name; a named group ``agent``
        captures the agent of per-agent metrics.
    test : bool
        Whether it is measured on the test set (drawn dashed, with markers).
    display : str
        How the table names it; ``{agent}`` is replaced by the agent.
    """

    panel: str
    pattern: str
    test: bool
    display: str

    def match(self, name: str) -> str | None:
        """The agent of ``name`` (``""`` when not per agent), or ``None``."""
        found = re.fullmatch(self.pattern, name)
        if found is None:
            return None
        return found.groupdict().get("agent") or ""


def _panel_specs() -> list[Any]:
    from nip_core.plugins import get_plugin_manager

    return sorted(
        get_plugin_manager().report_panels.values(),
        key=lambda spec: (spec.order, spec.name),
    )


def report_panels() -> dict[str, tuple[str, str]]:
    """Figure name to (title, y-axis label), in table order.

    The panels come from the ``register_report_panels`` hook: the core's (accuracy,
    rewards, episode length, fine-tune examples, message regression) and those of
    installed plugins. Each figure is written as ``<name>.png``.
    """
    return {spec.name: (spec.title, spec.ylabel) for spec in _panel_specs()}


def metric_families() -> tuple[MetricFamily, ...]:
    """The metrics plots and tables show, in the order the table shows them."""
    return tuple(
        MetricFamily(
            panel=spec.name,
            pattern=metric.pattern,
            test=metric.test,
            display=metric.display,
        )
        for spec in _panel_specs()
        for metric in spec.metrics
    )


PANEL_BOUNDS: Mapping[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "message_regression": (0.0, 1.0),
}
"""The range a panel's quantity cannot leave (accuracies are proportions): the
confidence bands and error bars drawn are cut to it."""


@attrs.frozen
class MetricInfo:
    """What a metric name means to a report: its family and agent."""

    name: str
    family: MetricFamily
    agent: str

    @property
    def display(self) -> str:
        return self.family.display.format(agent=self.agent)

    @property
    def subject(self) -> str:
        """What the metric is about within its panel (an agent, or ``""``)."""
        return self.agent


def classify_metric(
    name: str, families: Sequence[MetricFamily] | None = None
) -> MetricInfo | None:
    """The family and agent of a metric name, or ``None`` for other metrics.

    ``families`` defaults to :func:`metric_families`.
    """
    for family in metric_families() if families is None else families:
        agent = family.match(name)
        if agent is not None:
            return MetricInfo(name=name, family=family, agent=agent)
    return None


def known_metrics(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that a report shows, in table order."""
    families = metric_families()
    ranked = []
    for name in set(names):
        info = classify_metric(name, families)
        if info is not None:
            ranked.append((families.index(info.family), name))
    return [name for _, name in sorted(ranked)]


# --------------------------------------------------------------------------------------
# Loading runs


Series = list[tuple[int, float]]
"""A metric's values over steps, sorted by step."""


@attrs.frozen(eq=False)
class RunData:
    """What a report reads from one run directory.

    Parameters
    ----------
    path : Path
        The run directory.
    hyper_params : dict
        The saved hyper-parameter dict (empty when the file is missing).
    series : dict[str, Series]
        Every numeric metric: ``(step, value)`` pairs sorted by step, the last value
        logged for a step winning (a resumed run logs some steps twice).
    clock : dict[str, dict[int, float]]
        Per metric and step, the run's clock (``timing.elapsed_s``) of the record
        that value came from: where it is drawn against wall-clock time. Empty for
        runs made before nip-core logged the clock.
    """

    path: Path
    hyper_params: dict[str, Any]
    series: dict[str, Series]
    clock: dict[str, dict[int, float]] = attrs.field(factory=dict)
    non_finite: dict[str, tuple[int, float]] = attrs.field(factory=dict)
    """Metrics whose last logged values are non-finite (NaN, infinite: a run that
    diverged, or an iteration in which no episode ended): the step they have been
    so from and the last such value. They are not in :attr:`series` (nothing to
    draw); reports warn about them."""

    @property
    def run_id(self) -> str:
        return self.path.name

    def final(self, name: str) -> float | None:
        """The last finite value logged of a metric (NaN or infinite when it was
        never finite), or ``None`` when never logged. Where later values were not
        finite, :meth:`non_finite_warnings` says so."""
        values = self.series.get(name)
        if values:
            return values[-1][1]
        if name in self.non_finite:
            return self.non_finite[name][1]
        return None

    def non_finite_warnings(self, names: Iterable[str] | None = None) -> list[str]:
        """One line per metric (of ``names``, default all) whose final value is not
        finite."""
        lines = []
        wanted = None if names is None else set(names)
        for name, (since, value) in sorted(self.non_finite.items()):
            if wanted is not None and name not in wanted:
                continue
            finite = self.series.get(name)
            if finite:
                lines.append(
                    f"run {self.run_id}: {name} is {value} from step {since} on; "
                    f"its final value here is the last finite one, "
                    f"{finite[-1][1]:.4g} at step {finite[-1][0]}"
                )
            else:
                lines.append(
                    f"run {self.run_id}: {name} was never finite (last {value}); "
                    "group means and intervals leave this run out for it"
                )
        return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_metric_series(metrics_path: Path) -> dict[str, Series]:
    """Read ``metrics.jsonl`` into per-metric series.

    A line that is not valid JSON (the last line of a run killed while writing) is
    skipped. Non-numeric and non-finite values are left out (see
    :attr:`RunData.non_finite` for the latter).
    """
    return _read_metrics(metrics_path)[0]


def _read_metrics(
    metrics_path: Path,
) -> tuple[
    dict[str, Series], dict[str, dict[int, float]], dict[str, tuple[int, float]]
]:
    """The series of :func:`read_metric_series`, per metric and step the
    ``timing.elapsed_s`` of the record the kept value came from (see
    :attr:`RunData.clock`), and the metrics that end non-finite
    (:attr:`RunData.non_finite`)."""
    by_step: dict[str, dict[int, float]] = {}
    clock: dict[str, dict[int, float]] = {}
    non_finite: dict[str, tuple[int, float]] = {}
    for index, record in iter_metric_records(metrics_path):
        step = record.get("step", index)
        if not _is_number(step):
            continue
        elapsed = record.get(ELAPSED_METRIC)
        timed = _is_number(elapsed) and math.isfinite(elapsed)
        for name, value in record.items():
            if name == "step":
                continue
            number = _metric_number(value)
            if number is None:
                continue
            if not math.isfinite(number):
                # nip writes them as "nan", "inf", "-inf": the run's final value
                # while nothing finite follows
                since = non_finite.get(name, (int(step), number))[0]
                non_finite[name] = (since, number)
                continue
            non_finite.pop(name, None)
            by_step.setdefault(name, {})[int(step)] = number
            if timed:
                clock.setdefault(name, {})[int(step)] = float(elapsed)
            else:
                clock.get(name, {}).pop(int(step), None)
    series = {name: sorted(steps.items()) for name, steps in sorted(by_step.items())}
    return series, clock, non_finite


_NON_FINITE_TEXT = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _metric_number(value: Any) -> float | None:
    """A logged metric's value as a float: numbers, and the strings ``"nan"``,
    ``"inf"`` and ``"-inf"`` that ``metrics.jsonl`` holds for non-finite ones."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        return _NON_FINITE_TEXT.get(value.strip().lower())
    return None


def load_run(path: str | Path, *, require_metrics: bool = True) -> RunData:
    """Load a run directory.

    Parameters
    ----------
    path : str | Path
        The run directory.
    require_metrics : bool
        Raise :class:`NoMetricsError` when the run has logged no numeric metric.

    Raises
    ------
    RunNotFoundError
        When ``path`` is not a directory.
    NoMetricsError
        When ``require_metrics`` and there is nothing to report.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunNotFoundError(f"no run directory at {path}")
    hyper_params: dict[str, Any] = {}
    params_path = path / HYPER_PARAMS_FILE
    if params_path.is_file():
        try:
            loaded = json.loads(params_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ReportError(f"{params_path} is not valid JSON: {error}") from error
        if isinstance(loaded, dict):
            hyper_params = loaded
    series, clock, non_finite = _read_metrics(path / METRICS_FILE)
    if require_metrics and not series and not non_finite:
        what = (
            "has no metrics.jsonl"
            if not (path / METRICS_FILE).is_file()
            else "has a metrics.jsonl without numeric metrics"
        )
        raise NoMetricsError(
            f"run {path.name!r} ({path}) {what}: it has not finished an iteration "
            f"yet, or it is not a run directory"
        )
    return RunData(
        path=path,
        hyper_params=hyper_params,
        series=series,
        clock=clock,
        non_finite=non_finite,
    )


_GLOB_CHARS = re.compile(r"[*?\[]")


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and (
        (path / HYPER_PARAMS_FILE).is_file() or (path / METRICS_FILE).is_file()
    )


def resolve_run_paths(
    specs: Sequence[str], runs_dir: str | Path = "runs"
) -> list[Path]:
    """Turn command-line run names into run directories.

    Parameters
    ----------
    specs : Sequence[str]
        Each a run directory path, a run id under ``runs_dir``, a glob of either
        (``"runs/2026*"``, ``"2026*"``): a glob matches the run directories it
        names; or a sweep directory of ``nip run -m``, which stands for the runs of
        its jobs.
    runs_dir : str | Path
        Where run ids are looked up.

    Returns
    -------
    list[Path]
        The run directories, each once, in the order given (a glob's matches
        sorted).

    Raises
    ------
    RunNotFoundError
        For a name that matches no directory (with the closest run ids) or a glob
        that matches no run directory.
    """
    from nip_core.sweeps import is_sweep_dir, sweep_run_dirs

    runs_dir = Path(runs_dir).expanduser()
    found: list[Path] = []
    for spec in specs:
        if _GLOB_CHARS.search(spec):
            matches = sorted(
                {
                    Path(m)
                    for pattern in (spec, str(runs_dir / spec))
                    for m in glob.glob(pattern)
                    if _is_run_dir(Path(m))
                }
            )
            if not matches:
                raise RunNotFoundError(
                    f"{spec!r} matches no run directory (looked in the working "
                    f"directory and in {runs_dir})"
                )
            found.extend(matches)
            continue
        direct = Path(spec)
        if direct.is_dir() and is_sweep_dir(direct):
            runs = sweep_run_dirs(direct)
            if not runs:
                raise RunNotFoundError(
                    f"sweep {direct} has no run directory yet (no job has started)"
                )
            found.extend(runs)
        elif direct.is_dir():
            _refuse_directory_of_runs(direct)
            found.append(direct)
        elif (runs_dir / spec).is_dir():
            found.append(runs_dir / spec)
        else:
            raise RunNotFoundError(_not_found_message(spec, runs_dir))
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def _refuse_directory_of_runs(path: Path) -> None:
    """A directory holding run directories (``runs``) is not a run: say how to
    report the runs in it."""
    if _is_run_dir(path):
        return
    children = [child for child in path.iterdir() if _is_run_dir(child)]
    if children:
        raise RunNotFoundError(
            f"{path} is not a run directory but holds {len(children)}; "
            f"to report them all, pass '{path / '*'}' (quoted)"
        )


def _not_found_message(spec: str, runs_dir: Path) -> str:
    message = f"no run {spec!r}: it is neither a directory nor a run id in {runs_dir}"
    if not runs_dir.is_dir():
        return message + f" ({runs_dir} does not exist; pass --runs-dir)"
    known = sorted(p.name for p in runs_dir.iterdir() if _is_run_dir(p))
    close = difflib.get_close_matches(spec, known, n=3)
    if close:
        message += "; did you mean " + ", ".join(close) + "?"
    elif known:
        message += f" (it holds {len(known)} runs, e.g. {known[-1]})"
    return message


# --------------------------------------------------------------------------------------
# Groups


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a nested hyper-parameter dict (``_meta`` left out)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if not prefix and key == "_meta":
            continue
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


_MISSING_VALUE = "<unset>"


@attrs.frozen(eq=False)
class RunGroup:
    """Runs sharing a label: repetitions of one experiment (different seeds).

    Parameters
    ----------
    label : str
        ``key=value`` pairs, comma separated (``interaction_protocol=debate``).
    runs : tuple[RunData, ...]
        The group's runs.
    """

    label: str
    runs: tuple[RunData, ...]
    short_label: str | None = None
    """What tables and legends show when :attr:`label` has too many keys to read
    (``G2: scenario=..., trainer=..., ... (+5 more)``); ``None``: the label."""

    @property
    def display_label(self) -> str:
        return self.short_label or self.label


LABEL_KEYS_SHOWN = 3
"""Keys a group's label shows in tables and legends before it is shortened."""

_LEADING_KEYS = ("scenario", "trainer", "interaction_protocol", "dataset")
"""Keys a group's label leads with: what the experiment is."""


def _run_hyper_params(run: RunData) -> Any:
    """The run's parameters as this installation reads them, or ``None`` when they
    cannot be read here (a plugin missing). What they warned about was said when the
    run ran (and an older run's conversion is not a report's business)."""
    from nip_core.errors import NipError, NipWarning
    from nip_core.parameters import HyperParameters

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NipWarning)
            return HyperParameters.from_dict(dict(run.hyper_params))
    except (NipError, KeyError, TypeError, ValueError):
        return None


def _connection_keys(hyper_params: Sequence[Any]) -> frozenset[str]:
    """The runs' fields that say how a run reaches its services (endpoint URLs,
    concurrency, timeouts: what ``nip resume --set`` may change), never what the
    experiment is; runs that differ only in them are repetitions. Runs whose
    parameters cannot be read here (``None``) add none."""
    from nip_core.parameters import preserved_paths
    from nip_core.parameters.base_run import RESUME

    keys: set[str] = set()
    for params in hyper_params:
        if params is not None:
            keys.update(preserved_paths(params, RESUME))
    return frozenset(keys)


def _unread_paths(hyper_params: Any) -> frozenset[str]:
    """The parameters a run does not read, as dotted paths
    (:func:`nip_core.parameters.usage.unread_paths`: sections of trainers,
    protocols, scenarios, text backends and modes it does not use, fields its
    scenario or trainer declares unread, a text run's tensor-world fields). None
    when its parameters cannot be read here (``None``): then every key counts."""
    if hyper_params is None:
        return frozenset()
    from nip_core.parameters.usage import unread_paths

    return unread_paths(hyper_params)


def _is_unread(key: str, unread: frozenset[str]) -> bool:
    """Whether the dotted ``key`` is, or is below, one of the ``unread`` paths."""
    if key in unread:
        return True
    parts = key.split(".")
    return any(".".join(parts[:n]) in unread for n in range(1, len(parts)))


def group_runs(
    runs: Sequence[RunData], group_by: Sequence[str] | None = None
) -> list[RunGroup]:
    """Group runs by hyper-parameters.

    Parameters
    ----------
    runs : Sequence[RunData]
        The runs.
    group_by : Sequence[str] | None
        Dotted hyper-parameter keys (``interaction_protocol``, ``ppo.num_epochs``).
        The runs' parameters are read as this installation reads them (a dict
        an older version saved converted, fields added since at their defaults),
        or as saved when a plugin they need is missing. By default, every key
        whose value differs between the runs that read it, except ``seed`` and
        the fields of how a run reaches its services (endpoint URLs,
        concurrency, timeouts: those ``nip resume --set`` may change); when none
        differs, the runs form one group (labelled with their
        protocol when known). A run does not read the sections of a trainer,
        protocol, scenario or text backend it does not use (``debate_protocol``
        in a ``nip`` run, ``pure_text_malt`` in a ``pure_text_ei`` run), the
        fields its trainer or scenario declares unread (``test_size`` with fixed
        splits, ``text_rl.verifier_guess_replacement_*`` under MALT), nor in a
        text run the agents' tensor-world fields (``agents.*.agent_lr_factor``):
        their values neither tell it apart nor appear in its label.

    Returns
    -------
    list[RunGroup]
        Sorted by label.

    Raises
    ------
    ReportError
        When a ``group_by`` key is in no run's hyper-parameters.
    """
    # as this installation reads them (an older run's dict converted, fields added
    # since at their defaults), so that versions do not split repetitions; the
    # saved dict when they cannot be read here (a plugin missing)
    hyper_params = [_run_hyper_params(run) for run in runs]
    flat = [
        flatten_params(run.hyper_params if params is None else params.to_dict())
        for run, params in zip(runs, hyper_params, strict=True)
    ]
    all_keys = sorted({key for params in flat for key in params})
    if group_by:
        keys = list(dict.fromkeys(group_by))
        for key in keys:
            if key not in all_keys:
                close = difflib.get_close_matches(key, all_keys, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ReportError(
                    f"--group-by {key!r}: no run has this hyper-parameter{hint}"
                )
    unread: list[frozenset[str]] = [frozenset()] * len(runs)
    if not group_by:
        unread = [_unread_paths(params) for params in hyper_params]
        excluded = GROUP_EXCLUDED_KEYS | _connection_keys(hyper_params)
        keys = [
            key
            for key in all_keys
            if key not in excluded
            and len(
                {
                    _show(p.get(key, _MISSING_VALUE))
                    for p, skip in zip(flat, unread, strict=True)
                    if not _is_unread(key, skip)
                }
            )
            > 1
        ]
    if not group_by:
        keys.sort(
            key=lambda k: (
                k not in _LEADING_KEYS,
                _LEADING_KEYS.index(k) if k in _LEADING_KEYS else 0,
                k,
            )
        )
    groups: dict[str, list[RunData]] = {}
    shorts: dict[str, str] = {}
    for run, params, skip in zip(runs, flat, unread, strict=True):
        if keys:
            shown = [key for key in keys if not _is_unread(key, skip)]
            pairs = [
                f"{key}={_show(params.get(key, _MISSING_VALUE))}"
                # a run reading none of the keys (it never does: what it does not
                # read follows from keys it reads) is labelled by all of them
                for key in shown or keys
            ]
            label = ", ".join(pairs)
            if len(pairs) > LABEL_KEYS_SHOWN:
                shorts[label] = (
                    ", ".join(pairs[:LABEL_KEYS_SHOWN])
                    + f", ... (+{len(pairs) - LABEL_KEYS_SHOWN} more)"
                )
        elif len(runs) == 1:
            label = run.run_id
        elif "interaction_protocol" in params:
            label = f"interaction_protocol={_show(params['interaction_protocol'])}"
        else:
            label = "all runs"
        groups.setdefault(label, []).append(run)
    return [
        RunGroup(
            label=label,
            runs=tuple(groups[label]),
            # numbered, since shortened labels may read alike
            # (a label of few keys, beside long ones, is shown whole)
            short_label=f"G{i}: {shorts.get(label, label)}" if shorts else None,
        )
        for i, label in enumerate(sorted(groups), start=1)
    ]


def _mixed_experiments_warnings(runs: Sequence[RunData]) -> list[str]:
    """Runs of different scenarios or trainers measure different things."""
    lines = []
    for key in ("scenario", "trainer"):
        values = sorted({str(run.hyper_params.get(key, "<unset>")) for run in runs})
        if len(values) > 1:
            lines.append(
                f"the runs are of different {key}s ({', '.join(values)}): their "
                "metrics are not measured on the same task"
            )
    return lines


# --------------------------------------------------------------------------------------
# Statistics


def t_critical_value(df: int, confidence: float = DEFAULT_CONFIDENCE) -> float:
    """The two-sided Student-t critical value ``t_{(1 + confidence) / 2, df}``.

    Uses SciPy when installed; without it, the quantile found from the t
    distribution's CDF (:func:`_student_t_cdf`) by bisection (within 1e-8 of
    SciPy's, relative).
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    try:
        from scipy.stats import t as student_t
    except ImportError:
        return _student_t_quantile((1 + confidence) / 2, df)
    return float(student_t.ppf((1 + confidence) / 2, df))


def _student_t_quantile(p: float, df: int) -> float:
    """``t`` with ``P(T <= t) = p`` for ``p`` in (0.5, 1): bisection on the CDF."""
    low, high = 0.0, 1.0
    while _student_t_cdf(high, df) < p:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if _student_t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-12 * high:
            break
    return (low + high) / 2


def _student_t_cdf(t: float, df: int) -> float:
    """``P(T <= t)`` for ``t >= 0``: ``1 - I_x(df / 2, 1 / 2) / 2`` with ``x = df
    / (df + t^2)`` (the regularized incomplete beta function)."""
    x = df / (df + t * t)
    return 1.0 - 0.5 * _regularized_beta(x, df / 2, 0.5)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """``I_x(a, b)``, by its continued fraction (modified Lentz), on the side of
    ``x`` where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
        + a * math.log(x)
        + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300

    def guarded(value: float) -> float:
        return tiny if abs(value) < tiny else value

    c, d = 1.0, 1.0 / guarded(1.0 - (a + b) * x / (a + 1))
    result = d
    for m in range(1, 1000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 / guarded(1.0 + even * d)
        c = guarded(1.0 + even / c)
        result *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 / guarded(1.0 + odd * d)
        c = guarded(1.0 + odd / c)
        step = d * c
        result *= step
        if abs(step - 1.0) < 1e-15:
            break
    return result


@attrs.frozen
class Estimate:
    """A mean over runs with its confidence interval.

    Parameters
    ----------
    mean : float
        The mean (``nan`` without values).
    half_width : float
        Half the interval's width; ``nan`` with fewer than two values.
    n : int
        The number of values.
    """

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": _json_number(self.mean),
            "ci_low": _json_number(self.low),
            "ci_high": _json_number(self.high),
            "half_width": _json_number(self.half_width),
            "n": self.n,
        }

    def format(self, digits: int = 3) -> str:
        if self.n == 0:
            return "-"
        if math.isnan(self.half_width):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


def mean_confidence_interval(
    values: Iterable[float], confidence: float = DEFAULT_CONFIDENCE
) -> Estimate:
    """The mean and Student-t confidence interval of independent values (seeds).

    ``half_width = t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with ``s`` the sample
    standard deviation. Non-finite values are left out.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return Estimate(mean=math.nan, half_width=math.nan, n=0)
    mean = math.fsum(finite) / n
    if n == 1:
        return Estimate(mean=mean, half_width=math.nan, n=1)
    std = statistics.stdev(finite)
    return Estimate(
        mean=mean,
        half_width=t_critical_value(n - 1, confidence) * std / math.sqrt(n),
        n=n,
    )


def aggregate_series(
    series: Sequence[Series], confidence: float = DEFAULT_CONFIDENCE
) -> list[tuple[int, Estimate]]:
    """Per step, the mean and interval over the runs that logged that step."""
    by_step: dict[int, list[float]] = {}
    for one in series:
        for step, value in one:
            by_step.setdefault(step, []).append(value)
    return [
        (step, mean_confidence_interval(values, confidence))
        for step, values in sorted(by_step.items())
    ]


def smooth_series(series: Series, window: int) -> Series:
    """The trailing mean of ``series`` over ``window`` logged points: each point's
    value becomes the mean of it and the ``window - 1`` points before it (fewer at
    the start). ``window`` 1 returns the series unchanged."""
    if window < 1:
        raise ValueError(f"the smoothing window must be at least 1, got {window}")
    if window == 1:
        return list(series)
    smoothed: Series = []
    total = 0.0
    values = [value for _, value in series]
    for i, (step, value) in enumerate(series):
        total += value
        if i >= window:
            total -= values[i - window]
        smoothed.append((step, total / min(i + 1, window)))
    return smoothed


def elapsed_minutes(run: RunData, metric: str = ELAPSED_METRIC) -> dict[int, float]:
    """Per step, the run's wall-clock minutes when ``metric``'s value was logged
    there (the ``timing.elapsed_s`` of that record over 60): a text trainer logs
    its training statistics, its test and its fine-tune in separate records of
    one step, each at its own time. The default, the clock's own series, gives
    each step's last record. Empty for a run that never logged the clock."""
    return {step: seconds / 60 for step, seconds in run.clock.get(metric, {}).items()}


def timed_from_the_start(run: RunData) -> bool:
    """Whether the run logged its clock from its first record on: a run started
    before nip-core logged it, and resumed after, has a clock that does not count
    its first part (it is drawn against iterations only)."""
    timed = run.clock.get(ELAPSED_METRIC, {})
    steps = [step for values in run.series.values() for step, _ in values[:1]]
    return bool(timed) and min(steps) in timed


def final_metrics(run: RunData) -> dict[str, float]:
    """The last finite value of each metric a report shows (table order); NaN or
    infinite for a metric that was never finite."""
    return {
        name: run.final(name) for name in known_metrics({*run.series, *run.non_finite})
    }


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------
# Episode pictures


def write_episode_pictures(
    run: RunData,
    out_dir: str | Path,
    num_episodes: int = DEFAULT_NUM_EPISODES,
    explain: bool = False,
) -> tuple[list[Path], list[str]]:
    """Draw the latest rollout samples of a run with its scenario's renderer.

    Parameters
    ----------
    run : RunData
        The run; its ``scenario`` hyper-parameter picks the renderer
        (``register_episode_renderers``).
    out_dir : str | Path
        Pictures go to ``out_dir/episodes/<run_id>/iter_XXXXXX_episode_K.png``.
    num_episodes : int
        The number of episodes of the latest sample file drawn.
    explain : bool
        Say why nothing is drawn for the run (the pictures were asked for by
        name): its scenario has no renderer, or the run no rollout samples.

    Returns
    -------
    tuple[list[Path], list[str]]
        The pictures written and warnings (a renderer that failed). Nothing is drawn
        when the scenario has no renderer or the run no rollout samples.
    """
    if num_episodes <= 0:
        return [], []
    scenario = run.hyper_params.get("scenario")
    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref
    from nip_core.runs.rollouts import read_rollout_sample

    spec = (
        get_plugin_manager().episode_renderers.get(scenario, None)
        if isinstance(scenario, str)
        else None
    )
    if spec is None:
        return [], (
            [
                f"no episode pictures for run {run.run_id}: its scenario "
                f"{scenario!r} has no episode renderer (a plugin registers one "
                "with register_episode_renderers)"
            ]
            if explain
            else []
        )
    sample_files = sorted((run.path / ROLLOUTS_DIR).glob("iter_*.jsonl"))
    if not sample_files:
        return [], (
            [
                f"no episode pictures for run {run.run_id}: it saved no rollout "
                f"samples (nothing under {run.path / ROLLOUTS_DIR}; "
                "run.rollout_sample_period sets how often a run saves them)"
            ]
            if explain
            else []
        )
    latest = sample_files[-1]
    target = Path(out_dir) / "episodes" / run.run_id
    written: list[Path] = []
    try:
        renderer = resolve_ref(spec.renderer)
        episodes = read_rollout_sample(latest)[:num_episodes]
        for index, episode in enumerate(episodes):
            target.mkdir(parents=True, exist_ok=True)
            path = target / f"{latest.stem}_episode_{index}.png"
            renderer(episode, path)
            if path.is_file():
                written.append(path)
    except Exception as error:  # a plugin's renderer must not sink the report
        return written, [
            f"the {scenario!r} episode renderer of plugin {spec.plugin!r} failed on "
            f"{latest}: {type(error).__name__}: {error}"
        ]
    return written, []


# --------------------------------------------------------------------------------------
# The report


@attrs.define(eq=False)
class Report:
    """A report on one or several runs.

    Attributes
    ----------
    runs : list[RunData]
        The runs, in the order given.
    groups : list[RunGroup]
        The runs grouped by label.
    columns : list[str]
        The metrics of the table: every known metric some run logged, then
        ``timing.elapsed_s`` (the run's wall-clock seconds) when one logged it.
    confidence : float
        The confidence level of the group intervals.
    out_dir : Path | None
        Where plots and tables were written.
    files : list[Path]
        Everything written: plots, tables, episode pictures.
    warnings : list[str]
        Problems that did not stop the report (a failing episode renderer).
    """

    runs: list[RunData]
    groups: list[RunGroup]
    columns: list[str]
    confidence: float = DEFAULT_CONFIDENCE
    out_dir: Path | None = None
    files: list[Path] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)

    def group_of(self, run: RunData) -> RunGroup:
        return next(g for g in self.groups if any(r is run for r in g.runs))

    def run_table(self) -> list[dict[str, float | None]]:
        """Per run, the final value of each column (``None`` when not logged)."""
        return [{c: run.final(c) for c in self.columns} for run in self.runs]

    def group_table(self) -> list[dict[str, Estimate]]:
        """Per group, each column's mean and interval over the group's runs."""
        return [
            {
                c: mean_confidence_interval(
                    [v for r in group.runs if (v := r.final(c)) is not None],
                    self.confidence,
                )
                for c in self.columns
            }
            for group in self.groups
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything the report shows, as JSON-ready data."""
        return {
            "confidence": self.confidence,
            "columns": list(self.columns),
            "runs": [
                {
                    "run_id": run.run_id,
                    "path": str(run.path),
                    "group": self.group_of(run).label,
                    "final": {
                        c: (None if v is None else _json_number(v))
                        for c, v in row.items()
                    },
                }
                for run, row in zip(self.runs, self.run_table(), strict=True)
            ],
            "groups": [
                {
                    "label": group.label,
                    "display_label": group.display_label,
                    "runs": [run.run_id for run in group.runs],
                    "final": {c: e.to_dict() for c, e in row.items()},
                }
                for group, row in zip(self.groups, self.group_table(), strict=True)
            ],
            "out_dir": None if self.out_dir is None else str(self.out_dir),
            "files": [str(p) for p in self.files],
            "warnings": list(self.warnings),
        }

    def format_text(self) -> str:
        """The tables of final metrics, per run and (for several runs) per group."""
        headers = [_display(c) for c in self.columns]
        several = len(self.runs) > 1
        run_rows = [
            [run.run_id]
            + ([self.group_of(run).display_label] if several else [])
            + ["-" if v is None else f"{v:.3f}" for v in row.values()]
            for run, row in zip(self.runs, self.run_table(), strict=True)
        ]
        text_headers = ["run", "group"] if several else ["run"]
        parts = [
            "Final metrics per run (last finite value logged)",
            _format_table(
                [*text_headers, *headers], run_rows, text_columns=len(text_headers)
            ),
        ]
        if several:
            percent = f"{self.confidence * 100:g}%"
            group_rows = [
                [group.display_label, str(len(group.runs))]
                + [e.format() for e in row.values()]
                for group, row in zip(self.groups, self.group_table(), strict=True)
            ]
            parts += [
                "",
                f"Final metrics per group (mean ± {percent} t-interval over runs)",
                _format_table(["group", "runs", *headers], group_rows),
            ]
        if self.out_dir is not None:
            parts += ["", f"Written to {self.out_dir}"]
        return "\n".join(parts)

    def write_tables(self, out_dir: str | Path) -> list[Path]:
        """Write ``final_metrics.csv`` (per run), ``group_metrics.csv`` (per group
        and metric: mean, interval, n) and ``report.json``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        runs_csv = out_dir / "final_metrics.csv"
        with open(runs_csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["run_id", "path", "group", *self.columns])
            for run, row in zip(self.runs, self.run_table(), strict=True):
                writer.writerow(
                    [run.run_id, str(run.path), self.group_of(run).label]
                    + [_csv_number(v) for v in row.values()]
                )
        groups_csv = out_dir / "group_metrics.csv"
        with open(groups_csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["group", "metric", "n", "mean", "ci_low", "ci_high"])
            for group, row in zip(self.groups, self.group_table(), strict=True):
                for metric, estimate in row.items():
                    writer.writerow(
                        [group.label, metric, estimate.n]
                        + [
                            _csv_number(x)
                            for x in (estimate.mean, estimate.low, estimate.high)
                        ]
                    )
        json_path = out_dir / "report.json"
        written = [runs_csv, groups_csv, json_path]
        self.files.extend(written)
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", "utf-8")
        return written


def _csv_number(value: Any) -> str:
    """A number for the CSV files: empty when missing or not finite (``null`` in
    ``report.json``), else its shortest exact text."""
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return repr(value)


def _display(metric: str) -> str:
    if metric == ELAPSED_METRIC:
        return "elapsed s"
    info = classify_metric(metric)
    return info.display if info is not None else metric


def _format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1
) -> str:
    """A plain-text table: the first ``text_columns`` left-aligned, numbers right."""
    widths = [
        max([len(headers[i])] + [len(row[i]) for row in rows])
        for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < text_columns else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _load_runs(run_paths: Sequence[str | Path]) -> tuple[list[RunData], list[str]]:
    """Load the runs; of several, those without metrics (a job that failed before
    its first iteration, a run still starting) are left out, each named in a
    warning with the status ``run_info.json`` gives; one run without metrics, or
    none with metrics, is a :class:`NoMetricsError`."""
    runs: list[RunData] = []
    skipped: list[str] = []
    errors: list[ReportError] = []
    for path in run_paths:
        try:
            runs.append(load_run(path))
        except NoMetricsError as error:
            if len(run_paths) == 1:
                raise
            errors.append(error)
            skipped.append(f"{Path(path).name} left out: {_run_status(Path(path))}")
        except RunNotFoundError:
            raise
        except ReportError as error:
            # a damaged hyper_params.json: one run, not the whole report
            if len(run_paths) == 1:
                raise
            errors.append(error)
            skipped.append(f"{Path(path).name} left out: {error}")
    if not runs:
        raise errors[0]
    by_id: dict[str, list[RunData]] = {}
    for run in runs:
        by_id.setdefault(run.run_id, []).append(run)
    for run_id, same in by_id.items():
        if len(same) > 1:
            skipped.append(
                f"run id {run_id} appears {len(same)} times ("
                + ", ".join(str(run.path) for run in same)
                + "): copies of one run count as separate runs in its group's mean"
            )
    if len(runs) > 1:
        # a run that stopped early is read as it stands: say so, since its
        # "final" values enter its group's mean beside finished runs
        for run in runs:
            status = _run_info(run.path).get("status")
            if status in ("failed", "killed", "running"):
                steps = [s for series in run.series.values() for s, _ in series[-1:]]
                last = f" at step {max(steps)}" if steps else ""
                what = {
                    "failed": "failed",
                    "killed": "was stopped",
                    "running": "is still running (or was killed without a word)",
                }[status]
                skipped.append(
                    f"run {run.run_id} {what}: its final values are those it logged "
                    f"last{last}, and enter its group's mean like a finished run's"
                )
    return runs, skipped


def _run_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads((path / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def _run_status(path: Path) -> str:
    """What ``run_info.json`` says of a run without metrics, in words."""
    info = _run_info(path)
    status = info.get("status")
    if status == "failed":
        return f"it failed before its first iteration ({info.get('error')})"
    if status:
        return f"it logged no metrics (status {status})"
    return "it logged no metrics"


def build_report(
    run_paths: Sequence[str | Path],
    *,
    out_dir: str | Path | None = None,
    group_by: Sequence[str] | None = None,
    num_episodes: int = DEFAULT_NUM_EPISODES,
    confidence: float = DEFAULT_CONFIDENCE,
    smooth: int = 1,
    x_axis: str = "iteration",
    write: bool = True,
    explain_episodes: bool = False,
) -> Report:
    """Load runs, group them, draw the plots and write the tables.

    Parameters
    ----------
    run_paths : Sequence[str | Path]
        Run directories (see :func:`resolve_run_paths` for names and globs).
    out_dir : str | Path | None
        Where to write. Default: the run's ``plots/`` for one run, ``./report``
        for several.
    group_by : Sequence[str] | None
        Hyper-parameter keys labelling the groups (see :func:`group_runs`).
    num_episodes : int
        Episode pictures per run (0: none).
    explain_episodes : bool
        Warn about each run of which no episode is drawn, and why (for pictures
        asked for by name, ``nip report --episodes N``).
    confidence : float
        The confidence level of the group intervals and bands.
    smooth : int
        Draw each training curve as its trailing mean over this many logged points
        (:func:`smooth_series`; test curves and the tables are never smoothed).
    x_axis : str
        What the plots draw against (:data:`X_AXES`): ``"iteration"``, or
        ``"minutes"``, each run's wall-clock minutes (:func:`elapsed_minutes`;
        a group's curve at the mean over its runs of their minutes at each
        iteration).
    write : bool
        Draw and write files; ``False`` only computes the tables.

    Raises
    ------
    ReportError
        Without runs, for a run without metrics, a bad ``group_by`` key or
        ``x_axis``, or ``x_axis="minutes"`` with a run that logged no
        ``timing.elapsed_s``.
    """
    if not run_paths:
        raise ReportError("no runs given")
    if smooth < 1:
        raise ReportError(f"--smooth must be 1 or more, got {smooth}")
    if x_axis not in X_AXES:
        raise ReportError(
            f"--x-axis must be one of {', '.join(X_AXES)}, got {x_axis!r}"
        )
    runs, skipped = _load_runs(run_paths)
    if x_axis == "minutes":
        untimed = [run.run_id for run in runs if not timed_from_the_start(run)]
        if untimed:
            raise ReportError(
                f"cannot draw against minutes: {', '.join(untimed)} logged no "
                f"{ELAPSED_METRIC} from its start (runs made before nip-core logged "
                "it); draw against iterations (--x-axis iteration)"
            )
    groups = group_runs(runs, group_by)
    columns = known_metrics(
        {name for run in runs for name in (*run.series, *run.non_finite)}
    )
    if any(ELAPSED_METRIC in run.series for run in runs):
        # how long each run has run: the last column of the tables
        columns.append(ELAPSED_METRIC)
    if out_dir is None:
        out_dir = runs[0].path / PLOTS_DIR if len(runs) == 1 else Path("report")
    report = Report(
        runs=runs,
        groups=groups,
        columns=columns,
        confidence=confidence,
        out_dir=Path(out_dir) if write else None,
    )
    report.warnings.extend(skipped)
    report.warnings.extend(_mixed_experiments_warnings(runs))
    if any(group.short_label for group in groups):
        report.warnings.append(
            "group labels with more than "
            f"{LABEL_KEYS_SHOWN} differing keys are shortened in tables and legends "
            "(G1, G2, ...); report.json and the CSV files give them in full, or "
            "choose the keys with --group-by"
        )
    for run in runs:
        report.warnings.extend(run.non_finite_warnings(columns))
    if not write:
        return report
    from nip_core.analysis.plots import write_comparison_plots, write_run_plots

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(
            f"--out {out}: cannot create the directory for the report "
            f"({error.strerror or error}); choose another with --out DIR"
        ) from None
    if len(runs) == 1:
        report.files.extend(write_run_plots(runs[0], out, smooth=smooth, x_axis=x_axis))
    else:
        report.files.extend(
            write_comparison_plots(
                groups, out, confidence=confidence, smooth=smooth, x_axis=x_axis
            )
        )
    for run in runs:
        pictures, problems = write_episode_pictures(
            run, out, num_episodes, explain=explain_episodes
        )
        report.files.extend(pictures)
        report.warnings.extend(problems)
    report.write_tables(out)
    return report
