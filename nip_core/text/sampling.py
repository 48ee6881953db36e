"""Sampling text rollouts: every agent's turns of a round as one batch of requests.

:func:`sample_rollouts` plays a batch of episodes round by round. In each round
(:func:`play_round`) the turns of every active agent in every episode go out
together (:func:`take_turns`): the requests of each backend in one
:meth:`~nip_core.text.backend.TextBackend.generate` call, at the backend's
concurrency, different backends at the same time. Invalid responses are asked again,
only those, with a new seed per attempt, up to the agent's
``num_invalid_generation_retries``; then the agent sends an empty message and makes
no decision. The round's messages and decisions are written into the rollouts and
the environment steps the protocol.

:func:`continue_rollouts` plays the remaining rounds of episodes that are partly
played (trainers that branch episodes, such as MALT, use it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from nip_core.text.agents import TextAgent, TurnContext, TurnOutput

if TYPE_CHECKING:
    from nip_core.text.environment import TextEnvironment
    from nip_core.text.rollouts import TextRollouts

__all__ = [
    "continue_rollouts",
    "play_round",
    "sample_rollouts",
    "take_turns",
    "write_turns",
]

Progress = Callable[[int], None]


def _whole(agent: Any) -> TextAgent:
    whole = getattr(agent, "whole", agent)
    if not isinstance(whole, TextAgent):
        raise TypeError(
            f"{type(whole).__name__} is not a text agent (a nip_core.text.agents."
            "TextAgent subclass)"
        )
    return whole


def turn_contexts(
    environment: TextEnvironment,
    agent_names: Sequence[str],
    rollouts: TextRollouts,
    round_id: int,
) -> list[tuple[str, TurnContext]]:
    """``(agent, context)`` of every turn of ``agent_names`` in ``round_id``."""
    active = environment.active_mask(rollouts, round_id)
    restriction = environment.decision_restriction(rollouts, round_id)
    targets = environment.prover_target_verdicts(rollouts)
    channels = rollouts.channel_names
    turns = []
    for b in range(rollouts.batch_size):
        for agent_name in agent_names:
            a = rollouts.agent_index(agent_name)
            speaks_on = tuple(c for i, c in enumerate(channels) if active[b, a, i])
            if not speaks_on:
                continue
            target = targets.get(agent_name)
            turns.append(
                (
                    agent_name,
                    TurnContext(
                        rollouts=rollouts,
                        episode=b,
                        round_id=round_id,
                        channels=speaks_on,
                        restriction=int(restriction[b]),
                        target_verdict=(
                            None if target is None or target[b] < 0 else int(target[b])
                        ),
                    ),
                )
            )
    return turns


def take_turns(
    environment: TextEnvironment,
    agents: Mapping[str, Any],
    rollouts: TextRollouts,
    round_id: int,
    progress: Progress | None = None,
) -> dict[tuple[int, str], TurnOutput]:
    """The turns of ``agents`` in ``round_id``, by ``(episode, agent name)``.

    Nothing is written into ``rollouts``.
    """
    wholes = {name: _whole(agent) for name, agent in agents.items()}
    turns = turn_contexts(environment, list(wholes), rollouts, round_id)
    outputs: dict[tuple[int, str], TurnOutput] = {}

    # (agent, context, chat, attempt, token limit hit, tokens so far)
    pending: list[tuple[str, TurnContext, list[dict[str, str]], int, bool, int]] = []
    for agent_name, context in turns:
        agent = wholes[agent_name]
        if not agent.uses_model:
            outputs[(context.episode, agent_name)] = agent.random_turn(context)  # type: ignore[attr-defined]
            if progress is not None:
                progress(1)
            continue
        pending.append((agent_name, context, agent.build_chat(context), 0, False, 0))

    while pending:
        by_backend: dict[Any, list[int]] = {}
        requests = []
        for i, (agent_name, context, chat, attempt, _, _) in enumerate(pending):
            agent = wholes[agent_name]
            requests.append(agent.generation_request(context, chat, attempt))
            by_backend.setdefault(agent.group.backend, []).append(i)
        results = _generate_by_backend(by_backend, requests)

        still_pending = []
        for (agent_name, context, chat, attempt, limit_hit, tokens), result in zip(
            pending, results, strict=True
        ):
            agent = wholes[agent_name]
            choice = result.choice
            limit_hit = limit_hit or choice.hit_token_limit
            if tokens >= 0 and result.completion_tokens is not None:
                tokens += int(result.completion_tokens)
            else:
                tokens = -1
            parsed = agent.interpret(context, choice)
            retries_allowed = int(agent.agent_params.num_invalid_generation_retries)
            if not parsed.valid and attempt < retries_allowed:
                still_pending.append(
                    (agent_name, context, chat, attempt + 1, limit_hit, tokens)
                )
                continue
            if parsed.valid:
                output = TurnOutput(
                    messages=dict(parsed.messages),
                    decision=parsed.decision,
                    raw_output=choice.text,
                    prompt=tuple(chat),
                    valid=True,
                    retries=attempt,
                    token_limit=limit_hit,
                    tokens=tokens,
                )
            else:
                # The original library's fallback: an empty message, no decision
                output = TurnOutput(
                    messages={channel: "" for channel in context.channels},
                    raw_output=choice.text,
                    prompt=tuple(chat),
                    valid=False,
                    retries=attempt,
                    token_limit=limit_hit,
                    tokens=tokens,
                )
            outputs[(context.episode, agent_name)] = output
            if progress is not None:
                progress(1)
        pending = still_pending
    return outputs


def _generate_by_backend(
    by_backend: Mapping[Any, list[int]], requests: Sequence[Any]
) -> list[Any]:
    """Send each backend its requests (different backends at the same time)."""
    results: list[Any] = [None] * len(requests)

    def run(backend: Any, indices: list[int]) -> None:
        out = backend.generate([requests[i] for i in indices])
        for i, result in zip(indices, out, strict=True):
            results[i] = result

    if len(by_backend) == 1:
        ((backend, indices),) = by_backend.items()
        run(backend, indices)
    else:
        with ThreadPoolExecutor(max_workers=len(by_backend)) as pool:
            futures = [pool.submit(run, b, idx) for b, idx in by_backend.items()]
            for future in futures:
                future.result()
    return results


def write_turns(
    rollouts: TextRollouts,
    round_id: int,
    outputs: Mapping[tuple[int, str], TurnOutput],
) -> None:
    """Write turns into round ``round_id`` of the rollouts."""
    for (b, agent_name), output in outputs.items():
        a = rollouts.agent_index(agent_name)
        rollouts["agents.active"][b, round_id, a] = True
        rollouts["agents.decision"][b, round_id, a] = output.decision
        rollouts["agents.raw_output"][b, round_id, a] = output.raw_output
        rollouts["agents.prompt"][b, round_id, a] = (
            None if output.prompt is None else [dict(m) for m in output.prompt]
        )
        rollouts["agents.valid_response"][b, round_id, a] = output.valid
        rollouts["agents.retries"][b, round_id, a] = output.retries
        rollouts["agents.token_limit"][b, round_id, a] = output.token_limit
        rollouts["agents.tokens"][b, round_id, a] = output.tokens
        for channel, text in output.messages.items():
            rollouts["agents.message"][
                b, round_id, a, rollouts.channel_index(channel)
            ] = text


def play_round(
    environment: TextEnvironment,
    agents: Mapping[str, Any],
    rollouts: TextRollouts,
    round_id: int,
    progress: Progress | None = None,
) -> TextRollouts:
    """Play round ``round_id`` of every episode: turns, then the protocol step."""
    outputs = take_turns(environment, agents, rollouts, round_id, progress)
    write_turns(rollouts, round_id, outputs)
    environment.step(rollouts, round_id)
    return rollouts


def continue_rollouts(
    environment: TextEnvironment,
    agents: Mapping[str, Any],
    rollouts: TextRollouts,
    start_round: int,
    stop_round: int | None = None,
    progress: Progress | None = None,
) -> TextRollouts:
    """Play rounds ``start_round`` up to ``stop_round`` (exclusive; default: the
    end) of partly played episodes; pad the rest when every episode is over."""
    stop = rollouts.max_rounds if stop_round is None else stop_round
    for round_id in range(start_round, stop):
        if rollouts.done_before(round_id).all():
            environment.finish_padding(rollouts, round_id - 1)
            break
        play_round(environment, agents, rollouts, round_id, progress)
    return rollouts


def sample_rollouts(
    environment: TextEnvironment,
    agents: Mapping[str, Any],
    datapoint_indices: Sequence[int] | np.ndarray,
    *,
    iteration: int = 0,
    seeds: Sequence[int] | None = None,
    sample_keys: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> TextRollouts:
    """Play one episode per datapoint index to its end.

    Parameters
    ----------
    environment : TextEnvironment
        The environment (its dataset holds the datapoints).
    agents : Mapping[str, Agent | TextAgent]
        Every agent of the protocol, by name.
    datapoint_indices : Sequence[int]
        The datapoints of the episodes.
    iteration : int
        The training iteration (recorded; part of the default seeds).
    seeds, sample_keys : Sequence, optional
        See :meth:`~nip_core.text.environment.TextEnvironment.reset`.
    progress : Callable[[int], None], optional
        Called with 1 per completed turn.
    """
    rollouts = environment.reset(
        datapoint_indices=datapoint_indices,
        iteration=iteration,
        seeds=seeds,
        sample_keys=sample_keys,
    )
    return continue_rollouts(environment, agents, rollouts, 0, progress=progress)
