"""Checks of the tensor RL trainers' settings that need the protocol's agents, asked
before anything runs (``TrainerSpec.config_problems``) and again when the optimizer
is built.

This module imports without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from nip_core.errors import ConfigProblem

__all__ = [
    "critic_trainer_config_problems",
    "factor_pair",
    "reinforce_config_problems",
    "shared_body_factor_problems",
    "shared_body_problems",
]


def factor_pair(factors: Any) -> tuple[float, float]:
    """``(actor, critic)`` of learning-rate factors: ``None`` (1, 1), a number
    (both), a mapping or an ``LrFactors``."""
    if factors is None:
        return 1.0, 1.0
    if isinstance(factors, Mapping):
        return float(factors.get("actor", 1.0)), float(factors.get("critic", 1.0))
    if isinstance(factors, int | float):
        return float(factors), float(factors)
    return float(factors.actor), float(factors.critic)


def shared_body_factor_problems(
    agent_name: str, agent_params: Any, body_lr_factor: Any = None
) -> list[ConfigProblem]:
    """A shared body has one LR: its actor and critic factors must agree.

    Checks ``agent_lr_factor`` and the body factors (the agent's ``body_lr_factor``,
    or ``body_lr_factor`` when given, i.e. ``rl.body_lr_factor_override``), and
    returns every disagreement with its dotted path.
    """
    if body_lr_factor is None:
        body_path = f"agents.{agent_name}.body_lr_factor"
        body_lr_factor = getattr(agent_params, "body_lr_factor", None)
    else:
        body_path = "rl.body_lr_factor_override"
    problems = []
    pairs = [
        (
            f"agents.{agent_name}.agent_lr_factor",
            getattr(agent_params, "agent_lr_factor", None),
        ),
        (body_path, body_lr_factor),
    ]
    # a scenario's own factors of parts of the body (graph isomorphism's
    # gnn_lr_factor): the shared body trains them at one rate too
    pairs += [
        (f"agents.{agent_name}.{field}", factors)
        for field, factors in _other_lr_factors(agent_params)
    ]
    for path, factors in pairs:
        actor, critic = factor_pair(factors)
        if actor != critic:
            problems.append(
                ConfigProblem(
                    path,
                    "the actor and critic factors must agree when the body is shared "
                    "(rl.use_shared_body); make them equal or set "
                    "rl.use_shared_body=false",
                    {"actor": actor, "critic": critic},
                )
            )
    return problems


def _other_lr_factors(agent_params: Any) -> list[tuple[str, Any]]:
    """The agent's learning-rate factor pairs besides ``agent_lr_factor`` and
    ``body_lr_factor``: fields holding an ``LrFactors``."""
    from nip_core.parameters.agents import LrFactors

    if not attrs.has(type(agent_params)):
        return []
    return [
        (field.name, getattr(agent_params, field.name))
        for field in attrs.fields(type(agent_params))
        if field.name not in ("agent_lr_factor", "body_lr_factor")
        and isinstance(getattr(agent_params, field.name, None), LrFactors)
    ]


def shared_body_problems(
    hyper_params: Any, protocol_handler: Any, *, uses_critic: bool = True
) -> list[ConfigProblem]:
    """Agents whose actor and critic learning-rate factors differ while their
    policy and value heads share one body (``rl.use_shared_body`` with a critic):
    one body trains at one learning rate.

    Random agents (their bodies are not trained) and agents whose parameters come
    from a checkpoint (known only once it is read) are left to the optimizer's
    check when it is built. ``rl.body_lr_factor_override`` is every agent's, so a
    problem with it is given once.
    """
    rl = getattr(hyper_params, "rl", None)
    if rl is None or not uses_critic or not rl.use_shared_body:
        return []
    problems: list[ConfigProblem] = []
    for name in protocol_handler.agent_names:
        params = hyper_params.agents.get(name, None)
        if (
            params is None
            or getattr(params, "is_random", False)
            or getattr(params, "load_checkpoint_and_parameters", False)
        ):
            continue
        for problem in shared_body_factor_problems(
            name, params, rl.body_lr_factor_override
        ):
            if all(problem.path != known.path for known in problems):
                problems.append(problem)
    return problems


def critic_trainer_config_problems(
    hyper_params: Any, protocol_handler: Any
) -> list[ConfigProblem]:
    """``TrainerSpec.config_problems`` of an RL trainer that always has a critic
    (``vanilla_ppo``): :func:`shared_body_problems`."""
    return shared_body_problems(hyper_params, protocol_handler)


def reinforce_config_problems(
    hyper_params: Any, protocol_handler: Any
) -> list[ConfigProblem]:
    """``TrainerSpec.config_problems`` of ``reinforce``, which has a critic with
    ``reinforce.use_advantage_and_critic``: :func:`shared_body_problems`."""
    return shared_body_problems(
        hyper_params,
        protocol_handler,
        uses_critic=bool(hyper_params.reinforce.use_advantage_and_critic),
    )
