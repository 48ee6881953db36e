"""The staged text trainer: test schemes, fine-tune rules, failed jobs, shared model
groups, re-running a base run's tests, test runs, learning, validation."""

from __future__ import annotations

import json

import attrs
import pytest

from nip_core import hookimpl
from nip_core.errors import BackendError, BackendWarning, NipConfigError
from nip_core.experiment import resume_run, run_experiment
from nip_core.records import EpisodeRendererSpec
from nip_core.runs.run_dir import RunDirectory
from nip_core.testing.synthetic_text.fixtures import scripted_server


def steps_with(records, key):
    return [r["step"] for r in records if key in r]


def run(scenario, run_id, protocol="nip", settings=None, **overrides):
    return run_experiment(
        scenario.hyper_params(protocol, **overrides),
        settings or scenario.settings(),
        run_id=run_id,
    )


@pytest.mark.parametrize(
    ("scheme", "test_steps"),
    [("none", []), ("last", [3]), ("first_and_last", [0, 3]), ("all", [0, 1, 2, 3])],
)
def test_test_schemes(synthetic_text_scenario, scheme, test_steps):
    result = run(
        synthetic_text_scenario,
        f"scheme-{scheme}",
        text_rl={"num_iterations": 3, "test_scheme": scheme},
    )
    records = RunDirectory(result.run_dir).read_metrics()
    assert steps_with(records, "test_mean_accuracy") == test_steps
    assert steps_with(records, "mean_accuracy") == [0, 1, 2]
    files = sorted(p.name for p in (result.run_dir / "rollouts").glob("test_*.jsonl"))
    assert files == [f"test_iter_{s:06d}.jsonl" for s in test_steps]


def test_data_order_continues_across_iterations(synthetic_text_scenario):
    result = run(
        synthetic_text_scenario,
        "order",
        text_rl={"num_iterations": 3, "rollouts_per_iteration": 3},
    )
    seen = []
    for i in range(3):
        with open(result.run_dir / "rollouts" / f"iter_{i:06d}.jsonl") as f:
            seen += [json.loads(line)["datapoint_index"] for line in f]
    # 9 draws from 8 datapoints: the first pass uses each once
    assert sorted(seen[:8]) == list(range(8))
    state = json.loads((result.run_dir / "checkpoints" / "text_state.json").read_text())
    assert state["train_data_offset"] == 9
    assert state["train_loop_stage"] == "done"


def test_too_few_examples_keeps_the_model(synthetic_text_scenario):
    server = synthetic_text_scenario.server
    result = run(
        synthetic_text_scenario,
        "few",
        text_rl={"num_iterations": 1, "min_fine_tune_examples": 100},
    )
    records = RunDirectory(result.run_dir).read_metrics()
    record = [r for r in records if "fine_tune.verifier.fine_tuned" in r][0]
    assert record["fine_tune.verifier.fine_tuned"] == 0
    assert record["fine_tune.verifier.too_few_examples"] == 1
    assert server.jobs_created == 0
    groups = result.trainer.shared_model_groups
    assert groups["verifier"].model_name == "scripted"


def test_frozen_agents_are_never_fine_tuned(synthetic_text_scenario):
    server = synthetic_text_scenario.server
    result = run(
        synthetic_text_scenario,
        "frozen",
        agents={"_default": {}, "prover": {"freeze_agent": True}},
    )
    metadata = [job["metadata"]["nip_job"] for job in server.jobs.values()]
    assert metadata and all("verifier" in name for name in metadata)
    assert result.trainer.shared_model_groups["prover"].model_name == "scripted"


def test_shared_model_group_fine_tunes_once_for_both_agents(synthetic_text_scenario):
    server = synthetic_text_scenario.server
    result = run(
        synthetic_text_scenario,
        "shared",
        agents={"_default": {"shared_model_group": "everyone"}},
    )
    groups = result.trainer.shared_model_groups
    assert list(groups) == ["everyone"]
    assert groups["everyone"].agent_names == ["prover", "verifier"]
    assert server.jobs_created == 2  # one per iteration
    examples = server.job_training_examples(next(iter(server.jobs)))
    systems = {e["messages"][0]["content"].split(".")[0] for e in examples}
    assert systems == {"You are a prover", "You are the verifier"}
    # what the endpoint reports of each succeeded job is logged with the group's
    # count: the tokens it trained on
    records = RunDirectory(result.run_dir).read_metrics()
    logged = [r for r in records if "fine_tune.everyone.num_examples" in r]
    jobs = sorted(server.jobs.values(), key=lambda job: job["created_at"])
    assert [r["fine_tune.everyone.trained_tokens"] for r in logged] == [
        job["trained_tokens"] for job in jobs
    ]
    assert all(job["trained_tokens"] > 0 for job in jobs)


