"""The torch-free base of agent parts: :class:`AgentPart` and :class:`WholeAgent`.

Tensor-world parts (:mod:`nip_core.scenario.agents`) and text-world whole agents
(:mod:`nip_core.text.agents`) both subclass :class:`AgentPart`; this module imports
without torch so the text world does not need it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler


class AgentPart(ABC):  # noqa: B024 - a base to subclass, nothing to implement
    """Base class of every agent part, tensor or text.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters; ``hyper_params.agents[agent_name]`` are the
        agent's own.
    settings : ExperimentSettings
        The run's settings (``device``).
    agent_name : str
        The agent this part belongs to.
    protocol_handler : ProtocolHandler
        The interaction protocol.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        agent_name: str,
        protocol_handler: ProtocolHandler,
    ):
        super().__init__()
        if agent_name not in protocol_handler.agent_names:
            raise ValueError(
                f"agent {agent_name!r} is not in protocol "
                f"{type(protocol_handler).__name__} (agents: "
                f"{', '.join(protocol_handler.agent_names)})"
            )
        self.hyper_params = hyper_params
        self.settings = settings
        self.agent_name = agent_name
        self.protocol_handler = protocol_handler
        self.agent_params = hyper_params.agents[agent_name]
        self.agent_index: int = list(protocol_handler.agent_names).index(agent_name)

    @property
    def is_prover(self) -> bool:
        """Whether the agent is a prover."""
        return self.agent_name in self.protocol_handler.prover_names

    @property
    def is_verifier(self) -> bool:
        """Whether the agent is a verifier."""
        return self.agent_name in self.protocol_handler.verifier_names

    @property
    def has_decider(self) -> bool:
        """Whether the agent decides (the protocol's ``decider_names``)."""
        deciders = getattr(self.protocol_handler, "decider_names", None)
        if deciders is None:
            deciders = self.protocol_handler.verifier_names
        return self.agent_name in deciders

    @property
    def max_message_rounds(self) -> int:
        """The protocol's maximum number of rounds."""
        return int(self.protocol_handler.max_message_rounds)

    @property
    def round_one_hot_size(self) -> int:
        """Size of the round's one-hot encoding: ``max_message_rounds + 1``.

        The round after the last one is observed at the end of an episode, by value
        estimates of the final state.
        """
        return self.max_message_rounds + 1

    @property
    def num_message_channels(self) -> int:
        """The protocol's number of message channels."""
        return len(self.protocol_handler.message_channel_names)

    @property
    def visible_message_channel_names(self) -> list[str]:
        """The channels this agent sees, in channel order."""
        return list(self.protocol_handler.get_agent_visible_channels(self.agent_name))

    @property
    def visible_message_channel_indices(self) -> list[int]:
        """The indices of the channels this agent sees."""
        channels = list(self.protocol_handler.message_channel_names)
        return [channels.index(name) for name in self.visible_message_channel_names]

    @property
    def required_pretrained_models(self) -> tuple[str, ...]:
        """Pretrained models whose embeddings this part reads (added to datasets)."""
        return ()


class WholeAgent(AgentPart):
    """An agent that is one piece (text-world agents backed by a model).

    Subclasses implement :meth:`forward`, which takes the environment state and the
    environment and returns the agent's actions.
    """

    @abstractmethod
    def forward(self, data: Any, environment: Any) -> Any:
        """Act on the environment state ``data``."""
