"""Checking parameter values and gathering every problem into one error.

Parameter classes (see :func:`nip_core.parameters.base.parameters_class`) check each
field twice: against its type annotation (:func:`type_problem`) and with its attrs
validators. Construction does not stop at the first failure: while a
:func:`collecting` block is active, failing fields are recorded as
:class:`~nip_core.errors.ConfigProblem` records, and the constructor raises one
:class:`~nip_core.errors.NipConfigError` listing all of them. Outside construction (an
assignment), a failure raises at once.
"""

from __future__ import annotations

import collections.abc
import difflib
import math
import re
import threading
import types
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, Union

import attrs

from nip_core.errors import NO_VALUE, ConfigProblem, NipConfigError

__all__ = [
    "CHOICES",
    "MAX_INT",
    "MIN_INT",
    "NONFINITE_ALLOWED",
    "ValueProblem",
    "active_collector",
    "clean_message",
    "collecting",
    "closest",
    "describe_type",
    "join_path",
    "nonfinite_allowed",
    "numeric_problem",
    "prefixed",
    "problem_from_validator_error",
    "problems_from_exception",
    "resolved_fields",
    "type_problem",
    "unknown_key_problem",
]


class ValueProblem(ValueError):
    """Raised by a validator to report a problem with choices attached.

    Parameters
    ----------
    message : str
        What is wrong, without the field name (the path says where).
    choices : Iterable[str]
        The valid choices, when they are a finite set.
    """

    def __init__(self, message: str, choices: Iterable[str] = ()):
        super().__init__(message)
        self.message = message
        self.choices = tuple(str(c) for c in choices)


# --------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------


def join_path(prefix: str, path: str) -> str:
    """Join two dotted paths; an index path (``"[0]"``) attaches without a dot."""
    if not prefix:
        return path
    if not path:
        return prefix
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


