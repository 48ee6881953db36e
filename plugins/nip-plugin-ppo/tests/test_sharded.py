"""The PPO plugin's trainers in sharded runs (``distributed.num_shards``, torchrun).

``vanilla_ppo`` with the clipped objective shards: two processes under ``torchrun``
reach the agents of one process running both shards. The adaptive KL penalty and
the ``spg`` family cannot, and say so before anything trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
import torch

from nip_core.errors import NipConfigError
from nip_core.testing.torchrun import (
    assert_same_agents,
    assert_same_metrics,
    process_records,
    run_in_this_process,
    run_worker,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _sharded(scenario: Any, trainer: str, **sections: Any) -> Any:
    return scenario.hyper_params(
        "nip",
        trainer=trainer,
        distributed={"num_shards": 2},
        rl=scenario.short_rl(minibatch_size=6),
        **sections,
    )


@pytest.mark.parametrize(
    ("trainer", "sections", "path", "words"),
    [
        ("spg", {}, "trainer", "the spg trainer cannot run sharded"),
        (
            "vanilla_ppo",
            {"ppo": {"loss_type": "kl_penalty"}},
            "ppo.loss_type",
            "the adaptive KL penalty cannot run sharded",
        ),
    ],
)
def test_what_cannot_shard_is_refused_before_training(
    ppo_scenario: Any, trainer: str, sections: dict, path: str, words: str
) -> None:
    from nip_core.experiment import run_experiment
    from nip_core.protocols.factory import protocol_problems

    hyper_params = _sharded(ppo_scenario, trainer, **sections)
    with pytest.raises(NipConfigError) as error:
        run_experiment(hyper_params, ppo_scenario.settings(test_run=True))
    [problem] = error.value.problems
    assert problem.path == path
    assert words in problem.message
    # found when the config is validated too (nip config validate, a sweep's
    # check of every job before any starts), with the same words
    [found] = [p for p in protocol_problems(hyper_params) if p.path == path]
    assert found.message == problem.message
    unsharded = attrs.evolve(
        hyper_params, distributed=attrs.evolve(hyper_params.distributed, num_shards=1)
    )
    assert not [p for p in protocol_problems(unsharded) if p.path == path]


def _spec(root: Path, run_id: str) -> dict[str, Any]:
    hyper_params = {
        "scenario": "synthetic",
        "trainer": "vanilla_ppo",
        "dataset": "tiny",
        "d_representation": 4,
        "agents": {"_default": {"d_hidden": 4}},
        "rl": {
            "frames_per_batch": None,
            "rollouts_per_iteration": 8,
            "num_iterations": 2,
            "num_epochs": 2,
            "minibatch_size": 8,
            "num_test_iterations": 1,
            "normalize_observations": False,
        },
        "nip_protocol": {"max_message_rounds": 3, "min_message_rounds": 1},
        "synthetic": {"num_bits": 6, "train_size": 16, "test_size": 8},
        "distributed": {"num_shards": 2},
    }
    settings = {
        "device": "cpu",
        "data_dir": str(root / "data"),
        "cache_dir": str(root / "cache"),
        "runs_dir": str(root / "runs"),
        "show_progress": False,
        "run_id": run_id,
    }
    return {
        "hyper_params": hyper_params,
        "settings": settings,
        "out": str(root / "out" / run_id),
        "installed_plugins": True,
    }


def test_two_processes_match_one_process(ppo_scenario: Any, tmp_path: Path) -> None:
    expected = run_in_this_process(_spec(tmp_path, "one"))
    spec = _spec(tmp_path, "two")
    assert run_worker(spec, tmp_path / "spec.json", nproc=2) == []
    assert [r["world_size"] for r in process_records(spec["out"])] == [2, 2]
    assert_same_agents(expected, torch.load(Path(spec["out"]) / "agents_rank0.pt"))
    assert_same_metrics(tmp_path / "runs" / "one", tmp_path / "runs" / "two")


def test_graph_isomorphism_with_batch_norm_runs_sharded(
    register_plugin: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """The default experiment's agents have batch norm: only shard 0's forward
    passes update its running statistics, and the other shards' backward passes
    still go through (autograd saw the buffers before they were put back)."""
    gi_plugin = pytest.importorskip("nip_plugin_graph_isomorphism.plugin")
    import nip_plugin_ppo.plugin
    from nip_core.cli import compose as composer
    from nip_core.experiment import run_experiment

    register_plugin(gi_plugin, name="graph_isomorphism")
    register_plugin(nip_plugin_ppo.plugin, name="ppo")
    monkeypatch.chdir(tmp_path)
    overrides = [
        "distributed.num_shards=2",
        "rl.num_iterations=2",
        "rl.frames_per_batch=40",
        "rl.minibatch_size=20",
        "rl.num_epochs=1",
        "rl.num_test_iterations=1",
        f"run.runs_dir={tmp_path / 'runs'}",
        f"run.data_dir={tmp_path / 'data'}",
        f"run.cache_dir={tmp_path / 'cache'}",
        "run.show_progress=false",
        "run.rollout_sample_period=null",
    ]
    with composer.hydra_app() as app:
        config = composer.to_plain_dict(composer.compose(app, "default", overrides))
    hyper_params, settings = composer.build_experiment(config, config_name="default")
    assert hyper_params.agents["verifier"].use_batch_norm
    result = run_experiment(hyper_params, settings)
    body = result.trainer.agents["verifier"].body
    norms = [m for m in body.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and all(int(m.num_batches_tracked) > 0 for m in norms)
    records = [r for r in result.metrics if "mean_accuracy" in r]
    assert len(records) == 2
