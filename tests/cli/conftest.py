"""A toy plugin for the CLI tests: a scenario, a trainer, a parameter section, a
config directory (written per test under ``tmp_path``) and a dataset builder.

Nothing here trains: the tests replace ``run_experiment`` with a recorder.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from attrs import field
from attrs import validators as v

from nip_core import hookimpl
from nip_core.errors import ConfigProblem
from nip_core.parameters import AgentParameters, SubParameters, parameters_class
from nip_core.records import (
    BuilderOption,
    ConfigDirSpec,
    DatasetBuilderSpec,
    ParameterSectionSpec,
    ScenarioSpec,
    TrainerSpec,
)


@parameters_class
class ToyAgentParameters(AgentParameters):
    """Agent parameters of the toy scenario.

    Parameters
    ----------
    width : int
        A width.
    """

    width: int = field(default=2, validator=v.ge(1))


@parameters_class
class ToySectionParameters(SubParameters):
    """The toy plugin's parameter section.

    Parameters
    ----------
    depth : int
        A positive depth.
    mode : str
        One of ``"fast"`` and ``"slow"``.
    """

    depth: int = field(default=1, validator=v.ge(1))
    mode: str = field(default="fast", validator=v.in_(("fast", "slow")))


def toy_scenario_problems(hyper_params: Any) -> list[ConfigProblem]:
    """The toy scenario's own check: dataset 'small' takes a depth of at most 9."""
    depth = hyper_params.toy_section.depth
    if hyper_params.dataset == "small" and depth > 9:
        return [
            ConfigProblem(
                "toy_section.depth", "at most 9 for dataset 'small'", value=depth
            )
        ]
    return []


BUILDER_CALLS: list[tuple[str, Path, dict[str, Any]]] = []


def toy_builder(name: str, data_dir: Path, **options: Any) -> Path:
    BUILDER_CALLS.append((name, data_dir, options))
    target = data_dir / "toy" / name
    target.mkdir(parents=True)
    # a dataset is files: a directory holding none is not a dataset on disk
    (target / "train.json").write_text("[]")
    return target


class ToyPlugin:
    """Registers the toy scenario and its config directory."""

    def __init__(self, config_dir: Path):
        self.config_dir = config_dir

    @hookimpl
    def register_scenarios(self):
        return [
            ScenarioSpec(
                name="toy",
                agent_parameters_class=ToyAgentParameters,
                dataset_class="toy_plugin.never_imported:Dataset",
                default_dataset="small",
                datasets=("small", "large"),
                config_problems=toy_scenario_problems,
            )
        ]

    @hookimpl
    def register_trainers(self):
        return [
            TrainerSpec(
                name="toy_trainer",
                trainer_class="toy_plugin.never_imported:Trainer",
            )
        ]

    @hookimpl
    def register_parameter_sections(self):
        return [
            ParameterSectionSpec(
                name="toy_section", parameters_class=ToySectionParameters
            )
        ]

    @hookimpl
    def register_config_dirs(self):
        return [ConfigDirSpec(name="toy", path=str(self.config_dir))]

    @hookimpl
    def register_dataset_builders(self):
        return [
            DatasetBuilderSpec(
                scenario="toy",
                builder=toy_builder,
                options=(
                    BuilderOption(name="num_pairs", type=int, default=10, help="pairs"),
                    BuilderOption(name="edge_probability", type=float, default=0.5),
                    BuilderOption(name="balanced", type=bool),
                    BuilderOption(name="label", type=str),
                ),
                description="Toy pairs.",
            )
        ]


def _write_configs(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


TOY_CONFIGS = {
    "toy/exp.yaml": """
        # @package _global_
        defaults:
          - /base
          - /toy/dataset: small
          - _self_
        scenario: toy
        trainer: toy_trainer
        seed: 3
        toy_section:
          depth: 2
        """,
    "toy/dataset/small.yaml": """
        # @package _global_
        dataset: small
        """,
    "toy/dataset/large.yaml": """
        # @package _global_
        dataset: large
        toy_section:
          mode: slow
        """,
    "default.yaml": """
        defaults:
          - toy/exp
          - _self_
        """,
}


@pytest.fixture
def toy_plugin(tmp_path, register_plugin, monkeypatch) -> ToyPlugin:
    """The toy plugin registered, its configs written, the working directory an
    empty folder (so no ``./configs`` of the repository leaks in)."""
    config_dir = _write_configs(tmp_path / "toy_configs", TOY_CONFIGS)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    plugin = ToyPlugin(config_dir)
    register_plugin(plugin, name="toy")
    BUILDER_CALLS.clear()
    return plugin


@pytest.fixture
def write_configs():
    """``write_configs(root, {relative_path: yaml_text}) -> root``."""
    return _write_configs


@pytest.fixture
def builder_calls(toy_plugin) -> list[tuple[str, Path, dict[str, Any]]]:
    """The calls the toy dataset builder received in this test."""
    return BUILDER_CALLS


@pytest.fixture
def recorded_runs(monkeypatch) -> list[tuple[Any, Any]]:
    """Replace ``run_experiment`` with a recorder of its arguments."""
    import nip_core.experiment

    calls: list[tuple[Any, Any]] = []

    def fake_run_experiment(hyper_params, settings):
        calls.append((hyper_params, settings))

    monkeypatch.setattr(nip_core.experiment, "run_experiment", fake_run_experiment)
    return calls


@pytest.fixture(autouse=True)
def _restore_logging(restored_logging: None) -> None:
    """Every test here: the root logger put back afterwards (``restored_logging``
    of nip-core's pytest plugin)."""
