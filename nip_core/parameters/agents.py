"""Parameters of the agents.

Every scenario has its own agent-parameter class, a subclass of
:class:`AgentParameters` named in its :class:`~nip_core.records.ScenarioSpec`
(``agent_parameters_class``). :class:`AgentsParameters` maps agent names (or
``"_default"``) to such objects; an agent given ``{"is_random": True}`` is a
:class:`RandomAgentParameters` and selects its actions uniformly at random.

A scenario plugin declares its class like this (no torch import)::

    from attrs import field, validators as v
    from nip_core.parameters import AgentParameters, parameters_class

    @parameters_class
    class GraphIsomorphismAgentParameters(AgentParameters):
        \"\"\"...

        Parameters
        ----------
        d_gnn : int
            Width of the GNN layers.
        \"\"\"

        d_gnn: int = field(default=16, validator=v.ge(1))

        @classmethod
        def construct_test_params(cls):
            return cls(d_gnn=1)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from attrs import field
from attrs import validators as v

from nip_core.errors import ConfigProblem
from nip_core.parameters.base import SubParameters, parameters_class
from nip_core.parameters.update_schedule import (
    AgentUpdateSchedule,
    ConstantUpdateSchedule,
)

__all__ = [
    "DEFAULT_AGENT_KEY",
    "AgentParameters",
    "AgentsParameters",
    "LrFactors",
    "RandomAgentParameters",
]

DEFAULT_AGENT_KEY = "_default"
"""The key of :class:`AgentsParameters` whose value applies to every unnamed agent."""


@parameters_class
class LrFactors(SubParameters):
    """Learning-rate factors for the actor and the critic.

    Parameters
    ----------
    actor : float
        Factor for the actor's (policy's) parameters, at least 0. A factor of 0
        freezes them.
    critic : float
        Factor for the critic's (value function's) parameters, at least 0.
    """

    actor: float = field(default=1.0, validator=v.ge(0))
    critic: float = field(default=1.0, validator=v.ge(0))


@parameters_class
class AgentParameters(SubParameters):
    """Parameters every agent has, whatever its scenario.

    Parameters
    ----------
    agent_lr_factor : LrFactors
        The agent's learning rate relative to ``rl.lr``, for the actor and the
        critic. Lets agents learn at different rates.
    body_lr_factor : LrFactors
        The body's learning rate relative to the agent's (heads use the agent's).
    update_schedule : AgentUpdateSchedule
        On which training iterations the agent is updated; frozen on the others.
    use_manual_architecture : bool
        Use a hand-written (non-learned) strategy designed to maximise reward, where
        the scenario provides one; useful to check whether the other agents can learn
        to work with a fixed optimal agent (set ``agent_lr_factor`` to 0 with it).
    normalize_message_history : bool
        Normalise the message history to zero mean and unit variance (assuming all
        episode lengths equally likely) before the body reads it.
    load_checkpoint_and_parameters : bool
        Load this agent's weights and parameters from the checkpoint of another run
        (``checkpoint_run_id``); the other fields are then replaced by the saved
        ones, except the ``checkpoint_*`` fields.
    checkpoint_source : {"local", "wandb"}
        Where the checkpoint run is: a local run directory, or a W&B run.
    checkpoint_entity : str
        The W&B entity of the checkpoint run; empty for the default entity.
    checkpoint_project : str
        The W&B project of the checkpoint run; empty for the default project.
    checkpoint_run_id : str | None
        The run to load from; required when ``load_checkpoint_and_parameters``.
    checkpoint_version : str
        Which checkpoint of that run: ``"latest"`` or a version name.
    use_orthogonal_initialisation : bool
        Initialise the weights of the agent's networks orthogonally.
    orthogonal_initialisation_gain : float
        The gain of the orthogonal initialisation, greater than 0.
    """

    agent_lr_factor: LrFactors = field(factory=LrFactors)
    body_lr_factor: LrFactors = field(factory=LrFactors)
    update_schedule: AgentUpdateSchedule = field(factory=ConstantUpdateSchedule)

    use_manual_architecture: bool = False
    normalize_message_history: bool = False

    load_checkpoint_and_parameters: bool = False
    checkpoint_source: Literal["local", "wandb"] = "local"
    checkpoint_entity: str = ""
    checkpoint_project: str = ""
    checkpoint_run_id: str | None = None
    checkpoint_version: str = "latest"

    use_orthogonal_initialisation: bool = True
    orthogonal_initialisation_gain: float = field(default=1.0, validator=v.gt(0))

    is_random: ClassVar[bool] = False
    """Whether the agent selects its actions uniformly at random."""

    LOAD_PRESERVED_PARAMETERS: ClassVar[tuple[str, ...]] = (
        "load_checkpoint_and_parameters",
        "checkpoint_source",
        "checkpoint_entity",
        "checkpoint_project",
        "checkpoint_run_id",
        "checkpoint_version",
    )
    """Fields kept when the others are replaced by a checkpoint's parameters."""

    def consistency_problems(self) -> list[ConfigProblem]:
        if self.load_checkpoint_and_parameters and not self.checkpoint_run_id:
            return [
                ConfigProblem(
                    "checkpoint_run_id",
                    "is required when load_checkpoint_and_parameters is true",
                    self.checkpoint_run_id,
                )
            ]
        return []


@parameters_class
class RandomAgentParameters(AgentParameters):
    """An agent that selects its actions uniformly at random.

    Written as ``{"is_random": true, ...}`` in a parameter dict; has the fields of
    :class:`AgentParameters` only.
    """

    is_random: ClassVar[bool] = True


class AgentsParameters(dict[str, AgentParameters]):
    """The parameters of each agent, by agent name.

    A ``dict`` whose special key ``"_default"`` gives the parameters of every agent
    not named: ``agents["verifier"]`` falls back to ``agents["_default"]``, and
    ``"verifier" in agents`` is true when either is present. Iteration, ``len`` and
    ``items()`` see the keys actually stored.
    """

    def __getitem__(self, key: str) -> AgentParameters:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if dict.__contains__(self, DEFAULT_AGENT_KEY):
            return dict.__getitem__(self, DEFAULT_AGENT_KEY)
        known = ", ".join(self) or "none"
        raise KeyError(f"no parameters for agent {key!r} and no '_default' ({known})")

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or dict.__contains__(
            self, DEFAULT_AGENT_KEY
        )

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """The agent's parameters (falling back to ``_default``), or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def named(self) -> Iterable[str]:
        """The agent names stored explicitly (without ``_default``)."""
        return [name for name in self if name != DEFAULT_AGENT_KEY]

    def __repr__(self) -> str:
        return f"AgentsParameters({dict.__repr__(self)})"
