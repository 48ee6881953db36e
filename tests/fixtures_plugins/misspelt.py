"""A plugin with a misspelt hook name (register_trainer, not register_trainers)."""

from nip_core import hookimpl
from nip_core.records import TrainerSpec


@hookimpl
def register_trainer():
    return [TrainerSpec(name="misspelt_trainer", trainer_class="x:Y")]
