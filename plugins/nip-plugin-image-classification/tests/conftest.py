"""Test settings of the image classification plugin."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    # The networks under test are tiny: on a shared machine, torch's default thread
    # pool spends far more time contending for cores than computing.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def ic_in_global_manager():
    """The process-wide plugin manager, with this plugin registered if not installed."""
    from nip_core.plugins import get_plugin_manager

    import nip_plugin_image_classification.plugin as ic_plugin

    manager = get_plugin_manager()
    if "image_classification" in manager.scenarios:
        yield manager
        return
    from nip_plugin_image_classification import __version__

    name = manager.register(
        ic_plugin,
        name="image_classification",
        distribution="nip-plugin-image-classification",
        version=__version__,
    )
    yield manager
    manager.unregister(name)
