"""Base classes of the hyper-parameter tree.

Every section of :class:`~nip_core.parameters.HyperParameters` is an attrs class that
subclasses :class:`SubParameters` and is declared with :func:`parameters_class`::

    from typing import Literal

    from attrs import field, validators as v
    from nip_core.parameters import SubParameters, parameters_class

    @parameters_class
    class PpoParameters(SubParameters):
        \"\"\"Parameters of PPO trainers.

        Parameters
        ----------
        num_epochs : int
            Optimisation epochs per iteration.
        loss_type : {"clip", "kl_penalty"}
            The PPO objective.
        \"\"\"

        num_epochs: int = field(default=10, validator=v.ge(1))
        loss_type: Literal["clip", "kl_penalty"] = "clip"

What :func:`parameters_class` adds to :func:`attrs.define`:

- every field is checked against its type annotation (``int`` refuses ``"3"`` and
  ``True``; ``Literal`` refuses values outside its choices and lists them), then by
  its attrs validators;
- every number is checked: floats must be finite unless the field's metadata says
  what ``inf`` / ``nan`` mean there
  (:func:`~nip_core.parameters.validation.nonfinite_allowed`), integers must fit in
  torch's ``int64``;
- construction gathers *every* problem (unknown keyword, missing value, wrong type,
  failing validator, nested problems) and raises one
  :class:`~nip_core.errors.NipConfigError` with the dotted path of each;
- a dict given for a nested parameter class (``agent_lr_factor={"actor": 0.5}``) or a
  list given for a tuple is converted, at construction and on assignment;
- assignment validates the new value and raises at once;
- :meth:`BaseHyperParameters.consistency_problems` checks combinations of fields once
  every field is valid on its own.

Parameter classes must import without torch.
"""

from __future__ import annotations

import collections.abc
import functools
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import attrs

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.parameters.validation import (
    CHOICES,
    NONFINITE_ALLOWED,
    active_collector,
    collecting,
    numeric_problem,
    prefixed,
    problem_from_validator_error,
    problems_from_exception,
    resolved_fields,
    type_problem,
    unknown_key_problem,
)

__all__ = [
    "BaseHyperParameters",
    "SubParameters",
    "Validator",
    "coerce_value",
    "get_path",
    "parameters_class",
]

T = TypeVar("T", bound=type)

Validator = Callable[[Any, attrs.Attribute, Any], None]
"""The signature of an attrs validator."""


@attrs.frozen
class _CheckedValidator:
    """Type-checks a field, then runs its own validator; records or raises."""

    inner: Validator | None = None

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        resolved_fields(type(instance))
        problems: list[ConfigProblem] = []
        wrong = type_problem(value, attribute.type) or numeric_problem(
            value, allow_nonfinite=NONFINITE_ALLOWED in attribute.metadata
        )
        if wrong is not None:
            choices = wrong.choices or tuple(attribute.metadata.get(CHOICES, ()))
            problems.append(
                ConfigProblem(attribute.name, wrong.message, value, choices)
            )
        elif self.inner is not None:
            try:
                self.inner(instance, attribute, value)
            except NipConfigError as exc:
                problems.extend(prefixed(exc.problems, attribute.name))
            except Exception as exc:  # noqa: BLE001 - any validator failure is a problem
                problems.append(
                    problem_from_validator_error(exc, attribute.name, value)
                )
        if not problems:
            return
        collector = active_collector()
        if collector is None:
            raise NipConfigError(problems)
        collector.extend(problems)


def coerce_value(value: Any, tp: Any) -> Any:
    """Convert a plain mapping or list to the annotation ``tp`` if it is not one yet.

    Used for nested parameters given as dicts and lists given for tuples; any other
    value is returned unchanged (and type-checked by the field's validator).
    """
    if isinstance(value, BaseHyperParameters | str | bytes):
        return value
    if not isinstance(value, collections.abc.Mapping | list | tuple):
        return value
    if isinstance(tp, str) or type_problem(value, tp) is None:
        return value
    from nip_core.parameters.converter import structure

    return structure(value, tp)


def _coerce_on_setattr(instance: Any, attribute: attrs.Attribute, value: Any) -> Any:
    resolved_fields(type(instance))
    try:
        return coerce_value(value, attribute.type)
    except Exception as exc:  # noqa: BLE001
        raise NipConfigError(
            prefixed(problems_from_exception(exc), attribute.name)
        ) from exc


def _check_all_fields(
    cls: type, fields: list[attrs.Attribute]
) -> list[attrs.Attribute]:
    checked = []
    for f in fields:
        if isinstance(f.validator, _CheckedValidator):
            checked.append(f)
        else:
            checked.append(f.evolve(validator=_CheckedValidator(f.validator)))
    return checked


def _wrap_init(cls: type) -> None:
    generated = cls.__init__

    @functools.wraps(generated)
    def __init__(self: Any, **kwargs: Any) -> None:  # noqa: N807
        fields = resolved_fields(type(self))
        by_alias = {f.alias: f for f in fields if f.init}
        problems: list[ConfigProblem] = []
        given: dict[str, Any] = {}
        failed_required = False
        for key, value in kwargs.items():
            attribute = by_alias.get(key)
            if attribute is None:
                problems.append(unknown_key_problem("", key, by_alias))
                continue
            try:
                given[key] = coerce_value(value, attribute.type)
            except Exception as exc:  # noqa: BLE001
                problems.extend(prefixed(problems_from_exception(exc), attribute.name))
                failed_required |= attribute.default is attrs.NOTHING
        missing = [
            alias
            for alias, attribute in by_alias.items()
            if attribute.default is attrs.NOTHING and alias not in kwargs
        ]
        problems.extend(
            ConfigProblem(alias, "a value is required") for alias in missing
        )
        if missing or failed_required:
            raise NipConfigError(problems)
        with collecting() as field_problems:
            try:
                generated(self, **given)
            except NipConfigError as exc:
                field_problems.extend(exc.problems)
            except Exception as exc:  # noqa: BLE001
                # __attrs_post_init__ may trip over a value already reported
                if not field_problems:
                    field_problems.extend(problems_from_exception(exc))
        problems.extend(field_problems)
        if not problems:
            problems.extend(self.consistency_problems())
        if problems:
            raise NipConfigError(problems)

    cls.__init__ = __init__


