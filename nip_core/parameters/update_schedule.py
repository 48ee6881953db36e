"""Schedules saying on which training iterations an agent is updated.

Each agent has its own schedule (``agents.<name>.update_schedule``). On the
iterations where :meth:`AgentUpdateSchedule.is_update_iteration` is false, the
agent's parameters are frozen.

Schedules are frozen values. In a parameter dict they are written as a mapping whose
``_type`` key names the class and whose other keys are its fields::

    {"_type": "ContiguousPeriodicUpdateSchedule", "period": 4, "start": 0, "stop": 2}

so they survive ``to_dict`` / ``from_dict`` exactly. A plugin may define its own
schedule by subclassing :class:`AgentUpdateSchedule` with :func:`parameters_class`
(``frozen=True``); subclasses are found by class name.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import field
from attrs import validators as v

from nip_core.errors import ConfigProblem
from nip_core.parameters.base import BaseHyperParameters, parameters_class

__all__ = [
    "AgentUpdateSchedule",
    "AlternatingPeriodicUpdateSchedule",
    "ConstantUpdateSchedule",
    "ContiguousPeriodicUpdateSchedule",
    "schedule_types",
]

_SCHEDULE_TYPES: dict[str, type[AgentUpdateSchedule]] = {}


def schedule_types() -> dict[str, type[AgentUpdateSchedule]]:
    """Every schedule class defined so far, by the name used as ``_type``."""
    return dict(_SCHEDULE_TYPES)


@parameters_class(frozen=True)
class AgentUpdateSchedule(BaseHyperParameters):
    """Base of agent update schedules."""

    TYPE_KEY: ClassVar[str] = "_type"
    """The key naming the schedule class in a parameter dict."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # attrs re-creates nothing for dict classes, so the class defined here is
        # the final one and can be registered by name.
        _SCHEDULE_TYPES[cls.__name__] = cls

    @classmethod
    def config_type_description(cls) -> str:
        """How a schedule is written in a config, for error messages."""
        return (
            f"a mapping naming the schedule class in {cls.TYPE_KEY!r} (e.g. "
            f"{{{cls.TYPE_KEY}: ConstantUpdateSchedule}}, with the class's fields)"
        )

    @classmethod
    def config_choices(cls) -> tuple[str, ...]:
        """The schedule classes a field of this type takes, for error messages."""
        return tuple(
            sorted(
                name
                for name, schedule in schedule_types().items()
                if issubclass(schedule, cls)
            )
        )

    def is_update_iteration(self, iteration: int) -> bool:
        """Whether the agent is updated on training iteration ``iteration`` (from 0)."""
        raise TypeError(
            f"{type(self).__name__} is abstract; use ConstantUpdateSchedule, "
            "ContiguousPeriodicUpdateSchedule or AlternatingPeriodicUpdateSchedule"
        )


@parameters_class(frozen=True)
class ConstantUpdateSchedule(AgentUpdateSchedule):
    """Update the agent on every iteration."""

    def is_update_iteration(self, iteration: int) -> bool:
        return True


@parameters_class(frozen=True)
class ContiguousPeriodicUpdateSchedule(AgentUpdateSchedule):
    """Update the agent on one contiguous stretch of every cycle.

    The agent is updated on iteration ``i`` when ``start <= i % period < stop``.

    Parameters
    ----------
    period : int
        The length of the cycle, at least 1.
    start : int
        The first iteration of each cycle on which the agent is updated
        (``0 <= start <= stop``).
    stop : int
        The iteration of each cycle from which the agent is no longer updated
        (``stop <= period``).
    """

    period: int = field(validator=v.ge(1))
    start: int = field(validator=v.ge(0))
    stop: int = field(validator=v.ge(0))

    def is_update_iteration(self, iteration: int) -> bool:
        return self.start <= iteration % self.period < self.stop

    def consistency_problems(self) -> list[ConfigProblem]:
        problems = []
        if self.start > self.stop:
            problems.append(
                ConfigProblem(
                    "start", f"must be at most stop ({self.stop})", self.start
                )
            )
        if self.stop > self.period:
            problems.append(
                ConfigProblem(
                    "stop", f"must be at most period ({self.period})", self.stop
                )
            )
        return problems


@parameters_class(frozen=True)
class AlternatingPeriodicUpdateSchedule(AgentUpdateSchedule):
    """One of a pair of schedules that take turns to update two agents.

    In every cycle of ``period`` iterations, the first agent is updated on the first
    ``first_agent_num_rounds`` iterations and the second agent on the rest. Give the
    first agent ``first_agent=True`` and the second ``first_agent=False`` with the
    same ``period`` and ``first_agent_num_rounds``.

    Parameters
    ----------
    period : int
        The length of the cycle, at least 2.
    first_agent_num_rounds : int
        How many iterations of each cycle belong to the first agent
        (``1 <= first_agent_num_rounds < period``).
    first_agent : bool
        Whether this schedule is the first agent's.
    """

    period: int = field(validator=v.ge(2))
    first_agent_num_rounds: int = field(validator=v.ge(1))
    first_agent: bool = True

    @property
    def start(self) -> int:
        """The first iteration of each cycle on which this agent is updated."""
        return 0 if self.first_agent else self.first_agent_num_rounds

    @property
    def stop(self) -> int:
        """The iteration of each cycle from which this agent is no longer updated."""
        return self.first_agent_num_rounds if self.first_agent else self.period

    def is_update_iteration(self, iteration: int) -> bool:
        return self.start <= iteration % self.period < self.stop

    def consistency_problems(self) -> list[ConfigProblem]:
        if self.first_agent_num_rounds >= self.period:
            return [
                ConfigProblem(
                    "first_agent_num_rounds",
                    f"must be less than period ({self.period}), or the second agent "
                    "is never updated",
                    self.first_agent_num_rounds,
                )
            ]
        return []
