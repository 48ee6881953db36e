"""Rollout analysers: the cheap built-in ones on hand-built rollouts, the staged
trainer logging them, ``nip analyse`` on a saved run, and bad names."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nip_core.errors import NipConfigError
from nip_core.text.analysis import (
    DecisionAnalyser,
    InvalidResponseAnalyser,
    MessageLengthAnalyser,
    build_rollout_analysers,
)
from nip_core.text.rollouts import TextRollouts


def _rollouts() -> TextRollouts:
    rollouts = TextRollouts(
        ["prover", "verifier"], ["main"], 2, [{"y": 1}, {"y": 0}, {"y": 1}]
    )
    rollouts["agents.active"][:, 0, 0] = True
    rollouts["agents.active"][:, 1, 1] = True
    rollouts["agents.message"][:, 0, 0, 0] = ["one two three", "four", "five six"]
    rollouts["agents.message"][0, 1, 1, 0] = "a b"
    rollouts["agents.valid_response"][2, 1, 1] = False
    rollouts["agents.retries"][2, 1, 1] = 3
    rollouts["agents.retries"][1, 1, 1] = 1
    rollouts["verdict"][:] = [1, 1, -1]
    rollouts["terminated"][2, 1] = True
    rollouts["padding"][:, :] = False
    return rollouts


def test_message_lengths() -> None:
    out = MessageLengthAnalyser(None, None, "message_lengths").analyse(_rollouts())
    assert out["prover.mean_words"] == pytest.approx(2.0)
    assert out["prover.max_words"] == 3.0
    assert out["prover.num_messages"] == 3.0
    assert out["verifier.mean_words"] == 2.0
    assert out["prover.mean_characters"] == pytest.approx((13 + 4 + 8) / 3)


def test_decisions() -> None:
    out = DecisionAnalyser(None, None, "decisions").analyse(_rollouts())
    assert out["accept_rate"] == pytest.approx(2 / 3)
    assert out["reject_rate"] == 0.0
    assert out["no_verdict_rate"] == pytest.approx(1 / 3)
    assert out["round_limit_rate"] == pytest.approx(1 / 3)
    assert out["accept_rate_when_correct"] == 0.5
    assert out["accept_rate_when_incorrect"] == 1.0
    assert out["mean_verdict_round"] == 1.0


def test_an_episode_ended_early_without_a_verdict_is_not_cut_off_by_the_limit():
    # episode 0: the prover's invalid response ended it in round 0 (under
    # prover_invalid_response_penalty); episode 1 ran to the last round undecided
    rollouts = TextRollouts(["prover", "verifier"], ["main"], 3, [{"y": 1}] * 2)
    rollouts["verdict"][:] = [-1, -1]
    rollouts["terminated"][0, 0:] = True
    rollouts["terminated"][1, 2] = True
    rollouts["padding"][0, 1:] = True
    out = DecisionAnalyser(None, None, "decisions").analyse(rollouts)
    assert out["no_verdict_rate"] == 1.0
    assert out["round_limit_rate"] == 0.5


def test_invalid_responses() -> None:
    out = InvalidResponseAnalyser(None, None, "invalid_responses").analyse(_rollouts())
    assert out["verifier.invalid_rate"] == pytest.approx(1 / 3)
    assert out["verifier.retried_rate"] == pytest.approx(2 / 3)
    assert out["verifier.mean_retries"] == pytest.approx(4 / 3)
    assert out["prover.invalid_rate"] == 0.0
    assert out["invalid_rate"] == pytest.approx(1 / 6)


def test_unknown_analyser_is_one_clear_error(plugin_manager) -> None:
    with pytest.raises(NipConfigError) as info:
        build_rollout_analysers(["decisionz"], None, None)
    message = str(info.value)
    assert "rollout_analysers.0" in message and "decisions" in message


def test_trainer_logs_analysers_and_nip_analyse_reruns_them(
    synthetic_text_scenario, capsys
) -> None:
    from nip_core.cli.main import main
    from nip_core.experiment import run_experiment
    from nip_core.runs.run_dir import RunDirectory

    scenario = synthetic_text_scenario
    hyper_params = scenario.hyper_params(
        text_rl={
            "num_iterations": 1,
            "rollout_analysers": ["decisions", "invalid_responses"],
            "test_scheme": "last",
        }
    )
    assert hyper_params.text_rl.rollout_analysers == ("decisions", "invalid_responses")
    result = run_experiment(hyper_params, scenario.settings(), run_id="analysed")
    records = RunDirectory(result.run_dir).read_metrics()
    train = next(r for r in records if "mean_accuracy" in r)
    test = next(r for r in records if "test_mean_accuracy" in r)
    assert train["analysis.decisions.accept_rate"] + train[
        "analysis.decisions.reject_rate"
    ] + train["analysis.decisions.no_verdict_rate"] == pytest.approx(
        1.0 - train["analysis.decisions.neither_rate"]
    )
    assert "test_analysis.invalid_responses.invalid_rate" in test

    runs_dir = scenario.root / "runs"

    def analyse(split: str) -> int:
        return main(
            [
                "analyse",
                "analysed",
                "--runs-dir",
                str(runs_dir),
                "--analyser",
                "message_lengths",
                "--split",
                split,
            ]
        )

    # work in progress beside the rollouts (MALT's partial trees) is no rollouts
    # file of its own
    rollouts_dir = result.run_dir / "rollouts"
    partial = rollouts_dir / "tree_iter_000001.level_1.partial.jsonl"
    partial.write_text((rollouts_dir / "iter_000000.jsonl").read_text())
    assert analyse("train") == 0
    written = result.run_dir / "analysis" / "message_lengths.jsonl"
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert [line["file"] for line in lines] == ["iter_000000.jsonl"]
    assert lines[0]["verifier.mean_words"] > 0
    assert "message_lengths" in capsys.readouterr().out
    # the test split afterwards: the train split's records are kept
    before = lines[0]
    assert analyse("test") == 0
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert lines[0] == before
    assert len(lines) >= 2
    assert all(line["file"].startswith("test_") for line in lines[1:])
    assert all(line["split"] == "test" for line in lines[1:])
    capsys.readouterr()

    # a misspelt name is named as the option it was given with, not as a config path
    code = main(
        ["analyse", "analysed", "--runs-dir", str(runs_dir), "--analyser", "decisionz"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--analyser: unknown rollout analyser" in err and "decisions" in err
    assert "rollout_analysers.0" not in err

    code = main(["analyse", "nowhere", "--runs-dir", str(runs_dir), "--analyser", "x"])
    assert code != 0
    assert "no run directory 'nowhere'" in capsys.readouterr().err


def test_analysis_records_are_strict_json() -> None:
    # an analyser's NaN (a rate of no episodes) is not a JSON number
    from nip_core.runs.io import json_safe

    record = {
        "file": "iter_000000.jsonl",
        "rate": math.nan,
        "n": 2.0,
        "nested": {"low": -math.inf, "all": [math.inf, 1.0]},
    }
    text = json.dumps(json_safe(record), allow_nan=False)

    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    assert json.loads(text, parse_constant=refuse) == {
        "file": "iter_000000.jsonl",
        "rate": "nan",
        "n": 2.0,
        "nested": {"low": "-inf", "all": ["inf", 1.0]},
    }


def test_config_names_unknown_analyser(synthetic_text_scenario) -> None:
    with pytest.raises(NipConfigError) as info:
        synthetic_text_scenario.hyper_params(text_rl={"rollout_analysers": ["nope"]})
    assert "text_rl.rollout_analysers.0" in str(info.value)


def test_a_single_name_instead_of_a_list_is_one_clear_error(
    synthetic_text_scenario,
) -> None:
    # `text_rl.rollout_analysers=decisions` on the command line: a string, not a
    # list; it was split into its letters, one "unknown analyser" per letter
    with pytest.raises(NipConfigError) as info:
        synthetic_text_scenario.hyper_params(text_rl={"rollout_analysers": "decisions"})
    (problem,) = info.value.problems
    assert problem.path == "text_rl.rollout_analysers"
    assert "list" in problem.message
    assert problem.value == "decisions"


def test_empty_rollouts_give_nan_not_errors() -> None:
    rollouts = TextRollouts(["verifier"], ["main"], 1, [])
    out = DecisionAnalyser(None, None, "decisions").analyse(rollouts)
    assert math.isnan(out["accept_rate"])
    assert np.isnan(out["no_verdict_rate"])


class _Failing(MessageLengthAnalyser):
    def analyse(self, rollouts):
        raise KeyError("boom")


class _Wordy(MessageLengthAnalyser):
    def analyse(self, rollouts):
        return {"verdict": "accept"}


@pytest.mark.parametrize(
    ("analyser_class", "message"),
    [
        (_Failing, "rollout analyser 'mine' (test_analysis) failed: KeyError: 'boom'"),
        (_Wordy, "rollout analyser 'mine' (test_analysis) returned verdict='accept'"),
    ],
)
def test_a_failing_or_wordy_analyser_is_named(analyser_class, message) -> None:
    from nip_core.errors import PluginError
    from nip_core.text.analysis import analyse_rollouts

    analysers = {"mine": analyser_class(None, None, "mine")}
    with pytest.raises(PluginError) as info:
        analyse_rollouts(analysers, _rollouts())
    assert message in str(info.value)


def test_config_refuses_an_analyser_of_another_scenario(
    synthetic_text_scenario, register_plugin
) -> None:
    # caught when the config is validated, not after a run sampled its first batch
    from nip_core import hookimpl
    from nip_core.records import RolloutAnalyserSpec

    class OtherScenarioAnalysers:
        @hookimpl
        def register_rollout_analysers(self):
            return [
                RolloutAnalyserSpec(
                    name="judge",
                    analyser_class=MessageLengthAnalyser,
                    scenario="code_validation",
                )
            ]

    register_plugin(OtherScenarioAnalysers(), name="judges")
    with pytest.raises(NipConfigError) as info:
        synthetic_text_scenario.hyper_params(text_rl={"rollout_analysers": ["judge"]})
    message = str(info.value)
    assert "text_rl.rollout_analysers.0" in message
    assert "analyses code_validation rollouts, not synthetic_text ones" in message
    assert message.count("rollout_analysers.0") == 1


def test_nip_analyse_on_a_tensor_run_is_one_clear_error(
    synthetic_scenario, tmp_path, capsys
) -> None:
    """Not a traceback about an unknown rollout format: a tensor run's rollouts/
    holds tensor-world samples."""
    import json

    from nip_core.cli.main import main

    run = tmp_path / "runs" / "tensor"
    (run / "rollouts").mkdir(parents=True)
    (run / "hyper_params.json").write_text(
        json.dumps(synthetic_scenario.hyper_params().to_dict())
    )
    (run / "rollouts" / "iter_000000.jsonl").write_text('{"x": 1}\n')
    runs = str(tmp_path / "runs")
    status = main(["analyse", "tensor", "--runs-dir", runs, "--analyser", "decisions"])
    err = capsys.readouterr().err
    assert status != 0
    assert "Traceback" not in err
    assert (
        "run tensor is a tensor-world run (scenario 'synthetic'); nip analyse reads "
        "the saved rollouts of text runs (for tensor runs, see nip report)"
    ) in err


def test_the_summary_of_nip_analyse_shows_every_metric_nan_included():
    from nip_core.cli.main import format_analysis_record

    record = {
        "file": "test_iter_000001.jsonl",
        "split": "test",
        "iteration": 1,
        "num_episodes": 4,
        "mean_relevant": float("nan"),
        "accept_rate": 0.123456,
        "judged": True,
        "note": "text",
    }
    assert format_analysis_record(record) == (
        "num_episodes=4, mean_relevant=nan, accept_rate=0.123"
    )
