"""The text world's contract suites, run on the core's own classes: the ``openai``
backend against the local test server, the synthetic text scenario, and the
``synthetic_text_sft`` staged trainer."""

from __future__ import annotations

import types

import pytest

from nip_core.parameters.text import OpenAiBackendParameters, TextBackendParameters
from nip_core.testing.contracts.text import (
    BackendContract,
    TextScenarioContract,
    TextTrainerContract,
)
from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario


class TestOpenAiBackendContract(BackendContract):
    model = "scripted"

    @pytest.fixture(autouse=True)
    def _server(self, openai_test_server):
        self.server = openai_test_server

    def make_backend(self):
        from nip_core.text.openai_backend import OpenAiBackend

        hyper_params = types.SimpleNamespace(
            text_backend=TextBackendParameters(
                retry_initial_delay=0.01, retry_max_delay=0.05
            ),
            openai_backend=OpenAiBackendParameters(base_url=self.server.base_url),
        )
        return OpenAiBackend(hyper_params, None)


class TestSyntheticTextScenarioContract(TextScenarioContract):
    scenario_name = "synthetic_text"
    protocols = (
        "nip",
        "adp",
        "debate",
        "merlin_arthur",
        "mnip",
        "solo_verifier",
        "multi_channel_test",
    )

    @pytest.fixture
    def text_scenario_plugins(self, register_plugin, test_protocols):
        register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")

    def make_hyper_params(self, protocol, server, **overrides):
        return SyntheticTextScenario(".", server).hyper_params(protocol, **overrides)


class TestSyntheticTextSftContract(TextTrainerContract):
    trainer_name = "synthetic_text_sft"
