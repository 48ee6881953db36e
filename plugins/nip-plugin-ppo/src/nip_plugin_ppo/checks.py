"""Checks of the PPO plugin's settings that need the protocol: asked before anything
runs (``TrainerSpec.config_problems``), and again by the trainer.

This module imports without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nip_core.errors import ConfigProblem
from nip_core.trainers.checks import critic_trainer_config_problems

__all__ = ["spg_config_problems", "stackelberg_sequence_problems"]


def stackelberg_sequence_problems(
    sequence: Sequence[Sequence[str]] | None, agent_names: Sequence[str]
) -> list[ConfigProblem]:
    """Problems with ``spg.stackelberg_sequence`` for a protocol's agents: it must
    name every agent exactly once (``None``: the protocol's default order)."""
    if sequence is None:
        return []
    agents = list(agent_names)
    named = [name for group in sequence for name in group]
    unknown = sorted(set(named) - set(agents))
    missing = sorted(set(agents) - set(named))
    repeated = sorted({name for name in named if named.count(name) > 1})
    if not (unknown or missing or repeated):
        return []
    details = []
    if unknown:
        details.append(f"unknown agents {unknown}")
    if missing:
        details.append(f"missing agents {missing}")
    if repeated:
        details.append(f"agents named twice {repeated}")
    return [
        ConfigProblem(
            "spg.stackelberg_sequence",
            "must name every agent of the protocol exactly once ("
            + "; ".join(details)
            + f"); the agents are {agents}",
            [list(group) for group in sequence],
        )
    ]


def spg_config_problems(
    hyper_params: Any, protocol_handler: Any
) -> list[ConfigProblem]:
    """The ``spg`` trainer's check: the Stackelberg sequence against the
    protocol's agents, and a shared body's learning-rate factors (spg has a
    critic)."""
    return stackelberg_sequence_problems(
        hyper_params.spg.stackelberg_sequence, protocol_handler.agent_names
    ) + critic_trainer_config_problems(hyper_params, protocol_handler)
