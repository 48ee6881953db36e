"""The core's protocol contract, on every protocol as the graph isomorphism
scenario builds it (its configs, through the scenario's protocol registrations)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import tiny_hyper_params
from nip_core.protocols import build_protocol_handler
from nip_core.testing.contracts.protocol import ProtocolContract

import nip_plugin_graph_isomorphism.plugin as gi_plugin


class _GraphIsomorphismProtocol(ProtocolContract):
    protocol: str

    @pytest.fixture(autouse=True)
    def _registered(self, register_plugin: Any) -> None:
        register_plugin(gi_plugin, name="graph_isomorphism")

    def make_handler(self):
        return build_protocol_handler(tiny_hyper_params(self.protocol))


class TestNip(_GraphIsomorphismProtocol):
    protocol = "nip"


class TestAdp(_GraphIsomorphismProtocol):
    protocol = "adp"


class TestDebate(_GraphIsomorphismProtocol):
    protocol = "debate"


class TestMerlinArthur(_GraphIsomorphismProtocol):
    protocol = "merlin_arthur"


class TestMnip(_GraphIsomorphismProtocol):
    protocol = "mnip"


class TestSoloVerifier(_GraphIsomorphismProtocol):
    protocol = "solo_verifier"
