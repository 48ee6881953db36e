"""The synthetic scenario's plugin object (hook implementations only)."""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import AgentPartSpec, ParameterSectionSpec, ScenarioSpec

_MODULE = "nip_core.testing.synthetic"


class SyntheticPlugin:
    """Registers the ``synthetic`` scenario, its parts and its ``synthetic`` section."""

    @hookimpl
    def register_scenarios(self) -> list[ScenarioSpec]:
        return [
            ScenarioSpec(
                name="synthetic",
                # it splits by synthetic.test_size: the core's test_size is not read
                unread_parameters=("test_size",),
                data_world="tensor",
                agent_parameters_class=f"{_MODULE}.parameters:SyntheticAgentParameters",
                dataset_class=f"{_MODULE}.data:SyntheticDataset",
                environment_class=f"{_MODULE}.environment:SyntheticEnvironment",
                default_dataset="tiny",
                datasets=("tiny", "small"),
                description="Bit-vectors with or without two adjacent ones (tests)",
            )
        ]

    @hookimpl
    def register_agent_parts(self) -> list[AgentPartSpec]:
        parts = {
            "body": f"{_MODULE}.agents:SyntheticAgentBody",
            "policy_head": f"{_MODULE}.agents:SyntheticAgentPolicyHead",
            "value_head": f"{_MODULE}.agents:SyntheticAgentValueHead",
            "solo_head": f"{_MODULE}.agents:SyntheticSoloAgentHead",
            "random_policy_head": "nip_core.scenario.agents:RandomAgentPolicyHead",
            "constant_value_head": "nip_core.scenario.agents:ConstantAgentValueHead",
        }
        return [
            AgentPartSpec(scenario="synthetic", part=part, part_class=ref)
            for part, ref in parts.items()
        ]

    @hookimpl
    def register_parameter_sections(self) -> list[ParameterSectionSpec]:
        from nip_core.testing.synthetic.parameters import SyntheticParameters

        return [
            ParameterSectionSpec(
                name="synthetic",
                parameters_class=SyntheticParameters,
                description="Data of the synthetic test scenario",
            )
        ]


SYNTHETIC_PLUGIN = SyntheticPlugin()
"""The plugin object, registered as ``register(SYNTHETIC_PLUGIN, "synthetic")``."""