def prefixed(problems: Iterable[ConfigProblem], prefix: str) -> list[ConfigProblem]:
    """The problems with ``prefix`` put in front of their paths."""
    return [attrs.evolve(p, path=join_path(prefix, p.path)) for p in problems]


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key most like ``key``, if one is close enough to suggest."""
    known = list(known)
    lowered = {k.lower(): k for k in known}
    if key.lower() in lowered:
        return lowered[key.lower()]
    matches = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_problem(
    path: str, key: str, known: Iterable[str], what: str = "key"
) -> ConfigProblem:
    """A problem for an unknown key, suggesting the closest known one."""
    known = sorted(known)
    message = f"unknown {what}"
    suggestion = closest(key, known) if isinstance(key, str) else None
    if suggestion is not None:
        message += f"; did you mean {suggestion!r}?"
        known = []
    return ConfigProblem(
        path=join_path(path, str(key)), message=message, choices=tuple(known)
    )


# --------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------

_resolved: set[type] = set()
_resolve_lock = threading.Lock()


def resolved_fields(cls: type) -> tuple[attrs.Attribute, ...]:
    """The attrs fields of ``cls`` with string annotations resolved to types.

    Annotations that cannot be resolved (names only imported under
    ``TYPE_CHECKING``) stay strings; :func:`type_problem` accepts anything for them.
    """
    if cls not in _resolved:
        with _resolve_lock:
            try:
                attrs.resolve_types(cls)
            except Exception:  # noqa: BLE001 - an unresolvable hint disables checks
                pass
            _resolved.add(cls)
    return attrs.fields(cls)


def _literal_text(value: Any) -> str:
    return "null" if value is None else repr(value)


def describe_type(tp: Any, *, choices_listed: bool = False) -> str:
    """A short human description of a type annotation: ``"int or null"``.

    ``choices_listed``: the ``Literal`` values are listed elsewhere (a problem's
    valid choices), so a ``Literal`` is "one of the valid choices"."""
    if tp is type(None) or tp is None:
        return "null"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return describe_type(args[0], choices_listed=choices_listed)
    if origin is Literal:
        if choices_listed:
            return "one of the valid choices"
        return "one of " + ", ".join(_literal_text(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(
            describe_type(a, choices_listed=choices_listed) for a in args
        )
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _list_of(args[0])
        return f"a list of {len(args)} items"
    if origin in (list, collections.abc.Sequence):
        return _list_of(args[0]) if args else "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
    }
    if tp in names:
        return names[tp]
    # a class may say how it is written in a config (update schedules)
    described = getattr(tp, "config_type_description", None)
    if isinstance(tp, type) and callable(described):
        return str(described())
    return getattr(tp, "__name__", str(tp))


_PLURALS = {
    bool: "true or false values",
    int: "integers",
    float: "numbers",
    str: "strings",
}


def _list_of(tp: Any) -> str:
    """``"a list of strings"``; ``"a list whose items are one of a, b"``."""
    if tp in _PLURALS:
        return f"a list of {_PLURALS[tp]}"
    return f"a list whose items are {describe_type(tp)}"


def _choices_of(tp: Any) -> tuple[str, ...]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _choices_of(args[0])
    if origin is Literal:
        return tuple(str(a) for a in args)
    if origin in (Union, types.UnionType):
        found: list[str] = []
        for a in args:
            found.extend(_choices_of(a))
        return tuple(found)
    choices = getattr(tp, "config_choices", None)
    if isinstance(tp, type) and callable(choices):
        return tuple(choices())
    return ()


def _matches(value: Any, tp: Any) -> bool:
    """Whether ``value`` is an instance of the annotation ``tp`` (best effort)."""
    if tp is Any or tp is object or isinstance(tp, str | typing.TypeVar):
        return True
    if tp is type(None) or tp is None:
        return value is None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _matches(value, args[0])
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        if not args:
            return True
        return len(value) == len(args) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin in (list, set, frozenset):
        if not isinstance(value, origin):
            return False
        return not args or all(_matches(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, collections.abc.Mapping):
            return False
        if len(args) != 2:
            return True
        return all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    if origin is not None:
        try:
            return isinstance(value, origin)
        except TypeError:
            return True
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def type_problem(value: Any, tp: Any) -> ValueProblem | None:
    """Check ``value`` against the annotation ``tp``.

    Returns
    -------
    ValueProblem | None
        ``None`` when the value matches; otherwise the problem, with the choices of
        ``Literal`` annotations.
    """
    if _matches(value, tp):
        return None
    choices = _choices_of(tp)
    return ValueProblem(
        f"expected {describe_type(tp, choices_listed=bool(choices))}", choices
    )


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------

MAX_INT = 2**63 - 1
"""The largest integer a parameter may hold: torch's (and NumPy's) ``int64``."""

MIN_INT = -(2**63)
"""The smallest integer a parameter may hold."""

CHOICES = "nip_choices"
"""The attrs metadata key of a field's valid values, as shown in its error messages
when they are not a ``Literal`` (``("cpu", "cuda", "cuda:<index>")``)."""

NONFINITE_ALLOWED = "nip_nonfinite_allowed"
"""The attrs metadata key of a float field for which ``inf`` (or ``nan``) means
something; its value says what, for the docs."""


def nonfinite_allowed(meaning: str) -> dict[str, Any]:
    """Field metadata: this float field accepts ``inf`` / ``nan``, which mean
    ``meaning``.

    Every other float field of a parameter class refuses non-finite values.
    Use as ``field(default=1.0, metadata=nonfinite_allowed("no clipping"))``.
    """
    return {NONFINITE_ALLOWED: meaning}


def numeric_problem(value: Any, allow_nonfinite: bool = False) -> ValueProblem | None:
    """Check the numbers in ``value`` (a number, or a list / mapping of them).

    Floats must be finite (unless ``allow_nonfinite``): a ``nan`` learning rate
    or an infinite reward trains silently into garbage. Integers must fit in 64
    bits, the widest integer torch holds: a larger one ends in an overflow deep in
    C++ code.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not allow_nonfinite and not math.isfinite(value):
            return ValueProblem("must be a finite number, not nan or infinity")
        return None
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            return ValueProblem(
                "is too large: integers must lie between -2**63 and 2**63 - 1 "
                "(torch's int64)"
            )
        return None
    if isinstance(value, list | tuple):
        items = value
    elif isinstance(value, collections.abc.Mapping):
        items = value.values()
    else:
        return None
    for item in items:
        problem = numeric_problem(item, allow_nonfinite)
        if problem is not None:
            return problem
    return None


