"""Hand-built rollouts and readers of what the test server was asked to train."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from nip_core import hookimpl
from nip_core.protocols.decisions import (
    DECISION_ACCEPT,
    DECISION_CONTINUE,
    DECISION_REJECT,
)
from nip_core.records import AgentPartSpec, ScenarioSpec
from nip_core.testing.synthetic_text.model import scripted_responder
from nip_core.testing.synthetic_text.scenario import SyntheticTextAgent
from nip_core.text.agents import ParsedResponse
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


# --------------------------------------------------------------------------------------
# A scenario with its own verdict format: "Verdict: TRUE" / "Verdict: FALSE"

_VERDICT = re.compile(r"Verdict:\s*(TRUE|FALSE)\s*$")


class ReadsOwnVerdicts(SyntheticTextAgent):
    """Reads ``Verdict: TRUE|FALSE`` instead of ``Decision: accept|reject``, but
    writes verdicts the core's way (the defect the trainer must refuse)."""

    def verdict_instruction(self) -> str:
        return "end your response with 'Verdict: TRUE' or 'Verdict: FALSE'"

    def parse_response(self, context, text):
        if not text.strip():
            return ParsedResponse(valid=False, reason="the response is empty")
        if not self.is_verifier:
            return ParsedResponse(messages={c: text.strip() for c in context.channels})
        match = _VERDICT.search(text.strip())
        if match is None and "Verdict:" in text:
            return ParsedResponse(valid=False, reason="no TRUE or FALSE verdict")
        if match is None:
            return ParsedResponse(
                messages={c: text.strip() for c in context.channels},
                decision=DECISION_CONTINUE,
            )
        decision = DECISION_ACCEPT if match.group(1) == "TRUE" else DECISION_REJECT
        body = text.strip()[: match.start()].strip()
        return ParsedResponse(
            messages={c: body for c in context.channels}, decision=decision
        )


class OwnVerdictAgent(ReadsOwnVerdicts):
    """Reads and writes ``Verdict: TRUE|FALSE``."""

    def write_verdict(self, text, decision):
        body = _VERDICT.sub("", text.strip()).strip()
        word = "TRUE" if decision == DECISION_ACCEPT else "FALSE"
        return f"{body}\n\nVerdict: {word}" if body else f"Verdict: {word}"


def own_verdict_responder(model, messages, request, rng):
    """The scripted model, stating its verdicts as ``Verdict: TRUE|FALSE``."""
    text = scripted_responder(model, messages, request, rng)
    return re.sub(
        r"Decision: (\w+)",
        lambda m: {"accept": "Verdict: TRUE", "reject": "Verdict: FALSE"}.get(
            m.group(1), "Verdict: MAYBE"
        ),
        text,
    )


class OwnVerdictPlugin:
    """Registers ``own_verdict`` (and ``writes_decisions``, whose agent reads the
    scenario's verdicts but writes ``Decision:`` ones): the synthetic text scenario
    with another verdict format."""

    @hookimpl
    def register_scenarios(self):
        base = dict(
            unread_parameters=("test_size",),
            data_world="text",
            agent_parameters_class=(
                "nip_core.testing.synthetic_text.scenario:SyntheticTextAgentParameters"
            ),
            dataset_class=(
                "nip_core.testing.synthetic_text.scenario:SyntheticTextDataset"
            ),
            environment_class="nip_core.text.environment:TextEnvironment",
            default_dataset="tiny",
            datasets=("tiny", "small"),
        )
        return [
            ScenarioSpec(name="own_verdict", description="own verdicts", **base),
            ScenarioSpec(
                name="writes_decisions", description="mismatched verdicts", **base
            ),
        ]

    @hookimpl
    def register_agent_parts(self):
        return [
            AgentPartSpec(
                scenario="own_verdict",
                part="whole",
                part_class="ei_helpers:OwnVerdictAgent",
            ),
            AgentPartSpec(
                scenario="writes_decisions",
                part="whole",
                part_class="ei_helpers:ReadsOwnVerdicts",
            ),
        ]
