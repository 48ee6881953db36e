"""Hand-built rollouts and readers of what the test server was asked to train."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nip_core.text.rollouts import TextRollouts


def prover_verifier_rollouts(
    verifier_rewards: Sequence[float],
    prover_rewards: Sequence[float],
    labels: Sequence[int],
    verdicts: Sequence[int],
    *,
    prover_silent: Sequence[int] = (),
) -> TextRollouts:
    """Episodes of two rounds: the prover argues (round 0), the verifier decides
    (round 1) with ``Decision: accept|reject``; each return is paid in round 1.

    Episode ``b``'s texts name it (``"prover text 3"``) so tests can tell examples
    apart; episodes in ``prover_silent`` have no prover turn.
    """
    count = len(verifier_rewards)
    rollouts = TextRollouts(
        ["prover", "verifier"],
        ["main"],
        2,
        [{"number": b, "y": int(labels[b])} for b in range(count)],
    )
    for b in range(count):
        rollouts["datapoint_index"][b] = b
        rollouts["sample_key"][b] = f"train/0/{b}"
        rollouts["verdict"][b] = verdicts[b]
        rollouts["done"][b] = [False, True]
        if b not in prover_silent:
            rollouts["agents.active"][b, 0, 0] = True
            rollouts["agents.prompt"][b, 0, 0] = [
                {"role": "system", "content": "You are the prover."},
                {"role": "user", "content": f"Argue about {b}."},
            ]
            rollouts["agents.raw_output"][b, 0, 0] = f"prover text {b}"
            rollouts["agents.message"][b, 0, 0, 0] = f"prover text {b}"
        rollouts["agents.active"][b, 1, 1] = True
        rollouts["agents.prompt"][b, 1, 1] = [
            {"role": "system", "content": "You are the verifier."},
            {"role": "user", "content": f"Prover: prover text {b}"},
        ]
        word = "accept" if verdicts[b] == 1 else "reject"
        rollouts["agents.raw_output"][b, 1, 1] = f"verifier text {b}\nDecision: {word}"
        rollouts["agents.decision"][b, 1, 1] = verdicts[b]
        rollouts["agents.reward"][b, 1] = [prover_rewards[b], verifier_rewards[b]]
    return rollouts


def last_text(chat: Sequence[dict[str, str]]) -> str:
    return chat[-1]["content"]


def jobs_by_name(server: Any) -> dict[str, dict[str, Any]]:
    """Every finished job of the test server by its nip name: ``base_model``,
    ``method`` and ``examples`` (as uploaded)."""
    out = {}
    for job in server.jobs.values():
        name = (job.get("metadata") or {}).get("nip_job")
        model = server.models.get(job.get("fine_tuned_model") or "")
        if not name or model is None:
            continue
        method, examples = model.training[-1]
        out[name] = {"base_model": job["model"], "method": method, "examples": examples}
    return out
