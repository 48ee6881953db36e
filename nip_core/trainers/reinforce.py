"""The ``reinforce`` trainer: REINFORCE policy gradients for every agent.

Per agent, the loss is ``-log π(a|s) × w`` averaged over the minibatch, where ``w`` is

- the discounted reward-to-go (``rl.gamma``, reset at episode ends) by default, or
- the GAE advantage (``rl.gamma``, ``rl.lmbda``) with ``reinforce.use_advantage_and_
  critic``; the critic then learns with ``rl.loss_critic_type`` towards the GAE value
  target (``loss_critic``), its prediction optionally clipped (``rl.clip_value``;
  ``true`` clips by ``reinforce.clip_epsilon``).

``log π`` counts only the actions that happen (active channels, decisions that count),
as :class:`~nip_core.scenario.distributions.NipActionDistribution` computes it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from nip_core.scenario import keys as K
from nip_core.trainers.rl import TensorDictRlTrainer

REWARD_TO_GO_KEY = (K.AGENTS, "reward_to_go")
ADVANTAGE_KEY = (K.AGENTS, "advantage")
VALUE_TARGET_KEY = (K.AGENTS, "value_target")
VALUE_KEY = (K.AGENTS, K.VALUE)


def reward_to_go(
    reward: torch.Tensor, done: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Discounted reward-to-go along the time dimension (``-2``), reset at dones.

    ``reward`` and ``done`` have shape ``[*batch, time, agent]``; the return at step
    ``t`` is ``r_t + gamma * return_{t+1}``, with the sum cut after a done step.
    """
    out = torch.zeros_like(reward)
    running = torch.zeros_like(reward[..., 0, :])
    not_done = (~done.bool()).to(reward.dtype)
    for t in range(reward.shape[-2] - 1, -1, -1):
        running = reward[..., t, :] + gamma * running * not_done[..., t, :]
        out[..., t, :] = running
    return out


def _critic_loss(
    prediction: torch.Tensor, target: torch.Tensor, kind: str
) -> torch.Tensor:
    if kind == "l1":
        return (prediction - target).abs()
    if kind == "l2":
        return (prediction - target).pow(2)
    return nn.functional.smooth_l1_loss(prediction, target, reduction="none")


class ReinforceLoss(nn.Module):
    """The REINFORCE loss of every agent (per-agent entries, shape ``[agent]``).

    Parameters
    ----------
    actor : ProbabilisticActor
        The policy operator.
    critic : TensorDictModuleBase | None
        The value operator (with ``use_advantage``).
    use_advantage : bool
        Weight by the advantage (else by the reward-to-go).
    loss_critic_type : str
        ``"l1"``, ``"l2"`` or ``"smooth_l1"``.
    clip_value : float | None
        Clip the critic's prediction to within this of the value the rollout saw.
    """

    # The policy is read through nip's action distribution alone: the trainer runs
    # it only on the rows where each agent's choices count (counted_rows_only).
    reads_counted_choices_only: ClassVar[bool] = True

    def __init__(
        self,
        actor: Any,
        critic: Any = None,
        *,
        use_advantage: bool = False,
        loss_critic_type: str = "smooth_l1",
        clip_value: float | None = None,
    ):
        super().__init__()
        self.actor = actor
        self.critic = critic
        self.use_advantage = use_advantage
        self.loss_critic_type = loss_critic_type
        self.clip_value = clip_value

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        td = tensordict.clone(False)
        dist = self.actor.get_dist(td)
        log_prob = dist.log_prob(td)
        weight_key = ADVANTAGE_KEY if self.use_advantage else REWARD_TO_GO_KEY
        weight = tensordict.get(weight_key).detach().reshape(log_prob.shape)
        batch_dims = tuple(range(log_prob.ndim - 1))
        out = {
            "loss_objective": -(log_prob * weight).mean(dim=batch_dims),
            "entropy": dist.entropy().detach().mean(dim=batch_dims),
        }
        if self.use_advantage and self.critic is not None:
            old_value = tensordict.get(VALUE_KEY).detach()
            value = self.critic(tensordict.clone(False)).get(VALUE_KEY)
            if self.clip_value is not None:
                value = old_value + (value - old_value).clamp(
                    -self.clip_value, self.clip_value
                )
            target = tensordict.get(VALUE_TARGET_KEY).detach().reshape(value.shape)
            out["loss_critic"] = _critic_loss(
                value, target, self.loss_critic_type
            ).mean(dim=batch_dims)
        return TensorDict(out, batch_size=[])


class ReinforceTrainer(TensorDictRlTrainer):
    """REINFORCE, with the reward-to-go or (with a critic) the GAE advantage."""

    update_reads_next_observations: ClassVar[bool] = False

    @classmethod
    def uses_critic(cls, hyper_params: Any) -> bool:
        return bool(hyper_params.reinforce.use_advantage_and_critic)

    def _clip_value(self) -> float | None:
        clip = self.hyper_params.rl.clip_value
        if clip is True:
            return float(self.hyper_params.reinforce.clip_epsilon)
        if clip is False or clip is None:
            return None
        return float(clip)

    def _get_loss_module_and_gae(self) -> tuple[ReinforceLoss, Any]:
        use_advantage = self.uses_critic(self.hyper_params)
        loss_module = ReinforceLoss(
            self.policy_operator,
            self.value_operator,
            use_advantage=use_advantage,
            loss_critic_type=self.hyper_params.rl.loss_critic_type,
            clip_value=self._clip_value(),
        )
        gae = None
        if use_advantage:
            from torchrl.objectives.value import GAE

            gae = GAE(
                gamma=self.hyper_params.rl.gamma,
                lmbda=self.hyper_params.rl.lmbda,
                value_network=self.value_operator,
                average_gae=False,
            )
            gae.set_keys(
                reward=(K.AGENTS, K.REWARD),
                done=(K.AGENTS, K.DONE),
                terminated=(K.AGENTS, K.TERMINATED),
                value=VALUE_KEY,
                advantage=ADVANTAGE_KEY,
                value_target=VALUE_TARGET_KEY,
            )
        return loss_module, gae

    def _prepare_rollout(self, rollout: Any) -> None:
        super()._prepare_rollout(rollout)
        if not self.uses_critic(self.hyper_params):
            shape = (*rollout.batch_size, self.num_agents)
            reward = rollout.get(("next", K.AGENTS, K.REWARD)).reshape(shape)
            done = rollout.get(("next", K.AGENTS, K.DONE)).reshape(shape)
            rollout.set(
                REWARD_TO_GO_KEY,
                reward_to_go(reward, done, self.hyper_params.rl.gamma),
            )
