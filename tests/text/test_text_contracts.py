"""The text world's contract suites, run on the core's own classes: the ``openai``
backend against the local test server, the synthetic text scenario, and the
``synthetic_text_sft`` staged trainer."""

from __future__ import annotations

import types

import pytest

from nip_core.parameters.text import OpenAiBackendParameters, TextBackendParameters
from nip_core.testing.contracts.text import (
    TEXT_PROTOCOLS,
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
    protocols = (*TEXT_PROTOCOLS, "multi_channel_test")

    @pytest.fixture
    def text_scenario_plugins(self, register_plugin, test_protocols):
        register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")

    def make_hyper_params(self, protocol, server, **overrides):
        return SyntheticTextScenario(".", server).hyper_params(protocol, **overrides)


class TestSyntheticTextSftContract(TextTrainerContract):
    trainer_name = "synthetic_text_sft"


class _Metafunc:
    fixturenames = ("protocol",)

    def parametrize(self, name, values):
        self.parametrized = (name, list(values))


def test_the_scenario_contract_runs_every_protocol_a_subclass_names():
    # seven: one more than the base class names (a decorator fixed the base's six)
    metafunc = _Metafunc()
    TestSyntheticTextScenarioContract().pytest_generate_tests(metafunc)
    assert metafunc.parametrized == (
        "protocol",
        list(TestSyntheticTextScenarioContract.protocols),
    )
    assert len(metafunc.parametrized[1]) == 7


def test_the_scenario_contract_skips_protocols_its_scenario_does_not_support(
    monkeypatch,
):
    import nip_core.plugins

    narrow = types.SimpleNamespace(
        scenarios={
            "synthetic_text": types.SimpleNamespace(supported_protocols=("nip",))
        }
    )
    monkeypatch.setattr(nip_core.plugins, "get_plugin_manager", lambda: narrow)
    contract = TestSyntheticTextScenarioContract()
    contract._skip_unsupported("nip")  # supported: runs
    with pytest.raises(pytest.skip.Exception, match="supports only nip"):
        contract._skip_unsupported("debate")


@pytest.mark.parametrize("reply", ["Decision: maybe", "I will not say."])
def test_the_scenario_contract_fails_a_model_that_never_answers_validly(
    register_plugin, tmp_path, reply
):
    from nip_core.testing.openai_server import OpenAiTestServer

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    server = OpenAiTestServer(models=["scripted"], responder=lambda *_: reply)
    contract = TestSyntheticTextScenarioContract()
    with server:
        with pytest.raises(AssertionError) as caught:
            contract.test_episodes_run_to_their_end(None, server, tmp_path, "nip")
    message = str(caught.value)
    # a non-verdict and no verdict on the verifier's last turn are both invalid
    assert "was invalid after" in message
    assert f"(last output: {reply!r})" in message
