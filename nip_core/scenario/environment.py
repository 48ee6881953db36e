"""The tensor world's environment, :class:`TensorDictEnvironment`.

The common base of both data worlds, :class:`~nip_core.scenario.environment_base.
Environment` (parameters, settings, dataset, protocol handler and the batch
arithmetic of seed 004), lives in :mod:`nip_core.scenario.environment_base` (no
torch) and is re-exported here.

:class:`TensorDictEnvironment` is a batched TorchRL :class:`~torchrl.envs.EnvBase`.
A scenario subclasses it and supplies

- :attr:`~TensorDictEnvironment.message_space_shape`: the shape ``M`` of one message
  (a node of either graph: ``(2, max_nodes)``; a latent pixel: ``(h, w)``);
- the datapoint keys agents observe (``observation_data_keys``, by default the
  dataset's ``instance_keys``) and, if the defaults do not fit, their specs
  (:meth:`~TensorDictEnvironment._data_observation_spec`);
- optionally, the scenario's rule for valid messages
  (:meth:`~TensorDictEnvironment.compute_valid_message_mask`).

The keys and shapes are listed in :mod:`nip_core.scenario.keys`.

Message passing
---------------
Each step every agent picks, per channel and position, a message index in ``[0, N)``
(``("agents", "message_selected")``). For each channel, the messages of the agents
active on it this round (``protocol_handler.get_active_agents_mask_from_rounds_and_
seed``) are one-hot encoded and summed (two active agents picking the same message
give a 2), reshaped to ``M``, written into ``message_history`` at the current round
and given as ``message``. Rounds count up by one per step; the protocol handler's
``step_interaction_protocol`` gives the done signals and rewards.

What each agent sees
--------------------
The environment keeps one global history with every channel. An agent observes only
the channels it can see (``protocol_handler.agent_channel_visibility_mask``): the
combined agent parts (:mod:`nip_core.scenario.agents`) zero the channels an agent
cannot see in ``message_history``, ``message`` and the linear-message keys before
they call the agent's part. Shapes stay the same for every agent, so one body class
serves every protocol.
"""

from __future__ import annotations

from abc import abstractmethod
from math import prod
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Binary, Categorical, Composite, TensorSpec, Unbounded
from torchrl.envs import EnvBase

from nip_core.scenario import keys as K
from nip_core.scenario.data import DataCycler, TensorDictDataset
from nip_core.scenario.environment_base import (  # noqa: F401 (re-exported)
    NUM_DECISIONS,
    SEED_RANGE,
    Environment,
    environment_seed,
)
from nip_core.seeding import derive_seed

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler


