"""Helpers of the PPO plugin's tests (plain functions, not fixtures)."""

from __future__ import annotations

from typing import Any


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
