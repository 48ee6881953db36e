"""Where the first-party plugins come from, for messages about missing ones.

The core knows no scenario or trainer by name in what it does; but when a config
names one that is not registered, the best error says which package provides it and
how to install it. This catalogue lists the plugins of the nip repository and the
keys each registers, so that ``unknown scenario 'graph_isomorphism'`` becomes
"comes with nip-plugin-graph-isomorphism, which is not installed: pip install ...",
or names the switch that disabled it, or the error it failed with.

This module imports without torch.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "FIRST_PARTY_PLUGINS",
    "install_command",
    "missing_key_hint",
    "plugin_state",
    "provider_of",
]

FIRST_PARTY_PLUGINS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "nip-plugin-graph-isomorphism": {
        "scenario": ("graph_isomorphism",),
        "dataset_builder": ("graph_isomorphism",),
        "config_dir": ("graph_isomorphism",),
    },
    "nip-plugin-image-classification": {
        "scenario": ("image_classification",),
        "parameter_section": ("image_classification",),
        "config_dir": ("image_classification",),
    },
    "nip-plugin-ppo": {
        "trainer": ("vanilla_ppo", "spg"),
        "parameter_section": ("ppo", "spg", "vanilla_ppo"),
        "config_dir": ("ppo",),
    },
    "nip-plugin-code-validation": {
        "scenario": ("code_validation",),
        "parameter_section": ("code_validation",),
        "dataset_builder": ("code_validation",),
        "rollout_analyser": ("code_validation_judge",),
        "config_dir": ("code_validation",),
    },
    "nip-plugin-ei": {
        "trainer": ("pure_text_ei",),
        "parameter_section": ("pure_text_ei",),
        "config_dir": ("ei",),
    },
    "nip-plugin-malt": {
        "trainer": ("pure_text_malt",),
        "parameter_section": ("pure_text_malt",),
        "config_dir": ("malt",),
    },
    "nip-plugin-transformers": {
        "text_backend": ("transformers",),
        "parameter_section": ("transformers_backend",),
    },
}
"""Distribution name to record kind to the keys it registers."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def provider_of(kind: str, key: str) -> str | None:
    """The first-party distribution that registers ``key`` of ``kind``, if any."""
    for distribution, kinds in FIRST_PARTY_PLUGINS.items():
        if key in kinds.get(kind, ()):
            return distribution
    return None


def install_command(distribution: str) -> str:
    """How to install a first-party plugin, from PyPI or a checkout of nip."""
    return (
        f"pip install {distribution} (from a checkout of nip: "
        f"pip install -e ./plugins/{distribution})"
    )


def plugin_state(distribution: str, plugin_manager: Any = None) -> str:
    """What became of a distribution's plugin here, in words: not installed,
    disabled (by which switch), broken (with its error) or loaded."""
    if plugin_manager is None:
        from nip_core.plugins import get_plugin_manager

        plugin_manager = get_plugin_manager()
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} is not installed; install it with: " + (
            install_command(distribution)
        )
    infos = [
        info
        for info in plugin_manager.plugin_infos()
        if info.distribution
        and _normalise(info.distribution) == _normalise(distribution)
    ]
    if not infos:
        return f"{distribution} is installed but its plugin was not loaded " + (
            _why_not_loaded(distribution, plugin_manager)
        )
    info = infos[0]
    if info.status == "disabled":
        return (
            f"{distribution} is installed but its plugin {info.name!r} is disabled "
            f"({info.error}); "
            + (
                "add it to that list to use it"
                if str(info.error).startswith("not listed")
                else "remove it from that list to use it"
            )
        )
    if info.status == "broken":
        return (
            f"{distribution} is installed but its plugin {info.name!r} failed to "
            f"load: {info.error}"
        )
    return f"{distribution} is installed and loaded"


def missing_key_hint(kind: str, key: str, plugin_manager: Any = None) -> str | None:
    """Why a first-party key is not registered, and what to do; ``None`` for keys
    no first-party plugin provides."""
    distribution = provider_of(kind, key)
    if distribution is None:
        return None
    label = kind.replace("_", " ")
    return f"the {label} {key!r} comes with " + plugin_state(
        distribution, plugin_manager
    ).replace(f"{distribution} is", f"{distribution}, which is", 1)


def _why_not_loaded(distribution: str, plugin_manager: Any) -> str:
    """Why an installed distribution's plugin is not in ``plugin_manager``, in
    parentheses: the switch that kept it out, or how to register it in a manager
    that does not load installed plugins (a test's isolated one)."""
    import os

    from nip_core.plugins import (
        ENTRY_POINT_GROUP,
        ENV_ALLOW,
        ENV_DISABLE_AUTOLOAD,
        _env_flag,
    )

    try:
        found = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - raced
        found = None
    entry_points = [
        entry
        for entry in getattr(found, "entry_points", None) or ()
        if entry.group == ENTRY_POINT_GROUP
    ]
    register = " or ".join(
        f"register_plugin({entry.value.replace(':', '.')}, name={entry.name!r}) "
        f"(import {entry.value.split(':')[0]} first)"
        for entry in entry_points
    )
    if getattr(plugin_manager, "autoloads", True):
        allow = getattr(plugin_manager, "allow", None)
        if allow is not None:
            return (
                f"(it is not among the plugins {ENV_ALLOW} allows: "
                f"{', '.join(allow) or 'none'})"
            )
        return "(its entry point was not loaded)"
    if _env_flag(os.environ, ENV_DISABLE_AUTOLOAD):
        return f"({ENV_DISABLE_AUTOLOAD} is set)"
    how = f": {register}" if register else ""
    return (
        "(this plugin manager loads no installed plugins, as a test's isolated one "
        f"does; register the plugin in it{how})"
    )
