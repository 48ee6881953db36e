"""Hook implementations of the PPO plugin (light: no torch import here)."""

from __future__ import annotations

from pathlib import Path

from nip_core import hookimpl
from nip_core.records import (
    ConfigDirSpec,
    MigrationSpec,
    ParameterSectionSpec,
    TrainerSpec,
)
from nip_plugin_ppo.parameters import PpoParameters, SpgParameters, VanillaPpoParameters

_RL_PARTS = ("body", "policy_head", "value_head")


@hookimpl
def register_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(
            name="vanilla_ppo",
            trainer_class="nip_plugin_ppo.trainers:VanillaPpoTrainer",
            data_world="tensor",
            trainer_type="rl",
            required_parts=_RL_PARTS,
            parameter_sections=("rl", "ppo", "vanilla_ppo"),
            config_problems="nip_core.trainers.checks:critic_trainer_config_problems",
            description="Independent PPO per agent (clipped or adaptive-KL objective).",
        ),
        TrainerSpec(
            name="spg",
            trainer_class="nip_plugin_ppo.trainers:SpgTrainer",
            data_world="tensor",
            trainer_type="rl",
            required_parts=_RL_PARTS,
            parameter_sections=("rl", "ppo", "spg"),
            config_problems="nip_plugin_ppo.checks:spg_config_problems",
            description="Stackelberg policy gradient and opponent shaping "
            "(spg, pspg, lola, pola, sos, psos).",
        ),
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    return [
        ParameterSectionSpec(
            name="ppo",
            parameters_class=PpoParameters,
            description="Common parameters of PPO objectives.",
        ),
        ParameterSectionSpec(
            name="vanilla_ppo",
            parameters_class=VanillaPpoParameters,
            description="Parameters of the vanilla_ppo trainer.",
        ),
        ParameterSectionSpec(
            name="spg",
            parameters_class=SpgParameters,
            description="Parameters of the spg trainer and its variants.",
        ),
    ]


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    return [ConfigDirSpec(name="ppo", path=str(Path(__file__).parent / "configs"))]


@hookimpl
def register_parameter_migrations() -> list[MigrationSpec]:
    return [
        MigrationSpec(
            component="nip-plugin-ppo",
            from_version="0",
            to_version="0.1.0",
            migrate="nip_plugin_ppo.migrations:original_to_0_1",
            description="The original library's spg names (sos_a_param, sos_b_param).",
        )
    ]
