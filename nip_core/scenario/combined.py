"""Combined parts: one kind of part gathered across every agent, stacked along an
agent dimension (see :mod:`nip_core.scenario.agents`)."""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torch import nn

from nip_core.scenario import keys as K
from nip_core.scenario.parts import (
    AgentBody,
    AgentPart,
    AgentPolicyHead,
    AgentValueHead,
    SoloAgentHead,
    TensorDictAgentPartMixin,
)

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler
    from nip_core.scenario.agents import Agent

# --------------------------------------------------------------------------------------
# Combined parts
# --------------------------------------------------------------------------------------


class CombinedAgentPart(ABC):  # noqa: B024 - a base to subclass
    """Base of modules that gather one kind of part across every agent.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters.
    settings : ExperimentSettings
        The run's settings.
    protocol_handler : ProtocolHandler
        The interaction protocol; its ``agent_names`` fix the agent order.
    parts : Mapping[str, AgentPart]
        One part per agent of the protocol.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        parts: Mapping[str, AgentPart],
    ):
        super().__init__()
        self.hyper_params = hyper_params
        self.settings = settings
        self.protocol_handler = protocol_handler
        self.agent_names: list[str] = list(protocol_handler.agent_names)
        if set(parts) != set(self.agent_names):
            raise ValueError(
                f"{type(self).__name__} needs one part per agent of the protocol "
                f"({', '.join(self.agent_names)}), got {', '.join(parts) or 'none'}"
            )
        self._part_order = list(self.agent_names)

    @property
    def num_agents(self) -> int:
        return len(self.agent_names)


def agent_view(
    tensordict: TensorDictBase,
    part: TensorDictAgentPartMixin,
    agent_index: int,
    visible_channels: torch.Tensor | None,
) -> TensorDict:
    """The TensorDict one agent's part reads (see the module docstring).

    Parameters
    ----------
    tensordict : TensorDictBase
        The environment TensorDict (batch ``(*batch,)``).
    part : TensorDictAgentPartMixin
        The part; its ``env_level_in_keys`` and ``agent_level_in_keys`` are read.
    agent_index : int
        The agent's index along the agent dimension.
    visible_channels : torch.Tensor | None
        bool ``(C,)``: the channels the agent sees; ``None`` leaves channels alone.
    """
    batch_dims = tensordict.batch_dims
    view = TensorDict({}, batch_size=tensordict.batch_size, device=tensordict.device)
    for key in part.env_level_in_keys:
        value = tensordict.get(key)
        name = key if isinstance(key, str) else None
        if (
            visible_channels is not None
            and name in part.channel_dims
            and isinstance(value, torch.Tensor)
        ):
            dim = batch_dims + part.channel_dims[name]
            shape = [1] * value.ndim
            shape[dim] = value.shape[dim]
            mask = visible_channels.to(value.device).reshape(shape)
            value = (
                value * mask.to(value.dtype)
                if value.is_floating_point()
                else (torch.where(mask, value, torch.zeros_like(value)))
            )
        view.set(key, value)
    for key in part.agent_level_in_keys:
        full_key = (K.AGENTS, *((key,) if isinstance(key, str) else key))
        value = tensordict.get(full_key)
        if isinstance(value, torch.Tensor):
            value = value.select(batch_dims, agent_index)
        else:
            value = value[(slice(None),) * batch_dims + (agent_index,)]
        if view.get(key, None) is not None:
            raise KeyError(
                f"{type(part).__name__} reads {key!r} both at the environment level "
                f"and at the agent level; rename one of them"
            )
        view.set(key, value)
    return view


class CombinedTensorDictAgentPart(CombinedAgentPart, TensorDictModuleBase):
    """Runs one tensor part per agent and stacks the outputs along the agent dimension.

    The in-keys are the parts' environment-level keys and ``("agents", key)`` for
    their agent-level keys; the out-keys are ``("agents", key)`` for the parts'
    out-keys, which must be the same for every agent.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        parts: Mapping[str, TensorDictAgentPartMixin],
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            protocol_handler=protocol_handler,
            parts=parts,
        )
        out_keys = {name: tuple(parts[name].out_keys) for name in self.agent_names}
        first = out_keys[self.agent_names[0]]
        for name, keys in out_keys.items():
            if set(keys) != set(first):
                raise ValueError(
                    f"every agent's part must produce the same keys to be stacked: "
                    f"{self.agent_names[0]!r} produces {list(first)}, {name!r} "
                    f"produces {list(keys)}"
                )
        self._part_out_keys = list(first)
        self.parts = nn.ModuleDict({name: parts[name] for name in self.agent_names})

    @property
    def in_keys(self) -> list[NestedKey]:  # type: ignore[override]
        keys: list[NestedKey] = []
        for part in self.parts.values():
            for key in part.env_level_in_keys:
                key = unravel_key(key)
                if key not in keys:
                    keys.append(key)
            for key in part.agent_level_in_keys:
                key = unravel_key((K.AGENTS, key))
                if key not in keys:
                    keys.append(key)
        return keys

    @property
    def out_keys(self) -> list[NestedKey]:  # type: ignore[override]
        return [unravel_key((K.AGENTS, key)) for key in self._part_out_keys]

    def visibility_mask(self, agent_index: int) -> torch.Tensor:
        """bool ``(C,)``: the channels agent ``agent_index`` sees."""
        return self.protocol_handler.agent_channel_visibility_mask[agent_index]

    def _stack_output(
        self, key: NestedKey, values: list[torch.Tensor], dim: int
    ) -> torch.Tensor:
        """Stack one out-key's per-agent values along the agent dimension."""
        return torch.stack(values, dim=dim)

    def _view_masks(self) -> list[torch.Tensor | None]:
        """Per agent, its visibility mask, or ``None`` when it sees every channel.

        Computed once: the protocol's visibility never changes, and an agent that
        sees everything needs no masking (no copy of its inputs, no device sync).
        """
        masks = self.__dict__.get("_view_masks_cache")
        if masks is None:
            masks = []
            for index in range(self.num_agents):
                mask = self.visibility_mask(index)
                masks.append(None if bool(mask.all()) else mask)
            self.__dict__["_view_masks_cache"] = masks
        return masks

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch_dims = tensordict.batch_dims
        outputs = []
        masks = self._view_masks()
        for index, name in enumerate(self.agent_names):
            part = self.parts[name]
            view = agent_view(tensordict, part, index, masks[index])
            outputs.append(part(view))
        stacked = {
            key: self._stack_output(
                key, [out.get(key) for out in outputs], dim=batch_dims
            )
            for key in self._part_out_keys
        }
        agents = tensordict.get(K.AGENTS, None)
        if agents is None:
            agents = TensorDict(
                {},
                batch_size=(*tensordict.batch_size, self.num_agents),
                device=tensordict.device,
            )
            tensordict.set(K.AGENTS, agents)
        for key, value in stacked.items():
            tensordict.set(
                (K.AGENTS, *((key,) if isinstance(key, str) else key)), value
            )
        return tensordict


