"""A credential given on a sweep's command line reaches its jobs, and no file.

Hydra keeps each job's config and overrides (``<job>/.hydra/``) and the sweep's
config (``multirun.yaml``), a launcher what it sends its processes (submitit's
pickles); nip its manifest (``sweep.json``) and each run's files. None of them holds
the credential: the jobs get it from its environment variable, which the files
name. The sweep still resumes from what it recorded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from nip_core.cli.main import main

pytestmark = pytest.mark.usefixtures("single_thread")

SECRET = "sk-sweep-0123456789abcdef"


def files_holding(root: Path, text: str) -> list[str]:
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and text.encode() in path.read_bytes()
    )


def test_a_sweep_writes_no_credential_given_on_its_command_line(
    sweep_site, capsys, monkeypatch
):
    import nip_core.experiment

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("NIP_TEST_TOKEN", raising=False)
    real = nip_core.experiment.run_experiment
    given: list[tuple[int, list[str], str | None]] = []
    launches: list[int] = []

    def stop(trainer, iteration, metrics):
        # the run of seed 2 stops like a killed process, in the first launch only
        if trainer.hyper_params.seed == 2 and iteration == 1 and len(launches) == 1:
            raise KeyboardInterrupt

    def run_experiment(hyper_params, settings, **kwargs):
        given.append(
            (
                hyper_params.seed,
                list(settings.wandb_tags),
                os.environ.get("NIP_TEST_TOKEN"),
            )
        )
        return real(hyper_params, settings, callbacks=[stop], **kwargs)

    monkeypatch.setattr(nip_core.experiment, "run_experiment", run_experiment)
    launches.append(1)
    status = main(
        [
            "run",
            "-m",
            "-c",
            "sweep_test/exp",
            "seed=1,2",
            f"run.wandb_tags=[{SECRET}]",
            f"+hydra.job.env_set.NIP_TEST_TOKEN={SECRET}",
        ]
    )
    assert status == 130, capsys.readouterr().err
    [sweep_dir] = sweep_site.sweep_dirs()
    assert given == [(1, [SECRET], SECRET), (2, [SECRET], SECRET)]
    assert files_holding(sweep_site.root, SECRET) == []

    # named where Hydra and nip keep them, not left out
    reference = "${oc.env:OPENAI_API_KEY}"
    job = sweep_dir / "0" / ".hydra"
    # (as Hydra's sweeper writes a value with braces into a job's overrides)
    assert yaml.safe_load((job / "overrides.yaml").read_text()) == [
        "++seed=1",
        r"++run.wandb_tags=[$\{oc.env\:OPENAI_API_KEY\}]",
    ]
    assert yaml.safe_load((job / "config.yaml").read_text())["run"]["wandb_tags"] == [
        reference
    ]
    hydra = yaml.safe_load((job / "hydra.yaml").read_text())["hydra"]
    assert hydra["job"]["env_set"] == {"NIP_TEST_TOKEN": reference}
    assert (
        f"+hydra.job.env_set.NIP_TEST_TOKEN={reference}" in hydra["overrides"]["hydra"]
    )
    multirun = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())
    assert multirun["hydra"]["overrides"]["task"] == [
        "++seed=1,2",
        f"++run.wandb_tags=[{reference}]",
    ]
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert manifest["overrides"] == [
        "seed=1,2",
        f"run.wandb_tags=[{reference}]",
        f"+hydra.job.env_set.NIP_TEST_TOKEN={reference}",
    ]

    # the sweep resumes from its manifest: the credential read from the variable
    capsys.readouterr()
    launches.append(2)
    status = main(["run", "--resume-sweep", str(sweep_dir)])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "2 of 2 jobs succeeded (1 skipped: their runs had finished)" in err
    assert given[2:] == [(2, [SECRET], SECRET)]
    assert {
        json.loads((run / "run_info.json").read_text())["status"]
        for run in sweep_site.run_dirs()
    } == {"finished"}
    assert len(sweep_site.run_dirs()) == 2
    assert files_holding(sweep_site.root, SECRET) == []


@pytest.mark.launchers
@pytest.mark.parametrize(
    ("launcher", "module"),
    [
        ("submitit_local", "hydra_plugins.hydra_submitit_launcher"),
        ("joblib", "hydra_plugins.hydra_joblib_launcher"),
    ],
)
def test_a_launchers_processes_get_the_credential_and_keep_none(
    sweep_site, capsys, monkeypatch, launcher, module
):
    pytest.importorskip(module)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    status = main(
        [
            "run",
            "-m",
            "-c",
            "sweep_test/exp",
            f"hydra/launcher={launcher}",
            "seed=1",
            f"run.wandb_tags=[{SECRET}]",
            "rl.num_iterations=1",
        ]
    )
    assert status == 0, capsys.readouterr().err
    [sweep_dir] = sweep_site.sweep_dirs()
    config = yaml.safe_load((sweep_dir / "0" / ".hydra" / "config.yaml").read_text())
    assert config["run"]["wandb_tags"] == ["${oc.env:OPENAI_API_KEY}"]
    # the run had the credential: its settings hide it as they hide any
    [run] = sweep_site.run_dirs()
    settings = json.loads((run / "settings.json").read_text())
    assert settings["wandb_tags"] == ["<OPENAI_API_KEY>"]
    assert files_holding(sweep_site.root, SECRET) == []


def test_a_run_writes_no_credential_given_on_its_command_line(
    sweep_site, capsys, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    status = main(
        [
            "run",
            "-c",
            "sweep_test/exp",
            f"run.wandb_tags=[{SECRET}]",
            "rl.num_iterations=1",
        ]
    )
    assert status == 0, capsys.readouterr().err
    [run] = sweep_site.run_dirs()
    settings = json.loads((run / "settings.json").read_text())
    assert settings["wandb_tags"] == ["<OPENAI_API_KEY>"]
    assert files_holding(sweep_site.root, SECRET) == []

    # a hyper-parameter is saved as it is: refused, nothing written
    status = main(
        [
            "run",
            "-c",
            "sweep_test/exp",
            f"openai_backend.base_url='https://127.0.0.1:9/v1?key={SECRET}'",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "openai_backend.base_url: holds the value of a credential variable" in err
    assert sweep_site.run_dirs() == [run]
    assert files_holding(sweep_site.root, SECRET) == []


@pytest.mark.launchers
def test_a_key_in_a_variable_of_any_name_reaches_no_file(
    sweep_site, capsys, monkeypatch
):
    # LLM_KEY is no credential's name: `openai_backend.api_key_env` makes it one,
    # before the sweep's overrides reach Hydra (submitit pickles them)
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    monkeypatch.setenv("LLM_KEY", SECRET)
    given = [
        "openai_backend.api_key_env=LLM_KEY",
        f"run.wandb_tags=[{SECRET}]",
        "rl.num_iterations=1",
    ]
    status = main(
        ["run", "-m", "-c", "sweep_test/exp", "hydra/launcher=submitit_local"]
        + ["seed=1", *given]
    )
    assert status == 0, capsys.readouterr().err
    [sweep_dir] = sweep_site.sweep_dirs()
    assert files_holding(sweep_site.root, SECRET) == []
    config = yaml.safe_load((sweep_dir / "0" / ".hydra" / "config.yaml").read_text())
    assert config["run"]["wandb_tags"] == ["${oc.env:LLM_KEY}"]
    manifest = json.loads((sweep_dir / "sweep.json").read_text())
    assert "run.wandb_tags=[${oc.env:LLM_KEY}]" in manifest["overrides"]
    [run] = sweep_site.run_dirs()
    settings = json.loads((run / "settings.json").read_text())
    assert settings["wandb_tags"] == ["<LLM_KEY>"]

    # the sweep resumes from its manifest
    capsys.readouterr()
    status = main(["run", "--resume-sweep", str(sweep_dir)])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "1 of 1 jobs succeeded (1 skipped" in err

    # and a single run
    status = main(["run", "-c", "sweep_test/exp", *given])
    assert status == 0, capsys.readouterr().err
    assert len(sweep_site.run_dirs()) == 2
    assert files_holding(sweep_site.root, SECRET) == []


@pytest.mark.parametrize(
    "given",
    [
        [f"+hydra.job.env_set.MY_API_KEY={SECRET}"],
        # named by `api_key_env`: a credential's variable whatever its name
        ["openai_backend.api_key_env=LLM_KEY", f"+hydra.job.env_set.LLM_KEY={SECRET}"],
    ],
)
def test_a_credential_written_out_for_the_jobs_environment_is_refused(
    sweep_site, capsys, monkeypatch, given
):
    # Hydra would save it (hydra.yaml, multirun.yaml), and nip in the manifest a
    # resume launches again from: hidden there, the sweep could not resume
    monkeypatch.delenv("MY_API_KEY", raising=False)
    monkeypatch.delenv("LLM_KEY", raising=False)
    name = given[-1].partition("env_set.")[2].partition("=")[0]
    status = main(["run", "-m", "-c", "sweep_test/exp", "seed=1", *given])
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"hydra.job.env_set.{name}: gives the jobs a credential written out" in err
    assert f"export {name}=..." in err
    assert SECRET not in err
    assert not (sweep_site.runs / "sweeps").exists()
    assert files_holding(sweep_site.root, SECRET) == []

    # exported, the same command line refers to the variable, and resumes
    monkeypatch.setenv(name, SECRET)
    status = main(
        ["run", "-m", "-c", "sweep_test/exp", "seed=1", "rl.num_iterations=1", *given]
    )
    assert status == 0, capsys.readouterr().err
    [sweep_dir] = sweep_site.sweep_dirs()
    status = main(["run", "--resume-sweep", str(sweep_dir)])
    assert status == 0, capsys.readouterr().err
    assert files_holding(sweep_site.root, SECRET) == []
