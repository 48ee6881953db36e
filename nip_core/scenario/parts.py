"""Agent parts: bodies, heads and whole agents (see :mod:`nip_core.scenario.agents`
for how they fit together)."""

from __future__ import annotations

import itertools
import weakref
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torch import nn

from nip_core.scenario import keys as K
from nip_core.scenario.agent_base import (  # noqa: F401 (re-exported)
    AgentPart,
    WholeAgent,
)

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler

DEFAULT_CHANNEL_DIMS: dict[str, int] = {
    K.MESSAGE_HISTORY: 1,
    K.MESSAGE: 0,
    K.LINEAR_MESSAGE_HISTORY: 1,
    K.LINEAR_MESSAGE: 0,
}
"""Environment keys with a channel dimension, and its position after the batch
dimensions."""


_BATCH_NORMS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, ...]] = (
    weakref.WeakKeyDictionary()
)


def uses_batch_statistics(module: nn.Module) -> bool:
    """Whether ``module`` normalises with statistics of the batch it is given now:
    a batch norm layer in training mode, or one that keeps no running statistics
    (its outputs for one row depend on the other rows).

    Asked on every forward pass of the update: the module's batch norm layers are
    found once (its structure is taken as fixed once it has been asked), their
    mode and statistics read each time.
    """
    norms = _BATCH_NORMS.get(module)
    if norms is None:
        norms = tuple(
            m
            for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        )
        _BATCH_NORMS[module] = norms
    return any(m.training or m.running_mean is None for m in norms)


# --------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------


