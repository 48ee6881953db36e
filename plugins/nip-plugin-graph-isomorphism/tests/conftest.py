"""Shared fixtures: a tiny dataset directory, so tests never generate eru10000."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    # named datasets generated on first use go to a per-session directory
    data_dir = tmp_path_factory.getbasetemp() / "nip-data"
    monkeypatch.setenv("NIP_DATA_DIR", str(data_dir))
