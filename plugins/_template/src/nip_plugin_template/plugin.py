"""Hook implementations of the template plugin.

nip imports this module (the ``nip_core.plugins`` entry point) whenever it loads
plugins, including for ``nip --help`` and ``nip plugins``, so it stays light: hook
implementations only, no torch. Heavy classes (datasets, environments, agent parts,
trainers, protocol handlers) are given to the records as references,
``"nip_plugin_template.module:Class"`` strings, which nip imports only when a run
needs them. See ``docs/writing-a-plugin.md`` of nip-core for those hooks.
"""

from __future__ import annotations

from pathlib import Path

from nip_core import hookimpl
from nip_core.records import ConfigDirSpec, ParameterSectionSpec

from nip_plugin_template.parameters import TemplateParameters

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The plugin's Hydra config directory (shipped as package data)."""


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    """Add the ``template`` section to every ``HyperParameters``."""
    return [
        ParameterSectionSpec(
            name="template",
            parameters_class=TemplateParameters,
            description="Parameters of the template plugin.",
        )
    ]


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    """Put the plugin's configs on ``nip run``'s search path."""
    return [ConfigDirSpec(name="template", path=str(CONFIG_DIR))]
