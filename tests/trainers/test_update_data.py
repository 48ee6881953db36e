"""What the update's replay buffer holds (``update_reads_next_observations``)."""

from __future__ import annotations

import pytest

from nip_core.experiment import run_experiment
from nip_core.testing.contracts.trainer import assert_same_agents
from nip_core.trainers.reinforce import ReinforceTrainer
from nip_core.trainers.rl import TensorDictRlTrainer

pytestmark = pytest.mark.usefixtures("single_thread")


def _hyper_params(scenario):
    return scenario.hyper_params(
        "nip",
        rl=scenario.short_rl(num_iterations=2, num_epochs=2, minibatch_size=4),
        agents={"_default": {"d_hidden": 8}},
    )


def test_the_replay_buffer_keeps_only_next_s_flags_and_trains_the_same(
    synthetic_scenario, monkeypatch
):
    sampled = []
    extend = TensorDictRlTrainer._update_data

    def recording(self, rollout):
        data = extend(self, rollout)
        sampled.append(set(data.keys(True, True)))
        return data

    monkeypatch.setattr(TensorDictRlTrainer, "_update_data", recording)
    hp = _hyper_params(synthetic_scenario)
    settings = synthetic_scenario.settings(agent_threads=2)
    assert ReinforceTrainer.update_reads_next_observations is False
    slim = run_experiment(hp, settings, run_id="slim")
    slim_keys = sampled[-1]
    monkeypatch.setattr(ReinforceTrainer, "update_reads_next_observations", True)
    full = run_experiment(hp, settings, run_id="full")
    full_keys = sampled[-1]
    next_keys = {
        key for key in full_keys if isinstance(key, tuple) and key[0] == "next"
    }
    # the full rollout has next observations; the update keeps only the flags
    assert {key[-1] for key in next_keys} - {"reward", "done", "terminated"}
    assert {
        key for key in slim_keys if isinstance(key, tuple) and key[0] == "next"
    } == {key for key in next_keys if key[-1] in {"reward", "done", "terminated"}}
    assert slim_keys == {key for key in full_keys if key not in next_keys} | {
        key for key in next_keys if key[-1] in {"reward", "done", "terminated"}
    }
    assert_same_agents(full, slim)
