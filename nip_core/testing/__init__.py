"""Test support for nip-core and its plugins.

- :mod:`nip_core.testing.pytest_plugin`: the ``plugin_manager`` and
  ``register_plugin`` fixtures, loaded automatically by pytest (``pytest11`` entry
  point).
- :mod:`nip_core.testing.fixtures`: :func:`isolated_plugin_manager` and
  :func:`make_plugin_distribution` for use outside fixtures.
- :mod:`nip_core.testing.torchrun`: one experiment under ``torchrun`` (or in a
  plain process), compared with a reference run.

This package imports neither torch nor pytest; import the submodules you need.
"""
