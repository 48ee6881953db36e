"""nip-core: neural interactive proofs, the core of a plugin-based framework.

The core knows no scenario, dataset or trainer by name: everything arrives through the
hooks in :mod:`nip_core.hookspecs`. This module stays light (no torch import), so
``nip --help`` and ``nip plugins`` answer quickly.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.1"

PROJECT_NAME = "nip"
"""The pluggy project name: hook specifications and implementations use it."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator marking a hook implementation in a plugin."""

__all__ = ["__version__", "hookimpl", "PROJECT_NAME"]
