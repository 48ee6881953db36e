"""The plugin's experiment configs compose and validate."""

from __future__ import annotations

import warnings

import pytest
from nip_core.testing.configs import compose_experiments, config_names

import nip_plugin_graph_isomorphism.plugin as gi_plugin

EXPERIMENTS = config_names(gi_plugin.CONFIG_DIR, "graph_isomorphism")
PROTOCOLS = ("nip", "adp", "debate", "merlin_arthur", "mnip", "solo_verifier")


@pytest.fixture(autouse=True)
def _scenario_registered(gi_in_global_manager):
    yield


def _ppo_installed() -> bool:
    from nip_core.plugins import get_plugin_manager

    return "vanilla_ppo" in get_plugin_manager().trainers


def _compose(names):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compose_experiments(
            names, first_dirs=[("graph_isomorphism", gi_plugin.CONFIG_DIR)]
        )


def test_every_protocol_has_a_config() -> None:
    for protocol in PROTOCOLS:
        assert f"graph_isomorphism/{protocol}_vanilla_ppo" in EXPERIMENTS
    for name in ("solo_agent", "nip_zk_vanilla_ppo"):
        assert f"graph_isomorphism/{name}" in EXPERIMENTS
    # one ppo_gi config, the PPO plugin's (this plugin's disagreed with the original)
    assert "graph_isomorphism/ppo_gi" not in EXPERIMENTS


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
