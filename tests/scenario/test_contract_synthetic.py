"""The scenario contract suite, run on the synthetic scenario."""

from __future__ import annotations

from typing import Any

import pytest

from nip_core.testing.contracts.scenario import ScenarioContract


class TestSyntheticScenarioContract(ScenarioContract):
    scenario_name = "synthetic"

    @pytest.fixture
    def scenario_plugin(self, synthetic_scenario: Any) -> Any:
        self._synthetic = synthetic_scenario
        return synthetic_scenario

    def make_hyper_params(
        self, interaction_protocol: str, zero_knowledge: bool = False
    ):
        return self._synthetic.hyper_params(
            interaction_protocol, zero_knowledge=zero_knowledge
        )
