"""The built-in interaction protocols.

=====================  ===============================================================
handler                protocol
=====================  ===============================================================
``nip``                one prover and the verifier take turns on one channel
``adp``                the prover speaks once, then the verifier decides (Anil et al.)
``debate``             two provers argue opposite verdicts (Irving et al.)
``merlin_arthur``      one of two opposed provers, chosen per episode, speaks once
                       (Wäldchen et al.)
``mnip``               two provers, each with a private channel to the verifier
``solo_verifier``      the verifier decides alone
=====================  ===============================================================

``multi_channel_test``, three provers on three channels for testing channel
handling, is a test fixture: :mod:`nip_core.testing.protocols`.

The rules of each are in its class docstring and in ``docs/protocols.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from nip_core.protocols.base import (
    DeterministicProtocolHandler,
    SingleVerifierProtocolHandler,
)
from nip_core.protocols.parameters import LongProtocolParameters

__all__ = [
    "AdpProtocolHandler",
    "DebateProtocolHandler",
    "MerlinArthurProtocolHandler",
    "MnipProtocolHandler",
    "NipProtocolHandler",
    "SoloVerifierProtocolHandler",
]


class NipProtocolHandler(DeterministicProtocolHandler, SingleVerifierProtocolHandler):
    """``nip``: a prover and the verifier alternate on one channel, ``main``.

    The verifier speaks on even rounds and the prover on odd ones when
    ``protocol_common.verifier_first`` (the default); the other way round otherwise.
    Rounds come from ``nip_protocol`` (``min_message_rounds`` 1,
    ``max_message_rounds`` 8). The prover is rewarded for accept (or its stance).
    """

    parameter_section: ClassVar[str | None] = "nip_protocol"

    @property
    def agent_names(self) -> list[str]:
        return ["prover", "verifier"]

    @property
    def message_channel_names(self) -> list[str]:
        return ["main"]

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        return [("prover", "main"), ("verifier", "main")]

    @property
    def rounds_section(self) -> LongProtocolParameters:
        """The section holding the round limits."""
        return getattr(self.hyper_params, self.parameter_section)

    @property
    def verifier_first(self) -> bool:
        return self.protocol_common.verifier_first

    @property
    def max_message_rounds(self) -> int:
        return self.rounds_section.max_message_rounds

    @property
    def min_message_rounds(self) -> int:
        return self.rounds_section.min_message_rounds

    def is_agent_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        first = "verifier" if self.verifier_first else "prover"
        return (round_id % 2 == 0) == (agent_name == first)


class AdpProtocolHandler(NipProtocolHandler):
    """``adp`` (abstract decision problem): the prover speaks on round 0, the verifier
    decides on round 1. Fixed rounds: min 1, max 2; ``verifier_first`` is ignored."""

    parameter_section: ClassVar[str | None] = None

    @property
    def verifier_first(self) -> bool:
        return False

    @property
    def max_message_rounds(self) -> int:
        return 2

    @property
    def min_message_rounds(self) -> int:
        return 1


class _TwoProverChannelProtocolHandler(
    DeterministicProtocolHandler, SingleVerifierProtocolHandler
):
    """Two provers, each with its own channel to the verifier; debate and mnip.

    Schedule (``verifier_first`` from ``protocol_common``; ``sequential`` and
    ``prover0_first`` from the protocol's section):

    - simultaneous: the verifier on both channels on even rounds, each prover on its
      own channel on odd rounds (swapped when the provers go first);
    - sequential: a 3-round cycle of verifier (both channels), first prover, second
      prover (provers first: first prover, second prover, verifier).
    """

    @property
    def agent_names(self) -> list[str]:
        return ["prover0", "prover1", "verifier"]

    @property
    def message_channel_names(self) -> list[str]:
        return ["prover0_channel", "prover1_channel"]

    @property
    def section(self) -> Any:
        return getattr(self.hyper_params, self.parameter_section)

    @property
    def max_message_rounds(self) -> int:
        return self.section.max_message_rounds

    @property
    def min_message_rounds(self) -> int:
        return self.section.min_message_rounds

    def is_agent_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        verifier_first = self.protocol_common.verifier_first
        if agent_name == "verifier":
            if self.section.sequential:
                return round_id % 3 == (0 if verifier_first else 2)
            return round_id % 2 == (0 if verifier_first else 1)
        if channel_name != f"{agent_name}_channel":
            return False
        if self.section.sequential:
            first = "prover0" if self.section.prover0_first else "prover1"
            position = 0 if agent_name == first else 1
            return round_id % 3 == position + (1 if verifier_first else 0)
        return round_id % 2 == (1 if verifier_first else 0)


class DebateProtocolHandler(_TwoProverChannelProtocolHandler):
    """``debate``: ``prover0`` argues for reject, ``prover1`` for accept.

    Channels ``prover0_channel`` and ``prover1_channel``; the verifier and both
    provers see both. Rounds from ``debate_protocol``. Schedule: see
    :class:`_TwoProverChannelProtocolHandler`.
    """

    parameter_section: ClassVar[str | None] = "debate_protocol"

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        return [
            (agent, channel)
            for agent in self.agent_names
            for channel in self.message_channel_names
        ]


class MnipProtocolHandler(_TwoProverChannelProtocolHandler):
    """``mnip``: two provers, each talking to the verifier on a private channel.

    Each prover sees only its own channel; the verifier sees both. The provers are
    rewarded as two provers always are: ``prover0`` when the verifier rejects,
    ``prover1`` when it accepts. Rounds from ``mnip_protocol`` (the original read
    them from ``nip_protocol``).
    """

    parameter_section: ClassVar[str | None] = "mnip_protocol"

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        return [
            ("prover0", "prover0_channel"),
            ("prover1", "prover1_channel"),
            ("verifier", "prover0_channel"),
            ("verifier", "prover1_channel"),
        ]


class MerlinArthurProtocolHandler(SingleVerifierProtocolHandler):
    """``merlin_arthur``: one of two opposed provers speaks, then the verifier decides.

    On round 0 ``prover0`` (argues for reject) speaks when the episode's seed is
    even and ``prover1`` (argues for accept) when it is odd; on round 1 the verifier
    decides. One channel, ``main``, seen by all. Fixed rounds: min 1, max 2.
    """

    @property
    def agent_names(self) -> list[str]:
        return ["prover0", "prover1", "verifier"]

    @property
    def message_channel_names(self) -> list[str]:
        return ["main"]

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        return [("prover0", "main"), ("prover1", "main"), ("verifier", "main")]

    @property
    def max_message_rounds(self) -> int:
        return 2

    @property
    def min_message_rounds(self) -> int:
        return 1

    def can_agent_be_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        if agent_name == "verifier":
            return round_id == 1
        return round_id == 0

    def get_active_agents_mask_from_rounds_and_seed(
        self, round_id: Tensor, seed: Tensor | None
    ) -> Tensor:
        round_id = torch.as_tensor(round_id).long()
        if seed is None:
            raise ValueError("merlin_arthur needs the episodes' seeds to pick a prover")
        seed = torch.as_tensor(seed, device=round_id.device).long()
        prover0_speaks = torch.remainder(seed, 2) == 0
        first_round = round_id == 0
        rows = [
            first_round & prover0_speaks,
            first_round & ~prover0_speaks,
            round_id == 1,
        ]
        return torch.stack(rows, dim=-1).unsqueeze(-1)


class SoloVerifierProtocolHandler(
    DeterministicProtocolHandler, SingleVerifierProtocolHandler
):
    """``solo_verifier``: the verifier decides alone on round 0 (channel ``main``).

    One round (min 1, max 1): without a verdict the episode is terminated at once.
    Not wrappable in zero knowledge (there is no prover whose knowledge could leak).
    """

    can_be_zero_knowledge: ClassVar[bool] = False

    @property
    def agent_names(self) -> list[str]:
        return ["verifier"]

    @property
    def message_channel_names(self) -> list[str]:
        return ["main"]

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        return [("verifier", "main")]

    @property
    def max_message_rounds(self) -> int:
        return 1

    @property
    def min_message_rounds(self) -> int:
        return 1

    def is_agent_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        return round_id == 0
