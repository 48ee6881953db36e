"""`nip run`, `nip run --multirun` and the missing-plugins message.

``run_experiment`` is replaced by a recorder: no test here trains anything.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

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


def test_a_sweep_shows_no_credential_a_job_was_given(
    toy_plugin, recorded_runs, capsys, monkeypatch
):
    """The job label repeats the overrides: a key pasted into one (here the bad
    value itself) is shown as its variable's name, as the run's files hold it."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abcdefghijkl1234XYZ")
    status = main(
        ["run", "-m", "-c", "toy/exp", "toy_section.mode=sk-abcdefghijkl1234XYZ"]
    )
    _, err = capsys.readouterr()
    assert status == 2
    assert "sk-abcdefghijkl1234XYZ" not in err
    assert "[job: toy_section.mode=<OPENAI_API_KEY>]" in err
    assert recorded_runs == []


def test_display_override_hides_what_the_config_messages_hide(monkeypatch):
    from nip_core.cli.compose import display_override

    monkeypatch.setenv("OPENAI_API_KEY", "sk-envkey-123456")
    assert (
        display_override("++openai_backend.api_key_env=sk-abcdefghijkl1234XYZ")
        == "openai_backend.api_key_env=sk-a... (22 characters)"
    )
    assert display_override("openai_backend.api_key_env=LLM_KEY") == (
        "openai_backend.api_key_env=LLM_KEY"
    )
    assert display_override(
        "openai_backend.base_url=http\\://user\\:sk-URL123@127.0.0.1\\:9/v1"
    ) == ("openai_backend.base_url=http\\://***@127.0.0.1\\:9/v1")
    assert display_override("run.wandb_tags=[a,sk-envkey-123456]") == (
        "run.wandb_tags=[a,<OPENAI_API_KEY>]"
    )
    assert display_override("seed=1,2") == "seed=1,2"
    # a credential a sweep hands its jobs by reference, as Hydra writes it too
    assert display_override("++run.wandb_tags=[${oc.env:OPENAI_API_KEY}]") == (
        "run.wandb_tags=[<OPENAI_API_KEY>]"
    )
    assert display_override(r"run.wandb_entity=$\{oc.env\:OPENAI_API_KEY\}") == (
        "run.wandb_entity=<OPENAI_API_KEY>"
    )
    assert display_override("run.runs_dir=${oc.env:HOME}") == (
        "run.runs_dir=${oc.env:HOME}"
    )


def test_a_sweep_hands_hydra_a_credential_by_reference(monkeypatch):
    from nip_core.cli.compose import record_override, refer_to_secrets

    monkeypatch.setenv("OPENAI_API_KEY", "sk-envkey-123456")
    assert refer_to_secrets("run.wandb_tags=[a,sk-envkey-123456]") == (
        "run.wandb_tags=[a,${oc.env:OPENAI_API_KEY}]"
    )
    assert refer_to_secrets("seed=1,2") == "seed=1,2"
    # a value with characters Hydra's grammar escapes, given escaped
    monkeypatch.setenv("MY_TOKEN", "abcdefgh12==")
    assert refer_to_secrets(r"run.wandb_entity=abcdefgh12\=\=") == (
        "run.wandb_entity=${oc.env:MY_TOKEN}"
    )
    assert record_override(r"run.wandb_entity='abcdefgh12=='") == (
        "run.wandb_entity='${oc.env:MY_TOKEN}'"
    )
    # the manifest: what resumes the sweep, so a reference, not <OPENAI_API_KEY>
    assert record_override("++run.wandb_entity=sk-envkey-123456") == (
        "run.wandb_entity=${oc.env:OPENAI_API_KEY}"
    )
    assert record_override("openai_backend.api_key_env=sk-abcdefghijkl1234XYZ") == (
        "openai_backend.api_key_env=sk-a... (22 characters)"
    )


