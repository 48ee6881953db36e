"""The plugin's experiment configs compose and validate."""

from __future__ import annotations

import warnings

import pytest
from nip_core.cli.compose import (
    SearchDir,
    build_experiment,
    compose,
    config_search_dirs,
    hydra_app,
    to_plain_dict,
)

import nip_plugin_graph_isomorphism.plugin as gi_plugin

GROUP = gi_plugin.CONFIG_DIR / "graph_isomorphism"
EXPERIMENTS = sorted(
    f"graph_isomorphism/{path.stem}"
    for path in GROUP.glob("*.yaml")
    if not path.stem.endswith("_base")
)
PROTOCOLS = ("nip", "adp", "debate", "merlin_arthur", "mnip", "solo_verifier")


@pytest.fixture(autouse=True)
def _scenario_registered(gi_in_global_manager):
    yield


def _ppo_installed() -> bool:
    from nip_core.plugins import get_plugin_manager

    return "vanilla_ppo" in get_plugin_manager().trainers


def _compose(names):
    search = [SearchDir("graph_isomorphism", gi_plugin.CONFIG_DIR)]
    search += [d for d in config_search_dirs() if d.origin != "graph_isomorphism"]
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with hydra_app(search) as app:
            for name in names:
                config = to_plain_dict(compose(app, name, []))
                results[name] = build_experiment(config, config_name=name)
    return results


def test_every_protocol_has_a_config() -> None:
    for protocol in PROTOCOLS:
        assert f"graph_isomorphism/{protocol}_vanilla_ppo" in EXPERIMENTS
    for name in ("solo_agent", "ppo_gi", "nip_zk_vanilla_ppo"):
        assert f"graph_isomorphism/{name}" in EXPERIMENTS


def test_configs_compose_into_valid_experiments() -> None:
    names = [n for n in EXPERIMENTS if _ppo_installed() or n.endswith("solo_agent")]
    assert "graph_isomorphism/solo_agent" in names
    for name, (hyper_params, _settings) in _compose(names).items():
        stem = name.split("/", 1)[1]
        assert hyper_params.scenario == "graph_isomorphism", name
        assert hyper_params.dataset == "eru10000", name
        if stem.endswith("_vanilla_ppo"):
            assert hyper_params.trainer == "vanilla_ppo"
            assert stem.startswith(hyper_params.interaction_protocol), name


@pytest.mark.skipif(not _ppo_installed(), reason="nip-plugin-ppo is not installed")
def test_ppo_gi_keeps_the_original_settings() -> None:
    name = "graph_isomorphism/ppo_gi"
    hyper_params, _ = _compose([name])[name]
    assert hyper_params.interaction_protocol == "nip"
    assert hyper_params.agents["prover"].num_gnn_layers == 5
    assert hyper_params.agents["verifier"].num_gnn_layers == 2
    assert hyper_params.agents["verifier"].use_dual_gnn is False
    assert hyper_params.rl.frames_per_batch == 2048
    assert hyper_params.rl.max_grad_norm == 0.5
    assert hyper_params.protocol_common.verifier_no_guess_reward == 0.05
    assert hyper_params.nip_protocol.max_message_rounds == 8
