"""``nip report``: arguments, output, errors, and no torch."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys

import pytest
from analysis_helpers import training_records, write_run

from nip_core.analysis.report import NoMetricsError, ReportError, RunNotFoundError
from nip_core.cli.report_cmd import add_report_parser, run_report_command


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nip")
    commands = parser.add_subparsers(dest="command")
    add_report_parser(commands)
    return parser.parse_args(["report", *argv])


def report(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    status = run_report_command(parse(argv), file=out)
    return status, out.getvalue()


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """``runs/{nip,debate}-{1,2}`` in the working directory."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    for protocol, base in (("nip", 0.6), ("debate", 0.4)):
        for seed in (1, 2):
            write_run(
                root,
                f"{protocol}-{seed}",
                training_records(
                    [0.5, base + 0.1 * seed],
                    rewards={"verifier": [0.0, 1.0]},
                    test_accuracy=base,
                ),
                {"scenario": "toy", "interaction_protocol": protocol, "seed": seed},
            )
    return root


def test_defaults(runs):
    args = parse(["nip-1"])
    assert args.runs == ["nip-1"]
    assert args.runs_dir == "runs" and args.out is None and args.group_by is None
    # not given: 4 episodes per run, and nothing said of runs without pictures
    assert args.episodes is None and args.confidence == 0.95 and not args.json


def test_one_run_by_id(runs):
    status, text = report(["nip-1"])
    assert status == 0
    assert "nip-1" in text and "0.700" in text
    assert sorted(p.name for p in (runs / "nip-1" / "plots").glob("*.png")) == [
        "accuracy.png",
        "rewards.png",
    ]


def test_sweep_glob_compared_into_out(runs, tmp_path):
    status, text = report(["runs/*", "--out", "cmp", "--episodes", "0"])
    assert status == 0
    assert "Final metrics per group" in text
    assert "interaction_protocol=debate" in text
    assert (tmp_path / "cmp" / "accuracy.png").is_file()
    # the nip group: 0.7 and 0.8
    line = next(
        row for row in text.splitlines() if row.startswith("interaction_protocol=nip")
    )
    assert "0.750 ±" in line


def test_json_and_group_by(runs, tmp_path):
    status, text = report(
        ["*", "--runs-dir", str(runs), "--json", "--group-by", "seed", "--out", "o"]
    )
    assert status == 0
    data = json.loads(text)
    assert [g["label"] for g in data["groups"]] == ["seed=1", "seed=2"]
    seed1 = data["groups"][0]
    assert seed1["final"]["test_mean_accuracy"]["mean"] == pytest.approx(0.5)
    assert data["out_dir"] == "o"
    comma = report(
        [
            "*",
            "--runs-dir",
            str(runs),
            "--json",
            "--group-by",
            "seed,interaction_protocol",
            "--out",
            "o",
        ]
    )[1]
    assert (
        json.loads(comma)["groups"][0]["label"] == "seed=1, interaction_protocol=debate"
    )


def test_errors_are_nip_errors(runs):
    with pytest.raises(RunNotFoundError, match="did you mean"):
        report(["nip-9"])
    write_run(runs, "fresh", [])
    with pytest.raises(NoMetricsError, match="'fresh'"):
        report(["fresh"])
    with pytest.raises(ReportError, match="--group-by 'protocol'"):
        report(["nip-1", "nip-2", "--group-by", "protocol"])
    from nip_core.errors import UsageError

    # bad options are usage errors (exit 2)
    with pytest.raises(UsageError, match="--confidence"):
        report(["nip-1", "--confidence", "95"])
    with pytest.raises(UsageError, match="--smooth must be 1 or more, got 0"):
        report(["nip-1", "--smooth", "0"])
    with pytest.raises(UsageError, match="--episodes must be 0 or more, got -1"):
        report(["nip-1", "--episodes", "-1"])


def test_through_nip_main_when_wired(runs, capsys):
    from nip_core.cli.main import build_parser, main

    commands = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    if "report" not in commands.choices:
        pytest.skip("`nip report` is not wired into nip_core.cli.main yet")
    assert main(["report", "nip-1", "nip-2", "--out", "x", "--episodes", "0"]) == 0
    assert "interaction_protocol=nip" in capsys.readouterr().out
    assert main(["report", "missing"]) == 1
    assert "nip: error: no run 'missing'" in capsys.readouterr().err
    assert main(["report", "nip-1", "--confidence", "1.5"]) == 2
    assert "nip: error: --confidence must lie in (0, 1)" in capsys.readouterr().err
    # --out naming a file: one error line, the file untouched
    (runs.parent / "afile").write_text("hi")
    assert main(["report", "nip-1", "nip-2", "--out", "afile"]) == 1
    err = capsys.readouterr().err
    assert "nip: error: --out afile is a file" in err and "Traceback" not in err
    assert (runs.parent / "afile").read_text() == "hi"


_PROBE = """
import sys
from nip_core.cli.report_cmd import add_report_parser, run_report_command
import argparse
parser = argparse.ArgumentParser()
add_report_parser(parser.add_subparsers())
status = run_report_command(parser.parse_args(["report", "runs/*", "--out", "o"]))
print("@@", status, "torch" in sys.modules)
"""


