"""The core's scenario contract suite, on a tiny digits configuration."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from nip_core.parameters import HyperParameters
from nip_core.testing.contracts.scenario import ScenarioContract

import nip_plugin_image_classification.plugin as ic_plugin
from nip_plugin_image_classification.agent_parameters import (
    ImageClassificationAgentParameters,
)


class TestImageClassificationContract(ScenarioContract):
    scenario_name = "image_classification"

    @pytest.fixture
    def scenario_plugin(self, register_plugin: Any) -> Iterator[None]:
        # Registered explicitly, so the suite runs from a checkout too.
        register_plugin(ic_plugin, name="image_classification")
        yield None

    def make_hyper_params(
        self, interaction_protocol: str, zero_knowledge: bool = False
    ) -> HyperParameters:
        return HyperParameters(
            scenario="image_classification",
            trainer="solo_agent",
            dataset="digits",
            interaction_protocol=interaction_protocol,
            protocol_common={"zero_knowledge": zero_knowledge},
            agents={
                "_default": ImageClassificationAgentParameters.construct_test_params()
            },
            image_classification={
                "num_block_groups": 2,
                "initial_num_channels": 2,
                "binarification_method": "select_two",
            },
            dataset_options={"max_train_size": 16},
            # Short episodes keep the suite fast; 3 rounds end on a verifier turn.
            nip_protocol={"max_message_rounds": 3},
            debate_protocol={"max_message_rounds": 3},
            mnip_protocol={"max_message_rounds": 3},
            rl={"frames_per_batch": None, "rollouts_per_iteration": 4},
        )
