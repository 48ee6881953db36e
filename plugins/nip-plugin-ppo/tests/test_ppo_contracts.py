"""vanilla_ppo and spg pass the core's trainer contract suite."""

from __future__ import annotations

from typing import Any

import pytest

from nip_core.testing.contracts.trainer import TrainerContract
from nip_core.testing.synthetic import SYNTHETIC_PLUGIN
from nip_core.testing.synthetic.fixtures import SyntheticScenario

_RL = {
    "num_epochs": 2,
    "minibatch_size": 6,
    "num_test_iterations": 1,
    "normalize_observations": True,
    "num_normalization_steps": 2,
    "anneal_lr": True,
}


class _PpoPluginContract(TrainerContract):
    @pytest.fixture
    def trainer_plugins(self, register_plugin: Any, tmp_path: Any) -> Any:
        import nip_plugin_ppo.plugin

        register_plugin(SYNTHETIC_PLUGIN, name="synthetic")
        register_plugin(nip_plugin_ppo.plugin, name="ppo")
        self.scenario = SyntheticScenario(tmp_path)


class TestVanillaPpoClipContract(_PpoPluginContract):
    trainer_name = "vanilla_ppo"

    def make_hyper_params(self, num_iterations: int) -> Any:
        return self.scenario.hyper_params(
            "nip",
            trainer="vanilla_ppo",
            rl={"num_iterations": num_iterations, "clip_value": True, **_RL},
        )


class TestVanillaPpoKlPenaltyContract(_PpoPluginContract):
    """The adaptive coefficient is part of the state a resumed run continues from."""

    trainer_name = "vanilla_ppo"

    def make_hyper_params(self, num_iterations: int) -> Any:
        return self.scenario.hyper_params(
            "nip",
            trainer="vanilla_ppo",
            ppo={"loss_type": "kl_penalty"},
            rl={"num_iterations": num_iterations, **_RL},
        )


class TestSpgContract(_PpoPluginContract):
    """The Nyström variant, whose random column choice must resume too."""

    trainer_name = "spg"

    def make_hyper_params(self, num_iterations: int) -> Any:
        return self.scenario.hyper_params(
            "nip",
            trainer="spg",
            spg={"variant": "spg", "ihvp_rank": 2},
            rl={"num_iterations": num_iterations, **_RL},
        )


class TestPsosDebateContract(_PpoPluginContract):
    """The default variant with three agents (two provers follow the verifier)."""

    trainer_name = "spg"

    def make_hyper_params(self, num_iterations: int) -> Any:
        return self.scenario.hyper_params(
            "debate",
            trainer="spg",
            rl={"num_iterations": num_iterations, **_RL},
        )
