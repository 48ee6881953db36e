"""A plugin whose hook implementation takes an argument the hook does not have."""

from nip_core import hookimpl
from nip_core.records import TrainerSpec


@hookimpl
def register_trainers(config):
    return [TrainerSpec(name="wrong_signature_trainer", trainer_class="x:Y")]
