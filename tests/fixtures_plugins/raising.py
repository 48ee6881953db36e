"""A plugin that loads but whose hook raises."""

from nip_core import hookimpl
from nip_core.records import LoggerSpec


@hookimpl
def register_loggers():
    return [LoggerSpec(name="raising_logger", logger_class="x:Y")]


@hookimpl
def register_trainers():
    raise RuntimeError("the trainer table is corrupt")
