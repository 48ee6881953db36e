"""Shared configuration of the core test suite.

The fixtures (``plugin_manager``, ``register_plugin``, ``synthetic_scenario``) come
from nip-core's pytest plugin, loaded through its ``pytest11`` entry point.
"""

import signal
from collections.abc import Iterator

import pytest

from nip_core.plugins import NipPluginManager
from nip_core.testing.fixtures import isolated_plugin_manager


@pytest.fixture(autouse=True)
def _core_only_plugin_manager() -> Iterator[NipPluginManager]:
    """Keep the core suite independent of the plugins installed beside it.

    Every core test sees a process-wide plugin manager with only the built-in
    plugins (strict); tests that need more register it with ``register_plugin`` or
    build their own manager.
    """
    with isolated_plugin_manager() as manager:
        yield manager


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    """Each test starts with the signal handlers the one before it found: a
    library a test starts in this process (Ray installs a SIGTERM handler that
    calls ``sys.exit``) would otherwise change how later tests' signals end."""
    saved = {
        signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    yield
    for signum, handler in saved.items():
        if handler is not None and signal.getsignal(signum) is not handler:
            signal.signal(signum, handler)
