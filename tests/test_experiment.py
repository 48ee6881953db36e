"""run_experiment, resume_run, base runs, loading agents from runs, pre-training."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nip_core.errors import CheckpointError, NipConfigError
from nip_core.experiment import prepare_experiment, resume_run, run_experiment
from nip_core.runs import RunDirectory
from nip_core.runs.rollouts import read_rollout_sample
from nip_core.testing.contracts.trainer import (
    KilledForTest,
    assert_same_weights,
    comparable_metrics,
    final_agent_weights,
    kill_after,
)
from nip_core.testing.synthetic import SYNTHETIC_PLUGIN
from nip_core.testing.synthetic.fixtures import SyntheticScenario


@pytest.fixture
def scenario(register_plugin, tmp_path):
    register_plugin(SYNTHETIC_PLUGIN, name="synthetic")
    return SyntheticScenario(tmp_path)


pytestmark = pytest.mark.usefixtures("single_thread")


_rl = SyntheticScenario.short_rl


def _solo(scenario, epochs=2, **overrides):
    return scenario.hyper_params(
        "nip",
        trainer="solo_agent",
        solo_agent={"num_epochs": epochs, "batch_size": 8},
        **overrides,
    )


def test_run_directory_layout(scenario):
    hp = scenario.hyper_params("nip", rl=_rl())
    settings = scenario.settings(
        loggers=["csv"],
        rollout_sample_period=1,
        num_rollout_samples=2,
        checkpoint_period=1,
    )
    result = run_experiment(hp, settings, run_id="layout")
    run_dir = RunDirectory(result.run_dir)
    assert result.run_dir == scenario.root / "runs" / "layout"
    assert sorted(p.name for p in run_dir.path.iterdir()) == [
        "checkpoints",
        "csv",
        "hyper_params.json",
        "metrics.jsonl",
        "plots",
        "rollouts",
        "run_info.json",
        "settings.json",
    ]
    assert sorted(p.name for p in run_dir.checkpoints_dir.iterdir()) == [
        "iter_000001.pt",
        "iter_000002.pt",
        "latest.pt",
    ]
    assert run_dir.read_hyper_params() == hp.to_dict()
    assert run_dir.read_settings() == settings.to_dict() | {"run_id": "layout"}
    assert run_dir.read_run_info()["status"] == "finished"
    records = run_dir.read_metrics()
    assert [r["step"] for r in records] == [0, 1, 2]
    assert {
        "timing.collection_s",
        "timing.training_s",
        "timing.iteration_s",
        "timing.fps",
    } <= set(records[0])
    assert "test_mean_accuracy" in records[2]
    samples = sorted(p.name for p in run_dir.rollouts_dir.iterdir())
    assert samples == ["iter_000000.jsonl", "iter_000001.jsonl"]
    episodes = read_rollout_sample(run_dir.rollouts_dir / samples[0])
    assert len(episodes) == 2 and episodes[0]["steps"][0]["round"] == 0
    assert (run_dir.path / "csv" / "scalars" / "mean_accuracy.csv").is_file()


def _renderer_plugin(render):
    """A plugin registering ``render`` as the synthetic scenario's renderer."""
    from nip_core import hookimpl
    from nip_core.records import EpisodeRendererSpec

    class Renderer:
        @hookimpl
        def register_episode_renderers(self):
            return [EpisodeRendererSpec(scenario="synthetic", renderer=render)]

    return Renderer()


def test_rollout_samples_are_rendered_with_the_scenario_renderer(
    scenario, register_plugin, monkeypatch
):
    drawn = []

    def render(episode, path):
        drawn.append((episode["iteration"], episode["num_steps"]))
        path.write_bytes(b"png")

    register_plugin(_renderer_plugin(render), name="renderer")
    settings = scenario.settings(rollout_sample_period=2, num_rollout_samples=1)
    result = run_experiment(
        scenario.hyper_params("nip", rl=_rl(num_iterations=3)), settings, run_id="draw"
    )
    plots_dir = RunDirectory(result.run_dir).plots_dir
    episodes = sorted(p.name for p in plots_dir.glob("iter_*"))
    assert episodes == ["iter_000000_0.png", "iter_000002_0.png"]
    # The end of the run adds the training curves beside them
    assert (plots_dir / "accuracy.png").is_file()
    assert [iteration for iteration, _ in drawn] == [0, 2]

    # a sample keeps every episode asked for; only the first few are drawn
    from nip_core.runs.rollouts import read_rollout_sample
    from nip_core.trainers.rl import TensorDictRlTrainer

    monkeypatch.setattr(TensorDictRlTrainer, "EPISODE_PICTURES_PER_SAMPLE", 1)
    settings = scenario.settings(rollout_sample_period=2, num_rollout_samples=3)
    result = run_experiment(
        scenario.hyper_params("nip", rl=_rl(num_iterations=1)), settings, run_id="few"
    )
    run_dir = RunDirectory(result.run_dir)
    kept = read_rollout_sample(sorted(run_dir.rollouts_dir.glob("*"))[0])
    assert len(kept) > 1
    assert sorted(p.name for p in run_dir.plots_dir.glob("iter_*")) == [
        "iter_000000_0.png"
    ]


