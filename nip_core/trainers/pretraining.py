"""Pre-training agent bodies in isolation (``pretrain_agents=True``).

Before RL, the bodies of the non-random agents are trained with the ``solo_agent``
trainer (body + solo head, supervised on the labels). The trained bodies are cached
under ``<cache_dir>/pretrained_bodies/<key>.pt``, where the key hashes every
parameter that shapes them: the scenario, dataset, seed, agents, the ``solo_agent``
section, the dataset options, ``d_representation``, the interaction protocol and its
sections, the scenario's own section, ``distributed.num_shards`` (sharded
pre-training has other random streams and per-shard batch statistics) and which
parts the RL trainer builds (a critic; one body or a policy and a value body: each
agent's solo head is initialised after them, from the agent's seeded stream).
Settings that only the RL phase reads are left out (:data:`RL_ONLY`), so changing a
reward or an update schedule reuses the bodies. A second run with the same values
loads them instead of training (``settings.ignore_cache`` retrains).

With ``rl.normalize_observations`` the bodies are pre-trained on the observations RL
feeds them: the datapoints' observations go through the RL environments'
ObservationNorm (computed by the RL trainer before pre-training, from random-action
steps, whether or not the cache holds the bodies), and the key holds those
statistics, bit for bit (:func:`observation_transforms`).

Whether the bodies were trained now or loaded, the RL phase then starts from the
same random state (:func:`reseed_after_pretraining`): a run's result does not depend
on what the cache held.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
protocol sections ``*_protocol``, the scenario's own section and
:data:`CACHE_PATHS`)."""

CACHE_PATHS: tuple[tuple[str, ...], ...] = (("distributed", "num_shards"),)
"""Nested values the cached bodies depend on, in sections the key leaves out."""

RL_ONLY: dict[str, frozenset[str]] = {
    "agents": frozenset({"update_schedule"}),
    "protocol_common": frozenset(
        {
            "prover_reward",
            "prover_invalid_response_penalty",
            "verifier_reward",
            "verifier_incorrect_penalty",
            "verifier_neither_accept_nor_reject_reward",
            "verifier_terminated_penalty",
            "verifier_no_guess_reward",
            "shared_reward",
            "force_guess",
        }
    ),
}
"""Fields of the keyed sections that pre-training never reads (supervised training
on the labels reads no reward, and update schedules belong to RL): left out of the
key, per agent for ``agents``."""


def _without(section: Any, fields: frozenset[str]) -> Any:
    if not isinstance(section, dict):
        return section
    return {key: value for key, value in section.items() if key not in fields}


def observation_transforms(trainer: Any) -> dict[str, Any]:
    """The observation transforms of ``trainer``'s environments (``"train"``,
    ``"test"``; those it has), e.g. the ObservationNorm of
    ``rl.normalize_observations``, which the RL trainer adds before pre-training."""
    transforms = {}
    for split in ("train", "test"):
        transform = getattr(
            getattr(trainer, f"{split}_environment", None), "transform", None
        )
        if transform is not None:
            transforms[split] = transform
    return transforms


def _transforms_digest(transforms: Any) -> str | None:
    """A hash of the transforms' state (the normalisation statistics, bit for bit),
    or ``None`` when they hold none (no transform: the key is as it always was)."""
    if not transforms:
        return None
    digest = hashlib.sha256()
    nothing = True
    for split in sorted(transforms):
        for name, value in sorted(transforms[split].state_dict().items()):
            nothing = False
            tensor = value.detach().cpu().contiguous()
            digest.update(
                f"{split}/{name}/{tensor.dtype}/{list(tensor.shape)}".encode()
            )
            digest.update(tensor.numpy().tobytes())
    return None if nothing else digest.hexdigest()


