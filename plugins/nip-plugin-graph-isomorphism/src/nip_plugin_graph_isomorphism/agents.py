"""Agent parts of the graph isomorphism scenario: a GIN + transformer body, MLP heads.

The networks are in :mod:`nip_plugin_graph_isomorphism.networks`; the classes here
give them the core's TensorDict agent-part interface (:mod:`nip_core.scenario.agents`).

Body outputs (agent level):

- ``"graph_level_repr"`` ``(*batch, d_transformer)``: the pair;
- ``"node_level_repr"`` ``(*batch, 2, n, d_transformer)``: every node of both graphs.

The node features are the message history at each node (every round, channel and
position), the latest message, and, for the second GIN of the dual-GNN option,
nothing. The combined parts zero the channels an agent cannot see, so one body
serves every protocol.

``use_manual_architecture`` (protocol ``nip``) replaces the learned networks by a
hand-built algorithm: the verifier runs Weisfeiler–Lehman refinement on both graphs
and accepts iff the colour histograms agree after every round (always right on
isomorphic pairs, and on every non-isomorphic pair WL separates, which is every
non-isomorphic pair of the generated datasets); a manual prover sends a uniformly
random valid node. Their heads have no learned weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.scenario import keys as K
from nip_core.scenario.agents import (
    AgentBody,
    AgentPolicyHead,
    TensorDictAgentPartMixin,
)
from nip_core.scenario.heads import RepresentationSoloHead, RepresentationValueHead
from nip_core.scenario.parts import uses_batch_statistics
from tensordict import TensorDict, TensorDictBase
from tensordict.utils import NestedKey
from torch import Tensor, nn

from nip_plugin_graph_isomorphism.networks import GraphIsomorphismEncoder, RoundMlp, mlp
from nip_plugin_graph_isomorphism.wl import graph_hashes

GRAPH_LEVEL_REPR = "graph_level_repr"
NODE_LEVEL_REPR = "node_level_repr"
BODY_OUT_KEYS: tuple[str, ...] = (GRAPH_LEVEL_REPR, NODE_LEVEL_REPR)

MANUAL_DECISION_LOGIT = 10.0
"""Logit margin of the manual verifier's verdict."""


class GraphIsomorphismAgentPartMixin(TensorDictAgentPartMixin):
    """Shapes every graph isomorphism part needs."""

    @property
    def d_representation(self) -> int:
        """The width of the body's outputs: the agent's ``d_transformer``. A random
        agent has none (its heads read nothing): its zeros take the width of the
        other agents' outputs, which the combined body stacks them with."""
        width = getattr(self.agent_params, "d_transformer", None)
        if width is not None:
            return int(width)
        agents = self.hyper_params.agents
        for name in self.protocol_handler.agent_names:
            width = getattr(agents[name], "d_transformer", None)
            if width is not None:
                return int(width)
        from nip_plugin_graph_isomorphism.agent_parameters import (
            GraphIsomorphismAgentParameters,
        )

        return int(GraphIsomorphismAgentParameters().d_transformer)

    @property
    def is_manual(self) -> bool:
        return bool(getattr(self.agent_params, "use_manual_architecture", False))


def _check_manual(hyper_params: Any, agent_name: str) -> None:
    protocol = str(getattr(hyper_params, "interaction_protocol", "nip"))
    if protocol != "nip":
        raise NipConfigError(
            ConfigProblem(
                f"agents.{agent_name}.use_manual_architecture",
                "the manual graph isomorphism architecture exists for the nip "
                f"protocol only, not {protocol!r}",
                True,
            )
        )


