"""The scenario instance: every built component of one experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler
    from nip_core.scenario.agents import (
        Agent,
        CombinedBody,
        CombinedPolicyHead,
        CombinedSoloHead,
        CombinedValueHead,
    )
    from nip_core.scenario.data import Dataset
    from nip_core.scenario.environment import Environment


@dataclass
class ScenarioInstance:
    """The components of an experiment, built from its parameters.

    Parameters
    ----------
    train_dataset, test_dataset : Dataset
        The datasets (the test one is the validation split when
        ``test_dataset_split`` says so).
    protocol_handler : ProtocolHandler
        The interaction protocol.
    agents : dict[str, Agent]
        Every agent, by name, in the protocol's agent order.
    train_environment, test_environment : Environment | None
        The environments (RL trainers).
    combined_body : CombinedBody | None
        Every agent's shared body, stacked (RL and solo trainers).
    combined_policy_body, combined_value_body : CombinedBody | None
        The separate bodies, when ``rl.use_shared_body`` is off.
    combined_policy_head, combined_value_head, combined_solo_head : ... | None
        The heads, stacked across agents.
    shared_model_groups : dict[str, SharedModelGroup]
        Text world: groups of whole agents sharing one model, by group name.
    text_backends : dict[str, TextBackend]
        Text world: the backends the groups use, by backend name.
    """

    train_dataset: Dataset
    test_dataset: Dataset
    protocol_handler: ProtocolHandler
    agents: dict[str, Agent]
    train_environment: Environment | None = None
    test_environment: Environment | None = None
    combined_body: CombinedBody | None = None
    combined_policy_body: CombinedBody | None = None
    combined_value_body: CombinedBody | None = None
    combined_policy_head: CombinedPolicyHead | None = None
    combined_value_head: CombinedValueHead | None = None
    combined_solo_head: CombinedSoloHead | None = None
    shared_model_groups: dict[str, Any] = field(default_factory=dict)
    text_backends: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Release what the components hold open (text backends' connections)."""
        for backend in self.text_backends.values():
            backend.close()

    @property
    def agent_names(self) -> list[str]:
        """The agents' names, in the protocol's order."""
        return list(self.protocol_handler.agent_names)
