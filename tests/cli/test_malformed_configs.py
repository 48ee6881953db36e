"""The suite of malformed configs: every one is one clear error, never a traceback.

Cases come from three places:

- every field of every core section, of the core's own fields, of the run settings
  and of an agent, with the bad values its kind invites
  (:func:`nip_core.testing.malformed.field_cases`: a word for a number, ``nan`` and
  ``inf``, integers beyond int64, values outside a range or a ``Literal``, unknown
  keys, unknown update schedules);
- names and combinations (unknown scenario, protocol, dataset, agent; settings that
  contradict each other);
- Hydra's own grammar and config files (an override without a key, a config group
  given a number, an unresolvable interpolation, a file that is not YAML, indented
  with tabs, or not a mapping).

Each case is composed with Hydra and validated as ``nip run`` does; each kind once
more through the whole command line, which must print ``nip: error:`` lines and exit
with status 2.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nip_core.cli import compose as composer
from nip_core.cli.main import main
from nip_core.errors import NipConfigError
from nip_core.parameters import (
    HyperParameters,
    MessageRegressionParameters,
    ReinforceParameters,
    RlTrainerParameters,
    SoloAgentParameters,
)
from nip_core.parameters.base_run import BaseRunParameters
from nip_core.protocols.parameters import (
    CommonProtocolParameters,
    DebateProtocolParameters,
    MnipProtocolParameters,
    NipProtocolParameters,
    ZkProtocolParameters,
)
from nip_core.settings import ExperimentSettings
from nip_core.testing.malformed import MalformedCase, field_cases
from nip_core.testing.synthetic.parameters import (
    SyntheticAgentParameters,
    SyntheticParameters,
)

CONFIG_NAME = "malformed_base"

# Fields whose value is a name checked against a registry (their own cases below)
_NAMES = ("scenario", "trainer", "dataset", "interaction_protocol", "agents")

FIELD_CASES: list[MalformedCase] = [
    *field_cases(HyperParameters, "", exclude=_NAMES),
    *field_cases(RlTrainerParameters, "rl"),
    *field_cases(SoloAgentParameters, "solo_agent"),
    *field_cases(ReinforceParameters, "reinforce"),
    *field_cases(MessageRegressionParameters, "message_regression"),
    *field_cases(BaseRunParameters, "base_run"),
    *field_cases(CommonProtocolParameters, "protocol_common"),
    *field_cases(NipProtocolParameters, "nip_protocol"),
    *field_cases(DebateProtocolParameters, "debate_protocol"),
    *field_cases(MnipProtocolParameters, "mnip_protocol"),
    *field_cases(ZkProtocolParameters, "zk_protocol"),
    *field_cases(SyntheticParameters, "synthetic"),
    *field_cases(SyntheticAgentParameters, "agents._default"),
    *field_cases(ExperimentSettings, "run"),
]
# the core fields sit at the top: "" prefix gives ".seed"; strip the dot
FIELD_CASES = [
    MalformedCase(case.override.lstrip("."), case.path.lstrip("."), case.kind)
    for case in FIELD_CASES
]

NAME_CASES: list[MalformedCase] = [
    MalformedCase("scenario=no_such_scenario", "scenario", "name: scenario"),
    MalformedCase("scenario=5", "scenario", "name: scenario a number"),
    MalformedCase("trainer=no_such_trainer", "trainer", "name: trainer"),
    MalformedCase("trainer=reinfroce", "trainer", "name: misspelt trainer"),
    MalformedCase(
        "interaction_protocol=nipp", "interaction_protocol", "name: protocol"
    ),
    MalformedCase("interaction_protocol=[nip]", "interaction_protocol", "name: list"),
    MalformedCase("dataset=no_such_dataset", "dataset", "name: dataset"),
    MalformedCase("dataset=[tiny]", "dataset", "name: dataset list"),
    MalformedCase("agents.prover0.d_hidden=3", "agents.prover0", "name: agent"),
    MalformedCase("agents=5", "agents", "name: agents a number"),
    MalformedCase(
        "agents._default.is_random=maybe", "agents._default.is_random", "flag"
    ),
    MalformedCase("no_such_section.x=1", "no_such_section", "name: section"),
    MalformedCase("rl=5", "rl", "section: a number"),
    MalformedCase("run=5", "run", "settings: a number"),
    MalformedCase("run.device=5", "run.device", "device: a number"),
    MalformedCase("run.device=gpu", "run.device", "device: gpu"),
    MalformedCase("run.device=cuda:x", "run.device", "device: bad index"),
    MalformedCase("run.loggers=[jsonl,nope]", "run.loggers[1]", "logger: unknown"),
    MalformedCase("run.loggers=5", "run.loggers", "logger: a number"),
    MalformedCase("run.run_id=a/b", "run.run_id", "run id: a path"),
    MalformedCase("run.runs_dir=''", "run.runs_dir", "runs dir: empty"),
    # combinations
    MalformedCase(
        "rl.steps_per_env_per_iteration=7 rl.frames_per_batch=20",
        "rl.steps_per_env_per_iteration",
        "combination: divisibility",
    ),
    MalformedCase(
        "nip_protocol.min_message_rounds=5 nip_protocol.max_message_rounds=3",
        "nip_protocol",
        "combination: rounds",
    ),
    MalformedCase(
        "interaction_protocol=debate protocol_common.randomize_prover_stance=true",
        "protocol_common.randomize_prover_stance",
        "combination: stance",
    ),
    MalformedCase(
        "interaction_protocol=solo_verifier protocol_common.zero_knowledge=true",
        "protocol_common.zero_knowledge",
        "combination: zero knowledge",
    ),
    MalformedCase(
        "agents._default.load_checkpoint_and_parameters=true",
        "agents._default.checkpoint_run_id",
        "combination: checkpoint",
    ),
    MalformedCase(
        "agents._default.update_schedule={_type:ContiguousPeriodicUpdateSchedule,"
        "period:2,start:3,stop:1}",
        "agents._default.update_schedule",
        "schedule: fields",
    ),
]

HYDRA_CASES: list[MalformedCase] = [
    MalformedCase("=5", "", "hydra: no key"),
    MalformedCase("+=5", "", "hydra: add without key"),
    MalformedCase("~", "", "hydra: delete without key"),
    MalformedCase("seed=[1,", "", "hydra: unclosed list"),
    MalformedCase("rl..lr=1", "", "hydra: empty key part"),
    MalformedCase("seed==3", "", "hydra: double equals"),
    MalformedCase("seed=1,2", "", "hydra: sweep without --multirun"),
    MalformedCase("seed=${no.such.key}", "seed", "hydra: interpolation"),
    MalformedCase("hydra/launcher=5", "hydra/launcher", "hydra: group value"),
    MalformedCase("hydra/launcher=no_such_launcher", "", "hydra: group option"),
    MalformedCase("no_such_group/x=y", "", "hydra: group"),
    MalformedCase("rl=[1,2]", "", "hydra: list into section"),
]

CASES = FIELD_CASES + NAME_CASES + HYDRA_CASES

BASE_CONFIG = """
    # @package _global_
    defaults:
      - /base
      - _self_
    scenario: synthetic
    trainer: reinforce
    dataset: tiny
    interaction_protocol: nip
    agents:
      _default: {d_hidden: 4}
      verifier: {d_hidden: 4}
    """


@pytest.fixture
def config_dir(synthetic_scenario, tmp_path: Path, monkeypatch) -> Path:
    """A working directory whose ``./configs`` holds the synthetic base config."""
    work = tmp_path / "work"
    (work / "configs").mkdir(parents=True)
    (work / "configs" / f"{CONFIG_NAME}.yaml").write_text(
        textwrap.dedent(BASE_CONFIG).lstrip()
    )
    monkeypatch.chdir(work)
    return work / "configs"


def _validate(config_name: str, overrides: list[str]) -> None:
    with composer.hydra_app() as app:
        config = composer.to_plain_dict(composer.compose(app, config_name, overrides))
    composer.build_experiment(config, config_name=config_name)


def _paths(error: NipConfigError) -> list[str]:
    return [problem.path for problem in error.problems]


def _names(path: str, expected: str) -> bool:
    return (
        path == expected
        or path.startswith(f"{expected}.")
        or path.startswith(f"{expected}[")
    )


def test_the_suite_covers_every_kind_with_at_least_a_hundred_cases() -> None:
    assert len(CASES) >= 100
    assert len({case.override for case in CASES}) == len(CASES)
    kinds = {case.kind.split(":")[0] for case in CASES}
    for kind in ("int", "float", "bool", "str", "choice", "list", "section", "key"):
        assert kind in kinds, kind
    assert {"name", "combination", "hydra", "device", "logger", "schedule"} <= kinds


def test_the_base_config_is_valid(config_dir: Path) -> None:
    _validate(CONFIG_NAME, [])


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.override)
def test_a_malformed_value_is_one_error_naming_its_path(
    config_dir: Path, case: MalformedCase
) -> None:
    with pytest.raises(NipConfigError) as info:
        _validate(CONFIG_NAME, case.override.split(" "))
    error = info.value
    assert error.problems
    if case.path:
        assert any(_names(path, case.path) for path in _paths(error)), (
            f"{case.override}: expected a problem at {case.path!r}, got {error}"
        )
    for problem in error.problems:
        assert problem.message.strip(), problem
        assert "Traceback" not in problem.message


# One case of each kind through the whole command line
_CLI_CASES = list({case.kind.split(":")[0]: case for case in CASES}.values())


@pytest.mark.parametrize("case", _CLI_CASES, ids=lambda case: case.override)
@pytest.mark.parametrize("command", ["show", "run"])
def test_the_command_line_prints_the_error_and_exits_with_2(
    config_dir: Path, case: MalformedCase, command: str, capsys, recorded_runs
) -> None:
    argv = ["config", "show"] if command == "show" else ["run"]
    status = main([*argv, "-c", CONFIG_NAME, *case.override.split(" ")])
    out, err = capsys.readouterr()
    assert status == 2, err
    assert out == ""
    assert err.startswith("nip: error: invalid configuration"), err
    assert "Traceback" not in err
    assert recorded_runs == []
    if case.path:
        assert f"- {case.path}" in err


BAD_FILES: dict[str, tuple[str, str]] = {
    "not_yaml": ("seed: [1,\n", "is not valid YAML"),
    "tabs": ("seed:\n\t3\n", "never tabs"),
    "a_list": ("- scenario\n- trainer\n", "must hold a mapping"),
    "a_scalar": ("just some words\n", "must hold a mapping"),
    "missing_value": (
        "# @package _global_\ndefaults:\n  - malformed_base\n  - _self_\nseed: ???\n",
        "mandatory value not set",
    ),
    "bad_default": (
        "defaults:\n  - no_such_config\n  - _self_\n",
        "no_such_config",
    ),
    "unknown_key": (
        "# @package _global_\ndefaults:\n  - malformed_base\n  - _self_\nsed: 3\n",
        "did you mean 'seed'?",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["show", "run"])
def test_a_bad_config_file_is_one_error_naming_it(
    config_dir: Path, name: str, command: str, capsys, recorded_runs
) -> None:
    text, expected = BAD_FILES[name]
    (config_dir / f"{name}.yaml").write_text(text)
    argv = ["config", "show"] if command == "show" else ["run"]
    status = main([*argv, "--config-name", name])
    out, err = capsys.readouterr()
    assert status == 2, err
    assert err.startswith("nip: error:"), err
    assert expected in err
    assert "Traceback" not in err
    assert recorded_runs == []
    if name in ("not_yaml", "tabs", "a_list", "a_scalar"):
        assert f"{name}.yaml" in err


def test_validate_reports_bad_files_the_same_way(
    config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("not_yaml", "tabs", "a_list"):
        text, expected = BAD_FILES[name]
        path = config_dir / f"{name}.yaml"
        path.write_text(text)
        status = main(["config", "validate", str(path)])
        _, err = capsys.readouterr()
        assert status == 2
        assert expected in err
        assert str(path) in err


def test_a_valid_override_of_each_kind_still_works(config_dir: Path) -> None:
    overrides = [
        "seed=3",
        "rl.lr=0.01",
        "rl.max_grad_norm=inf",  # means: no clipping
        "protocol_common.verifier_reward=2",
        "agents._default.d_hidden=8",
        "run.device=cpu",
        "run.loggers=[jsonl,csv]",
        "nip_protocol.max_message_rounds=5",
    ]
    with composer.hydra_app() as app:
        config = composer.to_plain_dict(composer.compose(app, CONFIG_NAME, overrides))
    hyper_params, settings = composer.build_experiment(config)
    assert hyper_params.rl.max_grad_norm == float("inf")
    assert settings.loggers == ("jsonl", "csv")
