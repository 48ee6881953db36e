"""Rollout analysers: metrics computed from batches of text rollouts.

An analyser reads a :class:`~nip_core.text.rollouts.TextRollouts` and returns flat
metrics (``{"verifier.mean_words": 41.5}``). Plugins register analysers through the
``register_rollout_analysers`` hook (:class:`~nip_core.records.RolloutAnalyserSpec`);
the core registers three cheap, scenario-free ones:

``message_lengths``
    Per agent: mean, maximum and standard deviation of the words and characters of
    the messages it sent.
``decisions``
    How verdicts were reached: the share of episodes accepted, rejected, ended
    neither way, without a verdict (``no_verdict_rate``) and cut off by the round
    limit (``round_limit_rate``: no verdict by the last round; an episode ended
    earlier, by an invalid response under a penalty, is not), and the mean round
    of the verdict.
``invalid_responses``
    Per agent: the share of turns that were invalid after every retry, that needed a
    retry, and the mean number of retries.

Where analysers run
-------------------
- During training: the staged text trainer
  (:class:`~nip_core.trainers.text.PureTextRlTrainer`) runs the analysers named in
  ``text_rl.rollout_analysers`` on every batch of rollouts it logs (training and
  test), and logs their metrics as ``analysis.<analyser>.<metric>`` (``test_``
  prefixed for tests).
- Afterwards: ``nip analyse RUN --analyser NAME`` runs any analyser on the rollouts
  a run saved (:func:`analyse_run`) and writes ``analysis/<analyser>.jsonl`` in the
  run directory, one record per rollout file. Expensive analysers (an LLM judge)
  belong here, where they can be run once on the iterations one cares about.

This module imports without torch.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nip_core.errors import NipConfigError
from nip_core.runs.io import json_safe
from nip_core.text.rollouts import TextRollouts

_ROLLOUTS_FILE = re.compile(r"(?:([a-z]+)_)?iter_\d+\.jsonl")
"""A trainer's rollouts file: ``iter_000003.jsonl``, ``<split>_iter_000003.jsonl``
(the split, when not train, in the group)."""

__all__ = [
    "DecisionAnalyser",
    "InvalidResponseAnalyser",
    "MessageLengthAnalyser",
    "RolloutAnalyser",
    "analyse_rollouts",
    "analyse_run",
    "build_rollout_analysers",
]


class RolloutAnalyser(ABC):
    """Base class of rollout analysers.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters (analysers may read their own options from a
        parameter section).
    settings : ExperimentSettings
        The run's settings.
    name : str
        The analyser's registry key.
    """

    def __init__(self, hyper_params: Any, settings: Any, name: str):
        self.hyper_params = hyper_params
        self.settings = settings
        self.name = name

    @abstractmethod
    def analyse(self, rollouts: TextRollouts) -> Mapping[str, float]:
        """The metrics of one batch of rollouts (flat, JSON-able numbers)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release what the analyser holds (a backend, a model)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _mean(values: Sequence[float] | np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")


class MessageLengthAnalyser(RolloutAnalyser):
    """Per agent: words and characters of the messages it sent."""

    def analyse(self, rollouts: TextRollouts) -> dict[str, float]:
        out: dict[str, float] = {}
        messages = rollouts["agents.message"]
        for a, agent in enumerate(rollouts.agent_names):
            texts = [t for t in messages[:, :, a].ravel() if t is not None]
            if not texts:
                continue
            words = np.array([len(t.split()) for t in texts], dtype=float)
            chars = np.array([len(t) for t in texts], dtype=float)
            out[f"{agent}.mean_words"] = _mean(words)
            out[f"{agent}.max_words"] = float(words.max())
            out[f"{agent}.std_words"] = float(words.std())
            out[f"{agent}.mean_characters"] = _mean(chars)
            out[f"{agent}.num_messages"] = float(len(texts))
        return out


class DecisionAnalyser(RolloutAnalyser):
    """How the episodes ended: verdict shares and the round of the verdict."""

    def analyse(self, rollouts: TextRollouts) -> dict[str, float]:
        verdict = rollouts["verdict"]
        # cut off by the last round without a verdict (not ended earlier, by an
        # invalid response under prover_invalid_response_penalty, say)
        ended_by_limit = (
            rollouts["terminated"].any(axis=1)
            & (verdict < 0)
            & (rollouts.episode_length == rollouts.max_rounds)
        )
        out = {
            "accept_rate": _mean(verdict == 1),
            "reject_rate": _mean(verdict == 0),
            "neither_rate": _mean(verdict == 3),
            "no_verdict_rate": _mean(verdict < 0),
            "round_limit_rate": _mean(ended_by_limit),
        }
        decided = verdict >= 0
        if decided.any():
            out["mean_verdict_round"] = _mean(rollouts.episode_length[decided] - 1)
        for label, name in ((1, "correct"), (0, "incorrect")):
            mask = rollouts["y"] == label
            if mask.any():
                out[f"accept_rate_when_{name}"] = _mean(verdict[mask] == 1)
        return out


class InvalidResponseAnalyser(RolloutAnalyser):
    """Per agent: turns invalid after every retry, turns that needed retries."""

    def analyse(self, rollouts: TextRollouts) -> dict[str, float]:
        out: dict[str, float] = {}
        active = rollouts["agents.active"]
        all_turns = 0
        all_invalid = 0
        for a, agent in enumerate(rollouts.agent_names):
            turns = active[:, :, a]
            if not turns.any():
                continue
            invalid = ~rollouts["agents.valid_response"][:, :, a][turns]
            retries = rollouts["agents.retries"][:, :, a][turns]
            out[f"{agent}.invalid_rate"] = _mean(invalid)
            out[f"{agent}.retried_rate"] = _mean(retries > 0)
            out[f"{agent}.mean_retries"] = _mean(retries)
            all_turns += int(turns.sum())
            all_invalid += int(invalid.sum())
        if all_turns:
            out["invalid_rate"] = all_invalid / all_turns
        return out


def build_rollout_analysers(
    names: Iterable[str],
    hyper_params: Any,
    settings: Any,
    *,
    path: str = "rollout_analysers",
) -> dict[str, RolloutAnalyser]:
    """Build the analysers registered under ``names``, in order; problems are named
    ``<path>.<index>`` (a command-line option, ``--analyser``, without the index).

    Raises
    ------
    NipConfigError
        When a name is not registered, or an analyser is for another scenario.
    """
    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref

    names = list(names)
    registry = get_plugin_manager().rollout_analysers
    problems = rollout_analyser_problems(
        names, getattr(hyper_params, "scenario", None), path=path
    )
    if problems:
        raise NipConfigError(problems)
    analysers = {}
    for name in names:
        spec = registry[name]
        analysers[name] = resolve_ref(spec.analyser_class)(hyper_params, settings, name)
    return analysers


def rollout_analyser_problems(
    names: Iterable[str],
    scenario: str | None = None,
    *,
    path: str = "rollout_analysers",
    unknown: bool = True,
) -> list[Any]:
    """Problems with a list of analyser names (``<path>.<index>``, or ``<path>``
    alone for a command-line option such as ``--analyser``): unknown names (unless
    ``unknown`` is false), and (when ``scenario`` is given) analysers of another
    scenario."""
    from nip_core.errors import ConfigProblem
    from nip_core.plugins import get_plugin_manager

    registry = get_plugin_manager().rollout_analysers
    problems = []
    for index, name in enumerate(names):
        item = path if path.startswith("--") else f"{path}.{index}"
        if name not in registry:
            if unknown:
                problems.append(
                    ConfigProblem(
                        item, "unknown rollout analyser", name, tuple(registry)
                    )
                )
            continue
        wanted = registry[name].scenario
        if wanted is not None and scenario is not None and wanted != scenario:
            problems.append(
                ConfigProblem(
                    item,
                    f"the rollout analyser {name!r} analyses {wanted} rollouts, not "
                    f"{scenario} ones",
                    name,
                )
            )
    return problems


def analyse_rollouts(
    analysers: Mapping[str, RolloutAnalyser], rollouts: TextRollouts, prefix: str = ""
) -> dict[str, float]:
    """Every analyser's metrics, as ``<prefix>analysis.<analyser>.<metric>``."""
    out: dict[str, float] = {}
    for name, analyser in analysers.items():
        for key, value in run_analyser(name, analyser, rollouts).items():
            out[f"{prefix}analysis.{name}.{key}"] = value
    return out


def run_analyser(
    name: str, analyser: RolloutAnalyser, rollouts: TextRollouts
) -> dict[str, float]:
    """``analyser``'s metrics of ``rollouts``, checked to be numbers; an analyser
    that fails is named (with its module) in a
    :class:`~nip_core.errors.PluginError`."""
    from nip_core.errors import PluginError

    where = f"rollout analyser {name!r} ({type(analyser).__module__})"
    try:
        metrics = dict(analyser.analyse(rollouts))
    except Exception as error:
        raise PluginError(
            f"{where} failed: {type(error).__name__}: {error} (nip --debug shows "
            "the traceback; leave the analyser out to go on without it)"
        ) from error
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise PluginError(f"{where} returned {key}={value!r}: a metric is a number")
    return metrics


def analyse_run(
    run_dir: str | Path,
    names: Sequence[str],
    *,
    settings: Any = None,
    splits: Sequence[str] = ("train", "test"),
) -> dict[str, list[dict[str, Any]]]:
    """Run analysers on every rollout file a run saved.

    Writes ``analysis/<analyser>.jsonl`` in the run directory: one record per
    rollouts file (``file``, ``split``, ``iteration`` and the metrics).

    Parameters
    ----------
    run_dir : path
        The run directory.
    names : Sequence[str]
        The analysers to run.
    settings : ExperimentSettings, optional
        Settings for the analysers (the run's own by default).
    splits : Sequence[str]
        Which rollouts to analyse.

    Returns
    -------
    dict[str, list[dict]]
        The records written, by analyser.
    """
    from nip_core.errors import CheckpointError
    from nip_core.parameters import HyperParameters
    from nip_core.runs.io import atomic_write_text
    from nip_core.runs.run_dir import RunDirectory
    from nip_core.settings import ExperimentSettings

    run = RunDirectory(Path(run_dir))
    hyper_params = HyperParameters.from_dict(run.read_hyper_params())
    from nip_core.plugins import get_plugin_manager

    scenario = get_plugin_manager().scenarios.get(hyper_params.scenario, None)
    if scenario is not None and scenario.data_world != "text":
        raise CheckpointError(
            f"run {run.run_id} is a {scenario.data_world}-world run (scenario "
            f"{hyper_params.scenario!r}); nip analyse reads the saved rollouts of "
            "text runs (for tensor runs, see nip report)"
        )
    if settings is None:
        settings = ExperimentSettings(run_id=run.run_id, show_progress=False)
    # the trainer's rollouts files only (``iter_000003.jsonl``,
    # ``test_iter_000003.jsonl``), not work in progress such as MALT's partial trees
    chosen = [
        path
        for path in sorted(run.rollouts_dir.glob("*.jsonl"))
        if (match := _ROLLOUTS_FILE.fullmatch(path.name)) is not None
        and (match.group(1) or "train") in splits
    ]
    if not chosen:
        raise CheckpointError(
            f"run {run.run_id} has no saved text rollouts in {run.rollouts_dir} "
            f"(splits {', '.join(splits)}); only text runs save rollouts there"
        )
    analysers = build_rollout_analysers(
        names, hyper_params, settings, path="--analyser"
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in analysers}
    try:
        for path in chosen:
            rollouts = TextRollouts.load_jsonl(path)
            for name, analyser in analysers.items():
                record = {
                    "file": path.name,
                    "split": rollouts.split,
                    "iteration": rollouts.iteration,
                    **run_analyser(name, analyser, rollouts),
                }
                results[name].append(record)
    finally:
        for analyser in analysers.values():
            analyser.close()
    out_dir = run.path / "analysis"
    for name, records in results.items():
        # records of rollouts files not analysed this time (the other split)
        # are kept: an expensive analyser's results are not lost
        path = out_dir / f"{name}.jsonl"
        analysed = {record["file"] for record in records}
        kept = [r for r in _read_records(path) if r.get("file") not in analysed]
        merged = sorted([*kept, *records], key=lambda r: str(r.get("file")))
        # JSON has no NaN or infinity: written as strings, as in metrics.jsonl
        atomic_write_text(
            path,
            "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in merged),
        )
    return results


def _read_records(path: Path) -> list[dict[str, Any]]:
    """The records of an analysis file written before (none if there is none; a
    line that does not parse, from a torn write, is dropped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
