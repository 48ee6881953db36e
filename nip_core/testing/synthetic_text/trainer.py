"""``synthetic_text_sft``: a small staged trainer for the core's text-world tests.

Each shared model group is fine-tuned (supervised) on the chats of its agents in the
episodes where that agent's return is above the middle of its reward range.
"""

from __future__ import annotations

from typing import Any

from nip_core.text.rollouts import TextRollouts
from nip_core.trainers.text import PureTextRlTrainer

__all__ = ["PositiveReturnSftTrainer"]


class PositiveReturnSftTrainer(PureTextRlTrainer):
    """Supervised fine-tuning on each agent's better-than-middling episodes."""

    def _stage_create_fine_tune_jobs(self, rollouts: TextRollouts) -> dict[str, Any]:
        rollouts = self.rollouts_for_fine_tuning()
        handler = self.protocol_handler
        returns = rollouts.episode_reward
        summary: dict[str, Any] = {}
        for group in self.shared_model_groups.values():
            examples = []
            for agent_name in group.agent_names:
                a = rollouts.agent_index(agent_name)
                middle = handler.reward_mid_point_estimate(agent_name)
                for b in range(rollouts.batch_size):
                    if returns[b, a] <= middle:
                        continue
                    chat = rollouts.agent_chat(b, agent_name)
                    if chat is not None:
                        examples.append(chat)
            self.create_fine_tune_job(group, "supervised", examples, summary)
        return summary
