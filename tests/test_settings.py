"""The default data and cache directories, and every place that uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nip_core.settings import (
    ExperimentSettings,
    cache_dir_or_default,
    data_dir_or_default,
    default_cache_dir,
    default_data_dir,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory with neither variable set."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NIP_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return tmp_path / "home"


def test_defaults_without_variables_are_under_the_home_cache(home: Path) -> None:
    assert default_cache_dir() == home / ".cache" / "nip"
    assert default_data_dir() == home / ".cache" / "nip" / "data"


def test_nip_data_dir_names_the_data_directory(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "datasets"))
    assert default_data_dir() == tmp_path / "datasets"
    # it does not move the cache
    assert default_cache_dir() == home / ".cache" / "nip"
    monkeypatch.setenv("NIP_DATA_DIR", "~/elsewhere")
    assert default_data_dir() == home / "elsewhere"
    # set but empty counts as unset
    monkeypatch.setenv("NIP_DATA_DIR", "")
    assert default_data_dir() == home / ".cache" / "nip" / "data"


def test_xdg_cache_home_moves_both_defaults(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "nip"
    assert default_data_dir() == tmp_path / "xdg" / "nip" / "data"
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "datasets"))
    assert default_data_dir() == tmp_path / "datasets"


def test_a_configured_directory_wins_and_is_user_expanded(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "datasets"))
    assert data_dir_or_default("~/mine") == home / "mine"
    assert data_dir_or_default(tmp_path / "d") == tmp_path / "d"
    assert data_dir_or_default(None) == tmp_path / "datasets"
    assert data_dir_or_default("") == tmp_path / "datasets"
    assert cache_dir_or_default("~/c") == home / "c"
    assert cache_dir_or_default(None) == home / ".cache" / "nip"


def test_runs_and_the_cli_use_the_same_data_directory(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    synthetic_scenario,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nip_core.cli.main import main
    from nip_core.scenario.data import resolve_data_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = tmp_path / "xdg" / "nip" / "data"
    assert resolve_data_dir(ExperimentSettings()) == expected
    assert main(["datasets", "list"]) == 0
    assert f"data directory: {expected}\n" in capsys.readouterr().out
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "datasets"))
    assert resolve_data_dir(ExperimentSettings()) == tmp_path / "datasets"
    assert main(["datasets", "list"]) == 0
    assert f"data directory: {tmp_path / 'datasets'}\n" in capsys.readouterr().out
    configured = ExperimentSettings(data_dir=str(tmp_path / "run_data"))
    assert resolve_data_dir(configured) == tmp_path / "run_data"


def test_caches_use_the_default_cache_directory(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthetic_scenario
) -> None:
    from nip_core.trainers.pretraining import pretraining_cache_path

    hyper_params = synthetic_scenario.hyper_params()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = pretraining_cache_path(hyper_params, ExperimentSettings())
    assert path.parent == tmp_path / "xdg" / "nip" / "pretrained_bodies"
    configured = ExperimentSettings(cache_dir=str(tmp_path / "cache"))
    path = pretraining_cache_path(hyper_params, configured)
    assert path.parent == tmp_path / "cache" / "pretrained_bodies"


# --------------------------------------------------------------------------------------
# Devices and loggers are checked with the rest of the config


def test_a_device_is_a_name_torch_knows() -> None:
    from nip_core.errors import NipConfigError

    for good in ("cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        assert ExperimentSettings(device=good).device == good
    for bad, hint in ((5, "expected a string"), ("gpu", "'cuda'"), ("GPU:1", "cuda:1")):
        with pytest.raises(NipConfigError) as info:
            ExperimentSettings.from_dict({"device": bad})
        [problem] = info.value.problems
        assert problem.path == "run.device"
        assert hint in problem.format()
        assert "cuda:<index>" in problem.choices


def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synthetic_scenario
) -> None:
    import torch

    from nip_core.errors import NipConfigError
    from nip_core.experiment import run_experiment
    from nip_core.settings import device_problems

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    [problem] = device_problems("cuda")
    assert problem.path == "run.device"
    assert "CUDA is not available" in problem.message
    assert problem.choices == ("cpu",)

    settings = synthetic_scenario.settings(device="cuda", run_id="gpu-run")
    with pytest.raises(NipConfigError, match="run.device"):
        run_experiment(synthetic_scenario.hyper_params(), settings)
    assert not (Path(settings.runs_dir) / "gpu-run").exists()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_problems("cuda:1") == []
    [problem] = device_problems("cuda:2")
    assert "2 CUDA GPUs (indices 0 to 1)" in problem.message
    assert problem.choices == ("cpu", "cuda", "cuda:0", "cuda:1")


def test_config_show_refuses_a_device_this_machine_lacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys, synthetic_scenario
) -> None:
    import torch

    from nip_core.cli.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /base\n  - _self_\n"
        "scenario: synthetic\ntrainer: reinforce\ndataset: tiny\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["config", "show", "-c", "exp", "run.device=cuda"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("nip: error: invalid configuration: 1 problem")
    assert "run.device: CUDA is not available on this machine" in err
    # validating a file checks names only: it may be meant for another machine
    (configs / "gpu.yaml").write_text(
        "# @package _global_\ndefaults:\n  - exp\n  - _self_\nrun:\n  device: cuda\n"
    )
    assert main(["config", "validate", str(configs / "gpu.yaml")]) == 0


def test_logger_names_and_their_packages_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from nip_core.errors import NipConfigError

    with pytest.raises(NipConfigError) as info:
        ExperimentSettings.from_dict({"loggers": ["jsonl", "tensorbord", "nope"]})
    first, second = info.value.problems
    assert first.path == "run.loggers[1]"
    assert "did you mean 'tensorboard'?" in first.message
    assert second.path == "run.loggers[2]"
    assert {"jsonl", "csv", "tensorboard", "wandb"} <= set(second.choices)

    real_find_spec = importlib.util.find_spec

    def without_tensorboard(name, *args, **kwargs):
        if name == "tensorboard":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_tensorboard)
    with pytest.raises(NipConfigError) as info:
        ExperimentSettings.from_dict({"loggers": "tensorboard"})
    [problem] = info.value.problems
    assert problem.path == "run.loggers[0]"
    assert "pip install 'nip-core[tensorboard]'" in problem.message
