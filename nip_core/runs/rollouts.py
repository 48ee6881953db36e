"""Rollout samples: a few episodes saved as JSON lines, never as pickles.

Both data worlds write ``rollouts/iter_{iteration:06d}.jsonl``. Text rollouts
(:class:`~nip_core.text.rollouts.TextRollouts`) write one episode per line in their
own layout (:meth:`~nip_core.text.rollouts.TextRollouts.episode_dict`: rounds,
agents, prompts, messages, decisions, rewards) and read back exactly with
:meth:`~nip_core.text.rollouts.TextRollouts.load_jsonl`. In the tensor world each
line is one episode::

    {"iteration": 3, "env_index": 0, "num_steps": 4,
     "agent_names": ["prover", "verifier"],
     "steps": [{"round": 0, "agents.decision": [2, 0], "next.agents.reward": [...],
                ...}, ...]}

Keys are the rollout TensorDict's keys joined with dots; values are plain lists and
numbers, so any tool (and ``nip report``, and an episode renderer) can read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nip_core.runs.io import atomic_write_text

if TYPE_CHECKING:
    from tensordict import TensorDictBase

    from nip_core.text.rollouts import TextRollouts


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def episodes_from_rollout(
    rollout: TensorDictBase | TextRollouts,
    num_episodes: int,
    iteration: int,
    agent_names: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Cut the first ``num_episodes`` episodes out of a ``[*batch, time]`` rollout.

    Text rollouts give their episodes' own dicts
    (:meth:`~nip_core.text.rollouts.TextRollouts.episode_dict`, which name their
    agents and iteration already).

    An episode runs from the first step of an environment's trajectory up to the
    first step whose ``("next", "done")`` is set (or the end of the batch). With
    ``agent_names`` (the order of the agent dimension), each episode records them
    under ``"agent_names"``, so readers and renderers can name the agents.
    """
    from nip_core.text.rollouts import TextRollouts

    if isinstance(rollout, TextRollouts):
        count = min(num_episodes, rollout.batch_size)
        return [rollout.episode_dict(b) for b in range(count)]
    flat = rollout.reshape(-1, rollout.shape[-1]) if rollout.ndim > 1 else rollout[None]
    keys = [
        key
        for key in flat.keys(include_nested=True, leaves_only=True)
        if not isinstance(key, str) or key != "collector"
    ]
    done = flat.get(("next", "done"), None)
    episodes: list[dict[str, Any]] = []
    for env_index in range(flat.shape[0]):
        if len(episodes) >= num_episodes:
            break
        length = flat.shape[1]
        if done is not None:
            done_steps = done[env_index].reshape(length, -1).any(-1).nonzero()
            if len(done_steps) > 0:
                length = int(done_steps[0]) + 1
        steps = []
        for t in range(length):
            step = {}
            for key in keys:
                name = key if isinstance(key, str) else ".".join(key)
                if name.startswith("collector"):
                    continue
                step[name] = _plain(flat[env_index, t].get(key))
            steps.append(step)
        episode: dict[str, Any] = {
            "iteration": iteration,
            "env_index": env_index,
            "num_steps": length,
            "steps": steps,
        }
        if agent_names is not None:
            episode["agent_names"] = list(agent_names)
        episodes.append(episode)
    return episodes


def write_rollout_sample(
    rollouts_dir: str | Path, iteration: int, episodes: list[dict[str, Any]]
) -> Path:
    """Write episodes to ``rollouts/iter_{iteration:06d}.jsonl`` atomically."""
    path = Path(rollouts_dir) / f"iter_{iteration:06d}.jsonl"
    text = "".join(json.dumps(episode) + "\n" for episode in episodes)
    return atomic_write_text(path, text)


def read_rollout_sample(path: str | Path) -> list[dict[str, Any]]:
    """Read the episodes of one rollout-sample file."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
