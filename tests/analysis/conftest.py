"""Fixtures of the analysis tests."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models train faster on one thread than on many fighting for two cores."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


from nip_core.testing.synthetic.fixtures import synthetic_scenario  # noqa: E402, F401
