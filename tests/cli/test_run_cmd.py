"""`nip run`, `nip run --multirun` and the missing-plugins message.

``run_experiment`` is replaced by a recorder: no test here trains anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nip_core.cli import compose
from nip_core.cli.main import main


def test_run_validates_and_calls_run_experiment(toy_plugin, recorded_runs, capsys):
    status = main(["run", "-c", "toy/exp", "seed=5", "run.runs_dir=elsewhere"])
    assert status == 0, capsys.readouterr().err
    [(hyper_params, settings)] = recorded_runs
    assert hyper_params.scenario == "toy"
    assert hyper_params.seed == 5
    assert hyper_params.toy_section.depth == 2
    assert settings.runs_dir == "elsewhere"


def test_run_without_name_runs_the_default_config(toy_plugin, recorded_runs):
    assert main(["run"]) == 0
    [(hyper_params, _)] = recorded_runs
    assert hyper_params.trainer == "toy_trainer"


def test_invalid_run_config_never_reaches_run_experiment(
    toy_plugin, recorded_runs, capsys
):
    status = main(["run", "-c", "toy/exp", "toy_section.mode=medium"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "toy_section.mode" in err
    assert recorded_runs == []


def test_multirun_launches_one_job_per_combination(toy_plugin, recorded_runs, capsys):
    status = main(
        [
            "run",
            "--multirun",
            "-c",
            "toy/exp",
            "seed=1,2,3",
            "toy_section.mode=fast,slow",
        ]
    )
    _, err = capsys.readouterr()
    assert status == 0, err
    combinations = sorted((hp.seed, hp.toy_section.mode) for hp, _ in recorded_runs)
    assert combinations == [
        (seed, mode) for seed in (1, 2, 3) for mode in ("fast", "slow")
    ]
    assert "6 of 6 jobs succeeded" in err
    sweeps = list((Path.cwd() / "runs" / "sweeps").iterdir())
    assert len(sweeps) == 1
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == [
        str(n) for n in range(6)
    ]
    assert f"logs are in runs/sweeps/{sweeps[0].name}\n" in err


def test_multirun_with_the_joblib_launcher(toy_plugin, recorded_runs, capsys):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    # one worker runs the jobs in this process, where the recorder is installed
    status = main(
        [
            "run",
            "-m",
            "-c",
            "toy/exp",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=1",
            "seed=1,2",
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert sorted(hp.seed for hp, _ in recorded_runs) == [1, 2]


def test_sweep_is_validated_before_any_job_runs(toy_plugin, recorded_runs, capsys):
    status = main(["run", "-m", "-c", "toy/exp", "toy_section.depth=1,0,2"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "toy_section.depth" in err
    assert "[job: toy_section.depth=0]" in err
    assert recorded_runs == []


def test_sweep_refuses_a_fixed_run_id(toy_plugin, recorded_runs, capsys):
    status = main(["run", "-m", "-c", "toy/exp", "seed=1,2", "run.run_id=fixed"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "run.run_id" in err
    assert recorded_runs == []


def test_failed_jobs_are_summarised_and_the_rest_run(toy_plugin, monkeypatch, capsys):
    import nip_core.experiment
    from nip_core.errors import CheckpointError

    seeds = []

    def flaky(hyper_params, settings):
        seeds.append(hyper_params.seed)
        if hyper_params.seed == 2:
            raise CheckpointError("disk full")

    monkeypatch.setattr(nip_core.experiment, "run_experiment", flaky)
    status = main(["run", "-m", "-c", "toy/exp", "seed=1,2,3"])
    _, err = capsys.readouterr()
    assert status == 1
    assert seeds == [1, 2, 3]
    assert "2 of 3 jobs succeeded" in err
    assert "[seed=2] failed: disk full" in err


INSTALL_COMMAND = "pip install nip-plugin-graph-isomorphism nip-plugin-ppo"
CHECKOUT_COMMAND = (
    "pip install ./plugins/nip-plugin-graph-isomorphism ./plugins/nip-plugin-ppo"
)


def test_missing_scenario_plugin_says_what_to_install(
    plugin_manager, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(
        compose, "first_party_plugins_missing", lambda: ["nip-plugin-graph-isomorphism"]
    )
    monkeypatch.chdir(tmp_path)
    status = main(["run"])
    _, err = capsys.readouterr()
    assert status == 1
    assert "no scenario plugin is installed" in err
    assert "Missing plugins: nip-plugin-graph-isomorphism." in err
    assert INSTALL_COMMAND in err
    assert CHECKOUT_COMMAND in err
    assert "Traceback" not in err


def test_missing_default_config_says_what_to_install(toy_plugin, monkeypatch, capsys):
    monkeypatch.setattr(compose, "first_party_plugins_missing", lambda: [])
    (toy_plugin.config_dir / "default.yaml").unlink()
    status = main(["run"])
    _, err = capsys.readouterr()
    assert status == 1
    assert "there is no config named 'default'" in err
    assert "may have failed to load: see `nip plugins`" in err
    assert INSTALL_COMMAND in err
    assert CHECKOUT_COMMAND in err


def test_first_party_plugins_missing_asks_the_installed_distributions(monkeypatch):
    import importlib.metadata

    installed = {"nip-plugin-ppo"}

    def distribution(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return object()

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    assert compose.first_party_plugins_missing() == ["nip-plugin-graph-isomorphism"]
    installed.add("nip-plugin-graph-isomorphism")
    assert compose.first_party_plugins_missing() == []


def test_resume_passes_the_run_and_its_options(monkeypatch, capsys):
    import nip_core.experiment

    calls = []
    monkeypatch.setattr(
        nip_core.experiment,
        "resume_run",
        lambda run_id, **kwargs: calls.append((run_id, kwargs)),
    )
    assert main(["resume", "abc"]) == 0
    assert main(["resume", "abc", "--runs-dir", "elsewhere", "--device", "cuda"]) == 0
    assert calls == [("abc", {}), ("abc", {"runs_dir": "elsewhere", "device": "cuda"})]


def test_resume_of_a_missing_run_is_reported_without_traceback(tmp_path, capsys):
    status = main(["resume", "no_such_run", "--runs-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert status == 1
    assert "no_such_run" in err
    assert "Traceback" not in err
