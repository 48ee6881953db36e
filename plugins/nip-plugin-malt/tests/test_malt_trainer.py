"""``pure_text_malt`` end to end against the local test server: the staged trainer's
contract (kill and resume at every stage, faults, no key on disk), a kill in the
middle of the trees, the DPO jobs carry exactly the pairs the rules select, pooled
rollouts, the generation limit, the report, and learning."""

from __future__ import annotations

import pytest
from malt_helpers import dpo_jobs_by_name

from nip_core.errors import NipConfigError
from nip_core.experiment import resume_run, run_experiment
from nip_core.runs.run_dir import RunDirectory
from nip_core.testing.contracts.text import TextTrainerContract, rollout_files
from nip_core.testing.contracts.trainer import KilledForTest, comparable_metrics
from nip_core.testing.synthetic_text.fixtures import scripted_server
from nip_core.text.rollouts import TextRollouts
from nip_plugin_malt.trainer import PureTextMaltTrainer
from nip_plugin_malt.tree import split_branch_key

MID_POINTS = {"prover": 0.5, "verifier": 0.0}  # nip on the synthetic scenario


class TestPureTextMaltContract(TextTrainerContract):
    trainer_name = "pure_text_malt"

    @pytest.fixture
    def trainer_plugins(self, register_plugin):
        import nip_plugin_malt.plugin
        from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

        register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
        register_plugin(nip_plugin_malt.plugin, name="malt")

    def make_hyper_params(self, num_iterations, server, **overrides):
        # two trees of 8 leaves per iteration keep the many runs of the suite short
        overrides.setdefault("text_rl", {"rollouts_per_iteration": 2})
        return super().make_hyper_params(num_iterations, server, **overrides)


def run(scenario, run_id, server=None, **overrides):
    hyper_params = scenario.hyper_params(
        "nip", trainer="pure_text_malt", server=server, **overrides
    )
    return run_experiment(hyper_params, scenario.settings(), run_id=run_id)


def load(run_dir, iteration):
    return TextRollouts.load_jsonl(run_dir / "rollouts" / f"iter_{iteration:06d}.jsonl")


def metrics_at(run_dir, step):
    merged = {}
    for record in RunDirectory(run_dir).read_metrics():
        if record["step"] == step:
            merged.update(record)
    return merged


def usable_pairs(rollouts, agent):
    """The rules written out again, per node with both labels: the candidate
    (prompt, chosen, rejected) triples of the agent (values: plain recursive means
    of the leaves' returns)."""
    a = rollouts.agent_names.index(agent)
    returns = rollouts["agents.reward"][:, :, a].sum(axis=1)
    paths = {}
    for b in range(rollouts.batch_size):
        root, path = split_branch_key(rollouts["sample_key"][b])
        paths[(root, path)] = b

    def leaves(root, prefix):
        return [
            b for (r, p), b in paths.items() if r == root and p[: len(prefix)] == prefix
        ]

    def value(root, prefix):
        below = {
            p[: len(prefix) + 1]
            for (r, p) in paths
            if r == root and p[: len(prefix)] == prefix
        }
        if below == {prefix}:
            return float(returns[paths[(root, prefix)]])
        children = sorted(c for c in below if len(c) == len(prefix) + 1)
        return sum(value(root, c) for c in children) / len(children)

    nodes = {}
    for root, path in paths:
        for depth in range(len(path)):
            nodes[(root, path[:depth])] = None
    triples = {}
    for root, prefix in nodes:
        r = len(prefix)
        children = sorted(
            {
                p[: r + 1]
                for (rt, p) in paths
                if rt == root and p[:r] == prefix and len(p) > r
            }
        )
        responses = []
        for child in children:
            b = leaves(root, child)[0]
            if not rollouts["agents.active"][b, r, a]:
                continue
            responses.append(
                (
                    value(root, child) >= MID_POINTS[agent],
                    bool(rollouts["agents.valid_response"][b, r, a]),
                    rollouts["agents.raw_output"][b, r, a],
                    rollouts["agents.prompt"][b, r, a],
                )
            )
        candidates = [
            (prompt, good, bad)
            for positive, valid, good, prompt in responses
            if positive and valid
            for negative, _, bad, _ in responses
            if not negative and bad != good
        ]
        if candidates:
            triples[(root, prefix)] = candidates
    return triples


