"""Reading verdicts out of text on every verdict spectrum."""

from __future__ import annotations

import pytest

from nip_core.protocols.parameters import VERIFIER_DECISION_SPECTRUM_CHOICES
from nip_core.text.parsing import describe_spectrum, parse_decision, verdict_text

ACCEPT, REJECT, CONTINUE, NEITHER = 1, 0, 2, 3


@pytest.mark.parametrize(
    ("text", "decision", "body"),
    [
        ("The code is fine.\nDecision: accept", ACCEPT, "The code is fine."),
        (
            "It fails on empty input.\ndecision: REJECT.",
            REJECT,
            "It fails on empty input.",
        ),
        # markdown around the label: a verdict, and no stray markup left behind
        ("**Decision:** accept", ACCEPT, ""),
        ("Some reasoning.\n**Decision**: accept", ACCEPT, "Some reasoning."),
        ("__Decision__: reject", REJECT, ""),
        ("Checked.\n### Decision: reject", REJECT, "Checked."),
        ("I need to know more.", CONTINUE, "I need to know more."),
        # other words ending in "decision" are not the label
        ("My indecision: none yet.", CONTINUE, "My indecision: none yet."),
        # the last Decision: counts
        ("Decision: accept? No.\nDecision: reject", REJECT, "Decision: accept? No."),
        # typographic quotes and full-width punctuation around the verdict (chat
        # models write them) are decoration too
        ("Decision: \u201caccept\u201d", ACCEPT, ""),
        ("Decision: \u2018reject\u2019.", REJECT, ""),
        ("Decision: accept\u3002", ACCEPT, ""),
        ("Decision: reject\uff01", REJECT, ""),
    ],
)
def test_accept_reject(text, decision, body):
    parsed = parse_decision(text)
    assert parsed.valid
    assert parsed.decision == decision
    assert parsed.text == body


@pytest.mark.parametrize(
    "text",
    [
        "Decision: maybe",
        "**Decision**: maybe",
        "Decision:",
        "Final decision: acceptable-ish",
        # an echo of the prompt is not a verdict (it was read as its first word)
        "Decision: accept or reject?",
        "Decision: accept/reject",
        "Decision: accept, unless line 2 is wrong, in which case reject",
        # the response must end with the verdict
        "Decision: accept\n\nBut first, Question for Expert: why line 3?",
        "Decision: reject. Wait, the code is fine.",
    ],
)
def test_decision_without_a_verdict_is_invalid(text):
    parsed = parse_decision(text)
    assert not parsed.valid
    assert parsed.decision == CONTINUE
    assert "'accept' or 'reject'" in parsed.reason


@pytest.mark.parametrize(
    ("spectrum", "statement", "decision"),
    [
        ("likert_scale_4", "1", REJECT),
        ("likert_scale_4", "2", REJECT),
        ("likert_scale_4", "3", ACCEPT),
        ("likert_scale_5", "3", NEITHER),
        ("likert_scale_5", "5", ACCEPT),
        ("likert_scale_7", "4", NEITHER),
        ("likert_scale_6", "4", ACCEPT),
        ("out_of_10", "5", NEITHER),
        ("out_of_10", "0", REJECT),
        ("out_of_10", "7/10", ACCEPT),
        ("out_of_10", "**3 out of 10**", REJECT),
        ("out_of_100", "49", REJECT),
        ("out_of_100", "50", NEITHER),
        ("likert_scale", "strongly accept", ACCEPT),
        ("likert_scale", "Undecided", NEITHER),
        ("likert_scale", "strongly reject", REJECT),
        ("likert_scale_no_undecided", "accept", ACCEPT),
    ],
)
def test_scales(spectrum, statement, decision):
    parsed = parse_decision(f"Some reasoning.\nDecision: {statement}", spectrum)
    assert parsed.valid, parsed.reason
    assert parsed.decision == decision


@pytest.mark.parametrize(
    ("spectrum", "statement"),
    [
        ("likert_scale_4", "5"),
        ("likert_scale_5", "0"),
        ("out_of_10", "11"),
        ("likert_scale_no_undecided", "undecided"),
        ("accept_reject", "3"),
        ("out_of_10", "7/100"),
        ("likert_scale", "strongly accept or reject"),
    ],
)
def test_out_of_scale_is_invalid(spectrum, statement):
    assert not parse_decision(f"Decision: {statement}", spectrum).valid


@pytest.mark.parametrize("spectrum", VERIFIER_DECISION_SPECTRUM_CHOICES)
def test_written_verdicts_parse_back(spectrum):
    for decision in (ACCEPT, REJECT):
        text = f"Decision: {verdict_text(decision, spectrum)}"
        assert parse_decision(text, spectrum).decision == decision
    assert describe_spectrum(spectrum)


@pytest.mark.parametrize("spectrum", VERIFIER_DECISION_SPECTRUM_CHOICES)
def test_a_scale_allows_neither_exactly_when_some_verdict_parses_to_it(spectrum):
    # the reward ranges (MALT's labels) count "neither" only where it can happen
    from nip_core.protocols.decisions import spectrum_allows_neither

    statements = ("undecided", "neither", *map(str, range(101)))
    parsed = {
        parse_decision(f"Decision: {statement}", spectrum).decision
        for statement in statements
    }
    assert spectrum_allows_neither(spectrum) == (NEITHER in parsed)
