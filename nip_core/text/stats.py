"""Per-iteration statistics of text rollouts (the metrics users expect).

Names (``test_`` prefixed for tests, after the agent's name for per-agent ones:
``prover.test_mean_episode_reward``, as the tensor world logs them):

- ``mean_accuracy`` / ``std_accuracy``: an episode is accurate when its verdict is
  the label (no verdict counts as wrong); ``mean_datapoint_accuracy``,
  ``std_datapoint_accuracy``, ``worst_datapoint_accuracy``: per datapoint first,
  when datapoints repeat. Standard deviations are sample ones (``ddof=1``), as in
  the tensor world;
- ``mean_0_accuracy`` / ``std_0_accuracy`` and ``mean_1_accuracy`` /
  ``std_1_accuracy``: the accuracy on the episodes of each label (``y`` 0, 1);
- ``decision_rate``: episodes ended by a verdict (accept, reject or, where the
  protocol allows it, neither), ``no_decision_proportion`` the others,
  ``neither_proportion`` those ended by "neither"; ``mean_decision`` /
  ``std_decision``: of accept (1) against reject (0), over the accept and reject
  verdicts; ``verifier_decision_entropy``: the Shannon entropy (nats) of the
  verdicts over the episodes that have one (accept, reject, neither): 0 when the
  verifier always says the same, ``ln 2`` when it accepts and rejects equally
  often; ``verifier_precision`` / ``verifier_recall`` of accepting correct claims
  (``nan`` when undefined);
- ``mean_episode_length`` / ``std_episode_length``: rounds played;
- per agent: ``{agent}.mean_episode_reward`` / ``{agent}.std_episode_reward``,
  ``{agent}.worst_episode_reward`` (the lowest mean over datapoints, as in the
  tensor world),
  ``{agent}.retry_proportion`` (turns that needed a retry), ``{agent}.mean_retries``,
  ``{agent}.invalid_proportion`` (turns that fell back to an empty message),
  ``{agent}.token_limit_proportion``, ``{agent}.mean_words`` (per message),
  ``{agent}.mean_tokens`` (per turn) and ``mean_tokens_per_episode`` when the
  backend reports token counts.

This module imports without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nip_core.protocols.decisions import DECISION_NEITHER
from nip_core.text.rollouts import TextRollouts

__all__ = ["text_rollout_statistics"]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _std(values: np.ndarray) -> float:
    """The sample standard deviation (``ddof=1``), as the tensor world's metrics
    have it; 0 for one value, ``nan`` for none."""
    if values.size > 1:
        return float(values.std(ddof=1))
    return 0.0 if values.size else float("nan")


def _entropy(values: np.ndarray) -> float:
    """The Shannon entropy (nats) of the empirical distribution of ``values``;
    ``nan`` for none."""
    if not values.size:
        return float("nan")
    _, counts = np.unique(values, return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log(shares)).sum()) + 0.0  # no -0.0


def _per_datapoint_means(values: np.ndarray, datapoints: np.ndarray) -> np.ndarray:
    """The mean of ``values`` over each datapoint's episodes."""
    groups: dict[int, list[float]] = {}
    for index, value in zip(datapoints, values, strict=True):
        groups.setdefault(int(index), []).append(float(value))
    return np.array([np.mean(v) for v in groups.values()])


