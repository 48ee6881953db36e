"""Migrations of saved parameter dicts for this plugin's sections and agents."""

from __future__ import annotations

import copy
from typing import Any

SECTION_RENAMES = {"num_conv_groups": "num_block_groups"}
"""Names the original library once used in ``image_classification``."""

AGENT_RENAMES = {"num_convs_per_group": "num_blocks_per_group"}
"""Names the original library once used in image classification agents."""


def original_to_0_1(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert the original library's image classification names to ours.

    Early versions of the original called the block groups "conv groups"
    (``image_classification.num_conv_groups``, ``agents.*.num_convs_per_group``);
    they are ``num_block_groups`` and ``num_blocks_per_group`` here.
    """
    params = copy.deepcopy(params)
    changes: list[str] = []
    section = params.get("image_classification")
    if isinstance(section, dict):
        for old, new in SECTION_RENAMES.items():
            if old in section:
                section[new] = section.pop(old)
                changes.append(f"image_classification.{old} renamed to {new}")
    agents = params.get("agents")
    if params.get("scenario") == "image_classification" and isinstance(agents, dict):
        for name, agent in agents.items():
            if not isinstance(agent, dict):
                continue
            for old, new in AGENT_RENAMES.items():
                if old in agent:
                    agent[new] = agent.pop(old)
                    changes.append(f"agents.{name}.{old} renamed to {new}")
    return params, changes
