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
