"""The plugin's Hydra configs: ``pure_text_ei/code_validation`` composes to the
original's settings and names the plugin to install when code validation is
missing; a synthetic-text config in the same form runs end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nip_core.errors import NipConfigError


@pytest.fixture
def composed(register_plugin: Any, tmp_path: Path, monkeypatch: Any) -> Any:
    """``composed(name, *overrides)`` -> the plain config dict (the working
    directory's ``./configs`` is ``tmp_path/configs``)."""
    import nip_plugin_ei.plugin
    from nip_core.cli import compose as composer

    register_plugin(nip_plugin_ei.plugin, name="ei")
    monkeypatch.chdir(tmp_path)

    def compose(name: str, *overrides: str) -> dict[str, Any]:
        with composer.hydra_app() as app:
            return composer.to_plain_dict(composer.compose(app, name, list(overrides)))

    return compose


def test_code_validation_config_has_the_original_settings(composed):
    config = composed("pure_text_ei/code_validation")
    assert (config["scenario"], config["trainer"]) == (
        "code_validation",
        "pure_text_ei",
    )
    text_rl = config["text_rl"]
    assert (text_rl["num_iterations"], text_rl["rollouts_per_iteration"]) == (8, 200)
    assert text_rl["fine_tune_on_all_previous_rollouts"] is True
    assert config["pure_text_ei"]["rollout_selection_method"] == "threshold"
    assert config["agents"]["verifier"]["model_name"] == "gpt-4o-mini-2024-07-18"
    assert config["agents"]["_default"]["shared_model_group"] == "provers"
    assert config["nip_protocol"]["max_message_rounds"] == 9
    assert config["run"]["device"] == "cpu"  # from /base


def test_without_code_validation_the_error_says_what_to_install(composed):
    from nip_core.cli.compose import build_experiment

    config = composed("pure_text_ei/code_validation")
    with pytest.raises(NipConfigError) as caught:
        build_experiment(config, config_name="pure_text_ei/code_validation")
    message = str(caught.value)
    assert "unknown scenario" in message
    assert "nip-plugin-code-validation" in message and "install" in message
    assert len(caught.value.problems) == 1


def test_code_validation_config_validates_with_the_scenario_plugin(
    composed, register_plugin
):
    module = pytest.importorskip("nip_plugin_code_validation.plugin")
    register_plugin(module, name="code_validation")
    from nip_core.cli.compose import build_experiment

    hyper_params, _ = build_experiment(
        composed("pure_text_ei/code_validation"),
        config_name="pure_text_ei/code_validation",
    )
    assert hyper_params.trainer == "pure_text_ei"
    assert hyper_params.pure_text_ei.reward_threshold == 0.9


SYNTHETIC_CONFIG = """\
# @package _global_
defaults:
  - /base
  - _self_

scenario: synthetic_text
trainer: pure_text_ei
dataset: tiny
interaction_protocol: nip
text_rl:
  num_iterations: 2
  rollouts_per_iteration: 4
  num_test_rollouts: 4
  min_fine_tune_examples: 1
  verifier_guess_replacement_proportion: 0.5
  verifier_guess_replacement_annealing: exponential
  verifier_guess_replacement_annealing_rate: 0.5
text_backend:
  retry_initial_delay: 0.01
  retry_max_delay: 0.05
  fine_tune_poll_interval: 0.01
nip_protocol:
  min_message_rounds: 1
  max_message_rounds: 3
pure_text_ei:
  reward_threshold: 0.5
"""


def test_a_synthetic_text_config_runs(composed, synthetic_text_scenario, tmp_path):
    from nip_core.cli.compose import build_experiment
    from nip_core.experiment import run_experiment
    from nip_core.runs.run_dir import RunDirectory

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "ei_synthetic.yaml").write_text(SYNTHETIC_CONFIG)
    server = synthetic_text_scenario.server
    config = composed(
        "ei_synthetic",
        f"openai_backend.base_url={server.base_url}",
        f"run.runs_dir={tmp_path / 'runs'}",
        "run.show_progress=false",
    )
    hyper_params, settings = build_experiment(config, config_name="ei_synthetic")
    result = run_experiment(hyper_params, settings, run_id="from-config")
    records = RunDirectory(result.run_dir).read_metrics()
    proportions = [
        r["fine_tune.guess_replacement_proportion"]
        for r in records
        if "fine_tune.guess_replacement_proportion" in r
    ]
    assert proportions == [0.5, 0.25]
    assert server.jobs_created >= 1