def text_rollout_statistics(rollouts: TextRollouts, prefix: str = "") -> dict[str, Any]:
    """The statistics of a batch of text episodes (see the module docstring)."""
    stats: dict[str, Any] = {}
    y = rollouts["y"]
    verdict = rollouts["verdict"]
    decided = verdict >= 0
    verdicts = (verdict == 0) | (verdict == 1)
    accurate = (verdict == y).astype(float)
    stats["mean_accuracy"] = _mean(accurate)
    stats["std_accuracy"] = _std(accurate)
    datapoints = rollouts["datapoint_index"]
    datapoint_means = _per_datapoint_means(accurate, datapoints)
    stats["mean_datapoint_accuracy"] = _mean(datapoint_means)
    stats["std_datapoint_accuracy"] = _std(datapoint_means)
    stats["worst_datapoint_accuracy"] = (
        float(datapoint_means.min()) if datapoint_means.size else float("nan")
    )
    for label in (0, 1):
        of_label = accurate[y == label]
        stats[f"mean_{label}_accuracy"] = _mean(of_label)
        stats[f"std_{label}_accuracy"] = _std(of_label)
    stats["decision_rate"] = _mean(decided.astype(float))
    stats["no_decision_proportion"] = _mean((~decided).astype(float))
    stats["neither_proportion"] = _mean((verdict == DECISION_NEITHER).astype(float))
    accepts = (verdict[verdicts] == 1).astype(float)
    stats["mean_decision"] = _mean(accepts)
    stats["std_decision"] = _std(accepts)
    stats["verifier_decision_entropy"] = _entropy(verdict[decided])
    accepted = verdict == 1
    true_positive = float((accepted & (y == 1)).sum())
    stats["verifier_precision"] = (
        true_positive / float(accepted.sum()) if accepted.any() else float("nan")
    )
    stats["verifier_recall"] = (
        true_positive / float((y == 1).sum()) if (y == 1).any() else float("nan")
    )
    lengths = rollouts.episode_length.astype(float)
    stats["mean_episode_length"] = _mean(lengths)
    stats["std_episode_length"] = _std(lengths)

    returns = rollouts.episode_reward
    active = rollouts["agents.active"]
    for a, agent in enumerate(rollouts.agent_names):
        turns = active[:, :, a]
        stats[f"{agent}.mean_episode_reward"] = _mean(returns[:, a])
        stats[f"{agent}.std_episode_reward"] = _std(returns[:, a])
        # the lowest mean over datapoints, as in the tensor world
        reward_means = _per_datapoint_means(returns[:, a], datapoints)
        stats[f"{agent}.worst_episode_reward"] = (
            float(reward_means.min()) if reward_means.size else float("nan")
        )
        if not turns.any():
            continue
        retries = rollouts["agents.retries"][:, :, a][turns]
        stats[f"{agent}.retry_proportion"] = _mean((retries > 0).astype(float))
        stats[f"{agent}.mean_retries"] = _mean(retries.astype(float))
        stats[f"{agent}.invalid_proportion"] = _mean(
            (~rollouts["agents.valid_response"][:, :, a][turns]).astype(float)
        )
        stats[f"{agent}.token_limit_proportion"] = _mean(
            rollouts["agents.token_limit"][:, :, a][turns].astype(float)
        )
        words = [
            len(text.split())
            for text in rollouts["agents.message"][:, :, a][turns].ravel()
            if text is not None
        ]
        stats[f"{agent}.mean_words"] = float(np.mean(words)) if words else 0.0
        tokens = rollouts["agents.tokens"][:, :, a][turns]
        if (tokens >= 0).all():
            stats[f"{agent}.mean_tokens"] = _mean(tokens.astype(float))
    all_tokens = rollouts["agents.tokens"][active]
    if all_tokens.size and (all_tokens >= 0).all():
        per_episode = np.where(active, rollouts["agents.tokens"], 0).sum(axis=(1, 2))
        stats["mean_tokens_per_episode"] = _mean(per_episode.astype(float))
    return {_prefixed(key, prefix): value for key, value in stats.items()}


def _prefixed(key: str, prefix: str) -> str:
    """``prefix`` before a metric's name: after the agent's name for per-agent
    metrics (``prover.test_mean_episode_reward``, as the tensor world logs them,
    so reports draw them as the agent's test values, not as another agent's)."""
    agent, dot, name = key.partition(".")
    return f"{agent}.{prefix}{name}" if dot else f"{prefix}{key}"
