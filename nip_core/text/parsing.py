"""Reading verdicts out of text: the ``Decision:`` line and the verdict scales.

A text verifier states its verdict on a line ``Decision: <verdict>``. What a verdict
may be depends on ``protocol_common.verifier_decision_spectrum``:

==============================  =====================================================
spectrum                        verdicts (reject / neither / accept)
==============================  =====================================================
``accept_reject``               ``reject`` / — / ``accept``
``likert_scale_4`` .. ``_7``    an integer from 1 to N: the lower half rejects, the
                                upper half accepts, the middle (odd N) is neither
``likert_scale``                ``strongly reject``, ``reject`` / ``undecided`` /
                                ``accept``, ``strongly accept``
``likert_scale_no_undecided``   as ``likert_scale`` without ``undecided``
``out_of_10``, ``out_of_100``   an integer score: below the middle rejects, the
                                middle (5, 50) is neither, above accepts
==============================  =====================================================

A response that contains ``decision:`` (any case) without a valid verdict after it is
invalid (and asked again); one without it makes no decision.
"""

from __future__ import annotations

import re

import attrs

from nip_core.protocols.decisions import (
    DECISION_ACCEPT,
    DECISION_CONTINUE,
    DECISION_NEITHER,
    DECISION_REJECT,
)

__all__ = [
    "DecisionParse",
    "describe_spectrum",
    "parse_decision",
    "verdict_text",
    "write_decision",
]

# the label, markdown around it included (``**Decision**:``, ``**Decision:**``,
# ``### Decision:``), so that the text before it keeps no stray markup
_DECISION = re.compile(
    r"(?:[*_#]+[ \t]*)?(?<![a-z])decision(?![a-z])[*_ \t]*:", re.IGNORECASE
)

_LIKERT_WORDS = {
    "strongly reject": DECISION_REJECT,
    "strongly accept": DECISION_ACCEPT,
    "reject": DECISION_REJECT,
    "accept": DECISION_ACCEPT,
    "undecided": DECISION_NEITHER,
}


@attrs.frozen
class DecisionParse:
    """What a response says about the verdict.

    Parameters
    ----------
    decision : int
        0 reject, 1 accept, 2 continue (no ``Decision:``), 3 neither.
    text : str
        The response without the ``Decision:`` line and what follows it.
    valid : bool
        False when ``Decision:`` is followed by no verdict of the spectrum.
    reason : str | None
        Why it is invalid.
    """

    decision: int
    text: str
    valid: bool = True
    reason: str | None = None


def _integer_scale(spectrum: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"likert_scale_(\d+)", spectrum)
    if match:
        return 1, int(match.group(1))
    if spectrum == "out_of_10":
        return 0, 10
    if spectrum == "out_of_100":
        return 0, 100
    return None


def _from_integer(value: int, low: int, high: int) -> int:
    mid2 = low + high  # twice the middle, to stay in integers
    if 2 * value < mid2:
        return DECISION_REJECT
    if 2 * value > mid2:
        return DECISION_ACCEPT
    return DECISION_NEITHER


_DECORATION = "*_`\"'.!\u201c\u201d\u2018\u2019\u3002\uff01"
"""Markdown and punctuation around a verdict (``**accept**``, ``reject.``), the
typographic quotes and full-width stops chat models also write (``“accept”``,
``accept。``)."""


def _verdict(spectrum: str, statement: str) -> int | None:
    """The verdict ``statement`` is, or ``None`` unless it is exactly one verdict
    of the spectrum (wrapped in markdown or punctuation at most): ``accept or
    reject?``, an echo of the prompt, and ``accept, unless ...`` are not verdicts.
    An integer scale also takes ``7/10`` and ``7 out of 10`` (out of its top)."""
    words = " ".join(statement.split()).strip(_DECORATION + " ").lower()
    scale = _integer_scale(spectrum)
    if scale is not None:
        match = re.fullmatch(r"(\d+)(?:\s*(?:/|out of)\s*(\d+))?", words)
        if not match:
            return None
        value = int(match.group(1))
        low, high = scale
        if match.group(2) is not None and int(match.group(2)) != high:
            return None
        if not low <= value <= high:
            return None
        return _from_integer(value, low, high)
    if spectrum == "accept_reject":
        allowed = {"accept": DECISION_ACCEPT, "reject": DECISION_REJECT}
    else:
        allowed = dict(_LIKERT_WORDS)
        if spectrum == "likert_scale_no_undecided":
            del allowed["undecided"]
    return allowed.get(words)


def parse_decision(text: str, spectrum: str = "accept_reject") -> DecisionParse:
    """Find the verdict of a response: the last ``Decision:`` counts, and the
    response must end with one verdict of the spectrum after it (nothing but
    markdown, punctuation and whitespace around it). A response that says
    ``Decision:`` and does not is invalid (asked again): ``Decision: accept or
    reject?`` echoes the prompt, and ``Decision: accept`` followed by a question
    goes on talking."""
    matches = list(_DECISION.finditer(text))
    if not matches:
        return DecisionParse(DECISION_CONTINUE, text.strip())
    last = matches[-1]
    verdict = _verdict(spectrum, text[last.end() :])
    before = text[: last.start()].strip()
    if verdict is None:
        return DecisionParse(
            DECISION_CONTINUE,
            before,
            valid=False,
            reason=(
                "the response says 'Decision:' but does not end with one verdict "
                f"of the scale {spectrum!r} ({describe_spectrum(spectrum)}) after it"
            ),
        )
    return DecisionParse(verdict, before)


def describe_spectrum(spectrum: str) -> str:
    """The verdicts a spectrum allows, in words (for prompts and messages)."""
    scale = _integer_scale(spectrum)
    if scale is not None:
        low, high = scale
        return (
            f"an integer from {low} (certainly incorrect) to {high} (certainly correct)"
        )
    if spectrum == "accept_reject":
        return "'accept' or 'reject'"
    if spectrum == "likert_scale_no_undecided":
        return "'strongly reject', 'reject', 'accept' or 'strongly accept'"
    return "'strongly reject', 'reject', 'undecided', 'accept' or 'strongly accept'"


def write_decision(text: str, decision: int, spectrum: str = "accept_reject") -> str:
    """``text`` with its verdict replaced by ``decision``: the text up to its last
    ``Decision:`` (all of it when it has none), then ``Decision: <verdict>`` on the
    ``spectrum``'s scale (:func:`verdict_text`); what :func:`parse_decision` reads
    as ``decision``."""
    statement = f"Decision: {verdict_text(decision, spectrum)}"
    before = parse_decision(str(text), spectrum).text
    return f"{before}\n\n{statement}" if before else statement


def verdict_text(decision: int, spectrum: str = "accept_reject") -> str:
    """The statement of a verdict on a spectrum (for written-in true verdicts)."""
    scale = _integer_scale(spectrum)
    if scale is not None:
        low, high = scale
        return str(high if decision == DECISION_ACCEPT else low)
    if decision == DECISION_ACCEPT:
        return "accept"
    if decision == DECISION_REJECT:
        return "reject"
    if spectrum.startswith("likert_scale") and spectrum != "likert_scale_no_undecided":
        return "undecided"
    raise ValueError(f"spectrum {spectrum!r} has no verdict for decision {decision}")
