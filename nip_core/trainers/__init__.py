"""Trainers: the base classes and the built-in ``solo_agent`` and ``reinforce``.

Importing this package does not import torch; the classes are loaded on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "Trainer": "nip_core.trainers.base",
    "TensorDictTrainer": "nip_core.trainers.base",
    "IterationContext": "nip_core.trainers.base",
    "ResumePoint": "nip_core.trainers.base",
    "PureTextRlTrainer": "nip_core.trainers.text",
    "TextTrainerState": "nip_core.trainers.text",
    "attach_progress_bar": "nip_core.trainers.base",
    "TensorDictRlTrainer": "nip_core.trainers.rl",
    "SoloAgentTrainer": "nip_core.trainers.solo_agent",
    "ReinforceTrainer": "nip_core.trainers.reinforce",
    "ReinforceLoss": "nip_core.trainers.reinforce",
    "build_param_groups": "nip_core.trainers.optim",
    "rollout_statistics": "nip_core.trainers.stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nip_core.trainers' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
