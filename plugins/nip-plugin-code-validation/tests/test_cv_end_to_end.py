"""Offline, with the local test server: every protocol runs a short code validation
experiment end to end with a staged text trainer; the scenario contract passes."""

from __future__ import annotations

import pytest
from cv_helpers import code_server, hyper_params_dict
from nip_core.testing.contracts.text import TextScenarioContract

from nip_plugin_code_validation.plugin import PROTOCOLS


def _settings(tmp_path):
    from nip_core.settings import ExperimentSettings

    return ExperimentSettings(
        runs_dir=str(tmp_path / "runs"),
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "cache"),
        show_progress=False,
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_runs_end_to_end(code_validation_plugin, server, tmp_path, protocol):
    from nip_core.experiment import run_experiment
    from nip_core.parameters import HyperParameters
    from nip_core.runs.run_dir import RunDirectory
    from nip_core.text.rollouts import TextRollouts

    hyper_params = HyperParameters.from_dict(
        hyper_params_dict(
            protocol,
            server.base_url,
            text_rl={"rollout_analysers": ["decisions", "invalid_responses"]},
        )
    )
    result = run_experiment(hyper_params, _settings(tmp_path), run_id=protocol)
    run = RunDirectory(result.run_dir)
    records = run.read_metrics()
    train = next(r for r in records if "mean_accuracy" in r)
    test = next(r for r in records if "test_mean_accuracy" in r)
    assert 0.0 <= train["mean_accuracy"] <= 1.0
    assert test["test_num_rollouts"] == 4
    assert "analysis.decisions.accept_rate" in train
    assert run.read_run_info()["status"] == "finished"
    rollouts = TextRollouts.load_jsonl(run.rollouts_dir / "iter_000000.jsonl")
    assert (rollouts["verdict"] >= 0).mean() > 0.5
    # every prompt is the code validation one, with the problem and the solution
    for b in range(rollouts.batch_size):
        for a in range(rollouts.num_agents):
            for r in range(rollouts.max_rounds):
                prompt = rollouts["agents.prompt"][b, r, a]
                if prompt is not None:
                    assert (
                        rollouts.datapoints[b]["solution"].strip()
                        in prompt[0]["content"]
                    )
    assert server.jobs_created >= 1


class TestCodeValidationScenarioContract(TextScenarioContract):
    scenario_name = "code_validation"
    protocols = PROTOCOLS

    @pytest.fixture
    def text_scenario_plugins(self, code_validation_plugin):
        return code_validation_plugin

    def make_server(self):
        return code_server()

    def make_hyper_params(self, protocol, server, **overrides):
        from nip_core.parameters import HyperParameters

        return HyperParameters.from_dict(
            hyper_params_dict(protocol, server.base_url, **overrides)
        )


def test_with_a_shared_reward_the_provers_are_asked_for_the_correct_verdict(
    code_validation_plugin, server, tmp_path
):
    from nip_core.factory import build_scenario_instance
    from nip_core.parameters import HyperParameters
    from nip_core.text.sampling import sample_rollouts

    for shared in (False, True):
        hyper_params = HyperParameters.from_dict(
            hyper_params_dict(
                "nip", server.base_url, protocol_common={"shared_reward": shared}
            )
        )
        instance = build_scenario_instance(hyper_params, _settings(tmp_path))
        try:
            env = instance.train_environment
            rollouts = sample_rollouts(env, instance.agents, [0, 1], iteration=0)
        finally:
            instance.close()
        prover = rollouts.agent_index("prover")
        turns = [
            prompt
            for b in range(rollouts.batch_size)
            for r in range(rollouts.max_rounds)
            if (prompt := rollouts["agents.prompt"][b, r, prover]) is not None
        ]
        assert turns
        for prompt in turns:
            system, notice = prompt[0]["content"], prompt[-1]["content"]
            if shared:
                assert "reach the *correct* verdict" in system
                assert "helping it judge the solution correctly" in notice
            else:
                assert "whatever its true correctness" in system
                assert "arguing that it should accept the solution" in notice


def test_the_shipped_scripted_model_plays_every_protocol_offline(
    code_validation_plugin, tmp_path
):
    """nip_plugin_code_validation.scripted:responder, served by the test server,
    answers each protocol's prompts validly; a perfectly skilled verifier is right
    on the shipped humaneval_buggy set."""
    from nip_core.factory import build_scenario_instance
    from nip_core.parameters import HyperParameters
    from nip_core.testing.openai_server import OpenAiTestServer
    from nip_core.text.sampling import sample_rollouts

    from nip_plugin_code_validation.scripted import known_labels, responder

    assert len(known_labels()) > 300  # the test set and humaneval_buggy
    with OpenAiTestServer(models=[], responder=responder) as server:
        server.add_model("code-model", skill=1.0, invalid_rate=0.0)
        for protocol in PROTOCOLS:
            hyper_params = HyperParameters.from_dict(
                hyper_params_dict(protocol, server.base_url, dataset="humaneval_buggy")
            )
            instance = build_scenario_instance(hyper_params, _settings(tmp_path))
            try:
                env = instance.train_environment
                rollouts = sample_rollouts(env, instance.agents, list(range(6)))
            finally:
                instance.close()
            assert rollouts["agents.valid_response"][rollouts["agents.active"]].all()
            assert (rollouts["verdict"] == rollouts["y"]).all(), protocol