def test_a_config_saved_hides_every_secret_in_it(monkeypatch):
    from nip_core.cli.compose import redact_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-envkey-123456")
    config = {
        "openai_backend": {
            "api_key_env": "sk-abcdefghijkl1234XYZ",
            "base_url": "http://user:sk-URL123@127.0.0.1:9/v1",
        },
        "run": {"wandb_tags": ["a", "sk-envkey-123456"], "checkpoint_period": 1},
        "hydra": {
            "job": {
                "override_dirname": "seed=1,openai_backend.api_key_env="
                "sk-abcdefghijkl1234XYZ,trainer=ppo"
            },
            "overrides": {
                "task": ["++openai_backend.api_key_env=sk-abcdefghijkl1234XYZ,LLM_KEY"]
            },
        },
    }
    assert redact_config(config) == {
        "openai_backend": {
            "api_key_env": "sk-a... (22 characters)",
            "base_url": "http://***@127.0.0.1:9/v1",
        },
        "run": {"wandb_tags": ["a", "<OPENAI_API_KEY>"], "checkpoint_period": 1},
        "hydra": {
            "job": {
                "override_dirname": "seed=1,openai_backend.api_key_env=sk-a... "
                "(22 characters),trainer=ppo"
            },
            "overrides": {
                "task": ["++openai_backend.api_key_env=sk-a... (30 characters)"]
            },
        },
    }
    assert redact_config({"api_key_env": "LLM_KEY", "seed": 3}) == {
        "api_key_env": "LLM_KEY",
        "seed": 3,
    }


def test_a_config_another_sweeper_saved_is_saved_again_hidden(tmp_path, monkeypatch):
    from nip_core.cli import run_cmd

    monkeypatch.setenv("OPENAI_API_KEY", "sk-envkey-123456")
    path = tmp_path / "multirun.yaml"
    path.write_text(
        "run:\n  wandb_tags:\n  - sk-envkey-123456\n"
        "hydra:\n  sweep:\n    dir: runs/sweeps/${now:%Y}\n"
    )
    run_cmd._redact_saved_config(path)
    assert path.read_text() == (
        "run:\n  wandb_tags:\n  - <OPENAI_API_KEY>\n"
        "hydra:\n  sweep:\n    dir: runs/sweeps/${now:%Y}\n"
    )
    # nothing to hide: left as it was
    path.write_text("seed: 1\n")
    run_cmd._redact_saved_config(path)
    assert path.read_text() == "seed: 1\n"


