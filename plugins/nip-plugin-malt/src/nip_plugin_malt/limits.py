"""How many turns an iteration's response trees may need, against
``pure_text_malt.max_generations_per_iteration`` (imports without torch).

:func:`config_problems` is the trainer's check before anything runs (its
``TrainerSpec.config_problems``): for protocols whose schedule depends on the round
only, the count is exact from the schedule, the same as the trainer's own check at
start; for seed-dependent schedules (``merlin_arthur``) it is left to the trainer,
which counts the datapoints' episodes.
"""

from __future__ import annotations

from typing import Any

from nip_core.errors import ConfigProblem

__all__ = ["config_problems", "generation_limit_problem"]


def generation_limit_problem(
    bound: int,
    limit: int,
    *,
    rollouts: int,
    num_responses: int,
    rounds: int,
    iteration: int | None = None,
) -> ConfigProblem:
    """The problem of trees that could need ``bound`` turns, over ``limit``."""
    which = "the response trees" + (
        f" of iteration {iteration}" if iteration is not None else " of an iteration"
    )
    return ConfigProblem(
        "pure_text_malt.max_generations_per_iteration",
        f"{which} could need up to {bound:,} generated turns ({rollouts} trees of "
        f"{num_responses} responses per turn over up to {rounds} rounds), more than "
        f"the limit of {limit:,}; lower pure_text_malt.num_responses_per_timestep, "
        "the protocol's max_message_rounds or text_rl.rollouts_per_iteration, or "
        "raise pure_text_malt.max_generations_per_iteration (null: no limit)",
        limit,
    )


def config_problems(hyper_params: Any, handler: Any) -> list[ConfigProblem]:
    """The generation limit, checked from the protocol's schedule (see the module
    docstring)."""
    from nip_core.parameters.agents import RandomAgentParameters
    from nip_core.protocols.handler import DeterministicProtocolHandler

    limit = hyper_params.pure_text_malt.max_generations_per_iteration
    if limit is None or not isinstance(handler, DeterministicProtocolHandler):
        return []
    agents = hyper_params.agents
    model_agents = [
        name
        for name in handler.agent_names
        if not isinstance(agents.get(name), RandomAgentParameters)
    ]
    rollouts = int(hyper_params.text_rl.rollouts_per_iteration)
    k = int(hyper_params.pure_text_malt.num_responses_per_timestep)
    rounds = int(handler.max_message_rounds)
    bound = sum(
        rollouts
        * sum(1 for a in model_agents if handler.can_agent_be_active_any_channel(a, r))
        * k ** (r + 1)
        for r in range(rounds)
    )
    if bound <= limit:
        return []
    return [
        generation_limit_problem(
            bound, limit, rollouts=rollouts, num_responses=k, rounds=rounds
        )
    ]
