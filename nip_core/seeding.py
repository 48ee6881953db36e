"""Deterministic seeds.

Seeds are derived with SHA-256, never with Python's :func:`hash`, which is salted per
process for strings (``PYTHONHASHSEED``), so the same experiment gets the same seeds
in every process and on every machine.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["MAX_SEED", "derive_seed", "seed_everything"]

MAX_SEED = 2**31
"""Derived seeds lie in ``[0, MAX_SEED)``, valid for Python, NumPy and torch."""


def derive_seed(seed: int, name: str) -> int:
    """A seed for the named component (an agent, a data split) of an experiment.

    Parameters
    ----------
    seed : int
        The experiment's seed.
    name : str
        What the seed is for, e.g. an agent name.

    Returns
    -------
    int
        The first 8 bytes of ``sha256(f"{seed}:{name}")``, big-endian, modulo
        ``2**31``: the same in every process, different for different names.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SEED


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (if installed) torch's global generators.

    torch is imported here, not at module import, so that importing this module
    stays light. torch's ``manual_seed`` also seeds every CUDA device.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    else:
        # the legacy global generator is what libraries without a Generator use
        np.random.seed(seed % 2**32)  # noqa: NPY002
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)
