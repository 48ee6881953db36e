"""vanilla_ppo raises the verifier's accuracy on the `test` graph isomorphism data.

Skipped until the graph isomorphism plugin (its scenario) is installed.
"""

from __future__ import annotations

from typing import Any

import pytest

gi = pytest.importorskip("nip_plugin_graph_isomorphism")


@pytest.fixture
def gi_plugins(register_plugin: Any) -> Any:
    plugin = pytest.importorskip("nip_plugin_graph_isomorphism.plugin")
    import nip_plugin_ppo.plugin

    register_plugin(plugin, name="graph_isomorphism")
    register_plugin(nip_plugin_ppo.plugin, name="ppo")


@pytest.mark.slow
def test_vanilla_ppo_beats_majority_baseline_on_test_dataset(
    gi_plugins: Any, single_thread: Any, tmp_path: Any
) -> None:
    from nip_core.experiment import run_experiment
    from nip_core.parameters import HyperParameters
    from nip_core.runs.run_dir import RunDirectory
    from nip_core.settings import ExperimentSettings

    hp = HyperParameters(
        scenario="graph_isomorphism",
        trainer="vanilla_ppo",
        dataset="test",
        interaction_protocol="nip",
        agents={
            "_default": {"num_gnn_layers": 2, "num_transformer_layers": 1},
            "verifier": {"num_gnn_layers": 1, "num_transformer_layers": 1},
        },
        rl={
            "num_iterations": 40,
            "num_epochs": 4,
            "minibatch_size": 64,
            "frames_per_batch": 256,
            "lr": 0.003,
            "normalize_observations": False,
            "num_test_iterations": 2,
        },
        nip_protocol={"min_message_rounds": 1, "max_message_rounds": 4},
    )
    settings = ExperimentSettings(
        runs_dir=str(tmp_path / "runs"),
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "cache"),
        show_progress=False,
        checkpoint_period=None,
    )
    records = RunDirectory(run_experiment(hp, settings).run_dir).read_metrics()
    labels = [r["mean_accuracy"] for r in records if "mean_accuracy" in r]
    # The `test` set is balanced by construction (half the pairs isomorphic), so
    # the majority baseline is 0.5
    assert sum(labels[-5:]) / 5 > 0.6
    assert sum(labels[-5:]) / 5 > sum(labels[:3]) / 3 + 0.05
