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
    # an unknown scenario named on the command line: a usage error
    assert main(["datasets", "generate", "chess", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset builder 'chess'. Known dataset builders: toy." in err
    assert builder_calls == []


def test_list_shows_datasets_and_builders(toy_plugin, builder_calls, tmp_path, capsys):
    (tmp_path / "data" / "toy" / "made_earlier").mkdir(parents=True)
    (tmp_path / "data" / "toy" / "made_earlier" / "train.npz").write_bytes(b"")
    # the caches of runs on one's own data (dataset=./mine) are not a dataset
    (tmp_path / "data" / "toy" / "own" / "mine-0123abcd").mkdir(parents=True)
    # nor the processed-data caches of runs on a dataset the scenario ships
    (tmp_path / "data" / "toy" / "small" / "processed" / "train-0123").mkdir(
        parents=True
    )
    assert main(["datasets", "list", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "toy (toy)" in out
    assert "default dataset: small" in out
    assert "on disk:         made_earlier\n" in out
    assert "nip datasets generate toy NAME [--num-pairs INT]" in out
    assert Path(tmp_path / "data").as_posix() in out


def test_a_generated_dataset_is_used_by_name(
    toy_plugin, builder_calls, recorded_runs, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "data"))
    # not a named dataset of the scenario, and not there yet
    assert main(["run", "-c", "toy/exp", "dataset=mine"]) == 2
    err = capsys.readouterr().err
    assert "dataset: unknown dataset of scenario 'toy'" in err
    assert "nip datasets generate toy mine" in err

    assert main(["datasets", "generate", "toy", "mine"]) == 0
    assert "use it with dataset=mine" in capsys.readouterr().out
    assert main(["datasets", "list"]) == 0
    assert "on disk:         mine" in capsys.readouterr().out
    assert main(["run", "-c", "toy/exp", "dataset=mine"]) == 0
    [(hyper_params, _)] = recorded_runs
    assert hyper_params.dataset == "mine"


def test_a_dataset_in_the_runs_data_dir_is_used_by_name(
    toy_plugin, builder_calls, recorded_runs, tmp_path, capsys
):
    elsewhere = tmp_path / "elsewhere"
    args = ["datasets", "generate", "toy", "mine", "--data-dir", str(elsewhere)]
    assert main(args) == 0
    # the command it suggests finds it: the name alone would look in the default
    # data directory
    assert (
        f"use it with dataset=mine run.data_dir={elsewhere}" in capsys.readouterr().out
    )
    assert (
        main(["run", "-c", "toy/exp", "dataset=mine", f"run.data_dir={elsewhere}"]) == 0
    )
    assert recorded_runs[0][0].dataset == "mine"


def test_regenerating_a_dataset_asks_for_overwrite(
    toy_plugin, builder_calls, tmp_path, capsys
):
    data = str(tmp_path / "data")
    assert main(["datasets", "generate", "toy", "mine", "--data-dir", data]) == 0
    marker = tmp_path / "data" / "toy" / "mine" / "first"
    marker.write_text("the first one")
    capsys.readouterr()

    assert main(["datasets", "generate", "toy", "mine", "--data-dir", data]) == 2
    err = capsys.readouterr().err
    assert "nip: error: the toy dataset 'mine' already exists" in err
    assert "pass --overwrite to replace it" in err
    assert marker.is_file() and len(builder_calls) == 1

    args = ["datasets", "generate", "toy", "mine", "--data-dir", data, "--overwrite"]
    assert main(args) == 0
    assert not marker.exists()
    assert (tmp_path / "data" / "toy" / "mine").is_dir()
    assert len(builder_calls) == 2


def test_a_directory_of_caches_only_is_replaced_without_overwrite(
    toy_plugin, builder_calls, tmp_path, capsys
):
    """Runs on a dataset the scenario ships leave only its processed-data caches
    in the data directory: generating a dataset of that name is not refused as
    already existing, and the stale caches go with the directory."""
    data = tmp_path / "data"
    cache = data / "toy" / "small" / "processed" / "train-0123"
    cache.mkdir(parents=True)
    args = ["datasets", "generate", "toy", "small", "--data-dir", str(data)]
    assert main(args) == 0
    assert len(builder_calls) == 1
    assert not cache.exists()


def test_own_is_not_a_dataset_name(toy_plugin, builder_calls, tmp_path, capsys):
    data = str(tmp_path / "data")
    assert main(["datasets", "generate", "toy", "own", "--data-dir", data]) == 2
    err = capsys.readouterr().err
    assert "'own' is where toy's own-data caches live" in err
    assert not builder_calls


def test_a_failed_overwrite_keeps_the_old_dataset(
    toy_plugin, builder_calls, tmp_path, monkeypatch, capsys
):
    import attrs

    from nip_core.cli import datasets_cmd

    data = str(tmp_path / "data")
    assert main(["datasets", "generate", "toy", "mine", "--data-dir", data]) == 0
    marker = tmp_path / "data" / "toy" / "mine" / "first"
    marker.write_text("the first one")

    def failing(name, data_dir, **options):
        (data_dir / "toy" / name).mkdir(parents=True)
        raise RuntimeError("generation failed half way")

    spec = attrs.evolve(datasets_cmd._builder_spec("toy"), builder=failing)
    monkeypatch.setattr(datasets_cmd, "_builder_spec", lambda scenario: spec)
    args = ["datasets", "generate", "toy", "mine", "--data-dir", data, "--overwrite"]
    with pytest.raises(RuntimeError, match="half way"):
        main(args)
    assert marker.read_text() == "the first one"
    assert not (tmp_path / "data" / "toy" / ".mine.replaced").exists()


@pytest.mark.parametrize("name", ["a/b", "..", ""])
def test_a_dataset_name_is_a_plain_name(toy_plugin, builder_calls, name, capsys):
    # a usage error: exit 2
    assert main(["datasets", "generate", "toy", name]) == 2
    assert "a dataset name is a plain directory name (used as dataset=NAME" in (
        capsys.readouterr().err
    )
    assert builder_calls == []


def test_the_suggested_command_quotes_a_data_dir_with_spaces(
    toy_plugin, builder_calls, recorded_runs, tmp_path, capsys
):
    import shlex

    elsewhere = tmp_path / "my data"
    args = ["datasets", "generate", "toy", "mine", "--data-dir", str(elsewhere)]
    assert main(args) == 0
    out = capsys.readouterr().out
    suggested = out.split("use it with ", 1)[1].strip()
    assert suggested == f"dataset=mine 'run.data_dir={elsewhere}'"
    # pasted into a shell, it is two arguments that find the dataset
    assert main(["run", "-c", "toy/exp", *shlex.split(suggested)]) == 0
    assert recorded_runs[0][0].dataset == "mine"


def test_a_dataset_named_like_a_provided_one_warns(
    toy_plugin, builder_calls, tmp_path, capsys
):
    data = str(tmp_path / "data")
    assert main(["datasets", "generate", "toy", "large", "--data-dir", data]) == 0
    out = capsys.readouterr().out
    assert (
        "nip: warning: 'large' is also the name of a dataset the toy scenario "
        f"provides; runs with this data directory ({data}) now use the one just "
        "written instead"
    ) in out
    assert main(["datasets", "generate", "toy", "other", "--data-dir", data]) == 0
    assert "warning" not in capsys.readouterr().out
