"""The verifier's decisions and decision restrictions, as plain integers (no torch).

Shared by the protocol handlers (:mod:`nip_core.protocols.base`) and the text world,
which reads verdicts out of text without importing torch.
"""

from __future__ import annotations

__all__ = [
    "DECISION_ACCEPT",
    "DECISION_CONTINUE",
    "DECISION_NEITHER",
    "DECISION_REJECT",
    "RESTRICTION_CONTINUE_ONLY",
    "RESTRICTION_GUESS_ONLY",
    "RESTRICTION_NONE",
    "spectrum_allows_neither",
]

DECISION_REJECT = 0
DECISION_ACCEPT = 1
DECISION_CONTINUE = 2
DECISION_NEITHER = 3
"""Text worlds: the verifier ends the episode neither accepting nor rejecting."""

RESTRICTION_NONE = 0
"""Decision restriction: the verifier may reject, accept or continue."""
RESTRICTION_CONTINUE_ONLY = 1
"""Decision restriction: a verdict would be ignored (not the verifier's turn, or
before round ``min_message_rounds - 1``)."""
RESTRICTION_GUESS_ONLY = 2
"""Decision restriction: the verifier's last possible turn; continuing can only end in
termination."""


def spectrum_allows_neither(spectrum: str) -> bool:
    """Whether a verdict on the scale ``spectrum``
    (``protocol_common.verifier_decision_spectrum``) can be "neither accept nor
    reject" (:data:`DECISION_NEITHER`): a scale with a middle, such as
    ``likert_scale_5`` (3), ``out_of_10`` (5) or ``likert_scale`` (undecided).
    ``accept_reject``, even Likert scales and ``likert_scale_no_undecided`` have
    none, and neither has the tensor world, whose verifier rejects, accepts or
    continues."""
    if spectrum in ("accept_reject", "likert_scale_no_undecided"):
        return False
    if spectrum.startswith("likert_scale_"):
        size = spectrum.removeprefix("likert_scale_")
        return not size.isdigit() or int(size) % 2 == 1
    return True
