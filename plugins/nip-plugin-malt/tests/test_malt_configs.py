"""The plugin's Hydra config ``pure_text_malt/code_validation``: what it composes to,
and the install hint when code validation is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nip_core.errors import NipConfigError

NAME = "pure_text_malt/code_validation"


@pytest.fixture
def composed(register_plugin: Any, tmp_path: Path, monkeypatch: Any) -> Any:
    import nip_plugin_malt.plugin
    from nip_core.cli import compose as composer

    register_plugin(nip_plugin_malt.plugin, name="malt")
    monkeypatch.chdir(tmp_path)  # no ./configs of the working tree

    def compose(*overrides: str) -> dict[str, Any]:
        with composer.hydra_app() as app:
            return composer.to_plain_dict(composer.compose(app, NAME, list(overrides)))

    return compose


def test_code_validation_config(composed):
    config = composed()
    assert (config["scenario"], config["trainer"]) == (
        "code_validation",
        "pure_text_malt",
    )
    assert config["pure_text_malt"] == {
        "num_responses_per_timestep": 2,
        "max_generations_per_iteration": 20000,
    }
    text_rl = config["text_rl"]
    assert (text_rl["num_iterations"], text_rl["rollouts_per_iteration"]) == (4, 64)
    # the bound the comment promises: 64 trees of 2 + 4 + 8 + 16 + 32 turns
    assert 64 * sum(2**r for r in range(1, 6)) <= 20000
    assert config["nip_protocol"]["max_message_rounds"] == 5
    assert config["run"]["device"] == "cpu"


def test_without_code_validation_the_error_says_what_to_install(composed):
    from nip_core.cli.compose import build_experiment

    with pytest.raises(NipConfigError) as caught:
        build_experiment(composed(), config_name=NAME)
    message = str(caught.value)
    assert "nip-plugin-code-validation" in message and "install" in message
    assert len(caught.value.problems) == 1


def test_code_validation_config_validates_with_the_scenario_plugin(
    composed, register_plugin
):
    module = pytest.importorskip("nip_plugin_code_validation.plugin")
    register_plugin(module, name="code_validation")
    from nip_core.cli.compose import build_experiment

    hyper_params, _ = build_experiment(composed(), config_name=NAME)
    assert hyper_params.pure_text_malt.num_responses_per_timestep == 2
