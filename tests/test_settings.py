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
