"""Built-in plugin of nip-core: the core parameter sections and migrations.

Registered before installed plugins, through the same hooks. Protocol sections are
registered by :mod:`nip_core.builtin.protocols`; trainer plugins register their own.
"""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import MigrationSpec, ParameterSectionSpec


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    from nip_core.parameters.base_run import BaseRunParameters
    from nip_core.parameters.dataset import DatasetParameters
    from nip_core.parameters.message_regression import MessageRegressionParameters
    from nip_core.parameters.trainers import (
        ReinforceParameters,
        RlTrainerParameters,
        SoloAgentParameters,
    )

    return [
        ParameterSectionSpec(
            name="rl",
            parameters_class=RlTrainerParameters,
            description="Common parameters of reinforcement-learning trainers",
        ),
        ParameterSectionSpec(
            name="solo_agent",
            parameters_class=SoloAgentParameters,
            description="Supervised training of agents on their own (and pre-training)",
        ),
        ParameterSectionSpec(
            name="reinforce",
            parameters_class=ReinforceParameters,
            description="The REINFORCE trainer",
        ),
        ParameterSectionSpec(
            name="dataset_options",
            parameters_class=DatasetParameters,
            description="Size caps of datasets",
        ),
        ParameterSectionSpec(
            name="message_regression",
            parameters_class=MessageRegressionParameters,
            description="Regression analysis of the label from the messages",
        ),
        ParameterSectionSpec(
            name="base_run",
            parameters_class=BaseRunParameters,
            description="Basing an experiment on a previous run",
        ),
    ]


_MIGRATIONS = "nip_core.parameters.migrations"


@hookimpl
def register_parameter_migrations() -> list[MigrationSpec]:
    return [
        MigrationSpec(
            component="nip",
            from_version="0",
            to_version="0.1",
            migrate=f"{_MIGRATIONS}:legacy_unversioned",
            description="Dicts from before the original library recorded versions",
        ),
        MigrationSpec(
            component="nip",
            from_version="0.1",
            to_version="1.0",
            migrate=f"{_MIGRATIONS}:legacy_0_1_to_1_0",
            description="pvg -> nip, abstract_decision_problem -> adp, SPG renames",
        ),
        MigrationSpec(
            component="nip",
            from_version="1.0",
            to_version="2.0",
            migrate=f"{_MIGRATIONS}:legacy_1_0_to_core",
            description="The original library's dict layout to nip-core 0.1.0",
        ),
        MigrationSpec(
            component="nip-core",
            from_version="0.1.0",
            to_version="0.1.1",
            migrate=f"{_MIGRATIONS}:core_0_1_0_to_0_1_1",
            description="dataset_options hands the two-class reduction to scenarios",
        ),
    ]
