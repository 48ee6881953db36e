"""One of two plugins registering the same protocol key."""

from nip_core import hookimpl
from nip_core.records import ProtocolSpec


@hookimpl
def register_protocols():
    return [
        ProtocolSpec(
            name="shared_protocol", handler_class="a:Handler", agent_names=["verifier"]
        )
    ]