def test_a_failing_episode_renderer_does_not_stop_the_run(scenario, register_plugin):
    """A renderer is a plugin's drawing code: when it raises, the run warns once,
    draws no more pictures, keeps its rollout samples and finishes."""
    from nip_core.plugins import PluginWarning

    calls = []

    def render(episode, path):
        calls.append(episode["iteration"])
        raise ValueError("no font")

    register_plugin(_renderer_plugin(render), name="broken_renderer")
    settings = scenario.settings(rollout_sample_period=1, num_rollout_samples=1)
    with pytest.warns(PluginWarning) as caught:
        result = run_experiment(
            scenario.hyper_params("nip", rl=_rl(num_iterations=3)),
            settings,
            run_id="broken-renderer",
        )
    messages = [str(w.message) for w in caught if w.category is PluginWarning]
    assert len(messages) == 1
    assert "'synthetic' episode renderer of plugin 'broken_renderer'" in messages[0]
    assert "failed at iteration 0: ValueError: no font" in messages[0]
    assert calls == [0]
    run_dir = RunDirectory(result.run_dir)
    assert run_dir.read_run_info()["status"] == "finished"
    assert list(run_dir.plots_dir.glob("iter_*")) == []
    samples = sorted(p.name for p in run_dir.rollouts_dir.glob("iter_*.jsonl"))
    assert samples == ["iter_000000.jsonl", "iter_000001.jsonl", "iter_000002.jsonl"]


def test_same_run_id_with_other_parameters_is_refused(scenario):
    settings = scenario.settings()
    run_experiment(_solo(scenario, 1), settings, run_id="taken")
    with pytest.raises(CheckpointError, match="different experiment"):
        run_experiment(_solo(scenario, 3), settings, run_id="taken")


def test_a_run_that_failed_while_being_built_gives_its_run_id_back(
    scenario, monkeypatch
):
    """A config problem only the built experiment shows fails the run after its
    directory exists: the directory goes (nothing was saved), and the corrected
    config may take the same run id."""
    import nip_core.experiment

    settings = scenario.settings()
    with pytest.raises(NipConfigError, match="rl.frames_per_batch"):
        # frames per batch not a multiple of the environments' steps
        run_experiment(
            scenario.hyper_params(
                "nip", rl=_rl(frames_per_batch=14, steps_per_env_per_iteration=None)
            ),
            settings,
            run_id="fixed",
        )
    assert not (scenario.root / "runs" / "fixed").exists()
    # Any other failure while building keeps its directory, marked failed, and
    # a run of another experiment may still take its place
    with monkeypatch.context() as patch:

        def broken(*args):
            raise RuntimeError("a bug in the scenario")

        patch.setattr(nip_core.experiment, "_record_or_check_datasets", broken)
        with pytest.raises(RuntimeError, match="a bug in the scenario"):
            run_experiment(
                scenario.hyper_params("nip", rl=_rl(num_iterations=3)),
                settings,
                run_id="fixed",
            )
    run_dir = RunDirectory(f"{settings.runs_dir}/fixed")
    assert run_dir.read_run_info()["status"] == "failed"
    result = run_experiment(
        scenario.hyper_params("nip", rl=_rl(num_iterations=2)), settings, run_id="fixed"
    )
    info = RunDirectory(result.run_dir).read_run_info()
    assert info["status"] == "finished" and info.get("error") is None
    assert RunDirectory(result.run_dir).read_hyper_params()["rl"]["num_iterations"] == 2
    # A run that failed after saving something keeps its directory
    with pytest.raises(KilledForTest):
        run_experiment(
            scenario.hyper_params("nip", rl=_rl(num_iterations=3)),
            scenario.settings(checkpoint_period=1),
            run_id="kept",
            callbacks=[kill_after(0)],
        )
    # (the error names what differs)
    with pytest.raises(
        CheckpointError,
        match=r"holds a different experiment \(rl.num_iterations: 3 there, 4 here\)",
    ):
        run_experiment(
            scenario.hyper_params("nip", rl=_rl(num_iterations=4)),
            settings,
            run_id="kept",
        )


@pytest.mark.parametrize(
    "missing", ["dataset", "damaged", "package", "backend", "plugin_reference"]
)
def test_a_new_run_that_cannot_be_built_here_leaves_no_run_directory(
    scenario, monkeypatch, missing
):
    # data not there, or a package a part needs: fixed on the machine, not by
    # resuming, so the run directory would only be a failed run among the user's
    from nip_core.errors import (
        BackendError,
        DatasetDamagedError,
        DatasetNotFoundError,
        MissingPluginError,
        PluginError,
    )
    from nip_core.testing.synthetic.data import SyntheticDataset

    error = {
        "dataset": DatasetNotFoundError("dataset 'tiny' is not there"),
        "damaged": DatasetDamagedError("dataset 'tiny' is damaged"),
        "package": MissingPluginError("the part needs the package xyz"),
        "backend": BackendError("no API key in OPENAI_API_KEY"),
        # a plugin's class reference that names nothing (a typo in its spec)
        "plugin_reference": PluginError("the plugin reference 'm:Y' names nothing"),
    }[missing]

    def unavailable(self):
        raise error

    monkeypatch.setattr(SyntheticDataset, "build_tensor_dict", unavailable)
    settings = scenario.settings()
    with pytest.raises(type(error), match=str(error)):
        run_experiment(_solo(scenario), settings, run_id="never")
    assert not (scenario.root / "runs" / "never").exists()
    assert list((scenario.root / "runs").iterdir()) == []


