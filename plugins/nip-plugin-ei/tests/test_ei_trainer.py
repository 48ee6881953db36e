"""``pure_text_ei`` end to end against the local test server: the staged trainer's
contract (kill and resume at every stage, faults, no key on disk), the jobs carry
exactly the examples the rules select, annealing, pooled rollouts, the base model
of each fine-tune, too few examples, and learning."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ei_helpers import jobs_by_name

from nip_core.experiment import run_experiment
from nip_core.runs.run_dir import RunDirectory
from nip_core.seeding import derive_seed
from nip_core.testing.contracts.text import TextTrainerContract
from nip_core.text.rollouts import TextRollouts


class TestPureTextEiContract(TextTrainerContract):
    trainer_name = "pure_text_ei"

    @pytest.fixture
    def trainer_plugins(self, register_plugin):
        import nip_plugin_ei.plugin
        from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

        register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
        register_plugin(nip_plugin_ei.plugin, name="ei")

    def make_hyper_params(self, num_iterations, server, **overrides):
        # guess replacement on, so that resumed runs must redo it identically
        overrides.setdefault("text_rl", {"verifier_guess_replacement_proportion": 0.5})
        return super().make_hyper_params(num_iterations, server, **overrides)


def run(helper, run_id, **overrides):
    return run_experiment(
        helper.hyper_params("nip", trainer="pure_text_ei", **overrides),
        helper.settings(),
        run_id=run_id,
    )


def load(run_dir, iteration):
    return TextRollouts.load_jsonl(run_dir / "rollouts" / f"iter_{iteration:06d}.jsonl")


def metrics_at(run_dir, step):
    merged = {}
    for record in RunDirectory(run_dir).read_metrics():
        if record["step"] == step:
            merged.update(record)
    return merged


def expected_chats(rollouts, agent, threshold, proportion, seed, iteration):
    """The documented rules, written out again: the agent's last chats of episodes
    with reward >= threshold among those not guess-replaced, then the
    guess-replaced ones with the true verdict."""
    a = rollouts.agent_names.index(agent)
    candidates = [
        b
        for b in range(rollouts.batch_size)
        if rollouts["agents.active"][b, :, a].any()
    ]
    count = int(proportion * len(candidates))
    permutation = np.random.default_rng(
        derive_seed(
            seed, f"pure_text_ei/iteration{iteration}/{agent}/guess_replacement"
        )
    ).permutation(len(candidates))
    if count == 0:
        permutation = np.arange(len(candidates))
    replaced = sorted(candidates[i] for i in permutation[:count])
    rest = sorted(candidates[i] for i in permutation[count:])
    returns = rollouts["agents.reward"][:, :, a].sum(axis=1)
    chats = []
    for b in rest:
        if returns[b] >= threshold:
            chats.append(rollouts.agent_chat(b, agent))
    for b in replaced:
        chat = rollouts.agent_chat(b, agent)
        text = chat[-1]["content"]
        head = text[: text.rfind("Decision:")].strip() if "Decision:" in text else text
        truth = "accept" if rollouts["y"][b] == 1 else "reject"
        chats.append(
            [
                *chat[:-1],
                {"role": "assistant", "content": f"{head}\n\nDecision: {truth}"},
            ]
        )
    return chats


def test_guess_replaced_examples_without_the_reasoning_reach_the_jobs(ei_scenario):
    server = ei_scenario.server
    result = run(
        ei_scenario,
        "alone",
        text_rl={
            "num_iterations": 1,
            "rollouts_per_iteration": 6,
            "verifier_guess_replacement_proportion": 1.0,
            "verifier_guess_replacement_keeps_reasoning": False,
        },
    )
    rollouts = load(result.run_dir, 0)
    job = jobs_by_name(server)["nip-alone-it0-verifier"]
    finals = [e["messages"][-1] for e in job["examples"]]
    truths = ["accept" if y == 1 else "reject" for y in rollouts["y"]]
    assert finals == [
        {"role": "assistant", "content": f"Decision: {truth}"} for truth in truths
    ]


def test_jobs_carry_exactly_the_selected_examples(ei_scenario):
    server = ei_scenario.server
    result = run(
        ei_scenario,
        "exact",
        text_rl={
            "rollouts_per_iteration": 6,
            "verifier_guess_replacement_proportion": 0.5,
            "verifier_guess_replacement_annealing": "linear",
            "verifier_guess_replacement_annealing_rate": 0.25,
        },
        pure_text_ei={"reward_threshold": 0.5},
    )
    seed = result.trainer.hyper_params.seed
    jobs = jobs_by_name(server)
    for iteration, proportion in ((0, 0.5), (1, 0.25)):
        rollouts = load(result.run_dir, iteration)
        for agent in ("prover", "verifier"):
            expected = expected_chats(
                rollouts,
                agent,
                0.5,
                proportion if agent == "verifier" else 0.0,
                seed,
                iteration,
            )
            job = jobs.get(f"nip-exact-it{iteration}-{agent}")
            metrics = metrics_at(result.run_dir, iteration)
            assert metrics[f"fine_tune.{agent}.num_examples"] == len(expected)
            if not expected:
                assert job is None
                continue
            assert job["method"] == "supervised"
            assert [e["messages"] for e in job["examples"]] == expected
        assert metrics_at(result.run_dir, iteration)[
            "fine_tune.guess_replacement_proportion"
        ] == pytest.approx(proportion)
        assert metrics_at(result.run_dir, iteration)[
            "fine_tune.verifier.num_guess_replaced"
        ] == int(proportion * 6)
    # the selection's metrics and figures are in the report
    from nip_core.analysis import build_report

    report = build_report([result.run_dir], out_dir=result.run_dir / "report")
    for column in (
        "fine_tune.verifier.num_selected",
        "fine_tune.verifier.num_guess_replaced",
        "fine_tune.verifier.selected_accuracy",
        "fine_tune.prover.num_examples",
    ):
        assert column in report.columns
    for figure in ("ei_selected_episodes", "ei_guess_replaced", "fine_tune_examples"):
        assert (result.run_dir / "report" / f"{figure}.png").is_file()


def test_weighted_sampling_on_all_previous_rollouts_from_the_latest_model(
    ei_scenario,
):
    server = ei_scenario.server
    result = run(
        ei_scenario,
        "weighted",
        text_rl={
            "rollouts_per_iteration": 4,
            "fine_tune_on_all_previous_rollouts": True,
        },
        pure_text_ei={
            "rollout_selection_method": "weighted_sampling",
            "weighting_sample_size_factor": 0.75,
            "weighting_use_replacement": False,
        },
        agents={"_default": {"fine_tune_from_scratch": False}},
    )
    jobs = jobs_by_name(server)
    pooled = TextRollouts.concatenate(
        [load(result.run_dir, 0), load(result.run_dir, 1)]
    )
    for iteration, rollouts in ((0, load(result.run_dir, 0)), (1, pooled)):
        for agent in ("prover", "verifier"):
            job = jobs[f"nip-weighted-it{iteration}-{agent}"]
            chats = [
                json.dumps(rollouts.agent_chat(b, agent))
                for b in range(rollouts.batch_size)
            ]
            examples = [json.dumps(e["messages"]) for e in job["examples"]]
            # round(0.75 x N) distinct episodes of the pool so far
            assert len(examples) == round(0.75 * rollouts.batch_size)
            assert len(set(examples)) == len(examples)
            assert set(examples) <= set(chats)
    # the second fine-tune starts from the first one's model, not from scratch
    first = jobs["nip-weighted-it0-verifier"]
    second = jobs["nip-weighted-it1-verifier"]
    assert first["base_model"] == "scripted"
    assert second["base_model"].startswith("ft:scripted")


def test_too_few_examples_keep_the_model_and_say_so(ei_scenario):
    result = run(
        ei_scenario,
        "few",
        text_rl={"num_iterations": 1},
        pure_text_ei={"reward_threshold": 5.0},
    )
    metrics = metrics_at(result.run_dir, 0)
    for group in ("prover", "verifier"):
        assert metrics[f"fine_tune.{group}.num_examples"] == 0
        assert metrics[f"fine_tune.{group}.fine_tuned"] == 0
        assert metrics[f"fine_tune.{group}.too_few_examples"] == 1
        assert metrics[f"fine_tune.{group}.num_selected"] == 0
    assert ei_scenario.server.jobs_created == 0
    assert result.trainer.shared_model_groups["verifier"].model_name == "scripted"


def test_a_shared_model_group_pools_its_agents_examples(ei_scenario):
    server = ei_scenario.server
    result = run(
        ei_scenario,
        "pooled",
        text_rl={"num_iterations": 1},
        pure_text_ei={"reward_threshold": -10.0},
        agents={"_default": {"shared_model_group": "everyone"}},
    )
    [job] = jobs_by_name(server).values()
    rollouts = load(result.run_dir, 0)
    prover = [rollouts.agent_chat(b, "prover") for b in range(rollouts.batch_size)]
    verifier = [rollouts.agent_chat(b, "verifier") for b in range(rollouts.batch_size)]
    assert [e["messages"] for e in job["examples"]] == prover + verifier


def test_the_verifier_learns(register_plugin, tmp_path):
    """The scripted verifier's skill follows the share of correct verdicts in its
    examples: expert iteration keeps the right ones, so test accuracy rises."""
    import nip_plugin_ei.plugin
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
    from nip_core.testing.synthetic_text.fixtures import (
        SyntheticTextScenario,
        scripted_server,
    )

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    register_plugin(nip_plugin_ei.plugin, name="ei")
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
            agents={"_default": {"fine_tune_from_scratch": False}},
        )
    records = RunDirectory(result.run_dir).read_metrics()
    tests = [r["test_mean_accuracy"] for r in records if "test_mean_accuracy" in r]
    assert len(tests) == 2
    assert tests[1] >= tests[0] + 0.25, tests


@pytest.fixture
def own_verdict_scenario(register_plugin, tmp_path):
    """The synthetic scenario with verdicts stated as ``Verdict: TRUE|FALSE``, its
    server answering so."""
    from ei_helpers import OwnVerdictPlugin, own_verdict_responder

    import nip_plugin_ei.plugin
    from nip_core.testing.synthetic_text.fixtures import (
        SyntheticTextScenario,
        scripted_server,
    )

    register_plugin(OwnVerdictPlugin(), name="own_verdict")
    register_plugin(nip_plugin_ei.plugin, name="ei")
    with scripted_server(responder=own_verdict_responder) as server:
        yield SyntheticTextScenario(tmp_path, server)


def test_guess_replacement_writes_the_scenarios_own_verdicts(own_verdict_scenario):
    result = run(
        own_verdict_scenario,
        "own",
        scenario="own_verdict",
        text_rl={
            "num_iterations": 1,
            "rollouts_per_iteration": 6,
            "verifier_guess_replacement_proportion": 1.0,
        },
    )
    [job] = [
        job
        for name, job in jobs_by_name(own_verdict_scenario.server).items()
        if name.endswith("verifier")
    ]
    rollouts = load(result.run_dir, 0)
    verifier = rollouts.agent_names.index("verifier")
    replaced = [
        b for b in range(rollouts.batch_size) if rollouts.agent_chat(b, "verifier")
    ]
    assert len(job["examples"]) == len(replaced) == 6
    for b, example in zip(replaced, job["examples"], strict=True):
        text = example["messages"][-1]["content"]
        truth = "TRUE" if rollouts["y"][b] == 1 else "FALSE"
        assert text.endswith(f"Verdict: {truth}")
        assert "Decision" not in text
        # the rest of the verifier's last response is kept
        raw = rollouts.agent_chat(b, "verifier")[-1]["content"]
        assert text.startswith(raw.rsplit("Verdict:", 1)[0].strip())
    # the last-turn notice asks for the scenario's format
    prompts = [
        rollouts["agents.prompt"][b, r, verifier][-1]["content"]
        for b in range(rollouts.batch_size)
        for r in range(rollouts.max_rounds)
        if rollouts["agents.prompt"][b, r, verifier] is not None
    ]
    last_turn = [p for p in prompts if "last turn" in p]
    assert last_turn
    for prompt in last_turn:
        assert "you must now end your response with 'Verdict: TRUE'" in prompt


def test_a_verdict_written_in_another_format_than_read_is_refused(
    own_verdict_scenario,
):
    from nip_core.errors import PluginError

    with pytest.raises(PluginError) as caught:
        run(
            own_verdict_scenario,
            "mismatch",
            scenario="writes_decisions",
            text_rl={
                "num_iterations": 1,
                "verifier_guess_replacement_proportion": 1.0,
            },
        )
    message = str(caught.value)
    assert "ReadsOwnVerdicts.write_verdict wrote" in message
    assert "Decision: " in message
    assert "must override write_verdict" in message


def test_guess_replacement_is_offered_only_last_turns_whose_verdict_counts(
    ei_scenario,
):
    """nip with 7 rounds, verdicts counting from round 4: an episode ended by an
    invalid prover response at round 3 has the verifier's last turn in round 2,
    where no verdict counts, so it is not guess replaced."""
    from nip_core.experiment import prepare_experiment

    hp = ei_scenario.hyper_params(
        "nip",
        trainer="pure_text_ei",
        nip_protocol={"max_message_rounds": 7, "min_message_rounds": 5},
    )
    prepared = prepare_experiment(hp, ei_scenario.settings())
    trainer = prepared.trainer
    try:
        handler = trainer.protocol_handler
        turns = handler.verifier_turn_rounds
        assert turns == (0, 2, 4, 6)
        rollouts = TextRollouts(list(handler.agent_names), ["main"], 7, [{"y": 1}] * 4)
        v = rollouts.agent_index("verifier")
        for episode, last in enumerate((0, 2, 4, 6)):
            for round_id in turns:
                if round_id <= last:
                    rollouts["agents.active"][episode, round_id, v] = True
        counts = trainer._verdict_counts(rollouts, "verifier")
        assert counts.tolist() == [False, False, True, True]
    finally:
        prepared.scenario_instance.close()
