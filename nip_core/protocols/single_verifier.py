"""The stepping rules of protocols with one verifier:
:class:`SingleVerifierProtocolHandler`."""

from __future__ import annotations

from abc import ABC
from typing import Any, ClassVar

import torch
from torch import Tensor

from nip_core.protocols.decisions import spectrum_allows_neither
from nip_core.protocols.handler import ProtocolHandler
from nip_core.protocols.step import (
    DECISION_ACCEPT,
    DECISION_NEITHER,
    DECISION_REJECT,
    ProtocolStepInputs,
    ProtocolStepResult,
)

# --------------------------------------------------------------------------------------
# One verifier
# --------------------------------------------------------------------------------------


class SingleVerifierProtocolHandler(ProtocolHandler, ABC):
    """The stepping rules of a protocol with one verifier, ``"verifier"``.

    Each step (rows already done get nothing and stay done):

    - The verdict is the verifier's decision with ``force_guess`` applied. It counts
      on the verifier's turn, if it is not 2 (continue), from round
      ``min_message_rounds - 1`` on; a counted verdict ends the episode.
    - Verifier: ``verifier_reward`` for a right verdict (accept iff ``y = 1``),
      ``verifier_incorrect_penalty`` for a wrong one,
      ``verifier_neither_accept_nor_reject_reward`` for a verdict of 3 (text worlds:
      neither accept nor reject), ``verifier_no_guess_reward`` on each of its turns
      it continues (or its verdict is ignored), and
      ``verifier_terminated_penalty`` when round ``max_message_rounds - 1`` ends
      without a verdict (the episode is then terminated).
    - Provers: ``shared_reward`` gives each prover the verifier's reward. Otherwise
      a prover gets ``prover_reward`` when the verdict is the one it argues for
      (:meth:`get_prover_target_verdicts`): a single prover argues for accept (or its
      stance, with ``randomize_prover_stance``); with two provers the first argues
      for reject and the second for accept.
    - ``prover_invalid_response_penalty`` (when set and the step inputs carry
      ``("agents", "valid_response")``): a prover with an invalid response gets it,
      and the episode is terminated.
    """

    verifier_name: ClassVar[str] = "verifier"

    @property
    def verifier_names(self) -> list[str]:
        return [self.verifier_name]

    @property
    def verifier_index(self) -> int:
        return self.agent_index(self.verifier_name)

    @property
    def verifier_neither_accept_nor_reject_reward(self) -> float:
        """Text worlds: the reward for neither accepting nor rejecting."""
        common = self.protocol_common
        if common.verifier_neither_accept_nor_reject_reward is not None:
            return common.verifier_neither_accept_nor_reject_reward
        return (common.verifier_reward + common.verifier_incorrect_penalty) / 2

    def get_prover_target_verdicts(
        self, inputs: ProtocolStepInputs
    ) -> dict[str, Tensor | int | None]:
        """The verdict each prover is rewarded for (``None``: no verdict reward).

        One prover: its stance (accept, or per episode with
        ``randomize_prover_stance``; an explicit ``prover_stance`` input wins over
        the seed). Two provers: the first (``prover0``) reject, the second accept.
        More provers: none, unless a subclass says otherwise.
        """
        provers = self.prover_names
        if len(provers) == 1:
            if self.protocol_common.randomize_prover_stance:
                if inputs.prover_stance is not None:
                    return {provers[0]: inputs.prover_stance}
                return {provers[0]: self.get_prover_stance_from_seed(inputs.seed)}
            return {provers[0]: DECISION_ACCEPT}
        if len(provers) == 2:
            return {provers[0]: DECISION_REJECT, provers[1]: DECISION_ACCEPT}
        return {name: None for name in provers}

    def step_interaction_protocol(self, env_td: Any) -> ProtocolStepResult:
        inputs = ProtocolStepInputs.from_env_td(env_td, self.num_agents)
        return self.step_from_inputs(inputs)

    def step_from_inputs(self, inputs: ProtocolStepInputs) -> ProtocolStepResult:
        """The step on already-read inputs (see :meth:`step_interaction_protocol`)."""
        common = self.protocol_common
        v = self.verifier_index
        round_id = inputs.round
        already_done = inputs.done
        verifier_already_done = already_done | inputs.agent_done[..., v]

        guess_mask = self.get_verifier_guess_mask_from_rounds_and_seed(
            round_id, inputs.seed
        )
        decision = self.get_effective_verifier_decision(
            inputs.decision[..., v], inputs.y
        )
        decided = self.get_decision_made_mask(round_id, guess_mask, decision)
        decided = decided & ~verifier_already_done

        # a verifier done before (under zero knowledge the episode can go on after
        # its verdict) has decided: its episode is not cut off
        new_terminated = (
            (round_id >= self.max_message_rounds - 1)
            & ~decided
            & ~verifier_already_done
        )
        terminated = inputs.terminated | new_terminated

        zeros = torch.zeros(round_id.shape, dtype=torch.float, device=round_id.device)
        verifier_reward = torch.where(
            decided & (decision == inputs.y),
            torch.full_like(zeros, float(common.verifier_reward)),
            zeros,
        )
        neither = decision == DECISION_NEITHER
        verifier_reward = torch.where(
            decided & (decision != inputs.y) & ~neither,
            torch.full_like(zeros, float(common.verifier_incorrect_penalty)),
            verifier_reward,
        )
        neither_reward = float(self.verifier_neither_accept_nor_reject_reward)
        verifier_reward = torch.where(
            decided & neither, torch.full_like(zeros, neither_reward), verifier_reward
        )
        verifier_reward = torch.where(
            new_terminated & ~verifier_already_done,
            torch.full_like(zeros, float(common.verifier_terminated_penalty)),
            verifier_reward,
        )
        continued = guess_mask & ~decided & ~verifier_already_done & ~terminated
        verifier_reward = torch.where(
            continued,
            torch.full_like(zeros, float(common.verifier_no_guess_reward)),
            verifier_reward,
        )

        reward = torch.zeros(
            (*round_id.shape, self.num_agents),
            dtype=torch.float,
            device=round_id.device,
        )
        reward[..., v] = verifier_reward

        if common.shared_reward:
            for index in self.prover_indices:
                reward[..., index] = verifier_reward
        else:
            targets = self.get_prover_target_verdicts(inputs)
            for name, target in targets.items():
                if target is None:
                    continue
                won = decided & (
                    decision == torch.as_tensor(target, device=decision.device)
                )
                reward[..., self.agent_index(name)] = won.float() * float(
                    common.prover_reward
                )

        if (
            common.prover_invalid_response_penalty is not None
            and inputs.valid_response is not None
        ):
            for index in self.prover_indices:
                invalid = ~inputs.valid_response[..., index] & ~already_done
                reward[..., index] = torch.where(
                    invalid,
                    torch.full_like(
                        zeros, float(common.prover_invalid_response_penalty)
                    ),
                    reward[..., index],
                )
                terminated = terminated | invalid

        shared_done = already_done | decided | terminated
        agent_done = inputs.agent_done | shared_done[..., None]
        return ProtocolStepResult(shared_done, agent_done, terminated, reward)

    # ----- Reward ranges

    def _episode_returns(
        self, prover_name: str | None = None
    ) -> tuple[list[float], list[float]]:
        """Every return an episode can end with: the verifier's, and (with
        ``shared_reward``) prover ``prover_name``'s (the first prover's by default),
        one entry per way the episode can end.

        Follows the step rules on the verifier's schedule
        (:attr:`verifier_turn_rounds`):

        - a verdict on its ``i``-th turn (counted from 0), which must be in round
          ``min_message_rounds - 1`` or later, after ``i`` continues:
          ``i × no_guess + verdict reward``;
        - no verdict: the episode is terminated at round ``max_message_rounds - 1``,
          with a continue reward for each of its turns before that round (a turn in
          that round gets the termination penalty instead):
          ``k × no_guess + terminated_penalty``;
        - with ``prover_invalid_response_penalty``, an invalid prover response in
          a round ``p`` that prover speaks in ends the episode there: the verifier
          keeps its continue rewards up to ``p`` (its turn in ``p`` included,
          unless the episode ends in ``p`` anyway), the prover sharing the reward
          gets the penalty in ``p`` instead of the verifier's reward, and every
          other prover the verifier's reward.

        The verdicts are right and wrong, and "neither" where the verdict scale
        has a middle (:func:`~nip_core.protocols.decisions.spectrum_allows_neither`).
        With ``force_guess`` the verdict comes on the first turn it counts on
        (the episode ends there; only without such a turn is it terminated), and
        is never "neither"; forced to the label (``"y"``) it is always right.
        """
        common = self.protocol_common
        no_guess = float(common.verifier_no_guess_reward)
        last = self.max_message_rounds - 1
        turns = self.verifier_turn_rounds
        force = common.force_guess
        verdicts = [float(common.verifier_reward)]
        if force != "y":
            verdicts.append(float(common.verifier_incorrect_penalty))
        if force is None and spectrum_allows_neither(common.verifier_decision_spectrum):
            verdicts.append(float(self.verifier_neither_accept_nor_reject_reward))
        eligible = self._eligible_verdict_turns()
        end = self._last_round_played()
        verifier: list[float] = []
        prover: list[float] = []
        for i, _ in eligible:
            verifier.extend(i * no_guess + v for v in verdicts)
        if force is None or not eligible:
            continues = sum(1 for round_id in turns if round_id < last)
            terminated = float(common.verifier_terminated_penalty)
            verifier.append(continues * no_guess + terminated)
        prover.extend(verifier)
        penalty = common.prover_invalid_response_penalty
        if penalty is not None:
            names = self.prover_names
            if prover_name is None and names:
                prover_name = names[0]
            for p in range(end + 1):
                speaking = [
                    other
                    for other in names
                    if self.can_agent_be_active_any_channel(other, p)
                ]
                if not speaking:
                    continue
                before = sum(1 for round_id in turns if round_id < p)
                if p < end:
                    kept = (before + (p in turns)) * no_guess
                    verifier.append(kept)
                    if any(other != prover_name for other in speaking):
                        # another prover's invalid response ends the episode
                        prover.append(kept)
                if prover_name in speaking:
                    prover.append(before * no_guess + float(penalty))
        return verifier, prover

    def _eligible_verdict_turns(self) -> list[tuple[int, int]]:
        """``(i, round)`` of the verifier's turns on which a verdict counts (its
        ``i``-th turn); with ``force_guess`` only the first, where it comes."""
        eligible = [
            (i, round_id)
            for i, round_id in enumerate(self.verifier_turn_rounds)
            if round_id >= self.min_message_rounds - 1
        ]
        if self.protocol_common.force_guess is not None:
            # a forced verdict comes on the first turn it counts on
            eligible = eligible[:1]
        return eligible

    def _last_round_played(self) -> int:
        """The round the episode ends in at the latest: the forced verdict's with
        ``force_guess``, else the last."""
        eligible = self._eligible_verdict_turns()
        if self.protocol_common.force_guess is not None and eligible:
            return eligible[0][1]
        return self.max_message_rounds - 1

    def _verifier_reward_range(self) -> tuple[float, float]:
        """The lowest and highest return the verifier can reach."""
        verifier, _ = self._episode_returns()
        return float(min(verifier)), float(max(verifier))

    def _prover_reward_range(self, agent_name: str) -> tuple[float, float]:
        common = self.protocol_common
        if common.shared_reward:
            _, shared = self._episode_returns(agent_name)
            return float(min(shared)), float(max(shared))
        values: list[float] = []
        force = common.force_guess
        # a forced verdict comes whenever the verifier has a turn it counts on
        always_verdict = force is not None and bool(self._eligible_verdict_turns())
        if not always_verdict:
            values.append(0.0)  # the verifier may lose it, or never decide
        for y in (0, 1):
            for seed in (0, 1):
                dummy = ProtocolStepInputs(
                    round=torch.zeros(()),
                    seed=torch.tensor(seed),
                    y=torch.tensor(y),
                    decision=torch.zeros(self.num_agents, dtype=torch.long),
                    done=torch.zeros((), dtype=torch.bool),
                    agent_done=torch.zeros(self.num_agents, dtype=torch.bool),
                    terminated=torch.zeros((), dtype=torch.bool),
                )
                target = self.get_prover_target_verdicts(dummy).get(agent_name)
                if target is None:
                    won = False
                elif force is None:
                    won = True  # the verifier may give it
                else:
                    verdict = {"zero": DECISION_REJECT, "one": DECISION_ACCEPT}.get(
                        force, y
                    )
                    won = int(target) == verdict
                if won:
                    values.append(float(common.prover_reward))
                elif always_verdict:
                    values.append(0.0)
        penalty = common.prover_invalid_response_penalty
        if penalty is not None:
            end = self._last_round_played()
            # its own invalid response, in a round it speaks in before the
            # episode's end (a verdict before its first turn leaves none)
            if any(
                self.can_agent_be_active_any_channel(agent_name, p)
                for p in range(end + 1)
            ):
                values.append(float(penalty))
            # another prover's, before the verdict: the episode ends with nothing
            if any(
                self.can_agent_be_active_any_channel(other, p)
                for other in self.prover_names
                if other != agent_name
                for p in range(end)
            ):
                values.append(0.0)
        return min(values), max(values)

    def max_reward(self, agent_name: str) -> float:
        if agent_name == self.verifier_name:
            return self._verifier_reward_range()[1]
        if agent_name in self.prover_names:
            return self._prover_reward_range(agent_name)[1]
        raise KeyError(f"no agent {agent_name!r} in {type(self).__name__}")

    def min_reward(self, agent_name: str) -> float:
        if agent_name == self.verifier_name:
            return self._verifier_reward_range()[0]
        if agent_name in self.prover_names:
            return self._prover_reward_range(agent_name)[0]
        raise KeyError(f"no agent {agent_name!r} in {type(self).__name__}")