class TensorDictEnvironment(EnvBase, Environment):
    """A batched TorchRL environment of the tensor world.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters (``message_size``, ``include_linear_message_space``,
        ``d_linear_message_space``, ``rl.*``, ``seed``).
    settings : ExperimentSettings
        The run's settings (``device``).
    dataset : TensorDictDataset
        The datapoints episodes are drawn from.
    protocol_handler : ProtocolHandler
        The interaction protocol.

    Class attributes
    ----------------
    observation_data_keys : tuple[str, ...] | None
        Datapoint keys copied into the observation at reset (``None``: the dataset's
        ``instance_keys``).
    """

    observation_data_keys: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        dataset: TensorDictDataset,
        protocol_handler: ProtocolHandler,
    ):
        Environment.__init__(
            self,
            hyper_params=hyper_params,
            settings=settings,
            dataset=dataset,
            protocol_handler=protocol_handler,
        )
        device = torch.device(getattr(settings, "device", "cpu") or "cpu")
        EnvBase.__init__(self, device=device, batch_size=torch.Size([self.num_envs]))

        self.observation_spec = self._get_observation_spec()
        self.action_spec = self._get_action_spec()
        self.state_spec = self._get_state_spec()
        self.reward_spec = self._get_reward_spec()
        self.done_spec = self._get_done_spec()

        self.rng = torch.Generator()
        self._seed = environment_seed(getattr(hyper_params, "seed", 0), self.split)
        self.rng.manual_seed(self._seed)
        self.data_cycler = DataCycler(dataset, self.rng)

    # ----------------------------------------------------------------------------------
    # What a scenario supplies

    @property
    @abstractmethod
    def message_space_shape(self) -> tuple[int, ...]:
        """The shape ``M`` of one message (one position of one channel)."""

    def compute_valid_message_mask(self, env_td: TensorDictBase) -> torch.Tensor | None:
        """The messages each agent may send now: bool ``(*batch, A, C, P, N)``.

        Called after every reset and step with the new observation (round, latest
        message and datapoint keys are set). ``None`` (the default) allows every
        message. Rows an agent is not active on are ignored by the policy, but must
        still allow at least one message.
        """
        return None

    def _data_observation_spec(self, key: str) -> TensorSpec:
        """The spec of one datapoint key in the observation.

        The default reads the shape and dtype from the dataset: bool keys get a
        :class:`~torchrl.data.Binary` spec, others :class:`~torchrl.data.Unbounded`.
        """
        value = self.dataset.data.get(key)
        shape = (self.num_envs, *value.shape[1:])
        if value.dtype == torch.bool:
            return Binary(shape=shape, dtype=torch.bool, device=self.device)
        return Unbounded(shape=shape, dtype=value.dtype, device=self.device)

    # ----------------------------------------------------------------------------------
    # Shapes

    @property
    def data_keys(self) -> tuple[str, ...]:
        """The datapoint keys agents observe."""
        if self.observation_data_keys is not None:
            return tuple(self.observation_data_keys)
        return tuple(self.dataset.instance_keys)

    @property
    def message_size(self) -> int:
        """``hyper_params.message_size``: positions per channel per round."""
        return int(getattr(self.hyper_params, "message_size", 1))

    @property
    def num_messages(self) -> int:
        """``N``: the number of messages in the (flattened) message space."""
        return prod(self.message_space_shape)

    @property
    def include_linear_message_space(self) -> bool:
        """Whether agents also send a message in the linear message space."""
        return bool(getattr(self.hyper_params, "include_linear_message_space", False))

    @property
    def d_linear_message_space(self) -> int:
        """The size ``D`` of the linear message space."""
        return int(getattr(self.hyper_params, "d_linear_message_space", 2))

    @property
    def message_history_shape(self) -> tuple[int, ...]:
        """``(num_envs, R, C, P, *M)``."""
        return (
            self.num_envs,
            self.max_message_rounds,
            self.num_message_channels,
            self.message_size,
            *self.message_space_shape,
        )

    # ----------------------------------------------------------------------------------
    # Specs

    def _get_observation_spec(self) -> Composite:
        B, A = self.num_envs, self.num_agents
        C, P, N = self.num_message_channels, self.message_size, self.num_messages
        device = self.device
        spec = Composite(
            {
                K.ROUND: Categorical(
                    self.max_message_rounds + 1, shape=(B,), device=device
                ),
                K.SEED: Categorical(SEED_RANGE, shape=(B,), device=device),
                K.MESSAGE_HISTORY: Unbounded(
                    shape=self.message_history_shape, dtype=torch.float, device=device
                ),
                K.MESSAGE: Unbounded(
                    shape=(B, C, P, *self.message_space_shape),
                    dtype=torch.float,
                    device=device,
                ),
                K.DECISION_RESTRICTION: Categorical(3, shape=(B,), device=device),
                K.AGENTS: Composite(
                    {
                        K.ACTIVE_MASK: Binary(
                            shape=(B, A, C), dtype=torch.bool, device=device
                        ),
                        K.DECISION_MASK: Binary(
                            shape=(B, A), dtype=torch.bool, device=device
                        ),
                        K.VALID_MESSAGE_MASK: Binary(
                            shape=(B, A, C, P, N), dtype=torch.bool, device=device
                        ),
                    },
                    shape=(B, A),
                    device=device,
                ),
            },
            shape=(B,),
            device=device,
        )
        for key in self.data_keys:
            spec[key] = self._data_observation_spec(key)
        for model_name in self.dataset.pretrained_model_names:
            spec[K.PRETRAINED_EMBEDDINGS, model_name] = Unbounded(
                shape=(
                    B,
                    *self.dataset.get_pretrained_embedding_feature_shape(model_name),
                ),
                dtype=self.dataset.get_pretrained_embedding_dtype(model_name),
                device=device,
            )
        if self.include_linear_message_space:
            D = self.d_linear_message_space
            spec[K.LINEAR_MESSAGE_HISTORY] = Unbounded(
                shape=(B, self.max_message_rounds, C, P, D),
                dtype=torch.float,
                device=device,
            )
            spec[K.LINEAR_MESSAGE] = Unbounded(
                shape=(B, C, P, D), dtype=torch.float, device=device
            )
        return spec

    def _get_action_spec(self) -> Composite:
        B, A = self.num_envs, self.num_agents
        C, P, N = self.num_message_channels, self.message_size, self.num_messages
        device = self.device
        agents = Composite(
            {
                K.MESSAGE_SELECTED: Categorical(N, shape=(B, A, C, P), device=device),
                K.DECISION: Categorical(NUM_DECISIONS, shape=(B, A), device=device),
                K.MAIN_MESSAGE_LOGITS: Unbounded(
                    shape=(B, A, C, P, N), dtype=torch.float, device=device
                ),
                K.DECISION_LOGITS: Unbounded(
                    shape=(B, A, NUM_DECISIONS), dtype=torch.float, device=device
                ),
            },
            shape=(B, A),
            device=device,
        )
        if self.include_linear_message_space:
            D = self.d_linear_message_space
            agents[K.LINEAR_MESSAGE_SELECTED] = Categorical(
                D, shape=(B, A, C, P), device=device
            )
            agents[K.LINEAR_MESSAGE_LOGITS] = Unbounded(
                shape=(B, A, C, P, D), dtype=torch.float, device=device
            )
        return Composite({K.AGENTS: agents}, shape=(B,), device=device)

    def _get_state_spec(self) -> Composite:
        B = self.num_envs
        return Composite(
            {
                K.Y: Categorical(2, shape=(B, 1), device=self.device),
                K.DATAPOINT_ID: Categorical(
                    max(len(self.dataset), 1), shape=(B,), device=self.device
                ),
            },
            shape=(B,),
            device=self.device,
        )

    def _get_reward_spec(self) -> Composite:
        B, A = self.num_envs, self.num_agents
        return Composite(
            {
                K.AGENTS: Composite(
                    {
                        K.REWARD: Unbounded(
                            shape=(B, A, 1), dtype=torch.float, device=self.device
                        )
                    },
                    shape=(B, A),
                    device=self.device,
                )
            },
            shape=(B,),
            device=self.device,
        )

    def _get_done_spec(self) -> Composite:
        B, A = self.num_envs, self.num_agents
        device = self.device
        return Composite(
            {
                K.DONE: Binary(shape=(B,), dtype=torch.bool, device=device),
                K.TERMINATED: Binary(shape=(B,), dtype=torch.bool, device=device),
                K.AGENTS: Composite(
                    {
                        K.DONE: Binary(
                            shape=(B, A, 1), dtype=torch.bool, device=device
                        ),
                        K.TERMINATED: Binary(
                            shape=(B, A, 1), dtype=torch.bool, device=device
                        ),
                    },
                    shape=(B, A),
                    device=device,
                ),
            },
            shape=(B,),
            device=device,
        )

    # ----------------------------------------------------------------------------------
    # Reset

    def _reset_mask(self, env_td: TensorDictBase | None) -> torch.Tensor:
        """Which environments to reset: ``"_reset"`` (or the agents'), else done."""
        all_envs = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        if env_td is None:
            return all_envs
        reset = env_td.get("_reset", None)
        if reset is None:
            agent_reset = env_td.get((K.AGENTS, "_reset"), None)
            if agent_reset is not None:
                reset = agent_reset.any(-1)
        if reset is None and K.MESSAGE_HISTORY in env_td.keys():
            reset = env_td.get(K.DONE, None)
        if reset is None:
            return all_envs
        return reset.reshape(self.batch_size).to(device=self.device, dtype=torch.bool)

    def _zero_state(self, batch_size: tuple[int, ...] | None = None) -> TensorDict:
        """A state of zeros (observation, state and done entries)."""
        # Building zeros from the specs costs milliseconds per call (TensorDict
        # construction), and every reset needs one: keep a template and clone it.
        # The template is rebuilt when a spec object is replaced.
        specs = (self.observation_spec, self.state_spec, self.done_spec)
        cached = self.__dict__.get("_zero_state_cache")
        if cached is None or any(
            a is not b for a, b in zip(cached[0], specs, strict=True)
        ):
            template = specs[0].zero()
            template.update(specs[1].zero())
            template.update(specs[2].zero())
            cached = (specs, template)
            self.__dict__["_zero_state_cache"] = cached
        td = cached[1]
        if batch_size is not None and tuple(batch_size) != tuple(self.batch_size):
            return td[:1].expand(*batch_size).clone()
        return td.clone()

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs: Any):
        mask = self._reset_mask(tensordict)
        if tensordict is not None and K.MESSAGE_HISTORY in tensordict.keys():
            # A full state was handed over (a direct ``env.reset(td)``): keep the
            # environments that are not reset as they are.
            env_td = self._zero_state()
            env_td.update(tensordict.select(*env_td.keys(True, True), strict=False))
            env_td = env_td.clone()
        else:
            env_td = self._zero_state()
        num_new = int(mask.sum().item())
        if num_new > 0:
            batch = self.data_cycler.get_batch(num_new).to(self.device)
            env_td = self._masked_reset(env_td, mask, batch)
        self._set_turn_masks(env_td)
        return env_td

    def _masked_reset(
        self, env_td: TensorDictBase, mask: torch.Tensor, data_batch: TensorDictBase
    ) -> TensorDictBase:
        """Start new episodes in the environments ``mask`` selects.

        ``data_batch`` holds one datapoint per selected environment. Subclasses that
        keep more per-episode state extend this (calling ``super()``).
        """
        num_new = int(mask.sum().item())
        env_td[K.SEED][mask] = torch.randint(
            0, SEED_RANGE, (num_new,), generator=self.rng, dtype=torch.long
        ).to(self.device)
        env_td[K.Y][mask] = data_batch[K.Y].reshape(num_new, 1).long()
        env_td[K.DATAPOINT_ID][mask] = data_batch["id"].long()
        for key in self.data_keys:
            env_td[key][mask] = data_batch[key].to(env_td[key].dtype)
        for model_name in self.dataset.pretrained_model_names:
            env_td[K.PRETRAINED_EMBEDDINGS, model_name][mask] = data_batch[
                K.PRETRAINED_EMBEDDINGS, model_name
            ]
        env_td[K.MESSAGE_HISTORY][mask] = 0
        env_td[K.MESSAGE][mask] = 0
        if self.include_linear_message_space:
            env_td[K.LINEAR_MESSAGE_HISTORY][mask] = 0
            env_td[K.LINEAR_MESSAGE][mask] = 0
        env_td[K.ROUND][mask] = 0
        env_td[K.DECISION_RESTRICTION][mask] = 0
        env_td[K.DONE][mask] = False
        env_td[K.TERMINATED][mask] = False
        env_td[K.AGENTS, K.DONE][mask] = False
        env_td[K.AGENTS, K.TERMINATED][mask] = False
        return env_td

    def datapoints_to_observation(self, data_batch: TensorDictBase) -> TensorDict:
        """Fresh first-round states for the given datapoints (batch ``(k,)``).

        Useful outside RL, e.g. for supervised (solo) training of bodies on dataset
        batches: the result has every observation and state key, at round 0 with an
        empty history.

        The episodes' seeds are drawn from a generator of their own, seeded afresh
        at each call from the environment's seed, not from the environment's
        episode stream: building these observations leaves the environment's own
        episodes as they were (pre-training the bodies, or loading them from the
        cache, must not change the RL episodes that follow), and the same batch
        gives the same observation every time.
        """
        num = int(data_batch.batch_size[0])
        env_td = self._zero_state((num,))
        mask = torch.ones(num, dtype=torch.bool, device=self.device)
        episodes_rng = self.rng
        self.rng = torch.Generator().manual_seed(
            derive_seed(self._seed, "datapoints_to_observation")
        )
        try:
            env_td = self._masked_reset(env_td, mask, data_batch.to(self.device))
        finally:
            self.rng = episodes_rng
        self._set_turn_masks(env_td)
        return env_td

    # ----------------------------------------------------------------------------------
    # Step

    def _set_turn_masks(self, env_td: TensorDictBase) -> None:
        """Write the per-round masks for the round ``env_td`` is at.

        ``("agents", "active_mask")``, ``("agents", "decision_mask")`` and
        ``decision_restriction`` come from the protocol handler (the decision mask
        without the agents already done), ``("agents", "valid_message_mask")`` from
        :meth:`compute_valid_message_mask`.
        """
        handler = self.protocol_handler
        # After the last round an episode is over and is reset before anyone acts;
        # the protocol is only asked about rounds it has.
        round_id = env_td[K.ROUND].clamp(max=self.max_message_rounds - 1)
        seed = env_td[K.SEED]
        active = self._active_agents(env_td)
        decision_mask = handler.get_decision_mask_from_rounds_and_seed(round_id, seed)
        restriction = handler.get_decision_restriction_from_rounds_and_seed(
            round_id, seed
        )
        decision_mask = decision_mask.to(self.device, torch.bool)
        agent_done = env_td.get((K.AGENTS, K.DONE), None)
        if agent_done is not None:
            # An agent that is already done (a zero-knowledge verifier that has
            # decided while the other has not) decides nothing that counts.
            decision_mask = decision_mask & ~agent_done.reshape(decision_mask.shape)
        env_td[K.AGENTS, K.ACTIVE_MASK] = active
        env_td[K.AGENTS, K.DECISION_MASK] = decision_mask
        env_td[K.DECISION_RESTRICTION] = restriction.to(self.device, torch.long)
        valid = self.compute_valid_message_mask(env_td)
        if valid is None:
            shape = (
                *env_td.batch_size,
                self.num_agents,
                self.num_message_channels,
                self.message_size,
                self.num_messages,
            )
            valid = torch.ones(shape, dtype=torch.bool, device=self.device)
        env_td[K.AGENTS, K.VALID_MESSAGE_MASK] = valid.to(self.device, torch.bool)

    def _active_agents(self, env_td: TensorDictBase) -> torch.Tensor:
        """bool ``(*batch, A, C)``: who speaks on which channel in the round
        ``env_td`` is at: the protocol's schedule, without the agents already done
        (a zero-knowledge verifier that has decided while the other has not). A
        done agent's messages reach no channel and count in none of its
        log-probabilities, entropies or losses, as its decisions do not."""
        round_id = env_td[K.ROUND].clamp(max=self.max_message_rounds - 1)
        active = self.protocol_handler.get_active_agents_mask_from_rounds_and_seed(
            round_id, env_td[K.SEED]
        ).to(self.device, torch.bool)
        agent_done = env_td.get((K.AGENTS, K.DONE), None)
        if agent_done is not None:
            active = active & ~agent_done.reshape(*active.shape[:-1], 1)
        return active

    def _write_messages(
        self,
        env_td: TensorDictBase,
        active: torch.Tensor,
        *,
        selected_key: str,
        history_key: str,
        message_shape: tuple[int, ...],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The new message and history for one message space.

        Parameters
        ----------
        env_td : TensorDictBase
            The state with the agents' actions.
        active : torch.Tensor
            bool ``(*batch, A, C)``: who speaks on which channel this round.
        selected_key : str
            The action key under ``"agents"`` (``(*batch, A, C, P)``, long).
        history_key : str
            The history key (``(*batch, R, C, P, *message_shape)``).
        message_shape : tuple[int, ...]
            The shape of one message.

        Returns
        -------
        message : torch.Tensor
            ``(*batch, C, P, *message_shape)``.
        history : torch.Tensor
            The history with ``message`` written at the current round.
        """
        batch_shape = env_td.batch_size
        n_batch = len(batch_shape)
        selected = env_td[K.AGENTS, selected_key].long()
        one_hot = F.one_hot(selected, prod(message_shape)).to(torch.float)
        # Inactive agents' choices do not reach the channel.
        one_hot = one_hot * active[..., None, None].to(torch.float)
        message = one_hot.sum(dim=n_batch)
        message = message.reshape(*message.shape[:-1], *message_shape)

        history = env_td[history_key]
        rounds = torch.arange(self.max_message_rounds, device=history.device)
        at_round = rounds == env_td[K.ROUND].unsqueeze(-1)
        at_round = at_round.reshape(
            *batch_shape, self.max_message_rounds, *([1] * (history.ndim - n_batch - 1))
        )
        history = torch.where(at_round, message.unsqueeze(n_batch), history)
        return message, history

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        env_td = tensordict
        handler = self.protocol_handler
        round_id = env_td[K.ROUND]
        active = self._active_agents(env_td)

        next_td = TensorDict(
            {
                K.AGENTS: TensorDict(
                    {}, batch_size=(*env_td.batch_size, self.num_agents)
                )
            },
            batch_size=env_td.batch_size,
            device=self.device,
        )
        for key in (K.SEED, *self.data_keys):
            next_td[key] = env_td[key]
        if self.dataset.pretrained_model_names:
            next_td[K.PRETRAINED_EMBEDDINGS] = env_td[K.PRETRAINED_EMBEDDINGS]
        next_td[K.ROUND] = round_id + 1

        message, history = self._write_messages(
            env_td,
            active,
            selected_key=K.MESSAGE_SELECTED,
            history_key=K.MESSAGE_HISTORY,
            message_shape=tuple(self.message_space_shape),
        )
        next_td[K.MESSAGE] = message
        next_td[K.MESSAGE_HISTORY] = history
        if self.include_linear_message_space:
            message, history = self._write_messages(
                env_td,
                active,
                selected_key=K.LINEAR_MESSAGE_SELECTED,
                history_key=K.LINEAR_MESSAGE_HISTORY,
                message_shape=(self.d_linear_message_space,),
            )
            next_td[K.LINEAR_MESSAGE] = message
            next_td[K.LINEAR_MESSAGE_HISTORY] = history

        shared_done, agent_done, terminated, reward = handler.step_interaction_protocol(
            env_td
        )
        done = (shared_done | terminated).to(self.device, torch.bool)
        agent_done = agent_done.to(self.device, torch.bool) | done.unsqueeze(-1)
        next_td[K.DONE] = done
        next_td[K.TERMINATED] = terminated.to(self.device, torch.bool)
        # A trailing feature dimension of 1, as TorchRL's value estimators and losses
        # expect for per-agent entries.
        next_td[K.AGENTS, K.DONE] = agent_done.unsqueeze(-1)
        next_td[K.AGENTS, K.TERMINATED] = agent_done.unsqueeze(-1).clone()
        next_td[K.AGENTS, K.REWARD] = reward.to(self.device, torch.float).unsqueeze(-1)
        self._set_turn_masks(next_td)
        return next_td

    # ----------------------------------------------------------------------------------
    # Seeding

    def _set_seed(self, seed: int | None) -> None:
        if seed is None:
            return
        # Derived per split, so a train and a test environment given the same seed
        # (as collectors do) still draw different datapoint orders and episode seeds.
        self._seed = environment_seed(int(seed), self.split)
        self.rng.manual_seed(self._seed)
        self.data_cycler = DataCycler(self.dataset, self.rng)
