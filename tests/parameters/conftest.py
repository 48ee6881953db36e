"""Fixtures of the parameter tests: the toy plugin registered in an isolated manager."""

from __future__ import annotations

import pytest
import toy_plugin

from nip_core.plugins import NipPluginManager


@pytest.fixture
def toy(plugin_manager: NipPluginManager, register_plugin) -> NipPluginManager:
    """The built-ins plus the toy plugin (distribution nip-plugin-toy 1.2.0)."""
    register_plugin(
        toy_plugin.ToyPlugin(),
        name="toy",
        distribution=toy_plugin.DISTRIBUTION,
        version=toy_plugin.VERSION,
    )
    return plugin_manager
