"""Fixtures of the PPO plugin's tests: the synthetic scenario and this plugin."""

from __future__ import annotations

from typing import Any

import pytest

from nip_core.testing.synthetic.fixtures import synthetic_scenario  # noqa: F401


@pytest.fixture
def ppo_scenario(synthetic_scenario: Any, register_plugin: Any) -> Any:  # noqa: F811
    """The synthetic scenario with this plugin's trainers and sections registered."""
    import nip_plugin_ppo.plugin

    register_plugin(nip_plugin_ppo.plugin, name="ppo")
    return synthetic_scenario


@pytest.fixture
def single_thread() -> Any:
    """Tiny models train faster, and reproducibly, on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def prepared_trainer(scenario: Any, hyper_params: Any) -> Any:
    """A trainer whose operators and loss module are built, not trained."""
    from nip_core.experiment import prepare_experiment

    prepared = prepare_experiment(hyper_params, scenario.settings())
    trainer = prepared.trainer
    trainer._build_operators()
    trainer.replay_buffer = trainer._get_replay_buffer()
    trainer.loss_module, trainer.gae = trainer._get_loss_module_and_gae()
    return trainer


def collected_minibatch(trainer: Any) -> Any:
    """One iteration's rollout with advantages, flattened to a minibatch."""
    import torch

    env = trainer.train_environment
    rollout, _ = trainer._collect(env, None, trainer._steps_per_iteration(env))
    trainer._prepare_rollout(rollout)
    with torch.no_grad():
        trainer.gae(rollout)
    return rollout
