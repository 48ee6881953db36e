"""Base classes of protocol handlers.

A protocol handler implements an interaction protocol: which agents there are, which
message channels, who sees which channel, who is active in which round, when the
verifier may decide, and the done signals and rewards of each step.

The classes, from general to specific:

:class:`ProtocolHandler`
    The interface every environment and trainer relies on, and everything derived
    from a protocol's structure (masks, indices, validation, the even-rounds
    warning). Independent of the data world.
:class:`SingleVerifierProtocolHandler`
    The stepping rules of protocols with one verifier called ``"verifier"`` (done
    signals, termination, rewards). The step reads plain arrays from a mapping (a
    ``TensorDict``, a dict, or any mapping with tuple keys for nested entries), so
    a text-world handler reuses it after filling in the same keys.
:class:`DeterministicProtocolHandler`
    A mixin for protocols whose schedule depends on the round only: subclasses
    define :meth:`~DeterministicProtocolHandler.is_agent_active`, and the masks are
    tabulated once.

The code lives in one module per seam, and every name is importable from here too:

- :mod:`nip_core.protocols.step`: the step's inputs and outputs (keys, constants,
  :class:`ProtocolStepInputs`, :class:`ProtocolStepResult`);
- :mod:`nip_core.protocols.parameter_view`: :class:`ProtocolParameterView`, the
  parameters a handler reads;
- :mod:`nip_core.protocols.handler`: :class:`ProtocolHandler`,
  :class:`DeterministicProtocolHandler`, the protocol errors and warnings;
- :mod:`nip_core.protocols.single_verifier`: :class:`SingleVerifierProtocolHandler`.
"""

from __future__ import annotations

from nip_core.protocols.handler import (
    DeterministicProtocolHandler,
    ProtocolHandler,
    ProtocolSpecificationError,
    ProtocolWarning,
    validate_agent_names,
)
from nip_core.protocols.parameter_view import ProtocolParameterView
from nip_core.protocols.single_verifier import SingleVerifierProtocolHandler
from nip_core.protocols.step import (
    DECISION_ACCEPT,
    DECISION_CONTINUE,
    DECISION_NEITHER,
    DECISION_REJECT,
    RESTRICTION_CONTINUE_ONLY,
    RESTRICTION_GUESS_ONLY,
    RESTRICTION_NONE,
    ProtocolStepInputs,
    ProtocolStepResult,
    read_entry,
)

__all__ = [
    "DECISION_ACCEPT",
    "DECISION_CONTINUE",
    "DECISION_NEITHER",
    "DECISION_REJECT",
    "DeterministicProtocolHandler",
    "ProtocolHandler",
    "ProtocolParameterView",
    "ProtocolSpecificationError",
    "ProtocolStepInputs",
    "ProtocolStepResult",
    "ProtocolWarning",
    "RESTRICTION_CONTINUE_ONLY",
    "RESTRICTION_GUESS_ONLY",
    "RESTRICTION_NONE",
    "SingleVerifierProtocolHandler",
    "read_entry",
    "validate_agent_names",
]