def test_a_hyper_parameter_holding_a_credential_is_refused(
    toy_plugin, recorded_runs, capsys, monkeypatch
):
    """A run saves its hyper-parameters as they are: a credential in one would be
    written to disk (settings are saved with it hidden instead)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-envkey-123456")
    status = main(
        [
            "run",
            "-c",
            "toy/exp",
            "openai_backend.base_url='https://127.0.0.1:9/v1?key=sk-envkey-123456'",
            "run.wandb_tags=[sk-envkey-123456]",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err == (
        "nip: error: invalid configuration: 1 problem\n"
        "  - openai_backend.base_url: holds the value of a credential variable "
        "(shown by its name): a run saves its hyper-parameters as they are, so keep "
        "the credential in its variable "
        "(got 'https://127.0.0.1:9/v1?key=<OPENAI_API_KEY>')\n"
    )
    assert recorded_runs == []


def test_sweep_refuses_a_fixed_run_id(toy_plugin, recorded_runs, capsys):
    status = main(["run", "-m", "-c", "toy/exp", "seed=1,2", "run.run_id=fixed"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "run.run_id" in err
    assert recorded_runs == []


def test_sweep_runs_a_run_id_that_interpolates_the_swept_values(
    toy_plugin, recorded_runs, capsys
):
    # the way the shipped sweep presets name their runs (compare_protocols)
    status = main(
        ["run", "-m", "-c", "toy/exp", "seed=1,2", "run.run_id=toy_seed${seed}"]
    )
    assert status == 0, capsys.readouterr().err
    assert sorted(s.run_id for _, s in recorded_runs) == ["toy_seed1", "toy_seed2"]


def test_sweep_refuses_a_run_id_two_jobs_share(toy_plugin, recorded_runs, capsys):
    status = main(
        [
            "run",
            "-m",
            "-c",
            "toy/exp",
            "seed=1,2",
            "toy_section.depth=1,2",
            "run.run_id=toy_depth${toy_section.depth}",
        ]
    )
    _, err = capsys.readouterr()
    assert status == 2
    assert "run.run_id" in err and "toy_depth1" in err
    assert "[seed=1 toy_section.depth=1 " in err  # the two jobs named
    assert "and [seed=2 toy_section.depth=1 " in err
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


def _installed_only(monkeypatch, *names: str) -> None:
    """Pretend only these distributions are installed."""
    import importlib.metadata

    real = importlib.metadata.distribution

    def distribution(name):
        if name.startswith("nip-plugin-") and name not in names:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name) if not name.startswith("nip-plugin-") else object()

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


def test_missing_scenario_plugin_says_what_to_install(
    plugin_manager, tmp_path, monkeypatch, capsys
):
    _installed_only(monkeypatch)
    monkeypatch.chdir(tmp_path)
    status = main(["run"])
    _, err = capsys.readouterr()
    assert status == 1
    assert "no scenario plugin is installed" in err
    for name in ("nip-plugin-graph-isomorphism", "nip-plugin-ppo"):
        assert f"{name} is not installed; install it with: pip install {name}" in err
        assert f"pip install -e ./plugins/{name}" in err
    assert "Traceback" not in err


def test_missing_default_config_names_the_plugin_that_lacks(
    toy_plugin, monkeypatch, capsys
):
    _installed_only(monkeypatch, "nip-plugin-graph-isomorphism")
    (toy_plugin.config_dir / "default.yaml").unlink()
    status = main(["run"])
    _, err = capsys.readouterr()
    assert status == 1
    assert "there is no config named 'default'" in err
    assert "nip-plugin-ppo is not installed; install it with" in err
    # installed, but not loaded by this test's isolated plugin manager
    assert "nip-plugin-graph-isomorphism is installed but its plugin was not" in err


def _info(name, distribution, status="ok", error=None):
    from nip_core.plugins import PluginInfo

    return PluginInfo(name=name, distribution=distribution, status=status, error=error)


class _Manager:
    def __init__(self, *infos):
        self.infos = list(infos)

    def plugin_infos(self):
        return self.infos


def test_a_disabled_or_broken_plugin_is_named_with_the_reason(monkeypatch):
    from nip_core.plugin_catalogue import missing_key_hint, plugin_state

    _installed_only(monkeypatch, "nip-plugin-ppo", "nip-plugin-graph-isomorphism")
    manager = _Manager(
        _info("graph_isomorphism", "nip-plugin-graph-isomorphism"),
        _info("ppo", "nip_plugin_ppo", "disabled", "listed in NIP_DISABLED_PLUGINS"),
    )
    assert plugin_state("nip-plugin-graph-isomorphism", manager) == (
        "nip-plugin-graph-isomorphism is installed and loaded"
    )
    hint = missing_key_hint("trainer", "vanilla_ppo", manager)
    assert hint == (
        "the trainer 'vanilla_ppo' comes with nip-plugin-ppo, which is installed but "
        "its plugin 'ppo' is disabled (listed in NIP_DISABLED_PLUGINS); remove it "
        "from that list to use it"
    )
    broken = _Manager(_info("ppo", "nip-plugin-ppo", "broken", "ImportError: torch"))
    assert "failed to load: ImportError: torch" in plugin_state(
        "nip-plugin-ppo", broken
    )
    assert missing_key_hint("trainer", "my_own_trainer", manager) is None
    allowed = _Manager(
        _info("ppo", "nip-plugin-ppo", "disabled", "not listed in NIP_PLUGINS")
    )
    assert plugin_state("nip-plugin-ppo", allowed) == (
        "nip-plugin-ppo is installed but its plugin 'ppo' is disabled (not listed "
        "in NIP_PLUGINS); add it to that list to use it"
    )


def test_a_plugin_a_manager_did_not_load_says_why(monkeypatch):
    # the installed plugins' own distributions: their entry points are real
    from nip_core.plugin_catalogue import plugin_state
    from nip_core.plugins import NipPluginManager

    monkeypatch.delenv("NIP_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    isolated = NipPluginManager(autoload=False)
    assert plugin_state("nip-plugin-ppo", isolated) == (
        "nip-plugin-ppo is installed but its plugin was not loaded (this plugin "
        "manager loads no installed plugins, as a test's isolated one does; "
        "register the plugin in it: register_plugin(nip_plugin_ppo.plugin, "
        "name='ppo') (import nip_plugin_ppo.plugin first))"
    )
    monkeypatch.setenv("NIP_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert plugin_state("nip-plugin-ppo", NipPluginManager()) == (
        "nip-plugin-ppo is installed but its plugin was not loaded "
        "(NIP_DISABLE_PLUGIN_AUTOLOAD is set)"
    )


def test_an_unknown_first_party_scenario_says_which_package_brings_it(
    synthetic_scenario, monkeypatch
):
    from nip_core.errors import NipConfigError
    from nip_core.parameters import HyperParameters

    _installed_only(monkeypatch)
    with pytest.raises(NipConfigError) as info:
        HyperParameters("graph_isomorphism", "reinforce")
    [problem] = [p for p in info.value.problems if p.path == "scenario"]
    assert "comes with nip-plugin-graph-isomorphism, which is not installed" in (
        problem.message
    )
    assert "pip install nip-plugin-graph-isomorphism" in problem.message


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
    # run settings (how the run runs, not what it learns) by --set run.NAME=VALUE,
    # hyper-parameters that say how it reaches its services by --set PATH=VALUE
    calls.clear()
    argv = ["resume", "abc", "--set", "run.data_dir=/data/original"]
    argv += ["--set", "run.checkpoint_period=5", "--set", "openai_backend.timeout=9"]
    assert main(argv) == 0
    assert calls == [
        (
            "abc",
            {
                "data_dir": "/data/original",
                "checkpoint_period": 5,
                "parameter_overrides": {"openai_backend.timeout": 9},
            },
        )
    ]
    capsys.readouterr()
    assert main(["resume", "abc", "--set", "run.run_id=other"]) == 2
    assert "run.run_id: a resume cannot change the run's id" in capsys.readouterr().err
    assert main(["resume", "abc", "--set", "run.data_dri=/x"]) == 2
    err = capsys.readouterr().err
    assert "run.data_dri: unknown run setting; did you mean 'run.data_dir'?" in err


def test_resume_of_a_missing_run_is_reported_without_traceback(tmp_path, capsys):
    status = main(["resume", "no_such_run", "--runs-dir", str(tmp_path)])
    _, err = capsys.readouterr()
    assert status == 1
    assert "no_such_run" in err
    assert "Traceback" not in err


@pytest.fixture
def torchrl_logger():
    import logging

    import torchrl  # noqa: F401 - installs its handler

    logger = logging.getLogger("torchrl")
    state = (list(logger.handlers), logger.propagate, logger.level)
    if not logger.handlers:
        # an earlier `nip run` in this process took TorchRL's own handler away
        logger.addHandler(logging.StreamHandler(sys.stdout))
        logger.propagate = False
    yield logger
    logger.handlers[:] = state[0]
    logger.propagate, logger.level = state[1], state[2]


def test_third_party_logging_goes_through_nip_quietly(
    torchrl_logger, monkeypatch, capsys
):
    import logging

    from nip_core.cli.main import configure_logging

    assert torchrl_logger.handlers  # TorchRL's own (coloured, to stdout)
    monkeypatch.delenv("NIP_LOG_LEVEL", raising=False)
    configure_logging()
    assert torchrl_logger.handlers == [] and torchrl_logger.propagate
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        torchrl_logger.info("Initialized LazyTensorStorage")
        torchrl_logger.warning("something to know")
        monkeypatch.setenv("NIP_LOG_LEVEL", "info")
        configure_logging()
        torchrl_logger.info("now shown")
    finally:
        logging.getLogger().removeHandler(keep)
    assert [r.getMessage() for r in records] == ["something to know", "now shown"]
    out, _ = capsys.readouterr()
    assert "\x1b[" not in out


def test_a_library_imported_later_is_adopted_only_under_the_nip_command(
    monkeypatch,
):
    import logging

    from nip_core import logs

    library = logging.getLogger("nip_test_late_library")
    own = logging.StreamHandler()
    library.addHandler(own)
    library.propagate = False
    try:
        # nip used as a library: its caller's logging is left alone
        monkeypatch.setattr(logs, "_library_level", None)
        logs.adopt_library_loggers("nip_test_late_library")
        assert library.handlers == [own] and not library.propagate
        # under the command: through nip's handler, at the libraries' level
        monkeypatch.setattr(logs, "_library_level", logging.ERROR)
        logs.adopt_library_loggers("nip_test_late_library")
        assert library.handlers == [] and library.propagate
        assert library.level == logging.ERROR
    finally:
        library.handlers[:] = []
        library.propagate = True
        library.setLevel(logging.NOTSET)


def test_the_installed_openai_clients_http_library_is_quietened():
    # openai 1-2 run on httpx, openai 3 on httpx2: whichever is installed, its
    # logger (one line per request at INFO) must be among those nip quietens
    import openai

    from nip_core.cli.main import THIRD_PARTY_LOGGERS

    client = openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")
    http_modules = {
        cls.__module__.split(".")[0]
        for cls in type(client._client).__mro__
        if not cls.__module__.startswith(("openai", "builtins"))
    }
    assert http_modules, "the client's HTTP library was not found"
    assert http_modules <= set(THIRD_PARTY_LOGGERS)


@pytest.mark.parametrize("name", ["httpx", "httpx2"])
def test_the_http_client_logs_no_request_lines_by_default(monkeypatch, name):
    import logging

    from nip_core.cli.main import configure_logging

    httpx_logger = logging.getLogger(name)
    state = (httpx_logger.level, httpx_logger.propagate)
    monkeypatch.delenv("NIP_LOG_LEVEL", raising=False)
    try:
        configure_logging()
        # what httpx writes for every request of the OpenAI-compatible backend
        assert not httpx_logger.isEnabledFor(logging.INFO)
        assert httpx_logger.isEnabledFor(logging.WARNING)
        monkeypatch.setenv("NIP_LOG_LEVEL", "INFO")
        configure_logging()
        assert httpx_logger.isEnabledFor(logging.INFO)
    finally:
        httpx_logger.setLevel(state[0])
        httpx_logger.propagate = state[1]


def test_a_missing_hydra_launcher_names_its_package(toy_plugin, capsys):
    # (the submitit and Ray launchers are extras the test environment installs)
    status = main(["run", "-m", "-c", "toy/exp", "hydra/launcher=rq"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "hydra/launcher/rq is not installed" in err
    assert "pip install 'hydra-rq-launcher'" in err
    assert "Traceback" not in err
    from nip_core.cli.compose import HYDRA_PLUGIN_PACKAGES

    assert HYDRA_PLUGIN_PACKAGES["hydra/launcher/joblib"] == "nip-core[joblib]"
    assert HYDRA_PLUGIN_PACKAGES["hydra/launcher/submitit_slurm"] == (
        "nip-core[submitit]"
    )


def test_run_refuses_what_the_scenarios_check_finds(toy_plugin, recorded_runs, capsys):
    status = main(["run", "-c", "toy/exp", "toy_section.depth=10"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "toy_section.depth: at most 9 for dataset 'small'" in err
    assert recorded_runs == []


def test_a_resumed_runs_summary_reads_the_whole_run(tmp_path, capsys):
    """A resumed process logged only its own records; the summary is the run's."""
    import json
    import types

    from nip_core.cli.run_cmd import _report_finished

    records = [
        {"step": 0, "mean_accuracy": 0.5, "verifier.mean_episode_reward": -0.5},
        {"step": 1, "mean_accuracy": 0.75, "verifier.mean_episode_reward": 0.25},
        {"step": 1, "timing.elapsed_s": 90.0},
    ]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records)
    )
    result = types.SimpleNamespace(
        run_id="r", run_dir=tmp_path, metrics=[{"step": 1, "timing.elapsed_s": 90.0}]
    )
    _report_finished(result)
    err = capsys.readouterr().err
    assert "verifier accuracy: train 0.750" in err
    assert "mean episode reward: verifier +0.250" in err