class TensorDictAgentPartMixin(AgentPart, TensorDictModuleBase):
    """Base of tensor-world parts: a TensorDict module working on an agent view.

    Class attributes
    ----------------
    env_level_in_keys : tuple[NestedKey, ...]
        Keys read from the root of the environment TensorDict.
    agent_level_in_keys : tuple[NestedKey, ...]
        Keys read from ``("agents", key)`` at this agent's index.
    agent_level_out_keys : tuple[NestedKey, ...]
        Keys the part produces (written to ``("agents", key)`` by combined parts).
    channel_dims : Mapping[str, int]
        Environment keys with a channel dimension (position after the batch
        dimensions); combined parts zero the channels the agent cannot see in them.

    Subclasses whose keys depend on the parameters override the
    ``env_level_in_keys`` / ``agent_level_in_keys`` / ``agent_level_out_keys``
    with properties.

    :attr:`concurrent_safe` (``False`` unless a part says otherwise) lets combined
    parts run this part on its own thread beside the other agents' parts
    (``run.agent_threads``, :mod:`nip_core.scenario.concurrency`).
    """

    env_level_in_keys: ClassVar[tuple[NestedKey, ...]] = ()
    agent_level_in_keys: ClassVar[tuple[NestedKey, ...]] = ()
    agent_level_out_keys: ClassVar[tuple[NestedKey, ...]] = ()
    channel_dims: ClassVar[Mapping[str, int]] = DEFAULT_CHANNEL_DIMS

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        agent_name: str,
        protocol_handler: ProtocolHandler,
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        self._default_device = torch.device(getattr(settings, "device", "cpu") or "cpu")

    @property
    def in_keys(self) -> list[NestedKey]:  # type: ignore[override]
        """The agent-view keys the part reads (environment level, then agent level)."""
        return [
            unravel_key(k) for k in (*self.env_level_in_keys, *self.agent_level_in_keys)
        ]

    @property
    def out_keys(self) -> list[NestedKey]:  # type: ignore[override]
        """The agent-view keys the part writes."""
        return [unravel_key(k) for k in self.agent_level_out_keys]

    @property
    def concurrent_safe(self) -> bool:
        """Whether this part's forward and backward may run on another thread at the
        same time as the other agents' parts (``run.agent_threads``).

        Say ``True`` only when, in its current mode, the forward draws no random
        numbers (dropout, noise, sampling: torch's generator is shared by every
        thread, so the draws would come in a varying order) and reads or writes no
        state outside the part itself. Sharing parameters between agents' parts is
        checked by the combined parts. ``False`` here, so a part nobody has
        checked runs one after the other as before.
        """
        return False

    @property
    def rows_independent(self) -> bool:
        """Whether, in its current mode, each batch row's outputs depend on that
        row's inputs alone, so the part may run on some of the rows and give them
        the outputs it gives them among all.

        The tensor trainers' update then runs a policy body and its head only on
        the rows where the agent's choices count (see
        :func:`~nip_core.scenario.combined.counted_rows_only`). Say ``True`` only
        when the forward draws no random numbers and mixes no rows: no batch
        statistics (batch norm in training mode: :func:`uses_batch_statistics`),
        no attention or pooling across the batch. ``False`` here, so a part
        nobody has checked runs on every row as before.
        """
        return False

    @property
    def device(self) -> torch.device:
        """The device of the part's parameters (the settings' device without any)."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.device
        return self._default_device

    @property
    def visible_message_channel_mask(self) -> torch.Tensor:
        """bool ``(C,)``: the channels this agent sees."""
        mask = self.protocol_handler.agent_channel_visibility_mask[self.agent_index]
        return mask.to(self.device)

    @property
    def num_visible_channels(self) -> int:
        """How many channels this agent sees."""
        return len(self.visible_message_channel_indices)

    @property
    def message_size(self) -> int:
        """Messages per channel per round (``hyper_params.message_size``)."""
        return int(getattr(self.hyper_params, "message_size", 1))

    @property
    def include_linear_message_space(self) -> bool:
        """Whether agents also send a message from the linear message space."""
        return bool(getattr(self.hyper_params, "include_linear_message_space", False))

    @property
    def d_linear_message_space(self) -> int:
        """Size of the linear message space (``d_linear_message_space``)."""
        return int(getattr(self.hyper_params, "d_linear_message_space", 2))

    def scatter_to_channels(
        self, visible: torch.Tensor, channel_dim: int
    ) -> torch.Tensor:
        """Place values over the visible channels into a tensor over all channels.

        ``visible`` has :attr:`num_visible_channels` entries along ``channel_dim``;
        the result has every channel there, zeros on those the agent cannot see. An
        agent that sees every channel gets ``visible`` back (no copy).
        """
        indices = self.visible_message_channel_indices
        if indices == list(range(self.num_message_channels)):
            return visible
        shape = list(visible.shape)
        shape[channel_dim] = self.num_message_channels
        index = torch.tensor(indices, device=visible.device)
        return visible.new_zeros(shape).index_copy(channel_dim, index, visible)

    def init_weights(self) -> None:
        """Initialise the weights as the agent's parameters say.

        With ``use_orthogonal_initialisation``, every weight matrix of a linear or
        convolutional layer gets an orthogonal initialisation with
        ``orthogonal_initialisation_gain`` and its bias zeros. Call it at the end of
        ``__init__``.
        """
        if not getattr(self.agent_params, "use_orthogonal_initialisation", False):
            return
        gain = float(getattr(self.agent_params, "orthogonal_initialisation_gain", 1.0))
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                nn.init.orthogonal_(module.weight, gain=gain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def parameter_groups(
        self, role: str = "body"
    ) -> list[tuple[str, list[nn.Parameter], float]]:
        """The part's parameters split into groups with learning-rate multipliers.

        Returns ``[(suffix, parameters, multiplier), ...]``; by default one group
        with every parameter and multiplier 1. A scenario overrides it to give a
        sub-network its own factor (graph isomorphism's GNN: ``gnn_lr_factor``).

        Parameters
        ----------
        role : str
            The role the part plays for its agent: ``"body"`` (shared by actor and
            critic), ``"policy_body"`` or ``"value_body"``, so actor and critic
            factors can differ.
        """
        return [("", list(self.parameters()), 1.0)]

    @abstractmethod
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """Compute the part's outputs from an agent view.

        Parameters
        ----------
        tensordict : TensorDictBase
            Batch ``(*batch,)``, holding the part's ``in_keys``.

        Returns
        -------
        TensorDictBase
            Batch ``(*batch,)``, holding the part's ``out_keys``.
        """


class TensorDictDummyAgentPartMixin(TensorDictAgentPartMixin):
    """A tensor part without learned weights (random policy, constant value).

    Holds one dummy parameter, so that the device can be read, optimisers get a
    non-empty group and losses have something to differentiate.
    """

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        agent_name: str,
        protocol_handler: ProtocolHandler,
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            agent_name=agent_name,
            protocol_handler=protocol_handler,
        )
        self.dummy_parameter = nn.Parameter(
            torch.zeros((), device=self._default_device)
        )


class AgentBody(TensorDictAgentPartMixin):
    """A body: turns an agent's observation into a representation for its heads.

    The factory tells a body which of its outputs its heads read
    (:meth:`restrict_outputs`): a value body feeds only the value head, which often
    reads less than the policy head does (graph isomorphism's value head reads the
    pair representation, not the node-level one). ``out_keys`` then lists only those,
    and :meth:`needs_output` lets ``forward`` skip the work of the others. A body that
    ignores it stays correct: outputs beyond ``out_keys`` are simply not collected.
    """

    _read_out_keys: tuple[NestedKey, ...] | None = None

    def restrict_outputs(self, keys: Iterable[NestedKey]) -> None:
        """Declare that only ``keys`` of the body's outputs are read.

        Parameters
        ----------
        keys : Iterable[NestedKey]
            A subset of ``agent_level_out_keys``.

        Raises
        ------
        ValueError
            When a key is not one of the body's outputs.
        """
        declared = [unravel_key(k) for k in self.agent_level_out_keys]
        keys = tuple(unravel_key(k) for k in keys)
        unknown = [k for k in keys if k not in declared]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} does not produce {unknown} "
                f"(its outputs: {declared})"
            )
        self._read_out_keys = keys

    def needs_output(self, key: NestedKey) -> bool:
        """Whether output ``key`` is read (every output is, unless restricted)."""
        return self._read_out_keys is None or unravel_key(key) in self._read_out_keys

    @property
    def out_keys(self) -> list[NestedKey]:  # type: ignore[override]
        return [k for k in super().out_keys if self.needs_output(k)]


class AgentHead(TensorDictAgentPartMixin):
    """A head: reads the body's representation."""


class AgentPolicyHead(AgentHead):
    """A policy head: message logits (and decision logits).

    Produces ``main_message_logits`` ``(*batch, C, P, N)`` and ``decision_logits``
    ``(*batch, 3)`` (and ``linear_message_logits`` ``(*batch, C, P, D)`` with the
    linear message space). Agents without a decider (:attr:`has_decider`) still
    output decision logits (constant ones will do): their decisions never count
    (see :mod:`nip_core.scenario.distributions`).
    """

    @property
    def agent_level_out_keys(self) -> tuple[NestedKey, ...]:  # type: ignore[override]
        out: tuple[NestedKey, ...] = (K.MAIN_MESSAGE_LOGITS, K.DECISION_LOGITS)
        if self.include_linear_message_space:
            out = (*out, K.LINEAR_MESSAGE_LOGITS)
        return out


class AgentValueHead(AgentHead):
    """A value head: ``value`` ``(*batch,)``, the agent's estimate of its return."""

    agent_level_out_keys: ClassVar[tuple[NestedKey, ...]] = (K.VALUE,)


class SoloAgentHead(AgentHead):
    """A solo head: ``solo_logits`` ``(*batch, 2)``, the agent's own guess of the label
    (logits of reject, accept), for supervised training in isolation."""

    agent_level_out_keys: ClassVar[tuple[NestedKey, ...]] = (K.SOLO_LOGITS,)


class RandomAgentPolicyHead(TensorDictDummyAgentPartMixin, AgentPolicyHead):
    """A policy head that acts uniformly at random.

    Every logit is 0, so the policy is uniform over the messages the scenario allows
    (``valid_message_mask``) and over the decisions. It reads the shape of the
    message space from ``("agents", "valid_message_mask")``, so one class serves
    every scenario.
    """

    agent_level_in_keys: ClassVar[tuple[NestedKey, ...]] = (K.VALID_MESSAGE_MASK,)

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        valid = tensordict.get(K.VALID_MESSAGE_MASK)
        batch_shape = tensordict.batch_size
        zero = self.dummy_parameter * 0
        out = TensorDict(
            {
                K.MAIN_MESSAGE_LOGITS: torch.zeros(
                    valid.shape, dtype=torch.float, device=valid.device
                )
                + zero,
                K.DECISION_LOGITS: torch.zeros(
                    (*batch_shape, 3), dtype=torch.float, device=valid.device
                )
                + zero,
            },
            batch_size=batch_shape,
        )
        if K.LINEAR_MESSAGE_LOGITS in self.agent_level_out_keys:
            d_linear = int(self.hyper_params.d_linear_message_space)
            out[K.LINEAR_MESSAGE_LOGITS] = (
                torch.zeros(
                    (*valid.shape[:-1], d_linear),
                    dtype=torch.float,
                    device=valid.device,
                )
                + zero
            )
        return out


class ConstantAgentValueHead(TensorDictDummyAgentPartMixin, AgentValueHead):
    """A value head whose estimate is a constant (:attr:`value`, 0 by default)."""

    env_level_in_keys: ClassVar[tuple[NestedKey, ...]] = (K.ROUND,)
    value: ClassVar[float] = 0.0

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        round_id = tensordict.get(K.ROUND)
        value = torch.full(
            tensordict.batch_size, float(self.value), device=round_id.device
        )
        return TensorDict(
            {K.VALUE: value + self.dummy_parameter * 0},
            batch_size=tensordict.batch_size,
        )