def test_failed_run_is_marked_and_resume_needs_a_run(scenario):
    settings = scenario.settings()
    with pytest.raises(KilledForTest):
        run_experiment(
            _solo(scenario, 3),
            settings,
            run_id="f",
            callbacks=[kill_after(0)],
        )
    info = RunDirectory(scenario.root / "runs" / "f").read_run_info()
    assert info["status"] == "failed" and "KilledForTest" in info["error"]
    with pytest.raises(CheckpointError, match="--runs-dir DIR"):
        resume_run("missing", runs_dir=settings.runs_dir)
    # a bad value in the saved parameters is named with the file it is in
    saved_path = scenario.root / "runs" / "f" / "hyper_params.json"
    original = saved_path.read_text()
    saved = json.loads(original)
    saved["rl"]["num_iterations"] = "many"
    saved_path.write_text(json.dumps(saved))
    with pytest.raises(NipConfigError) as info:
        resume_run("f", runs_dir=settings.runs_dir)
    (problem,) = info.value.problems
    assert problem.path == "rl.num_iterations"
    assert problem.message.endswith(f"(saved in {saved_path})")
    saved_path.write_text(original)
    # a run directory that lost its settings.json resumes on the defaults, said
    (scenario.root / "runs" / "f" / "settings.json").unlink()
    from nip_core.errors import CheckpointWarning

    with pytest.warns(CheckpointWarning, match="has no settings.json"):
        resume_run("f", runs_dir=settings.runs_dir)
    # a run directory that lost its hyper_params.json is there, but cannot resume
    (scenario.root / "runs" / "f" / "hyper_params.json").unlink()
    with pytest.raises(CheckpointError) as info:
        resume_run("f", runs_dir=settings.runs_dir)
    assert str(info.value) == (
        f"run directory {scenario.root / 'runs' / 'f'} has no hyper_params.json: "
        "which experiment it holds cannot be told, so it cannot be resumed (put the "
        "file back, or start a new run)"
    )


def test_resume_overrides_settings(scenario):
    settings = scenario.settings(checkpoint_period=1)
    with pytest.raises(KilledForTest):
        run_experiment(
            _solo(scenario, 3),
            settings,
            run_id="r",
            callbacks=[kill_after(0)],
        )
    result = resume_run("r", runs_dir=settings.runs_dir, checkpoint_period=2)
    assert result.resumed_from == 1
    assert result.trainer.settings.checkpoint_period == 2
    assert [r["step"] for r in RunDirectory(result.run_dir).read_metrics()] == [
        0,
        1,
        2,
        3,
    ]


def test_a_run_is_not_resumed_on_other_data(scenario, monkeypatch):
    # a dataset found by name (NIP_DATA_DIR, a regenerated set) can change between
    # a run and its resume: the run records what it trained on and checks it
    from nip_core.errors import DatasetNotFoundError
    from nip_core.testing.synthetic.data import SyntheticDataset

    settings = scenario.settings(checkpoint_period=1)
    with pytest.raises(KilledForTest):
        run_experiment(
            _solo(scenario, 3), settings, run_id="d", callbacks=[kill_after(0)]
        )
    info = RunDirectory(scenario.root / "runs" / "d").read_run_info()
    assert info["datasets"]["train"]["size"] == 16
    assert info["datasets"]["test"]["size"] == 8
    assert len(info["datasets"]["train"]["sha256"]) == 64

    build = SyntheticDataset.build_tensor_dict

    def other_data(self):
        data = build(self)
        if self.split == "train":
            data = data[:12]
        return data

    run_dir = RunDirectory(scenario.root / "runs" / "d")
    before = {
        name: (run_dir.path / name).read_bytes()
        for name in ("metrics.jsonl", "run_info.json")
    }
    with monkeypatch.context() as patch:
        patch.setattr(SyntheticDataset, "build_tensor_dict", other_data)
        with pytest.raises(
            DatasetNotFoundError,
            match="the train split of dataset 'tiny' is not the one this run started "
            r"with: 16 datapoints then, 12 now.*`nip resume d --set run.data_dir=DIR`",
        ):
            resume_run("d", runs_dir=settings.runs_dir, ignore_cache=True)
    # the refused resume changed nothing: no record dropped, the status kept
    for name, content in before.items():
        assert (run_dir.path / name).read_bytes() == content, name
    # the same data: it resumes (the cache is rebuilt: the patched build above
    # wrote its data under the same cache key, as real data never would)
    result = resume_run("d", runs_dir=settings.runs_dir, ignore_cache=True)
    assert result.resumed_from == 1


def test_a_resumed_run_s_clock_goes_on_where_it_stopped(scenario, monkeypatch):
    from nip_core.runs import context

    class Clock:  # every reading 10 s after the one before
        now = 0.0

        def monotonic(self) -> float:
            self.now += 10.0
            return self.now

    monkeypatch.setattr(context, "time", Clock())
    # killed after 3 epochs with a checkpoint after 2: the third epoch's record
    # is dropped on resume, and the clock goes on from the second's
    settings = scenario.settings(checkpoint_period=2)
    with pytest.raises(KilledForTest):
        run_experiment(
            _solo(scenario, 4), settings, run_id="clock", callbacks=[kill_after(2)]
        )
    before = RunDirectory(scenario.root / "runs" / "clock").read_metrics()
    result = resume_run("clock", runs_dir=settings.runs_dir)
    assert result.resumed_from == 2
    after = RunDirectory(result.run_dir).read_metrics()
    kept = next(i for i, r in enumerate(after) if r["step"] >= result.resumed_from)
    assert after[:kept] == before[:kept] and len(before) > kept
    elapsed = [r["timing.elapsed_s"] for r in after]
    # one clock over both processes: from the last kept record on, not from 0,
    # and the time while the run was stopped is not counted
    assert elapsed[kept] == elapsed[kept - 1] + 10.0
    assert elapsed == sorted(elapsed) and len(set(elapsed)) == len(elapsed)
    assert [r["step"] for r in after] == [0, 1, 2, 3, 4]


