"""Expert iteration's rules: which episodes each agent is fine-tuned on.

For one agent and a batch of rollouts (the iteration's, or every iteration's so far
with ``text_rl.fine_tune_on_all_previous_rollouts``):

1. **Candidates.** The episodes in which the agent spoke and every response of it
   was valid (``N`` of them): an episode where one of its responses failed parsing
   (an empty message, a ``Decision:`` without a verdict, a missing header: sent as
   an empty message after the retries) is not an example of what went well, whatever
   its reward, and fine-tuning on it would teach the model to send empty messages.
   An example is the agent's chat at its last turn (the prompt it got plus its own
   response, :meth:`~nip_core.text.rollouts.TextRollouts.agent_chat`): it ends on
   the agent's own message.
2. **Guess replacement** (verifiers only). With ``p`` the annealed
   ``text_rl.verifier_guess_replacement_proportion`` of the iteration, the
   candidates whose last turn is one where the verifier's verdict counts (all of
   them, unless an invalid prover response ended an episode before verdicts
   count) are shuffled with a generator seeded by the run seed, the iteration
   and the agent (:func:`selection_seed`); the first ``int(p × N)`` become examples
   whose final message states the true verdict (:func:`replace_guess`, written by
   the agent's :meth:`~nip_core.text.agents.TextWholeAgent.write_verdict`, so in
   the scenario's own verdict format), whatever their reward; the rest go on to
   step 3. As in the original library.
3. **Selection by episode reward** (the agent's return), per
   ``pure_text_ei.rollout_selection_method``:

   ``threshold``
       every remaining episode with reward ≥ ``reward_threshold``;
   ``weighted_sampling``
       ``round(weighting_sample_size_factor × M)`` draws among the ``M`` remaining
       episodes, with the probabilities of :func:`sampling_weights`, with or without
       replacement (``weighting_use_replacement``), from a generator seeded like
       step 2. Without replacement the draws are capped at the number of episodes
       with a non-zero probability.

The examples are the selected episodes' chats (in episode order for ``threshold``,
in draw order for ``weighted_sampling``), then the guess-replaced chats (in episode
order). A shared model group pools the examples of its agents, in the group's agent
order.

This module imports neither torch nor a backend: the rules can be run, and tested,
on hand-built :class:`~nip_core.text.rollouts.TextRollouts`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import attrs
import numpy as np

from nip_core.protocols.decisions import DECISION_ACCEPT, DECISION_REJECT
from nip_core.seeding import derive_seed
from nip_core.text.parsing import write_decision
from nip_core.text.rollouts import TextRollouts

__all__ = [
    "AgentSelection",
    "SelectionRule",
    "guess_replacement_count",
    "replace_guess",
    "sampling_weights",
    "select_agent_examples",
    "select_by_threshold",
    "select_by_weighted_sampling",
    "weighted_sample_size",
    "selection_seed",
]

Chat = list[dict[str, str]]


@attrs.frozen(kw_only=True)
class SelectionRule:
    """How episodes are selected by reward (the ``pure_text_ei`` section's fields).

    Parameters
    ----------
    method : {"threshold", "weighted_sampling"}
    reward_threshold : float
    sample_size_factor : float
    minimum : float | None
    epsilon : float
    replace : bool
    """

    method: str = "threshold"
    reward_threshold: float = 0.9
    sample_size_factor: float = 0.5
    minimum: float | None = None
    epsilon: float = 0.01
    replace: bool = True

    @classmethod
    def from_parameters(cls, params: Any) -> SelectionRule:
        """The rule of a :class:`~nip_plugin_ei.parameters.PureTextEiParameters`."""
        return cls(
            method=params.rollout_selection_method,
            reward_threshold=float(params.reward_threshold),
            sample_size_factor=float(params.weighting_sample_size_factor),
            minimum=(
                None
                if params.weighting_minimum is None
                else float(params.weighting_minimum)
            ),
            epsilon=float(params.weighting_epsilon),
            replace=bool(params.weighting_use_replacement),
        )


def selection_seed(seed: int, iteration: int, agent_name: str, purpose: str) -> int:
    """The seed of the generator of one agent's selection at one iteration.

    ``purpose`` is ``"guess_replacement"`` or ``"weighted_sampling"``. Derived with
    :func:`~nip_core.seeding.derive_seed`, so it is the same in every process and
    after a resume.
    """
    return derive_seed(
        int(seed), f"pure_text_ei/iteration{int(iteration)}/{agent_name}/{purpose}"
    )


# --------------------------------------------------------------------------------------
# Selection by reward


def select_by_threshold(rewards: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the rewards at least ``threshold``, in order."""
    rewards = np.asarray(rewards, dtype=np.float64)
    return np.flatnonzero(rewards >= threshold)


def sampling_weights(
    rewards: np.ndarray, minimum: float | None = None, epsilon: float = 0.0
) -> np.ndarray:
    """The probabilities of weighted sampling.

    The rewards are shifted to start at zero (minus ``minimum``, rewards below it
    clipped to it; or minus the smallest reward when ``minimum`` is ``None``) and
    normalised to sum to one; ``epsilon / N`` is added to each and the result
    normalised again. When every shifted reward is zero (all rewards equal, or all
    at or below ``minimum``), the normalised weights are all zero and the result is
    uniform (``epsilon`` or not).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    count = rewards.size
    if count == 0:
        return np.zeros(0)
    if minimum is None:
        shifted = rewards - rewards.min()
    else:
        shifted = np.maximum(rewards, minimum) - minimum
    total = shifted.sum()
    weights = shifted / total if total > 0 else np.zeros(count)
    weights = weights + epsilon / count
    total = weights.sum()
    if total <= 0:
        return np.full(count, 1.0 / count)
    return weights / total


def select_by_weighted_sampling(
    rewards: np.ndarray,
    *,
    sample_size_factor: float,
    minimum: float | None,
    epsilon: float,
    replace: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """Indices drawn with the probabilities of :func:`sampling_weights` (in draw
    order; repeats when ``replace``)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    count = rewards.size
    size = weighted_sample_size(sample_size_factor, count)
    if count == 0 or size == 0:
        return np.zeros(0, dtype=np.int64)
    weights = sampling_weights(rewards, minimum, epsilon)
    if not replace:
        size = min(size, int(np.count_nonzero(weights)))
    return rng.choice(count, size=size, p=weights, replace=replace).astype(np.int64)


def weighted_sample_size(factor: float, count: int) -> int:
    """``round(factor × count)``: how many draws weighted sampling makes.

    Python's rounding (half to even) as the original library's, but of the
    product rounded to 9 decimal places first, so that binary floating point does
    not move an exact half: ``0.7 × 45`` is ``31.499999999999996`` in floating
    point, and 32 draws are made (31.5 to even), not 31.
    """
    return int(round(round(float(factor) * int(count), 9)))


# --------------------------------------------------------------------------------------
# Guess replacement


def guess_replacement_count(proportion: float, candidates: int) -> int:
    """``int(proportion × candidates)``: how many candidates get the true verdict.

    Rounded down as the original library did, but from the product rounded to 9
    decimal places, so that binary floating point does not take one away from an
    exact share: ``0.29 × 100`` is ``28.999999999999996`` in floating point, and
    29 candidates are replaced, not 28.
    """
    return int(math.floor(round(float(proportion) * int(candidates), 9)))


def replace_guess(
    chat: Sequence[Mapping[str, str]],
    label: int,
    spectrum: str,
    write_verdict: Callable[[str, int], str] | None = None,
    keep_reasoning: bool = True,
) -> Chat:
    """The chat with its final (verifier) message stating the true verdict.

    ``write_verdict(text, decision)`` rewrites the final message to state
    ``decision``, ``label`` written as a decision (1 accept, 0 reject): the agent's
    :meth:`~nip_core.text.agents.TextWholeAgent.write_verdict`. Without it, the
    ``Decision:`` format: the message keeps its text up to its last ``Decision:``
    line (all of it when it has none) and ends with ``Decision: <verdict>`` on the
    decision ``spectrum`` (:func:`~nip_core.text.parsing.write_decision`). With
    ``keep_reasoning`` off, the message is the verdict alone (its text is dropped,
    as the original library did), so no reasoning is kept that argues for the
    other verdict.
    """
    if not chat or chat[-1].get("role") != "assistant":
        raise ValueError("guess replacement needs a chat ending on the agent's message")
    decision = DECISION_ACCEPT if int(label) == 1 else DECISION_REJECT
    text = str(chat[-1]["content"]) if keep_reasoning else ""
    if write_verdict is None:
        content = write_decision(text, decision, spectrum)
    else:
        content = write_verdict(text, decision)
    return [*(dict(m) for m in chat[:-1]), {"role": "assistant", "content": content}]


# --------------------------------------------------------------------------------------
# One agent


@attrs.frozen(kw_only=True)
class AgentSelection:
    """What one agent is fine-tuned on at one iteration.

    Parameters
    ----------
    agent_name : str
    candidates : tuple[int, ...]
        The episodes the agent spoke in with only valid responses.
    selected : tuple[int, ...]
        The episodes selected by reward (in example order; repeats possible).
    guess_replaced : tuple[int, ...]
        The episodes whose final verdict was replaced by the true one.
    examples : tuple[list[dict], ...]
        The chats: the selected ones, then the guess-replaced ones.
    invalid : tuple[int, ...]
        The episodes the agent spoke in with an invalid response: left out.
    """

    agent_name: str
    candidates: tuple[int, ...]
    selected: tuple[int, ...]
    guess_replaced: tuple[int, ...]
    examples: tuple[Chat, ...]
    invalid: tuple[int, ...] = ()

    def summary(
        self, rollouts: TextRollouts, *, is_verifier: bool = False
    ) -> dict[str, float]:
        """Metrics of the selection, keyed ``<agent>.<metric>``: ``num_selected``,
        ``num_invalid_excluded`` (episodes left out for an invalid response),
        ``num_guess_replaced`` (verifiers), ``selected_mean_episode_reward`` and,
        for verifiers, ``selected_accuracy`` (the share of selected episodes whose
        verdict was right), when anything was selected."""
        name = self.agent_name
        out: dict[str, float] = {
            f"{name}.num_selected": len(self.selected),
            f"{name}.num_invalid_excluded": len(self.invalid),
        }
        if is_verifier:
            out[f"{name}.num_guess_replaced"] = len(self.guess_replaced)
        if self.selected:
            index = np.asarray(self.selected)
            a = rollouts.agent_index(name)
            out[f"{name}.selected_mean_episode_reward"] = float(
                rollouts.episode_reward[index, a].mean()
            )
            if is_verifier:
                right = rollouts["verdict"][index] == rollouts["y"][index]
                out[f"{name}.selected_accuracy"] = float(right.mean())
        return out


def select_agent_examples(
    rollouts: TextRollouts,
    agent_name: str,
    rule: SelectionRule,
    *,
    seed: int,
    iteration: int,
    guess_replacement_proportion: float = 0.0,
    spectrum: str = "accept_reject",
    write_verdict: Callable[[int, str, int], str] | None = None,
    verdict_counts: np.ndarray | None = None,
    keep_reasoning: bool = True,
) -> AgentSelection:
    """Apply the rules of the module docstring to one agent.

    Parameters
    ----------
    rollouts : TextRollouts
        The episodes to select from.
    agent_name : str
        The agent.
    rule : SelectionRule
        The selection by reward.
    seed, iteration : int
        The run seed and the iteration (they seed the generators).
    guess_replacement_proportion : float
        ``p`` in [0, 1]; give 0 for agents that are not verifiers.
    spectrum : str
        The verdict scale of written-in verdicts.
    write_verdict : Callable[[int, str, int], str] | None
        ``write_verdict(episode, text, decision)``: the agent's final response of
        ``episode`` rewritten to state ``decision`` (see :func:`replace_guess`;
        ``None``: the ``Decision:`` format on ``spectrum``).
    verdict_counts : np.ndarray | None
        bool ``(batch,)``: whether a verdict on the agent's last turn of each
        episode counts (``None``: everywhere). Only those episodes can be guess
        replaced: a verifier whose last turn came before verdicts count (an
        invalid prover response ended the episode early) would be taught to
        give a verdict the protocol does not read. The others go on to the
        selection by reward.
    keep_reasoning : bool
        Whether a guess-replaced message keeps its text before the verdict
        (:func:`replace_guess`).
    """
    if not 0 <= guess_replacement_proportion <= 1:
        raise ValueError(
            "the guess replacement proportion must lie in [0, 1], got "
            f"{guess_replacement_proportion}"
        )
    a = rollouts.agent_index(agent_name)
    active = np.asarray(rollouts["agents.active"][:, :, a], dtype=bool)
    valid = np.asarray(rollouts["agents.valid_response"][:, :, a], dtype=bool)
    all_valid = (valid | ~active).all(axis=1)
    chats = {}
    invalid = []
    for b in range(rollouts.batch_size):
        chat = rollouts.agent_chat(b, agent_name)
        if chat is None:
            continue
        if all_valid[b]:
            chats[b] = chat
        else:
            invalid.append(b)
    candidates = np.fromiter(chats, dtype=np.int64, count=len(chats))
    replaced = np.zeros(0, dtype=np.int64)
    rest = candidates
    replaceable = candidates
    if verdict_counts is not None:
        replaceable = candidates[np.asarray(verdict_counts, dtype=bool)[candidates]]
    replace_count = guess_replacement_count(
        guess_replacement_proportion, len(replaceable)
    )
    if replace_count > 0:
        rng = np.random.default_rng(
            selection_seed(seed, iteration, agent_name, "guess_replacement")
        )
        permuted = replaceable[rng.permutation(len(replaceable))]
        replaced = np.sort(permuted[:replace_count])
        rest = np.setdiff1d(candidates, replaced)
    rewards = rollouts.episode_reward[rest, a]
    if rule.method == "threshold":
        chosen = rest[select_by_threshold(rewards, rule.reward_threshold)]
    elif rule.method == "weighted_sampling":
        rng = np.random.default_rng(
            selection_seed(seed, iteration, agent_name, "weighted_sampling")
        )
        chosen = rest[
            select_by_weighted_sampling(
                rewards,
                sample_size_factor=rule.sample_size_factor,
                minimum=rule.minimum,
                epsilon=rule.epsilon,
                replace=rule.replace,
                rng=rng,
            )
        ]
    else:
        raise ValueError(
            f"unknown rollout selection method {rule.method!r}; methods: threshold, "
            "weighted_sampling"
        )
    labels = rollouts["y"]
    examples = [chats[int(b)] for b in chosen]
    examples += [
        replace_guess(
            chats[int(b)],
            int(labels[b]),
            spectrum,
            None if write_verdict is None else partial(write_verdict, int(b)),
            keep_reasoning=keep_reasoning,
        )
        for b in replaced
    ]
    return AgentSelection(
        agent_name=agent_name,
        candidates=tuple(int(b) for b in candidates),
        selected=tuple(int(b) for b in chosen),
        guess_replaced=tuple(int(b) for b in replaced),
        examples=tuple(examples),
        invalid=tuple(invalid),
    )
