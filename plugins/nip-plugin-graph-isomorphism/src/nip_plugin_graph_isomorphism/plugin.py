"""Hook implementations of the graph isomorphism plugin.

nip imports this module (the ``nip_core.plugins`` entry point ``graph_isomorphism``)
whenever it loads plugins, including for ``nip --help`` and ``nip plugins``, so it
stays light: hook implementations only, no torch. Heavy classes are given as
``"module:Class"`` references that nip resolves when a run needs them.
"""

from __future__ import annotations

from pathlib import Path

from nip_core import hookimpl
from nip_core.records import (
    AgentPartSpec,
    BuilderOption,
    ConfigDirSpec,
    DatasetBuilderSpec,
    EpisodeRendererSpec,
    ScenarioSpec,
)

SCENARIO = "graph_isomorphism"
"""The scenario's registry key."""

PACKAGE = "nip_plugin_graph_isomorphism"

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The plugin's Hydra config directory (shipped as package data)."""

DATASETS: tuple[str, ...] = ("eru10000", "test")
"""Named datasets: ``eru10000`` ships with the package, ``test`` is generated on use."""

AGENT_PARTS: dict[str, str] = {
    "body": f"{PACKAGE}.agents:GraphIsomorphismAgentBody",
    "policy_head": f"{PACKAGE}.agents:GraphIsomorphismAgentPolicyHead",
    "value_head": f"{PACKAGE}.agents:GraphIsomorphismAgentValueHead",
    "solo_head": f"{PACKAGE}.agents:GraphIsomorphismSoloAgentHead",
    # the core's uniform policy reads the message space from the valid-message mask,
    # which the environment restricts to selectable nodes
    "random_policy_head": "nip_core.scenario.agents:RandomAgentPolicyHead",
    "constant_value_head": "nip_core.scenario.agents:ConstantAgentValueHead",
}
"""Part role to class."""


@hookimpl
def register_scenarios() -> list[ScenarioSpec]:
    """The ``graph_isomorphism`` scenario."""
    return [
        ScenarioSpec(
            name=SCENARIO,
            # its splits are fixed: the core's test_size is not read
            unread_parameters=("test_size",),
            data_world="tensor",
            agent_parameters_class=(
                f"{PACKAGE}.agent_parameters:GraphIsomorphismAgentParameters"
            ),
            dataset_class=f"{PACKAGE}.data:GraphIsomorphismDataset",
            environment_class=f"{PACKAGE}.environment:GraphIsomorphismEnvironment",
            default_dataset="eru10000",
            datasets=DATASETS,
            config_problems=f"{PACKAGE}.checks:config_problems",
            description=(
                "Are two graphs isomorphic? Messages are nodes of either graph."
            ),
        )
    ]


@hookimpl
def register_agent_parts() -> list[AgentPartSpec]:
    """Bodies and heads of graph isomorphism agents."""
    return [
        AgentPartSpec(scenario=SCENARIO, part=part, part_class=ref)
        for part, ref in AGENT_PARTS.items()
    ]


@hookimpl
def register_dataset_builders() -> list[DatasetBuilderSpec]:
    """``nip datasets generate graph_isomorphism NAME [--num-pairs N --seed S ...]``."""
    return [
        DatasetBuilderSpec(
            scenario=SCENARIO,
            builder=f"{PACKAGE}.storage:build_dataset",
            options=(
                BuilderOption(name="num_pairs", type=int, help="train pairs"),
                BuilderOption(
                    name="test_pairs", type=int, help="test pairs (default: train / 5)"
                ),
                BuilderOption(name="seed", type=int, help="seed (default 0)"),
                BuilderOption(
                    name="graph_sizes", type=str, help="node counts, e.g. 7,8,9,10,11"
                ),
                BuilderOption(
                    name="edge_probabilities",
                    type=str,
                    help="edge probabilities, e.g. 0.2,0.4,0.6,0.8",
                ),
                BuilderOption(name="workers", type=int, help="processes (default 2)"),
                BuilderOption(
                    name="from_original",
                    type=str,
                    help="convert the original library's dataset directory instead",
                ),
                BuilderOption(
                    name="from_pyg",
                    type=str,
                    help="convert a torch.save file of torch_geometric graph pairs "
                    "((Data, Data, label) tuples, or {'train': [...], 'test': [...]})",
                ),
            ),
            description="Erdős–Rényi graph pairs with WL-score quotas (train + test).",
        )
    ]


@hookimpl
def register_episode_renderers() -> list[EpisodeRendererSpec]:
    """Draw an episode: both graphs with the nodes each agent sent, round by round."""
    return [
        EpisodeRendererSpec(
            scenario=SCENARIO,
            renderer=f"{PACKAGE}.render:render_episode",
            description="Both graphs with each agent's messaged nodes and the verdict.",
        )
    ]


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    """Put the plugin's experiment configs on ``nip run``'s search path."""
    return [ConfigDirSpec(name=SCENARIO, path=str(CONFIG_DIR))]