def test_disagreeing_shared_model_group_is_refused(synthetic_text_scenario):
    with pytest.raises(NipConfigError) as caught:
        synthetic_text_scenario.hyper_params(
            "nip",
            agents={
                "_default": {"shared_model_group": "g"},
                "verifier": {"shared_model_group": "g", "model_name": "other"},
            },
        )
    message = str(caught.value)
    assert "shared model group 'g' must agree on model_name" in message
    assert "prover='scripted'" in message and "verifier='other'" in message


def test_zero_knowledge_is_refused_in_the_text_world(synthetic_text_scenario):
    with pytest.raises(
        NipConfigError, match="zero-knowledge protocols need the tensor"
    ):
        synthetic_text_scenario.hyper_params(
            "nip", protocol_common={"zero_knowledge": True}
        )


def test_the_tensor_worlds_own_fields_warn_in_a_text_run(synthetic_text_scenario):
    from nip_core.errors import ParameterWarning
    from nip_core.parameters.usage import unread_fields

    with pytest.warns(ParameterWarning) as caught:
        hyper_params = synthetic_text_scenario.hyper_params(
            "nip", d_representation=32, pretrain_agents=True
        )
    [message] = [
        str(w.message) for w in caught if "text world does not read" in str(w.message)
    ]
    assert "d_representation=32" in message and "pretrain_agents=True" in message
    assert "message_size" not in message  # at its default
    # none of them is read: the tensor world's fields, and test_size (the
    # scenario's own unread_parameters)
    assert unread_fields(hyper_params) == [
        "functionalize_modules",
        "pretrain_agents",
        "test_size",
        "d_representation",
        "message_size",
        "include_linear_message_space",
        "d_linear_message_space",
    ]
    # pre-training is the tensor world's: its section is not read either
    from nip_core.parameters.usage import read_sections

    assert "solo_agent" not in read_sections(hyper_params)


