"""Interaction protocols: the handler interface, the built-in protocols and zero
knowledge.

Importing this package is light: the torch-based handler modules load on first
access of one of their names, so :mod:`nip_core.protocols.parameters` (the protocol
parameter sections) imports without torch.

- :mod:`nip_core.protocols.parameters`: the parameter sections (no torch).
- :mod:`nip_core.protocols.base`: :class:`ProtocolHandler` and the single-verifier
  stepping rules; the step's TensorDict keys and shapes.
- :mod:`nip_core.protocols.main_protocols`: nip, adp, debate, merlin_arthur, mnip,
  solo_verifier.
- :mod:`nip_core.protocols.zero_knowledge`: the zero-knowledge wrapper.
- :mod:`nip_core.protocols.factory`: :func:`build_protocol_handler`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ProtocolHandler": "nip_core.protocols.base",
    "SingleVerifierProtocolHandler": "nip_core.protocols.base",
    "DeterministicProtocolHandler": "nip_core.protocols.base",
    "ProtocolParameterView": "nip_core.protocols.base",
    "ProtocolStepInputs": "nip_core.protocols.base",
    "ProtocolStepResult": "nip_core.protocols.base",
    "ProtocolSpecificationError": "nip_core.protocols.base",
    "ProtocolWarning": "nip_core.protocols.base",
    "validate_agent_names": "nip_core.protocols.base",
    "NipProtocolHandler": "nip_core.protocols.main_protocols",
    "AdpProtocolHandler": "nip_core.protocols.main_protocols",
    "DebateProtocolHandler": "nip_core.protocols.main_protocols",
    "MerlinArthurProtocolHandler": "nip_core.protocols.main_protocols",
    "MnipProtocolHandler": "nip_core.protocols.main_protocols",
    "SoloVerifierProtocolHandler": "nip_core.protocols.main_protocols",
    "ZeroKnowledgeProtocolHandler": "nip_core.protocols.zero_knowledge",
    "build_protocol_handler": "nip_core.protocols.factory",
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
    return sorted([*globals(), *_EXPORTS])
