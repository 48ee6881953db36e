"""Pre-training agent bodies in isolation (``pretrain_agents=True``).

Before RL, the bodies of the non-random agents are trained with the ``solo_agent``
trainer (body + solo head, supervised on the labels). The trained bodies are cached
under ``<cache_dir>/pretrained_bodies/<key>.pt``, where the key hashes every
parameter that shapes them: the scenario, dataset, seed, agents, the ``solo_agent``
section, the dataset options, ``d_representation``, the interaction protocol and its
sections, and the scenario's own section. A second run with the same values loads
them instead of training (``settings.ignore_cache`` retrains).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nip_core.runs.io import atomic_torch_save
from nip_core.settings import cache_dir_or_default

CACHE_KEYS: tuple[str, ...] = (
    "scenario",
    "dataset",
    "agents",
    "seed",
    "test_size",
    "d_representation",
    "message_size",
    "include_linear_message_space",
    "d_linear_message_space",
    "interaction_protocol",
    "solo_agent",
    "dataset_options",
    "protocol_common",
)
"""Top-level keys of the parameter dict the cached bodies depend on (besides the
protocol sections ``*_protocol`` and the scenario's own section)."""


def pretraining_cache_key(hyper_params: Any) -> str:
    """A hash of the parameters that shape pre-trained bodies."""
    params = hyper_params.to_dict()
    scenario = params.get("scenario")
    selected = {
        key: value
        for key, value in params.items()
        if key in CACHE_KEYS or key.endswith("_protocol") or key == scenario
    }
    text = json.dumps(selected, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pretraining_cache_path(hyper_params: Any, settings: Any) -> Path:
    base = cache_dir_or_default(settings.cache_dir)
    return base / "pretrained_bodies" / f"{pretraining_cache_key(hyper_params)}.pt"


def _bodies(trainer: Any) -> dict[str, Any]:
    bodies = {}
    for name, agent in trainer.agents.items():
        if getattr(trainer.hyper_params.agents[name], "is_random", False):
            continue
        body = agent.body if agent.body is not None else agent.policy_body
        bodies[name] = body
    return bodies


def pretrain_agent_bodies(trainer: Any) -> bool:
    """Pre-train (or load from the cache) the bodies of ``trainer``'s agents.

    Returns whether the bodies came from the cache.
    """
    import torch

    from nip_core.trainers.solo_agent import SoloAgentTrainer

    bodies = _bodies(trainer)
    path = pretraining_cache_path(trainer.hyper_params, trainer.settings)
    if path.is_file() and not trainer.settings.ignore_cache:
        state = torch.load(path, map_location=trainer.device, weights_only=True)
        for name, body in bodies.items():
            body.load_state_dict(state[name])
        return True
    solo = SoloAgentTrainer(
        trainer.hyper_params,
        trainer.scenario_instance,
        trainer.settings,
        trainer.run,
        as_pretraining=True,
    )
    solo.train()
    from nip_core.distributed import is_main_process

    if not trainer.settings.test_run and is_main_process():
        atomic_torch_save(
            path, {name: body.state_dict() for name, body in bodies.items()}
        )
    return False