def test_base_run_parameters_are_copied(scenario):
    settings = scenario.settings()
    base = run_experiment(_solo(scenario, 1, seed=11), settings, run_id="base")
    hp = _solo(
        scenario,
        1,
        seed=99,
        base_run={"base_run_type": "parameters", "run_id": "base"},
    )
    prepared = prepare_experiment(hp, settings)
    assert prepared.hyper_params.seed == 11
    assert prepared.hyper_params.base_run.base_run_type == "parameters"
    assert base.trainer.hyper_params.seed == 11


def test_a_base_run_that_is_not_there_is_named_with_the_closest_run(scenario):
    # a misspelt base_run.run_id: the setting, the value and the run it probably
    # meant, not "is this a run directory?" about a path the user never wrote
    settings = scenario.settings()
    run_experiment(_solo(scenario, 1), settings, run_id="20260101-000000-abcdef")
    hp = _solo(
        scenario,
        1,
        base_run={"base_run_type": "parameters", "run_id": "20260101-000000-abcdeg"},
    )
    with pytest.raises(NipConfigError) as info:
        run_experiment(hp, settings, run_id="child")
    (problem,) = info.value.problems
    assert problem.path == "base_run.run_id"
    assert problem.value == "20260101-000000-abcdeg"
    assert "did you mean '20260101-000000-abcdef'?" in problem.message
    assert not (scenario.root / "runs" / "child").exists()


def test_rerun_tests_uses_the_base_run_agents(scenario):
    settings = scenario.settings()
    base = run_experiment(
        scenario.hyper_params("nip", rl=_rl(num_test_iterations=1)),
        settings,
        run_id="base",
    )
    hp = scenario.hyper_params(
        "nip",
        rl=_rl(num_test_iterations=2, num_iterations=7),
        base_run={"base_run_type": "rerun_tests", "run_id": "base"},
    )
    result = run_experiment(hp, settings, run_id="rerun")
    # only the test loop ran, with this config's test settings
    assert len(result.metrics) == 1 and "test_mean_accuracy" in result.metrics[0]
    assert result.trainer.hyper_params.rl.num_test_iterations == 2
    assert result.trainer.hyper_params.rl.num_iterations == 2
    assert_same_weights(
        final_agent_weights(base.run_dir),
        {n: a.state_dict() for n, a in result.trainer.agents.items()},
    )


def test_agent_loaded_from_a_local_run(scenario):
    settings = scenario.settings()
    source = run_experiment(
        scenario.hyper_params("nip", rl=_rl(), agents={"_default": {"d_hidden": 5}}),
        settings,
        run_id="source",
    )
    hp = scenario.hyper_params(
        "nip",
        rl=_rl(),
        agents={
            "prover": {"d_hidden": 4},
            "verifier": {
                "d_hidden": 4,
                "load_checkpoint_and_parameters": True,
                "checkpoint_run_id": "source",
            },
        },
    )
    prepared = prepare_experiment(hp, settings)
    verifier = prepared.scenario_instance.agents["verifier"]
    assert prepared.hyper_params.agents["verifier"].d_hidden == 5
    assert prepared.hyper_params.agents["verifier"].checkpoint_run_id == "source"
    assert_same_weights(
        verifier.state_dict(), final_agent_weights(source.run_dir)["verifier"]
    )
    assert prepared.scenario_instance.agents["prover"].body.mlp[0].out_features == 4


def test_pretrained_bodies_are_cached(scenario):
    from nip_core.trainers.pretraining import (
        pretrain_agent_bodies,
        pretraining_cache_path,
    )

    hp = scenario.hyper_params(
        "nip",
        rl=_rl(),
        pretrain_agents=True,
        solo_agent={"num_epochs": 2, "batch_size": 8},
    )
    settings = scenario.settings()
    first = prepare_experiment(hp, settings).trainer

    def bodies(trainer):
        return {
            n: {k: v.clone() for k, v in a.body.state_dict().items()}
            for n, a in trainer.agents.items()
        }

    initial = bodies(first)
    assert pretrain_agent_bodies(first) is False
    trained = bodies(first)
    for name in ("prover", "verifier"):
        assert any(
            not torch.equal(initial[name][k], trained[name][k]) for k in trained[name]
        )
    assert pretraining_cache_path(hp, settings).is_file()

    second = prepare_experiment(hp, settings).trainer
    assert pretrain_agent_bodies(second) is True
    assert_same_weights(bodies(second), trained)
    # a parameter that shapes the bodies changes the cache entry
    other = scenario.hyper_params(
        "nip", rl=_rl(), pretrain_agents=True, solo_agent={"num_epochs": 3}
    )
    assert pretraining_cache_path(other, settings) != pretraining_cache_path(
        hp, settings
    )
    json.dumps(hp.to_dict())


def test_a_pretraining_cache_hit_trains_the_agents_a_miss_trains(scenario):
    """The cache only saves time: the run that pre-trains the bodies and the run
    that loads them end with the same agents, bit for bit (the stale gradients of
    the last pre-training step, the solo heads and the environment's episode
    stream once made them differ)."""
    from nip_core.trainers.pretraining import pretraining_cache_path

    hp = scenario.hyper_params(
        "nip",
        rl=_rl(num_iterations=2, num_epochs=2),
        reinforce={"use_advantage_and_critic": True},
        pretrain_agents=True,
        solo_agent={"num_epochs": 2, "batch_size": 8},
        seed=3,
    )
    settings = scenario.settings()
    path = pretraining_cache_path(hp, settings)
    miss = run_experiment(hp, settings)
    assert path.is_file()
    cached_at = path.stat().st_mtime_ns
    hit = run_experiment(hp, settings)
    assert path.stat().st_mtime_ns == cached_at  # loaded, not trained again
    assert_same_weights(
        final_agent_weights(miss.run_dir), final_agent_weights(hit.run_dir)
    )

    # ... and logs what pre-training measured, where the miss logged it
    def pretraining_records(result):
        return [
            {k: v for k, v in record.items() if "pretrain_test" in k or k == "step"}
            for record in result.metrics
            if any("pretrain_test" in k for k in record)
        ]

    logged = pretraining_records(miss)
    assert [record["step"] for record in logged] == [0]
    assert set(logged[0]) == {
        "step",
        *(
            f"{a}.pretrain_test_{m}"
            for a in ("prover", "verifier")
            for m in ("loss", "accuracy")
        ),
    }
    assert pretraining_records(hit) == logged


