"""pytest plugin of nip-core: fixtures every nip test suite (core and plugins) gets.

Loaded through the ``pytest11`` entry point of nip-core, so any project that has
nip-core installed can use these fixtures without a ``conftest.py``:
``plugin_manager``, ``register_plugin``, ``synthetic_scenario`` (the tiny tensor
scenario of :mod:`nip_core.testing.synthetic`), ``synthetic_text_scenario`` and
``openai_test_server`` (the tiny text scenario of
:mod:`nip_core.testing.synthetic_text` and the local OpenAI-compatible server its
scripted model runs on), ``test_protocols`` (the test protocol
``multi_channel_test``), ``single_thread``, ``agent_thread_sections`` and
``restored_logging`` (the root logger put back after a test that ran a sweep). See
:mod:`nip_core.testing.fixtures` for why they are not autouse.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from nip_core.plugins import NipPluginManager
from nip_core.testing.fixtures import RegisterPlugin, isolated_plugin_manager
from nip_core.testing.synthetic.fixtures import synthetic_scenario
from nip_core.testing.synthetic_text.fixtures import (
    openai_test_server,
    synthetic_text_scenario,
)

__all__ = [
    "agent_thread_sections",
    "openai_test_server",
    "plugin_manager",
    "register_plugin",
    "restored_logging",
    "single_thread",
    "synthetic_scenario",
    "synthetic_text_scenario",
    "test_protocols",
]


@pytest.fixture
def single_thread() -> Iterator[None]:
    """torch on one thread for the test, then the previous thread count again.

    Tiny models train faster on one thread, and results do not depend on how other
    tests left the thread count. Use it for a whole module with
    ``pytestmark = pytest.mark.usefixtures("single_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Hydra's multirun configures logging; put the root logger back afterwards
    (its handlers and level as before the test)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def plugin_manager() -> Iterator[NipPluginManager]:
    """A fresh plugin manager with only the built-in plugins, in strict mode.

    It is the process-wide manager (:func:`nip_core.plugins.get_plugin_manager`)
    for the duration of the test; the previous one is restored afterwards.
    Installed plugins are not loaded: register the ones a test needs with
    ``register_plugin``.
    """
    with isolated_plugin_manager() as manager:
        yield manager


@pytest.fixture
def register_plugin(plugin_manager: NipPluginManager) -> Iterator[RegisterPlugin]:
    """``register_plugin(obj, name=None, **kwargs) -> name``: register a plugin
    object into the test's isolated ``plugin_manager``.

    ``obj`` is a module, class or instance with :data:`nip_core.hookimpl`-marked
    functions; keyword arguments (``distribution``, ``version``) are passed to
    :meth:`~nip_core.plugins.NipPluginManager.register`. The registries are rebuilt
    on next use. Plugins are unregistered after the test.
    """
    names: list[str] = []

    def register(obj: Any, name: str | None = None, **kwargs: Any) -> str:
        registered = plugin_manager.register(obj, name=name, **kwargs)
        names.append(registered)
        return registered

    yield register
    for name in reversed(names):
        if plugin_manager.has_plugin(name):
            plugin_manager.unregister(name)


@pytest.fixture
def test_protocols() -> Iterator[None]:
    """The test protocol ``multi_channel_test`` (:mod:`nip_core.testing.protocols`),
    registered into the process-wide plugin manager for the test.

    Request it after ``plugin_manager`` (or a fixture that registers a scenario)
    when the test uses an isolated manager.
    """
    from nip_core.plugins import get_plugin_manager
    from nip_core.testing.protocols import (
        TEST_PROTOCOLS_PLUGIN,
        TEST_PROTOCOLS_PLUGIN_NAME,
    )

    manager = get_plugin_manager()
    if manager.has_plugin(TEST_PROTOCOLS_PLUGIN_NAME):
        yield None
        return
    manager.register(TEST_PROTOCOLS_PLUGIN, name=TEST_PROTOCOLS_PLUGIN_NAME)
    try:
        yield None
    finally:
        if manager.has_plugin(TEST_PROTOCOLS_PLUGIN_NAME):
            manager.unregister(TEST_PROTOCOLS_PLUGIN_NAME)


@pytest.fixture
def agent_thread_sections(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[int]]:
    """How many tasks each threaded section of ``run.agent_threads`` ran during the
    test: ``{"forward": [...], "backward": [...]}`` (backward: the sections the
    joined parts' backward pass ran)."""
    from nip_core.scenario import concurrency

    record: dict[str, list[int]] = {"forward": [], "backward": []}
    run = concurrency.PartRunner.run
    backward = concurrency._JoinParts.backward
    inside: list[bool] = []

    def counting_run(self: Any, tasks: Any) -> Any:
        record["backward" if inside else "forward"].append(len(tasks))
        return run(self, tasks)

    def counting_backward(ctx: Any, *grads: Any) -> Any:
        inside.append(True)
        try:
            return backward(ctx, *grads)
        finally:
            inside.pop()

    monkeypatch.setattr(concurrency.PartRunner, "run", counting_run)
    monkeypatch.setattr(
        concurrency._JoinParts, "backward", staticmethod(counting_backward)
    )
    return record
