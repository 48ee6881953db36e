"""Protocols for tests: ``multi_channel_test``, which no research uses.

``multi_channel_test`` puts three provers on three channels with overlapping
visibility, a stress test of channel handling for scenarios, agent parts and
trainers. It is not registered by the core (users never see it in ``nip plugins``
or in the choices of ``interaction_protocol``); tests register it:

- the scenario contract suite (:class:`~nip_core.testing.contracts.scenario.
  ScenarioContract`) registers it, so every scenario is checked with it;
- the ``test_protocols`` fixture of nip-core's pytest plugin registers it into the
  process-wide plugin manager for one test;
- :data:`TEST_PROTOCOLS_PLUGIN` can be registered by hand
  (``register_plugin(TEST_PROTOCOLS_PLUGIN, name=TEST_PROTOCOLS_PLUGIN_NAME)``).
"""

from __future__ import annotations

from typing import ClassVar

from nip_core import hookimpl
from nip_core.protocols.base import (
    DeterministicProtocolHandler,
    SingleVerifierProtocolHandler,
)
from nip_core.records import ProtocolSpec

__all__ = [
    "MULTI_CHANNEL_TEST_SPEC",
    "TEST_PROTOCOLS_PLUGIN",
    "TEST_PROTOCOLS_PLUGIN_NAME",
    "MultiChannelTestProtocolHandler",
]


class MultiChannelTestProtocolHandler(
    DeterministicProtocolHandler, SingleVerifierProtocolHandler
):
    """``multi_channel_test``: exercises channel handling; not a research protocol.

    Agents ``prover0``, ``prover1``, ``prover2``, ``verifier``. Channels: ``main``
    (all see it), ``prover0_verifier`` (``prover0`` and the verifier),
    ``prover_chat`` (the three provers). Each channel runs a 3-round cycle (round
    mod 3):

    ================  =========  =========  ==========
    channel           0          1          2
    ================  =========  =========  ==========
    main              prover1    prover2    verifier
    prover0_verifier  --         prover0    verifier
    prover_chat       prover0    prover1    prover2
    ================  =========  =========  ==========

    Fixed rounds: min 2, max 8. Provers get no verdict reward (only the verifier's,
    with ``shared_reward``).
    """

    warn_about_wasted_rounds: ClassVar[bool] = False

    _schedule: ClassVar[dict[str, tuple[str | None, str | None, str | None]]] = {
        "main": ("prover1", "prover2", "verifier"),
        "prover0_verifier": (None, "prover0", "verifier"),
        "prover_chat": ("prover0", "prover1", "prover2"),
    }

    @property
    def agent_names(self) -> list[str]:
        return ["prover0", "prover1", "prover2", "verifier"]

    @property
    def message_channel_names(self) -> list[str]:
        return ["main", "prover0_verifier", "prover_chat"]

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        return [
            ("prover0", "main"),
            ("prover1", "main"),
            ("prover2", "main"),
            ("verifier", "main"),
            ("prover0", "prover0_verifier"),
            ("verifier", "prover0_verifier"),
            ("prover0", "prover_chat"),
            ("prover1", "prover_chat"),
            ("prover2", "prover_chat"),
        ]

    @property
    def max_message_rounds(self) -> int:
        return 8

    @property
    def min_message_rounds(self) -> int:
        return 2

    def is_agent_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        return self._schedule[channel_name][round_id % 3] == agent_name


MULTI_CHANNEL_TEST_SPEC = ProtocolSpec(
    name="multi_channel_test",
    handler_class=MultiChannelTestProtocolHandler,
    agent_names=("prover0", "prover1", "prover2", "verifier"),
    data_worlds=("tensor", "text"),
    supports_zero_knowledge=True,
    description="Three provers on three channels, for testing channel handling",
)
"""The registry record of ``multi_channel_test``."""

TEST_PROTOCOLS_PLUGIN_NAME = "nip-core.testing.protocols"
"""The name :data:`TEST_PROTOCOLS_PLUGIN` is registered under."""


class _TestProtocolsPlugin:
    """Registers the protocols of this module."""

    @hookimpl
    def register_protocols(self) -> list[ProtocolSpec]:
        return [MULTI_CHANNEL_TEST_SPEC]


TEST_PROTOCOLS_PLUGIN = _TestProtocolsPlugin()
"""A plugin object registering ``multi_channel_test``."""