def test_a_job_below_the_nip_process_ends_once_sigterm_has_marked_its_run(
    monkeypatch,
):
    """A job process below the ``nip`` process (joblib's worker) ends once SIGTERM
    has stopped its run, so the ``nip`` process, waiting for it, need not wait out
    its timeout. The run raises :class:`RunInterrupted`, caused by
    :class:`Terminated`: the job must see the SIGTERM through it."""
    import os

    import nip_core.experiment
    from nip_core.cli import compose, run_cmd
    from nip_core.errors import RunInterrupted
    from nip_core.runs.interrupts import Terminated

    def stopped_by_sigterm(hyper_params, settings):
        # what run_experiment raises once the run is marked killed
        try:
            raise Terminated("SIGTERM")
        except Terminated as error:
            raise RunInterrupted("run-1", "runs", 3) from error

    monkeypatch.setattr(nip_core.experiment, "run_experiment", stopped_by_sigterm)
    monkeypatch.setattr(compose, "build_experiment", lambda data: (None, None))
    monkeypatch.setattr(
        run_cmd.SweepJob, "_assign_run", lambda self, hp, settings: (settings, None)
    )
    exits: list[int] = []

    def exit_process(status: int) -> None:
        exits.append(status)
        raise SystemExit(status)

    monkeypatch.setattr(run_cmd, "_exit_process", exit_process)
    # this process stands for the job, its parent for the nip process
    job = run_cmd.SweepJob(launching_pid=os.getppid())
    with pytest.raises(SystemExit):
        job({})
    assert exits == [run_cmd.EXIT_TERMINATED]
    # Ctrl-C (not SIGTERM): the outcome goes back to the launcher
    monkeypatch.setattr(
        nip_core.experiment,
        "run_experiment",
        lambda hp, settings: (_ for _ in ()).throw(RunInterrupted("run-1", "runs", 3)),
    )
    outcome = job({})
    assert outcome.interrupted and exits == [run_cmd.EXIT_TERMINATED]


