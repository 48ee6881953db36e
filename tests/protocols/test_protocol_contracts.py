"""Every built-in protocol (and its zero-knowledge version) passes the protocol
contract, in several configurations."""

from __future__ import annotations

import warnings

from nip_core.builtin.protocols import register_protocols
from nip_core.protocols.base import ProtocolHandler, ProtocolWarning
from nip_core.protocols.main_protocols import (
    AdpProtocolHandler,
    DebateProtocolHandler,
    MerlinArthurProtocolHandler,
    MnipProtocolHandler,
    NipProtocolHandler,
    SoloVerifierProtocolHandler,
)
from nip_core.records import ProtocolSpec
from nip_core.testing.contracts.protocol import ProtocolContract
from nip_core.testing.protocols import (
    MULTI_CHANNEL_TEST_SPEC,
    MultiChannelTestProtocolHandler,
)

SPECS = {spec.name: spec for spec in [*register_protocols(), MULTI_CHANNEL_TEST_SPEC]}


def quietly(cls: type[ProtocolHandler], **sections) -> ProtocolHandler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProtocolWarning)
        return cls.from_sections(**sections)


class TestNipContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(NipProtocolHandler)

    def protocol_spec(self) -> ProtocolSpec:
        return SPECS["nip"]


class TestNipProverFirstMinRoundsContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(
            NipProtocolHandler,
            protocol_common={"verifier_first": False, "shared_reward": True},
            nip_protocol={"min_message_rounds": 3, "max_message_rounds": 6},
        )


class TestNipRandomStanceForcedGuessContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(
            NipProtocolHandler,
            protocol_common={"randomize_prover_stance": True, "force_guess": "y"},
            nip_protocol={"max_message_rounds": 5},
        )


class TestAdpContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(AdpProtocolHandler)

    def protocol_spec(self) -> ProtocolSpec:
        return SPECS["adp"]


class TestDebateContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(DebateProtocolHandler)

    def protocol_spec(self) -> ProtocolSpec:
        return SPECS["debate"]


class TestDebateSequentialContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(
            DebateProtocolHandler,
            protocol_common={"verifier_first": False},
            debate_protocol={"sequential": True, "prover0_first": False},
        )


class TestMerlinArthurContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(MerlinArthurProtocolHandler)

    def protocol_spec(self) -> ProtocolSpec:
        return SPECS["merlin_arthur"]


class TestMnipContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(MnipProtocolHandler)

    def protocol_spec(self) -> ProtocolSpec:
        return SPECS["mnip"]


class TestMnipSequentialContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(
            MnipProtocolHandler,
            mnip_protocol={"sequential": True, "max_message_rounds": 7},
        )


class TestSoloVerifierContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(SoloVerifierProtocolHandler)

    def protocol_spec(self) -> ProtocolSpec:
        return SPECS["solo_verifier"]


class TestMultiChannelTestContract(ProtocolContract):
    def make_handler(self) -> ProtocolHandler:
        return quietly(MultiChannelTestProtocolHandler)

    def protocol_spec(self) -> ProtocolSpec:
        return SPECS["multi_channel_test"]


def test_contract_covers_every_builtin_protocol() -> None:
    covered = {
        cls().protocol_spec().name
        for cls in globals().values()
        if isinstance(cls, type)
        and issubclass(cls, ProtocolContract)
        and cls is not ProtocolContract
        and cls.protocol_spec is not ProtocolContract.protocol_spec
    }
    assert covered == set(SPECS)


def test_contract_handlers_include_the_zero_knowledge_version() -> None:
    handlers = TestNipContract().handlers()
    assert [type(h).__name__ for h in handlers] == [
        "NipProtocolHandler",
        "ZeroKnowledgeProtocolHandler",
    ]
    assert len(TestSoloVerifierContract().handlers()) == 1
