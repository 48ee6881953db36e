"""The synthetic scenario: a tiny, fast tensor scenario for the core's own tests.

A datapoint is a bit-vector ``x`` of length ``synthetic.num_bits``; its label ``y``
is 1 iff ``x`` holds two adjacent ones ("11"). A message is one position of ``x``:
a prover can prove ``y = 1`` by pointing at the first bit of a pair. Provers may only
point at positions ``0 .. num_bits - 2`` (a pair needs a second bit); the verifier
may point anywhere.

The scenario is a plugin object, :data:`SYNTHETIC_PLUGIN`, registered under the name
``"synthetic"``; no plugin needs to be installed. In tests, use the
``synthetic_scenario`` fixture (:mod:`nip_core.testing.synthetic.fixtures`).

Importing this package is light (no torch): the plugin gives its classes as
references.
"""

from __future__ import annotations

from nip_core.testing.synthetic.plugin import SYNTHETIC_PLUGIN, SyntheticPlugin

SCENARIO_NAME = "synthetic"
"""The scenario's registry key (and the plugin's name)."""

__all__ = ["SCENARIO_NAME", "SYNTHETIC_PLUGIN", "SyntheticPlugin"]
