"""Migrations of saved parameter dicts for this plugin's section."""

from __future__ import annotations

import copy
from typing import Any

SECTION_RENAMES = {
    "app_difficulty": "apps_difficulty",
    "app_solution_number": "apps_solution_number",
}
"""Names early versions of the original library used in ``code_validation``."""


def original_to_0_1(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert the original library's ``code_validation`` section to ours.

    The original wrote every section into every saved dict, so a graph isomorphism
    or image classification run's dict holds one too. Its early names
    (``app_difficulty``, ``app_solution_number``) are renamed;
    ``system_prompt_version`` (the original's prompt set, ``"v1"`` or ``"v2"``) is
    dropped: this plugin has one set of prompts of its own, so a dict that chose
    one of the original's cannot have it back.
    """
    params = copy.deepcopy(params)
    section = params.get("code_validation")
    if not isinstance(section, dict):
        return params, []
    changes: list[str] = []
    for old, new in SECTION_RENAMES.items():
        if old in section:
            value = section.pop(old)
            if new in section:
                changes.append(f"code_validation.{old} dropped ({new} is set)")
            else:
                section[new] = value
                changes.append(f"code_validation.{old} renamed to {new}")
    if "system_prompt_version" in section:
        version = section.pop("system_prompt_version")
        changes.append(
            f"code_validation.system_prompt_version {version!r} dropped: this "
            "plugin's prompts are its own (docs/scenarios/code-validation.md), not "
            "the original library's versions"
        )
    return params, changes


SANDBOX_FIELDS = ("sandbox_wall_time", "sandbox_memory_mb")
"""Fields of 0.1.0's ``code_validation`` section that no run read: the sandbox runs
only when a dataset is built, with the builder's options of these names."""


def sandbox_limits_to_builder(
    params: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """Drop 0.1.0's ``code_validation.sandbox_wall_time`` and ``sandbox_memory_mb``.

    No run read them (a run executes no code: the sandbox runs when a dataset is
    built), so dropping them changes nothing a saved run did; the limits are now
    the options ``--sandbox-wall-time`` and ``--sandbox-memory-mb`` of ``nip datasets
    generate code_validation``.
    """
    params = copy.deepcopy(params)
    section = params.get("code_validation")
    if not isinstance(section, dict):
        return params, []
    changes = []
    for name in SANDBOX_FIELDS:
        if name in section:
            value = section.pop(name)
            option = "--" + name.replace("_", "-")
            changes.append(
                f"code_validation.{name} ({value!r}) dropped: no run read it; the "
                f"sandbox's limits are {option} of nip datasets generate "
                "code_validation"
            )
    return params, changes