def test_a_job_on_another_machine_is_not_taken_for_the_nip_process(monkeypatch):
    """Remote launchers (Slurm, Ray) run jobs on other machines, where a process
    may have the ``nip`` process's PID, or a parent with it: the machine tells
    them apart. Such a job stopped by Ctrl-C reports back, and one stopped by
    SIGTERM is not ended at once as a local job below ``nip`` is."""
    import nip_core.experiment
    from nip_core.cli import compose, run_cmd
    from nip_core.errors import RunInterrupted
    from nip_core.runs.interrupts import Terminated

    def interrupted(hyper_params, settings):
        raise RunInterrupted("run-1", "runs", 3)

    def stopped_by_sigterm(hyper_params, settings):
        try:
            raise Terminated("SIGTERM")
        except Terminated as error:
            raise RunInterrupted("run-1", "runs", 3) from error

    monkeypatch.setattr(compose, "build_experiment", lambda data: (None, None))
    monkeypatch.setattr(
        run_cmd.SweepJob, "_assign_run", lambda self, hp, settings: (settings, None)
    )
    monkeypatch.setattr(
        run_cmd, "_exit_process", lambda status: pytest.fail("ended at once")
    )
    elsewhere = "another-host-" + socket.gethostname()
    # the same PID as this process, on another machine
    job = run_cmd.SweepJob(launching_pid=os.getpid(), launching_host=elsewhere)
    monkeypatch.setattr(nip_core.experiment, "run_experiment", interrupted)
    assert job({}).interrupted
    # a parent with the nip process's PID, on another machine
    job = run_cmd.SweepJob(launching_pid=os.getppid(), launching_host=elsewhere)
    monkeypatch.setattr(nip_core.experiment, "run_experiment", stopped_by_sigterm)
    assert job({}).interrupted
    # on this machine, the nip process itself lets the interrupt through
    job = run_cmd.SweepJob(launching_pid=os.getpid())
    monkeypatch.setattr(nip_core.experiment, "run_experiment", interrupted)
    with pytest.raises(RunInterrupted):
        job({})


def test_a_job_process_ended_at_once_leaves_no_temporary_directory(tmp_path):
    """``os._exit`` runs no finaliser: a killed sweep job's temporary directories
    (W&B makes two on import) were left behind."""
    import subprocess

    script = (
        "import tempfile\n"
        "from nip_core.cli import run_cmd\n"
        "kept = tempfile.TemporaryDirectory('wandb-media')\n"
        "open(kept.name + '/x', 'w').write('x')\n"
        "run_cmd._exit_process(143)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 143, done.stderr
    assert list(tmp_path.iterdir()) == []