def test_report_does_not_import_torch(runs, tmp_path):
    # a rollout sample makes the report ask the plugin manager for a renderer
    (runs / "nip-1" / "rollouts").mkdir()
    (runs / "nip-1" / "rollouts" / "iter_000001.jsonl").write_text(
        json.dumps({"iteration": 1, "env_index": 0, "num_steps": 0, "steps": []}) + "\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    marker = [row for row in completed.stdout.splitlines() if row.startswith("@@")]
    assert marker, completed.stdout + completed.stderr
    assert marker[-1].split() == ["@@", "0", "False"]
    assert (tmp_path / "o" / "report.json").is_file()


def test_minutes_axis_needs_the_runs_clock(runs):
    # runs logged before the clock was: refused, naming them and the way out
    with pytest.raises(ReportError, match=r"nip-1, nip-2 logged no timing\.elapsed_s"):
        report(["nip-1", "nip-2", "--x-axis", "minutes", "--episodes", "0"])
    with pytest.raises(SystemExit):
        parse(["nip-1", "--x-axis", "seconds"])
    records = [
        {**record, "timing.elapsed_s": 90.0 * (record["step"] + 1)}
        for record in training_records([0.5, 0.7], test_accuracy=0.6)
    ]
    write_run(runs, "timed", records)
    status, text = report(["timed", "--x-axis", "minutes", "--episodes", "0", "--json"])
    assert status == 0
    data = json.loads(text)
    # how long the run ran: the tables' last column (the test at step 2, 270 s)
    assert data["columns"][-1] == "timing.elapsed_s"
    assert data["runs"][0]["final"]["timing.elapsed_s"] == 270.0
    assert any(path.endswith("accuracy.png") for path in data["files"])
    status, text = report(["timed", "--episodes", "0"])
    assert "elapsed s" in text.splitlines()[1] and "270.000" in text


def test_runs_without_metrics_among_several_are_left_out_with_a_warning(runs, capsys):
    # a sweep's job that failed before its first iteration does not stop the
    # report of the others
    failed = write_run(runs, "failed-1", [])
    (failed / "run_info.json").write_text(
        json.dumps({"status": "failed", "error": "DatasetNotFoundError: no ./nope"})
    )
    status, text = report(["runs/*", "--episodes", "0", "--out", "cmp"])
    assert status == 0
    assert "failed-1" not in text and "nip-1" in text
    err = capsys.readouterr().err
    assert (
        "nip: warning: failed-1 left out: it failed before its first iteration "
        "(DatasetNotFoundError: no ./nope)"
    ) in err
    # only runs without metrics: still the error
    write_run(runs, "fresh", [])
    with pytest.raises(NoMetricsError):
        report(["failed-1", "fresh"])


def test_runs_that_stopped_early_among_several_are_named(runs, capsys):
    """A run that failed after some iterations is read as it stands, but its group
    mean would not say so: a warning does."""
    crashed = write_run(runs, "crashed-1", training_records([0.5, 0.55]))
    (crashed / "run_info.json").write_text(
        json.dumps({"status": "failed", "error": "RuntimeError: boom"})
    )
    stopped = write_run(runs, "stopped-1", training_records([0.5]))
    (stopped / "run_info.json").write_text(json.dumps({"status": "killed"}))
    done = write_run(runs, "done-1", training_records([0.5, 0.6]))
    (done / "run_info.json").write_text(json.dumps({"status": "finished"}))
    status, text = report(["runs/*", "--episodes", "0", "--out", "cmp"])
    assert status == 0
    assert "crashed-1" in text
    err = capsys.readouterr().err
    assert (
        "nip: warning: run crashed-1 failed: its final values are those it logged "
        "last at step 1, and enter its group's mean like a finished run's"
    ) in err
    assert "nip: warning: run stopped-1 was stopped: its final values" in err
    assert "done-1" not in err


def test_a_run_copied_elsewhere_is_named_when_given_twice(runs, tmp_path, capsys):
    import shutil

    original = write_run(runs, "nip-9", training_records([0.5, 0.6]))
    copy = tmp_path / "elsewhere" / "nip-9"
    shutil.copytree(original, copy)
    status, _ = report([str(original), str(copy), "--episodes", "0", "--out", "cmp"])
    assert status == 0
    err = capsys.readouterr().err
    assert (
        f"nip: warning: run id nip-9 appears 2 times ({original}, {copy}): copies of "
        "one run count as separate runs in its group's mean"
    ) in err


def test_an_out_directory_that_cannot_be_made_is_one_error(runs, tmp_path):
    from nip_core.analysis.report import ReportError

    write_run(runs, "nip-7", training_records([0.5, 0.6]))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ReportError) as info:
        report(["nip-7", "--episodes", "0", "--out", str(blocker / "sub")])
    assert str(info.value) == (
        f"--out {blocker / 'sub'}: cannot create the directory for the report (Not a "
        "directory); choose another with --out DIR"
    )


def test_a_run_with_damaged_parameters_among_several_is_left_out(runs, capsys):
    write_run(runs, "nip-8", training_records([0.5, 0.6]))
    damaged = write_run(runs, "broken-1", training_records([0.5]))
    (damaged / "hyper_params.json").write_text("{not json")
    status, text = report(["runs/*", "--episodes", "0", "--out", "cmp"])
    assert status == 0
    assert "nip-8" in text and "broken-1" not in text
    err = capsys.readouterr().err
    assert "nip: warning: broken-1 left out: " in err
    assert "hyper_params.json is not valid JSON" in err
    # alone, it is the error
    with pytest.raises(ReportError, match="is not valid JSON"):
        report(["broken-1"])
