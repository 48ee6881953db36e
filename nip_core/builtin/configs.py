"""Built-in plugin of nip-core: the core's Hydra config directory.

The directory ``nip_core/configs/`` holds the ``base`` config (the ``run:`` settings:
directories, logging, checkpointing) that experiment configs inherit through their
defaults lists. It is searched last, after the user's ``./configs`` and every
plugin's config directory, so both can shadow it.

This module must stay light: no torch, no Hydra import.
"""

from __future__ import annotations

from pathlib import Path

from nip_core import hookimpl
from nip_core.records import ConfigDirSpec

CORE_CONFIG_DIR: Path = Path(__file__).resolve().parent.parent / "configs"
"""The core's config directory, ``nip_core/configs/``."""

CORE_CONFIG_DIR_NAME = "nip-core"
"""The key of the core's entry in the config-dir registry."""


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    """Register ``nip_core/configs/``."""
    return [ConfigDirSpec(name=CORE_CONFIG_DIR_NAME, path=str(CORE_CONFIG_DIR))]