@pytest.mark.parametrize(
    "spectrum", ["likert_scale_5", "out_of_10", "likert_scale", "accept_reject"]
)
def test_the_scripted_model_answers_on_the_configured_verdict_scale(
    code_validation_plugin, tmp_path, spectrum
):
    """With protocol_common.verifier_decision_spectrum set, the scripted verifier
    states its verdict on that scale (it answered 'accept' on every scale, so on an
    integer scale no episode ever ended with a verdict), and its fine-tune effect
    reads those verdicts."""
    from nip_core.factory import build_scenario_instance
    from nip_core.parameters import HyperParameters
    from nip_core.testing.openai_server import OpenAiTestServer
    from nip_core.text.sampling import sample_rollouts

    from nip_plugin_code_validation.scripted import responder, verdict_correct

    with OpenAiTestServer(models=[], responder=responder) as server:
        server.add_model("code-model", skill=1.0, invalid_rate=0.0)
        hyper_params = HyperParameters.from_dict(
            hyper_params_dict(
                "nip",
                server.base_url,
                dataset="humaneval_buggy",
                protocol_common={"verifier_decision_spectrum": spectrum},
            )
        )
        instance = build_scenario_instance(hyper_params, _settings(tmp_path))
        try:
            env = instance.train_environment
            rollouts = sample_rollouts(env, instance.agents, list(range(6)))
        finally:
            instance.close()
    assert rollouts["agents.valid_response"][rollouts["agents.active"]].all()
    assert (rollouts["verdict"] == rollouts["y"]).all()
    verifier = rollouts.agent_names.index("verifier")
    for b in range(rollouts.batch_size):
        chat = rollouts.agent_chat(b, rollouts.agent_names[verifier])
        assert verdict_correct(chat) is True


@pytest.mark.parametrize(
    ("protocol", "common"),
    [
        ("nip", {"randomize_prover_stance": True}),
        ("debate", {}),
        ("mnip", {}),
        ("merlin_arthur", {}),
        ("nip", {"shared_reward": True}),
        ("mnip", {"shared_reward": True}),
    ],
    ids=[
        "nip-randomized",
        "debate",
        "mnip",
        "merlin_arthur",
        "nip-shared",
        "mnip-shared",
    ],
)
def test_the_judge_is_told_what_each_prover_was_asked_to_argue(
    code_validation_plugin, server, tmp_path, monkeypatch, protocol, common
):
    """The judge grades an argument against the aim the prover's own prompt gave
    it (mnip's prover0 argues for reject, as its rewards have it)."""
    import re

    from nip_core.factory import build_scenario_instance
    from nip_core.parameters import HyperParameters
    from nip_core.text.sampling import sample_rollouts

    import nip_plugin_code_validation.analysis as analysis
    from nip_plugin_code_validation.analysis import ProverArgumentJudge

    hyper_params = HyperParameters.from_dict(
        hyper_params_dict(protocol, server.base_url, protocol_common=common)
    )
    instance = build_scenario_instance(hyper_params, _settings(tmp_path))
    try:
        rollouts = sample_rollouts(
            instance.train_environment, instance.agents, list(range(6)), iteration=0
        )
    finally:
        instance.close()
    # what each prover's system prompt asked of it, per episode
    asked = []
    for b in range(rollouts.batch_size):
        for a, agent in enumerate(rollouts.agent_names):
            if "prover" not in agent or not rollouts["agents.active"][b, :, a].any():
                continue
            r = int(rollouts["agents.active"][b, :, a].argmax())
            system = rollouts["agents.prompt"][b, r, a][0]["content"]
            stances = set(re.findall(r"\*(accept|reject)\*", system))
            asked.append((b, agent, stances.pop() if len(stances) == 1 else None))
    told = []
    render = analysis.render_template

    def recording(name, **values):
        told.append(None if values["shared_reward"] else values["stance"])
        return render(name, **values)

    monkeypatch.setattr(analysis, "render_template", recording)
    judge = ProverArgumentJudge(hyper_params, None, "code_validation_judge")
    try:
        judge.analyse(rollouts)
    finally:
        judge.close()
    assert told == [stance for _, _, stance in asked]
    if common.get("shared_reward"):
        assert told == [None] * len(asked)
    elif protocol == "nip":  # a randomized stance: both in six episodes
        assert set(told) == {"accept", "reject"}
    else:
        stances = {agent: stance for _, agent, stance in asked}
        assert stances == {"prover0": "reject", "prover1": "accept"}
