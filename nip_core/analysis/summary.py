"""The few lines printed when a run finishes: final accuracies and rewards."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nip_core.runs.run_dir import ELAPSED_METRIC

_AGENT_REWARD = re.compile(r"^(?P<agent>[^.]+)\.mean_episode_reward$")
_AGENT_SOLO = re.compile(r"^(?P<agent>[^.]+)\.(?P<split>train|test)_accuracy$")


def final_values(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The last finite value logged for every metric of a run's records."""
    last: dict[str, float] = {}
    for record in records:
        for key, value in record.items():
            if key == "step" or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                last[key] = float(value)
    return last


def format_duration(seconds: float) -> str:
    """``42.5 s``, ``4 min 03 s``, ``2 h 05 min``: a duration as people read it."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def summary_lines(
    records: Iterable[Mapping[str, Any]], run_dir: str | Path | None = None
) -> list[str]:
    """Describe a finished run in a few lines.

    The verifier's final train and test accuracy (``mean_accuracy`` /
    ``test_mean_accuracy`` of RL trainers; ``{agent}.train_accuracy`` /
    ``{agent}.test_accuracy`` of ``solo_agent``), each agent's final mean episode
    reward (train, and test when logged), how long the run ran (its last
    ``timing.elapsed_s``), and the run directory.
    """
    last = final_values(records)
    lines: list[str] = []
    accuracy = [
        f"{label} {last[key]:.3f}"
        for key, label in (("mean_accuracy", "train"), ("test_mean_accuracy", "test"))
        if key in last
    ]
    if accuracy:
        lines.append("verifier accuracy: " + ", ".join(accuracy))
    solo: dict[str, list[str]] = {}
    for key, value in last.items():
        match = _AGENT_SOLO.match(key)
        if match:
            solo.setdefault(match["agent"], []).append(f"{match['split']} {value:.3f}")
    for agent, values in sorted(solo.items()):
        lines.append(
            f"{agent} accuracy (solo): " + ", ".join(sorted(values, reverse=True))
        )
    rewards = []
    for key, value in last.items():
        match = _AGENT_REWARD.match(key)
        if match:
            agent = match["agent"]
            text = f"{agent} {value:+.3f}"
            test_key = f"{agent}.test_mean_episode_reward"
            if test_key in last:
                text += f" (test {last[test_key]:+.3f})"
            rewards.append(text)
    if rewards:
        lines.append("mean episode reward: " + ", ".join(sorted(rewards)))
    if ELAPSED_METRIC in last:
        lines.append(f"wall-clock time: {format_duration(last[ELAPSED_METRIC])}")
    if run_dir is not None:
        lines.append(f"run directory: {run_dir}")
    return lines
