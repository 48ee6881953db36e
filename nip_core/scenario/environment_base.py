"""The base of every environment, in both data worlds (imports without torch).

:class:`Environment` holds what every environment shares: the parameters, settings,
dataset and protocol handler, and the batch arithmetic of seed 004
(:attr:`~Environment.steps_per_env_per_iteration`,
:attr:`~Environment.frames_per_batch`, :attr:`~Environment.num_envs`,
:attr:`~Environment.batch_size`). The tensor world's
:class:`~nip_core.scenario.environment.TensorDictEnvironment` and the text world's
:class:`~nip_core.text.environment.TextEnvironment` subclass it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property
from typing import TYPE_CHECKING, Any

from nip_core.errors import NipConfigError
from nip_core.seeding import derive_seed

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler
    from nip_core.scenario.data_base import Dataset

SEED_RANGE = 2**16
"""Per-episode seeds are drawn from ``[0, SEED_RANGE)``."""

NUM_DECISIONS = 3
"""Decisions: 0 = reject, 1 = accept, 2 = continue."""


def environment_seed(seed: int, split: str) -> int:
    """The seed of an environment's generator, from the run seed and the split."""
    return derive_seed(int(seed), f"environment/{split}")


class Environment(ABC):
    """Base class of every environment, in both data worlds.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters.
    settings : ExperimentSettings
        The run's settings (``device``).
    dataset : Dataset
        The datapoints episodes are drawn from.
    protocol_handler : ProtocolHandler
        The interaction protocol.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        dataset: Dataset,
        protocol_handler: ProtocolHandler,
    ):
        self.hyper_params = hyper_params
        self.settings = settings
        self.dataset = dataset
        self.protocol_handler = protocol_handler

    # ----------------------------------------------------------------------------------
    # Protocol shortcuts

    @property
    def agent_names(self) -> list[str]:
        """The protocol's agents, in the order of the agent dimension."""
        return list(self.protocol_handler.agent_names)

    @property
    def num_agents(self) -> int:
        """The number of agents."""
        return len(self.agent_names)

    @property
    def max_message_rounds(self) -> int:
        """The protocol's maximum number of rounds."""
        return int(self.protocol_handler.max_message_rounds)

    @property
    def num_message_channels(self) -> int:
        """The protocol's number of message channels."""
        return len(self.protocol_handler.message_channel_names)

    @property
    def split(self) -> str:
        """The split of the dataset the environment draws from."""
        return self.dataset.split

    # ----------------------------------------------------------------------------------
    # Batch arithmetic

    def _rl_param(self, name: str) -> Any:
        return getattr(getattr(self.hyper_params, "rl", None), name, None)

    @cached_property
    def steps_per_env_per_iteration(self) -> int:
        """Steps each batched environment takes per training iteration.

        ``rl.steps_per_env_per_iteration`` when set, else ``max_message_rounds``.
        It must divide ``rl.frames_per_batch`` (when that is set).
        """
        configured = self._rl_param("steps_per_env_per_iteration")
        steps = int(configured) if configured is not None else self.max_message_rounds
        from nip_core.parameters.trainers import frames_per_batch_problem

        source = (
            "rl.steps_per_env_per_iteration"
            if configured is not None
            else "the protocol's max_message_rounds"
        )
        problem = frames_per_batch_problem(
            self._rl_param("frames_per_batch"),
            steps,
            f"{source} ({steps})",
            suggest_steps_setting=configured is None,
        )
        if problem is not None:
            raise NipConfigError(problem)
        return steps

    @property
    def frames_per_batch(self) -> int:
        """Frames (environment steps) collected per training iteration.

        ``rl.frames_per_batch`` when set; else ``rl.rollouts_per_iteration`` ×
        :attr:`steps_per_env_per_iteration`; else one rollout per datapoint.
        """
        frames = self._rl_param("frames_per_batch")
        if frames is not None:
            return int(frames)
        rollouts = self._rl_param("rollouts_per_iteration")
        if rollouts is None:
            rollouts = len(self.dataset)
        return int(rollouts) * self.steps_per_env_per_iteration

    @property
    def num_envs(self) -> int:
        """The number of batched environments: frames per batch ÷ steps per env."""
        return self.frames_per_batch // self.steps_per_env_per_iteration

    @property
    def batch_size(self) -> tuple[int, ...]:
        """The batch size of the environment state: ``(num_envs,)``."""
        return (self.num_envs,)

    # ----------------------------------------------------------------------------------
    # Interaction

    @abstractmethod
    def reset(self, env_state: Any = None, **kwargs: Any) -> Any:
        """Start fresh episodes (all, or those marked done in ``env_state``)."""

    @abstractmethod
    def step(self, env_state: Any) -> Any:
        """Play one round: apply the agents' actions and compute rewards and dones."""
