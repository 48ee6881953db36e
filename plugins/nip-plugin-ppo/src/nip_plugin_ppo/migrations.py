"""Migrations of saved parameter dicts for the PPO plugin's sections."""

from __future__ import annotations

import copy
from typing import Any

SPG_RENAMES = {
    "sos_a_param": "sos_scaling_factor",
    "sos_b_param": "sos_threshold_factor",
}
"""Old ``spg`` field names of the original library and their names here."""


def original_to_0_1(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert the original library's ``ppo`` / ``vanilla_ppo`` / ``spg`` sections.

    The original's ``spg`` section named the SOS coefficients ``sos_a_param`` and
    ``sos_b_param``; here they are ``sos_scaling_factor`` and
    ``sos_threshold_factor``.
    """
    params = copy.deepcopy(params)
    changes: list[str] = []
    spg = params.get("spg")
    if isinstance(spg, dict):
        for old, new in SPG_RENAMES.items():
            if old in spg:
                spg[new] = spg.pop(old)
                changes.append(f"spg.{old} renamed to spg.{new}")
    return params, changes
