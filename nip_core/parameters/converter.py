"""The project's cattrs converter: parameter objects to plain dicts and back.

One :class:`cattrs.Converter` (``forbid_extra_keys=True``) turns parameter objects into
JSON-ready dicts and back:

- parameter classes (:class:`~nip_core.parameters.base.BaseHyperParameters`
  subclasses) become dicts of their fields; agent parameters also carry
  ``is_random``; update schedules carry ``_type`` (their class name);
- tuples become lists (and lists given for tuple fields become tuples again);
- structuring looks classes up at structure time: the sections of a
  :class:`~nip_core.parameters.HyperParameters` and the agent-parameter class of its
  scenario come from the plugin registries when the dict is read, so classes from
  plugins loaded after this module work;
- values are not coerced (``"3"`` does not become ``3``): the parameter classes
  check every value against its annotation and report every problem at once.

:func:`structure` and :func:`unstructure` are the entry points; every failure is a
:class:`~nip_core.errors.NipConfigError` with dotted paths.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import attrs
import cattrs

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.parameters.agents import (
    DEFAULT_AGENT_KEY,
    AgentParameters,
    AgentsParameters,
    RandomAgentParameters,
)
from nip_core.parameters.base import BaseHyperParameters
from nip_core.parameters.update_schedule import AgentUpdateSchedule, schedule_types
from nip_core.parameters.validation import (
    closest,
    prefixed,
    problems_from_exception,
    type_problem,
)

__all__ = [
    "converter",
    "structure",
    "structure_agent",
    "structure_agents",
    "unstructure",
]

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
"""The one converter of the project."""


def _fail(
    message: str, value: Any = None, path: str = "", choices=()
) -> NipConfigError:
    return NipConfigError([ConfigProblem(path, message, value, tuple(choices))])


def _is_parameters_class(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseHyperParameters)


def _is_schedule_class(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, AgentUpdateSchedule)


def _is_hyper_parameters(tp: Any) -> bool:
    from nip_core.parameters.hyper_parameters import HyperParameters

    return isinstance(tp, type) and issubclass(tp, HyperParameters)


# --------------------------------------------------------------------------------------
# Structuring
# --------------------------------------------------------------------------------------


def _passthrough(value: Any, _: Any) -> Any:
    return value


for _primitive in (int, float, bool, str):
    converter.register_structure_hook(_primitive, _passthrough)
converter.register_structure_hook_func(
    lambda t: typing.get_origin(t) is Literal, _passthrough
)
converter.register_structure_hook_func(
    lambda t: typing.get_origin(t) is typing.Annotated,
    lambda value, t: converter.structure(value, typing.get_args(t)[0]),
)


def _structure_sequence(value: Any, tp: Any) -> Any:
    if not isinstance(value, list | tuple):
        return value  # reported by the field's type check
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            raise _fail(f"expected a list of {len(args)} items", value)
        element_types = list(args)
    else:
        element_types = [args[0] if args else Any] * len(value)
    items: list[Any] = []
    problems: list[ConfigProblem] = []
    for i, (item, element_type) in enumerate(zip(value, element_types, strict=True)):
        try:
            items.append(converter.structure(item, element_type))
        except Exception as exc:  # noqa: BLE001
            problems.extend(prefixed(problems_from_exception(exc), f"[{i}]"))
    if problems:
        raise NipConfigError(problems)
    return tuple(items) if origin is tuple else list(items)


converter.register_structure_hook_func(
    lambda t: (
        typing.get_origin(t) in (tuple, list, collections.abc.Sequence)
        or t in (tuple, list)
    ),
    _structure_sequence,
)


def _structure_mapping(value: Any, tp: Any) -> Any:
    if not isinstance(value, Mapping):
        return value  # reported by the field's type check
    args = typing.get_args(tp)
    key_type, value_type = args if len(args) == 2 else (Any, Any)
    out: dict[Any, Any] = {}
    problems: list[ConfigProblem] = []
    for key, item in value.items():
        try:
            out[converter.structure(key, key_type)] = converter.structure(
                item, value_type
            )
        except Exception as exc:  # noqa: BLE001
            problems.extend(prefixed(problems_from_exception(exc), str(key)))
    if problems:
        raise NipConfigError(problems)
    return out


converter.register_structure_hook_func(
    lambda t: (
        typing.get_origin(t) in (dict, collections.abc.Mapping)
        or t in (dict, collections.abc.Mapping)
    ),
    _structure_mapping,
)


def _structure_union(value: Any, tp: Any) -> Any:
    if type_problem(value, tp) is None:
        return value
    args = typing.get_args(tp)
    if isinstance(value, Mapping):
        candidates = [
            a
            for a in args
            if _is_parameters_class(a)
            or typing.get_origin(a) in (dict, collections.abc.Mapping)
        ]
    elif isinstance(value, list | tuple):
        candidates = [
            a
            for a in args
            if typing.get_origin(a) in (tuple, list) or a in (tuple, list)
        ]
    else:
        candidates = []
    first_error: Exception | None = None
    for candidate in candidates:
        try:
            return converter.structure(value, candidate)
        except Exception as exc:  # noqa: BLE001
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return value  # reported by the field's type check


converter.register_structure_hook_func(
    lambda t: typing.get_origin(t) in (Union, types.UnionType), _structure_union
)


def _check_keys(data: Mapping[str, Any]) -> None:
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise NipConfigError(
            [ConfigProblem(str(k), "keys must be strings", k) for k in bad]
        )


def _structure_parameters(value: Any, cls: type) -> Any:
    if type(value) is cls:
        return value
    if isinstance(value, BaseHyperParameters):
        raise _fail(f"expected {cls.__name__}, got {type(value).__name__}", value)
    if not isinstance(value, Mapping):
        raise _fail(f"expected a mapping of {cls.__name__} fields", value)
    _check_keys(value)
    data = dict(value)
    if issubclass(cls, AgentParameters) and "is_random" in data:
        is_random = data.pop("is_random")
        if not isinstance(is_random, bool):
            raise _fail("expected true or false", is_random, "is_random")
        if is_random and not cls.is_random:
            if cls is not AgentParameters:
                raise _fail(
                    f"{cls.__name__} is not a random agent; build random agents "
                    "through the agents mapping",
                    is_random,
                    "is_random",
                )
            cls = RandomAgentParameters
        elif not is_random and cls.is_random:
            raise _fail(f"{cls.__name__} is always random", is_random, "is_random")
    return cls(**data)


def _structure_schedule(value: Any, cls: type) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, AgentUpdateSchedule):
        raise _fail(f"expected {cls.__name__}, got {type(value).__name__}", value)
    known = schedule_types()
    usable = sorted(name for name, c in known.items() if issubclass(c, cls))
    if not isinstance(value, Mapping):
        raise _fail(
            "expected a mapping naming the schedule class in '_type'", value, "", usable
        )
    _check_keys(value)
    data = dict(value)
    name = data.pop(AgentUpdateSchedule.TYPE_KEY, None)
    if name is None:
        if cls is AgentUpdateSchedule:
            raise _fail("the schedule class is required", None, "_type", usable)
        schedule_cls = cls
    elif name not in known or not issubclass(known[name], cls):
        message = "unknown update schedule"
        suggestion = closest(str(name), usable)
        if suggestion:
            message += f"; did you mean {suggestion!r}?"
        raise _fail(message, name, "_type", usable)
    else:
        schedule_cls = known[name]
    return schedule_cls(**data)


def _structure_hyper_parameters(value: Any, cls: type) -> Any:
    if isinstance(value, cls):
        return value
    return cls.from_dict(value)


converter.register_structure_hook_func(_is_parameters_class, _structure_parameters)
converter.register_structure_hook_func(_is_schedule_class, _structure_schedule)
converter.register_structure_hook_func(
    _is_hyper_parameters, _structure_hyper_parameters
)


def structure(data: Any, cls: Any) -> Any:
    """Build an object of type ``cls`` from plain data, validating it.

    Raises
    ------
    NipConfigError
        Listing every problem found, each with its dotted path.
    """
    try:
        return converter.structure(data, cls)
    except NipConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        raise NipConfigError(problems_from_exception(exc)) from exc


def structure_agent(value: Any, agent_class: type[AgentParameters]) -> AgentParameters:
    """Build one agent's parameters for a scenario whose class is ``agent_class``.

    A mapping with ``"is_random": true`` gives :class:`RandomAgentParameters`; any
    other mapping gives ``agent_class``. Objects must be of exactly one of these
    classes, so that ``to_dict`` / ``from_dict`` give them back unchanged.
    """
    if isinstance(value, AgentParameters):
        if type(value) in (agent_class, RandomAgentParameters):
            return value
        raise _fail(
            f"expected {agent_class.__name__} (the scenario's agent parameters) or "
            f"RandomAgentParameters, got {type(value).__name__}",
            value,
        )
    if not isinstance(value, Mapping):
        raise _fail(f"expected a mapping of {agent_class.__name__} fields", value)
    _check_keys(value)
    data = dict(value)
    is_random = data.pop("is_random", False)
    if not isinstance(is_random, bool):
        raise _fail("expected true or false", is_random, "is_random")
    if is_random:
        # the scenario's own fields (a model, a network's shape) mean nothing to
        # a random agent: say so, rather than "unknown key" with the common
        # fields as the choices
        common = {f.alias for f in attrs.fields(RandomAgentParameters) if f.init}
        own = {f.alias for f in attrs.fields(agent_class) if f.init} - common
        refused = [key for key in data if key in own]
        if refused:
            problems = [
                ConfigProblem(
                    key,
                    f"a random agent (is_random: true) has no {key}: it is a "
                    f"setting of {agent_class.__name__}; remove it, or set "
                    "is_random: false",
                    data.pop(key),
                )
                for key in refused
            ]
            try:
                RandomAgentParameters(**data)
            except NipConfigError as error:
                problems.extend(error.problems)
            raise NipConfigError(problems)
    return (RandomAgentParameters if is_random else agent_class)(**data)


def structure_agents(
    value: Any, agent_class: type[AgentParameters], *, warn_defaults: bool = True
) -> AgentsParameters:
    """Build the ``agents`` mapping for a scenario whose class is ``agent_class``.

    ``None`` gives ``{"_default": agent_class()}``. Every agent's problems are
    gathered, with paths ``<agent name>.<field>``.
    """
    if value is None:
        return AgentsParameters({DEFAULT_AGENT_KEY: agent_class()})
    if not isinstance(value, Mapping):
        raise _fail("expected a mapping from agent names to agent parameters", value)
    agents = AgentsParameters()
    problems: list[ConfigProblem] = []
    for name, agent in dict.items(value) if isinstance(value, dict) else value.items():
        if not isinstance(name, str):
            problems.append(
                ConfigProblem(str(name), "agent names must be strings", name)
            )
            continue
        try:
            agents[name] = structure_agent(agent, agent_class)
        except NipConfigError as exc:
            problems.extend(prefixed(exc.problems, name))
    if problems:
        raise NipConfigError(problems)
    if warn_defaults:
        warn_defaults_not_inherited(value, agents, agent_class)
    return agents


def warn_defaults_not_inherited(
    value: Mapping,
    agents: AgentsParameters,
    agent_class: type[AgentParameters],
    *,
    stacklevel: int = 3,
) -> None:
    """Warn where a named agent leaves out a field ``_default`` sets.

    ``_default`` applies to the agents *not named*; a named agent takes the class's
    default for every field it leaves out, not ``_default``'s value. When
    ``_default`` was given as a mapping that sets a field to something other than the
    class's default and a named agent (also a mapping) leaves that field out, the
    named agent silently differs from ``_default`` there: say so, naming the paths.
    Saved configs list every field of every agent, so they never warn; nor does an
    agent with ``use_manual_architecture`` (it reads none of the network's fields).
    """
    given_default = value.get(DEFAULT_AGENT_KEY)
    default = dict.get(agents, DEFAULT_AGENT_KEY)
    if not isinstance(given_default, Mapping) or type(default) is not agent_class:
        return
    try:
        class_default = agent_class()
    except Exception:  # noqa: BLE001 - a class with required fields: no baseline
        return
    field_names = {f.alias: f.name for f in attrs.fields(agent_class) if f.init}
    differing = [
        key
        for key, name in ((key, field_names.get(key)) for key in given_default)
        if name is not None and getattr(default, name) != getattr(class_default, name)
    ]
    if not differing:
        return
    lines = []
    for name, given in value.items():
        agent = dict.get(agents, name)
        if (
            name == DEFAULT_AGENT_KEY
            or not isinstance(given, Mapping)
            or type(agent) is not agent_class
            or agent.use_manual_architecture
        ):
            continue
        for key in differing:
            if key not in given:
                lines.append(
                    f"agents.{name}.{key} is {getattr(agent, field_names[key])!r} "
                    f"(the class's default), not agents._default.{key}="
                    f"{getattr(default, field_names[key])!r}"
                )
    if lines:
        import warnings

        from nip_core.errors import ParameterWarning

        warnings.warn(
            "agents._default applies only to agents that are not named; "
            + "; ".join(lines)
            + ". Set the field on the named agent too (or leave the agent out) "
            "if it should share _default's value.",
            ParameterWarning,
            stacklevel=stacklevel,
        )


# --------------------------------------------------------------------------------------
# Unstructuring
# --------------------------------------------------------------------------------------


def _unstructure_parameters(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, AgentParameters):
        out["is_random"] = obj.is_random
    for f in attrs.fields(type(obj)):
        if f.init:
            out[f.alias] = converter.unstructure(getattr(obj, f.name))
    return out


def _unstructure_schedule(obj: AgentUpdateSchedule) -> dict[str, Any]:
    out: dict[str, Any] = {AgentUpdateSchedule.TYPE_KEY: type(obj).__name__}
    for f in attrs.fields(type(obj)):
        out[f.alias] = converter.unstructure(getattr(obj, f.name))
    return out


def _unstructure_agents(obj: AgentsParameters) -> dict[str, Any]:
    return {name: converter.unstructure(agent) for name, agent in dict.items(obj)}


converter.register_unstructure_hook_func(
    lambda t: isinstance(t, type) and issubclass(t, tuple),
    lambda t: list(map(converter.unstructure, t)),
)
converter.register_unstructure_hook_func(_is_parameters_class, _unstructure_parameters)
converter.register_unstructure_hook_func(_is_schedule_class, _unstructure_schedule)
converter.register_unstructure_hook(AgentsParameters, _unstructure_agents)
converter.register_unstructure_hook_func(
    _is_hyper_parameters, lambda obj: obj.to_dict()
)


def unstructure(obj: Any) -> Any:
    """Turn parameter objects into plain, JSON-ready data (dicts, lists, scalars)."""
    return converter.unstructure(obj)
