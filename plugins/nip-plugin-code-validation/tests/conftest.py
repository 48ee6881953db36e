"""Fixtures: an isolated data directory and the scripted code-validation server."""

from __future__ import annotations

import pytest
from cv_helpers import code_server


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path_factory.getbasetemp() / "nip-data"))


@pytest.fixture
def code_validation_plugin(register_plugin):
    """The plugin registered in the test's isolated plugin manager, with the
    synthetic text scenario's small staged trainer ``synthetic_text_sft``."""
    from nip_core.testing.synthetic_text import SYNTHETIC_TEXT_PLUGIN

    import nip_plugin_code_validation.plugin as plugin

    register_plugin(plugin, name="code_validation")
    register_plugin(SYNTHETIC_TEXT_PLUGIN, name="synthetic_text")


@pytest.fixture
def server():
    with code_server() as server:
        yield server