def test_a_body_frozen_for_pretraining_only_trains_in_rl(scenario):
    """Bodies factor 0 and rl.body_lr_factor_override 1: pre-training leaves the
    bodies as they are (solo_agent.body_lr_factor_override is off), the RL phase
    trains them at rl.lr. Pre-training's optimizer turned their requires_grad off,
    and the RL optimizer, built after it, used to leave them out: a run that
    pre-trained kept its bodies frozen, one that loaded them from the cache
    trained them."""
    from nip_core.trainers.pretraining import pretraining_cache_path

    hp = scenario.hyper_params(
        "nip",
        rl=_rl(num_iterations=2, lr=0.01, body_lr_factor_override={"actor": 1.0}),
        agents={"_default": {"body_lr_factor": {"actor": 0.0, "critic": 0.0}}},
        pretrain_agents=True,
        solo_agent={"num_epochs": 2, "batch_size": 8},
    )
    settings = scenario.settings()
    path = pretraining_cache_path(hp, settings)
    initial = prepare_experiment(hp, settings).trainer.agents_state_dict()
    bodies = {}
    for run in ("miss", "hit"):
        result = run_experiment(hp, settings)
        assert path.is_file()
        trainer = result.trainer
        groups = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
        assert groups == {
            f"{agent}.{part}": 0.01
            for agent in ("prover", "verifier")
            for part in ("body", "policy_head", "solo_head")
        }, run
        bodies[run] = final_agent_weights(result.run_dir)
        for agent in ("prover", "verifier"):
            trained = bodies[run][agent]["body"]
            assert any(
                not torch.equal(trained[k], initial[agent]["body"][k]) for k in trained
            ), (run, agent)
    assert_same_weights(bodies["miss"], bodies["hit"])


def test_pretraining_leaves_no_gradients(scenario):
    from nip_core.trainers.pretraining import pretrain_agent_bodies

    hp = scenario.hyper_params(
        "nip", rl=_rl(), pretrain_agents=True, solo_agent={"num_epochs": 1}
    )
    trainer = prepare_experiment(hp, scenario.settings()).trainer
    assert pretrain_agent_bodies(trainer) is False
    for name, agent in trainer.agents.items():
        for role, part in agent.parts.items():
            for param_name, param in part.named_parameters():
                assert param.grad is None, f"{name}.{role}.{param_name}"


def test_observations_of_datapoints_leave_the_episode_stream_alone(scenario):
    """What pre-training reads (datapoints_to_observation) draws its episode seeds
    apart from the environment's own stream, the same for the same batch."""
    trainer = prepare_experiment(
        scenario.hyper_params("nip", rl=_rl()), scenario.settings()
    ).trainer
    env = trainer.scenario_instance.train_environment
    data = trainer.scenario_instance.train_dataset[torch.arange(5)]
    before = env.rng.get_state()
    first = env.datapoints_to_observation(data)
    second = env.datapoints_to_observation(data)
    assert torch.equal(env.rng.get_state(), before)
    assert torch.equal(first["seed"], second["seed"])
    assert first["seed"].unique().numel() > 1


def test_the_pretraining_cache_key(scenario):
    from nip_core.trainers.pretraining import pretraining_cache_key

    def key(**overrides):
        overrides.setdefault("rl", _rl())
        return pretraining_cache_key(
            scenario.hyper_params("nip", pretrain_agents=True, **overrides)
        )

    base = key()
    # sharded pre-training has other random streams: another experiment
    assert key(distributed={"num_shards": 2}) != base
    assert key(solo_agent={"learning_rate": 0.5}) != base
    assert key(agents={"_default": {"d_hidden": 5}}) != base
    # what only the RL phase reads shares the bodies
    assert key(protocol_common={"verifier_reward": 2.0, "shared_reward": True}) == base
    assert key(rl=_rl(lr=0.5)) == base
    schedule = {
        "_type": "ContiguousPeriodicUpdateSchedule",
        "period": 2,
        "start": 0,
        "stop": 1,
    }
    assert key(agents={"_default": {"update_schedule": schedule}}) == base
    # an agent spelled out with the defaults' values (the fixture's width 4) is
    # keyed as the defaults are; another schedule does not matter there either
    assert key(agents={"verifier": {"d_hidden": 4}}) == base
    assert key(agents={"verifier": {"d_hidden": 4, "update_schedule": schedule}}) == (
        base
    )
    assert key(agents={"verifier": {"d_hidden": 5}}) != base
    # the parts the RL trainer builds: each agent's solo head is initialised after
    # them, from the agent's own stream, so they shape the pre-trained bodies
    # (reinforce without a critic builds one body whatever rl.use_shared_body says)
    with_critic = key(reinforce={"use_advantage_and_critic": True})
    assert with_critic != base
    assert key(rl=_rl(use_shared_body=False)) == base
    assert key(
        rl=_rl(use_shared_body=False), reinforce={"use_advantage_and_critic": True}
    ) not in (base, with_critic)


