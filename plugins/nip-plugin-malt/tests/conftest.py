"""Fixtures of the MALT plugin's tests: the synthetic text scenario with this plugin."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def malt_scenario(synthetic_text_scenario: Any, register_plugin: Any) -> Any:
    """The synthetic text scenario (and its scripted server) with ``pure_text_malt``
    registered."""
    import nip_plugin_malt
    import nip_plugin_malt.plugin

    register_plugin(
        nip_plugin_malt.plugin,
        name="malt",
        distribution="nip-plugin-malt",
        version=nip_plugin_malt.__version__,
    )
    return synthetic_text_scenario
