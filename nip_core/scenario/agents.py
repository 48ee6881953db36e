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

Modules
-------
The parts are in :mod:`nip_core.scenario.parts`, the combined parts in
:mod:`nip_core.scenario.combined`; every name is importable from here too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nip_core.scenario.combined import (
    CombinedAgentPart,
    CombinedBody,
    CombinedPolicyHead,
    CombinedSoloHead,
    CombinedTensorDictAgentPart,
    CombinedValueHead,
    agent_view,
    combine_parts,
)
from nip_core.scenario.parts import (
    DEFAULT_CHANNEL_DIMS,
    AgentBody,
    AgentHead,
    AgentPart,
    AgentPolicyHead,
    AgentValueHead,
    ConstantAgentValueHead,
    RandomAgentPolicyHead,
    SoloAgentHead,
    TensorDictAgentPartMixin,
    TensorDictDummyAgentPartMixin,
    WholeAgent,
)

__all__ = [
    "Agent",
    "AgentBody",
    "AgentHead",
    "AgentPart",
    "AgentPolicyHead",
    "AgentValueHead",
    "CombinedAgentPart",
    "CombinedBody",
    "CombinedPolicyHead",
    "CombinedSoloHead",
    "CombinedTensorDictAgentPart",
    "CombinedValueHead",
    "ConstantAgentValueHead",
    "DEFAULT_CHANNEL_DIMS",
    "PART_ROLES",
    "RandomAgentPolicyHead",
    "SoloAgentHead",
    "TensorDictAgentPartMixin",
    "TensorDictDummyAgentPartMixin",
    "WholeAgent",
    "agent_view",
    "combine_parts",
]

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
