"""The plugin example of docs/protocols.md works end to end: a handler with class
attributes, its own parameter section, registration, the factory and the contract."""

from __future__ import annotations

import warnings

from attrs import field

from nip_core import hookimpl
from nip_core.parameters.base import SubParameters, parameters_class
from nip_core.protocols import build_protocol_handler
from nip_core.protocols.base import (
    DeterministicProtocolHandler,
    ProtocolParameterView,
    ProtocolWarning,
    SingleVerifierProtocolHandler,
)
from nip_core.records import ParameterSectionSpec, ProtocolSpec
from nip_core.testing.contracts.protocol import ProtocolContract, make_protocol_step_td


@parameters_class
class RelayProtocolParameters(SubParameters):
    """Parameters of the relay protocol.

    Parameters
    ----------
    max_message_rounds : int
        The number of rounds.
    """

    max_message_rounds: int = field(default=6)


class RelayProtocolHandler(DeterministicProtocolHandler, SingleVerifierProtocolHandler):
    """Two provers relay on one channel, then the verifier decides."""

    parameter_section = "relay_protocol"
    agent_names = ["prover0", "prover1", "verifier"]
    message_channel_names = ["main"]
    agent_channel_visibility = [
        ("prover0", "main"),
        ("prover1", "main"),
        ("verifier", "main"),
    ]
    min_message_rounds = 1

    @property
    def max_message_rounds(self):
        return self.hyper_params.relay_protocol.max_message_rounds

    def is_agent_active(self, agent_name, round_id, channel_name):
        return ["prover0", "prover1", "verifier"][round_id % 3] == agent_name


class RelayPlugin:
    @hookimpl
    def register_protocols(self):
        return [
            ProtocolSpec(
                name="relay",
                handler_class=f"{__name__}:RelayProtocolHandler",
                agent_names=("prover0", "prover1", "verifier"),
                parameter_section="relay_protocol",
                data_worlds=("tensor",),
                supports_zero_knowledge=True,
            )
        ]

    @hookimpl
    def register_parameter_sections(self):
        return [
            ParameterSectionSpec(
                name="relay_protocol", parameters_class=RelayProtocolParameters
            )
        ]


class TestRelayContract(ProtocolContract):
    def make_handler(self):
        return RelayProtocolHandler.from_sections(
            relay_protocol=RelayProtocolParameters()
        )

    def protocol_spec(self):
        return RelayPlugin().register_protocols()[0]


def test_relay_through_the_registry(plugin_manager, register_plugin) -> None:
    register_plugin(RelayPlugin(), name="relay")
    assert "relay_protocol" in plugin_manager.parameter_sections
    hyper_params = ProtocolParameterView.from_sections(
        interaction_protocol="relay",
        relay_protocol=RelayProtocolParameters(max_message_rounds=4),
        protocol_common={"zero_knowledge": True},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler = build_protocol_handler(hyper_params)
    # the verifier's last turn is round 2 of 0..3
    assert [w.category for w in caught] == [ProtocolWarning]
    assert handler.agent_names == [
        "prover0",
        "prover1",
        "verifier",
        "adversarial_verifier",
        "simulator",
    ]
    td = make_protocol_step_td(
        handler, [2, 2], [[2, 2, 1, 0, 2], [2, 2, 1, 2, 2]], y=[1, 1], with_logits=True
    )
    shared_done, _, _, reward = handler.step_interaction_protocol(td)
    assert shared_done.tolist() == [True, False]
    # two opposed provers: prover1 argues for accept
    assert reward[:, :3].tolist() == [[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]
