"""The ``vanilla_ppo`` and ``spg`` trainers.

Both are :class:`~nip_core.trainers.rl.TensorDictRlTrainer` subclasses: they supply
the loss module and the value estimator (GAE with ``rl.gamma`` and ``rl.lmbda``); the
core runs collection, advantages, minibatch updates, logging and checkpoints.
"""

from __future__ import annotations

from typing import Any, ClassVar

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.trainers.rl import TensorDictRlTrainer
from nip_plugin_ppo.checks import stackelberg_sequence_problems


def clip_value_of(hyper_params: Any) -> float | None:
    """``rl.clip_value`` as a number: ``True`` means ``ppo.clip_epsilon``."""
    clip = hyper_params.rl.clip_value
    if clip is True:
        return float(hyper_params.ppo.clip_epsilon)
    if clip is False or clip is None:
        return None
    return float(clip)


def shared_body_critic(trainer: TensorDictRlTrainer) -> Any:
    """The critic a loss runs after the actor on the same minibatch TensorDict.

    With a shared body, the value head alone: the actor's pass has written the
    body's output into the TensorDict, so the body runs once per minibatch (and its
    gradient collects both the actor's and the critic's terms). Otherwise the whole
    value operator.
    """
    head = getattr(trainer.scenario_instance, "combined_value_head", None)
    if (
        trainer.use_single_body
        and head is not None
        and trainer.value_operator is not None
    ):
        return head
    return trainer.value_operator


class VanillaPpoTrainer(TensorDictRlTrainer):
    """Independent PPO for every agent (``ppo.loss_type``: clipped or adaptive KL).

    Per agent, the loss is the PPO objective on the agent's own likelihood ratio and
    its advantage (standardised per agent in each minibatch when
    ``ppo.normalize_advantage``), plus ``ppo.critic_coef`` × the critic loss
    (``rl.loss_critic_type``, clipped with ``rl.clip_value``) minus
    ``ppo.entropy_eps`` × the entropy. Built on TorchRL's
    :class:`~torchrl.objectives.ClipPPOLoss` and
    :class:`~torchrl.objectives.KLPENPPOLoss` (see
    :class:`~nip_plugin_ppo.losses.PerAgentPpoLoss`).
    """

    update_reads_next_observations: ClassVar[bool] = False

    @classmethod
    def sharding_config_problems(cls, hyper_params: Any) -> list[ConfigProblem]:
        problems = super().sharding_config_problems(hyper_params)
        if hyper_params.ppo.loss_type == "kl_penalty":
            problems.append(
                ConfigProblem(
                    "ppo.loss_type",
                    "the adaptive KL penalty cannot run sharded: its coefficient "
                    "changes with every minibatch it sees, so each shard would "
                    "adapt its own; use loss_type=clip, or distributed.num_shards=1 "
                    "in one process",
                    "kl_penalty",
                )
            )
        return problems

    def _loss_critic(self) -> Any:
        """What the PPO loss runs for the critic: with a shared body only the value
        head, since the actor's pass in the same loss call has just written the
        body's output into the minibatch (the body runs once per minibatch)."""
        return shared_body_critic(self)

    def _get_loss_module_and_gae(self) -> tuple[Any, Any]:
        from nip_plugin_ppo.losses import PerAgentPpoLoss, build_gae, build_ppo_loss

        rl = self.hyper_params.rl
        loss = build_ppo_loss(
            self.policy_operator,
            self._loss_critic(),
            self.hyper_params.ppo,
            loss_critic_type=rl.loss_critic_type,
            clip_value=clip_value_of(self.hyper_params),
        )
        module = PerAgentPpoLoss(
            loss,
            self.agent_names,
            log_kl_and_ess=bool(self.hyper_params.vanilla_ppo.log_kl_and_ess),
        )
        gae = build_gae(
            self.value_operator, gamma=float(rl.gamma), lmbda=float(rl.lmbda)
        )
        return module, gae


