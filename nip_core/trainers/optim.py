"""Optimizer parameter groups with the learning-rate rules of nip.

For an agent with parameters ``agent_params`` and a base learning rate ``lr``:

- agent LR (actor) = ``lr × agent_lr_factor.actor``; agent LR (critic) =
  ``lr × agent_lr_factor.critic``;
- body LR = agent LR × ``body_lr_factor`` (actor factors for the shared body and the
  policy body, critic factors for the value body). A shared body needs the actor and
  critic factors to agree;
- a body may scale parts of itself further through the scenario hook
  :meth:`~nip_core.scenario.agents.TensorDictAgentPartMixin.parameter_groups`
  (``[(suffix, parameters, multiplier), ...]``): graph isomorphism's GNN gets
  GNN LR = body LR × ``gnn_lr_factor``;
- heads use the agent LR (policy and solo heads: actor; value heads: critic).

Every trainable parameter ends up in exactly one group; each group records its
``agent`` and ``part`` so update schedules can skip an agent's groups. A group whose
LR is 0 is left out and its parameters frozen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nip_core.errors import NipConfigError
from nip_core.trainers.base import agent_part_modules
from nip_core.trainers.checks import factor_pair as _factor_pair
from nip_core.trainers.checks import shared_body_factor_problems

BODY_PARTS = ("body", "policy_body", "value_body")


def agent_learning_rates(
    agent_params: Any,
    base_lr: float,
    *,
    body_lr_factor_override: bool = False,
    body_lr_factor: Any = None,
) -> dict[str, float]:
    """The learning rate of each part role of an agent (before body extras).

    ``body_lr_factor`` (e.g. ``rl.body_lr_factor_override``) replaces the agent's
    own body factors when given; ``body_lr_factor_override`` sets them to 1.
    """
    agent_actor, agent_critic = _factor_pair(
        getattr(agent_params, "agent_lr_factor", None)
    )
    if body_lr_factor_override:
        body_actor, body_critic = 1.0, 1.0
    elif body_lr_factor is not None:
        body_actor, body_critic = _factor_pair(body_lr_factor)
    else:
        body_actor, body_critic = _factor_pair(
            getattr(agent_params, "body_lr_factor", None)
        )
    actor_lr = base_lr * agent_actor
    critic_lr = base_lr * agent_critic
    return {
        "body": actor_lr * body_actor,
        "policy_body": actor_lr * body_actor,
        "value_body": critic_lr * body_critic,
        "policy_head": actor_lr,
        "solo_head": actor_lr,
        "whole": actor_lr,
        "value_head": critic_lr,
    }


def check_shared_body_factors(
    agent_name: str, agent_params: Any, body_lr_factor: Any = None
) -> None:
    """Raise :class:`~nip_core.errors.NipConfigError` with the problems
    :func:`shared_body_factor_problems` finds."""
    problems = shared_body_factor_problems(agent_name, agent_params, body_lr_factor)
    if problems:
        raise NipConfigError(problems)


def build_param_groups(
    agents: Mapping[str, Any],
    agents_params: Mapping[str, Any] | Any,
    base_lr: float,
    *,
    shared_body: bool = True,
    body_lr_factor_override: bool = False,
    body_lr_factor: Any = None,
    parts: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for every agent and part.

    Parameters
    ----------
    agents : Mapping[str, Agent]
        Agents by name.
    agents_params : Mapping[str, AgentParameters]
        Their parameters (``hyper_params.agents``).
    base_lr : float
        ``rl.lr`` (or ``solo_agent.learning_rate``).
    shared_body : bool
        Whether ``body`` is shared by actor and critic (checks the factors agree).
    body_lr_factor_override : bool
        Use factor 1 for bodies (``solo_agent.body_lr_factor_override``).
    body_lr_factor : LrFactors, optional
        Body factors used instead of every agent's (``rl.body_lr_factor_override``).
    parts : Iterable[str], optional
        Only these part roles (default: all).

    Returns
    -------
    list[dict]
        ``{"params": [...], "lr": float, "agent": name, "part": role, "name": str}``
        per non-empty group.
    """
    wanted = set(parts) if parts is not None else None
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for agent_name, agent in agents.items():
        agent_params = agents_params[agent_name]
        lrs = agent_learning_rates(
            agent_params,
            base_lr,
            body_lr_factor_override=body_lr_factor_override,
            body_lr_factor=body_lr_factor,
        )
        modules = agent_part_modules(agent)
        if shared_body and "body" in modules and not body_lr_factor_override:
            if (wanted is None or "body" in wanted) and _has_trainable(modules["body"]):
                check_shared_body_factors(agent_name, agent_params, body_lr_factor)
        for part_name, module in modules.items():
            if wanted is not None and part_name not in wanted:
                continue
            part_lr = lrs.get(part_name, lrs["policy_head"])
            if part_name in BODY_PARTS and hasattr(module, "parameter_groups"):
                part_groups = module.parameter_groups(role=part_name)
            else:
                part_groups = [("", list(module.parameters()), 1.0)]
            for suffix, params, multiplier in part_groups:
                params = [p for p in params if p.requires_grad and id(p) not in seen]
                seen.update(id(p) for p in params)
                if not params:
                    continue
                lr = part_lr * float(multiplier)
                if lr == 0:
                    # A factor of 0 freezes: the parameters leave the optimizer
                    for p in params:
                        p.requires_grad_(False)
                    continue
                name = f"{agent_name}.{part_name}" + (f".{suffix}" if suffix else "")
                groups.append(
                    {
                        "params": params,
                        "lr": lr,
                        "agent": agent_name,
                        "part": part_name,
                        "name": name,
                    }
                )
    return groups


def _has_trainable(module: Any) -> bool:
    return any(p.requires_grad for p in module.parameters())
