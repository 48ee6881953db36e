"""Restarting a killed sweep: ``nip run -m --resume-sweep``, with the basic launcher.

The sweep runs in this process; one of its jobs is "killed" after its second
iteration (a callback raises ``KeyboardInterrupt``, which ends the whole sweep as
Ctrl-C or a signal would), so the sweep stops with one run finished, one with a
checkpoint and one never started.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nip_core.cli.main import main

pytestmark = pytest.mark.usefixtures("single_thread")


def _interrupt_run(
    monkeypatch: pytest.MonkeyPatch, seed: int, after_iteration: int
) -> None:
    """Make the run of ``seed`` stop like a killed process after an iteration."""
    import nip_core.experiment

    real = nip_core.experiment.run_experiment

    def stop(trainer, iteration, metrics):
        if trainer.hyper_params.seed == seed and iteration == after_iteration:
            raise KeyboardInterrupt

    def run_experiment(hyper_params, settings, **kwargs):
        return real(hyper_params, settings, callbacks=[stop], **kwargs)

    monkeypatch.setattr(nip_core.experiment, "run_experiment", run_experiment)


def _metric_steps(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def _status(run_dir: Path) -> str:
    return json.loads((run_dir / "run_info.json").read_text())["status"]


def test_a_killed_sweep_resumes_without_duplicating_runs(sweep_site, capsys):
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_run(patch, seed=2, after_iteration=1)
        status = main(["run", "-m", "-c", "sweep_test/exp", "seed=1,2,3"])
    assert status == 130
    [sweep_dir] = sweep_site.sweep_dirs()
    first = {p.name: _status(p) for p in sweep_site.run_dirs()}
    assert sorted(first.values()) == ["finished", "killed"]
    killed = next(sweep_site.runs / n for n, s in first.items() if s == "killed")
    checkpoints = sorted(p.name for p in (killed / "checkpoints").glob("iter_*"))
    assert checkpoints[-1] == "iter_000002.pt"

    capsys.readouterr()
    status = main(["run", "--resume-sweep", str(sweep_dir)])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "3 of 3 jobs succeeded (1 skipped: their runs had finished)" in err

    runs = sweep_site.run_dirs()
    assert len(runs) == 3, "a resumed sweep must not start runs under new ids"
    assert set(first) <= {p.name for p in runs}
    assert all(p.name.startswith(f"{sweep_dir.name}-") for p in runs)
    assert {_status(p) for p in runs} == {"finished"}
    # The killed run continued at iteration 2 (after its checkpoint): every train
    # iteration logged once, then the test metrics
    assert _metric_steps(killed) == [0, 1, 2, 3]
    for run in runs:
        assert _metric_steps(run) == [0, 1, 2, 3]

    # `nip report` takes the sweep directory for all of its runs
    capsys.readouterr()
    assert main(["report", str(sweep_dir), "--json", "--episodes", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["runs"]) == 3

    # A sweep by name (under runs/sweeps) resumes too, with nothing left to do
    status = main(
        [
            "run",
            "--resume-sweep",
            sweep_dir.name,
            "-c",
            "sweep_test/exp",
            f"run.runs_dir={sweep_site.runs}",
            "seed=1,2,3",
        ]
    )
    err = capsys.readouterr().err
    assert status == 0, err
    assert "(3 skipped" in err
    assert len(sweep_site.run_dirs()) == 3
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert manifest["launches"] == 3
    assert manifest["config_name"] == "sweep_test/exp"


def test_a_sweep_directory_is_not_launched_twice(sweep_site, capsys):
    sweep_dir = sweep_site.runs / "sweeps" / "mine"
    args = [
        "run",
        "-m",
        "-c",
        "sweep_test/exp",
        "seed=1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    assert main(args) == 0, capsys.readouterr().err
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already holds a sweep" in err
    assert f"--resume-sweep {sweep_dir}" in err
    assert len(sweep_site.run_dirs()) == 1


def test_jobs_that_are_the_same_experiment_are_refused(sweep_site, capsys):
    status = main(["run", "-m", "-c", "sweep_test/exp", "run.checkpoint_period=1,2"])
    err = capsys.readouterr().err
    assert status == 2
    assert "are the same experiment" in err
    assert not sweep_site.runs.exists() or sweep_site.run_dirs() == []


def test_resuming_a_missing_sweep_names_the_known_ones(sweep_site, capsys):
    assert main(["run", "-m", "-c", "sweep_test/exp", "seed=1"]) == 0
    [sweep_dir] = sweep_site.sweep_dirs()
    capsys.readouterr()
    status = main(["run", "--resume-sweep", "nope", f"run.runs_dir={sweep_site.runs}"])
    err = capsys.readouterr().err
    assert status == 1
    assert "no sweep 'nope'" in err
    assert sweep_dir.name in err


def test_extending_a_sweep_keeps_its_record_its_settings_and_its_jobs(
    sweep_site, capsys
):
    # a sweep over seeds with a setting of its own (2 iterations, not the config's 3)
    argv = ["run", "-m", "-c", "sweep_test/exp", "seed=1,2", "rl.num_iterations=2"]
    assert main(argv) == 0
    [sweep_dir] = sweep_site.sweep_dirs()
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    records = {
        p.name: (p / "nip_job.json").read_text()
        for p in sweep_dir.glob("*")
        if (p / "nip_job.json").is_file()
    }
    assert sorted(records) == ["0", "1"]

    # extended with another seed: the sweep's own overrides still apply to it
    capsys.readouterr()
    status = main(["run", "--resume-sweep", str(sweep_dir), "seed=7"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "1 of 1 jobs succeeded" in err
    extended = json.loads((sweep_dir / "sweep.json").read_text())
    assert extended["overrides"] == manifest["overrides"]
    assert extended["config_name"] == "sweep_test/exp"
    assert extended["extensions"] == [["seed=7", "rl.num_iterations=2"]]
    # the first launch's job records are untouched; the new job has its own
    assert {n: (sweep_dir / n / "nip_job.json").read_text() for n in records} == records
    assert (sweep_dir / "ext1-0" / "nip_job.json").is_file()
    runs = sweep_site.run_dirs()
    assert len(runs) == 3
    seeds = {}
    for run in runs:
        params = json.loads((run / "hyper_params.json").read_text())
        seeds[params["seed"]] = params["rl"]["num_iterations"]
    assert seeds == {1: 2, 2: 2, 7: 2}

    # `nip report` sees all three, ordered by launch then job number
    from nip_core.sweeps import sweep_run_dirs

    ordered = [
        json.loads((r / "hyper_params.json").read_text())["seed"]
        for r in sweep_run_dirs(sweep_dir)
    ]
    assert ordered == [1, 2, 7]

    # a resume without overrides resumes the extension too (all finished here)
    capsys.readouterr()
    assert main(["run", "--resume-sweep", str(sweep_dir)]) == 0
    err = capsys.readouterr().err
    assert err.count("jobs succeeded") == 1
    assert "3 of 3 jobs succeeded (3 skipped: their runs had finished)" in err
    assert len(sweep_site.run_dirs()) == 3

    # another config cannot be slipped in
    assert main(["run", "--resume-sweep", str(sweep_dir), "-c", "other"]) != 0
    assert "extend it with overrides only" in capsys.readouterr().err


def test_a_job_whose_run_id_holds_another_experiment_is_neither_skipped_nor_resumed(
    sweep_site, capsys
):
    # a run_id template that gives two experiments one id: the second sweep's job
    # finds the first sweep's finished run under its id
    first = ["run", "-m", "-c", "sweep_test/exp", "seed=1", "run.run_id=fixed"]
    assert main(first) == 0, capsys.readouterr().err
    [first_sweep] = sweep_site.sweep_dirs()
    capsys.readouterr()
    second = ["run", "-m", "-c", "sweep_test/exp", "seed=2", "run.run_id=fixed"]
    assert main(second) == 1
    err = capsys.readouterr().err
    assert "holds a different experiment than this job's (seed: 1 there, 2 here)" in err
    [job_line] = [line for line in err.splitlines() if "job 0" in line]
    assert "--resume-sweep" not in job_line  # resuming would not help this job
    [second_sweep] = [d for d in sweep_site.sweep_dirs() if d != first_sweep]

    # resuming the second sweep does not count the first sweep's run as its own
    assert main(["run", "--resume-sweep", str(second_sweep)]) == 1
    err = capsys.readouterr().err
    assert "holds a different experiment than this job's" in err
    assert "skipped" not in err
    [run] = sweep_site.run_dirs()
    assert json.loads((run / "hyper_params.json").read_text())["seed"] == 1
    assert _status(run) == "finished"


def test_a_sweep_of_the_default_config_resumes_with_its_name_given(sweep_site, capsys):
    # `nip run -m` without --config-name sweeps the config named `default`
    # (./configs comes first on the search path)
    default = sweep_site.work / "configs" / "default.yaml"
    default.parent.mkdir()
    default.write_text("defaults:\n  - sweep_test/exp\n  - _self_\n")
    sweep_dir = sweep_site.runs / "sweeps" / "of-default"
    status = main(["run", "-m", "seed=1", f"hydra.sweep.dir={sweep_dir}"])
    assert status == 0, capsys.readouterr().err
    capsys.readouterr()
    assert json.loads((sweep_dir / "sweep.json").read_text())["config_name"] is None
    assert main(["run", "--resume-sweep", str(sweep_dir), "-c", "default"]) == 0
    err = capsys.readouterr().err
    assert "1 of 1 jobs succeeded (1 skipped" in err
    assert main(["run", "--resume-sweep", str(sweep_dir), "-c", "sweep_test/exp"]) != 0
    assert "is a sweep of config 'default'" in capsys.readouterr().err


def test_job_processes_register_for_the_length_of_their_job(tmp_path, monkeypatch):
    """A job process is listed in its sweep directory while it runs a job (the
    processes a SIGTERM to the sweep goes to), under its host's name: another
    machine's PIDs are not this machine's."""
    import os
    import socket

    from nip_core.sweeps import (
        JOB_PROCESSES,
        forget_job_processes,
        job_process_pids,
        job_process_registered,
    )

    monkeypatch.setattr(socket, "gethostname", lambda: "node-7")
    assert job_process_pids(tmp_path) == []
    with job_process_registered(tmp_path):
        (tmp_path / JOB_PROCESSES / "node-8-123").touch()  # another machine's
        (tmp_path / JOB_PROCESSES / "node-7-x").touch()  # not a PID
        assert job_process_pids(tmp_path) == [os.getpid()]
        assert (tmp_path / JOB_PROCESSES / f"node-7-{os.getpid()}").is_file()
    assert job_process_pids(tmp_path) == []
    # a sweep launched or continued forgets this machine's entries (processes
    # killed outright leave theirs), not another machine's
    (tmp_path / JOB_PROCESSES / "node-7-424242").touch()
    forget_job_processes(tmp_path)
    assert sorted(p.name for p in (tmp_path / JOB_PROCESSES).iterdir()) == [
        "node-8-123"
    ]
    # a registry that cannot be written does not stop the job
    blocked = tmp_path / "file"
    blocked.write_text("")
    with job_process_registered(blocked):
        assert job_process_pids(blocked) == []
