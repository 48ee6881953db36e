"""Agents: their parts, the :class:`Agent` holding them, and combined parts.

Tensor-world agents are made of parts. A *body* turns the observation into a
representation; *heads* turn the representation into a policy (message and decision
logits), a value, or a solo prediction of the label. Text-world agents are one
:class:`WholeAgent`. Either way, an :class:`Agent` dataclass holds what an agent has.

Every tensor part is a :class:`~tensordict.nn.TensorDictModuleBase` that works on an
*agent view* of the environment's TensorDict (batch ``(*batch,)``): the keys in its
``env_level_in_keys`` (read from the root of the environment TensorDict) and its
``agent_level_in_keys`` (read from ``("agents", key)`` at the agent's index along the
agent dimension), all at the root of the view. Its forward returns a TensorDict with
batch ``(*batch,)`` holding its ``agent_level_out_keys``.

The combined parts (:class:`CombinedBody`, :class:`CombinedPolicyHead`,
:class:`CombinedValueHead`, :class:`CombinedSoloHead`) run every agent's part on its
own view and stack the outputs along a new agent dimension under ``"agents"``
(``(*batch, num_agents, ...)``), so TorchRL's collectors, value estimators and losses
see one actor and one critic.

Channel visibility
------------------
Building an agent's view, the combined parts zero the message channels the agent
cannot see (``protocol_handler.agent_channel_visibility_mask``) in every key of the
part's ``channel_dims`` (by default ``message_history``, ``message`` and the linear
message keys). Every agent's input therefore has the same shape, and an agent never
reads a channel it cannot see.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import NestedKey, unravel_key
from torch import nn

from nip_core.scenario import keys as K
from nip_core.scenario.agent_base import AgentPart, WholeAgent  # noqa: F401 (re-exported)

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


# --------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------

PART_ROLES: tuple[str, ...] = (
    "body",
    "policy_body",
    "value_body",
    "policy_head",
    "value_head",
    "solo_head",
    "whole",
)
"""The fields of :class:`Agent` that hold parts."""


@dataclass
class Agent:
    """Everything one agent is made of.

    Parameters
    ----------
    agent_name : str
        The agent's name.
    body : AgentBody | None
        The body shared by the heads.
    policy_body, value_body : AgentBody | None
        Separate bodies of the policy and value heads (``rl.use_shared_body`` off);
        then ``body`` is ``None``.
    policy_head, value_head, solo_head : AgentHead | None
        The heads.
    whole : WholeAgent | None
        The whole agent (text world); no other part then.
    agent_params : AgentParameters | None
        The agent's parameters (for the learning-rate factors).
    """

    agent_name: str
    body: AgentBody | None = None
    policy_body: AgentBody | None = None
    value_body: AgentBody | None = None
    policy_head: AgentPolicyHead | None = None
    value_head: AgentValueHead | None = None
    solo_head: SoloAgentHead | None = None
    whole: WholeAgent | None = None
    agent_params: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problem = self._structure_problem()
        if problem is not None:
            raise ValueError(f"agent {self.agent_name!r}: {problem}")
        if self.agent_params is None:
            for part in self.parts.values():
                self.agent_params = getattr(part, "agent_params", None)
                break

    def _structure_problem(self) -> str | None:
        if self.whole is not None:
            others = [
                role for role in PART_ROLES[:-1] if getattr(self, role) is not None
            ]
            if others:
                return f"a whole agent has no other parts, got {', '.join(others)}"
            return None
        if self.body is not None and (
            self.policy_body is not None or self.value_body is not None
        ):
            return "has both a shared body and a policy or value body"
        if self.body is None and self.policy_body is None:
            return "needs a body (or a policy body), or to be a whole agent"
        if self.policy_head is None and self.solo_head is None:
            return "needs a policy head or a solo head"
        if self.value_head is not None and self.policy_head is None:
            return "has a value head but no policy head"
        if self.value_body is not None and self.value_head is None:
            return "has a value body but no value head"
        if (
            self.value_head is not None
            and self.body is None
            and self.value_body is None
        ):
            return "has a value head but no body for it (body or value_body)"
        return None

    @property
    def parts(self) -> dict[str, AgentPart]:
        """The parts the agent has, by role (``"body"``, ``"policy_head"``, ...)."""
        return {
            role: getattr(self, role)
            for role in PART_ROLES
            if getattr(self, role) is not None
        }

    @property
    def is_whole(self) -> bool:
        """Whether the agent is one whole part (text world)."""
        return self.whole is not None

    @property
    def shared_body(self) -> bool:
        """Whether the heads share one body."""
        return self.body is not None

    def actor_roles(self) -> tuple[str, ...]:
        """The roles whose parameters the policy (actor) trains."""
        roles = ("body",) if self.shared_body else ("policy_body",)
        return tuple(
            r
            for r in (*roles, "policy_head", "solo_head")
            if getattr(self, r) is not None
        )

    def critic_roles(self) -> tuple[str, ...]:
        """The roles whose parameters only the value function (critic) trains."""
        return tuple(
            r for r in ("value_body", "value_head") if getattr(self, r) is not None
        )

    def named_parameters_by_part(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Each tensor part's named parameters, by role (each parameter once)."""
        seen: set[int] = set()
        result: dict[str, list[tuple[str, nn.Parameter]]] = {}
        for role, part in self.parts.items():
            if not isinstance(part, nn.Module):
                continue
            named = []
            for name, param in part.named_parameters():
                if id(param) in seen:
                    continue
                seen.add(id(param))
                named.append((name, param))
            result[role] = named
        return result

    def parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter of every tensor part, once."""
        for named in self.named_parameters_by_part().values():
            for _, param in named:
                yield param

    def get_model_parameter_dicts(
        self,
        base_lr: float,
        *,
        use_critic: bool = True,
        body_lr_factor_override: Any = None,
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups with the learning-rate rules applied.

        Agent LR = ``base_lr`` × ``agent_lr_factor.{actor,critic}``; body LR = agent
        LR × ``body_lr_factor.{actor,critic}`` (or ``body_lr_factor_override``'s),
        times each body group's multiplier (:meth:`TensorDictAgentPartMixin.
        parameter_groups`); heads use the agent LR. A shared body trains with the
        actor's rates, and then the actor and critic factors must agree. Every
        trainable parameter is in exactly one group; groups with LR 0 are left out
        and their parameters frozen (``requires_grad = False``).

        Parameters
        ----------
        base_lr : float
            The trainer's base learning rate (``rl.lr``).
        use_critic : bool
            Whether the value head (and value body) are trained.
        body_lr_factor_override : LrFactors | bool | None
            Used instead of the agent's ``body_lr_factor`` (``rl.
            body_lr_factor_override``); ``True`` means factors of 1.

        Returns
        -------
        list[dict]
            ``{"params": [...], "lr": float, "name": "<agent>.<role>[.<suffix>]"}``.
        """
        from nip_core.trainers.optim import build_param_groups

        roles = list(self.actor_roles())
        if use_critic:
            roles += list(self.critic_roles())
        groups = build_param_groups(
            {self.agent_name: self},
            {self.agent_name: self.agent_params},
            base_lr,
            shared_body=self.shared_body and use_critic and self.value_head is not None,
            body_lr_factor_override=body_lr_factor_override is True,
            body_lr_factor=(
                None
                if body_lr_factor_override in (None, False, True)
                else body_lr_factor_override
            ),
            parts=roles,
        )
        return [
            {"params": g["params"], "lr": g["lr"], "name": g["name"]} for g in groups
        ]

    def state_dict(self) -> dict[str, Any]:
        """The tensor parts' state dicts, by role."""
        return {
            role: part.state_dict()
            for role, part in self.parts.items()
            if isinstance(part, nn.Module)
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (every role must be present)."""
        missing = [
            role
            for role, part in self.parts.items()
            if isinstance(part, nn.Module) and role not in state
        ]
        if missing:
            raise KeyError(
                f"agent {self.agent_name!r}: the saved state has no "
                f"{', '.join(missing)}"
            )
        for role, part in self.parts.items():
            if isinstance(part, nn.Module):
                part.load_state_dict(state[role])

    def train(self, mode: bool = True) -> Agent:
        """Set every tensor part to training (or evaluation) mode."""
        for part in self.parts.values():
            if isinstance(part, nn.Module):
                part.train(mode)
        return self

    def eval(self) -> Agent:
        """Set every tensor part to evaluation mode."""
        return self.train(False)


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


def iter_parts(agents: Iterable[Agent]) -> Iterator[tuple[str, str, AgentPart]]:
    """``(agent name, role, part)`` for every part of every agent."""
    for agent in agents:
        for f in fields(agent):
            if f.name in PART_ROLES and getattr(agent, f.name) is not None:
                yield agent.agent_name, f.name, getattr(agent, f.name)
