"""Loading runs, grouping them, confidence intervals and the table of final metrics."""

from __future__ import annotations

import csv
import json
import math
import sys

import pytest
from analysis_helpers import training_records, write_run

from nip_core.analysis.report import (
    Estimate,
    NoMetricsError,
    ReportError,
    RunNotFoundError,
    aggregate_series,
    build_report,
    final_metrics,
    group_runs,
    load_run,
    mean_confidence_interval,
    resolve_run_paths,
    smooth_series,
    t_critical_value,
)
from nip_core.errors import NipError

T_975_DF2 = 4.302652729911275  # t_{0.975} with 2 degrees of freedom
T_975_DF1 = 12.706204736174704


def params(protocol: str, seed: int, **extra) -> dict:
    return {
        "scenario": "toy",
        "interaction_protocol": protocol,
        "seed": seed,
        "rl": {"num_iterations": 3, "gamma": 0.95},
        **extra,
    }


@pytest.fixture
def sweep(tmp_path):
    """Two protocols x three seeds; final accuracies nip 0.6/0.7/0.8, debate
    0.5/0.5/0.8 (single point at step 1); prover rewards 1, 2, 3 (nip only)."""
    runs = tmp_path / "runs"
    finals = {"nip": [0.6, 0.7, 0.8], "debate": [0.5, 0.5, 0.8]}
    for protocol, accuracies in finals.items():
        for seed, accuracy in zip((1, 2, 3), accuracies, strict=True):
            rewards = {"verifier": [0.0, -1.0 * seed]}
            if protocol == "nip":
                rewards["prover"] = [0.0, float(seed)]
            records = training_records(
                [0.5, accuracy], rewards=rewards, lengths=[3.0, 2.0 + seed]
            )
            write_run(runs, f"{protocol}-{seed}", records, params(protocol, seed))
    return runs


# --------------------------------------------------------------------------------------
# Statistics


def test_mean_confidence_interval_is_the_student_t_interval():
    estimate = mean_confidence_interval([1.0, 2.0, 3.0])
    assert estimate.mean == 2.0
    assert estimate.n == 3
    # s = 1, so the half width is t * 1 / sqrt(3)
    assert estimate.half_width == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-6)
    assert (estimate.low, estimate.high) == pytest.approx(
        (2.0 - T_975_DF2 / math.sqrt(3), 2.0 + T_975_DF2 / math.sqrt(3)), rel=1e-6
    )
    two = mean_confidence_interval([0.0, 1.0, float("nan")], confidence=0.95)
    assert two.n == 2
    assert two.half_width == pytest.approx(T_975_DF1 * math.sqrt(0.5) / math.sqrt(2))


def test_single_value_has_no_interval_and_no_value_is_empty():
    one = mean_confidence_interval([0.25])
    assert one.mean == 0.25 and one.n == 1 and math.isnan(one.half_width)
    assert one.format() == "0.250"
    none = mean_confidence_interval([])
    assert none.n == 0 and math.isnan(none.mean)
    assert none.format() == "-"
    assert Estimate(mean=0.5, half_width=0.125, n=3).format() == "0.500 ± 0.125"


def test_t_critical_value_without_scipy(monkeypatch):
    with_scipy = t_critical_value(2)
    assert with_scipy == pytest.approx(T_975_DF2, rel=1e-9)
    levels = [(df, c) for df in (1, 2, 3, 5, 30, 100, 10_000) for c in (0.8, 0.99)]
    exact = {key: t_critical_value(*key) for key in levels}
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    assert t_critical_value(2) == pytest.approx(T_975_DF2, rel=1e-8)
    assert t_critical_value(30) == pytest.approx(2.042272, rel=1e-6)
    # every level and any number of runs, not a 95% table and an expansion
    for key, value in exact.items():
        assert t_critical_value(*key) == pytest.approx(value, rel=1e-8), key
    # the closed forms at df 1 and 2, 99%
    assert t_critical_value(1, 0.99) == pytest.approx(
        math.tan(math.pi * 0.495), rel=1e-9
    )
    assert t_critical_value(2, 0.99) == pytest.approx(
        0.99 / math.sqrt(2 * 0.995 * 0.005), rel=1e-9
    )


