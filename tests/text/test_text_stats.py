"""Per-iteration statistics of text rollouts, with exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nip_core.text.rollouts import TextRollouts
from nip_core.text.stats import text_rollout_statistics


def _rollouts() -> TextRollouts:
    # five episodes of up to two rounds; the prover speaks on round 0, the verifier
    # on round 1 (one episode ends after round 0)
    rollouts = TextRollouts(
        ["prover", "verifier"],
        ["main"],
        2,
        [{"y": y} for y in (1, 1, 0, 0, 0)],
        iteration=3,
    )
    rollouts["datapoint_index"] = [0, 0, 1, 2, 3]
    # accept, reject, neither, no verdict, accept
    rollouts["verdict"] = [1, 0, 3, -1, 1]
    rollouts["padding"] = [[0, 0], [0, 0], [0, 0], [0, 1], [0, 0]]
    active = np.zeros((5, 2, 2), dtype=bool)
    active[:, 0, 0] = True
    active[[0, 1, 2, 4], 1, 1] = True
    rollouts["agents.active"] = active
    reward = np.zeros((5, 2, 2))
    reward[:, 1, 0] = [1.0, 0.0, 0.0, 0.0, 1.0]
    reward[:, 1, 1] = [1.0, 0.0, -0.5, 0.0, -1.0]
    rollouts["agents.reward"] = reward
    retries = np.zeros((5, 2, 2), dtype=np.int64)
    retries[0, 0, 0] = 2
    rollouts["agents.retries"] = retries
    valid = np.ones((5, 2, 2), dtype=bool)
    valid[1, 1, 1] = False
    rollouts["agents.valid_response"] = valid
    messages = np.full((5, 2, 2, 1), None, dtype=object)
    messages[:, 0, 0, 0] = ["a b c", "a", "a b", "", "a b c d"]
    messages[[0, 1, 2, 4], 1, 1, 0] = ["yes", "no", "hmm maybe", "yes"]
    rollouts["agents.message"] = messages
    return rollouts


def test_the_statistics_of_a_small_batch_exactly():
    stats = text_rollout_statistics(_rollouts())
    assert stats["mean_accuracy"] == pytest.approx(0.2)
    # sample standard deviations (ddof=1), as the tensor world's
    assert stats["std_accuracy"] == pytest.approx(math.sqrt(0.2))
    # datapoint 0 twice (right, wrong), the others once and wrong
    assert stats["mean_datapoint_accuracy"] == pytest.approx(0.125)
    assert stats["std_datapoint_accuracy"] == pytest.approx(0.25)
    assert stats["worst_datapoint_accuracy"] == 0.0
    # accept, reject and neither end an episode with a verdict; -1 does not
    assert stats["decision_rate"] == pytest.approx(0.8)
    # the share of accept among accept and reject: neither is not counted
    assert stats["mean_decision"] == pytest.approx(2 / 3)
    assert stats["std_decision"] == pytest.approx(math.sqrt(1 / 3))
    # per label: y = 1 in episodes 0 and 1 (right, wrong), y = 0 in the rest (wrong)
    assert stats["mean_1_accuracy"] == pytest.approx(0.5)
    assert stats["std_1_accuracy"] == pytest.approx(math.sqrt(0.5))
    assert stats["mean_0_accuracy"] == 0.0
    assert stats["std_0_accuracy"] == 0.0
    assert stats["no_decision_proportion"] == pytest.approx(0.2)
    assert stats["neither_proportion"] == pytest.approx(0.2)
    # verdicts accept, reject, neither, accept: shares 1/2, 1/4, 1/4
    assert stats["verifier_decision_entropy"] == pytest.approx(1.5 * math.log(2))
    assert stats["verifier_precision"] == pytest.approx(0.5)
    assert stats["verifier_recall"] == pytest.approx(0.5)
    assert stats["mean_episode_length"] == pytest.approx(1.8)
    assert stats["std_episode_length"] == pytest.approx(math.sqrt(0.2))
    assert stats["prover.mean_episode_reward"] == pytest.approx(0.4)
    assert stats["prover.std_episode_reward"] == pytest.approx(math.sqrt(0.3))
    assert stats["verifier.mean_episode_reward"] == pytest.approx(-0.1)
    assert stats["verifier.std_episode_reward"] == pytest.approx(math.sqrt(0.55))
    assert stats["verifier.worst_episode_reward"] == -1.0
    assert stats["prover.retry_proportion"] == pytest.approx(0.2)
    assert stats["prover.mean_retries"] == pytest.approx(0.4)
    assert stats["verifier.invalid_proportion"] == pytest.approx(0.25)
    assert stats["prover.mean_words"] == pytest.approx(10 / 5)
    assert stats["verifier.mean_words"] == pytest.approx(5 / 4)
    # no token counts from the backend: no token statistics
    assert "prover.mean_tokens" not in stats
    assert "mean_tokens_per_episode" not in stats


def test_token_statistics_and_the_test_prefix():
    rollouts = _rollouts()
    tokens = np.full((5, 2, 2), -1, dtype=np.int64)
    tokens[:, 0, 0] = [3, 1, 2, 0, 4]
    tokens[[0, 1, 2, 4], 1, 1] = [1, 1, 2, 1]
    rollouts["agents.tokens"] = tokens
    stats = text_rollout_statistics(rollouts, prefix="test_")
    assert stats["prover.test_mean_tokens"] == pytest.approx(2.0)
    assert stats["verifier.test_mean_tokens"] == pytest.approx(1.25)
    assert stats["test_mean_tokens_per_episode"] == pytest.approx(15 / 5)
    # per-agent metrics as the tensor world names them: the agent, then test_
    for key in stats:
        agent, dot, name = key.partition(".")
        assert (name if dot else key).startswith("test_"), key
    assert stats["prover.test_mean_episode_reward"] == pytest.approx(
        text_rollout_statistics(rollouts)["prover.mean_episode_reward"]
    )
    assert not any(key.startswith("test_prover.") for key in stats)


def test_no_accepted_episode_leaves_precision_undefined():
    rollouts = _rollouts()
    rollouts["verdict"] = [0, 0, 3, -1, 0]
    stats = text_rollout_statistics(rollouts)
    assert math.isnan(stats["verifier_precision"])
    assert stats["verifier_recall"] == 0.0
    assert stats["mean_decision"] == 0.0


def test_the_worst_episode_reward_is_the_lowest_mean_over_datapoints():
    """As in the tensor world: a datapoint's episodes are averaged first."""
    rollouts = _rollouts()
    # the verifier's returns are 1, 0, -0.5, 0, -1; datapoint 0 has three of them
    rollouts["datapoint_index"] = [0, 0, 1, 2, 0]
    stats = text_rollout_statistics(rollouts)
    assert stats["verifier.worst_episode_reward"] == pytest.approx(-0.5)
    assert stats["prover.worst_episode_reward"] == pytest.approx(0.0)


def test_a_verifier_that_always_says_the_same_has_no_decision_entropy():
    rollouts = _rollouts()
    rollouts["verdict"] = [1, 1, 1, -1, 1]
    stats = text_rollout_statistics(rollouts, prefix="test_")
    assert stats["test_verifier_decision_entropy"] == 0.0
    assert math.copysign(1.0, stats["test_verifier_decision_entropy"]) == 1.0
    rollouts["verdict"] = [1, 0, -1, -1, -1]
    assert text_rollout_statistics(rollouts)["verifier_decision_entropy"] == (
        pytest.approx(math.log(2))
    )
    rollouts["verdict"] = [-1] * 5
    stats = text_rollout_statistics(rollouts)
    assert math.isnan(stats["verifier_decision_entropy"])
    assert stats["no_decision_proportion"] == 1.0