def test_loading_an_agent_from_another_run_is_not_called_unread_in_a_text_run(
    synthetic_text_scenario,
):
    # building the agents reads load_checkpoint_and_parameters and checkpoint_* in
    # the text world too (it replaces the agent's parameters by the other run's,
    # here failing for want of that run): no warning may call them unread, and
    # nip config show may not hide them
    import warnings

    from nip_core.cli.config_cmd import unused_agent_fields
    from nip_core.errors import CheckpointError, ParameterWarning
    from nip_core.experiment import prepare_experiment

    agents = {
        "verifier": {
            "load_checkpoint_and_parameters": True,
            "checkpoint_run_id": "elsewhere",
        }
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hyper_params = synthetic_text_scenario.hyper_params("nip", agents=agents)
    said = [
        str(w.message)
        for w in caught
        if issubclass(w.category, ParameterWarning) and "checkpoint" in str(w.message)
    ]
    assert said == []
    hidden = unused_agent_fields(hyper_params)
    assert not any("checkpoint" in name for names in hidden.values() for name in names)
    with pytest.raises(CheckpointError, match="elsewhere"):
        prepare_experiment(hyper_params, synthetic_text_scenario.settings())


def test_a_text_agent_loads_its_parameters_and_model_from_another_run(
    synthetic_text_scenario, monkeypatch
):
    """``load_checkpoint_and_parameters`` for a text agent: the other run's
    parameters for it, and the model its shared model group had (``latest``: its
    last fine-tune; an iteration: the model that iteration used)."""
    import json

    from nip_core.errors import CheckpointError
    from nip_core.experiment import run_experiment
    from nip_core.trainers.text import TEXT_STATE_FILE

    source = run_experiment(
        synthetic_text_scenario.hyper_params(
            "nip", agents={"verifier": {"temperature": 0.25}}
        ),
        synthetic_text_scenario.settings(),
        run_id="source",
    )
    state = json.loads((source.run_dir / "checkpoints" / TEXT_STATE_FILE).read_text())
    group = state["shared_model_groups"]["verifier"]
    assert group["num_fine_tunes"] == 2  # so latest is not the base model
    base = synthetic_text_scenario.hyper_params("nip").agents["verifier"].model_name

    def verifier_of(version):
        hyper_params = synthetic_text_scenario.hyper_params(
            "nip",
            agents={
                "verifier": {
                    "load_checkpoint_and_parameters": True,
                    "checkpoint_run_id": "source",
                    "checkpoint_version": version,
                }
            },
        )
        instance = synthetic_text_scenario.build(hyper_params)
        try:
            return instance.agents["verifier"].agent_params
        finally:
            instance.close()

    from nip_core.text.openai_backend import OpenAiBackend

    noted = []
    monkeypatch.setattr(
        OpenAiBackend, "note_fine_tuned_model", lambda self, model: noted.append(model)
    )
    latest = verifier_of("latest")
    assert latest.model_name == group["model_name"] != base
    # a backend with several endpoints asks the model of the one that made it
    assert noted == [group["model_name"]]
    assert latest.temperature == 0.25  # the other run's parameters
    assert latest.checkpoint_run_id == "source"
    assert verifier_of("0").model_name == group["model_history"][0] == base
    assert verifier_of("1").model_name == group["model_history"][1]
    with pytest.raises(CheckpointError, match="an iteration from 0 to 1"):
        verifier_of("7")
    # a run that is not a text run says so
    (source.run_dir / "checkpoints" / TEXT_STATE_FILE).unlink()
    with pytest.raises(CheckpointError, match="has no text-run state"):
        verifier_of("latest")


def test_unknown_backend_is_refused(synthetic_text_scenario):
    with pytest.raises(NipConfigError) as caught:
        synthetic_text_scenario.hyper_params("nip", text_backend={"name": "nonsense"})
    assert "text_backend.name" in str(caught.value)
    assert "openai" in str(caught.value)
    with pytest.raises(NipConfigError) as caught:
        synthetic_text_scenario.hyper_params("nip", text_backend={"name": "opnai"})
    assert "unknown text backend; did you mean 'openai'?" in str(caught.value)
    with pytest.raises(NipConfigError) as caught:
        synthetic_text_scenario.hyper_params(
            "nip", agents={"verifier": {"backend": "opneai"}}
        )
    assert "agents.verifier.backend" in str(caught.value)
    assert "did you mean 'openai'?" in str(caught.value)


def test_a_failed_job_stops_the_run_and_resume_retries_it(synthetic_text_scenario):
    scenario = synthetic_text_scenario
    scenario.server.fail_jobs = 1
    with pytest.raises(BackendError, match="failed: The job failed .*nip resume"):
        run(scenario, "failing")
    info = RunDirectory(scenario.root / "runs" / "failing").read_run_info()
    assert info["status"] == "failed"
    resumed = resume_run("failing", runs_dir=scenario.root / "runs")
    names = sorted(job["metadata"]["nip_job"] for job in scenario.server.jobs.values())
    retried = [n for n in names if n.endswith("-retry1")]
    assert len(retried) == 1
    records = RunDirectory(resumed.run_dir).read_metrics()
    assert steps_with(records, "mean_accuracy") == [0, 1]


def test_rerun_tests_of_a_base_run(synthetic_text_scenario):
    scenario = synthetic_text_scenario
    base = run(scenario, "base", text_rl={"test_scheme": "all"})
    base_records = RunDirectory(base.run_dir).read_metrics()
    rerun = run(
        scenario,
        "rerun",
        text_rl={"test_scheme": "all"},
        base_run={"base_run_type": "rerun_tests", "run_id": "base"},
    )
    records = RunDirectory(rerun.run_dir).read_metrics()
    assert steps_with(records, "test_mean_accuracy") == [0, 1, 2]
    assert steps_with(records, "mean_accuracy") == []

    def tests(rs):
        return [
            {k: v for k, v in r.items() if k.startswith("test_")}
            for r in rs
            if "test_mean_accuracy" in r
        ]

    # the same models on the same test episodes: the same results
    assert tests(records) == tests(base_records)
    assert {r["test_num_rollouts"] for r in tests(base_records)} == {4}

    # this configuration's test settings, not the base run's: fewer test episodes
    fewer = run(
        scenario,
        "rerun-fewer",
        text_rl={"test_scheme": "last", "num_test_rollouts": 2},
        base_run={"base_run_type": "rerun_tests", "run_id": "base"},
    )
    records = RunDirectory(fewer.run_dir).read_metrics()
    assert steps_with(records, "test_mean_accuracy") == [2]
    assert [r["test_num_rollouts"] for r in tests(records)] == [2]


def test_test_runs_write_nothing(synthetic_text_scenario):
    settings = synthetic_text_scenario.settings(test_run=True)
    result = run(synthetic_text_scenario, "smoke", settings=settings)
    assert result.run_dir is None
    assert not (synthetic_text_scenario.root / "runs").exists()
    assert steps_with(result.metrics, "mean_accuracy") == [0]


def test_the_scripted_verifier_learns(register_plugin, tmp_path):
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
    from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    with scripted_server() as server:
        scenario = SyntheticTextScenario(tmp_path, server)
        result = run(
            scenario,
            "learn",
            dataset="small",
            text_rl={
                "num_iterations": 3,
                "rollouts_per_iteration": 16,
                "num_test_rollouts": 32,
                "test_scheme": "first_and_last",
            },
        )
    records = RunDirectory(result.run_dir).read_metrics()
    tests = [r["test_mean_accuracy"] for r in records if "test_mean_accuracy" in r]
    assert len(tests) == 2
    assert tests[1] >= tests[0] + 0.2, tests


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from nip_core.experiment import run_experiment
from nip_core.testing.fixtures import isolated_plugin_manager
from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario
from nip_core.text.openai_backend import OpenAiBackend

root, base_url, mode, where = sys.argv[1:5]


class Remote:
    base_url = base_url


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if mode == "request":
    original, calls = OpenAiBackend.agenerate, [0]

    async def agenerate(self, request):
        calls[0] += 1
        if calls[0] == int(where):
            die()
        return await original(self, request)

    OpenAiBackend.agenerate = agenerate


def at_stage(trainer, iteration, stage):
    if mode == "stage" and f"{iteration}:{stage}" == where:
        die()


with isolated_plugin_manager({"synthetic_text": SYNTHETIC_TEXT_PLUGIN}):
    scenario = SyntheticTextScenario(Path(root), Remote())
    run_experiment(
        scenario.hyper_params("nip", text_rl={"test_scheme": "all"}),
        scenario.settings(),
        run_id="killed",
        stage_callbacks=[at_stage],
    )
"""


@pytest.mark.parametrize(
    ("mode", "where"),
    [
        ("request", "7"),  # in the middle of the first sampling stage
        ("stage", "0:await_fine_tune_jobs"),  # jobs created, not awaited
        ("request", "40"),  # in the second iteration
    ],
)
def test_sigkill_then_resume_matches_an_uninterrupted_run(
    synthetic_text_scenario, tmp_path, mode, where
):
    import signal
    import subprocess
    import sys

    from nip_core.testing.contracts.trainer import comparable_metrics

    scenario = synthetic_text_scenario
    server = scenario.server
    whole = run(scenario, "whole", text_rl={"test_scheme": "all"})
    jobs = server.jobs_created
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_SCRIPT,
            str(scenario.root),
            server.base_url,
            mode,
            where,
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    resumed = resume_run("killed", runs_dir=scenario.root / "runs")
    assert comparable_metrics(
        RunDirectory(resumed.run_dir).read_metrics()
    ) == comparable_metrics(RunDirectory(whole.run_dir).read_metrics())
    assert server.jobs_created == 2 * jobs


def test_ctrl_c_says_which_stage_was_saved(synthetic_text_scenario):
    # a staged text run saves its state after every stage: Ctrl-C must not say it
    # stopped before its first checkpoint (which tells the user to start over)
    from nip_core.cli.main import interrupted_message
    from nip_core.errors import RunInterrupted

    def ctrl_c(trainer, iteration, stage):
        if (iteration, stage) == (0, "await_fine_tune_jobs"):
            raise KeyboardInterrupt

    scenario = synthetic_text_scenario
    with pytest.raises(RunInterrupted) as info:
        run_experiment(
            scenario.hyper_params("nip"),
            scenario.settings(),
            run_id="ctrl-c",
            stage_callbacks=[ctrl_c],
        )
    assert info.value.checkpoint_note == "stage 'await_fine_tune_jobs' of iteration 0"
    message = interrupted_message(info.value)
    assert "saved its state (stage 'await_fine_tune_jobs' of iteration 0)" in message
    assert "before its first checkpoint" not in message
    assert "nip resume ctrl-c" in message
    resumed = resume_run("ctrl-c", runs_dir=scenario.root / "runs")
    assert resumed.trainer.state.train_loop_stage == "done"


def _job_names(server):
    return sorted(job["metadata"]["nip_job"] for job in server.jobs.values())


def test_a_group_whose_job_succeeded_is_not_fine_tuned_again_on_resume(
    synthetic_text_scenario, monkeypatch
):
    # the prover's job of iteration 0 succeeds, then the verifier's fails: the
    # resumed run retries the verifier's only
    scenario = synthetic_text_scenario
    server = scenario.server
    finish = server._finish

    def fail_the_verifiers_first(job):
        if job["metadata"]["nip_job"].endswith("-verifier") and not _failed:
            _failed.append(job["id"])
            server.fail_jobs = 1
        return finish(job)

    _failed: list[str] = []
    monkeypatch.setattr(server, "_finish", fail_the_verifiers_first)
    with pytest.raises(BackendError, match="failed: The job failed"):
        run(scenario, "half", text_rl={"num_iterations": 1})
    resumed = resume_run("half", runs_dir=scenario.root / "runs")
    assert _job_names(server) == [
        "nip-half-it0-prover",
        "nip-half-it0-verifier",
        "nip-half-it0-verifier-retry1",
    ]
    groups = resumed.trainer.shared_model_groups
    assert groups["prover"].state.num_fine_tunes == 1
    assert groups["verifier"].state.num_fine_tunes == 1


def test_a_resumed_fine_tune_stage_keeps_what_the_succeeded_jobs_reported(
    synthetic_text_scenario, monkeypatch
):
    # the prover's job of iteration 0 succeeds (the endpoint reports its trained
    # tokens), then the verifier's fails; the resumed run starts the verifier's
    # again: the iteration's metrics still carry the prover's job's figures
    scenario = synthetic_text_scenario
    server = scenario.server
    finish = server._finish
    failed: list[str] = []

    def fail_the_verifiers_first(job):
        if job["metadata"]["nip_job"].endswith("-verifier") and not failed:
            failed.append(job["id"])
            server.fail_jobs = 1
        return finish(job)

    monkeypatch.setattr(server, "_finish", fail_the_verifiers_first)
    with pytest.raises(BackendError, match="failed: The job failed"):
        run(scenario, "figures", text_rl={"num_iterations": 1})
    resumed = resume_run("figures", runs_dir=scenario.root / "runs")
    trained = {
        job["metadata"]["nip_job"]: job["trained_tokens"]
        for job in server.jobs.values()
        if job["status"] == "succeeded"
    }
    merged = {}
    for record in RunDirectory(resumed.run_dir).read_metrics():
        if record["step"] == 0:
            merged.update(record)
    prover_tokens = trained["nip-figures-it0-prover"]
    assert merged["fine_tune.prover.trained_tokens"] == prover_tokens
    assert (
        merged["fine_tune.verifier.trained_tokens"]
        == trained["nip-figures-it0-verifier-retry1"]
    )
    assert merged["fine_tune.prover.fine_tuned"] == 1


def test_a_job_the_endpoint_lost_is_started_again(synthetic_text_scenario):
    # an endpoint restarted while the run waited (or before it resumed) answers
    # 404 for the jobs the run remembers: they are created again
    scenario = synthetic_text_scenario
    server = scenario.server

    restarted: list[int] = []

    def restart_the_endpoint(trainer, iteration, stage):
        if (iteration, stage) == (0, "await_fine_tune_jobs") and not restarted:
            restarted.append(iteration)
            server.jobs.clear()

    with pytest.warns(BackendWarning, match="no longer known to the backend"):
        result = run_experiment(
            scenario.hyper_params("nip", text_rl={"num_iterations": 1}),
            scenario.settings(),
            run_id="lost",
            stage_callbacks=[restart_the_endpoint],
        )
    assert _job_names(server) == [
        "nip-lost-it0-prover-retry1",
        "nip-lost-it0-verifier-retry1",
    ]
    groups = result.trainer.shared_model_groups
    assert all(g.state.num_fine_tunes == 1 for g in groups.values())
    assert result.trainer.state.train_loop_stage == "done"


def _drop_the_provers_jobs(server):
    for key, job in list(server.jobs.items()):
        if "-prover" in job["metadata"]["nip_job"]:
            del server.jobs[key]


def test_a_run_stopped_for_lost_jobs_starts_them_again_on_resume(
    synthetic_text_scenario,
):
    # the prover's job is lost at every wait of iteration 0 (the verifier's is
    # not): the run stops after the fourth loss, and `nip resume` must start the
    # prover's job again, not wait for the verifier's only and go on with the
    # prover never fine-tuned (the state was saved at the await stage)
    scenario = synthetic_text_scenario
    server = scenario.server

    def lose_the_provers_job(trainer, iteration, stage):
        if (iteration, stage) == (0, "await_fine_tune_jobs"):
            _drop_the_provers_jobs(server)

    with pytest.warns(BackendWarning, match="no longer known to the backend"):
        with pytest.raises(BackendError, match="'prover' were lost 4 times"):
            run_experiment(
                scenario.hyper_params("nip", text_rl={"num_iterations": 1}),
                scenario.settings(),
                run_id="lost4",
                stage_callbacks=[lose_the_provers_job],
            )
    resumed = resume_run("lost4", runs_dir=scenario.root / "runs")
    assert _job_names(server) == [
        "nip-lost4-it0-prover-retry4",
        "nip-lost4-it0-verifier",
    ]
    groups = resumed.trainer.shared_model_groups
    assert groups["prover"].state.num_fine_tunes == 1
    assert groups["verifier"].state.num_fine_tunes == 1
    assert groups["prover"].model_name == next(
        job["fine_tuned_model"]
        for job in server.jobs.values()
        if job["metadata"]["nip_job"] == "nip-lost4-it0-prover-retry4"
    )


def test_a_kill_just_after_a_lost_job_is_saved_still_starts_it_again(
    synthetic_text_scenario, monkeypatch
):
    # the prover's job is lost once while awaited; the run is killed right after
    # the state forgetting it is saved: the resumed run starts it again
    from nip_core.testing.contracts.trainer import KilledForTest
    from nip_core.trainers.text import PureTextRlTrainer

    scenario = synthetic_text_scenario
    server = scenario.server
    original = PureTextRlTrainer.save_state
    lost, killed = [], []

    def lose_the_provers_job_once(trainer, iteration, stage):
        if (iteration, stage) == (0, "await_fine_tune_jobs") and not lost:
            lost.append(stage)
            _drop_the_provers_jobs(server)

    def save_state(trainer):
        original(trainer)
        prover = trainer.shared_model_groups["prover"].state
        if prover.job_attempt == 1 and prover.job_id is None and not killed:
            killed.append(trainer.state.train_loop_stage)
            raise KilledForTest("killed just after the lost job was saved")

    monkeypatch.setattr(PureTextRlTrainer, "save_state", save_state)
    with pytest.warns(BackendWarning, match="no longer known to the backend"):
        with pytest.raises(KilledForTest):
            run_experiment(
                scenario.hyper_params("nip", text_rl={"num_iterations": 1}),
                scenario.settings(),
                run_id="lostkill",
                stage_callbacks=[lose_the_provers_job_once],
            )
    monkeypatch.setattr(PureTextRlTrainer, "save_state", original)
    resumed = resume_run("lostkill", runs_dir=scenario.root / "runs")
    assert _job_names(server) == [
        "nip-lostkill-it0-prover-retry1",
        "nip-lostkill-it0-verifier",
    ]
    groups = resumed.trainer.shared_model_groups
    assert groups["prover"].state.num_fine_tunes == 1
    assert groups["verifier"].state.num_fine_tunes == 1
    assert killed == ["create_fine_tune_jobs"]


def test_a_run_whose_endpoint_moved_resumes_with_set(synthetic_text_scenario):
    # the vLLM server of a run moved to another port: `nip resume RUN --set
    # openai_backend.base_url=...` points the run at it (the jobs it remembers are
    # unknown there: they are created again)
    from nip_core.cli.main import main
    from nip_core.errors import NipConfigError
    from nip_core.testing.contracts.trainer import KilledForTest

    scenario = synthetic_text_scenario

    def stop(trainer, iteration, stage):
        if (iteration, stage) == (0, "await_fine_tune_jobs"):
            raise KilledForTest("the endpoint went away")

    with pytest.raises(KilledForTest):
        run_experiment(
            scenario.hyper_params("nip", text_rl={"num_iterations": 1}),
            scenario.settings(),
            run_id="moved",
            stage_callbacks=[stop],
        )
    runs = scenario.root / "runs"
    # only how the run reaches its services may change, not the experiment
    with pytest.raises(NipConfigError) as info:
        resume_run(
            "moved", runs_dir=runs, parameter_overrides={"text_rl.num_iterations": 5}
        )
    (problem,) = info.value.problems
    assert problem.path == "text_rl.num_iterations"
    assert "openai_backend.base_url" in problem.choices

    with scripted_server() as moved:
        with pytest.warns(BackendWarning, match="no longer known"):
            status = main(
                [
                    "resume",
                    "moved",
                    "--runs-dir",
                    str(runs),
                    "--set",
                    f"openai_backend.base_url={moved.base_url}",
                    "--set",
                    "text_backend.request_timeout=30",
                ]
            )
        assert status == 0
        assert [j["metadata"]["nip_job"] for j in moved.jobs.values()] == [
            "nip-moved-it0-prover-retry1",
            "nip-moved-it0-verifier-retry1",
        ]
    saved = RunDirectory(runs / "moved").read_hyper_params()
    assert saved["openai_backend"]["base_url"] == moved.base_url
    assert saved["text_backend"]["request_timeout"] == 30
    assert RunDirectory(runs / "moved").read_run_info()["status"] == "finished"


def test_a_moved_endpoint_is_the_same_experiment():
    # a sweep resumed with its own config finds the run a `--set` pointed elsewhere
    from nip_core.experiment import _same_experiment

    saved = {"seed": 1, "openai_backend": {"base_url": "http://b/v1", "x": 1}}
    current = {"seed": 1, "openai_backend": {"base_url": "http://a/v1", "x": 1}}
    assert not _same_experiment(saved, current)
    assert _same_experiment(saved, current, ["openai_backend.base_url"])
    assert not _same_experiment(
        {**saved, "seed": 2}, current, ["openai_backend.base_url"]
    )
    assert current["openai_backend"]["base_url"] == "http://a/v1"  # untouched


def test_an_unknown_model_names_the_setting(synthetic_text_scenario):
    """The backend's error is led by the agents' model_name it came from (with
    several agents on different models, which one)."""
    with pytest.raises(BackendError) as caught:
        run(
            synthetic_text_scenario,
            "unknown-model",
            text_rl={"num_iterations": 1},
            agents={"verifier": {"model_name": "nope"}},
        )
    message = str(caught.value)
    assert message.startswith("agents.verifier.model_name: ")
    assert "unknown model 'nope'" in message


def test_an_endpoint_from_the_environment_is_saved_and_resumed(
    synthetic_text_scenario, monkeypatch
):
    # OPENAI_BASE_URL is how the openai client finds a server when base_url is
    # null: the run saves it, so a resume from a shell without it goes back there
    # (not to OpenAI's API with the user's real key)
    from nip_core.testing.contracts.trainer import KilledForTest

    scenario = synthetic_text_scenario
    monkeypatch.setenv("OPENAI_BASE_URL", scenario.server.base_url)

    def stop(trainer, iteration, stage):
        if (iteration, stage) == (0, "await_fine_tune_jobs"):
            raise KilledForTest("killed")

    with pytest.raises(KilledForTest):
        run_experiment(
            scenario.hyper_params(
                "nip",
                text_rl={"num_iterations": 1},
                openai_backend={"base_url": None},
            ),
            scenario.settings(),
            run_id="env",
            stage_callbacks=[stop],
        )
    runs = scenario.root / "runs"
    saved = RunDirectory(runs / "env").read_hyper_params()
    assert saved["openai_backend"]["base_url"] == scenario.server.base_url
    monkeypatch.delenv("OPENAI_BASE_URL")
    result = resume_run("env", runs_dir=runs)
    assert result.resumed_from == 0
    assert RunDirectory(runs / "env").read_run_info()["status"] == "finished"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("localhost:8000/v1", "must be an http:// or https:// URL"),
        ("http://user:sk-secret@localhost:8000/v1", "must not carry credentials"),
    ],
)
def test_an_endpoint_from_the_environment_is_checked(
    synthetic_text_scenario, monkeypatch, url, said
):
    scenario = synthetic_text_scenario
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(NipConfigError) as info:
        run(scenario, "bad-env", openai_backend={"base_url": None})
    (problem,) = info.value.problems
    assert problem.path == "openai_backend.base_url"
    assert "taken from the environment variable OPENAI_BASE_URL" in problem.message
    assert said in problem.message
    assert "sk-secret" not in str(info.value)
    assert not (scenario.root / "runs" / "bad-env").exists()


def test_credentials_in_an_endpoint_are_refused_and_never_shown(
    synthetic_text_scenario,
):
    with pytest.raises(NipConfigError) as info:
        synthetic_text_scenario.hyper_params(
            "nip", openai_backend={"base_url": "https://me:sk-secret@example.org/v1"}
        )
    (problem,) = info.value.problems
    assert problem.path == "openai_backend.base_url"
    assert "must not carry credentials" in problem.message
    assert problem.value == "https://***@example.org/v1"
    assert "sk-secret" not in str(info.value)


def test_settings_only_other_trainers_read_are_warned_about(synthetic_text_scenario):
    # `rl.num_iterations=2` is the tensor loop's: in a text run it does nothing
    from nip_core.errors import ParameterWarning

    with pytest.warns(ParameterWarning) as caught:
        synthetic_text_scenario.hyper_params("nip", rl={"num_iterations": 2})
    messages = [str(w.message) for w in caught]
    assert any(
        "does not read rl.num_iterations=2: only other trainers or text backends "
        "read these sections" in m
        for m in messages
    ), messages
    # the sections the run reads are not warned about
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterWarning)
        synthetic_text_scenario.hyper_params("nip", text_rl={"num_iterations": 2})


def test_a_backend_setting_error_is_not_blamed_on_the_model_name(
    synthetic_text_scenario, monkeypatch
):
    from nip_core.text.openai_backend import OpenAiBackend

    def refuse(self, model):
        raise BackendError("openai_backend.fine_tune_epochs: not with this model")

    monkeypatch.setattr(OpenAiBackend, "check_fine_tune_model", refuse)
    with pytest.raises(BackendError) as caught:
        run(synthetic_text_scenario, "setting", text_rl={"num_iterations": 1})
    assert str(caught.value) == "openai_backend.fine_tune_epochs: not with this model"


def test_a_backend_metric_never_replaces_what_the_trainer_counted(
    synthetic_text_scenario, monkeypatch
):
    # a backend reporting a figure under a name the trainer records itself (its
    # own count of the examples it kept, say) would replace the trainer's count in
    # an uninterrupted run only: a resumed fine-tune stage keeps the trainer's
    from nip_core.text.openai_backend import OpenAiBackend

    get_job = OpenAiBackend.get_fine_tune_job

    def reporting(self, job_id):
        job = get_job(self, job_id)
        if job.status != "succeeded":
            return job
        return attrs.evolve(job, metrics={**job.metrics, "num_examples": -1.0})

    monkeypatch.setattr(OpenAiBackend, "get_fine_tune_job", reporting)
    with pytest.warns(BackendWarning) as caught:
        result = run(synthetic_text_scenario, "clash", text_rl={"num_iterations": 1})
    [record] = [
        r
        for r in RunDirectory(result.run_dir).read_metrics()
        if "fine_tune.verifier.num_examples" in r
    ]
    server = synthetic_text_scenario.server
    examples = {
        job["metadata"]["nip_job"].rsplit("-", 1)[1]: len(
            server.job_training_examples(job_id)
        )
        for job_id, job in server.jobs.items()
    }
    assert record["fine_tune.verifier.num_examples"] == examples["verifier"]
    assert record["fine_tune.prover.num_examples"] == examples["prover"]
    assert "fine_tune.verifier.trained_tokens" in record
    messages = sorted(
        str(w.message) for w in caught if "records itself" in str(w.message)
    )
    assert messages == [
        f"the openai backend reports the fine-tune figure 'num_examples' of shared "
        f"model group {group!r}, a name the trainer records itself: the trainer's "
        "value is logged (rename the backend's figure to log both)"
        for group in ("prover", "verifier")
    ]


_drawn: list[tuple[str, dict]] = []


def _draw_episode(episode, path):
    _drawn.append((path.name, episode))
    path.write_bytes(b"png")


@attrs.define
class _RendererPlugin:
    renderer: object = _draw_episode

    @hookimpl
    def register_episode_renderers(self):
        return [EpisodeRendererSpec(scenario="synthetic_text", renderer=self.renderer)]


def test_a_text_scenarios_renderer_draws_the_sampled_episodes(
    synthetic_text_scenario, register_plugin
):
    # as in the tensor world: every run.rollout_sample_period iterations, the first
    # episodes (at most 4, at most run.num_rollout_samples) go to plots/
    register_plugin(_RendererPlugin(), name="renderer")
    _drawn.clear()
    settings = synthetic_text_scenario.settings(
        rollout_sample_period=2, num_rollout_samples=2
    )
    result = run(
        synthetic_text_scenario,
        "drawn",
        settings=settings,
        text_rl={"num_iterations": 3},
    )
    names = ["iter_000000_0.png", "iter_000000_1.png"]
    names += ["iter_000002_0.png", "iter_000002_1.png"]
    assert [name for name, _ in _drawn] == names
    assert sorted(p.name for p in result.run_dir.glob("plots/iter_*.png")) == names
    lines = (result.run_dir / "rollouts" / "iter_000002.jsonl").read_text()
    saved = [json.loads(line) for line in lines.splitlines()[:2]]
    assert [episode for _, episode in _drawn[2:]] == saved


def _fail_to_draw(episode, path):
    _drawn.append((path.name, episode))
    path.write_bytes(b"half")
    raise OSError("the renderer's font is missing")


def test_a_failing_renderer_warns_once_and_the_text_run_goes_on(
    synthetic_text_scenario, register_plugin
):
    from nip_core.plugins import PluginWarning

    register_plugin(_RendererPlugin(_fail_to_draw), name="broken_renderer")
    _drawn.clear()
    settings = synthetic_text_scenario.settings(
        rollout_sample_period=1, num_rollout_samples=2
    )
    with pytest.warns(PluginWarning) as caught:
        result = run(
            synthetic_text_scenario,
            "broken-drawing",
            settings=settings,
            text_rl={"num_iterations": 3},
        )
    messages = [str(w.message) for w in caught if w.category is PluginWarning]
    assert len(messages) == 1
    assert (
        "failed at iteration 0: OSError: the renderer's font is missing"
        in (messages[0])
    )
    assert [name for name, _ in _drawn] == ["iter_000000_0.png"]
    # the half-drawn picture is not left behind
    assert list(result.run_dir.glob("plots/iter_*")) == []
    info = json.loads((result.run_dir / "run_info.json").read_text())
    assert info["status"] == "finished"
    assert sorted(p.name for p in result.run_dir.glob("rollouts/iter_*.jsonl")) == [
        f"iter_00000{i}.jsonl" for i in range(3)
    ]


def test_a_text_run_without_rollout_samples_draws_nothing(
    synthetic_text_scenario, register_plugin
):
    register_plugin(_RendererPlugin(), name="renderer")
    _drawn.clear()
    result = run(synthetic_text_scenario, "undrawn", text_rl={"num_iterations": 1})
    assert _drawn == []
    assert list(result.run_dir.glob("plots/iter_*.png")) == []


def test_sampling_progress_shows_every_turn_of_a_batch(capsys):
    """A batch's turns end together: the bar showed the first of each batch only
    (tqdm's refresh interval and its learnt update rate), 9 of 12 turns at the
    end of a CPU run's sampling."""
    from types import SimpleNamespace

    from nip_core.trainers.text import PureTextRlTrainer

    trainer = SimpleNamespace(settings=SimpleNamespace(show_progress=True))
    bar, update = PureTextRlTrainer._progress(trainer, "Sampling")
    try:
        for _ in range(3):
            for _ in range(4):
                update(1)
            assert bar.last_print_n == bar.n
        assert bar.n == 12
    finally:
        bar.close()
    assert "12turn" in capsys.readouterr().err


def test_sampling_progress_total_is_what_the_sampling_announces(capsys):
    from types import SimpleNamespace

    from nip_core.trainers.text import PureTextRlTrainer

    trainer = SimpleNamespace(settings=SimpleNamespace(show_progress=True))
    bar, update = PureTextRlTrainer._progress(trainer, "Sampling")
    try:
        update.expect(20)  # the schedule's turns
        update(5)
        assert bar.total == 20
        assert "5/20" in capsys.readouterr().err  # shown at once
        update.expect(-8)  # episodes over early
        update(7)
        assert (bar.n, bar.total) == (12, 12)
    finally:
        bar.close()
    assert "12/12" in capsys.readouterr().err
