"""Shards in one process: random streams, the buffers rule, layouts and their errors.

The runs across processes are in ``test_torchrun.py``; here everything runs in the
test's own process, with the world size faked where a check needs another one.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nip_core import distributed
from nip_core.errors import NipConfigError
from nip_core.trainers.sharding import Sharding, ShardLayout, shard_layout

pytestmark = pytest.mark.usefixtures("single_thread")


def _stub_trainer(module: torch.nn.Module) -> SimpleNamespace:
    agent = SimpleNamespace(body=module)
    return SimpleNamespace(
        hyper_params=SimpleNamespace(seed=7),
        settings=SimpleNamespace(device="cpu"),
        agents={"verifier": agent},
        run=SimpleNamespace(writes_files=False),
    )


def test_rng_streams_are_independent_of_what_else_draws():
    first = distributed.RngStream(11)
    second = distributed.RngStream(11)
    outer = torch.get_rng_state()
    with first.active():
        a1 = torch.rand(3)
    torch.rand(100)  # the process's own draws do not move the streams
    with first.active():
        a2 = torch.rand(3)
    with second.active():
        b = torch.rand(6)
    torch.testing.assert_close(torch.cat([a1, a2]), b, rtol=0, atol=0)
    torch.set_rng_state(outer)
    with first.active():
        torch.rand(5)
    assert torch.equal(torch.get_rng_state(), outer)

    restored = distributed.RngStream(0)
    restored.load_state_dict(first.state_dict())
    with first.active():
        expected = torch.rand(4)
    with restored.active():
        torch.testing.assert_close(torch.rand(4), expected, rtol=0, atol=0)


def test_only_shard_zero_updates_buffers():
    norm = torch.nn.BatchNorm1d(3)
    sharding = Sharding(_stub_trainer(norm), ShardLayout(2, 1, 0))
    assert [shard.index for shard in sharding.shards] == [0, 1]
    data = torch.randn(8, 3) + 5
    with sharding.forward(sharding.shards[1]):
        norm(data)
    assert torch.equal(norm.running_mean, torch.zeros(3))
    with sharding.forward(sharding.shards[0]):
        norm(data)
    assert norm.running_mean.abs().min() > 0.1
    after_shard_zero = norm.running_mean.clone()
    with sharding.forward(sharding.shards[1]):
        norm(data * 2)
    assert torch.equal(norm.running_mean, after_shard_zero)
    # every buffer, the batch counter too (momentum=None averages over it): the
    # same whatever the number of processes the shards run in
    assert int(norm.num_batches_tracked) == 1


def test_batches_are_cut_into_one_slice_per_shard():
    sharding = Sharding(_stub_trainer(torch.nn.Linear(2, 2)), ShardLayout(4, 2, 1))
    assert [shard.index for shard in sharding.shards] == [2, 3]
    chunks = sharding.chunks(torch.arange(10))
    assert [(s.index, c.tolist()) for s, c in chunks] == [(2, [6, 7]), (3, [8, 9])]


def test_the_plain_loop_has_no_layout(synthetic_scenario):
    assert shard_layout(synthetic_scenario.hyper_params()) is None
    layout = shard_layout(
        synthetic_scenario.hyper_params(distributed={"num_shards": 4})
    )
    assert layout.local_indices == [0, 1, 2, 3]


def test_shards_must_divide_among_the_processes(synthetic_scenario, monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(NipConfigError) as error:
        shard_layout(synthetic_scenario.hyper_params())
    [problem] = error.value.problems
    assert problem.path == "distributed.num_shards"
    assert "multiple of the number of processes (2)" in problem.message
    assert "distributed.num_shards=2" in problem.message


def test_batches_that_do_not_split_into_the_shards_are_refused(synthetic_scenario):
    from nip_core.experiment import run_experiment

    hyper_params = synthetic_scenario.hyper_params(
        distributed={"num_shards": 3},
        rl=synthetic_scenario.short_rl(minibatch_size=4),
    )
    with pytest.raises(NipConfigError) as error:
        run_experiment(hyper_params, synthetic_scenario.settings(test_run=True))
    paths = {problem.path for problem in error.value.problems}
    assert paths == {"rl.minibatch_size", "distributed.num_shards"}
    message = str(error.value)
    assert "multiple of distributed.num_shards (3)" in message
    assert "must divide the training environments' batch (4 environments" in message


def test_a_sharded_run_in_one_process_resumes_where_it_stopped(synthetic_scenario):
    from nip_core.experiment import resume_run, run_experiment

    hyper_params = synthetic_scenario.hyper_params(
        distributed={"num_shards": 2},
        rl=synthetic_scenario.short_rl(num_iterations=3, minibatch_size=6),
    )
    settings = synthetic_scenario.settings(checkpoint_period=1)
    reference = run_experiment(hyper_params, settings, run_id="reference")

    def stop(trainer, iteration, metrics):
        if iteration == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(hyper_params, settings, run_id="stopped", callbacks=[stop])
    resumed = resume_run("stopped", settings.runs_dir, show_progress=False)
    assert resumed.resumed_from == 2
    expected = reference.trainer.agents_state_dict()
    actual = resumed.trainer.agents_state_dict()
    for agent, parts in expected.items():
        for part, state in parts.items():
            for key, value in state.items():
                torch.testing.assert_close(
                    actual[agent][part][key], value, rtol=0, atol=0
                )
    # The test metrics (the last record) too
    assert _same_but_timers(reference.metrics[-1], resumed.metrics[-1])


def _same_but_timers(a: dict, b: dict) -> bool:
    keys = {k for k in a if not k.startswith("timing.")}
    return keys == {k for k in b if not k.startswith("timing.")} and all(
        a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9) for k in keys
    )


def test_process_settings_are_unchanged_without_torchrun(monkeypatch):
    from nip_core.settings import ExperimentSettings

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    settings = ExperimentSettings(device="cpu", run_id="x")
    assert distributed.prepare_process_settings(settings) is settings
    assert distributed.world_size() == 1
    assert distributed.rank() == 0
    assert distributed.is_main_process()
    assert distributed.gather_objects("a") == ["a"]
    assert distributed.broadcast_object(5) == 5


def test_a_shards_backward_pass_goes_through_buffers_put_back():
    """Batch norm saves its running statistics for the backward pass: they are put
    back after the block, so the backward pass inside it still works."""
    norm = torch.nn.BatchNorm1d(3)
    sharding = Sharding(_stub_trainer(norm), ShardLayout(2, 1, 0))
    with sharding.forward(sharding.shards[1]):
        norm(torch.randn(8, 3) + 5).pow(2).sum().backward()
    assert norm.weight.grad is not None
    assert torch.equal(norm.running_mean, torch.zeros(3))


def test_a_trainer_that_does_not_shard_is_refused_before_the_run(synthetic_scenario):
    from nip_core.trainers.base import Trainer
    from nip_core.trainers.sharding import check_sharding

    class PlainTrainer(Trainer):
        def train(self) -> None:
            raise AssertionError("never reached")

    hyper_params = synthetic_scenario.hyper_params(distributed={"num_shards": 2})
    check_sharding(synthetic_scenario.hyper_params(), PlainTrainer)  # 1 shard: fine
    with pytest.raises(NipConfigError) as error:
        check_sharding(hyper_params, PlainTrainer)
    [problem] = error.value.problems
    assert problem.path == "trainer"
    assert "cannot run sharded (distributed.num_shards=2)" in problem.message
    check_sharding(hyper_params, type("Sharding", (), {"supports_sharding": True}))
