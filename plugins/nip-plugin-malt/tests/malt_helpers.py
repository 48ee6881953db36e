"""Hand-built response trees and readers of what the test server was asked to
train."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nip_core.text.rollouts import TextRollouts
from nip_plugin_malt.tree import BRANCH_SEPARATOR

AGENTS = ["prover", "verifier"]
SPEAKER = {0: "prover", 1: "verifier", 2: "prover"}
"""Who speaks in each round of the hand-built trees."""


def hand_built_trees(
    leaves: Mapping[str, Mapping[str, Any]], max_rounds: int = 2
) -> TextRollouts:
    """Rollouts whose episodes are the given leaves.

    ``leaves`` maps a sample key (``"root#0.1"``) to ``{"returns": (prover,
    verifier), "texts": [...], "invalid": [round, ...]}``: the branch path names the
    rounds played; round ``r``'s speaker (:data:`SPEAKER`) says ``texts[r]`` (by
    default ``"<speaker> <key prefix>"``, so siblings differ), its prompt is
    ``"prompt <parent key>"``; every return is paid in the last played round.
    """
    rollouts = TextRollouts(
        AGENTS, ["main"], max_rounds, [{"y": 1} for _ in leaves], iteration=0
    )
    for b, (key, leaf) in enumerate(leaves.items()):
        root, _, path = key.partition(BRANCH_SEPARATOR)
        branches = path.split(".") if path else []
        played = len(branches)
        rollouts["sample_key"][b] = key
        texts = leaf.get("texts")
        for r in range(max_rounds):
            if r >= played:
                rollouts["padding"][b, r] = True
                rollouts["done"][b, r] = True
                continue
            a = AGENTS.index(SPEAKER[r])
            prefix = root + ("#" + ".".join(branches[: r + 1]))
            parent = root if r == 0 else root + "#" + ".".join(branches[:r])
            text = texts[r] if texts else f"{SPEAKER[r]} {prefix}"
            rollouts["agents.active"][b, r, a] = True
            rollouts["agents.prompt"][b, r, a] = [
                {"role": "system", "content": f"You are the {SPEAKER[r]}."},
                {"role": "user", "content": f"prompt {parent}"},
            ]
            rollouts["agents.raw_output"][b, r, a] = text
            rollouts["agents.message"][b, r, a, 0] = text
            rollouts["agents.valid_response"][b, r, a] = r not in leaf.get(
                "invalid", ()
            )
            rollouts["done"][b, r] = r == played - 1
        rollouts["agents.reward"][b, played - 1] = leaf["returns"]
    return rollouts


def dpo_jobs_by_name(server: Any) -> dict[str, dict[str, Any]]:
    """Every finished job of the test server by its nip name: ``base_model``,
    ``method`` and ``pairs`` as ``(prompt messages, chosen, rejected)``."""
    out = {}
    for job in server.jobs.values():
        name = (job.get("metadata") or {}).get("nip_job")
        model = server.models.get(job.get("fine_tuned_model") or "")
        if not name or model is None:
            continue
        method, examples = model.training[-1]
        out[name] = {
            "base_model": job["model"],
            "method": method,
            "pairs": [
                (
                    e["input"]["messages"],
                    e["preferred_output"][0]["content"],
                    e["non_preferred_output"][0]["content"],
                )
                for e in examples
            ],
        }
    return out


def keys(pairs: Sequence[Any]) -> list[tuple[str, str, str]]:
    return [(p.node_key, p.chosen_key, p.rejected_key) for p in pairs]