def test_pretrained_bodies_depend_on_what_their_key_does(scenario):
    """Pre-training with and without a critic trains other bodies (the solo head
    starts elsewhere), and the two have other cache entries; with one body or two
    when there is no critic (one body either way), the same bodies and entry (each
    trained here, not loaded)."""
    from nip_core.trainers.pretraining import (
        pretrain_agent_bodies,
        pretraining_cache_key,
    )

    def pretrained(**overrides):
        hp = scenario.hyper_params(
            "nip",
            pretrain_agents=True,
            solo_agent={"num_epochs": 1, "batch_size": 8},
            **overrides,
        )
        settings = scenario.settings(ignore_cache=True)
        trainer = prepare_experiment(hp, settings).trainer
        assert pretrain_agent_bodies(trainer) is False
        return pretraining_cache_key(hp), trainer.agents["verifier"].body.state_dict()

    base_key, base = pretrained(rl=_rl())
    same_key, same = pretrained(rl=_rl(use_shared_body=False))
    critic_key, critic = pretrained(
        rl=_rl(), reinforce={"use_advantage_and_critic": True}
    )
    assert same_key == base_key
    assert_same_weights(same, base)
    assert critic_key != base_key
    assert any(not torch.equal(critic[k], base[k]) for k in base)


def _normalised_pretraining(scenario, **rl):
    return scenario.hyper_params(
        "nip",
        rl=_rl(**{"normalize_observations": True, "num_normalization_steps": 5, **rl}),
        pretrain_agents=True,
        solo_agent={"num_epochs": 1, "batch_size": 16},
        seed=2,
    )


def test_pretraining_feeds_the_bodies_what_rl_does(scenario, monkeypatch):
    """With rl.normalize_observations, RL feeds the bodies observations through
    the environments' ObservationNorm; pre-training feeds them the same, bit for
    bit, for the same datapoint (it fed them the raw observations, another input
    distribution than the one the pre-trained bodies were used on)."""
    from nip_core.trainers.solo_agent import SoloAgentTrainer

    trainer = prepare_experiment(
        _normalised_pretraining(scenario), scenario.settings()
    ).trainer
    body = trainer.agents["verifier"].body
    observed: list[tuple[bool, torch.Tensor]] = []
    fed: list[torch.Tensor] = []
    rl_first: dict[str, torch.Tensor] = {}
    original_observation = SoloAgentTrainer._observation

    def observation(self, data, train):
        result = original_observation(self, data, train)
        observed.append((train, result["datapoint_id"].clone()))
        return result

    monkeypatch.setattr(SoloAgentTrainer, "_observation", observation)
    body.register_forward_pre_hook(lambda module, args: fed.append(args[0]["x"]))
    original_pretrain = trainer._pretrain_agents

    def pretrain():
        original_pretrain()
        env = trainer.train_environment
        original_reset = env.reset

        def reset(*args, **kwargs):
            td = original_reset(*args, **kwargs)
            if not rl_first:  # RL's first observations: every episode at round 0
                rl_first.update(ids=td["datapoint_id"].clone(), x=td["x"].clone())
            return td

        monkeypatch.setattr(env, "reset", reset)

    monkeypatch.setattr(trainer, "_pretrain_agents", pretrain)
    trainer.train()
    assert type(trainer.train_environment).__name__ == "TransformedEnv"
    # each observation is read by the verifier's body once
    pretraining = {}
    for (train, ids), x in zip(observed, fed, strict=False):
        if train:
            for index, row in zip(ids.tolist(), x, strict=True):
                pretraining[index] = row
    assert pretraining
    compared = 0
    for index, row in zip(rl_first["ids"].tolist(), rl_first["x"], strict=True):
        if index in pretraining:
            assert torch.equal(pretraining[index], row), index
            compared += 1
    assert compared > 0
    # normalised: not the raw bits
    assert not torch.all((rl_first["x"] == 0) | (rl_first["x"] == 1))


def test_normalised_pretraining_cache_hit_and_miss_and_resume(scenario):
    """With rl.normalize_observations the cache key holds the normalisation
    statistics (an entry pre-trained on other inputs is not used); a cache hit and
    a miss give the same run, bit for bit, and so does a resumed run."""
    hp = _normalised_pretraining(scenario, num_iterations=3)
    settings = scenario.settings(checkpoint_period=1)
    raw = scenario.hyper_params(
        "nip",
        rl=_rl(num_iterations=3, num_normalization_steps=5),
        pretrain_agents=True,
        solo_agent={"num_epochs": 1, "batch_size": 16},
        seed=2,
    )
    cache = scenario.root / "cache" / "pretrained_bodies"
    run_experiment(raw, settings)
    assert len(list(cache.glob("*.pt"))) == 1
    miss = run_experiment(hp, settings)
    entries = sorted(cache.glob("*.pt"))
    assert len(entries) == 2  # not the entry trained on raw observations
    stamps = [entry.stat().st_mtime_ns for entry in entries]
    hit = run_experiment(hp, settings)
    assert [entry.stat().st_mtime_ns for entry in sorted(cache.glob("*.pt"))] == (
        stamps
    )
    assert_same_weights(
        final_agent_weights(miss.run_dir), final_agent_weights(hit.run_dir)
    )
    assert comparable_metrics(miss.metrics) == comparable_metrics(hit.metrics)
    # the key follows the statistics (another number of steps, other statistics)
    from nip_core.trainers.pretraining import (
        observation_transforms,
        pretraining_cache_key,
    )

    trainer = hit.trainer
    key = pretraining_cache_key(hp, observation_transforms(trainer))
    assert key != pretraining_cache_key(hp)
    other = prepare_experiment(
        _normalised_pretraining(scenario, num_iterations=3, num_normalization_steps=6),
        settings,
    ).trainer
    other._add_normalization_transforms()
    assert pretraining_cache_key(
        other.hyper_params, observation_transforms(other)
    ) not in (key, pretraining_cache_key(other.hyper_params))

    with pytest.raises(KilledForTest):
        run_experiment(hp, settings, run_id="killed", callbacks=[kill_after(0)])
    resumed = resume_run("killed", runs_dir=settings.runs_dir)
    assert resumed.resumed_from == 1
    assert_same_weights(
        final_agent_weights(miss.run_dir), final_agent_weights(resumed.run_dir)
    )
    for split in ("train", "test"):
        left = observation_transforms(miss.trainer)[split].state_dict()
        right = observation_transforms(resumed.trainer)[split].state_dict()
        assert left.keys() == right.keys()
        for name in left:
            assert torch.equal(left[name], right[name]), (split, name)


