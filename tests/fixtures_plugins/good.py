"""A working plugin: one logger and one parameter section."""

import attrs

from nip_core import hookimpl
from nip_core.records import LoggerSpec, ParameterSectionSpec


@attrs.define
class GoodParameters:
    width: int = 2


@hookimpl
def register_loggers():
    return [LoggerSpec(name="good_logger", logger_class="good_pkg.loggers:Logger")]


@hookimpl
def register_parameter_sections():
    return [ParameterSectionSpec(name="good_section", parameters_class=GoodParameters)]
