"""The core's scenario contract suite, on the `test` dataset with tiny agents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import tiny_hyper_params
from nip_core.parameters import HyperParameters
from nip_core.testing.contracts.scenario import ScenarioContract

import nip_plugin_graph_isomorphism.plugin as gi_plugin


class TestGraphIsomorphismContract(ScenarioContract):
    scenario_name = "graph_isomorphism"

    @pytest.fixture
    def scenario_plugin(self, register_plugin: Any) -> Iterator[None]:
        register_plugin(gi_plugin, name="graph_isomorphism")
        yield None

    def make_hyper_params(
        self, interaction_protocol: str, zero_knowledge: bool = False
    ) -> HyperParameters:
        return tiny_hyper_params(interaction_protocol, zero_knowledge)
