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
    """Cut up to ``num_episodes`` whole episodes out of a ``[*batch, time]`` rollout.

    Episodes continue from one training iteration to the next, so an environment's
    stretch of a rollout usually begins in the middle of an episode and ends in the
    middle of another. Only whole episodes are kept: from a step that starts one
    (the step after a ``("next", "done")``, or a first step whose ``"round"`` is 0)
    up to and including the step whose ``("next", "done")`` is set. They are taken
    environment by environment, in time order. With ``agent_names`` (the order of
    the agent dimension), each episode records them under ``"agent_names"``, so
    readers and renderers can name the agents.

    Text rollouts give their episodes' own dicts
    (:meth:`~nip_core.text.rollouts.TextRollouts.episode_dict`, which name their
    agents and iteration already).
    """
    from nip_core.text.rollouts import TextRollouts

    if isinstance(rollout, TextRollouts):
        count = min(num_episodes, rollout.batch_size)
        return [rollout.episode_dict(b) for b in range(count)]
    flat = rollout.reshape(-1, rollout.shape[-1]) if rollout.ndim > 1 else rollout[None]
    keys = [
        key
        for key in flat.keys(include_nested=True, leaves_only=True)
        if not (isinstance(key, str) and key.startswith("collector"))
        and not (isinstance(key, tuple) and key[0] == "collector")
    ]
    length = flat.shape[1]
    done = flat.get(("next", "done"), None)
    rounds = flat.get("round", None)
    episodes: list[dict[str, Any]] = []
    for env_index in range(flat.shape[0]):
        if done is None:
            ends = [length - 1]
        else:
            ends = [
                int(t) for t in done[env_index].reshape(length, -1).any(-1).nonzero()
            ]
        starts_whole = rounds is None or int(rounds[env_index, 0].reshape(-1)[0]) == 0
        start = 0 if starts_whole else None
        for end in ends:
            if start is not None and len(episodes) < num_episodes:
                episodes.append(
                    _episode(flat, keys, env_index, start, end, iteration, agent_names)
                )
            start = end + 1
        if len(episodes) >= num_episodes:
            break
    return episodes


def _episode(
    flat: Any,
    keys: list[Any],
    env_index: int,
    start: int,
    end: int,
    iteration: int,
    agent_names: list[str] | None,
) -> dict[str, Any]:
    steps = []
    for t in range(start, end + 1):
        step_td = flat[env_index, t]
        steps.append(
            {
                (key if isinstance(key, str) else ".".join(key)): _plain(
                    step_td.get(key)
                )
                for key in keys
            }
        )
    episode: dict[str, Any] = {
        "iteration": iteration,
        "env_index": env_index,
        "num_steps": len(steps),
        "steps": steps,
    }
    if agent_names is not None:
        episode["agent_names"] = list(agent_names)
    return episode


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
