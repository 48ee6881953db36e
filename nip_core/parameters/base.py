"""Base classes of the hyper-parameter tree.

Every section of :class:`~nip_core.parameters.HyperParameters` is an attrs class that
subclasses :class:`SubParameters` and is declared with :func:`parameters_class`::

    from attrs import field, validators as v
    from nip_core.parameters import SubParameters, parameters_class

    @parameters_class
    class PpoParameters(SubParameters):
        \"\"\"Parameters of PPO trainers.

        Parameters
        ----------
        num_epochs : int
            Optimisation epochs per iteration.
        \"\"\"

        num_epochs: int = field(default=10, validator=v.ge(1))

Parameter classes must import without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

T = TypeVar("T", bound=type)


def parameters_class(cls: T | None = None, **define_kwargs: Any) -> Any:
    """Declare a parameter class: ``attrs.define`` with keyword-only fields.

    Validators run at construction and on assignment. Extra keyword arguments go to
    :func:`attrs.define`.
    """
    define_kwargs.setdefault("kw_only", True)
    define_kwargs.setdefault("slots", False)

    def wrap(c: T) -> T:
        return attrs.define(c, **define_kwargs)

    if cls is None:
        return wrap
    return wrap(cls)


@parameters_class
class BaseHyperParameters:
    """Base of every parameter class (sections, agent parameters, the whole tree)."""

    def to_dict(self) -> dict[str, Any]:
        """Convert to a plain, JSON-serialisable nested dict."""
        from nip_core.parameters.converter import unstructure

        return unstructure(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Build from a nested dict, validating it (raises ``NipConfigError``)."""
        from nip_core.parameters.converter import structure

        return structure(data, cls)


@parameters_class
class SubParameters(BaseHyperParameters):
    """Base of every section of the hyper-parameter tree (``rl``, ``ppo``, ...)."""


Validator = Callable[[Any, attrs.Attribute, Any], None]