class GraphIsomorphismAgentBody(GraphIsomorphismAgentPartMixin, AgentBody):
    """The GIN + transformer body (see :class:`~.networks.GraphIsomorphismEncoder`).

    Reads ``adjacency``, ``node_mask``, ``message_history`` and ``message`` (zeros
    when absent, as in supervised training on dataset batches). Random agents'
    bodies have no network and output zeros.
    """

    agent_level_out_keys: ClassVar[tuple[NestedKey, ...]] = BODY_OUT_KEYS
    env_level_in_keys: ClassVar[tuple[NestedKey, ...]] = (
        "adjacency",
        "node_mask",
        K.MESSAGE_HISTORY,
        K.MESSAGE,
    )

    def __init__(
        self, hyper_params: Any, settings: Any, agent_name: str, protocol_handler: Any
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        params = self.agent_params
        self.encoder: GraphIsomorphismEncoder | None = None
        self.is_random_agent = bool(getattr(params, "is_random", False))
        if self.is_random_agent or self.is_manual:
            if self.is_manual:
                _check_manual(hyper_params, agent_name)
            self.dummy_parameter = nn.Parameter(
                torch.zeros((), device=self._default_device)
            )
            return
        if getattr(params, "normalize_message_history", False):
            raise NipConfigError(
                ConfigProblem(
                    f"agents.{agent_name}.normalize_message_history",
                    "is not available in the graph isomorphism scenario",
                    True,
                )
            )
        channels, rounds = self.num_message_channels, self.max_message_rounds
        d_in = (rounds + 1) * channels * self.message_size
        self.encoder = GraphIsomorphismEncoder(d_in, params).to(self._default_device)
        self.init_weights()

    def parameter_groups(
        self, role: str = "body"
    ) -> list[tuple[str, list[nn.Parameter], float]]:
        """The GNN's parameters get ``gnn_lr_factor`` on top: its critic factor
        for a value body, its actor factor otherwise (a shared body trains with the
        actor's rates)."""
        if self.encoder is None:
            return super().parameter_groups(role)
        gnn = self.encoder.gnn_parameters()
        gnn_ids = {id(p) for p in gnn}
        rest = [p for p in self.parameters() if id(p) not in gnn_ids]
        factors = self.agent_params.gnn_lr_factor
        factor = float(factors.critic if role == "value_body" else factors.actor)
        return [("gnn", gnn, factor), ("", rest, 1.0)]

    @property
    def concurrent_safe(self) -> bool:
        """True unless training with paired noise or transformer dropout (both draw
        random numbers): then the body runs beside the other agents' bodies on
        ``run.agent_threads`` threads."""
        if self.encoder is None or not self.training:
            return True
        params = self.agent_params
        return float(params.noise_sigma) == 0 and float(params.transformer_dropout) == 0

    @property
    def rows_independent(self) -> bool:
        """The GIN and the transformer treat each graph pair apart: true unless
        the pooled representation is batch-normalised with the batch's
        statistics (``use_batch_norm`` in training) or the forward draws random
        numbers (as :attr:`concurrent_safe`)."""
        return self.concurrent_safe and not uses_batch_statistics(self)

    def node_features(self, tensordict: TensorDictBase) -> Tensor:
        """``(*batch, 2, n, (R + 1) * C * P)``: history and latest message per node."""
        node_mask = tensordict.get("node_mask")
        batch = node_mask.shape[:-2]
        n = node_mask.shape[-1]
        channels, rounds, size = (
            self.num_message_channels,
            self.max_message_rounds,
            self.message_size,
        )
        history = tensordict.get(K.MESSAGE_HISTORY, None)
        if history is None:
            history = torch.zeros(
                *batch, rounds, channels, size, 2, n, device=node_mask.device
            )
        message = tensordict.get(K.MESSAGE, None)
        if message is None:
            message = torch.zeros(*batch, channels, size, 2, n, device=node_mask.device)
        history = history.reshape(*batch, rounds * channels * size, 2, n)
        message = message.reshape(*batch, channels * size, 2, n)
        features = torch.cat((history, message), dim=-3).to(torch.float32)
        return features.movedim(-3, -1)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch = tensordict.batch_size
        node_mask = tensordict.get("node_mask").to(torch.bool)
        n = node_mask.shape[-1]
        d = self.d_representation
        if self.encoder is None:
            zero = self.dummy_parameter * 0
            graph_level = torch.zeros(*batch, d, device=node_mask.device) + zero
            if self.is_manual:
                graph_level = graph_level.clone()
                graph_level[..., 0] = _wl_equal(tensordict.get("adjacency"), node_mask)
            return TensorDict(
                {
                    GRAPH_LEVEL_REPR: graph_level,
                    NODE_LEVEL_REPR: torch.zeros(
                        *batch, 2, n, d, device=node_mask.device
                    )
                    + zero,
                },
                batch_size=batch,
            )
        features = self.node_features(tensordict)
        flat = features.reshape(-1, 2, n, features.shape[-1])
        adjacency = tensordict.get("adjacency").reshape(-1, 2, n, n)
        wants_nodes = self.needs_output(NODE_LEVEL_REPR)
        graph_level, node_level = self.encoder(
            flat, adjacency, node_mask.reshape(-1, 2, n), node_level=wants_nodes
        )
        out = {GRAPH_LEVEL_REPR: graph_level.reshape(*batch, d)}
        if wants_nodes:
            out[NODE_LEVEL_REPR] = node_level.reshape(*batch, 2, n, d)
        return TensorDict(out, batch_size=batch)


def _wl_equal(adjacency: Tensor, node_mask: Tensor) -> Tensor:
    """1.0 where WL does not separate the two graphs in 5 rounds, else 0.0."""
    batch = node_mask.shape[:-2]
    n = node_mask.shape[-1]
    adjacency = adjacency.reshape(-1, 2, n, n)
    mask = node_mask.reshape(-1, 2, n)
    hashes = graph_hashes(adjacency.flatten(0, 1), mask.flatten(0, 1), num_rounds=5)
    hashes = hashes.reshape(-1, 2, 5)
    sizes_equal = mask[:, 0].sum(-1) == mask[:, 1].sum(-1)
    equal = (hashes[:, 0] == hashes[:, 1]).all(-1) & sizes_equal
    return equal.to(torch.float32).reshape(batch)


class GraphIsomorphismAgentPolicyHead(GraphIsomorphismAgentPartMixin, AgentPolicyHead):
    """Node selector, and the decider for agents that decide.

    Outputs ``main_message_logits`` ``(*batch, channel, position, 2 n)`` (zeros on
    channels the agent cannot see; invalid nodes are masked by the policy),
    ``decision_logits`` ``(*batch, 3)`` (zeros without a decider) and, with the linear
    message space, ``linear_message_logits``.
    """

    agent_level_in_keys: ClassVar[tuple[NestedKey, ...]] = BODY_OUT_KEYS

    def __init__(
        self, hyper_params: Any, settings: Any, agent_name: str, protocol_handler: Any
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        params = self.agent_params
        d = self.d_representation
        self.node_selector: nn.Module | None = None
        self.decider: RoundMlp | None = None
        self.linear_message_selector: nn.Module | None = None
        if self.is_manual:
            self.dummy_parameter = nn.Parameter(
                torch.zeros((), device=self._default_device)
            )
            return
        self.node_selector = mlp(
            d,
            params.d_node_selector,
            self.num_visible_channels * self.message_size,
            params.num_node_selector_layers,
            params.activation_function,
        )
        if self.has_decider:
            self.decider = RoundMlp(
                d,
                params.d_decider,
                3,
                params.num_decider_layers,
                params.activation_function,
                num_rounds=self.round_one_hot_size
                if params.include_round_in_decider
                else None,
            )
        if self.include_linear_message_space:
            self.linear_message_selector = mlp(
                d,
                params.d_linear_message_selector,
                self.num_visible_channels
                * self.message_size
                * self.d_linear_message_space,
                params.num_linear_message_selector_layers,
                params.activation_function,
            )
        self.to(self._default_device)
        self.init_weights()

    @property
    def concurrent_safe(self) -> bool:
        """MLPs: no random numbers, nothing shared (the head may run in its
        body's tasks on ``run.agent_threads`` threads)."""
        return True

    @property
    def rows_independent(self) -> bool:
        """MLPs on each row's representation: the head may run on the rows where
        the agent's choices count alone (``counted_rows_only``)."""
        return True

    @property
    def env_level_in_keys(self) -> tuple[NestedKey, ...]:  # type: ignore[override]
        if self.decider is not None and self.decider.num_rounds is not None:
            return (K.ROUND,)
        return ()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        batch = tensordict.batch_size
        graph_level = tensordict.get(GRAPH_LEVEL_REPR)
        node_level = tensordict.get(NODE_LEVEL_REPR)  # (*batch, 2, n, d)
        n = node_level.shape[-2]
        nb = len(batch)
        if self.node_selector is None:
            zero = self.dummy_parameter * 0
            logits = (
                graph_level.new_zeros(
                    *batch, self.num_message_channels, self.message_size, 2 * n
                )
                + zero
            )
            out = {K.MAIN_MESSAGE_LOGITS: logits}
            if self.has_decider:
                equal = graph_level[..., 0]
                margin = MANUAL_DECISION_LOGIT
                accept = torch.where(equal > 0.5, margin, -margin)
                out[K.DECISION_LOGITS] = (
                    torch.stack((-accept, accept, torch.full_like(accept, -margin)), -1)
                    + zero
                )
            else:
                out[K.DECISION_LOGITS] = graph_level.new_zeros(*batch, 3) + zero
            if self.include_linear_message_space:
                out[K.LINEAR_MESSAGE_LOGITS] = (
                    graph_level.new_zeros(
                        *batch,
                        self.num_message_channels,
                        self.message_size,
                        self.d_linear_message_space,
                    )
                    + zero
                )
            return TensorDict(out, batch_size=batch)
        node_logits = self.node_selector(node_level)  # (*batch, 2, n, C_vis * P)
        node_logits = node_logits.reshape(
            *batch, 2 * n, self.num_visible_channels, self.message_size
        )
        visible = node_logits.movedim(nb, -1)  # (*batch, C_vis, P, 2n)
        out = {K.MAIN_MESSAGE_LOGITS: self.scatter_to_channels(visible, nb)}
        if self.decider is not None:
            out[K.DECISION_LOGITS] = self.decider(
                graph_level, tensordict.get(K.ROUND, None)
            )
        else:
            out[K.DECISION_LOGITS] = graph_level.new_zeros(*batch, 3)
        if self.linear_message_selector is not None:
            linear = self.linear_message_selector(graph_level).unflatten(
                -1,
                (
                    self.num_visible_channels,
                    self.message_size,
                    self.d_linear_message_space,
                ),
            )
            out[K.LINEAR_MESSAGE_LOGITS] = self.scatter_to_channels(linear, nb)
        return TensorDict(out, batch_size=batch)


class GraphIsomorphismAgentValueHead(
    GraphIsomorphismAgentPartMixin, RepresentationValueHead
):
    """An MLP on the pair representation (and the round): ``value`` ``(*batch,)``
    (see :class:`~nip_core.scenario.heads.RepresentationValueHead`)."""

    representation_key: ClassVar[NestedKey] = GRAPH_LEVEL_REPR


class GraphIsomorphismSoloAgentHead(
    GraphIsomorphismAgentPartMixin, RepresentationSoloHead
):
    """Two logits (label 0, label 1) from the pair representation (``solo_agent``;
    see :class:`~nip_core.scenario.heads.RepresentationSoloHead`)."""

    representation_key: ClassVar[NestedKey] = GRAPH_LEVEL_REPR