# --------------------------------------------------------------------------------------
# The factory


def _parts(agent):
    return {role: type(part).__name__ for role, part in agent.parts.items()}


def test_parts_follow_the_trainer_type(scenario):
    settings = scenario.settings()
    plain = prepare_experiment(scenario.hyper_params("nip", rl=_rl()), settings)
    assert _parts(plain.scenario_instance.agents["verifier"]) == {
        "body": "SyntheticAgentBody",
        "policy_head": "SyntheticAgentPolicyHead",
    }
    critic = prepare_experiment(
        scenario.hyper_params(
            "nip",
            rl=_rl(use_shared_body=False),
            reinforce={"use_advantage_and_critic": True},
        ),
        settings,
    ).scenario_instance
    assert set(critic.agents["prover"].parts) == {
        "policy_body",
        "value_body",
        "policy_head",
        "value_head",
    }
    assert critic.combined_value_head is not None and critic.combined_body is None
    solo = prepare_experiment(_solo(scenario), settings).scenario_instance
    assert set(solo.agents["prover"].parts) == {"body", "solo_head"}


def test_random_agent_gets_random_head_and_frozen_body(scenario):
    hp = scenario.hyper_params(
        "nip",
        rl=_rl(),
        reinforce={"use_advantage_and_critic": True},
        agents={"prover": {"is_random": True}, "verifier": {"d_hidden": 4}},
    )
    prover = prepare_experiment(hp, scenario.settings()).scenario_instance.agents[
        "prover"
    ]
    assert _parts(prover)["policy_head"] == "RandomAgentPolicyHead"
    assert _parts(prover)["value_head"] == "ConstantAgentValueHead"
    assert not any(p.requires_grad for p in prover.body.parameters())


def test_agent_initialisation_depends_only_on_its_own_seed(scenario):
    settings = scenario.settings()

    def verifier_weights(prover_width):
        hp = scenario.hyper_params(
            "nip",
            rl=_rl(),
            agents={"prover": {"d_hidden": prover_width}, "verifier": {"d_hidden": 4}},
        )
        agents = prepare_experiment(hp, settings).scenario_instance.agents
        return agents["verifier"].state_dict(), agents["prover"].state_dict()

    verifier_a, prover_a = verifier_weights(4)
    verifier_b, _ = verifier_weights(7)
    assert_same_weights(verifier_a, verifier_b)
    assert not torch.equal(
        prover_a["body"]["mlp.0.weight"], verifier_a["body"]["mlp.0.weight"]
    )


def test_a_run_saved_before_a_section_existed_resumes(scenario):
    """A section added since a run was saved (``distributed``, say) takes its
    default: the run directory still holds the same experiment."""
    settings = scenario.settings(checkpoint_period=1)
    with pytest.raises(KilledForTest):
        run_experiment(
            _solo(scenario, 3), settings, run_id="old", callbacks=[kill_after(0)]
        )
    run_dir = RunDirectory(f"{settings.runs_dir}/old")
    saved = run_dir.read_hyper_params()
    del saved["distributed"]
    run_dir.hyper_params_path.write_text(json.dumps(saved))
    result = resume_run("old", runs_dir=settings.runs_dir)
    assert result.resumed_from == 1

    saved["seed"] = saved["seed"] + 1
    run_dir.hyper_params_path.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="holds a different experiment"):
        run_experiment(_solo(scenario, 3), settings, run_id="old")


def test_resuming_a_run_without_checkpoints_says_it_starts_again(scenario):
    from nip_core.errors import CheckpointWarning

    hp = scenario.hyper_params("nip", rl=_rl(num_iterations=2))
    settings = scenario.settings(checkpoint_period=1)
    result = run_experiment(hp, settings, run_id="lost_checkpoints")
    run_dir = RunDirectory(result.run_dir)
    logged = len(run_dir.read_metrics())
    for path in run_dir.checkpoints_dir.iterdir():
        path.unlink()
    with pytest.warns(CheckpointWarning) as caught:
        resume_run("lost_checkpoints", runs_dir=scenario.root / "runs")
    assert f"run lost_checkpoints has {logged} logged records but no checkpoint" in (
        str(caught[0].message)
    )
    assert "starts again from iteration 0" in str(caught[0].message)
    assert [r["step"] for r in run_dir.read_metrics()] == [0, 1, 2]