def test_dpo_jobs_carry_exactly_the_pairs_the_rules_select(malt_scenario):
    server = malt_scenario.server
    result = run(malt_scenario, "exact", text_rl={"rollouts_per_iteration": 3})
    jobs = dpo_jobs_by_name(server)
    found_any = False
    for iteration in (0, 1):
        rollouts = load(result.run_dir, iteration)
        metrics = metrics_at(result.run_dir, iteration)
        for agent in ("prover", "verifier"):
            expected = usable_pairs(rollouts, agent)
            job = jobs.get(f"nip-exact-it{iteration}-{agent}")
            assert metrics[f"fine_tune.{agent}.num_preference_pairs"] == len(expected)
            if not expected:
                assert job is None
                continue
            found_any = True
            assert job["method"] == "dpo"
            assert len(job["pairs"]) == len(expected)
            unmatched = dict(expected)
            for prompt, chosen, rejected in job["pairs"]:
                node = next(
                    key
                    for key, triples in unmatched.items()
                    if any(
                        p == prompt and c == chosen and r == rejected
                        for p, c, r in triples
                    )
                )
                del unmatched[node]  # one pair per node
            assert not unmatched
    assert found_any
    # the statistics and figures are in the report
    from nip_core.analysis import build_report

    report = build_report([result.run_dir], out_dir=result.run_dir / "report")
    assert "verifier.mean_expected_reward" in report.columns
    assert "fine_tune.verifier.num_preference_pairs" in report.columns
    for figure in ("malt_expected_reward", "malt_preference_pairs"):
        assert (result.run_dir / "report" / f"{figure}.png").is_file()


def test_pairs_come_from_every_tree_so_far_when_asked(malt_scenario):
    result = run(
        malt_scenario,
        "pooled",
        text_rl={
            "rollouts_per_iteration": 2,
            "fine_tune_on_all_previous_rollouts": True,
        },
    )
    first = len(usable_pairs(load(result.run_dir, 0), "verifier"))
    second = len(usable_pairs(load(result.run_dir, 1), "verifier"))
    metrics = metrics_at(result.run_dir, 1)
    assert metrics["fine_tune.verifier.num_preference_pairs"] == first + second
    assert metrics["num_trees"] == 2
    assert metrics["tree_generation_bound"] == 2 * (2 + 4 + 8)


def test_a_run_killed_inside_the_trees_resumes_at_its_last_level(
    malt_scenario, monkeypatch
):
    whole_server = malt_scenario.server
    whole = run(malt_scenario, "whole")
    expected = comparable_metrics(RunDirectory(whole.run_dir).read_metrics())
    original = PureTextMaltTrainer.save_state
    seen = {}

    def save_state(trainer):
        original(trainer)
        extra = trainer.state.extra
        if extra.get("tree_iteration") == 1 and extra.get("tree_level") == 2:
            seen["files"] = sorted(
                p.name for p in trainer.run.run_dir.rollouts_dir.glob("tree_*")
            )
            raise KilledForTest("killed after level 2 of iteration 1's trees")

    with scripted_server() as server:
        monkeypatch.setattr(PureTextMaltTrainer, "save_state", save_state)
        with pytest.raises(KilledForTest):
            run(malt_scenario, "killed", server=server)
        monkeypatch.setattr(PureTextMaltTrainer, "save_state", original)
        resumed = resume_run("killed", runs_dir=malt_scenario.root / "runs")
        # nothing was generated twice: levels 0 to 2 came from the saved file
        assert server.requests["chat"] == whole_server.requests["chat"]
        assert server.jobs_created == whole_server.jobs_created
    assert "tree_iter_000001.level_2.partial.jsonl" in seen["files"]
    assert comparable_metrics(RunDirectory(resumed.run_dir).read_metrics()) == expected
    assert rollout_files(resumed.run_dir) == rollout_files(whole.run_dir)
    assert not list((resumed.run_dir / "rollouts").glob("tree_*"))


