"""A plugin whose register_trainers returns loggers."""

from nip_core import hookimpl
from nip_core.records import LoggerSpec


@hookimpl
def register_trainers():
    return [LoggerSpec(name="not_a_trainer", logger_class="x:Y")]
