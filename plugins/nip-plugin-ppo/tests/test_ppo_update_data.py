"""PPO and SPG updates read no ``next`` observations: leaving them out of the
replay buffer trains the same agents."""

from __future__ import annotations

import pytest

from nip_core.experiment import run_experiment
from nip_core.testing.contracts.trainer import assert_same_agents

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize(
    ("trainer", "ppo"),
    [("vanilla_ppo", {}), ("vanilla_ppo", {"loss_type": "kl_penalty"}), ("spg", {})],
)
def test_without_next_observations_the_update_trains_the_same(
    ppo_scenario, monkeypatch, trainer, ppo
):
    from nip_plugin_ppo.trainers import SpgTrainer, VanillaPpoTrainer

    cls = SpgTrainer if trainer == "spg" else VanillaPpoTrainer
    assert cls.update_reads_next_observations is False
    hp = ppo_scenario.hyper_params(
        "nip",
        trainer=trainer,
        rl=ppo_scenario.short_rl(
            num_iterations=2, num_epochs=2, minibatch_size=4, use_shared_body=False
        ),
        agents={"_default": {"d_hidden": 8}},
        **({"ppo": ppo} if ppo else {}),
    )
    settings = ppo_scenario.settings(agent_threads=2)
    slim = run_experiment(hp, settings, run_id="slim")
    monkeypatch.setattr(cls, "update_reads_next_observations", True)
    full = run_experiment(hp, settings, run_id="full")
    assert_same_agents(full, slim)
