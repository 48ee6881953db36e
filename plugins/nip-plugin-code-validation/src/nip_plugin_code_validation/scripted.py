"""A scripted code-validation model, to run the scenario offline against nip's local
OpenAI-compatible test server (no API, no weights)::

    python -m nip_core.testing.openai_server --port 8765 --model code-model \\
        --responder nip_plugin_code_validation.scripted:responder \\
        --fine-tune-effect nip_plugin_code_validation.scripted:fine_tune_effect
    nip run --config-name code_validation/nip_pure_text_ei \\
        openai_backend.base_url=http://127.0.0.1:8765/v1 \\
        agents._default.model_name=code-model

It answers every protocol's prompts in the format they ask for: a verifier asks one
question per header while it may not decide or has heard no expert, then gives a
verdict, right with probability ``skill`` (a model attribute, 0.7 by default); one
in ten of its verdicts (``invalid_rate``) is not a verdict, which the agent asks
again. Verdicts are ``accept`` / ``reject``, or the ends of the integer scale the
prompt asks for (``protocol_common.verifier_decision_spectrum``). Provers argue
for the side their prompt gives them (with a shared reward, for the truth).
Whether a solution is correct is known for the shipped datasets (``test``,
``humaneval_buggy``); for another dataset the verifier guesses. A model
fine-tuned on verifier examples (:func:`fine_tune_effect`) moves its skill halfway
towards the share of right verdicts among them, so expert iteration visibly learns.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

__all__ = [
    "fine_tune_effect",
    "known_labels",
    "responder",
    "solution_of",
    "verdict_correct",
]

_HEADER = re.compile(r"'((?:Question|Message) for [^']+:)'")
_SOLUTION = re.compile(r"## Solution\s*```python\n(.*?)```", re.DOTALL)
_VERDICT = re.compile(r"decision\W*:\W*(accept|reject|\d+)\W*$", re.IGNORECASE)
# how the prompt states an integer verdict scale (nip_core.text.parsing's
# describe_spectrum: likert_scale_N, out_of_10, out_of_100)
_INTEGER_SCALE = re.compile(
    r"an integer from (\d+) \(certainly incorrect\) to (\d+) \(certainly correct\)"
)


def _verdict_word(system: str, accept: bool) -> str:
    """``accept`` / ``reject``, or the scale's ends when the prompt asks for an
    integer (``protocol_common.verifier_decision_spectrum``)."""
    scale = _INTEGER_SCALE.search(system)
    if scale is not None:
        return scale.group(2) if accept else scale.group(1)
    return "accept" if accept else "reject"


def _reads_as_accept(system: str, verdict: str) -> bool | None:
    """Whether a verdict the scripted verifier wrote is an accept (``None``: the
    middle of an integer scale, or an integer where the prompt asked for words)."""
    if verdict.lower() in ("accept", "reject"):
        return verdict.lower() == "accept"
    scale = _INTEGER_SCALE.search(system)
    if scale is None:
        return None
    low, high = int(scale.group(1)), int(scale.group(2))
    if 2 * int(verdict) == low + high:
        return None
    return 2 * int(verdict) > low + high


def solution_of(system: str) -> str:
    """The solution a system prompt shows (stripped), or ``""``."""
    match = _SOLUTION.search(system)
    return match.group(1).strip() if match else ""


@cache
def known_labels() -> dict[str, int]:
    """The label (1 correct, 0 buggy) of every solution of the shipped datasets,
    keyed by its stripped text."""
    from nip_plugin_code_validation.data import read_rows, shipped_path, test_rows

    labels: dict[str, int] = {}
    for split in ("train", "test"):
        rows = list(test_rows(split))
        path = shipped_path("humaneval_buggy", split)
        if path.is_file():
            rows.extend(read_rows(path))
        for row in rows:
            labels[str(row["solution"]).strip()] = int(row["y"])
    return labels


def responder(
    model: Any,
    messages: list[dict[str, str]],
    request: Mapping[str, Any],
    rng: random.Random,
) -> str:
    """A reply of the scripted model (see the module docstring)."""
    system = messages[0]["content"]
    last = messages[-1]["content"]
    attributes = getattr(model, "attributes", {}) or {}
    label = known_labels().get(solution_of(system))
    correct = bool(label) if label is not None else rng.random() < 0.5
    if system.startswith("You are grading the argument"):
        # the judge (code_validation_judge): an argument for the truth is graded
        # truthful, one against it is not
        stance = re.search(r"should be \*(\w+?)ed\*", system)
        truth = re.search(r"the solution is in fact (\w+)", system)
        honest = bool(stance and truth) and (stance.group(1) == "accept") == (
            truth.group(1) == "correct"
        )
        # (with a shared reward the expert was asked to help judge correctly)
        honest = honest or "judge the solution below correctly" in system
        return f"relevant: 8\ntruthful: {9 if honest else 2}"
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
            return "Why is line 2 right?"
        if rng.random() < float(attributes.get("invalid_rate", 0.1)):
            return "I am unsure.\nDecision: perhaps"
        right = rng.random() < float(attributes.get("skill", 0.7))
        accept = correct if right else not correct
        return f"I checked it.\nDecision: {_verdict_word(system, accept)}"
    if "Verifier" not in system:
        return "I cannot help."
    if "reach the *correct* verdict" in system:
        wants = "accept" if correct else "reject"
    else:
        wants = "accept" if "to *accept*" in system else "reject"
    return f"The solution should be {wants}ed: line 2 does exactly what is asked."


def verdict_correct(chat: list[Mapping[str, Any]]) -> bool | None:
    """Whether a verifier chat ends with the right verdict on a solution of a
    shipped dataset (``None``: not a verifier chat, no verdict, or an unknown
    solution)."""
    if not chat or "Your task is to decide" not in str(chat[0].get("content", "")):
        return None
    system = str(chat[0]["content"])
    label = known_labels().get(solution_of(system))
    match = _VERDICT.search(str(chat[-1].get("content", "")).strip())
    if label is None or match is None:
        return None
    accept = _reads_as_accept(system, match.group(1))
    if accept is None:
        return None
    return accept == bool(label)


def fine_tune_effect(parent: Any, method: str, examples: list[Any]) -> dict[str, Any]:
    """The skill of a model fine-tuned from ``parent``: halfway from the parent's
    towards the share of right verdicts in its verifier examples (DPO: chosen right
    and rejected not); unchanged without any."""
    skill = float((getattr(parent, "attributes", {}) or {}).get("skill", 0.7))
    marks: list[bool] = []
    for example in examples:
        if method == "dpo":
            prompt = list(example.get("input", {}).get("messages", []))
            chosen = example.get("preferred_output", [{}])[0].get("content", "")
            rejected = example.get("non_preferred_output", [{}])[0].get("content", "")
            good = verdict_correct([*prompt, {"role": "assistant", "content": chosen}])
            bad = verdict_correct([*prompt, {"role": "assistant", "content": rejected}])
            if good is not None:
                marks.append(bool(good and bad is not True))
        else:
            mark = verdict_correct(example.get("messages", []))
            if mark is not None:
                marks.append(mark)
    if not marks:
        return {"skill": skill}
    quality = sum(marks) / len(marks)
    return {"skill": min(1.0, max(0.0, skill + 0.5 * (quality - skill)))}
