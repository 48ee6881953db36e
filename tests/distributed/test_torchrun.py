"""One run across two processes under ``torchrun`` (gloo, CPU).

The reference is the same experiment (two shards: the same total batch) in one
plain process. A two-process run must reach the same agents and log the same
metrics, bit for bit (two shards: each process holds one, and every sum over shards
is added up in shard order); a two-process run killed half-way must resume on one
process and end where the reference ends. Each ``torchrun`` call takes about ten
seconds on an idle machine (two fresh processes importing torch), so there are
few of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from nip_core.testing.torchrun import (
    assert_same_agents,
    assert_same_metrics,
    process_records,
    run_in_this_process,
    run_worker,
)

pytestmark = [pytest.mark.distributed, pytest.mark.usefixtures("single_thread")]


def experiment_spec(
    root: Path, run_id: str, trainer: str = "reinforce", **extra: Any
) -> dict[str, Any]:
    """A small synthetic experiment in two shards, checkpointed every iteration."""
    hyper_params = {
        "scenario": "synthetic",
        "trainer": trainer,
        "dataset": "tiny",
        "interaction_protocol": "nip",
        "d_representation": 4,
        "agents": {"_default": {"d_hidden": 4}},
        # A critic, GAE and observation normalisation: every sharded path
        "reinforce": {"use_advantage_and_critic": True},
        "rl": {
            "frames_per_batch": None,
            "rollouts_per_iteration": 8,
            "num_iterations": 3,
            "num_epochs": 2,
            "minibatch_size": 8,
            "num_test_iterations": 1,
            "normalize_observations": True,
            "num_normalization_steps": 4,
        },
        "solo_agent": {"num_epochs": 3, "batch_size": 6},
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
        "checkpoint_period": 1,
    }
    return {
        "hyper_params": hyper_params,
        "settings": settings,
        "out": str(root / "out" / run_id),
        **extra,
    }


@pytest.mark.parametrize("trainer", ["reinforce", "solo_agent"])
def test_two_processes_match_one_process(synthetic_scenario, tmp_path, trainer):
    expected = run_in_this_process(experiment_spec(tmp_path, "one_process", trainer))

    spec = experiment_spec(tmp_path, "two_processes", trainer)
    assert run_worker(spec, tmp_path / "spec.json", nproc=2) == []

    out = Path(spec["out"])
    records = process_records(out)
    assert [r["world_size"] for r in records] == [2, 2]
    assert {r["run_id"] for r in records} == {"two_processes"}
    assert [r["writes_run_dir"] for r in records] == [True, False]
    # The ranks hold the same agents, and those of the one-process run
    rank0 = torch.load(out / "agents_rank0.pt")
    assert_same_agents(rank0, torch.load(out / "agents_rank1.pt"), tolerance=0)
    assert_same_agents(expected, rank0, tolerance=0)

    runs = tmp_path / "runs"
    # one directory per run (beside the hidden lock files of the runs' drivers)
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == [
        "one_process",
        "two_processes",
    ]
    assert_same_metrics(runs / "one_process", runs / "two_processes", tolerance=0)
    info = json.loads((runs / "two_processes" / "run_info.json").read_text())
    assert info["status"] == "finished"


def test_a_two_process_run_resumes_on_one_process(synthetic_scenario, tmp_path):
    expected = run_in_this_process(experiment_spec(tmp_path, "reference"))

    # Killed after its second iteration, with checkpoints after each
    spec = experiment_spec(tmp_path, "moved", stop_after=1)
    stopped = run_worker(spec, tmp_path / "spec.json", nproc=2)
    assert stopped == ["stopped_rank0", "stopped_rank1"]
    run_dir = tmp_path / "runs" / "moved"
    assert json.loads((run_dir / "run_info.json").read_text())["status"] == "killed"
    checkpoint = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    assert checkpoint["iteration"] == 2
    assert sorted(checkpoint["trainer"]["shards"]) == [0, 1]

    resume = {
        "resume": True,
        "run_id": "moved",
        "runs_dir": str(tmp_path / "runs"),
        "out": str(tmp_path / "out" / "moved-resumed"),
    }
    assert run_worker(resume, tmp_path / "resume.json", nproc=None) == []
    assert process_records(resume["out"]) == [
        {"world_size": 1, "run_id": "moved", "writes_run_dir": True, "resumed_from": 2}
    ]
    resumed = torch.load(Path(resume["out"]) / "agents_rank0.pt")
    assert_same_agents(expected, resumed, tolerance=0)
    assert_same_metrics(tmp_path / "runs" / "reference", run_dir, tolerance=0)


def test_a_shard_with_an_empty_slice_of_a_batch(synthetic_scenario, tmp_path):
    """13 training datapoints in batches of 6: the last batch has one row, so shard
    1 (rank 1) gets none of it and computes no gradient. Rank 1 still takes part
    in the gradients' all-reduce (with zeros), as one process running both shards
    would sum them; before, it skipped it and the processes' collectives paired
    mismatched messages (gloo aborted: "Received data size doesn't match")."""
    sizes = {"synthetic": {"num_bits": 6, "train_size": 13, "test_size": 8}}

    def spec(run_id: str) -> dict[str, Any]:
        spec = experiment_spec(tmp_path, run_id, "solo_agent")
        spec["hyper_params"].update(sizes)
        return spec

    expected = run_in_this_process(spec("one_process"))
    two = spec("two_processes")
    assert run_worker(two, tmp_path / "spec.json", nproc=2, timeout=180) == []
    out = Path(two["out"])
    assert_same_agents(expected, torch.load(out / "agents_rank0.pt"), tolerance=0)
    assert_same_agents(expected, torch.load(out / "agents_rank1.pt"), tolerance=0)
    runs = tmp_path / "runs"
    assert_same_metrics(runs / "one_process", runs / "two_processes", tolerance=0)


def test_every_process_stops_with_the_error_when_rank_0_refuses(tmp_path):
    """Rank 0 finds that the run directory holds another experiment: it does not
    leave the other process waiting; both report the problem and stop."""
    spec = experiment_spec(tmp_path, "taken")
    run_dir = tmp_path / "runs" / "taken"
    run_dir.mkdir(parents=True)
    (run_dir / "hyper_params.json").write_text(json.dumps({"scenario": "other"}))
    with pytest.raises(AssertionError) as failure:
        run_worker(spec, tmp_path / "spec.json", nproc=2, timeout=120)
    assert str(failure.value).count("holds a different experiment") >= 2
    assert not list(run_dir.glob("checkpoints"))
