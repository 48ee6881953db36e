"""Sweeps through Hydra's cluster launchers: submitit (local executor) and Ray.

submitit's ``local`` executor is the code path of its Slurm executor with
subprocesses instead of Slurm jobs: each job runs in a fresh Python process, which
composes the job's config again from the pickled Hydra context, so plugins' config
directories must be on the search path there. The Ray test starts a local Ray
cluster (2 CPUs, no dashboard) and shuts it down, with every process it started,
at the end.

Each job must load the sweep-test plugin through its entry point in its own process
(the plugin leaves its pid in ``loaded_by/``), write a complete run directory
(status, metrics of every iteration and of the test, checkpoints) and its job
record; ``nip report`` then reads the whole sweep.

Skipped only where the extra is not installed (``pip install nip-core[submitit]``,
``nip-core[ray]``); ``scripts/setup.sh`` installs both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from nip_core.cli.main import main

pytestmark = [pytest.mark.launchers, pytest.mark.usefixtures("single_thread")]

EXPECTED_STEPS = [0, 1, 2, 3]  # three training iterations, then the test metrics


def _require(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError:
        pytest.skip(
            f"the {extra} extra is not installed: pip install nip-core[{extra}]"
        )


def _check_sweep(site, capsys, num_jobs: int) -> Path:
    """Every job's run is complete, was run by another process, and is reported."""
    [sweep_dir] = site.sweep_dirs()
    runs = site.run_dirs()
    assert len(runs) == num_jobs
    for run in runs:
        info = json.loads((run / "run_info.json").read_text())
        assert info["status"] == "finished", info
        lines = (run / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [r["step"] for r in records] == EXPECTED_STEPS
        assert "test_mean_accuracy" in records[-1]
        assert (run / "checkpoints" / "latest.pt").is_file()
        params = json.loads((run / "hyper_params.json").read_text())
        assert params["_meta"]["versions"]["nip-plugin-sweep-test"] == "0.3.1"
    remote = site.loading_pids() - {os.getpid()}
    assert len(remote) >= 1, "the jobs did not load the plugin in another process"

    for job in range(num_jobs):
        job_dir = sweep_dir / str(job)
        record = json.loads((job_dir / "nip_job.json").read_text())
        assert Path(record["run_dir"]).resolve() in {r.resolve() for r in runs}
        hydra_cfg = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())
        sources = hydra_cfg["hydra"]["runtime"]["config_sources"]
        assert {"path": str(site.config_dir), "schema": "file"}.items() <= next(
            (s for s in sources if s["provider"] == "nip:sweep_test"), {}
        ).items(), "the plugin's config directory is not on the job's search path"

    capsys.readouterr()
    assert main(["report", str(sweep_dir), "--json", "--episodes", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["runs"]) == num_jobs
    return sweep_dir


def test_sweep_on_submitit_local(sweep_site, capsys):
    _require("hydra_plugins.hydra_submitit_launcher", "submitit")
    status = main(
        [
            "run",
            "-m",
            "-c",
            "sweep_test/exp",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=5",
            "seed=1,2",
        ]
    )
    assert status == 0, capsys.readouterr().err
    sweep_dir = _check_sweep(sweep_site, capsys, num_jobs=2)
    # submitit ran them: its job folders hold each job's pickled result
    assert list((sweep_dir / ".submitit").glob("*/*_result.pkl"))

    # Resuming through the same launcher: both runs finished, both skipped
    status = main(["run", "--resume-sweep", str(sweep_dir)])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "2 of 2 jobs succeeded (2 skipped" in err
    assert len(sweep_site.run_dirs()) == 2


def test_submitit_sweep_is_validated_before_any_job_starts(sweep_site, capsys):
    _require("hydra_plugins.hydra_submitit_launcher", "submitit")
    status = main(
        [
            "run",
            "-m",
            "-c",
            "sweep_test/exp",
            "hydra/launcher=submitit_local",
            "rl.num_epochs=1,0",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "rl.num_epochs" in err and "[job: ++rl.num_epochs=0]" not in err
    assert "[job: rl.num_epochs=0]" in err
    assert not sweep_site.runs.exists() or not list(sweep_site.runs.rglob(".submitit"))
    assert sweep_site.loading_pids() <= {os.getpid()}


@pytest.fixture
def local_ray_cluster(sweep_site):
    """A Ray cluster of this machine, started for the test and shut down after.

    Started after ``sweep_site`` set ``PYTHONPATH``, so Ray's worker processes
    (children of the cluster's raylet) import the sweep-test plugin.
    """
    ray = pytest.importorskip(
        "ray", reason="the ray extra is not installed: pip install nip-core[ray]"
    )
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=78_643_200,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def test_sweep_on_a_local_ray_cluster(local_ray_cluster, sweep_site, capsys):
    _require("hydra_plugins.hydra_ray_launcher", "ray")
    status = main(
        [
            "run",
            "-m",
            "-c",
            "sweep_test/exp",
            "hydra/launcher=ray",
            "seed=1,2",
        ]
    )
    assert status == 0, capsys.readouterr().err
    _check_sweep(sweep_site, capsys, num_jobs=2)
    assert local_ray_cluster.is_initialized()


def test_a_launcher_that_cannot_start_is_one_error_and_leaves_no_sweep(
    sweep_site, capsys, monkeypatch
):
    # (no Slurm here, no Ray cluster at the address given: the launcher raises
    # before any job runs)
    from hydra.core.plugins import Plugins

    real = Plugins.instantiate_launcher

    def instantiate_launcher(self, *args, **kwargs):
        launcher = real(self, *args, **kwargs)

        def launch(job_overrides, initial_job_idx):
            raise RuntimeError('Could not detect "srun", are you on a cluster?')

        launcher.launch = launch
        return launcher

    monkeypatch.setattr(Plugins, "instantiate_launcher", instantiate_launcher)
    status = main(["run", "-m", "-c", "sweep_test/exp", "seed=1,2"])
    err = capsys.readouterr().err
    assert status == 1
    assert (
        "nip: error: the sweep's launcher (BasicLauncher) could not start it: "
        'RuntimeError: Could not detect "srun"'
    ) in err
    assert "Traceback" not in err
    assert sweep_site.sweep_dirs() == []


def test_ray_at_a_running_cluster_leaves_the_object_store_to_it(sweep_site):
    # Hydra's Ray launcher sets object_store_memory unless the config does, and
    # ray.init refuses it when it connects to a running cluster (address=auto)
    _require("hydra_plugins.hydra_ray_launcher", "ray")
    from nip_core.cli import compose as composer
    from nip_core.cli.run_cmd import _launcher_fixes, compose_for_run

    def fixes(*overrides):
        with composer.hydra_app() as app:
            master = compose_for_run(
                app, "sweep_test/exp", list(overrides), multirun=True
            )
            return _launcher_fixes(master)

    fix = ["++hydra.launcher.ray.init.object_store_memory=null"]
    assert fixes("hydra/launcher=ray", "hydra.launcher.ray.init.address=auto") == fix
    # a local cluster started by the launcher keeps the launcher's setting; one the
    # config sizes itself, and other launchers, are left alone
    assert fixes("hydra/launcher=ray") == []
    assert (
        fixes(
            "hydra/launcher=ray",
            "hydra.launcher.ray.init.address=auto",
            "+hydra.launcher.ray.init.object_store_memory=100000000",
        )
        == []
    )
    assert fixes("seed=1,2") == []


def test_ctrl_c_on_a_joblib_sweep_lets_its_jobs_checkpoint(sweep_site):
    # Ctrl-C at a terminal reaches the nip process and joblib's workers (one
    # process group): the workers stop at the end of their iteration, after its
    # checkpoint, and the nip process waits for them instead of tearing them down
    import signal
    import subprocess
    import sys
    import time

    _require("hydra_plugins.hydra_joblib_launcher", "joblib")
    command = [
        sys.executable,
        "-m",
        "nip_core.cli.main",
        "run",
        "-m",
        "-c",
        "sweep_test/exp",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "seed=1,2",
        "rl.num_iterations=100000",
        "run.checkpoint_period=100000",
    ]

    def default_sigint():
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        command,
        cwd=sweep_site.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=default_sigint,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )

    def trained(run: Path) -> int:
        path = run / "metrics.jsonl"
        return len(path.read_text().splitlines()) if path.is_file() else 0

    deadline = time.monotonic() + 180
    try:
        while not (
            sweep_site.runs.is_dir()
            and len(runs := sweep_site.run_dirs()) == 2
            and all(trained(run) >= 2 for run in runs)
        ):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the jobs did not start in time"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does
        _, err = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, err
    assert "the running jobs stop at the end of their iteration" in err
    assert "--resume-sweep" in err
    for run in sweep_site.run_dirs():
        info = json.loads((run / "run_info.json").read_text())
        assert info["status"] == "killed", info
        # the checkpoint holds every iteration the run logged
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()]
        assert (run / "checkpoints" / f"iter_{len(steps):06d}.pt").is_file()


@pytest.mark.parametrize(
    ("launcher", "module", "extra"),
    [
        ("submitit_local", "hydra_plugins.hydra_submitit_launcher", "submitit"),
        ("joblib", "hydra_plugins.hydra_joblib_launcher", "joblib"),
    ],
)
def test_sigterm_stops_a_sweeps_jobs_and_marks_their_runs_killed(
    sweep_site, launcher, module, extra
):
    """SIGTERM (a Slurm cancellation of the sweep, ``kill``) reaches the jobs'
    processes: none trains on as an orphan (submitit's jobs swallowed SIGTERM and
    trained to the end), each marks its run killed before the launcher's teardown
    (which SIGKILLs them) runs, and the sweep says how to go on."""
    import signal
    import subprocess
    import sys
    import time

    from nip_core.runs.interrupts import (
        descendant_pids,
        signal_processes,
        wait_for_processes,
    )
    from nip_core.sweeps import job_process_pids

    _require(module, extra)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nip_core.cli.main",
            "run",
            "-m",
            "-c",
            "sweep_test/exp",
            f"hydra/launcher={launcher}",
            *(["hydra.launcher.timeout_min=5"] if launcher == "submitit_local" else []),
            *(["hydra.launcher.n_jobs=2"] if launcher == "joblib" else []),
            "rl.num_iterations=100000",
            "run.checkpoint_period=null",
            "seed=1,2",
        ],
        cwd=sweep_site.work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    below: list[int] = []
    try:

        def training() -> list[Path]:
            runs = sweep_site.runs.glob("*/metrics.jsonl")
            return [p for p in runs if p.stat().st_size > 0]

        deadline = time.monotonic() + 240
        while len(training()) < 2:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the jobs did not start training"
            time.sleep(0.1)
        jobs = sweep_site.loading_pids() - {process.pid, os.getpid()}
        below = descendant_pids(process.pid)
        assert jobs and jobs <= set(below)
        # the job processes say they are (SIGTERM goes to them, not their helpers)
        [sweep_dir] = sweep_site.sweep_dirs()
        training_jobs = set(job_process_pids(sweep_dir))
        assert len(training_jobs) == 2 and training_jobs <= jobs
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        # whatever the outcome, no job of this test trains on after it
        orphans = wait_for_processes(below, 0)
        signal_processes(orphans, signal.SIGKILL)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert "--resume-sweep" in err
    assert wait_for_processes(sorted(jobs), 10) == []
    statuses = [
        json.loads((run / "run_info.json").read_text())["status"]
        for run in sweep_site.run_dirs()
    ]
    # stopped, not trained to the end, and recorded so
    assert statuses == ["killed", "killed"], err
    assert job_process_pids(sweep_dir) == []  # each job took itself off
