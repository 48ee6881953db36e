"""`nip config show` and `nip config validate` over a plugin's config directory."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import attrs
import pytest
import yaml

from nip_core.builtin.configs import CORE_CONFIG_DIR
from nip_core.cli import compose
from nip_core.cli.main import main
from nip_core.parameters import ParameterMigrationWarning
from nip_core.settings import ExperimentSettings


def show(capsys, *argv: str) -> tuple[int, dict | None, str]:
    status = main(["config", "show", *argv])
    out, err = capsys.readouterr()
    assert status == 0 or not out, out
    return status, (yaml.safe_load(out) if status == 0 else None), err


def test_show_prints_the_validated_config(toy_plugin, capsys):
    status, config, _ = show(capsys, "--config-name", "toy/exp")
    assert status == 0
    assert config["scenario"] == "toy"
    assert config["trainer"] == "toy_trainer"
    assert config["dataset"] == "small"
    assert config["seed"] == 3
    # the section as given, completed with its defaults by validation
    assert config["toy_section"] == {"depth": 2, "mode": "fast"}
    # the run settings from the core's base config, complete
    assert config["run"] == ExperimentSettings().to_dict()
    assert "hydra" not in config


def test_show_without_name_uses_the_default_config(toy_plugin, capsys):
    status, config, _ = show(capsys)
    assert status == 0
    assert config["scenario"] == "toy"
    assert config["toy_section"]["depth"] == 2


def test_overrides_change_values_and_pick_variants(toy_plugin, capsys):
    status, config, err = show(
        capsys,
        "-c",
        "toy/exp",
        "seed=11",
        "toy_section.depth=5",
        "toy/dataset=large",
        "run.device=cpu",
        "run.loggers=[jsonl,csv]",
    )
    assert status == 0, err
    assert config["seed"] == 11
    assert config["dataset"] == "large"
    assert config["toy_section"] == {"depth": 5, "mode": "slow"}
    assert config["run"]["device"] == "cpu"
    assert config["run"]["loggers"] == ["jsonl", "csv"]


def test_three_mistakes_are_reported_together_with_paths(toy_plugin, capsys):
    status = main(
        [
            "config",
            "show",
            "-c",
            "toy/exp",
            "toy_section.depth=0",
            "toy_section.colour=red",
            "+run.devise=cpu",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert "3 problems" in err
    for path in ("toy_section.depth", "toy_section.colour", "run.devise"):
        assert f"- {path}" in err
    assert "Traceback" not in err


def test_debug_shows_the_traceback(toy_plugin, capsys):
    status = main(["--debug", "config", "show", "-c", "toy/exp", "toy_section.depth=0"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "Traceback" in err
    assert "toy_section.depth" in err


def test_unknown_config_name_is_a_config_error(toy_plugin, capsys):
    status = main(["config", "show", "-c", "toy/nope"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "toy/nope" in err
    assert "Traceback" not in err
    assert "no config named 'toy/nope'" in err
    # the configs of that group are listed, a near miss suggested
    assert "configs in toy/: toy/exp" in err
    status = main(["config", "show", "-c", "toy/exq"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "did you mean 'toy/exp'?" in err
    status = main(["run", "-c", "defualt"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "did you mean 'default'?" in err and "top-level configs: " in err


def test_bad_override_syntax_is_a_config_error(toy_plugin, capsys):
    status = main(["config", "show", "-c", "toy/exp", "seed=[1,"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "cannot parse the override 'seed=[1,'" in err


def test_unset_mandatory_values_are_all_listed(toy_plugin, write_configs, capsys):
    write_configs(
        toy_plugin.config_dir,
        {
            "toy/incomplete.yaml": """
                # @package _global_
                defaults:
                  - /base
                  - _self_
                scenario: toy
                trainer: toy_trainer
                seed: ???
                toy_section:
                  depth: ???
                """
        },
    )
    status = main(["config", "show", "-c", "toy/incomplete"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "- seed: mandatory value not set" in err
    assert "- toy_section.depth: mandatory value not set" in err


def test_missing_package_header_gets_a_hint(toy_plugin, write_configs, capsys):
    write_configs(
        toy_plugin.config_dir,
        {
            "toy/headless.yaml": """
                defaults:
                  - /base
                  - _self_
                scenario: toy
                """
        },
    )
    status = main(["config", "show", "-c", "toy/headless"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "# @package _global_" in err


def test_user_configs_shadow_plugin_configs_which_shadow_the_core(
    toy_plugin, write_configs, capsys
):
    # ./configs/toy/exp.yaml shadows the plugin's; the plugin's base shadows the core's
    write_configs(
        Path.cwd() / "configs",
        {
            "toy/exp.yaml": """
                # @package _global_
                defaults:
                  - /base
                  - _self_
                scenario: toy
                trainer: toy_trainer
                seed: 99
                """
        },
    )
    write_configs(
        toy_plugin.config_dir,
        {
            "base.yaml": """
                # @package _global_
                run:
                  runs_dir: plugin_runs
                """
        },
    )
    status, config, _ = show(capsys, "-c", "toy/exp")
    assert status == 0
    assert config["seed"] == 99
    assert config["run"]["runs_dir"] == "plugin_runs"


def test_search_order(toy_plugin):
    (Path.cwd() / "configs").mkdir()
    dirs = compose.config_search_dirs()
    assert [d.origin for d in dirs] == ["./configs", "toy", "nip-core"]
    assert dirs[0].path == (Path.cwd() / "configs").resolve()
    assert dirs[-1].path == CORE_CONFIG_DIR


def test_core_base_config_matches_the_settings_defaults():
    base = yaml.safe_load((CORE_CONFIG_DIR / "base.yaml").read_text())
    fields = {f.name for f in attrs.fields(ExperimentSettings)}
    assert set(base["run"]) == fields
    assert ExperimentSettings.from_dict(base["run"]) == ExperimentSettings()


def test_validate_a_shown_config_and_a_composed_file(
    toy_plugin, write_configs, capsys, tmp_path
):
    status, config, _ = show(capsys, "-c", "toy/exp", "seed=4")
    assert status == 0
    shown = tmp_path / "shown.yaml"
    shown.write_text(yaml.safe_dump(config))
    assert main(["config", "validate", str(shown)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"{shown}: valid (scenario toy, trainer toy_trainer")

    # a file with a defaults list is composed, its own directory searched first
    mine = write_configs(
        tmp_path / "mine",
        {
            "exp.yaml": """
                defaults:
                  - toy/exp
                  - override /toy/dataset: large
                  - _self_
                seed: 8
                """
        },
    )
    assert main(["config", "validate", str(mine / "exp.yaml")]) == 0
    out, _ = capsys.readouterr()
    assert "valid" in out and "dataset large" in out


def test_validate_reports_problems_of_a_file(toy_plugin, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: toy\ntrainer: toy_trainer\ntoy_section: {mode: medium}\n")
    assert main(["config", "validate", str(bad)]) == 2
    _, err = capsys.readouterr()
    assert "toy_section.mode" in err

    assert main(["config", "validate", str(tmp_path / "absent.yaml")]) == 2
    _, err = capsys.readouterr()
    assert "no such file" in err

    # a damaged hyper_params.json is JSON, and a directory is no file
    damaged = tmp_path / "hyper_params.json"
    damaged.write_text('{"seed": ')
    assert main(["config", "validate", str(damaged)]) == 2
    _, err = capsys.readouterr()
    assert f"{damaged} is not valid JSON: Expecting value" in err
    assert "YAML" not in err
    assert main(["config", "validate", str(tmp_path)]) == 2
    _, err = capsys.readouterr()
    assert f"{tmp_path} is a directory; name a config file" in err
    # a file saved in another encoding than UTF-8 (a Latin-1 comment)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"# caf\xe9 config\nseed: 3\n")
    assert main(["config", "validate", str(latin)]) == 2
    _, err = capsys.readouterr()
    assert f"cannot read the config {latin}: 'utf-8' codec can't decode" in err
    assert "(save it as UTF-8)" in err and "Traceback" not in err


def test_plain_override_sets_a_key_the_yaml_does_not_hold(toy_plugin, capsys):
    # toy/exp.yaml gives no toy_section.mode: the parameter class is the schema
    status, config, err = show(capsys, "-c", "toy/exp", "toy_section.mode=slow")
    assert status == 0, err
    assert config["toy_section"] == {"depth": 2, "mode": "slow"}
    # a misspelt key is still refused, by validation rather than by Hydra
    status = main(["config", "show", "-c", "toy/exp", "toy_section.mdoe=slow"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "toy_section.mdoe" in err and "mode" in err


def test_raw_shows_the_composed_config_without_validating(toy_plugin, capsys):
    status, config, _ = show(capsys, "--raw", "-c", "toy/exp", "toy_section.depth=0")
    assert status == 0
    assert config["toy_section"] == {"depth": 0}
    assert config["run"]["runs_dir"] == "runs"


def test_the_testing_helpers_compose_as_the_command_line_does(toy_plugin):
    from nip_core.errors import NipConfigError
    from nip_core.testing.configs import (
        compose_config,
        compose_experiment,
        compose_experiments,
        config_names,
    )

    hyper_params, settings = compose_experiment("toy/exp", "seed=4")
    assert (hyper_params.scenario, hyper_params.seed) == ("toy", 4)
    assert settings == ExperimentSettings()
    assert compose_config("toy/exp", "toy/dataset=large")["dataset"] == "large"
    both = compose_experiments(["toy/exp", "default"])
    assert both["toy/exp"][0] == both["default"][0]
    assert config_names(toy_plugin.config_dir, "toy") == ["toy/exp"]
    with pytest.raises(NipConfigError, match="toy_section.depth"):
        compose_experiment("toy/exp", "toy_section.depth=0")


def test_show_prints_what_the_run_uses_and_all_prints_everything(toy_plugin, capsys):
    status, config, _ = show(capsys, "-c", "toy/exp")
    assert status == 0
    out_lines = main(["config", "show", "-c", "toy/exp"]), capsys.readouterr().out
    # the core's protocol sections of a protocol the run does not use are hidden,
    # with a note saying so
    assert "mnip_protocol" not in config and "debate_protocol" not in config
    assert "nip_protocol" in config and "protocol_common" in config
    assert "`nip config show --all` shows them" in out_lines[1]
    # a section set to other values than its defaults is always shown
    status, config, _ = show(capsys, "-c", "toy/exp", "mnip_protocol.sequential=true")
    assert config["mnip_protocol"]["sequential"] is True
    status, everything, _ = show(capsys, "-c", "toy/exp", "--all")
    assert {"mnip_protocol", "debate_protocol", "base_run"} <= set(everything)
    assert set(config) < set(everything)


def test_the_original_librarys_names_are_an_error_on_the_command_line(
    toy_plugin, capsys
):
    """A config written today with an old name is a mistake, not a saved dict of the
    original library to convert (with warnings about "saved parameters")."""
    status = main(["config", "show", "-c", "toy/exp", "interaction_protocol=pvg"])
    out, err = capsys.readouterr()
    assert status == 2 and not out
    assert "interaction_protocol: the original library's name for 'nip'" in err
    assert "(got 'pvg')" in err
    assert "saved parameters" not in err

    status = main(
        ["config", "show", "-c", "toy/exp", "++pvg_protocol.max_message_rounds=3"]
    )
    _, err = capsys.readouterr()
    assert status == 2
    assert "pvg_protocol: the original library's name; use 'nip_protocol'" in err

    status = main(
        [
            "config",
            "show",
            "-c",
            "toy/exp",
            "interaction_protocol=abstract_decision_problem",
        ]
    )
    _, err = capsys.readouterr()
    assert status == 2
    assert "the original library's name for 'adp'; use 'adp'" in err


def test_validate_converts_a_saved_json_dict_but_not_a_yaml_config(
    toy_plugin, capsys, tmp_path
):
    legacy = {
        "scenario": "toy",
        "trainer": "toy_trainer",
        "interaction_protocol": "pvg",
    }
    saved = tmp_path / "hyper_params.json"
    saved.write_text(json.dumps(legacy))
    with pytest.warns(ParameterMigrationWarning, match="'pvg' renamed to 'nip'"):
        assert main(["config", "validate", str(saved)]) == 0
    out, _ = capsys.readouterr()
    assert "valid" in out and "interaction_protocol nip" in out

    written = tmp_path / "config.yaml"
    written.write_text(yaml.safe_dump(legacy))
    assert main(["config", "validate", str(written)]) == 2
    _, err = capsys.readouterr()
    assert "interaction_protocol: the original library's name for 'nip'" in err


def test_the_scenarios_own_check_runs_before_anything(toy_plugin, capsys):
    """ScenarioSpec.config_problems: settings that do not fit the chosen dataset."""
    status = main(["config", "show", "-c", "toy/exp", "toy_section.depth=10"])
    _, err = capsys.readouterr()
    assert status == 2
    assert "toy_section.depth: at most 9 for dataset 'small' (got 10)" in err
    status, config, err = show(
        capsys, "-c", "toy/exp", "toy_section.depth=10", "toy/dataset=large"
    )
    assert status == 0, err
    assert config["toy_section"]["depth"] == 10


def test_a_top_level_group_appended_to_a_config_in_a_folder(
    toy_plugin, write_configs, capsys
):
    # Hydra looks `+group=option` up beside a primary config in a folder
    # (toy/toy_variant/deep); nip looks it up from the top, as everywhere else
    write_configs(
        toy_plugin.config_dir,
        {
            "toy_variant/deep.yaml": """
                # @package toy_section
                depth: 9
                """
        },
    )
    status, config, err = show(capsys, "-c", "toy/exp", "+toy_variant=deep")
    assert status == 0, err
    assert config["toy_section"]["depth"] == 9
    assert config["scenario"] == "toy"
    # the rest of the config is the same as without it
    status, plain, err = show(capsys, "-c", "toy/exp")
    assert status == 0, err
    assert {k: v for k, v in config.items() if k != "toy_section"} == {
        k: v for k, v in plain.items() if k != "toy_section"
    }
    # a group in the config's own folder is still found there
    status, config, err = show(capsys, "-c", "toy/exp", "toy/dataset=large")
    assert status == 0, err
    assert config["dataset"] == "large"


def test_validate_a_named_config_with_overrides(toy_plugin, capsys):
    status = main(["config", "validate", "-c", "toy/exp", "toy/dataset=large"])
    out, _ = capsys.readouterr()
    assert status == 0
    assert out == (
        "config toy/exp toy/dataset=large: valid (scenario toy, trainer toy_trainer, "
        "interaction_protocol nip, dataset large)\n"
    )
    # a bad value: the problem with its dotted path, exit status 2
    assert main(["config", "validate", "-c", "toy/exp", "toy_section.mode=medium"]) == 2
    _, err = capsys.readouterr()
    assert "toy_section.mode" in err and "medium" in err
    # without -c: exactly one file
    assert main(["config", "validate"]) == 2
    _, err = capsys.readouterr()
    assert "takes one FILE, or --config-name NAME and overrides" in err


def test_validate_gives_the_warnings_a_run_would(toy_plugin, capsys):
    """Rounds the verifier can never read: nip run warns before it starts, so
    nip config validate says it too (the config is still valid)."""
    from nip_core.protocols.handler import ProtocolWarning

    with pytest.warns(ProtocolWarning, match="round 7 of max_message_rounds=8"):
        status = main(
            ["config", "validate", "-c", "toy/exp", "nip_protocol.max_message_rounds=8"]
        )
    assert status == 0
    assert "valid" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProtocolWarning)
        assert (
            main(
                [
                    "config",
                    "validate",
                    "-c",
                    "toy/exp",
                    "nip_protocol.max_message_rounds=7",
                ]
            )
            == 0
        )


def test_a_config_including_a_missing_plugins_config_says_what_to_install(
    toy_plugin, write_configs, capsys
):
    write_configs(
        Path.cwd() / "configs",
        {
            "mine.yaml": """
                # @package _global_
                defaults:
                  - /code_validation/humaneval_base
                  - _self_
                seed: 3
                """
        },
    )
    status, _, err = show(capsys, "-c", "mine")
    assert status == 2
    assert (
        "'mine' includes 'code_validation/humaneval_base', which no config "
        "directory holds: the config dir 'code_validation' comes with "
        "nip-plugin-code-validation"
    ) in err
    # a plugin whose configs sit in a folder named after its trainer
    write_configs(
        Path.cwd() / "configs",
        {
            "mine_ei.yaml": """
                # @package _global_
                defaults:
                  - /pure_text_ei/code_validation
                  - _self_
                """
        },
    )
    status, _, err = show(capsys, "-c", "mine_ei")
    assert status == 2
    assert "the trainer 'pure_text_ei' comes with nip-plugin-ei" in err


def test_a_path_to_data_that_is_not_there_is_a_warning(toy_plugin, tmp_path, capsys):
    from nip_core.errors import ParameterWarning

    expected = (
        f"dataset './missing': there is no {Path.cwd() / 'missing'} here; a run "
        "reads its own data from that path, so it must exist where the run runs"
    )
    with pytest.warns(ParameterWarning) as caught:
        status, config, _ = show(capsys, "-c", "toy/exp", "dataset=./missing")
    assert status == 0
    assert config["dataset"] == "./missing"
    assert expected in [str(w.message) for w in caught]
    (Path.cwd() / "there").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterWarning)
        status, _, _ = show(capsys, "-c", "toy/exp", "dataset=./there")
    assert status == 0
