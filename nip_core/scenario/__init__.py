"""Base classes of scenarios: datasets, environments, agent parts, combined parts,
:class:`Agent`, :class:`ScenarioInstance` and :class:`PretrainedModel`.

Importing this package is light; the torch-based modules load when one of their
names is first used.

- :mod:`nip_core.scenario.data_base`: :class:`Dataset` (both worlds, no torch).
- :mod:`nip_core.scenario.data`: :class:`TensorDictDataset`, :class:`DataCycler`.
- :mod:`nip_core.scenario.environment_base`: :class:`Environment` (both worlds, no
  torch).
- :mod:`nip_core.scenario.environment`: :class:`TensorDictEnvironment`.
- :mod:`nip_core.scenario.agents`: parts, :class:`Agent`, combined parts.
- :mod:`nip_core.scenario.distributions`: :class:`NipActionDistribution`,
  :func:`build_policy_actor`.
- :mod:`nip_core.scenario.pretrained`: :class:`PretrainedModel`.
- :mod:`nip_core.scenario.instance`: :class:`ScenarioInstance`.
- :mod:`nip_core.scenario.keys`: the TensorDict keys and their shapes.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Dataset": "nip_core.scenario.data_base",
    "TensorDictDataset": "nip_core.scenario.data",
    "DataCycler": "nip_core.scenario.data",
    "Environment": "nip_core.scenario.environment_base",
    "TensorDictEnvironment": "nip_core.scenario.environment",
    "AgentPart": "nip_core.scenario.agent_base",
    "TensorDictAgentPartMixin": "nip_core.scenario.agents",
    "TensorDictDummyAgentPartMixin": "nip_core.scenario.agents",
    "AgentBody": "nip_core.scenario.agents",
    "AgentHead": "nip_core.scenario.agents",
    "AgentPolicyHead": "nip_core.scenario.agents",
    "AgentValueHead": "nip_core.scenario.agents",
    "SoloAgentHead": "nip_core.scenario.agents",
    "RandomAgentPolicyHead": "nip_core.scenario.agents",
    "ConstantAgentValueHead": "nip_core.scenario.agents",
    "WholeAgent": "nip_core.scenario.agent_base",
    "Agent": "nip_core.scenario.agents",
    "CombinedAgentPart": "nip_core.scenario.agents",
    "CombinedTensorDictAgentPart": "nip_core.scenario.agents",
    "CombinedBody": "nip_core.scenario.agents",
    "CombinedPolicyHead": "nip_core.scenario.agents",
    "CombinedValueHead": "nip_core.scenario.agents",
    "CombinedSoloHead": "nip_core.scenario.agents",
    "combine_parts": "nip_core.scenario.agents",
    "RepresentationHead": "nip_core.scenario.heads",
    "RepresentationValueHead": "nip_core.scenario.heads",
    "RepresentationSoloHead": "nip_core.scenario.heads",
    "NipActionDistribution": "nip_core.scenario.distributions",
    "build_policy_actor": "nip_core.scenario.distributions",
    "PretrainedModel": "nip_core.scenario.pretrained",
    "ScenarioInstance": "nip_core.scenario.instance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
