"""Plugin-manager fixtures and helpers for nip test suites (core and plugins).

The pytest plugin :mod:`nip_core.testing.pytest_plugin` (loaded automatically when
nip-core is installed) exposes the fixtures below to every test suite:

``plugin_manager``
    A fresh :class:`~nip_core.plugins.NipPluginManager` with only the built-in
    plugins, in strict mode (a broken plugin raises), installed as the process-wide
    manager for the test and replaced by the previous one afterwards.
``register_plugin``
    ``register_plugin(obj, name=None) -> str`` registers a plugin object (a module,
    class or instance with :data:`nip_core.hookimpl` functions) into that manager
    for one test.

Neither is autouse: a third-party suite that loads nip-core's pytest plugin should not
find its own installed plugins silently hidden. A test that needs isolation asks for
``plugin_manager``; code under test that calls
:func:`~nip_core.plugins.get_plugin_manager` then sees the isolated manager.

Outside pytest, :func:`isolated_plugin_manager` does the same as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nip_core.plugins import (
    ENTRY_POINT_GROUP,
    ENV_TRACE,
    NipPluginManager,
    _env_flag,
    set_plugin_manager,
)

RegisterPlugin = Callable[..., str]
"""The type of the ``register_plugin`` fixture: ``(obj, name=None) -> str``."""


@contextlib.contextmanager
def isolated_plugin_manager(
    plugins: Iterable[Any] | Mapping[str, Any] = (),
    *,
    builtins: bool | Iterable[str] = True,
    strict: bool = True,
    autoload: bool = False,
) -> Iterator[NipPluginManager]:
    """Install a fresh manager as the process-wide one for the ``with`` block.

    Parameters
    ----------
    plugins : Iterable[Any] | Mapping[str, Any]
        Plugin objects to register (a mapping gives them names).
    builtins : bool | Iterable[str]
        Which built-in plugins to register (all by default).
    strict : bool
        Raise for a broken plugin (default) instead of warning.
    autoload : bool
        Also load installed plugins from entry points (off by default, so tests do
        not depend on what happens to be installed).
    """
    # The switches of the environment running the tests must not leak in, except
    # tracing, which only prints.
    manager = NipPluginManager(
        builtins=builtins,
        autoload=autoload,
        strict=strict,
        trace=_env_flag(os.environ, ENV_TRACE),
        environ={},
    )
    if isinstance(plugins, Mapping):
        for name, obj in plugins.items():
            manager.register(obj, name=name)
    else:
        for obj in plugins:
            manager.register(obj)
    previous = set_plugin_manager(manager)
    try:
        yield manager
    finally:
        set_plugin_manager(previous)


def make_plugin_distribution(
    root: Path,
    distribution: str,
    version: str,
    entry_points: Mapping[str, str],
    modules: Mapping[str, str] | None = None,
    *,
    group: str = ENTRY_POINT_GROUP,
) -> Path:
    """Write an installed-looking distribution under ``root`` (put on ``sys.path``).

    Creates ``<name>-<version>.dist-info/`` with ``METADATA`` and
    ``entry_points.txt``, and the given modules as files, which is what
    :mod:`importlib.metadata` reads for an installed package. Lets a test exercise
    real entry-point discovery without ``pip install``.

    Parameters
    ----------
    root : Path
        A directory that is (or will be) on ``sys.path``.
    distribution : str
        The distribution name, e.g. ``"nip-plugin-demo"``.
    version : str
        Its version.
    entry_points : Mapping[str, str]
        Entry-point name to value (``{"demo": "nip_plugin_demo.plugin"}``).
    modules : Mapping[str, str] | None
        Dotted module name to source text; packages get ``__init__.py`` files.
    group : str
        The entry-point group (``nip_core.plugins``).

    Returns
    -------
    Path
        The ``.dist-info`` directory.
    """
    root = Path(root)
    safe = re.sub(r"[-_.]+", "_", distribution)
    dist_info = root / f"{safe}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
    )
    lines = [f"[{group}]"] + [
        f"{name} = {value}" for name, value in entry_points.items()
    ]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module_name, source in (modules or {}).items():
        parts = module_name.split(".")
        directory = root.joinpath(*parts[:-1])
        directory.mkdir(parents=True, exist_ok=True)
        for depth in range(1, len(parts)):
            init = root.joinpath(*parts[:depth], "__init__.py")
            if not init.exists():
                init.write_text("")
        (directory / f"{parts[-1]}.py").write_text(source)
    return dist_info