def pretraining_cache_key(
    hyper_params: Any, transforms: Mapping[str, Any] | None = None
) -> str:
    """A hash of the parameters that shape pre-trained bodies.

    ``transforms`` are the RL trainer's observation transforms
    (:func:`observation_transforms`): pre-training feeds the bodies observations
    through them, so their state (the ObservationNorm statistics, whatever they were
    computed from: ``rl.num_normalization_steps``, the environments, the seed, a test
    run's 10 steps) is part of the key, bit for bit.
    """
    params = hyper_params.to_dict()
    scenario = params.get("scenario")
    selected = {
        key: value
        for key, value in params.items()
        if key in CACHE_KEYS or key.endswith("_protocol") or key == scenario
    }
    if isinstance(selected.get("agents"), dict):
        agents = {
            name: _without(agent, RL_ONLY["agents"])
            for name, agent in selected["agents"].items()
        }
        # an agent given the defaults' values (once RL-only fields are left out)
        # is keyed as the defaults are, however the config spelled it
        default = agents.get("_default")
        selected["agents"] = {
            name: agent
            for name, agent in agents.items()
            if name == "_default" or agent != default
        }
    if "protocol_common" in selected:
        selected["protocol_common"] = _without(
            selected["protocol_common"], RL_ONLY["protocol_common"]
        )
    for path in CACHE_PATHS:
        value: Any = params
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        selected[".".join(path)] = value
    selected["agent_parts"] = _agent_part_flags(hyper_params)
    digest = _transforms_digest(transforms)
    if digest is not None:
        selected["observation_transforms"] = digest
    text = json.dumps(selected, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _agent_part_flags(hyper_params: Any) -> dict[str, bool]:
    """Which parts the RL trainer has the factory build (a critic, one body or two):
    each agent's solo head is initialised after its other parts, from the agent's
    own seeded stream, so they shape the solo head the bodies are trained with."""
    from nip_core.factory import _trainer_class_and_type, agent_part_flags

    trainer_class, trainer_type = _trainer_class_and_type(hyper_params)
    return agent_part_flags(hyper_params, trainer_class, trainer_type)


def pretraining_cache_path(
    hyper_params: Any, settings: Any, transforms: Mapping[str, Any] | None = None
) -> Path:
    base = cache_dir_or_default(settings.cache_dir)
    key = pretraining_cache_key(hyper_params, transforms)
    return base / "pretrained_bodies" / f"{key}.pt"


def _bodies(trainer: Any) -> dict[str, Any]:
    bodies = {}
    for name, agent in trainer.agents.items():
        if getattr(trainer.hyper_params.agents[name], "is_random", False):
            continue
        body = agent.body if agent.body is not None else agent.policy_body
        bodies[name] = body
    return bodies


def _solo_heads(trainer: Any) -> dict[str, Any]:
    return {
        name: agent.solo_head
        for name, agent in trainer.agents.items()
        if not getattr(trainer.hyper_params.agents[name], "is_random", False)
        and getattr(agent, "solo_head", None) is not None
    }


CACHE_FORMAT = 3
"""Version of the cached file: ``{"format", "bodies", "solo_heads",
"test_metrics"}``. Files of another format (format 1 held the bodies alone,
format 2 no test metrics) are trained anew and replaced."""


def _load_cached(path: Path, trainer: Any) -> dict[str, Any] | None:
    import torch

    state = torch.load(path, map_location=trainer.device, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CACHE_FORMAT:
        return None
    return state


def pretrain_agent_bodies(trainer: Any) -> bool:
    """Pre-train (or load from the cache) the bodies of ``trainer``'s agents.

    The cache holds the solo heads trained beside the bodies too, so an agent
    loaded from it is the agent pre-training would have left, part for part, and
    the ``{agent}.pretrain_test_*`` metrics pre-training logged, which a run that
    loads the bodies logs in the same place (step 0). Returns whether the bodies
    came from the cache.
    """
    from nip_core.trainers.solo_agent import SoloAgentTrainer

    bodies = _bodies(trainer)
    heads = _solo_heads(trainer)
    transforms = observation_transforms(trainer)
    path = pretraining_cache_path(trainer.hyper_params, trainer.settings, transforms)
    cached = (
        _load_cached(path, trainer)
        if path.is_file() and not trainer.settings.ignore_cache
        else None
    )
    if cached is not None:
        for name, body in bodies.items():
            body.load_state_dict(cached["bodies"][name])
        for name, head in heads.items():
            head.load_state_dict(cached["solo_heads"][name])
        trainer.log_metrics(0, cached["test_metrics"])
        return True
    solo = SoloAgentTrainer(
        trainer.hyper_params,
        trainer.scenario_instance,
        trainer.settings,
        trainer.run,
        as_pretraining=True,
        observation_transforms=transforms,
    )
    # Pre-training's optimizer freezes (requires_grad off) what it trains at a
    # learning rate of 0; the RL phase has learning rates of its own (e.g.
    # rl.body_lr_factor_override) and must find every part as a cache hit leaves it
    params = [p for agent in trainer.agents.values() for p in agent.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        solo.train()
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
    from nip_core.distributed import is_main_process

    if not trainer.settings.test_run and is_main_process():
        atomic_torch_save(
            path,
            {
                "format": CACHE_FORMAT,
                "bodies": {name: body.state_dict() for name, body in bodies.items()},
                "solo_heads": {name: head.state_dict() for name, head in heads.items()},
                "test_metrics": dict(solo.test_metrics),
            },
        )
    return False


def reseed_after_pretraining(hyper_params: Any) -> None:
    """Seed the global generators for the RL phase that follows pre-training.

    Training the bodies draws random numbers and loading them from the cache does
    not; without this the RL phase would continue from different states in the two
    cases, and the same hyper-parameters would train different agents depending on
    what the cache held. The seed is derived from the experiment's, so the RL phase
    does not replay the stream pre-training started from.
    """
    from nip_core.seeding import derive_seed, seed_everything

    seed_everything(derive_seed(int(hyper_params.seed), "rl_after_pretraining"))