# --------------------------------------------------------------------------------------
# Collecting problems
# --------------------------------------------------------------------------------------

_state = threading.local()


def _stack() -> list[list[ConfigProblem]]:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


@contextmanager
def collecting() -> Iterator[list[ConfigProblem]]:
    """Record field problems in the yielded list instead of raising them.

    Nested blocks collect separately: each constructor records its own fields.
    """
    problems: list[ConfigProblem] = []
    stack = _stack()
    stack.append(problems)
    try:
        yield problems
    finally:
        stack.pop()


def active_collector() -> list[ConfigProblem] | None:
    """The list problems go to, or ``None`` when they must be raised."""
    stack = _stack()
    return stack[-1] if stack else None


_ATTRS_PREFIX = re.compile(r"^'?(?P<name>\w+)'?\s+(?=must|should|is|has|cannot|can't)")


def clean_message(message: str, field_name: str) -> str:
    """Strip the field name attrs and hand-written validators put in front."""
    match = _ATTRS_PREFIX.match(message)
    if match and match.group("name") == field_name:
        message = message[match.end() :]
    return message


def problem_from_validator_error(
    exc: Exception, field_name: str, value: Any
) -> ConfigProblem:
    """Turn an exception raised by a validator of ``field_name`` into a problem."""
    if isinstance(exc, NipConfigError):
        # A validator that builds nested parameters reports nested paths.
        raise exc
    choices: tuple[str, ...] = ()
    if isinstance(exc, ValueProblem):
        return ConfigProblem(field_name, exc.message, value, exc.choices)
    args = exc.args
    # attrs.validators.in_ raises ValueError(message, attribute, options, value)
    if isinstance(exc, ValueError) and len(args) == 4:
        try:
            choices = tuple(str(c) for c in args[2])
        except TypeError:
            choices = ()
        message = "must be one of the valid choices"
    else:
        message = str(args[0]) if args else type(exc).__name__
        message = clean_message(message, field_name)
        # the value is shown once, by the problem: not also by the message
        for shown in (
            f": {value!r}",
            f": {value}",
            f", got {value!r}",
            f", got {value}",
        ):
            if message.endswith(shown):
                message = message[: -len(shown)]
                break
    return ConfigProblem(field_name, message, value, choices)


def problems_from_exception(exc: BaseException) -> list[ConfigProblem]:
    """Turn an exception raised while building parameters into problems.

    :class:`NipConfigError` gives its problems; cattrs validation errors are walked
    into one problem per leaf with its path; anything else becomes one problem.
    """
    if isinstance(exc, NipConfigError):
        return list(exc.problems)
    try:
        from cattrs.errors import BaseValidationError
        from cattrs.v import transform_error
    except ImportError:  # pragma: no cover - cattrs is a dependency
        BaseValidationError = ()  # type: ignore[assignment]  # noqa: N806
    if BaseValidationError and isinstance(exc, BaseValidationError):
        problems = []
        for line in transform_error(exc, path=""):
            message, _, where = line.rpartition(" @ ")
            problems.append(ConfigProblem(where.lstrip(".$"), message or line))
        return problems
    if isinstance(exc, ValueProblem):
        return [ConfigProblem("", exc.message, NO_VALUE, exc.choices)]
    text = str(exc) or type(exc).__name__
    return [ConfigProblem("", text)]
