"""The parameters a protocol handler reads: :class:`ProtocolParameterView`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from nip_core.protocols.parameters import (
    CommonProtocolParameters,
    DebateProtocolParameters,
    MnipProtocolParameters,
    NipProtocolParameters,
    ZkProtocolParameters,
)

# --------------------------------------------------------------------------------------
# Parameters a handler reads
# --------------------------------------------------------------------------------------


def _section(value: Any, cls: type) -> Any:
    return cls(**value) if isinstance(value, Mapping) else value


@attrs.define(kw_only=True)
class ProtocolParameterView:
    """The parts of the hyper-parameters a protocol handler reads.

    Handlers take a :class:`~nip_core.parameters.HyperParameters`; this stand-in
    carries just the protocol sections, for building handlers without a whole
    experiment (tests, notebooks). Build it with
    :meth:`ProtocolHandler.from_sections`.

    Parameters
    ----------
    interaction_protocol : str
        The protocol's registry key.
    scenario : str | None
        The scenario's registry key, if any.
    protocol_common, nip_protocol, debate_protocol, mnip_protocol, zk_protocol
        The protocol sections (defaults when not given).
    extra_sections : dict
        Further sections (a plugin protocol's own), read as attributes.
    """

    interaction_protocol: str = "nip"
    scenario: str | None = None
    protocol_common: CommonProtocolParameters = attrs.field(
        factory=CommonProtocolParameters,
        converter=lambda value: _section(value, CommonProtocolParameters),
    )
    nip_protocol: NipProtocolParameters = attrs.field(
        factory=NipProtocolParameters,
        converter=lambda value: _section(value, NipProtocolParameters),
    )
    debate_protocol: DebateProtocolParameters = attrs.field(
        factory=DebateProtocolParameters,
        converter=lambda value: _section(value, DebateProtocolParameters),
    )
    mnip_protocol: MnipProtocolParameters = attrs.field(
        factory=MnipProtocolParameters,
        converter=lambda value: _section(value, MnipProtocolParameters),
    )
    zk_protocol: ZkProtocolParameters = attrs.field(
        factory=ZkProtocolParameters,
        converter=lambda value: _section(value, ZkProtocolParameters),
    )
    extra_sections: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_sections(cls, **sections: Any) -> ProtocolParameterView:
        """Build from keyword arguments; names that are not fields of this class go
        to ``extra_sections``."""
        known = {
            name: value for name, value in sections.items() if name in _VIEW_FIELDS
        }
        extra = {
            name: value for name, value in sections.items() if name not in _VIEW_FIELDS
        }
        return cls(**known, extra_sections=extra)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes attrs did not define
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            extra = object.__getattribute__(self, "extra_sections")
        except AttributeError:
            raise AttributeError(name) from None
        if name in extra:
            return extra[name]
        raise AttributeError(
            f"no parameter section {name!r}; give it to from_sections({name}=...)"
        )


_VIEW_FIELDS = frozenset(f.name for f in attrs.fields(ProtocolParameterView))