class CombinedBody(CombinedTensorDictAgentPart):
    """Every agent's body, stacked: writes ``("agents", <body out key>)``."""

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        bodies: Mapping[str, AgentBody],
    ):
        super().__init__(hyper_params, settings, protocol_handler, bodies)

    @property
    def bodies(self) -> dict[str, AgentBody]:
        return dict(self.parts.items())


class CombinedPolicyHead(CombinedTensorDictAgentPart):
    """Every agent's policy head, stacked: writes ``("agents", "main_message_logits")``
    ``(*batch, A, C, P, N)`` and ``("agents", "decision_logits")`` ``(*batch, A, 3)``.

    Turn it into an actor with
    :func:`nip_core.scenario.distributions.build_policy_actor`.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        policy_heads: Mapping[str, AgentPolicyHead],
    ):
        super().__init__(hyper_params, settings, protocol_handler, policy_heads)

    @property
    def policy_heads(self) -> dict[str, AgentPolicyHead]:
        return dict(self.parts.items())


class CombinedValueHead(CombinedTensorDictAgentPart):
    """Every agent's value head, stacked: writes ``("agents", "value")``
    ``(*batch, A, 1)`` (the trailing 1 matches the shape of ``("agents", "reward")``,
    as TorchRL's value estimators expect)."""

    def _stack_output(
        self, key: NestedKey, values: list[torch.Tensor], dim: int
    ) -> torch.Tensor:
        stacked = torch.stack(values, dim=dim)
        if key == K.VALUE:
            stacked = stacked.unsqueeze(-1)
        return stacked

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        value_heads: Mapping[str, AgentValueHead],
    ):
        super().__init__(hyper_params, settings, protocol_handler, value_heads)

    @property
    def value_heads(self) -> dict[str, AgentValueHead]:
        return dict(self.parts.items())


class CombinedSoloHead(CombinedTensorDictAgentPart):
    """Every agent's solo head, stacked: writes ``("agents", "solo_logits")``
    ``(*batch, A, 2)``."""

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler,
        solo_heads: Mapping[str, SoloAgentHead],
    ):
        super().__init__(hyper_params, settings, protocol_handler, solo_heads)

    @property
    def solo_heads(self) -> dict[str, SoloAgentHead]:
        return dict(self.parts.items())


def combine_parts(
    agents: Mapping[str, Agent],
    role: str,
    hyper_params: Any,
    settings: Any,
    protocol_handler: ProtocolHandler,
) -> CombinedTensorDictAgentPart:
    """Combine one role's parts across agents (``"body"``, ``"policy_head"``, ...).

    ``"policy_body"`` and ``"value_body"`` give a :class:`CombinedBody` too.
    """
    classes: dict[str, type[CombinedTensorDictAgentPart]] = {
        "body": CombinedBody,
        "policy_body": CombinedBody,
        "value_body": CombinedBody,
        "policy_head": CombinedPolicyHead,
        "value_head": CombinedValueHead,
        "solo_head": CombinedSoloHead,
    }
    if role not in classes:
        raise ValueError(f"unknown part role {role!r}; roles: {', '.join(classes)}")
    parts = {}
    for name in protocol_handler.agent_names:
        part = getattr(agents[name], role)
        if part is None:
            raise ValueError(f"agent {name!r} has no {role}")
        parts[name] = part
    return classes[role](hyper_params, settings, protocol_handler, parts)