def test_a_run_driven_by_another_live_process_is_not_driven_twice(scenario):
    import socket
    import subprocess
    import sys

    from nip_core.experiment import _process_start

    hp = scenario.hyper_params("nip", rl=_rl(num_iterations=2))
    settings = scenario.settings(checkpoint_period=1)
    result = run_experiment(hp, settings, run_id="busy")
    run_dir = RunDirectory(result.run_dir)
    assert run_dir.read_run_info()["process"]["pid"] == os.getpid()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # as if that process were resuming the run right now
        process = {
            "pid": other.pid,
            "host": socket.gethostname(),
            "start": _process_start(other.pid),
        }
        run_dir.write_run_info(status="running", process=process)
        with pytest.raises(CheckpointError, match=f"running in process {other.pid}"):
            resume_run("busy", runs_dir=scenario.root / "runs")
        with pytest.raises(CheckpointError, match="running in process"):
            run_experiment(hp, settings, run_id="busy")
        assert run_dir.read_run_info()["status"] == "running"
        # a reused pid (another start time) is not that process
        run_dir.write_run_info(process={**process, "start": -1})
        resume_run("busy", runs_dir=scenario.root / "runs")
        assert run_dir.read_run_info()["status"] == "finished"
    finally:
        other.kill()
        other.wait()
    # the process died without a word (SIGKILL): the run is free
    run_dir.write_run_info(status="running", process=process)
    resume_run("busy", runs_dir=scenario.root / "runs")
    assert run_dir.read_run_info()["status"] == "finished"


def test_a_run_locked_by_another_process_is_refused_however_close_they_start(
    scenario,
):
    """Two resumes started together both passed the pid check (each read the run
    info before the other wrote its pid). A process driving a run holds a lock on
    it: a second one is refused at once, and the lock goes with its holder."""
    import subprocess
    import sys
    import textwrap

    hp = scenario.hyper_params("nip", rl=_rl(num_iterations=2))
    settings = scenario.settings(checkpoint_period=1)
    run_experiment(hp, settings, run_id="locked")
    lock = scenario.root / "runs" / ".locked.lock"
    assert lock.is_file()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, sys, time
                handle = open({str(lock)!r}, "a+")
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                handle.seek(0)
                handle.truncate()
                handle.write("process 4242")
                handle.flush()
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match="being driven by process 4242"):
            resume_run("locked", runs_dir=scenario.root / "runs")
        assert (
            RunDirectory(scenario.root / "runs" / "locked").read_run_info()["status"]
            == "finished"
        )
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone, and its lock with it
    resume_run("locked", runs_dir=scenario.root / "runs")


def test_a_resume_removes_what_a_kill_while_saving_left(scenario):
    hp = scenario.hyper_params("nip", rl=_rl(num_iterations=2))
    settings = scenario.settings(checkpoint_period=1)
    result = run_experiment(hp, settings, run_id="torn")
    run_dir = RunDirectory(result.run_dir)
    half = run_dir.checkpoints_dir / ".latest.pt.a1b2c3d4.tmp"
    half.write_bytes(b"half a checkpoint")
    resume_run("torn", runs_dir=scenario.root / "runs")
    assert not half.exists()
    assert (run_dir.checkpoints_dir / "latest.pt").is_file()


def test_a_relative_own_data_path_is_saved_absolute(scenario, monkeypatch):
    """A run on ``dataset=./mine`` saves the absolute path, so a resume from another
    directory reads the same data; a run saved with the relative path (before this
    rule) is still the same experiment when started again from its directory."""
    import json

    first = scenario.root / "first"
    elsewhere = scenario.root / "elsewhere"
    first.mkdir()
    elsewhere.mkdir()
    settings = scenario.settings(checkpoint_period=1)
    hyper_params = _solo(scenario, 3, dataset="./mine")
    monkeypatch.chdir(first)
    with pytest.raises(KilledForTest):
        run_experiment(hyper_params, settings, run_id="own", callbacks=[kill_after(0)])
    run_dir = RunDirectory(scenario.root / "runs" / "own")
    assert run_dir.read_hyper_params()["dataset"] == str(first / "mine")
    monkeypatch.chdir(elsewhere)
    result = resume_run("own", runs_dir=settings.runs_dir)
    assert result.resumed_from == 1
    assert result.trainer.hyper_params.dataset == str(first / "mine")

    # an older run that saved "./mine": started again from its directory, it goes on
    saved = run_dir.read_hyper_params()
    saved["dataset"] = "./mine"
    run_dir.hyper_params_path.write_text(json.dumps(saved))
    monkeypatch.chdir(first)
    again = run_experiment(hyper_params, settings, run_id="own")
    assert again.resumed_from is not None


def test_resuming_an_older_run_says_what_was_converted_once(scenario):
    import json
    import warnings

    from nip_core.parameters import ParameterMigrationWarning

    settings = scenario.settings(checkpoint_period=1)
    with pytest.raises(KilledForTest):
        run_experiment(
            _solo(scenario, 3), settings, run_id="old", callbacks=[kill_after(0)]
        )
    run_dir = RunDirectory(scenario.root / "runs" / "old")
    saved = run_dir.read_hyper_params()
    # as nip-core 0.1.0 saved it: the two-class reduction in the core's section
    saved["_meta"]["versions"]["nip-core"] = "0.1.0"
    saved["dataset_options"]["make_balanced"] = True
    run_dir.hyper_params_path.write_text(json.dumps(saved))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = resume_run("old", runs_dir=settings.runs_dir)
    assert result.resumed_from == 1
    conversions = [
        w for w in caught if issubclass(w.category, ParameterMigrationWarning)
    ]
    assert len(conversions) == 1, [str(w.message) for w in conversions]
    assert "make_balanced" in str(conversions[0].message)
