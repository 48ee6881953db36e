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
