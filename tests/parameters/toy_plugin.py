"""A small plugin for the parameter tests: a scenario, protocols, trainers, sections.

Registered per test through the ``register_plugin`` fixture (see ``conftest.py``).
"""

from __future__ import annotations

from typing import Literal

from attrs import field
from attrs import validators as v

from nip_core import hookimpl
from nip_core.errors import ConfigProblem
from nip_core.parameters import (
    AgentParameters,
    LrFactors,
    SubParameters,
    parameters_class,
)
from nip_core.records import (
    AgentPartSpec,
    MigrationSpec,
    ParameterSectionSpec,
    ProtocolSpec,
    ScenarioSpec,
    TrainerSpec,
)

DISTRIBUTION = "nip-plugin-toy"
VERSION = "1.2.0"


@parameters_class
class ToyAgentParameters(AgentParameters):
    """Agent parameters of the toy scenario.

    Parameters
    ----------
    d_hidden : int
        Hidden width.
    activation : {"relu", "tanh"}
        Activation function.
    dropout : float
        Dropout probability, in [0, 1).
    tags : tuple[str, ...]
        Free-form labels.
    """

    d_hidden: int = field(default=8, validator=v.ge(1))
    activation: Literal["relu", "tanh"] = "relu"
    dropout: float = field(default=0.0, validator=[v.ge(0), v.lt(1)])
    tags: tuple[str, ...] = ()

    @classmethod
    def construct_test_params(cls) -> ToyAgentParameters:
        return cls(d_hidden=1)


@parameters_class
class ToySectionParameters(SubParameters):
    """The ``toy_section`` section.

    Parameters
    ----------
    steps : int
        At least 1.
    rate : float
        Greater than 0.
    mode : {"a", "b", "c"}
        A choice.
    limit : int | None
        At least 0 when set; at most ``steps``.
    factors : LrFactors
        Nested parameters.
    widths : tuple[int, ...]
        Layer widths.
    """

    steps: int = field(default=3, validator=v.ge(1))
    rate: float = field(default=0.5, validator=v.gt(0))
    mode: Literal["a", "b", "c"] = "a"
    limit: int | None = field(default=None, validator=v.optional(v.ge(0)))
    factors: LrFactors = field(factory=LrFactors)
    widths: tuple[int, ...] = (4, 4)

    def consistency_problems(self) -> list[ConfigProblem]:
        if self.limit is not None and self.limit > self.steps:
            return [ConfigProblem("limit", f"must be at most steps ({self.steps})")]
        return []

    @classmethod
    def construct_test_params(cls) -> ToySectionParameters:
        return cls(steps=1)


@parameters_class
class ToyOtherParameters(SubParameters):
    """The ``toy_other`` section.

    Parameters
    ----------
    flag : bool
        A switch.
    label : str
        A name.
    """

    flag: bool = False
    label: str = "x"


def rename_toy_steps(params: dict) -> tuple[dict, list[str]]:
    """toy 1.0 -> 1.1: ``toy_section.num_steps`` became ``toy_section.steps``."""
    section = params.get("toy_section")
    if isinstance(section, dict) and "num_steps" in section:
        section["steps"] = section.pop("num_steps")
        return params, ["toy_section.num_steps renamed to toy_section.steps"]
    return params, []


def double_toy_rate(params: dict) -> tuple[dict, list[str]]:
    """toy 1.1 -> 1.2: ``toy_section.rate`` is now per two steps."""
    section = params.get("toy_section")
    if isinstance(section, dict) and "rate" in section:
        section["rate"] = section["rate"] * 2
        return params, ["toy_section.rate doubled (now per two steps)"]
    return params, []


class ToyPlugin:
    """The hook implementations (a class, so a test can register a fresh instance)."""

    @hookimpl
    def register_scenarios(self) -> list[ScenarioSpec]:
        return [
            ScenarioSpec(
                name="toy",
                data_world="tensor",
                agent_parameters_class=ToyAgentParameters,
                dataset_class="toy:Dataset",
                default_dataset="toy_small",
                datasets=("toy_small", "toy_large"),
                supported_protocols=("toy_protocol", "toy_solo", "nip"),
            ),
            ScenarioSpec(
                name="toy_text",
                data_world="text",
                agent_parameters_class=f"{__name__}:ToyAgentParameters",
                dataset_class="toy:Dataset",
            ),
        ]

    @hookimpl
    def register_protocols(self) -> list[ProtocolSpec]:
        return [
            ProtocolSpec(
                name="toy_protocol",
                handler_class="toy:Handler",
                agent_names=("prover", "verifier"),
                data_worlds=("tensor", "text"),
                supports_zero_knowledge=True,
            ),
            ProtocolSpec(
                name="toy_solo",
                handler_class="toy:Handler",
                agent_names=("verifier",),
                data_worlds=("tensor",),
            ),
        ]

    @hookimpl
    def register_trainers(self) -> list[TrainerSpec]:
        return [
            TrainerSpec(
                name="toy_trainer",
                trainer_class="toy:Trainer",
                required_parts=("body", "policy_head"),
            ),
            TrainerSpec(
                name="toy_value_trainer",
                trainer_class="toy:Trainer",
                required_parts=("body", "policy_head", "value_head"),
            ),
            TrainerSpec(
                name="toy_partial_trainer",
                trainer_class="toy:Trainer",
                required_parts=("body", "policy_head"),
                unread_parameters=("toy_section.rate", "toy_section.limit"),
            ),
            TrainerSpec(
                name="toy_text_trainer", trainer_class="toy:Trainer", data_world="text"
            ),
        ]

    @hookimpl
    def register_agent_parts(self) -> list[AgentPartSpec]:
        return [
            AgentPartSpec(scenario="toy", part="body", part_class="toy:Body"),
            AgentPartSpec(scenario="toy", part="policy_head", part_class="toy:Head"),
        ]

    @hookimpl
    def register_parameter_sections(self) -> list[ParameterSectionSpec]:
        return [
            ParameterSectionSpec(
                name="toy_section", parameters_class=ToySectionParameters
            ),
            ParameterSectionSpec(name="toy_other", parameters_class=ToyOtherParameters),
        ]

    @hookimpl
    def register_parameter_migrations(self) -> list[MigrationSpec]:
        return [
            MigrationSpec(
                component=DISTRIBUTION,
                from_version="1.0",
                to_version="1.1",
                migrate=f"{__name__}:rename_toy_steps",
            ),
            MigrationSpec(
                component=DISTRIBUTION,
                from_version="1.1",
                to_version="1.2",
                migrate=double_toy_rate,
            ),
        ]
