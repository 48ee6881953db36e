"""Fake run directories for the analysis tests (written by hand, no training)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def write_run(
    root: Path,
    run_id: str,
    records: Iterable[Mapping[str, Any]],
    hyper_params: Mapping[str, Any] | None = None,
) -> Path:
    """A run directory with ``hyper_params.json`` and ``metrics.jsonl``."""
    path = root / run_id
    (path / "plots").mkdir(parents=True, exist_ok=True)
    params = dict(hyper_params or {"scenario": "toy", "interaction_protocol": "nip"})
    params.setdefault("_meta", {"versions": {"nip-core": "0.1.0"}, "run": run_id})
    (path / "hyper_params.json").write_text(json.dumps(params))
    with open(path / "metrics.jsonl", "w") as f:
        for record in records:
            f.write(json.dumps(dict(record)) + "\n")
    return path


def training_records(
    accuracies: Iterable[float],
    *,
    rewards: Mapping[str, Iterable[float]] | None = None,
    lengths: Iterable[float] | None = None,
    test_accuracy: float | None = None,
) -> list[dict[str, Any]]:
    """``metrics.jsonl`` records as the RL trainer logs them (plus a timer), with
    the test metrics one step after the last iteration."""
    accuracies = list(accuracies)
    rewards = {agent: list(values) for agent, values in (rewards or {}).items()}
    lengths = list(lengths) if lengths is not None else None
    records = []
    for step, accuracy in enumerate(accuracies):
        record: dict[str, Any] = {
            "step": step,
            "mean_accuracy": accuracy,
            "timing.iteration_s": 0.5,
        }
        for agent, values in rewards.items():
            record[f"{agent}.mean_episode_reward"] = values[step]
        if lengths is not None:
            record["mean_episode_length"] = lengths[step]
        records.append(record)
    if test_accuracy is not None:
        records.append({"step": len(accuracies), "test_mean_accuracy": test_accuracy})
    return records
