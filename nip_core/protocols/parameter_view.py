"""The parameters a protocol handler reads: :class:`ProtocolParameterView`."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import attrs

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.parameters.validation import prefixed
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


def _section(name: str, cls: type) -> Any:
    """A converter building section ``name`` of class ``cls`` from a dict; its
    problems' paths start with the section's name."""

    def convert(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        try:
            return cls(**value)
        except NipConfigError as error:
            raise NipConfigError(prefixed(error.problems, name)) from None

    return convert


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
        converter=_section("protocol_common", CommonProtocolParameters),
    )
    nip_protocol: NipProtocolParameters = attrs.field(
        factory=NipProtocolParameters,
        converter=_section("nip_protocol", NipProtocolParameters),
    )
    debate_protocol: DebateProtocolParameters = attrs.field(
        factory=DebateProtocolParameters,
        converter=_section("debate_protocol", DebateProtocolParameters),
    )
    mnip_protocol: MnipProtocolParameters = attrs.field(
        factory=MnipProtocolParameters,
        converter=_section("mnip_protocol", MnipProtocolParameters),
    )
    zk_protocol: ZkProtocolParameters = attrs.field(
        factory=ZkProtocolParameters,
        converter=_section("zk_protocol", ZkProtocolParameters),
    )
    extra_sections: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_sections(cls, **sections: Any) -> ProtocolParameterView:
        """Build from keyword arguments; names that are not fields of this class go
        to ``extra_sections`` (a plugin protocol's own section).

        A name that is not a field but is spelt almost like one (``nip_protocl``)
        is an error suggesting the field, rather than a section nobody reads.
        """
        known = {
            name: value for name, value in sections.items() if name in _VIEW_FIELDS
        }
        extra = {
            name: value for name, value in sections.items() if name not in _VIEW_FIELDS
        }
        problems = [
            ConfigProblem(
                name,
                f"not a protocol section; did you mean {match[0]!r}? (a plugin "
                "protocol's own section is passed through under its name, but this "
                "one is spelt almost like a built-in one)",
            )
            for name in extra
            if (
                match := difflib.get_close_matches(
                    name, _BUILT_IN_SECTIONS, n=1, cutoff=0.85
                )
            )
        ]
        if problems:
            raise NipConfigError(problems)
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
_BUILT_IN_SECTIONS = sorted(
    _VIEW_FIELDS - {"interaction_protocol", "scenario", "extra_sections"}
)
