"""`nip datasets generate` dispatches to the registered builder with typed options."""

from __future__ import annotations

from pathlib import Path

import pytest

from nip_core.cli.main import main


def test_generate_passes_typed_options(toy_plugin, builder_calls, tmp_path, capsys):
    status = main(
        [
            "datasets",
            "generate",
            "toy",
            "tiny",
            "--num-pairs",
            "3",
            "--edge-probability",
            "0.25",
            "--no-balanced",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    out, _ = capsys.readouterr()
    assert status == 0
    [(name, data_dir, options)] = builder_calls
    assert name == "tiny"
    assert data_dir == tmp_path / "data"
    # defaults of options not given are passed; options without a default are not
    assert options == {"num_pairs": 3, "edge_probability": 0.25, "balanced": False}
    assert type(options["num_pairs"]) is int
    assert str(tmp_path / "data" / "toy" / "tiny") in out


def test_generate_uses_defaults_and_the_data_dir_variable(
    toy_plugin, builder_calls, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "env_data"))
    assert main(["datasets", "generate", "toy", "other", "--label", "x"]) == 0
    [(_, data_dir, options)] = builder_calls
    assert data_dir == tmp_path / "env_data"
    assert options == {"num_pairs": 10, "edge_probability": 0.5, "label": "x"}


def test_generate_rejects_an_option_of_the_wrong_type(
    toy_plugin, builder_calls, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        main(["datasets", "generate", "toy", "tiny", "--num-pairs", "many"])
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err
    assert builder_calls == []


def test_generate_help_lists_the_builder_options(toy_plugin, builder_calls, capsys):
    with pytest.raises(SystemExit):
        main(["datasets", "generate", "toy", "tiny", "--help"])
    out = capsys.readouterr().out
    assert "--num-pairs NUM_PAIRS" in out
    assert "--balanced, --no-balanced" in out


def test_generate_for_a_scenario_without_builder(toy_plugin, builder_calls, capsys):
    assert main(["datasets", "generate", "chess", "x"]) == 1
    err = capsys.readouterr().err
    assert "chess" in err and "toy" in err
    assert builder_calls == []


def test_list_shows_datasets_and_builders(toy_plugin, builder_calls, tmp_path, capsys):
    (tmp_path / "data" / "toy" / "made_earlier").mkdir(parents=True)
    assert main(["datasets", "list", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "toy (toy)" in out
    assert "default dataset: small" in out
    assert "on disk:         made_earlier" in out
    assert "nip datasets generate toy NAME [--num-pairs INT]" in out
    assert Path(tmp_path / "data").as_posix() in out
