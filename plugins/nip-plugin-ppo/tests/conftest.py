"""Fixtures of the PPO plugin's tests: the synthetic scenario and this plugin."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def ppo_scenario(synthetic_scenario: Any, register_plugin: Any) -> Any:
    """The synthetic scenario with this plugin's trainers and sections registered."""
    import nip_plugin_ppo.plugin

    register_plugin(nip_plugin_ppo.plugin, name="ppo")
    return synthetic_scenario
