"""Sampling text rollouts: every agent's turns as concurrent requests.

:func:`sample_rollouts` plays a batch of episodes to their end. Two schedules give
the same rollouts (every request's seed comes from its episode's ``sample_key``,
round, agent and attempt, never from the order requests are sent in):

Pipelined (backends that take requests one at a time, such as ``openai``)
    Every episode moves on as soon as its own turns are done: a turn is generated,
    parsed and, if invalid, asked again right away, each request waiting only for a
    free slot among the backend's ``text_backend.max_concurrency``. The endpoint
    always has as many requests in flight as allowed, however uneven the episodes.
Round by round (when some backend ``prefers_batches``, such as a local model)
    The turns of every active agent in every episode of a round go out together,
    each backend's in one :meth:`~nip_core.text.backend.TextBackend.generate` call
    (different backends at the same time); invalid responses are asked again as a
    batch; then the environment steps the round (:func:`play_round`).

Invalid responses are asked again, with a new seed per attempt, up to the agent's
``num_invalid_generation_retries``; then the agent sends an empty message and makes
no decision.

:func:`continue_rollouts` plays the remaining rounds of episodes that are partly
played (trainers that branch episodes, such as MALT, use it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from nip_core.text.agents import TextAgent, TurnContext, TurnOutput
from nip_core.text.backend import GenerationResult, cut_at_stop

if TYPE_CHECKING:
    from nip_core.text.environment import TextEnvironment
    from nip_core.text.rollouts import TextRollouts

__all__ = [
    "TurnProgress",
    "continue_rollouts",
    "expect_turns",
    "play_round",
    "sample_rollouts",
    "scheduled_turn_count",
    "take_turns",
    "turn_contexts",
    "write_turns",
]

Progress = Callable[[int], None]
"""Called with the number of turns just played (retries of an invalid response
are part of their turn). A progress that also has an ``expect(n)`` method, such as
:class:`TurnProgress`, hears the bound of the turns still to play: see
:func:`expect_turns`."""


@attrs.frozen
class TurnProgress:
    """A sampling's progress in turns: ``advance(n)`` when ``n`` turns are played,
    ``expect(n)`` when the turns still to play grow by ``n`` (shrink, when ``n`` is
    negative: an episode ended early, or an agent is done).

    A sampling announces every turn the schedule can give at its start, then takes
    back the turns an early end removes, so the sum of what ``expect`` heard is an
    upper bound of the turns played that falls to exactly their number by the end.
    """

    advance: Callable[[int], None]
    expect: Callable[[int], None]

    def __call__(self, n: int) -> None:
        self.advance(n)


def expect_turns(progress: Progress | None, n: int) -> None:
    """Tell ``progress`` that the turns still to play grew by ``n`` (shrank, when
    negative), if it has an ``expect`` method; a plain callable hears only the
    turns played."""
    expect = getattr(progress, "expect", None)
    if expect is not None and n:
        expect(int(n))


def scheduled_turn_count(
    environment: TextEnvironment,
    agent_names: Sequence[str],
    rollouts: TextRollouts,
    start_round: int,
    stop_round: int | None = None,
    episodes: Sequence[int] | None = None,
    *,
    as_of_round: int | None = None,
) -> int:
    """How many turns ``agent_names`` have in rounds ``start_round`` up to
    ``stop_round`` (of ``episodes``, or every episode), by the schedule and the
    state after ``as_of_round``
    (:meth:`~nip_core.text.environment.TextEnvironment.scheduled_turns`)."""
    turns = environment.scheduled_turns(
        rollouts, start_round, stop_round, episodes, as_of_round=as_of_round
    )
    columns = [rollouts.agent_index(name) for name in agent_names]
    return int(turns[..., columns].sum())


def _step_counting(
    environment: TextEnvironment,
    agent_names: Sequence[str],
    rollouts: TextRollouts,
    round_id: int,
    stop_round: int,
    episodes: Sequence[int] | None,
    progress: Progress | None,
) -> None:
    """Step ``round_id`` of ``episodes``; tell ``progress`` of the later turns
    the step took away (episodes it ended, agents it made done)."""
    if getattr(progress, "expect", None) is None or round_id + 1 >= stop_round:
        environment.step(rollouts, round_id, episodes)
        return

    def ahead(as_of: int) -> int:
        return scheduled_turn_count(
            environment,
            agent_names,
            rollouts,
            round_id + 1,
            stop_round,
            episodes,
            as_of_round=as_of,
        )

    before = ahead(round_id - 1)
    environment.step(rollouts, round_id, episodes)
    expect_turns(progress, ahead(round_id) - before)


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
    episodes: Sequence[int] | None = None,
    targets: Mapping[str, np.ndarray] | None = None,
) -> list[tuple[str, TurnContext]]:
    """``(agent, context)`` of every turn of ``agent_names`` in ``round_id`` (of
    ``episodes``, or every episode)."""
    rows = (
        np.arange(rollouts.batch_size)
        if episodes is None
        else np.asarray(episodes, dtype=np.int64)
    )
    active = environment.active_mask(rollouts, round_id, rows)
    restriction = environment.decision_restriction(rollouts, round_id, rows)
    if targets is None:
        targets = environment.prover_target_verdicts(rollouts)
    channels = rollouts.channel_names
    turns = []
    for i, b in enumerate(rows):
        for agent_name in agent_names:
            a = rollouts.agent_index(agent_name)
            speaks_on = tuple(c for k, c in enumerate(channels) if active[i, a, k])
            if not speaks_on:
                continue
            target = targets.get(agent_name)
            turns.append(
                (
                    agent_name,
                    TurnContext(
                        rollouts=rollouts,
                        episode=int(b),
                        round_id=round_id,
                        channels=speaks_on,
                        restriction=int(restriction[i]),
                        target_verdict=(
                            None if target is None or target[b] < 0 else int(target[b])
                        ),
                    ),
                )
            )
    return turns


@attrs.define
class _Turn:
    """One turn being generated: its attempts so far."""

    agent: TextAgent
    context: TurnContext
    chat: list[dict[str, str]]
    attempt: int = 0
    token_limit: bool = False
    tokens: int = 0
    stop: tuple[str, ...] = ()

    def request(self) -> Any:
        request = self.agent.generation_request(self.context, self.chat, self.attempt)
        self.stop = tuple(getattr(request, "stop", ()) or ())
        return request

    def take(self, result: GenerationResult) -> TurnOutput | None:
        """Read a result: the finished turn, or ``None`` to ask again."""
        # a backend that does not stop early at a stop sequence: cut it there
        choice = cut_at_stop(result.choice, self.stop)
        self.token_limit = self.token_limit or choice.hit_token_limit
        if self.tokens >= 0 and result.completion_tokens is not None:
            self.tokens += int(result.completion_tokens)
        else:
            self.tokens = -1
        parsed = self.agent.interpret(self.context, choice)
        allowed = int(self.agent.agent_params.num_invalid_generation_retries)
        if not parsed.valid and self.attempt < allowed:
            self.attempt += 1
            return None
        if parsed.valid:
            return TurnOutput(
                messages=dict(parsed.messages),
                decision=parsed.decision,
                raw_output=choice.text,
                prompt=tuple(self.chat),
                valid=True,
                retries=self.attempt,
                token_limit=self.token_limit,
                tokens=self.tokens,
            )
        # The original library's fallback: an empty message, no decision
        return TurnOutput(
            messages={channel: "" for channel in self.context.channels},
            raw_output=choice.text,
            prompt=tuple(self.chat),
            valid=False,
            retries=self.attempt,
            token_limit=self.token_limit,
            tokens=self.tokens,
        )


def take_turns(
    environment: TextEnvironment,
    agents: Mapping[str, Any],
    rollouts: TextRollouts,
    round_id: int,
    progress: Progress | None = None,
) -> dict[tuple[int, str], TurnOutput]:
    """The turns of ``agents`` in ``round_id``, by ``(episode, agent name)``,
    generated as batches (one per backend and attempt).

    Nothing is written into ``rollouts``.
    """
    wholes = {name: _whole(agent) for name, agent in agents.items()}
    outputs: dict[tuple[int, str], TurnOutput] = {}
    pending: list[_Turn] = []
    for agent_name, context in turn_contexts(
        environment, list(wholes), rollouts, round_id
    ):
        agent = wholes[agent_name]
        if not agent.uses_model:
            outputs[(context.episode, agent_name)] = agent.random_turn(context)  # type: ignore[attr-defined]
            if progress is not None:
                progress(1)
            continue
        pending.append(_Turn(agent, context, agent.build_chat(context)))
    while pending:
        by_backend: dict[Any, list[int]] = {}
        for i, turn in enumerate(pending):
            by_backend.setdefault(turn.agent.group.backend, []).append(i)
        results = _generate_by_backend(by_backend, [t.request() for t in pending])
        still_pending = []
        for turn, result in zip(pending, results, strict=True):
            output = turn.take(result)
            if output is None:
                still_pending.append(turn)
                continue
            outputs[(turn.context.episode, turn.agent.agent_name)] = output
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
            c = rollouts.channel_index(channel)
            rollouts["agents.message"][b, round_id, a, c] = text


def play_round(
    environment: TextEnvironment,
    agents: Mapping[str, Any],
    rollouts: TextRollouts,
    round_id: int,
    progress: Progress | None = None,
) -> TextRollouts:
    """Play round ``round_id`` of every episode: turns, then the protocol step.

    ``progress`` hears the turns played only (a caller that announced the turns
    ahead takes back those an early end removes itself, as
    :func:`continue_rollouts` and MALT's trees do).
    """
    outputs = take_turns(environment, agents, rollouts, round_id, progress)
    write_turns(rollouts, round_id, outputs)
    environment.step(rollouts, round_id)
    return rollouts


# --------------------------------------------------------------------------------------
# The pipelined schedule


async def _play_turn(turn: _Turn, progress: Progress | None) -> TurnOutput:
    while True:
        result = await turn.agent.group.backend.generate_one(turn.request())
        output = turn.take(result)
        if output is not None:
            if progress is not None:
                progress(1)
            return output


class _Batcher:
    """Gathers calls made during one pass of the event loop and serves them with
    one batched call: episodes that reach the same point together share one
    protocol step (per-call overhead instead of per-episode overhead)."""

    def __init__(self, serve: Callable[[list[tuple[int, int]]], dict]):
        self.serve = serve
        self.pending: list[tuple[tuple[int, int], asyncio.Future]] = []

    async def __call__(self, key: tuple[int, int]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush)
        self.pending.append((key, future))
        return await future

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        try:
            results = self.serve([key for key, _ in pending])
        except BaseException as error:  # noqa: BLE001 - handed to every waiter
            for _, future in pending:
                if not future.done():
                    future.set_exception(error)
            return
        for key, future in pending:
            if not future.done():
                future.set_result(results.get(key))


def _by_round(keys: list[tuple[int, int]]) -> dict[int, list[int]]:
    rounds: dict[int, list[int]] = {}
    for round_id, episode in keys:
        rounds.setdefault(round_id, []).append(episode)
    return rounds


async def _play_episode(
    environment: TextEnvironment,
    wholes: Mapping[str, TextAgent],
    rollouts: TextRollouts,
    episode: int,
    start_round: int,
    stop_round: int,
    contexts: _Batcher,
    step: _Batcher,
    progress: Progress | None,
) -> None:
    for round_id in range(start_round, stop_round):
        if round_id > 0 and rollouts["done"][episode, round_id - 1]:
            environment.finish_padding(rollouts, round_id - 1, [episode])
            return
        outputs: dict[tuple[int, str], TurnOutput] = {}
        waiting = []
        for agent_name, context in await contexts((round_id, episode)) or ():
            agent = wholes[agent_name]
            if not agent.uses_model:
                outputs[(episode, agent_name)] = agent.random_turn(context)  # type: ignore[attr-defined]
                if progress is not None:
                    progress(1)
            else:
                turn = _Turn(agent, context, agent.build_chat(context))
                waiting.append((agent_name, _play_turn(turn, progress)))
        if waiting:
            results = await asyncio.gather(*(coroutine for _, coroutine in waiting))
            for (agent_name, _), output in zip(waiting, results, strict=True):
                outputs[(episode, agent_name)] = output
        write_turns(rollouts, round_id, outputs)
        await step((round_id, episode))


async def _play_episodes(
    environment: TextEnvironment,
    wholes: Mapping[str, TextAgent],
    rollouts: TextRollouts,
    start_round: int,
    stop_round: int,
    progress: Progress | None,
) -> None:
    targets = environment.prover_target_verdicts(rollouts)
    names = list(wholes)

    def serve_contexts(keys: list[tuple[int, int]]) -> dict:
        out: dict[tuple[int, int], list] = {}
        for round_id, episodes in _by_round(keys).items():
            for agent_name, context in turn_contexts(
                environment, names, rollouts, round_id, episodes, targets
            ):
                out.setdefault((round_id, context.episode), []).append(
                    (agent_name, context)
                )
        return out

    def serve_step(keys: list[tuple[int, int]]) -> dict:
        for round_id, episodes in _by_round(keys).items():
            _step_counting(
                environment, names, rollouts, round_id, stop_round, episodes, progress
            )
        return {}

    contexts, step = _Batcher(serve_contexts), _Batcher(serve_step)
    tasks = [
        asyncio.ensure_future(
            _play_episode(
                environment,
                wholes,
                rollouts,
                b,
                start_round,
                stop_round,
                contexts,
                step,
                progress,
            )
        )
        for b in range(rollouts.batch_size)
    ]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _pipelined_backend(wholes: Mapping[str, TextAgent]) -> Any:
    """The backend whose event loop runs a pipelined schedule, or ``None`` when
    the batches must go round by round."""
    backends = {agent.group.backend for agent in wholes.values() if agent.uses_model}
    if not backends or any(b.prefers_batches for b in backends):
        return None
    return sorted(backends, key=lambda b: b.name)[0]


# --------------------------------------------------------------------------------------
# Whole episodes


def continue_rollouts(
    environment: TextEnvironment,
    agents: Mapping[str, Any],
    rollouts: TextRollouts,
    start_round: int,
    stop_round: int | None = None,
    progress: Progress | None = None,
) -> TextRollouts:
    """Play rounds ``start_round`` up to ``stop_round`` (exclusive; default: the
    end) of partly played episodes; pad each episode once it is over.

    ``progress`` as in :func:`sample_rollouts`: the turns announced are those of
    rounds ``start_round`` up to ``stop_round``.
    """
    stop = rollouts.max_rounds if stop_round is None else stop_round
    wholes = {name: _whole(agent) for name, agent in agents.items()}
    names = list(wholes)
    if getattr(progress, "expect", None) is not None:
        expect_turns(
            progress,
            scheduled_turn_count(environment, names, rollouts, start_round, stop),
        )
    backend = _pipelined_backend(wholes)
    if backend is not None:
        backend.run_sync(
            _play_episodes(environment, wholes, rollouts, start_round, stop, progress)
        )
        return rollouts
    for round_id in range(start_round, stop):
        if rollouts.done_before(round_id).all():
            environment.finish_padding(rollouts, round_id - 1)
            break
        outputs = take_turns(environment, wholes, rollouts, round_id, progress)
        write_turns(rollouts, round_id, outputs)
        _step_counting(environment, names, rollouts, round_id, stop, None, progress)
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
        Called with 1 per completed turn. A :class:`TurnProgress` (anything with
        an ``expect(n)`` method) also hears the turns the schedule gives at the
        start and those an early end takes back (:func:`expect_turns`), so a
        progress bar can show a total.
    """
    rollouts = environment.reset(
        datapoint_indices=datapoint_indices,
        iteration=iteration,
        seeds=seeds,
        sample_keys=sample_keys,
    )
    return continue_rollouts(environment, agents, rollouts, 0, progress=progress)
