"""The synthetic scenario's agent parts: a small MLP body and linear heads."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import torch
import torch.nn.functional as F
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import nn

from nip_core.scenario import keys as K
from nip_core.scenario.agents import (
    AgentBody,
    AgentPolicyHead,
    AgentValueHead,
    SoloAgentHead,
)
from nip_core.testing.synthetic.parameters import SyntheticAgentParameters

REPRESENTATION = "body_representation"
"""The body's output: float ``(*batch, d_representation)``, the same width for every
agent so that the combined body can stack it."""


def agent_setting(agent_params: Any, name: str) -> Any:
    """A synthetic agent parameter, or its default for agents without it (random
    agents have plain :class:`~nip_core.parameters.RandomAgentParameters` but still
    need a body for the combined body to stack)."""
    if hasattr(agent_params, name):
        return getattr(agent_params, name)
    return attrs.fields_dict(SyntheticAgentParameters)[name].default


class SyntheticAgentBody(AgentBody):
    """An MLP over ``x``, the message history (visible channels) and the round."""

    env_level_in_keys: ClassVar[tuple[NestedKey, ...]] = (
        "x",
        K.MESSAGE_HISTORY,
        K.ROUND,
    )
    agent_level_out_keys: ClassVar[tuple[NestedKey, ...]] = (REPRESENTATION,)

    def __init__(self, hyper_params, settings, agent_name, protocol_handler):
        super().__init__(hyper_params, settings, agent_name, protocol_handler)
        num_bits = int(hyper_params.synthetic.num_bits)
        history_size = (
            self.max_message_rounds
            * self.num_message_channels
            * int(hyper_params.message_size)
            * num_bits
        )
        self.include_round = bool(agent_setting(self.agent_params, "include_round"))
        d_in = num_bits + history_size
        if self.include_round:
            d_in += self.max_message_rounds + 1
        d_hidden = int(agent_setting(self.agent_params, "d_hidden"))
        layers: list[nn.Module] = []
        for _ in range(int(agent_setting(self.agent_params, "num_layers"))):
            layers += [nn.Linear(d_in, d_hidden), nn.Tanh()]
            d_in = d_hidden
        layers += [nn.Linear(d_in, int(hyper_params.d_representation)), nn.Tanh()]
        self.mlp = nn.Sequential(*layers).to(self._default_device)
        self.init_weights()

    @property
    def concurrent_safe(self) -> bool:
        """A plain MLP: no random numbers, nothing shared."""
        return True

    @property
    def rows_independent(self) -> bool:
        """Each row apart."""
        return True

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch_shape = tensordict.batch_size
        features = [
            tensordict.get("x").float(),
            tensordict.get(K.MESSAGE_HISTORY).reshape(*batch_shape, -1).float(),
        ]
        if self.include_round:
            round_id = tensordict.get(K.ROUND).clamp(max=self.max_message_rounds)
            features.append(F.one_hot(round_id, self.max_message_rounds + 1).float())
        representation = self.mlp(torch.cat(features, dim=-1))
        return TensorDict({REPRESENTATION: representation}, batch_size=batch_shape)


class SyntheticAgentPolicyHead(AgentPolicyHead):
    """Linear maps from the representation to message and decision logits."""

    agent_level_in_keys: ClassVar[tuple[NestedKey, ...]] = (REPRESENTATION,)

    def __init__(self, hyper_params, settings, agent_name, protocol_handler):
        super().__init__(hyper_params, settings, agent_name, protocol_handler)
        d_representation = int(hyper_params.d_representation)
        self.message_shape = (
            self.num_message_channels,
            int(hyper_params.message_size),
            int(hyper_params.synthetic.num_bits),
        )
        device = self._default_device
        self.message_selector = nn.Linear(
            d_representation,
            self.message_shape[0] * self.message_shape[1] * self.message_shape[2],
        ).to(device)
        self.decider = (
            nn.Linear(d_representation, 3).to(device) if self.has_decider else None
        )
        self.linear_message_selector = None
        if hyper_params.include_linear_message_space:
            self.d_linear = int(hyper_params.d_linear_message_space)
            self.linear_message_selector = nn.Linear(
                d_representation,
                self.message_shape[0] * self.message_shape[1] * self.d_linear,
            ).to(device)
        self.init_weights()

    @property
    def concurrent_safe(self) -> bool:
        """Linear maps: no random numbers, nothing shared."""
        return True

    @property
    def rows_independent(self) -> bool:
        """Each row apart."""
        return True

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch_shape = tensordict.batch_size
        representation = tensordict.get(REPRESENTATION)
        out = TensorDict(
            {
                K.MAIN_MESSAGE_LOGITS: self.message_selector(representation).reshape(
                    *batch_shape, *self.message_shape
                )
            },
            batch_size=batch_shape,
        )
        if self.decider is not None:
            out[K.DECISION_LOGITS] = self.decider(representation)
        else:
            # Agents without a decider never have their decisions counted.
            out[K.DECISION_LOGITS] = torch.zeros(
                (*batch_shape, 3), device=representation.device
            )
        if self.linear_message_selector is not None:
            out[K.LINEAR_MESSAGE_LOGITS] = self.linear_message_selector(
                representation
            ).reshape(*batch_shape, *self.message_shape[:2], self.d_linear)
        return out


class SyntheticAgentValueHead(AgentValueHead):
    """A linear map from the representation to the value."""

    agent_level_in_keys: ClassVar[tuple[NestedKey, ...]] = (REPRESENTATION,)

    def __init__(self, hyper_params, settings, agent_name, protocol_handler):
        super().__init__(hyper_params, settings, agent_name, protocol_handler)
        self.value = nn.Linear(int(hyper_params.d_representation), 1).to(
            self._default_device
        )
        self.init_weights()

    @property
    def concurrent_safe(self) -> bool:
        """Linear maps: no random numbers, nothing shared."""
        return True

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        value = self.value(tensordict.get(REPRESENTATION)).squeeze(-1)
        return TensorDict({K.VALUE: value}, batch_size=tensordict.batch_size)


class SyntheticSoloAgentHead(SoloAgentHead):
    """A linear map from the representation to the label's logits."""

    agent_level_in_keys: ClassVar[tuple[NestedKey, ...]] = (REPRESENTATION,)

    def __init__(self, hyper_params, settings, agent_name, protocol_handler):
        super().__init__(hyper_params, settings, agent_name, protocol_handler)
        self.classifier = nn.Linear(int(hyper_params.d_representation), 2).to(
            self._default_device
        )
        self.init_weights()

    @property
    def concurrent_safe(self) -> bool:
        """Linear maps: no random numbers, nothing shared."""
        return True

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        logits = self.classifier(tensordict.get(REPRESENTATION))
        return TensorDict({K.SOLO_LOGITS: logits}, batch_size=tensordict.batch_size)