def parameters_class(cls: T | None = None, **define_kwargs: Any) -> Any:
    """Declare a parameter class: ``attrs.define`` with checked, keyword-only fields.

    Every field is type-checked against its annotation and validated by its attrs
    validators; construction reports every problem at once in one
    :class:`~nip_core.errors.NipConfigError`; assignment validates too. Extra keyword
    arguments go to :func:`attrs.define` (``frozen=True`` for value objects).

    Parameters
    ----------
    cls : type, optional
        The class (when used as ``@parameters_class`` without arguments).
    **define_kwargs
        Passed to :func:`attrs.define`. ``kw_only`` defaults to ``True`` and
        ``slots`` to ``False``.
    """
    define_kwargs.setdefault("kw_only", True)
    define_kwargs.setdefault("slots", False)
    user_transformer = define_kwargs.pop("field_transformer", None)

    def transformer(c: type, fields: list[attrs.Attribute]) -> list[attrs.Attribute]:
        if user_transformer is not None:
            fields = list(user_transformer(c, fields))
        return _check_all_fields(c, fields)

    define_kwargs["field_transformer"] = transformer
    if not define_kwargs.get("frozen", False):
        define_kwargs.setdefault(
            "on_setattr", [_coerce_on_setattr, attrs.setters.validate]
        )

    def wrap(c: T) -> T:
        built = attrs.define(c, **define_kwargs)
        if define_kwargs.get("init", True):
            _wrap_init(built)
        return built

    if cls is None:
        return wrap
    return wrap(cls)


def get_path(root: Any, address: str) -> Any:
    """The value at a dotted ``address`` inside parameters (``"ppo.num_epochs"``).

    Raises
    ------
    KeyError
        When a part of the address names nothing.
    """
    value = root
    walked: list[str] = []
    for part in address.split("."):
        try:
            if isinstance(value, BaseHyperParameters):
                value = value._child(part)
            elif isinstance(value, collections.abc.Mapping):
                value = value[part]
            elif attrs.has(type(value)) and part in attrs.fields_dict(type(value)):
                value = getattr(value, part)
            else:
                raise KeyError(part)
        except (KeyError, AttributeError):
            where = ".".join(walked) or "the parameters"
            raise KeyError(f"{address!r}: {where} has no {part!r}") from None
        walked.append(part)
    return value


@parameters_class
class BaseHyperParameters:
    """Base of every parameter class (sections, agent parameters, the whole tree)."""

    def to_dict(self) -> dict[str, Any]:
        """Convert to a plain, JSON-serialisable nested dict."""
        from nip_core.parameters.converter import unstructure

        return unstructure(self)

    @classmethod
    def from_dict(cls, data: collections.abc.Mapping[str, Any]) -> Any:
        """Build from a nested dict, validating it (raises ``NipConfigError``)."""
        from nip_core.parameters.converter import structure

        return structure(data, cls)

    def get(self, address: str) -> Any:
        """The value at a dot-separated address (``"lr_factor.actor"``).

        Raises
        ------
        KeyError
            When the address names nothing.
        """
        return get_path(self, address)

    def _child(self, name: str) -> Any:
        if name in attrs.fields_dict(type(self)):
            return getattr(self, name)
        raise KeyError(name)

    def consistency_problems(self) -> list[ConfigProblem]:
        """Problems with combinations of fields (each field is already valid).

        Override to check rules that involve several fields; return one
        :class:`~nip_core.errors.ConfigProblem` per broken rule, with the path of the
        field to change. Called at the end of construction.
        """
        return []

    @classmethod
    def construct_test_params(cls) -> Any:
        """Small parameters for fast tests: the defaults unless a class overrides it."""
        return cls()


@parameters_class
class SubParameters(BaseHyperParameters):
    """Base of every section of the hyper-parameter tree (``rl``, ``ppo``, ...).

    Attributes
    ----------
    moved_keys : Mapping[str, str]
        Keys the section held in an earlier version, each to a note saying where
        it went (``"nip-core 0.1.1 moved it into the scenario's own section"``).
        Given such a key, validation says so, and names every installed section
        with a field of that name, instead of reporting a plain unknown key.
        Saved parameters are converted by migrations
        (:mod:`nip_core.parameters.migrations`); this is for configs written by
        hand.
    retired_keys : Mapping[str, str]
        Keys of the original library (or an earlier version) that the section no
        longer has, each to what to write instead (``"the original library's name;
        use spg.sos_scaling_factor"``). Given such a key, validation gives that
        message instead of a plain unknown key (and no "did you mean").
    """

    moved_keys: ClassVar[collections.abc.Mapping[str, str]] = {}
    retired_keys: ClassVar[collections.abc.Mapping[str, str]] = {}

    def resolved_from_environment(self) -> SubParameters:
        """The section with what a run would otherwise read from the environment
        written in (an endpoint from ``$OPENAI_BASE_URL``), or ``self`` when
        nothing is. A new run saves the result, so that its resume reaches the same
        services whatever the environment is then. Raise
        :class:`~nip_core.errors.NipConfigError` (paths within the section) for a
        value from the environment that is not valid.
        """
        return self
