"""The synthetic text scenario: a tiny text-world scenario for tests, with a scripted
model served by the local OpenAI-compatible test server.

A datapoint is a number ``n``; the claim is "n is even" (``y = 1`` iff it is). The
verifier asks a question, hears the prover(s), and decides; the provers argue for
their stance. :func:`~nip_core.testing.synthetic_text.model.scripted_responder`
plays every agent on the test server: its verifier is right with probability
``skill`` (0.5 for the base model ``scripted``), and
:func:`~nip_core.testing.synthetic_text.model.scripted_fine_tune_effect` raises the
skill of a fine-tuned model towards the share of correct verdicts in its training
examples, so a trainer that fine-tunes on good episodes visibly improves the
verifier.

The scenario and a small staged trainer (``synthetic_text_sft``: supervised
fine-tuning on each agent's episodes with a return above its reward mid-point) are
registered by the plugin object :data:`SYNTHETIC_TEXT_PLUGIN`; no plugin needs to be
installed. In tests, use the ``synthetic_text_scenario`` fixture.

Importing this package is light (no torch).
"""

from __future__ import annotations

from nip_core.testing.synthetic_text.plugin import (
    SYNTHETIC_TEXT_PLUGIN,
    SyntheticTextPlugin,
)

SCENARIO_NAME = "synthetic_text"
"""The scenario's registry key (and the plugin's name)."""

__all__ = ["SCENARIO_NAME", "SYNTHETIC_TEXT_PLUGIN", "SyntheticTextPlugin"]