def test_aggregate_series_uses_the_runs_that_logged_each_step():
    aggregated = aggregate_series([[(0, 1.0), (1, 2.0)], [(0, 3.0)], [(0, 2.0)]])
    assert [step for step, _ in aggregated] == [0, 1]
    step0, step1 = aggregated[0][1], aggregated[1][1]
    assert step0.mean == 2.0 and step0.n == 3
    assert step0.half_width == pytest.approx(T_975_DF2 / math.sqrt(3), rel=1e-6)
    assert step1.mean == 2.0 and step1.n == 1 and math.isnan(step1.half_width)


def test_smooth_series_is_the_trailing_mean():
    series = [(0, 1.0), (2, 3.0), (4, 5.0), (6, 10.0)]
    assert smooth_series(series, 2) == [(0, 1.0), (2, 2.0), (4, 4.0), (6, 7.5)]
    assert smooth_series(series, 3) == [(0, 1.0), (2, 2.0), (4, 3.0), (6, 6.0)]
    assert smooth_series(series, 1) == series
    assert smooth_series(series, 10)[-1] == (6, 4.75)
    with pytest.raises(ValueError, match="at least 1"):
        smooth_series(series, 0)


# --------------------------------------------------------------------------------------
# Loading runs


def test_load_run_keeps_the_last_value_per_step_and_skips_junk(tmp_path):
    path = write_run(
        tmp_path,
        "r",
        [
            {"step": 0, "mean_accuracy": 0.5, "note": "text", "flag": True},
            {"step": 1, "mean_accuracy": 0.6},
            {"step": 1, "mean_accuracy": 0.7, "bad": float("nan")},  # resumed run
        ],
    )
    with open(path / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "mean_acc')  # killed while writing
    run = load_run(path)
    assert run.series["mean_accuracy"] == [(0, 0.5), (1, 0.7)]
    assert set(run.series) == {"mean_accuracy"}
    assert run.final("mean_accuracy") == 0.7
    assert run.final("test_mean_accuracy") is None
    assert run.hyper_params["interaction_protocol"] == "nip"


def test_run_without_metrics_is_a_clear_error(tmp_path):
    path = write_run(tmp_path, "empty", [])
    with pytest.raises(NoMetricsError, match="'empty'.*without numeric metrics"):
        load_run(path)
    (path / "metrics.jsonl").unlink()
    with pytest.raises(NoMetricsError, match="has no metrics.jsonl") as caught:
        load_run(path)
    assert isinstance(caught.value, NipError)
    assert load_run(path, require_metrics=False).series == {}
    with pytest.raises(RunNotFoundError):
        load_run(tmp_path / "nowhere")


def test_resolve_run_paths_ids_paths_and_globs(sweep, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_run_paths(["nip-1"], sweep) == [sweep / "nip-1"]
    assert resolve_run_paths([str(sweep / "debate-2")], "elsewhere") == [
        sweep / "debate-2"
    ]
    by_id_glob = resolve_run_paths(["nip-*"], sweep)
    assert [p.name for p in by_id_glob] == ["nip-1", "nip-2", "nip-3"]
    by_path_glob = resolve_run_paths(["runs/*-3"], "unused")
    assert [p.name for p in by_path_glob] == ["debate-3", "nip-3"]
    # each run once, in the order given
    both = resolve_run_paths(["nip-2", "nip-*"], sweep)
    assert [p.name for p in both] == ["nip-2", "nip-1", "nip-3"]


def test_resolve_run_paths_errors_name_the_closest_run(sweep):
    with pytest.raises(RunNotFoundError, match="did you mean .*nip-1"):
        resolve_run_paths(["nip-l"], sweep)
    with pytest.raises(RunNotFoundError, match="matches no run directory"):
        resolve_run_paths(["ppo-*"], sweep)
    with pytest.raises(RunNotFoundError, match="does not exist; pass --runs-dir"):
        resolve_run_paths(["nip-1"], sweep / "missing")
    with pytest.raises(RunNotFoundError, match=r"holds 6; .*pass '.*runs/\*'"):
        resolve_run_paths([str(sweep)], sweep)


# --------------------------------------------------------------------------------------
# Groups


def test_default_groups_are_the_differing_parameters_but_the_seed(sweep):
    runs = [load_run(p) for p in sorted(sweep.iterdir())]
    groups = group_runs(runs)
    assert [g.label for g in groups] == [
        "interaction_protocol=debate",
        "interaction_protocol=nip",
    ]
    assert [r.run_id for r in groups[1].runs] == ["nip-1", "nip-2", "nip-3"]


def test_groups_of_seeds_only_and_explicit_keys(sweep, tmp_path):
    nip = [load_run(sweep / f"nip-{s}") for s in (1, 2, 3)]
    (only,) = group_runs(nip)
    assert only.label == "interaction_protocol=nip" and len(only.runs) == 3
    assert group_runs(nip[:1])[0].label == "nip-1"
    everything = [load_run(p) for p in sorted(sweep.iterdir())]
    by_seed = group_runs(everything, ["seed"])
    assert [g.label for g in by_seed] == ["seed=1", "seed=2", "seed=3"]
    two_keys = group_runs(everything, ["rl.gamma", "interaction_protocol"])
    assert two_keys[0].label == "rl.gamma=0.95, interaction_protocol=debate"
    with pytest.raises(ReportError, match="did you mean interaction_protocol"):
        group_runs(everything, ["interaction_protocl"])


def test_runs_differing_only_in_how_they_reach_a_server_are_one_group(
    synthetic_text_scenario, tmp_path
):
    # a resume with `--set openai_backend.base_url=...`, or another concurrency:
    # the same experiment, repeated
    from nip_core.parameters import HyperParameters

    def saved(seed, **overrides):
        values = synthetic_text_scenario.hyper_params_dict(seed=seed, **overrides)
        return HyperParameters(**values).to_dict()

    first = saved(1)
    moved = saved(2, openai_backend={"base_url": "http://127.0.0.1:9/v1"})
    busier = saved(3, text_backend={"max_concurrency": 16})
    assert moved["openai_backend"]["base_url"] != first["openai_backend"]["base_url"]
    runs = [
        load_run(write_run(tmp_path, name, training_records([0.5]), values))
        for name, values in (("a", first), ("b", moved), ("c", busier))
    ]
    (group,) = group_runs(runs)
    assert [run.run_id for run in group.runs] == ["a", "b", "c"]
    # an experiment's own parameter still tells groups apart
    other = saved(4, text_rl={"num_iterations": 3})
    runs.append(load_run(write_run(tmp_path, "d", training_records([0.5]), other)))
    assert [g.label for g in group_runs(runs)] == [
        "text_rl.num_iterations=2",
        "text_rl.num_iterations=3",
    ]


def test_settings_a_run_does_not_read_neither_split_nor_label_it(
    synthetic_scenario, tmp_path
):
    # debate_protocol in a nip run, solo_agent in a reinforce run: carried by every
    # config, read by other protocols and trainers
    def saved(name, protocol, seed, **overrides):
        values = synthetic_scenario.hyper_params(protocol, seed=seed, **overrides)
        path = write_run(tmp_path, name, training_records([0.5]), values.to_dict())
        return load_run(path)

    runs = [
        saved("a", "nip", 1),
        saved("b", "nip", 2, debate_protocol={"max_message_rounds": 5}),
        saved("c", "nip", 3, solo_agent={"num_epochs": 7}),
        saved("d", "debate", 1),
        saved("e", "debate", 2, debate_protocol={"max_message_rounds": 5}),
    ]
    groups = group_runs(runs)
    assert [g.label for g in groups] == [
        "interaction_protocol=debate, debate_protocol.max_message_rounds=3",
        "interaction_protocol=debate, debate_protocol.max_message_rounds=5",
        "interaction_protocol=nip",
    ]
    assert [[r.run_id for r in g.runs] for g in groups] == [
        ["d"],
        ["e"],
        ["a", "b", "c"],
    ]
    # asked for, an unread key still groups
    by_rounds = group_runs(runs, ["debate_protocol.max_message_rounds"])
    assert [[r.run_id for r in g.runs] for g in by_rounds] == [
        ["a", "c", "d"],
        ["b", "e"],
    ]


def test_long_labels_beside_short_ones_are_numbered_and_the_short_kept(
    synthetic_scenario, tmp_path
):
    """Debate runs differing in four keys, nip runs (which read no
    debate_protocol) in two: only the long labels are shortened."""

    def saved(name, protocol, seed, **overrides):
        values = synthetic_scenario.hyper_params(protocol, seed=seed, **overrides)
        path = write_run(tmp_path, name, training_records([0.5]), values.to_dict())
        return load_run(path)

    rounds = {"max_message_rounds": 6, "min_message_rounds": 2}
    runs = [
        saved("a", "nip", 1, rl={"num_epochs": 4}),
        saved("b", "nip", 1, rl={"num_epochs": 10}),
        saved("c", "debate", 1, rl={"num_epochs": 4}),
        saved("d", "debate", 1, rl={"num_epochs": 10}, debate_protocol=rounds),
    ]
    groups = group_runs(runs)
    assert [g.display_label for g in groups] == [
        "G1: interaction_protocol=debate, debate_protocol.max_message_rounds=3, "
        "debate_protocol.min_message_rounds=1, ... (+1 more)",
        "G2: interaction_protocol=debate, debate_protocol.max_message_rounds=6, "
        "debate_protocol.min_message_rounds=2, ... (+1 more)",
        "G3: interaction_protocol=nip, rl.num_epochs=10",
        "G4: interaction_protocol=nip, rl.num_epochs=4",
    ]


def test_fields_a_text_run_does_not_read_neither_split_nor_label_it(
    synthetic_text_scenario, tmp_path
):
    # a text run reads no tensor-world field (d_representation, an agent's
    # learning-rate factor), its scenario not test_size, and the synthetic SFT
    # trainer not the guess replacement: runs differing there are repetitions
    import warnings

    from nip_core.parameters import HyperParameters

    def saved(name, seed, **overrides):
        values = synthetic_text_scenario.hyper_params_dict(seed=seed, **overrides)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unread settings warn
            values = HyperParameters(**values).to_dict()
        path = write_run(tmp_path, name, training_records([0.5]), values)
        return load_run(path)

    runs = [
        saved("a", 1),
        saved("b", 2, d_representation=64),
        saved("c", 3, test_size=0.5),
        saved("d", 4, agents={"_default": {"agent_lr_factor": {"actor": 0.5}}}),
        saved("e", 5, text_rl={"verifier_guess_replacement_proportion": 0.3}),
    ]
    (group,) = group_runs(runs)
    assert [run.run_id for run in group.runs] == ["a", "b", "c", "d", "e"]
    # a field it reads still tells runs apart, and the label shows only that one
    runs.append(saved("f", 6, agents={"_default": {"temperature": 0.5}}))
    runs.append(saved("g", 7, agents={"_default": {"temperature": 0.5}}, test_size=0.4))
    groups = group_runs(runs)
    assert [g.label for g in groups] == [
        "agents._default.temperature=0.5",
        "agents._default.temperature=null",
    ]
    assert [[r.run_id for r in g.runs] for g in groups] == [
        ["f", "g"],
        ["a", "b", "c", "d", "e"],
    ]
    # asked for, an unread field still groups
    by_size = group_runs(runs, ["test_size"])
    assert len(by_size) == 3


def test_runs_saved_by_an_older_version_group_with_todays(synthetic_scenario, tmp_path):
    # a field added since the older run was saved is read at its default: the two
    # runs are repetitions
    current = synthetic_scenario.hyper_params("nip", seed=1).to_dict()
    older = synthetic_scenario.hyper_params("nip", seed=2).to_dict()
    del older["protocol_common"]["shared_reward"]
    older["_meta"]["versions"] = {**older["_meta"]["versions"], "nip-core": "0.1.0"}
    runs = [
        load_run(write_run(tmp_path, name, training_records([0.5]), values))
        for name, values in (("new", current), ("old", older))
    ]
    (group,) = group_runs(runs)
    assert [run.run_id for run in group.runs] == ["new", "old"]
    # a run whose parameters cannot be read here is grouped by what it saved
    broken = dict(current, seed=3, scenario="not_installed")
    runs.append(load_run(write_run(tmp_path, "x", training_records([0.5]), broken)))
    labels = [g.label for g in group_runs(runs)]
    assert labels == ["scenario=not_installed", "scenario=synthetic"]


def test_a_key_missing_in_some_runs_labels_them_unset(tmp_path):
    a = write_run(tmp_path, "a", training_records([0.5]), params("nip", 1))
    b = write_run(
        tmp_path, "b", training_records([0.5]), params("nip", 2, spg={"variant": "sos"})
    )
    labels = [g.label for g in group_runs([load_run(a), load_run(b)])]
    assert labels == ["spg.variant=<unset>", "spg.variant=sos"]


# --------------------------------------------------------------------------------------
# The table


def test_final_metrics_are_the_last_logged_values(sweep):
    run = load_run(sweep / "nip-2")
    assert final_metrics(run) == {
        "mean_accuracy": 0.7,
        "prover.mean_episode_reward": 2.0,
        "verifier.mean_episode_reward": -2.0,
        "mean_episode_length": 4.0,
    }


def test_group_table_mean_and_interval(sweep):
    report = build_report(sorted(sweep.iterdir()), write=False)
    assert report.columns == [
        "mean_accuracy",
        "prover.mean_episode_reward",
        "verifier.mean_episode_reward",
        "mean_episode_length",
    ]
    debate, nip = report.group_table()
    assert nip["mean_accuracy"].mean == pytest.approx(0.7)
    # s = 0.1 over three seeds
    assert nip["mean_accuracy"].half_width == pytest.approx(
        T_975_DF2 * 0.1 / math.sqrt(3), rel=1e-6
    )
    assert nip["prover.mean_episode_reward"].mean == 2.0
    assert debate["prover.mean_episode_reward"].n == 0
    assert debate["mean_accuracy"].mean == pytest.approx(0.6)
    # s = sqrt(0.03) for 0.5, 0.5, 0.8
    assert debate["mean_accuracy"].half_width == pytest.approx(
        T_975_DF2 * math.sqrt(0.03) / math.sqrt(3), rel=1e-6
    )
    rows = report.run_table()
    assert rows[0] == {
        "mean_accuracy": 0.5,
        "prover.mean_episode_reward": None,
        "verifier.mean_episode_reward": -1.0,
        "mean_episode_length": 3.0,
    }


def test_text_json_and_csv_tables(sweep, tmp_path):
    out = tmp_path / "out"
    report = build_report(sorted(sweep.iterdir()), out_dir=out, num_episodes=0)
    text = report.format_text()
    hw = T_975_DF2 * 0.1 / math.sqrt(3)
    assert f"0.700 ± {hw:.3f}" in text
    assert "interaction_protocol=nip" in text
    assert "prover reward" in text and "episode length" in text
    nip_line = next(line for line in text.splitlines() if line.startswith("nip-3"))
    assert nip_line.split()[1:] == [
        "interaction_protocol=nip",
        "0.800",
        "3.000",
        "-3.000",
        "5.000",
    ]

    data = json.loads((out / "report.json").read_text())
    assert data == json.loads(json.dumps(report.to_dict()))
    nip = next(g for g in data["groups"] if g["label"] == "interaction_protocol=nip")
    assert nip["runs"] == ["nip-1", "nip-2", "nip-3"]
    assert nip["final"]["mean_accuracy"]["mean"] == pytest.approx(0.7)
    assert nip["final"]["mean_accuracy"]["ci_high"] == pytest.approx(0.7 + hw)
    debate = next(g for g in data["groups"] if g["label"].endswith("debate"))
    assert debate["final"]["prover.mean_episode_reward"] == {
        "mean": None,
        "ci_low": None,
        "ci_high": None,
        "half_width": None,
        "n": 0,
    }

    with open(out / "final_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run_id"] for r in rows] == [
        "debate-1",
        "debate-2",
        "debate-3",
        "nip-1",
        "nip-2",
        "nip-3",
    ]
    assert (
        rows[3]["mean_accuracy"] == "0.6"
        and rows[0]["prover.mean_episode_reward"] == ""
    )
    with open(out / "group_metrics.csv") as f:
        groups = list(csv.DictReader(f))
    accuracy = next(
        r
        for r in groups
        if r["group"] == "interaction_protocol=nip" and r["metric"] == "mean_accuracy"
    )
    assert accuracy["n"] == "3"
    assert float(accuracy["ci_low"]) == pytest.approx(0.7 - hw)


def test_one_run_report_goes_to_its_plots_dir(sweep):
    report = build_report([sweep / "nip-1"], num_episodes=0)
    assert report.out_dir == sweep / "nip-1" / "plots"
    assert (sweep / "nip-1" / "plots" / "final_metrics.csv").is_file()
    text = report.format_text()
    assert "per group" not in text  # one run: no group table
    assert text.splitlines()[1].split() == [
        "run",
        "accuracy",
        "prover",
        "reward",
        "verifier",
        "reward",
        "episode",
        "length",
    ]


def test_non_finite_final_values_are_warned_about(tmp_path):
    """A run whose metric ends in NaN (written "nan" by nip) shows its last finite
    value with a warning; a metric never finite shows as nan, with a warning."""
    diverged = write_run(
        tmp_path,
        "diverged",
        [
            {"step": 0, "mean_accuracy": 0.6, "prover.mean_episode_reward": 0.2},
            {"step": 1, "mean_accuracy": "nan", "prover.mean_episode_reward": 0.3},
            {"step": 2, "mean_accuracy": "inf", "test_mean_accuracy": "-inf"},
        ],
    )
    healthy = write_run(
        tmp_path, "healthy", [{"step": 0, "mean_accuracy": 0.8}, {"step": 1}]
    )
    run = load_run(diverged)
    assert run.series["mean_accuracy"] == [(0, 0.6)]
    assert run.non_finite["mean_accuracy"] == (1, math.inf)
    assert run.final("mean_accuracy") == 0.6
    assert run.final("test_mean_accuracy") == -math.inf
    assert "prover.mean_episode_reward" not in run.non_finite

    report = build_report([diverged, healthy], write=False)
    assert "test_mean_accuracy" in report.columns
    assert report.warnings == [
        "run diverged: mean_accuracy is inf from step 1 on; its final value here "
        "is the last finite one, 0.6 at step 0",
        "run diverged: test_mean_accuracy was never finite (last -inf); group means "
        "and intervals leave this run out for it",
    ]
    # the CSV leaves a never-finite value empty, as report.json has it null
    report.write_tables(tmp_path / "tables")
    with open(tmp_path / "tables" / "final_metrics.csv") as f:
        rows = {row["run_id"]: row for row in csv.DictReader(f)}
    assert rows["diverged"]["test_mean_accuracy"] == ""
    assert rows["diverged"]["mean_accuracy"] == "0.6"
    saved = json.loads((tmp_path / "tables" / "report.json").read_text())
    [diverged_row] = [r for r in saved["runs"] if r["run_id"] == "diverged"]
    assert diverged_row["final"]["test_mean_accuracy"] is None
    # a finite value after non-finite ones ends the warning
    recovered = write_run(
        tmp_path,
        "recovered",
        [{"step": 0, "mean_accuracy": "nan"}, {"step": 1, "mean_accuracy": 0.7}],
    )
    assert load_run(recovered).non_finite == {}
    # a run of nothing but non-finite values has metrics all the same
    only = write_run(tmp_path, "only", [{"step": 0, "mean_accuracy": "nan"}])
    assert math.isnan(load_run(only).final("mean_accuracy"))


def test_long_group_labels_are_shortened_and_mixed_experiments_warned(tmp_path):
    records = training_records([0.5, 0.6])
    paths = []
    for i, (scenario, trainer) in enumerate(
        [("graph_isomorphism", "vanilla_ppo"), ("code_validation", "pure_text_ei")]
    ):
        params = {
            "scenario": scenario,
            "trainer": trainer,
            "interaction_protocol": "nip",
            "seed": i,
            "a": i,
            "b": i,
            "c": i,
        }
        paths.append(write_run(tmp_path, f"r{i}", records, params))
    report = build_report(paths, write=False)
    labels = [group.label for group in report.groups]
    # what the experiment is leads the label
    assert labels == [
        "scenario=code_validation, trainer=pure_text_ei, a=1, b=1, c=1",
        "scenario=graph_isomorphism, trainer=vanilla_ppo, a=0, b=0, c=0",
    ]
    assert [group.display_label for group in report.groups] == [
        "G1: scenario=code_validation, trainer=pure_text_ei, a=1, ... (+2 more)",
        "G2: scenario=graph_isomorphism, trainer=vanilla_ppo, a=0, ... (+2 more)",
    ]
    assert "G1: scenario=code_validation" in report.format_text()
    data = report.to_dict()
    assert data["groups"][0]["label"] == labels[0]
    assert data["groups"][0]["display_label"].startswith("G1: ")
    assert report.warnings[:2] == [
        "the runs are of different scenarios (code_validation, graph_isomorphism): "
        "their metrics are not measured on the same task",
        "the runs are of different trainers (pure_text_ei, vanilla_ppo): their "
        "metrics are not measured on the same task",
    ]
    assert "shortened in tables and legends" in report.warnings[2]
    # few keys: the label as it is
    short = build_report(paths, write=False, group_by=["a"])
    assert [g.display_label for g in short.groups] == ["a=0", "a=1"]
