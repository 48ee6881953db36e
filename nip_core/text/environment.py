"""The text world's environment: episodes of text messages under a protocol.

A :class:`TextEnvironment` starts a batch of episodes (:meth:`~TextEnvironment.reset`,
one :class:`~nip_core.text.rollouts.TextRollouts` padded to the protocol's maximum
rounds) and plays one round at a time (:meth:`~TextEnvironment.step`): the agents'
messages and decisions for the round are already written into the rollouts (by
:func:`nip_core.text.sampling.play_round`); the step asks the protocol handler for
the done signals and rewards, marks the rounds after an episode's end as padding,
and records the verdict that ended it.

Channel routing and visibility come from the protocol handler: an agent is asked to
speak only on the channels the schedule makes it active on
(:meth:`~TextEnvironment.active_mask`), and an agent's prompt shows only the
channels it can see (:mod:`nip_core.text.agents`).

A scenario subclasses it to give its episodes a prover stance of their own
(:meth:`~TextEnvironment.datapoint_prover_stance`); everything else is generic. The
protocol handler works on tensors, so stepping imports torch; the rollouts stay
NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nip_core.protocols.decisions import DECISION_ACCEPT
from nip_core.scenario.environment_base import SEED_RANGE, Environment
from nip_core.seeding import derive_seed
from nip_core.text.rollouts import TextRollouts

__all__ = ["TextEnvironment", "prover_target_verdicts"]


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _exact_rewards(value: Any) -> np.ndarray:
    """Rewards as float64, each a float32 one read as the shortest decimal that
    float32 value stands for.

    The protocol step computes rewards in float32, the tensor world's dtype, so a
    configured ``-0.1`` comes out as ``-0.10000000149011612``: a verifier's return
    of ``-0.1 + 1.0`` was then below 0.9, and an expert iteration threshold of 0.9
    left its episode out (MALT's mid-point labels and the logged rewards moved
    likewise). The rewards are the configured values, which the shortest decimal
    gives back (any value of up to 7 significant digits). Wider dtypes are kept
    as they are.
    """
    rewards = _numpy(value)
    if rewards.dtype == np.float32:
        return rewards.astype(str).astype(np.float64)
    return rewards.astype(np.float64)


class TextEnvironment(Environment):
    """Batches of text episodes under the experiment's protocol.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters (``seed``, the protocol sections).
    settings : ExperimentSettings
        The run's settings.
    dataset : TextDataset
        The datapoints episodes are about.
    protocol_handler : ProtocolHandler
        The interaction protocol.
    """

    # ----------------------------------------------------------------------------------
    # What a scenario may supply

    def datapoint_prover_stance(self, datapoint: Mapping[str, Any]) -> int | None:
        """The verdict a single prover argues for in an episode about ``datapoint``.

        Read only with ``protocol_common.randomize_prover_stance``. ``None`` (the
        default) leaves the stance to the protocol: ``seed % 2``. Code validation
        returns the parity of the solution's SHA-256, as the original did.
        """
        return None

    # ----------------------------------------------------------------------------------
    # Episodes

    def episode_seeds(self, count: int, iteration: int, offset: int = 0) -> np.ndarray:
        """Seeds of ``count`` episodes of an iteration, in ``[0, SEED_RANGE)``."""
        rng = np.random.default_rng(
            derive_seed(int(self.hyper_params.seed), f"text_episodes/{self.split}")
        )
        # A fresh stream per iteration, advanced to the offset, so any stretch of an
        # iteration's episodes gets the same seeds however it is requested
        rng = np.random.default_rng(
            derive_seed(
                int(rng.integers(0, 2**31)), f"iteration{iteration}/offset{offset}"
            )
        )
        return rng.integers(0, SEED_RANGE, size=count, dtype=np.int64)

    def reset(
        self,
        env_state: Any = None,
        *,
        datapoint_indices: Sequence[int] | np.ndarray,
        iteration: int = 0,
        seeds: Sequence[int] | np.ndarray | None = None,
        sample_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> TextRollouts:
        """Start one episode per datapoint index.

        Parameters
        ----------
        env_state : None
            Unused (episodes are always started afresh).
        datapoint_indices : Sequence[int]
            The datapoints, by index in the dataset (repeats allowed).
        iteration : int
            The training iteration (recorded, and part of the default seeds).
        seeds : Sequence[int], optional
            The episodes' seeds; drawn from the run seed, split and iteration when
            not given.
        sample_keys : Sequence[str], optional
            What each episode's request seeds are derived from; by default
            ``"<split>/<iteration>/<position>"``.
        """
        indices = np.asarray(datapoint_indices, dtype=np.int64)
        handler = self.protocol_handler
        datapoints = [self.dataset[int(i)] for i in indices]
        rollouts = TextRollouts(
            handler.agent_names,
            handler.message_channel_names,
            handler.max_message_rounds,
            datapoints,
            iteration=iteration,
            split=self.split,
        )
        rollouts["datapoint_index"] = indices
        rollouts["seed"] = (
            np.asarray(seeds, dtype=np.int64)
            if seeds is not None
            else self.episode_seeds(len(indices), iteration)
        )
        rollouts["sample_key"] = (
            list(sample_keys)
            if sample_keys is not None
            else [f"{self.split}/{iteration}/{b}" for b in range(len(indices))]
        )
        if handler.protocol_common.randomize_prover_stance:
            stances = [self.datapoint_prover_stance(d) for d in datapoints]
            if all(s is not None for s in stances):
                rollouts["prover_stance"] = stances
        return rollouts

    # ----------------------------------------------------------------------------------
    # Who acts

    def active_mask(
        self,
        rollouts: TextRollouts,
        round_id: int,
        episodes: Sequence[int] | None = None,
    ) -> np.ndarray:
        """bool ``(B, A, C)``: who speaks on which channel in ``round_id``.

        Episodes that were over before the round have no active agent. With
        ``episodes``, only those rows (``(len(episodes), A, C)``).
        """
        import torch

        rows = _rows(rollouts, episodes)
        rounds = torch.full((len(rows),), round_id, dtype=torch.long)
        seeds = torch.as_tensor(rollouts["seed"][rows], dtype=torch.long)
        active = _numpy(
            self.protocol_handler.get_active_agents_mask_from_rounds_and_seed(
                rounds, seeds
            )
        ).astype(bool)
        if round_id > 0:
            active &= ~rollouts["done"][rows, round_id - 1][:, None, None]
            # an agent already done (a zero-knowledge verifier) acts no more
            active &= ~rollouts["agents.done"][rows, round_id - 1][:, :, None]
        return active

    def scheduled_turns(
        self,
        rollouts: TextRollouts,
        start_round: int,
        stop_round: int | None = None,
        episodes: Sequence[int] | None = None,
        *,
        as_of_round: int | None = None,
    ) -> np.ndarray:
        """bool ``(B, R, A)``: whether each agent has a turn (speaks on at least one
        channel) in each of rounds ``start_round`` up to ``stop_round`` (exclusive;
        default: the last), as far as the episodes' state after round
        ``as_of_round`` (default ``start_round - 1``; ``-1``: none played) tells.

        The schedule depends on the round and the seed only; the state only takes
        turns away (an episode over, an agent done), so this bounds the turns still
        to be played: exact unless an episode ends, or an agent is done, after
        ``as_of_round``. With ``episodes``, only those rows.
        """
        import torch

        stop = rollouts.max_rounds if stop_round is None else stop_round
        as_of = start_round - 1 if as_of_round is None else as_of_round
        rows = _rows(rollouts, episodes)
        num_rounds = max(stop - start_round, 0)
        if num_rounds == 0 or len(rows) == 0:
            return np.zeros((len(rows), num_rounds, rollouts.num_agents), dtype=bool)
        rounds = torch.arange(start_round, stop, dtype=torch.long).repeat(len(rows))
        seeds = torch.as_tensor(
            np.repeat(rollouts["seed"][rows], num_rounds), dtype=torch.long
        )
        active = _numpy(
            self.protocol_handler.get_active_agents_mask_from_rounds_and_seed(
                rounds, seeds
            )
        ).astype(bool)
        turns = active.any(axis=-1).reshape(len(rows), num_rounds, -1)
        if as_of >= 0:
            turns &= ~rollouts["done"][rows, as_of][:, None, None]
            turns &= ~rollouts["agents.done"][rows, as_of][:, None, :]
        return turns

    def decision_restriction(
        self,
        rollouts: TextRollouts,
        round_id: int,
        episodes: Sequence[int] | None = None,
    ) -> np.ndarray:
        """long ``(B,)``: what the verifier may usefully decide in ``round_id``
        (see :meth:`~nip_core.protocols.ProtocolHandler.
        get_decision_restriction_from_rounds_and_seed`)."""
        import torch

        rows = _rows(rollouts, episodes)
        rounds = torch.full((len(rows),), round_id, dtype=torch.long)
        seeds = torch.as_tensor(rollouts["seed"][rows], dtype=torch.long)
        return _numpy(
            self.protocol_handler.get_decision_restriction_from_rounds_and_seed(
                rounds, seeds
            )
        ).astype(np.int64)

    def prover_target_verdicts(self, rollouts: TextRollouts) -> dict[str, np.ndarray]:
        """``(B,)`` per prover: the verdict it argues for (-1: none); see
        :func:`prover_target_verdicts`."""
        return prover_target_verdicts(self.protocol_handler, rollouts)

    # ----------------------------------------------------------------------------------
    # The step

    def step(
        self,
        env_state: TextRollouts,
        round_id: int | None = None,
        episodes: Sequence[int] | None = None,
    ) -> TextRollouts:
        """Finish round ``round_id``: done signals, rewards, padding and verdicts.

        The round's messages and decisions must already be in ``env_state``. With
        ``episodes``, only those episodes are stepped (the step is per episode, so
        stepping episodes one by one gives what stepping them together gives).
        """
        rollouts = env_state
        if round_id is None:
            raise TypeError("TextEnvironment.step needs the round_id being finished")
        handler = self.protocol_handler
        rows = _rows(rollouts, episodes)
        inputs = {
            key: np.asarray(value)[rows]
            for key, value in rollouts.step_inputs(round_id).items()
        }
        done_before = inputs["done"]
        verifier_index = None
        if len(handler.verifier_names) == 1:
            verifier_index = handler.agent_index(handler.verifier_names[0])
        decisions = rollouts["agents.decision"]
        if verifier_index is not None and handler.protocol_common.force_guess:
            # the forced verdict is what happened where it counts: log it there
            # (before min_message_rounds it is not given: the verifier's own
            # decision stays)
            import torch

            decision = decisions[rows, round_id, verifier_index]
            forced = _numpy(
                handler.get_effective_verifier_decision(
                    torch.as_tensor(decision), torch.as_tensor(rollouts["y"][rows])
                )
            )
            counts = self._verdict_counts(rollouts, rows, round_id, forced)
            active = rollouts["agents.active"][rows, round_id, verifier_index]
            write = active & counts
            decisions[rows[write], round_id, verifier_index] = forced[write]
            inputs[("agents", "decision")] = decisions[rows, round_id]
        result = handler.step_interaction_protocol(inputs)
        shared_done = _numpy(result.shared_done).astype(bool)
        terminated = _numpy(result.terminated).astype(bool)
        agent_done = _numpy(result.agent_done).astype(bool)
        reward = _exact_rewards(result.reward)
        done = shared_done | terminated
        rollouts["padding"][rows, round_id] = done_before
        rollouts["done"][rows, round_id] = done
        rollouts["terminated"][rows, round_id] = terminated
        rollouts["agents.done"][rows, round_id] = agent_done | done[:, None]
        rollouts["agents.reward"][rows, round_id] = np.where(
            done_before[:, None], 0.0, reward
        )
        if verifier_index is not None:
            verdict = decisions[rows, round_id, verifier_index]
            decided = done & ~done_before & ~terminated
            # Terminated in the round its verdict counts in (a prover's invalid
            # response in the same round): the verdict was rewarded, so it is
            # the episode's verdict too
            verdict_counts = self._verdict_counts(rollouts, rows, round_id, verdict)
            verifier_done_before = inputs[("agents", "done")][:, verifier_index]
            active = rollouts["agents.active"][rows, round_id, verifier_index]
            decided |= (
                terminated
                & ~done_before
                & ~verifier_done_before
                & active
                & verdict_counts
            )
            rollouts["verdict"][rows[decided]] = verdict[decided]
        return rollouts

    def _verdict_counts(
        self,
        rollouts: TextRollouts,
        rows: np.ndarray,
        round_id: int,
        decision: np.ndarray,
    ) -> np.ndarray:
        """Where the verifier's (forced) ``decision`` in ``round_id`` is a
        verdict that counts: bool ``[len(rows)]``."""
        import torch

        handler = self.protocol_handler
        rounds = torch.full((len(rows),), round_id, dtype=torch.long)
        guess = handler.get_verifier_guess_mask_from_rounds_and_seed(
            rounds, torch.as_tensor(rollouts["seed"][rows])
        )
        return _numpy(
            handler.get_decision_made_mask(rounds, guess, torch.as_tensor(decision))
        ).astype(bool)

    def finish_padding(
        self,
        rollouts: TextRollouts,
        last_round: int,
        episodes: Sequence[int] | None = None,
    ) -> None:
        """Mark every round after ``last_round`` as padding (the episodes are over)."""
        rows = _rows(rollouts, episodes)
        for r in range(last_round + 1, rollouts.max_rounds):
            rollouts["padding"][rows, r] = True
            rollouts["done"][rows, r] = True
            rollouts["terminated"][rows, r] = rollouts["terminated"][rows, last_round]
            rollouts["agents.done"][rows, r] = True


def prover_target_verdicts(
    protocol_handler: Any, rollouts: TextRollouts
) -> dict[str, np.ndarray]:
    """``(B,)`` per prover of ``protocol_handler``: the verdict it argues for in
    each episode of ``rollouts`` (-1: none), as the prompts state it and the
    rewards pay it (the handler's ``get_prover_target_verdicts``; accept for a
    handler without one)."""
    from nip_core.protocols.base import ProtocolStepInputs

    B = rollouts.batch_size
    inputs = ProtocolStepInputs.from_env_td(
        rollouts.step_inputs(0), len(rollouts.agent_names)
    )
    targets = {}
    getter = getattr(protocol_handler, "get_prover_target_verdicts", None)
    raw = getter(inputs) if getter is not None else {}
    for name in protocol_handler.prover_names:
        target = raw.get(name, DECISION_ACCEPT if getter is None else None)
        if target is None:
            targets[name] = np.full(B, -1, dtype=np.int64)
        else:
            targets[name] = np.broadcast_to(
                _numpy(target).astype(np.int64), (B,)
            ).copy()
    return targets


def _rows(rollouts: TextRollouts, episodes: Sequence[int] | None) -> np.ndarray:
    if episodes is None:
        return np.arange(rollouts.batch_size)
    return np.asarray(episodes, dtype=np.int64)
