"""Fixtures of the PPO plugin's tests: the synthetic scenario and this plugin."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def ppo_scenario(synthetic_scenario: Any, register_plugin: Any) -> Any:
    """The synthetic scenario with this plugin's trainers and sections registered."""
    import nip_plugin_ppo.plugin

    register_plugin(nip_plugin_ppo.plugin, name="ppo")
    return synthetic_scenario


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Hydra's multirun configures logging; put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
