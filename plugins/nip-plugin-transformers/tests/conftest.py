"""Fixtures of the transformers plugin's tests: tiny local models and backends
(helpers live in ``tf_helpers``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tf_helpers import make_backend

# Nothing in these tests may reach the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random chat model (ChatML template), built once per test process."""
    from nip_plugin_transformers.testing import tiny_chat_model

    return tiny_chat_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def no_template_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose tokenizer has no chat template."""
    from nip_plugin_transformers.testing import tiny_chat_model

    return tiny_chat_model(
        tmp_path_factory.mktemp("models") / "no-template", chat_template=None
    )


@pytest.fixture
def backend_factory(tmp_path: Path) -> Iterator[Any]:
    """``backend_factory(**params)``: backends closed after the test."""
    made: list[Any] = []

    def factory(**params: Any) -> Any:
        backend = make_backend(tmp_path, **params)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        backend.close()