def test_a_run_killed_after_its_trees_before_the_state_is_saved_samples_nothing_again(
    malt_scenario, monkeypatch
):
    # the trees of iteration 1 are done and their leaves saved, but the run is
    # killed before the state leaving the sampling stage is saved: the resumed run
    # reads the last level's file, it does not sample every tree again
    whole_server = malt_scenario.server
    whole = run(malt_scenario, "whole")
    expected = comparable_metrics(RunDirectory(whole.run_dir).read_metrics())
    original = PureTextMaltTrainer.save_state

    def save_state(trainer):
        state = trainer.state
        if (state.iteration, state.train_loop_stage) == (1, "log_stats"):
            raise KilledForTest("killed after iteration 1's trees")
        original(trainer)

    with scripted_server() as server:
        monkeypatch.setattr(PureTextMaltTrainer, "save_state", save_state)
        with pytest.raises(KilledForTest):
            run(malt_scenario, "killed", server=server)
        monkeypatch.setattr(PureTextMaltTrainer, "save_state", original)
        resumed = resume_run("killed", runs_dir=malt_scenario.root / "runs")
        assert server.requests["chat"] == whole_server.requests["chat"]
        assert server.jobs_created == whole_server.jobs_created
    assert comparable_metrics(RunDirectory(resumed.run_dir).read_metrics()) == expected
    assert rollout_files(resumed.run_dir) == rollout_files(whole.run_dir)
    assert not list((resumed.run_dir / "rollouts").glob("tree_*"))


def test_trees_too_big_are_refused_before_anything_is_generated(malt_scenario):
    with pytest.raises(NipConfigError) as caught:
        run(
            malt_scenario,
            "big",
            pure_text_malt={
                "num_responses_per_timestep": 3,
                "max_generations_per_iteration": 100,
            },
        )
    message = str(caught.value)
    # 4 trees of 3 + 9 + 27 turns
    assert "up to 156 generated turns" in message
    assert "lower pure_text_malt.num_responses_per_timestep" in message
    assert "max_message_rounds" in message
    assert [p.path for p in caught.value.problems] == [
        "pure_text_malt.max_generations_per_iteration"
    ]
    assert malt_scenario.server.requests["chat"] == 0
    # the same count before anything runs (nip config show / validate, a sweep's
    # check of every job): the protocol's schedule depends on the round only
    from nip_core.protocols.factory import protocol_problems

    too_big = malt_scenario.hyper_params(
        "nip",
        trainer="pure_text_malt",
        pure_text_malt={
            "num_responses_per_timestep": 3,
            "max_generations_per_iteration": 100,
        },
    )
    (problem,) = protocol_problems(too_big)
    assert problem.path == "pure_text_malt.max_generations_per_iteration"
    assert "up to 156 generated turns (4 trees of 3 responses per turn" in (
        problem.message
    )
    fits = malt_scenario.hyper_params(
        "nip",
        trainer="pure_text_malt",
        pure_text_malt={"num_responses_per_timestep": 3},
    )
    assert protocol_problems(fits) == []
    # no limit: it runs
    run(
        malt_scenario,
        "unlimited",
        text_rl={"num_iterations": 1, "rollouts_per_iteration": 1},
        pure_text_malt={"max_generations_per_iteration": None},
    )


def test_the_verifier_learns(register_plugin, tmp_path):
    """DPO pairs prefer the right verdict at the verifier's decisions, so the
    scripted verifier's skill, and its test accuracy, rise."""
    import nip_plugin_malt.plugin
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN
    from nip_core.testing.synthetic_text.fixtures import SyntheticTextScenario

    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")
    register_plugin(nip_plugin_malt.plugin, name="malt")
    with scripted_server() as server:
        scenario = SyntheticTextScenario(tmp_path, server)
        result = run(
            scenario,
            "learn",
            dataset="small",
            text_rl={
                "num_iterations": 3,
                "rollouts_per_iteration": 6,
                "num_test_rollouts": 32,
                "test_scheme": "first_and_last",
            },
            agents={"_default": {"fine_tune_from_scratch": False}},
        )
    records = RunDirectory(result.run_dir).read_metrics()
    tests = [r["test_mean_accuracy"] for r in records if "test_mean_accuracy" in r]
    assert len(tests) == 2
    assert tests[1] >= tests[0] + 0.25, tests
