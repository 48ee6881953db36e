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
def test_default_experiment_beats_majority_baseline(
    gi_plugins: Any, single_thread: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """The default experiment (`nip run`), cut to 40 iterations, learns."""
    from nip_core.experiment import run_experiment
    from nip_core.runs.run_dir import RunDirectory
    from nip_core.testing.configs import compose_experiment

    monkeypatch.chdir(tmp_path)
    overrides = [
        "rl.num_iterations=40",
        f"run.runs_dir={tmp_path / 'runs'}",
        f"run.data_dir={tmp_path / 'data'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        "run.show_progress=false",
        "run.checkpoint_period=null",
    ]
    hp, settings = compose_experiment("default", *overrides)
    assert (hp.scenario, hp.interaction_protocol, hp.trainer, hp.dataset) == (
        "graph_isomorphism",
        "nip",
        "vanilla_ppo",
        "test",
    )
    records = RunDirectory(run_experiment(hp, settings).run_dir).read_metrics()
    accuracy = [r["mean_accuracy"] for r in records if "mean_accuracy" in r]
    assert len(accuracy) == 40
    # The `test` set is balanced by construction (half the pairs isomorphic), so
    # the majority baseline is 0.5; the verifier starts there and climbs
    first, last = sum(accuracy[:5]) / 5, sum(accuracy[-10:]) / 10
    assert last > 0.55
    assert last > first + 0.04
