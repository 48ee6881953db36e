"""TorchRL's own losses train nip's agents unchanged, as docs/writing-a-trainer.md
promises: the actor's first action key is the packed action, its log-probability is
per agent, and the KL divergence is registered for the KL-penalty objective."""

from __future__ import annotations

import math

import pytest

from nip_core import hookimpl
from nip_core.experiment import run_experiment
from nip_core.records import TrainerSpec
from nip_core.scenario.distributions import torchrl_loss_keys
from nip_core.trainers import TensorDictRlTrainer

pytestmark = pytest.mark.usefixtures("single_thread")

LOSSES = ("A2CLoss", "ReinforceLoss", "ClipPPOLoss", "KLPENPPOLoss")


def _trainer_for(loss_name: str) -> type[TensorDictRlTrainer]:
    class TorchRlLossTrainer(TensorDictRlTrainer):
        def _get_loss_module_and_gae(self):
            import torchrl.objectives
            from torchrl.objectives import ValueEstimators

            loss_class = getattr(torchrl.objectives, loss_name)
            loss = loss_class(self.policy_operator, self.value_operator)
            loss.set_keys(**torchrl_loss_keys())
            rl = self.hyper_params.rl
            loss.make_value_estimator(
                ValueEstimators.GAE, gamma=rl.gamma, lmbda=rl.lmbda
            )
            return loss, loss.value_estimator

    return TorchRlLossTrainer


@pytest.mark.parametrize("loss_name", LOSSES)
def test_a_torchrl_loss_trains_nips_agents_unchanged(
    loss_name, register_plugin, synthetic_scenario
):
    trainer_class = _trainer_for(loss_name)

    class Plugin:
        @hookimpl
        def register_trainers(self):
            return [TrainerSpec(name="torchrl_loss", trainer_class=trainer_class)]

    register_plugin(Plugin(), name="torchrl-loss")
    hp = synthetic_scenario.hyper_params(
        "debate", trainer="torchrl_loss", rl=synthetic_scenario.short_rl()
    )
    result = run_experiment(hp, synthetic_scenario.settings())
    losses = [
        value
        for record in result.metrics
        for key, value in record.items()
        if key.startswith("loss_")  # A2C and PPO: loss_objective; REINFORCE: loss_actor
    ]
    assert losses and all(math.isfinite(value) for value in losses)
    assert result.trainer.iteration == 2
