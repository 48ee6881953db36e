"""The ``base_run`` section: basing an experiment on a previous run.

A run can copy the hyper-parameters of a previous run (``"parameters"``), or re-run
its tests with new test settings (``"rerun_tests"``). Fields marked with
:func:`base_run_preserve` keep the *current* value when the rest is copied from the
base run; :func:`preserved_paths` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from nip_core.errors import ConfigProblem
from nip_core.parameters.base import SubParameters, parameters_class

__all__ = [
    "BASE_RUN_PRESERVE",
    "BaseRunParameters",
    "BaseRunType",
    "RESUME",
    "base_run_preserve",
    "preserved_paths",
    "resume_overridable",
]

BaseRunType = Literal["none", "parameters", "rerun_tests"]
"""How a run is based on a previous one."""

BASE_RUN_PRESERVE = "nip_base_run_preserve"
"""The attrs metadata key listing the base-run types that keep a field's value."""


def base_run_preserve(*base_run_types: str) -> dict[str, Any]:
    """Field metadata: keep this field's current value for these base-run types.

    Use as ``field(default=10, metadata=base_run_preserve("rerun_tests"))``.
    """
    return {BASE_RUN_PRESERVE: tuple(base_run_types)}


RESUME = "resume"
"""The pseudo base-run type of fields ``nip resume --set`` may change."""


def resume_overridable() -> dict[str, Any]:
    """Field metadata: ``nip resume RUN --set PATH=VALUE`` may change this field.

    For settings of *how* a run reaches its services (an endpoint's URL, timeouts,
    retries), never of *what* the experiment is: a text run whose vLLM server moved
    can go on. :func:`preserved_paths` with :data:`RESUME` lists them.
    """
    return base_run_preserve(RESUME)


def preserved_paths(params: Any, base_run_type: str, prefix: str = "") -> list[str]:
    """Dotted paths of the fields of ``params`` preserved for ``base_run_type``.

    Walks nested parameter objects (sections of a ``HyperParameters``, agents).
    """
    from nip_core.parameters.agents import AgentsParameters
    from nip_core.parameters.hyper_parameters import HyperParameters

    found: list[str] = []
    if isinstance(params, AgentsParameters):
        for name, agent in params.items():
            found.extend(preserved_paths(agent, base_run_type, f"{prefix}{name}."))
        return found
    if not attrs.has(type(params)):
        return found
    for f in attrs.fields(type(params)):
        if base_run_type in f.metadata.get(BASE_RUN_PRESERVE, ()):
            found.append(prefix + f.name)
        value = getattr(params, f.name)
        if attrs.has(type(value)) or isinstance(value, AgentsParameters):
            found.extend(preserved_paths(value, base_run_type, f"{prefix}{f.name}."))
    if isinstance(params, HyperParameters):
        for name, section in params.sections.items():
            found.extend(preserved_paths(section, base_run_type, f"{prefix}{name}."))
    return found


@parameters_class
class BaseRunParameters(SubParameters):
    """Parameters for basing this experiment on a previous run (``base_run``).

    Parameters
    ----------
    base_run_type : {"none", "parameters", "rerun_tests"}
        ``"none"``: a fresh experiment. ``"parameters"``: copy the hyper-parameters
        of the base run. ``"rerun_tests"``: re-run the base run's tests, with the
        test settings of this configuration.
    run_id : str | None
        The base run; required unless ``base_run_type`` is ``"none"``.
    source : {"local", "wandb"}
        Where the base run is: a local run directory, or a W&B run.
    wandb_project : str
        The W&B project of the base run; empty for the default project.
    wandb_entity : str
        The W&B entity of the base run; empty for the default entity.
    """

    retired_keys: ClassVar[Mapping[str, str]] = {
        "rerun_tests_force_test_during_training_state": "the original library's "
        "key; runs now always record their test state, remove it"
    }

    base_run_type: BaseRunType = "none"
    run_id: str | None = None
    source: Literal["local", "wandb"] = "local"
    wandb_project: str = ""
    wandb_entity: str = ""

    def consistency_problems(self) -> list[ConfigProblem]:
        if self.base_run_type != "none" and not self.run_id:
            return [
                ConfigProblem(
                    "run_id",
                    f"is required when base_run_type is {self.base_run_type!r}",
                    self.run_id,
                )
            ]
        return []
