"""Built-in plugin of nip-core: the interaction protocols and their parameter sections.

Registered before installed plugins, through the same hooks. Light: handler classes
are given as references, so importing this module does not import torch.
"""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.protocols.parameters import PROTOCOL_SECTIONS
from nip_core.records import ParameterSectionSpec, ProtocolSpec

_HANDLERS = "nip_core.protocols.main_protocols"

_SECTION_DESCRIPTIONS = {
    "protocol_common": "Rewards, turn order and options common to every protocol",
    "nip_protocol": "Round limits of the nip protocol",
    "debate_protocol": "Round limits and turn order of the debate protocol",
    "mnip_protocol": "Round limits and turn order of the mnip protocol",
    "zk_protocol": "Reward coefficients of zero-knowledge protocols",
}


@hookimpl
def register_protocols() -> list[ProtocolSpec]:
    return [
        ProtocolSpec(
            name="nip",
            handler_class=f"{_HANDLERS}:NipProtocolHandler",
            agent_names=("prover", "verifier"),
            parameter_section="nip_protocol",
            data_worlds=("tensor", "text"),
            supports_zero_knowledge=True,
            description="A prover and the verifier take turns on one channel",
        ),
        ProtocolSpec(
            name="adp",
            handler_class=f"{_HANDLERS}:AdpProtocolHandler",
            agent_names=("prover", "verifier"),
            data_worlds=("tensor", "text"),
            supports_zero_knowledge=True,
            description="Abstract decision problem: one prover message, then a verdict",
        ),
        ProtocolSpec(
            name="debate",
            handler_class=f"{_HANDLERS}:DebateProtocolHandler",
            agent_names=("prover0", "prover1", "verifier"),
            parameter_section="debate_protocol",
            data_worlds=("tensor", "text"),
            supports_zero_knowledge=True,
            description="Two provers argue for reject and accept before the verifier",
        ),
        ProtocolSpec(
            name="merlin_arthur",
            handler_class=f"{_HANDLERS}:MerlinArthurProtocolHandler",
            agent_names=("prover0", "prover1", "verifier"),
            data_worlds=("tensor", "text"),
            supports_zero_knowledge=True,
            description="One of two opposed provers, drawn per episode, speaks once",
        ),
        ProtocolSpec(
            name="mnip",
            handler_class=f"{_HANDLERS}:MnipProtocolHandler",
            agent_names=("prover0", "prover1", "verifier"),
            parameter_section="mnip_protocol",
            data_worlds=("tensor", "text"),
            supports_zero_knowledge=True,
            description="Two provers, each on a private channel to the verifier",
        ),
        ProtocolSpec(
            name="solo_verifier",
            handler_class=f"{_HANDLERS}:SoloVerifierProtocolHandler",
            agent_names=("verifier",),
            data_worlds=("tensor", "text"),
            supports_zero_knowledge=False,
            description="The verifier decides alone",
        ),
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    return [
        ParameterSectionSpec(
            name=name,
            parameters_class=parameters_class,
            description=_SECTION_DESCRIPTIONS[name],
        )
        for name, parameters_class in PROTOCOL_SECTIONS.items()
    ]
