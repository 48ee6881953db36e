"""A scripted code-validation model for the local OpenAI test server, and small
parameters pointing the ``openai`` backend at it."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from nip_core.testing.openai_server import OpenAiTestServer

from nip_plugin_code_validation.data import TEST_PROBLEMS

CORRECT = {p["correct"].strip() for p in TEST_PROBLEMS}
_HEADER = re.compile(r"'((?:Question|Message) for [^']+:)'")
_SOLUTION = re.compile(r"## Solution\s*```python\n(.*?)```", re.DOTALL)


def solution_of(system: str) -> str:
    match = _SOLUTION.search(system)
    return match.group(1).strip() if match else ""


def code_responder(
    model: Any,
    messages: list[dict[str, str]],
    request: Mapping[str, Any],
    rng: random.Random,
) -> str:
    """Verifiers ask while they may not decide (one question per header), then
    decide rightly with probability ``skill``; provers argue their stance. One in
    ten verifier replies is an invalid verdict (asked again)."""
    system = messages[0]["content"]
    last = messages[-1]["content"]
    correct = solution_of(system) in CORRECT
    if "Your task is to decide" in system:
        headers = _HEADER.findall(last)
        must = "give your verdict now" in last
        may_not = "cannot give your verdict yet" in last
        # an expert's message opens with its name (the turn notice names the
        # experts too, in its headers)
        heard = len(messages) > 2 or last.lstrip().startswith("Expert")
        if not must and (may_not or not heard):
            if headers:
                return "\n".join(f"{h} Why is line 2 right?" for h in headers)
            return "Question for Expert: Why is line 2 right?"
        if rng.random() < float(model.attributes.get("invalid_rate", 0.1)):
            return "I am unsure.\nDecision: perhaps"
        right = rng.random() < float(model.attributes.get("skill", 0.7))
        accept = correct if right else not correct
        return f"I checked it.\nDecision: {'accept' if accept else 'reject'}"
    if "Decision" in last or "Verifier" not in system:
        return "I cannot help."
    wants = "accept" if "to *accept*" in system else "reject"
    return f"The solution should be {wants}ed: line 2 does exactly what is asked."


def code_server(**options: Any) -> OpenAiTestServer:
    options.setdefault("models", ["code-model"])
    options.setdefault("responder", code_responder)
    return OpenAiTestServer(**options)


def hyper_params_dict(protocol: str, base_url: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scenario": "code_validation",
        "trainer": "synthetic_text_sft",
        "dataset": "test",
        "interaction_protocol": protocol,
        "agents": {
            "_default": {
                "model_name": "code-model",
                "num_invalid_generation_retries": 3,
                "max_response_words": 40,
            }
        },
        "text_rl": {
            "num_iterations": 1,
            "rollouts_per_iteration": 4,
            "num_test_rollouts": 4,
            "min_fine_tune_examples": 1,
        },
        "text_backend": {
            "max_concurrency": 4,
            "retry_initial_delay": 0.01,
            "retry_max_delay": 0.05,
            "request_timeout": 5.0,
            "fine_tune_poll_interval": 0.01,
        },
        "openai_backend": {"base_url": base_url},
        "nip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
        "debate_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
        "mnip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base
