"""Shared fixtures: a tiny dataset directory, so tests never generate eru10000."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    # named datasets generated on first use go to a per-session directory
    data_dir = tmp_path_factory.getbasetemp() / "nip-data"
    monkeypatch.setenv("NIP_DATA_DIR", str(data_dir))


@pytest.fixture
def gi_in_global_manager():
    """The process-wide plugin manager, with this plugin registered if not installed."""
    from nip_core.plugins import get_plugin_manager

    import nip_plugin_graph_isomorphism.plugin as gi_plugin
    from nip_plugin_graph_isomorphism import __version__

    manager = get_plugin_manager()
    if "graph_isomorphism" in manager.scenarios:
        yield manager
        return
    name = manager.register(
        gi_plugin,
        name="graph_isomorphism",
        distribution="nip-plugin-graph-isomorphism",
        version=__version__,
    )
    yield manager
    manager.unregister(name)
