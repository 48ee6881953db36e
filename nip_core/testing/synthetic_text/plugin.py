"""The synthetic text scenario's plugin object (hook implementations only)."""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import AgentPartSpec, ScenarioSpec, TrainerSpec

_MODULE = "nip_core.testing.synthetic_text"


class SyntheticTextPlugin:
    """Registers the ``synthetic_text`` scenario, its agent and the
    ``synthetic_text_sft`` trainer."""

    @hookimpl
    def register_scenarios(self) -> list[ScenarioSpec]:
        return [
            ScenarioSpec(
                name="synthetic_text",
                # its splits are fixed: the core's test_size is not read
                unread_parameters=("test_size",),
                data_world="text",
                agent_parameters_class=(
                    f"{_MODULE}.scenario:SyntheticTextAgentParameters"
                ),
                dataset_class=f"{_MODULE}.scenario:SyntheticTextDataset",
                environment_class="nip_core.text.environment:TextEnvironment",
                default_dataset="tiny",
                datasets=("tiny", "small"),
                description="Is the number even? A scripted text scenario (tests)",
            )
        ]

    @hookimpl
    def register_agent_parts(self) -> list[AgentPartSpec]:
        return [
            AgentPartSpec(
                scenario="synthetic_text",
                part="whole",
                part_class=f"{_MODULE}.scenario:SyntheticTextAgent",
            )
        ]

    @hookimpl
    def register_trainers(self) -> list[TrainerSpec]:
        return [
            TrainerSpec(
                name="synthetic_text_sft",
                trainer_class=f"{_MODULE}.trainer:PositiveReturnSftTrainer",
                data_world="text",
                trainer_type="text",
                parameter_sections=("text_rl", "text_backend"),
                unread_parameters=(
                    "text_rl.verifier_guess_replacement_proportion",
                    "text_rl.verifier_guess_replacement_annealing",
                    "text_rl.verifier_guess_replacement_annealing_rate",
                    "text_rl.verifier_guess_replacement_keeps_reasoning",
                ),
                description="SFT on episodes with a return above the reward mid-point "
                "(tests)",
            )
        ]


SYNTHETIC_TEXT_PLUGIN = SyntheticTextPlugin()
"""The plugin object, registered as ``register(SYNTHETIC_TEXT_PLUGIN,
"synthetic_text")``."""
