"""A second working plugin, registering a trainer."""

from nip_core import hookimpl
from nip_core.records import TrainerSpec


@hookimpl
def register_trainers():
    return [TrainerSpec(name="other_trainer", trainer_class="other_pkg.t:Trainer")]
