"""Malformed values for every field of a parameter class, as Hydra overrides.

A parameter class promises one clear error, with the field's dotted path, for any bad
value. :func:`field_cases` walks a class (nested parameter classes included) and
makes, for every field, the bad values its kind invites: a string for a number,
``nan`` and ``inf`` for a float, a too-large integer, ``maybe`` for a flag, a value
outside a ``Literal``'s choices, a number just outside an attrs range validator, an
unknown key for a nested class. Each :class:`MalformedCase` is an override
(``rl.lr=nan``) and the path the error must name (``rl.lr``).

A plugin checks its own parameter section with :func:`assert_section_refused`, which
needs no config of the plugin's: it applies the case to a small valid experiment of
the core's synthetic test scenario and validates it as ``nip run`` does::

    from nip_core.testing.configs import config_app
    from nip_core.testing.malformed import assert_section_refused, field_cases

    import my_plugin.plugin

    CASES = field_cases(MySectionParameters, "my_section")

    def test_every_bad_value_is_one_clear_error(register_plugin):
        register_plugin(my_plugin.plugin, name="my_plugin")
        with config_app() as app:
            for case in CASES:
                assert_section_refused(case, app=app)

Fields that only a config of the plugin's can reach (its scenario's agents,
``agents._default``) go through :func:`assert_refused` with one of its experiment
configs::

    for case in field_cases(MyAgentParameters, "agents._default"):
        assert_refused(case, "my_plugin/fast", app=app)

Both compose the config with the case's override as ``nip run`` does and check that
it is refused with one error naming the case's path; ``case.override`` and
``case.path`` are there to write the check yourself.

This module imports neither torch nor pytest.
"""

from __future__ import annotations

import collections.abc
import contextlib
import math
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal, Union

import attrs

__all__ = [
    "SECTION_CHECK_CONFIG",
    "SECTION_CHECK_OVERRIDES",
    "MalformedCase",
    "assert_refused",
    "assert_section_refused",
    "bad_values",
    "field_cases",
]

TOO_LARGE = "99999999999999999999"
"""An integer beyond torch's int64, as override text."""

SECTION_CHECK_CONFIG = "base"
"""The core's config :func:`assert_section_refused` composes (every experiment's
base: the run settings, no scenario)."""

SECTION_CHECK_OVERRIDES: tuple[str, ...] = (
    "scenario=synthetic",
    "trainer=reinforce",
    "interaction_protocol=nip",
)
"""What makes :data:`SECTION_CHECK_CONFIG` a valid experiment with nip-core alone:
the synthetic test scenario (:mod:`nip_core.testing.synthetic`), the core's
``reinforce`` trainer and the ``nip`` protocol, every section at its defaults."""