class SpgTrainer(TensorDictRlTrainer):
    """Stackelberg policy gradient and opponent shaping (``spg.variant``).

    Each minibatch, every agent's surrogate over the joint likelihood of the sampled
    actions (:class:`~nip_plugin_ppo.losses.SpgLoss`) goes to
    :func:`~nip_plugin_ppo.stackelberg.stackelberg_update` with the agents' actor
    parameters, the Stackelberg sequence (``spg.stackelberg_sequence``; by default
    the verifiers lead and the other agents follow) and each agent's actor learning
    rate (``rl.lr`` × ``agent_lr_factor.actor``); the resulting directions are the
    actor gradients. Critic and entropy gradients are added as usual.

    It cannot run sharded (``distributed.num_shards > 1`` or under ``torchrun``):
    the Stackelberg directions are not linear in the minibatch, so a mean of
    per-shard directions is another algorithm.
    """

    update_reads_next_observations: ClassVar[bool] = False

    supports_sharding = False

    def _stackelberg_sequence(self) -> tuple[tuple[str, ...], ...]:
        sequence = self.hyper_params.spg.stackelberg_sequence
        if sequence is None:
            return tuple(self.protocol_handler.default_stackelberg_sequence)
        # checked before the run (TrainerSpec.config_problems); again for a
        # trainer built directly
        problems = stackelberg_sequence_problems(sequence, self.agent_names)
        if problems:
            raise NipConfigError(problems)
        return tuple(tuple(group) for group in sequence)

    def _actor_parameters(self) -> dict[str, list[Any]]:
        """Each agent's trainable actor parameters: its (policy) body and policy
        head."""
        params: dict[str, list[Any]] = {}
        for name in self.agent_names:
            agent = self.agents[name]
            seen: set[int] = set()
            agent_params = []
            for part in ("body", "policy_body", "policy_head"):
                module = getattr(agent, part, None)
                if module is None or not hasattr(module, "parameters"):
                    continue
                for p in module.parameters():
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        agent_params.append(p)
            if agent_params:
                params[name] = agent_params
        return params

    def _get_optimizer(self) -> Any:
        """The core's optimizer; the loss then keeps only the actor parameters it
        steps (:meth:`~nip_plugin_ppo.losses.SpgLoss.keep_stepped_parameters`): an
        agent frozen by a learning rate of 0 leaves the game."""
        optimizer = super()._get_optimizer()
        self.loss_module.keep_stepped_parameters(
            p for group in getattr(self, "param_groups", []) for p in group["params"]
        )
        return optimizer

    def _get_replay_buffer(self, transform: Any = None) -> Any:
        """Minibatches of whole environment rows, so each episode's earlier steps
        are at hand for the joint ratio (:class:`~nip_plugin_ppo.losses.SpgLoss`)."""
        from torchrl.data.replay_buffers import ReplayBuffer
        from torchrl.data.replay_buffers.storages import LazyTensorStorage

        from nip_plugin_ppo.losses import RowSampler

        return ReplayBuffer(
            storage=LazyTensorStorage(self.frames_per_batch, device=self.device),
            sampler=RowSampler(self._steps_per_iteration(self.train_environment)),
            batch_size=self.minibatch_size,
            transform=transform,
        )

    def _get_loss_module_and_gae(self) -> tuple[Any, Any]:
        from nip_core.trainers.optim import agent_learning_rates
        from nip_plugin_ppo.losses import SpgLoss, build_gae

        hp = self.hyper_params
        actor_params = self._actor_parameters()
        sequence = tuple(
            kept
            for kept in (
                tuple(name for name in group if name in actor_params)
                for group in self._stackelberg_sequence()
            )
            if kept
        )
        learning_rates = {
            name: agent_learning_rates(hp.agents[name], float(hp.rl.lr))["policy_head"]
            for name in actor_params
        }
        loss = SpgLoss(
            self.policy_operator,
            shared_body_critic(self),
            agent_names=self.agent_names,
            actor_params=actor_params,
            sequence=sequence,
            learning_rates=learning_rates,
            variant=hp.spg.variant,
            clip_epsilon=float(hp.ppo.clip_epsilon),
            entropy_coef=float(hp.ppo.entropy_eps),
            critic_coef=float(hp.ppo.critic_coef),
            normalize_advantage=bool(hp.ppo.normalize_advantage),
            loss_critic_type=hp.rl.loss_critic_type,
            clip_value=clip_value_of(hp),
            stackelberg_options=dict(
                ihvp_rank=int(hp.spg.ihvp_rank),
                ihvp_rho=float(hp.spg.ihvp_rho),
                sos_scaling_factor=float(hp.spg.sos_scaling_factor),
                sos_threshold_factor=float(hp.spg.sos_threshold_factor),
                additional_lola_term=bool(hp.spg.additional_lola_term),
            ),
            seed=int(hp.seed),
            row_length=self._steps_per_iteration(self.train_environment),
        )
        gae = build_gae(
            self.value_operator, gamma=float(hp.rl.gamma), lmbda=float(hp.rl.lmbda)
        )
        return loss, gae
