"""``pure_text_ei``: expert iteration on the staged text trainer.

Each iteration samples ``text_rl.rollouts_per_iteration`` episodes, logs their
statistics, tests when ``text_rl.test_scheme`` says so, then fine-tunes every shared
model group (supervised) on the examples :mod:`nip_plugin_ei.selection` picks for
its agents; frozen groups and groups with fewer than ``text_rl.min_fine_tune_examples``
examples keep their model. A group is fine-tuned from its starting model or from its
latest one (the agents' ``fine_tune_from_scratch``).

Besides the staged trainer's metrics, each iteration logs what the selection did
(``fine_tune.`` prefixed, at the iteration's step, once its jobs are done):
``guess_replacement_proportion`` and, per agent, ``<agent>.num_selected``,
``<agent>.num_invalid_excluded``, ``<agent>.num_guess_replaced`` (verifiers),
``<agent>.selected_mean_episode_reward`` and ``<agent>.selected_accuracy``
(verifiers), next to the staged trainer's
``<group>.num_examples`` and ``<group>.fine_tuned``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nip_core.errors import PluginError
from nip_core.text.agents import TextWholeAgent
from nip_core.text.parsing import verdict_text
from nip_core.text.rollouts import TextRollouts
from nip_core.text.sampling import turn_contexts
from nip_core.trainers.text import PureTextRlTrainer
from nip_plugin_ei.selection import (
    AgentSelection,
    SelectionRule,
    select_agent_examples,
)

__all__ = ["PureTextEiTrainer"]


class PureTextEiTrainer(PureTextRlTrainer):
    """Expert iteration: supervised fine-tuning on each agent's best episodes."""

    def select_examples(
        self, rollouts: TextRollouts, iteration: int
    ) -> dict[str, AgentSelection]:
        """Every model-backed agent's selection at ``iteration`` (by agent name)."""
        rule = SelectionRule.from_parameters(self.hyper_params.pure_text_ei)
        proportion = self.text_rl.guess_replacement_proportion(iteration)
        verifiers = set(self.protocol_handler.verifier_names)
        spectrum = str(self.hyper_params.protocol_common.verifier_decision_spectrum)
        selections = {}
        for group in self.shared_model_groups.values():
            for agent_name in group.agent_names:
                selections[agent_name] = select_agent_examples(
                    rollouts,
                    agent_name,
                    rule,
                    seed=int(self.hyper_params.seed),
                    iteration=iteration,
                    guess_replacement_proportion=(
                        proportion if agent_name in verifiers else 0.0
                    ),
                    spectrum=spectrum,
                    write_verdict=self._verdict_writer(
                        rollouts, group.agents[agent_name]
                    ),
                    verdict_counts=(
                        self._verdict_counts(rollouts, agent_name)
                        if agent_name in verifiers
                        else None
                    ),
                    keep_reasoning=(
                        self.text_rl.verifier_guess_replacement_keeps_reasoning
                    ),
                )
        return selections

    def _verdict_counts(self, rollouts: TextRollouts, agent_name: str) -> np.ndarray:
        """bool ``(batch,)``: whether a verdict on ``agent_name``'s last turn of
        each episode counts (the protocol's decision mask at that round and the
        episode's seed: a verifier turn from ``min_message_rounds - 1`` on);
        ``False`` where the agent never spoke."""
        import torch

        a = rollouts.agent_index(agent_name)
        active = np.asarray(rollouts["agents.active"][:, :, a], dtype=bool)
        spoke = active.any(axis=1)
        rounds = active.shape[1] - 1 - np.argmax(active[:, ::-1], axis=1)
        handler = self.protocol_handler
        mask = handler.get_decision_mask_from_rounds_and_seed(
            torch.as_tensor(rounds, dtype=torch.long),
            torch.as_tensor(np.asarray(rollouts["seed"]), dtype=torch.long),
        )
        counts = np.asarray(mask[..., handler.agent_index(agent_name)].cpu())
        return spoke & counts.astype(bool).reshape(-1)

    def _verdict_writer(
        self, rollouts: TextRollouts, agent: TextWholeAgent
    ) -> Callable[[int, str, int], str]:
        """``write(episode, text, decision)``: the agent's
        :meth:`~nip_core.text.agents.TextWholeAgent.write_verdict`, checked: its
        :meth:`~nip_core.text.agents.TextWholeAgent.parse_response` must read the
        rewritten response of the agent's last turn in ``episode`` as
        ``decision``, or the guess replacement would teach a verdict the scenario
        does not read (a scenario that reads its own verdict format but writes
        ``Decision:`` ones)."""
        environment = self.train_environment
        a = rollouts.agent_index(agent.agent_name)

        def write(episode: int, text: str, decision: int) -> str:
            written = agent.write_verdict(text, decision)
            round_id = int(np.flatnonzero(rollouts["agents.active"][episode, :, a])[-1])
            contexts = turn_contexts(
                environment, [agent.agent_name], rollouts, round_id, [episode]
            )
            parsed = agent.parse_response(contexts[0][1], written) if contexts else None
            if parsed is None or not parsed.valid or parsed.decision != decision:
                reads = (
                    "nothing (not its turn)"
                    if parsed is None
                    else parsed.reason
                    if not parsed.valid
                    else f"decision {parsed.decision}"
                )
                raise PluginError(
                    f"guess replacement: {type(agent).__name__}.write_verdict wrote "
                    f"{written!r} for decision {decision} "
                    f"({verdict_text(decision, agent.spectrum)}), but its "
                    f"parse_response reads {reads}: a scenario that reads verdicts "
                    "in its own format must override write_verdict (and "
                    "verdict_instruction) to match"
                )
            return written

        return write

    def _stage_create_fine_tune_jobs(self, rollouts: TextRollouts) -> dict[str, Any]:
        rollouts = self.rollouts_for_fine_tuning()
        iteration = self.state.iteration
        verifiers = set(self.protocol_handler.verifier_names)
        selections = self.select_examples(rollouts, iteration)
        summary: dict[str, Any] = {
            "guess_replacement_proportion": (
                self.text_rl.guess_replacement_proportion(iteration)
            )
        }
        for group in self.shared_model_groups.values():
            examples = []
            for agent_name in group.agent_names:
                selection = selections[agent_name]
                examples.extend(selection.examples)
                summary.update(
                    selection.summary(rollouts, is_verifier=agent_name in verifiers)
                )
            self.create_fine_tune_job(group, "supervised", examples, summary)
        return summary
