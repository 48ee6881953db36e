"""Fixtures of the EI plugin's tests: the synthetic text scenario with this plugin."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def ei_scenario(synthetic_text_scenario: Any, register_plugin: Any) -> Any:
    """The synthetic text scenario (and its scripted server) with ``pure_text_ei``
    registered."""
    import nip_plugin_ei
    import nip_plugin_ei.plugin

    register_plugin(
        nip_plugin_ei.plugin,
        name="ei",
        distribution="nip-plugin-ei",
        version=nip_plugin_ei.__version__,
    )
    return synthetic_text_scenario
