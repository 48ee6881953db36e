"""The plugin's Hydra configs compose to the settings they promise."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def composed(register_plugin: Any, tmp_path: Any, monkeypatch: Any) -> Any:
    """``composed(name, *overrides, multirun=False)`` -> the plain config dict."""
    import nip_plugin_ppo.plugin
    from nip_core.testing.configs import compose_hydra_config

    register_plugin(nip_plugin_ppo.plugin, name="ppo")
    monkeypatch.chdir(tmp_path)  # no ./configs of the working tree
    return compose_hydra_config


def _plain(cfg: Any) -> dict[str, Any]:
    from nip_core.testing.configs import plain_config

    return plain_config(cfg)


def test_ppo_gi_has_the_original_settings(composed: Any) -> None:
    config = _plain(composed("ppo_gi"))
    assert config["scenario"] == "graph_isomorphism"
    assert config["trainer"] == "vanilla_ppo"
    assert config["interaction_protocol"] == "nip"
    rl = config["rl"]
    assert (rl["num_iterations"], rl["num_epochs"]) == (5000, 10)
    assert (rl["minibatch_size"], rl["frames_per_batch"]) == (256, 2048)
    assert (rl["gamma"], rl["lmbda"], rl["lr"]) == (0.95, 0.95, 0.0003)
    assert rl["max_grad_norm"] == 0.5
    assert config["protocol_common"]["verifier_no_guess_reward"] == 0.05
    for section in ("nip_protocol", "debate_protocol", "mnip_protocol"):
        assert config[section]["min_message_rounds"] == 3
        assert config[section]["max_message_rounds"] == 8
        # the original's unread round 7, kept on purpose: no warning
        assert config[section]["allow_unread_rounds"] is True
    agents = config["agents"]
    assert agents["_default"]["num_gnn_layers"] == 5  # the provers
    assert agents["verifier"]["num_gnn_layers"] == 2
    assert agents["verifier"]["num_transformer_layers"] == 1
    assert config["run"]["device"] == "cpu"  # from /base


def test_default_experiment(composed: Any) -> None:
    config = _plain(composed("default"))
    assert (config["scenario"], config["interaction_protocol"]) == (
        "graph_isomorphism",
        "nip",
    )
    assert (config["trainer"], config["dataset"]) == ("vanilla_ppo", "test")


def test_compare_protocols_sweeps_protocols_and_seeds(composed: Any) -> None:
    cfg = composed("compare_protocols", multirun=True)
    params = cfg.hydra.sweeper.params
    assert params["interaction_protocol"].split(",") == [
        "nip",
        "debate",
        "adp",
        "merlin_arthur",
        "mnip",
    ]
    assert params["seed"].split(",") == ["0", "1", "2"]
    one = _plain(composed("compare_protocols", "interaction_protocol=debate", "seed=2"))
    assert one["run"]["run_id"] == "compare_protocols_debate_seed2"
    assert one["trainer"] == "vanilla_ppo"


@pytest.mark.parametrize(
    ("given", "run_ids"),
    [
        (["seed=0", "interaction_protocol=nip"], ["compare_protocols_nip_seed0"]),
        (
            ["seed=2"],
            [
                f"compare_protocols_{protocol}_seed2"
                for protocol in ("nip", "debate", "adp", "merlin_arthur", "mnip")
            ],
        ),
    ],
)
@pytest.mark.usefixtures("restored_logging")
def test_compare_protocols_with_a_swept_key_given_sweeps_the_others(
    composed: Any,
    register_plugin: Any,
    monkeypatch: Any,
    capsys: Any,
    given: list[str],
    run_ids: list[str],
) -> None:
    # a key given on the command line replaces the preset's sweep of it
    gi = pytest.importorskip("nip_plugin_graph_isomorphism")
    plugin_module = pytest.importorskip(f"{gi.__name__}.plugin")
    register_plugin(plugin_module, name="graph_isomorphism")
    import nip_core.experiment
    from nip_core.cli.main import main

    launched: list[Any] = []
    monkeypatch.setattr(
        nip_core.experiment,
        "run_experiment",
        lambda hyper_params, settings: launched.append(settings.run_id),
    )
    status = main(["run", "-m", "-c", "compare_protocols", *given])
    assert status == 0, capsys.readouterr().err
    assert launched == run_ids


def test_gi_quick_has_the_settings_the_sweep_chose(composed: Any) -> None:
    config = _plain(composed("gi_quick"))
    assert (config["dataset"], config["interaction_protocol"]) == ("eru10000", "nip")
    rl = config["rl"]
    assert (rl["frames_per_batch"], rl["minibatch_size"], rl["num_epochs"]) == (
        630,
        126,
        4,
    )
    assert (rl["lr"], rl["normalize_observations"]) == (0.003, True)
    assert (rl["num_iterations"], rl["test_period"]) == (300, 25)
    assert config["ppo"]["entropy_eps"] == 0.01
    for section in ("nip_protocol", "debate_protocol", "mnip_protocol"):
        assert (
            config[section]["min_message_rounds"],
            config[section]["max_message_rounds"],
        ) == (1, 7)
        # every environment runs whole episodes of the longest protocol
        assert rl["frames_per_batch"] % config[section]["max_message_rounds"] == 0


def test_gi_quick_sweep_is_the_first_stage_of_the_sweep(composed: Any) -> None:
    cfg = composed("gi_quick_sweep", multirun=True)
    params = cfg.hydra.sweeper.params
    assert params["rl.lr"].split(",") == ["0.001", "0.003", "0.01"]
    assert params["ppo.entropy_eps"].split(",") == ["0.001", "0.01"]
    assert params["rl.normalize_observations"].split(",") == ["false", "true"]
    one = _plain(
        composed(
            "gi_quick_sweep",
            "rl.lr=0.01",
            "ppo.entropy_eps=0.001",
            "rl.normalize_observations=true",
        )
    )
    assert one["run"]["run_id"] == "gi_quick_sweep_lr0.01_ent0.001_normTrue"
    # the settings the sweep ran with, whatever gi_quick has become
    assert (one["rl"]["frames_per_batch"], one["rl"]["minibatch_size"]) == (640, 128)
    assert one["nip_protocol"]["max_message_rounds"] == 5


@pytest.mark.parametrize(
    "name", ["ppo_gi", "default", "compare_protocols", "gi_quick", "gi_quick_sweep"]
)
def test_configs_validate_with_graph_isomorphism(
    composed: Any, register_plugin: Any, name: str
) -> None:
    gi = pytest.importorskip("nip_plugin_graph_isomorphism")
    plugin_module = pytest.importorskip(f"{gi.__name__}.plugin")
    register_plugin(plugin_module, name="graph_isomorphism")
    from nip_core.testing.configs import compose_experiment

    hyper_params, settings = compose_experiment(name)
    assert hyper_params.trainer == "vanilla_ppo"
