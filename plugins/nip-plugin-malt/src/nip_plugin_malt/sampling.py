"""Sampling response trees, level by level, batched across nodes and datapoints.

:func:`sample_response_trees` starts one episode per datapoint (the roots) and plays
one round per level: every node of the level whose episode is not over is copied
into ``K`` children with their own sample keys (:func:`~nip_plugin_malt.tree.
branch_key`), a node whose episode is over into one (its padding), and the round is
played for all of them at once (:func:`nip_core.text.sampling.play_round`): the
turns of every node of every datapoint go to each backend in one batch. After the
last round the level's nodes are the trees' leaves.

A level is the unit of resumption: ``on_level(level, frontier)`` is called after
each, and ``start=(level, frontier)`` continues from a saved one.

:func:`tree_generation_bound` counts, before sampling, the most turns the trees can
need: ``Σ_r K^(r+1) × (model-backed agents active in round r)`` per datapoint, as if
no episode ended early, not counting retries of invalid responses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nip_core.text.rollouts import TextRollouts
from nip_core.text.sampling import expect_turns, play_round
from nip_plugin_malt.tree import BRANCH_SEPARATOR, branch_key

__all__ = ["expand_level", "sample_response_trees", "tree_generation_bound"]

Progress = Callable[[int], None]
OnLevel = Callable[[int, TextRollouts], None]


def _model_agent_indices(agents: Mapping[str, Any], names: Sequence[str]) -> list[int]:
    return [
        i
        for i, name in enumerate(names)
        if name in agents
        and getattr(getattr(agents[name], "whole", agents[name]), "uses_model", False)
    ]


def tree_generation_bound(
    environment: Any,
    agents: Mapping[str, Any],
    datapoint_indices: Sequence[int],
    *,
    iteration: int,
    num_responses: int,
) -> int:
    """The most turns the response trees of these datapoints can need (see the
    module docstring): model-backed agents only, no early end, no retries."""
    roots = environment.reset(datapoint_indices=datapoint_indices, iteration=iteration)
    model_agents = _model_agent_indices(agents, roots.agent_names)
    return _tree_turns(environment, roots, model_agents, 0, num_responses)


def _tree_turns(
    environment: Any,
    nodes: TextRollouts,
    agent_indices: Sequence[int],
    start_round: int,
    num_responses: int,
    as_of_round: int | None = None,
) -> int:
    """The turns of ``agent_indices`` in the subtrees of ``nodes`` from round
    ``start_round`` on, before the nodes are expanded for it: ``Σ_r K^(r -
    start_round + 1) × turns in round r``, by the schedule and the nodes' state
    after ``as_of_round`` (default ``start_round - 1``), as if no episode ended
    later."""
    turns = environment.scheduled_turns(nodes, start_round, as_of_round=as_of_round)
    per_round = turns[..., list(agent_indices)].sum(axis=(0, 2))
    return sum(
        int(count) * int(num_responses) ** (i + 1) for i, count in enumerate(per_round)
    )


def expand_level(
    frontier: TextRollouts, round_id: int, num_responses: int
) -> TextRollouts:
    """The nodes of round ``round_id`` before it is played: ``K`` copies of each
    node of the previous level whose episode is not over (each with its branch in
    its sample key), one copy of each that is."""
    over = frontier.done_before(round_id)
    copies = np.where(over, 1, int(num_responses))
    children = frontier.select(np.repeat(np.arange(frontier.batch_size), copies))
    keys = []
    for parent, count in enumerate(copies):
        key = str(frontier["sample_key"][parent])
        if over[parent]:
            keys.append(key)
        else:
            keys.extend(branch_key(key, k) for k in range(count))
    children["sample_key"] = np.asarray(keys, dtype=object)
    return children


def sample_response_trees(
    environment: Any,
    agents: Mapping[str, Any],
    datapoint_indices: Sequence[int],
    *,
    iteration: int,
    num_responses: int,
    start: tuple[int, TextRollouts] | None = None,
    on_level: OnLevel | None = None,
    progress: Progress | None = None,
) -> TextRollouts:
    """The leaves of one response tree per datapoint.

    Parameters
    ----------
    environment : TextEnvironment
        The training environment.
    agents : Mapping[str, Agent]
        Every agent of the protocol.
    datapoint_indices : Sequence[int]
        The trees' datapoints.
    iteration : int
        The training iteration (the roots' seeds and sample keys).
    num_responses : int
        ``K``: children per node (at least 2).
    start : tuple[int, TextRollouts], optional
        ``(level, frontier)`` saved by ``on_level``: continue from there.
    on_level : Callable[[int, TextRollouts], None], optional
        Called with each finished level and its nodes.
    progress : Callable[[int], None], optional
        Called with 1 per completed turn. One with an ``expect(n)`` method (a
        :class:`~nip_core.text.sampling.TurnProgress`) also hears every turn the
        trees can take, at the start, and the turns of each subtree an early end
        cuts off (:func:`~nip_core.text.sampling.expect_turns`).
    """
    if num_responses < 2:
        raise ValueError(
            f"a response tree needs at least 2 responses, got {num_responses}"
        )
    if start is None:
        level = 0
        frontier = environment.reset(
            datapoint_indices=datapoint_indices, iteration=iteration
        )
        for key in frontier["sample_key"]:
            if BRANCH_SEPARATOR in str(key):
                raise ValueError(
                    f"the root sample key {key!r} contains {BRANCH_SEPARATOR!r}, "
                    "which separates branch paths"
                )
    else:
        level, frontier = start
    # a progress that listens hears every turn the trees can take (all agents: a
    # random agent's turns are counted as played too), then the subtrees an
    # early end cuts off
    counting = getattr(progress, "expect", None) is not None
    everyone = list(range(frontier.num_agents))
    if counting and level < frontier.max_rounds:
        expect_turns(
            progress, _tree_turns(environment, frontier, everyone, level, num_responses)
        )
    while level < frontier.max_rounds:
        if frontier.done_before(level).all():
            environment.finish_padding(frontier, level - 1)
            level = frontier.max_rounds
        else:
            frontier = expand_level(frontier, level, num_responses)
            before = (
                _tree_turns(
                    environment,
                    frontier,
                    everyone,
                    level + 1,
                    num_responses,
                    as_of_round=level - 1,
                )
                if counting
                else 0
            )
            play_round(environment, agents, frontier, level, progress)
            if counting:
                after = _tree_turns(
                    environment,
                    frontier,
                    everyone,
                    level + 1,
                    num_responses,
                    as_of_round=level,
                )
                expect_turns(progress, after - before)
            level += 1
        if on_level is not None:
            on_level(level, frontier)
    return frontier
