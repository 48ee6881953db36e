"""The scripted model of the synthetic text scenario, for the local test server.

Pass :func:`scripted_responder` and :func:`scripted_fine_tune_effect` to
:class:`~nip_core.testing.openai_server.OpenAiTestServer` (the
``synthetic_text_server`` fixture does)::

    OpenAiTestServer(
        models=["scripted"],
        responder=scripted_responder,
        fine_tune_effect=scripted_fine_tune_effect,
    )

The verifier asks one question while it may not decide yet and has heard no prover
(under each header it is given when it speaks on several channels), then decides:
rightly with probability ``skill`` (model attribute, 0.5 by default). With
probability ``invalid_rate`` (0.1 by default) it writes a decision that is not a
verdict, which the agent asks again. Provers argue for their stance.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["scripted_fine_tune_effect", "scripted_responder", "verdict_correct"]

_NUMBER = re.compile(r"the number (\d+) is even")
_SPEAKER = re.compile(r"(?m)^Prover(?: \d+)?: ")
_HEADER = re.compile(r"'((?:Question|Message) for [^']+:)'")
_DECISION = re.compile(r"decision:\s*(accept|reject)", re.IGNORECASE)


def _number(messages: Sequence[Mapping[str, Any]]) -> int | None:
    match = _NUMBER.search(str(messages[0].get("content", "")))
    return int(match.group(1)) if match else None


def scripted_responder(
    model: Any,
    messages: list[dict[str, str]],
    request: Mapping[str, Any],
    rng: random.Random,
) -> str:
    """A reply of the scripted model (see the module docstring)."""
    system = str(messages[0].get("content", ""))
    number = _number(messages)
    if number is None:
        return "I do not know what to talk about."
    truth = number % 2 == 0
    if "You are the verifier" not in system:
        holds = "claim holds" in system
        return (
            f"{number} is {'even' if holds else 'odd'}: its last digit is "
            f"{number % 10}, so the claim {'holds' if holds else 'fails'}."
        )
    last = str(messages[-1].get("content", ""))
    heard_prover = any(
        m.get("role") == "user" and _SPEAKER.search(m["content"]) for m in messages
    )
    may_decide = "cannot give your verdict yet" not in last
    must_decide = "last turn" in last
    if not must_decide and (not may_decide or not heard_prover):
        question = f"why should I believe that {number} is even?"
        # speaking on several channels (debate, mnip): one part per header
        headers = _HEADER.findall(last)
        if headers:
            return "\n".join(f"{header} {question}" for header in headers)
        return f"Prover, {question}"
    attributes = getattr(model, "attributes", {})
    if rng.random() < float(attributes.get("invalid_rate", 0.1)):
        return "I am torn.\nDecision: maybe"
    right = rng.random() < float(attributes.get("skill", 0.5))
    accept = truth if right else not truth
    return f"I weighed the argument.\nDecision: {'accept' if accept else 'reject'}"


def verdict_correct(chat: Sequence[Mapping[str, Any]]) -> bool | None:
    """Whether a verifier chat ends with a correct verdict (``None``: no verdict, or
    not a verifier chat)."""
    if not chat or "You are the verifier" not in str(chat[0].get("content", "")):
        return None
    number = _number(chat)
    match = _DECISION.search(str(chat[-1].get("content", "")))
    if number is None or match is None:
        return None
    return (match.group(1).lower() == "accept") == (number % 2 == 0)


def _dpo_correct(example: Mapping[str, Any]) -> bool | None:
    prompt = example.get("input", {}).get("messages", [])
    chosen = example.get("preferred_output", [{}])[0].get("content", "")
    rejected = example.get("non_preferred_output", [{}])[0].get("content", "")
    good = verdict_correct([*prompt, {"role": "assistant", "content": chosen}])
    bad = verdict_correct([*prompt, {"role": "assistant", "content": rejected}])
    if good is None:
        return None
    return bool(good and bad is not True)


def scripted_fine_tune_effect(
    parent: Any, method: str, examples: list[Any]
) -> dict[str, Any]:
    """The skill of a fine-tuned model: halfway from its parent's towards the share
    of correct verdicts in its verifier examples (unchanged without any)."""
    skill = float(getattr(parent, "attributes", {}).get("skill", 0.5))
    if method == "dpo":
        marks = [_dpo_correct(e) for e in examples]
    else:
        marks = [verdict_correct(e.get("messages", [])) for e in examples]
    marks = [m for m in marks if m is not None]
    if not marks:
        return {"skill": skill}
    quality = sum(marks) / len(marks)
    return {"skill": min(1.0, max(0.0, skill + 0.5 * (quality - skill)))}