@attrs.frozen
class MalformedCase:
    """One bad value for one field.

    Parameters
    ----------
    override : str
        The Hydra override that sets it (``"rl.lr=nan"``).
    path : str
        The dotted path the error must name.
    kind : str
        What is wrong, in a word or two (``"float: nan"``); for test ids.
    """

    override: str
    path: str
    kind: str

    def __str__(self) -> str:
        return self.override


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """The annotation without ``Annotated`` and ``None``; whether None is allowed."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) == 1:
            inner, inner_optional = _unwrap(args[0])
            return inner, optional or inner_optional
        return typing.Union[tuple(args)], optional  # noqa: UP007
    return tp, False


def _number_bounds(validator: Any) -> list[tuple[str, float]]:
    """``(operator, bound)`` of the attrs range validators in ``validator``."""
    if validator is None:
        return []
    found: list[tuple[str, float]] = []
    inner = getattr(validator, "inner", None)
    if inner is not None or type(validator).__name__ == "_CheckedValidator":
        return _number_bounds(inner)
    if isinstance(validator, list | tuple):
        for item in validator:
            found += _number_bounds(item)
        return found
    for attribute in ("_validators", "validators"):
        children = getattr(validator, attribute, None)
        if isinstance(children, tuple | list):
            for child in children:
                found += _number_bounds(child)
            return found
    wrapped = getattr(validator, "validator", None)
    if wrapped is not None and type(validator).__name__ == "_OptionalValidator":
        return _number_bounds(wrapped)
    op = getattr(validator, "compare_op", None)
    bound = getattr(validator, "bound", None)
    if op in (">=", ">", "<=", "<") and isinstance(bound, int | float):
        found.append((op, bound))
    return found


def _outside(op: str, bound: float, integer: bool) -> Any:
    """A number that breaks ``value <op> bound``."""
    if op in (">", "<"):
        return bound
    step = 1 if integer else (abs(bound) * 0.5 or 0.5)
    return bound - step if op == ">=" else bound + step


def _text(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_parameters_class(tp: Any) -> bool:
    from nip_core.parameters.base import BaseHyperParameters

    return isinstance(tp, type) and issubclass(tp, BaseHyperParameters)


def bad_values(attribute: attrs.Attribute) -> list[tuple[str, str]]:
    """Bad values for one attrs field, as ``(override value text, kind)``.

    Empty for fields whose annotation gives nothing to go wrong (``Any``).
    """
    from nip_core.parameters.validation import NONFINITE_ALLOWED

    tp, _ = _unwrap(attribute.type)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    cases: list[tuple[str, str]] = []
    if tp is bool:
        return [("maybe", "bool: a word"), ("2", "bool: a number")]
    if tp is int or tp is float:
        integer = tp is int
        cases.append(("abc", f"{tp.__name__}: a word"))
        cases.append(("[1,2]", f"{tp.__name__}: a list"))
        if integer:
            cases.append((TOO_LARGE, "int: beyond int64"))
            cases.append(("1.5", "int: a fraction"))
            cases.append(("true", "int: a flag"))
        elif NONFINITE_ALLOWED not in attribute.metadata:
            cases.append(("nan", "float: nan"))
            cases.append(("inf", "float: infinity"))
            cases.append(("-inf", "float: minus infinity"))
        for op, bound in _number_bounds(attribute.validator):
            value = _outside(op, bound, integer)
            cases.append((_text(value), f"{tp.__name__}: {op} {bound} broken"))
        return cases
    if tp is str:
        return [("[a,b]", "str: a list"), ("{a:1}", "str: a mapping")]
    if origin is Literal:
        return [("not_a_choice", "choice: unknown"), ("[a]", "choice: a list")]
    if origin is tuple or origin is list:
        element = args[0] if args else Any
        element, _ = _unwrap(element)
        cases.append(("{a:1}", "list: a mapping"))
        if element in (int, float):
            cases.append(("[abc]", "list: a word for a number"))
        elif element is str:
            cases.append(("[[1]]", "list: a list for a string"))
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            cases.append(
                ("[" + ",".join(["0"] * (len(args) + 1)) + "]", "tuple: length")
            )
        return cases
    if origin in (Union, types.UnionType):
        # several types allowed (float | bool): a word fits none of them
        if all(a in (int, float, bool) for a in args):
            return [("abc", "number or flag: a word")]
        return []
    if _is_parameters_class(tp):
        return [("5", "section: a number")]
    return cases


def field_cases(
    cls: type, prefix: str, *, exclude: collections.abc.Container[str] = ()
) -> list[MalformedCase]:
    """Bad-value cases for every field of the parameter class ``cls``.

    Nested parameter classes are walked (their fields get cases, and an unknown key
    one of its own); fields named in ``exclude`` (dotted, relative to ``cls``) are
    skipped.

    Parameters
    ----------
    cls : type
        A :func:`~nip_core.parameters.parameters_class` class.
    prefix : str
        The dotted path of ``cls`` in a config (``"rl"``,
        ``"agents._default"``).
    exclude : Container[str]
        Fields not to make cases for.
    """
    from nip_core.parameters.update_schedule import AgentUpdateSchedule
    from nip_core.parameters.validation import resolved_fields

    cases: list[MalformedCase] = []
    cases.append(
        MalformedCase(f"{prefix}.no_such_field=1", f"{prefix}.no_such_field", "key")
    )
    for attribute in resolved_fields(cls):
        if not attribute.init or attribute.alias.startswith("_"):
            continue
        name = attribute.alias
        if name in exclude:
            continue
        path = f"{prefix}.{name}"
        tp, _ = _unwrap(attribute.type)
        if isinstance(tp, type) and issubclass(tp, AgentUpdateSchedule):
            cases.append(
                MalformedCase(f"{path}={{_type:NoSuchSchedule}}", path, "schedule")
            )
            continue
        for text, kind in bad_values(attribute):
            cases.append(MalformedCase(f"{path}={text}", path, kind))
        if _is_parameters_class(tp):
            nested_exclude = {
                item.split(".", 1)[1]
                for item in exclude
                if isinstance(item, str) and item.startswith(f"{name}.")
            }
            cases += field_cases(tp, path, exclude=nested_exclude)
    return cases


def names_path(path: str, expected: str) -> bool:
    """Whether a problem at ``path`` is about ``expected`` (itself, or inside it)."""
    return (
        path == expected
        or path.startswith(f"{expected}.")
        or path.startswith(f"{expected}[")
    )


def assert_refused(case: MalformedCase, config_name: str, *, app: Any = None) -> None:
    """Compose ``config_name`` with the case's override as ``nip run`` does, and
    check that it is refused with one :class:`~nip_core.errors.NipConfigError` that
    names the case's path and holds no traceback.

    For a field of a parameter section, :func:`assert_section_refused` needs no
    config of one's own.

    Parameters
    ----------
    case : MalformedCase
        The bad value.
    config_name : str
        A valid config the override is applied to, as ``nip run -c`` takes it
        (``"my_plugin/fast"``).
    app : Hydra application, optional
        From :func:`nip_core.testing.configs.config_app`, to compose many cases
        with one application.
    """
    from nip_core.testing.configs import compose_experiment

    _check_refused(
        case,
        lambda: compose_experiment(config_name, *case.override.split(" "), app=app),
    )


def assert_section_refused(case: MalformedCase, *, app: Any = None) -> None:
    """Check that ``nip run`` refuses the case's override of a parameter section
    with one :class:`~nip_core.errors.NipConfigError` about the case's path and
    nothing else, and holds no traceback.

    The override is applied to a small valid experiment that nip-core alone makes
    (:data:`SECTION_CHECK_CONFIG` with :data:`SECTION_CHECK_OVERRIDES`: the core's
    ``base`` config, the synthetic test scenario, the ``reinforce`` trainer),
    composed with Hydra and validated as ``nip run`` validates it, so a plugin
    checks its section's fields without an experiment config of its own. Every
    registered section is part of every experiment, so the plugin that registers
    the section (``register_plugin`` in a test) is all it needs. The synthetic
    scenario is registered for the check when no scenario of that name is (and
    unregistered after).

    Parameters
    ----------
    case : MalformedCase
        A bad value of a section's field, from :func:`field_cases`
        (``field_cases(MySectionParameters, "my_section")``).
    app : Hydra application, optional
        From :func:`nip_core.testing.configs.config_app`, to compose many cases
        with one application.
    """
    from nip_core.testing.configs import compose_experiment

    overrides = (*SECTION_CHECK_OVERRIDES, *case.override.split(" "))
    with _synthetic_scenario_registered():
        _check_refused(
            case,
            lambda: compose_experiment(SECTION_CHECK_CONFIG, *overrides, app=app),
            only_its_path=True,
        )


@contextlib.contextmanager
def _synthetic_scenario_registered() -> Iterator[None]:
    """The synthetic scenario in the process-wide plugin manager for the block."""
    from nip_core.plugins import get_plugin_manager
    from nip_core.testing.synthetic import SCENARIO_NAME, SYNTHETIC_PLUGIN

    manager = get_plugin_manager()
    if SCENARIO_NAME in manager.registry("scenario"):
        yield
        return
    name = manager.register(SYNTHETIC_PLUGIN, name=SCENARIO_NAME)
    try:
        yield
    finally:
        if manager.has_plugin(name):
            manager.unregister(name)


def _check_refused(
    case: MalformedCase, compose: Callable[[], Any], *, only_its_path: bool = False
) -> None:
    """Run ``compose``; check it raises the one error ``case`` promises."""
    from nip_core.errors import NipConfigError

    try:
        compose()
    except NipConfigError as error:
        paths = [problem.path for problem in error.problems]
        if case.path and not any(names_path(path, case.path) for path in paths):
            raise AssertionError(
                f"{case.override}: expected a problem at {case.path!r}, got {error}"
            ) from error
        if only_its_path:
            # a problem about the field, the field's section, or inside the field
            others = [
                problem
                for problem in error.problems
                if not (
                    names_path(problem.path, case.path)
                    or names_path(case.path, problem.path)
                )
            ]
            if others:
                raise AssertionError(
                    f"{case.override}: refused, but also for what it does not "
                    "touch (the experiment it is applied to must be valid "
                    "without it): " + "; ".join(p.format() for p in others)
                ) from error
        if "Traceback" in str(error):
            raise AssertionError(f"{case.override}: a traceback in {error}") from error
        return
    raise AssertionError(f"{case.override} was accepted")
