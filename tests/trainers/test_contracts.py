"""The built-in trainers pass the trainer contract suite on the synthetic scenario."""

from __future__ import annotations

from typing import Any

import pytest

from nip_core.testing.contracts.trainer import TrainerContract
from nip_core.testing.synthetic import SYNTHETIC_PLUGIN
from nip_core.testing.synthetic.fixtures import SyntheticScenario


class _SyntheticTrainerContract(TrainerContract):
    @pytest.fixture
    def trainer_plugins(self, register_plugin: Any, tmp_path: Any) -> Any:
        register_plugin(SYNTHETIC_PLUGIN, name="synthetic")
        self.scenario = SyntheticScenario(tmp_path)


class TestReinforceContract(_SyntheticTrainerContract):
    trainer_name = "reinforce"

    def make_hyper_params(self, num_iterations: int) -> Any:
        # With a critic, so GAE and the value loss are covered by the resume check
        return self.scenario.hyper_params(
            "nip",
            trainer="reinforce",
            reinforce={"use_advantage_and_critic": True},
            rl={
                "num_iterations": num_iterations,
                "num_epochs": 2,
                "minibatch_size": 6,
                "num_test_iterations": 1,
                "normalize_observations": True,
                "num_normalization_steps": 2,
                "anneal_lr": True,
            },
        )


class TestSoloAgentContract(_SyntheticTrainerContract):
    trainer_name = "solo_agent"

    def make_hyper_params(self, num_iterations: int) -> Any:
        return self.scenario.hyper_params(
            "nip",
            trainer="solo_agent",
            solo_agent={"num_epochs": num_iterations, "batch_size": 6},
        )
