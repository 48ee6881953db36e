"""Drawing one saved episode: the image with the latent pixels each agent sent.

Reads a rollout-sample record (see :mod:`nip_core.runs.rollouts`): a dict whose
``"steps"`` are dicts of dotted TensorDict keys to plain lists. Each latent pixel an
active agent sent is outlined in the agent's colour over the image region it covers
and labelled with the round; the title gives the label and the verifier's decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DECISION_NAMES = {0: "reject", 1: "accept", 2: "continue"}


def _image_array(image: Any) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3:
        raise ValueError(f"expected an image of shape (C, H, W), got {array.shape}")
    array = np.clip((array + 1.0) / 2.0, 0.0, 1.0)
    if array.shape[0] == 1:
        return array[0]
    return np.transpose(array, (1, 2, 0))


def _latent_grid(step: dict[str, Any]) -> tuple[int, int]:
    for key in ("message_history", "message"):
        if key in step:
            shape = np.asarray(step[key]).shape
            return int(shape[-2]), int(shape[-1])
    raise ValueError("the episode has neither 'message_history' nor 'message'")


def _pooled_block(size: int, latent: int) -> int:
    """The side of the image block one latent pixel pools: ``2 ** g`` for the ``g``
    with ``size // 2 ** g == latent`` (the grid is the image floor-halved ``g``
    times). Where ``size`` is not a multiple of it, the last rows or columns are
    pooled by no latent pixel, and the cells leave them out."""
    block = 1
    while size // block > latent and block <= size:
        block *= 2
    return block


def latent_pixel_messages(episode: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """``(round, agent, row, column)`` of every latent pixel an active agent sent."""
    messages = []
    for step in episode["steps"]:
        if "agents.message_selected" not in step:
            continue
        _, width = _latent_grid(step)
        selected = np.asarray(step["agents.message_selected"])  # (A, C, P)
        active = np.asarray(
            step.get("agents.active_mask", np.ones(selected.shape[:2], dtype=bool))
        ).astype(bool)
        round_id = int(np.asarray(step.get("round", 0)))
        for agent, channel, position in np.ndindex(*selected.shape):
            if not active[agent, channel]:
                continue
            index = int(selected[agent, channel, position])
            messages.append((round_id, agent, index // width, index % width))
    return messages


def render_episode(episode: dict[str, Any], path: Path) -> None:
    """Write a PNG of one episode to ``path``.

    Parameters
    ----------
    episode : dict
        A rollout-sample record; its first step must hold ``"image"``. Optional
        ``"agent_names"`` names the agents (else ``agent 0``, ``agent 1``, ...).
    path : Path
        The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt
    from matplotlib.patches import Rectangle

    steps = episode["steps"]
    if not steps or "image" not in steps[0]:
        raise ValueError("the episode's first step has no 'image'")
    image = _image_array(steps[0]["image"])
    height, width = image.shape[:2]
    latent_height, latent_width = _latent_grid(steps[0])
    cell_h = cell_w = _pooled_block(height, latent_height)

    messages = latent_pixel_messages(episode)
    num_agents = max(
        [len(np.asarray(steps[0].get("agents.message_selected", [[0]])))]
        + [m[1] + 1 for m in messages]
    )
    names = list(
        episode.get("agent_names") or [f"agent {i}" for i in range(num_agents)]
    )
    colours = plt.get_cmap("tab10")

    figure, axes = plt.subplots(figsize=(4, 4.4))
    axes.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    for round_id, agent, row, column in messages:
        colour = colours(agent % 10)
        axes.add_patch(
            Rectangle(
                (column * cell_w - 0.5, row * cell_h - 0.5),
                cell_w,
                cell_h,
                fill=False,
                edgecolor=colour,
                linewidth=2,
            )
        )
        axes.text(
            column * cell_w - 0.3,
            row * cell_h - 0.3 + 0.35 * cell_h * (agent % 2),
            str(round_id),
            color=colour,
            fontsize=8,
            va="top",
        )
    for agent in sorted({m[1] for m in messages}):
        axes.plot([], [], color=colours(agent % 10), label=names[agent])
    if messages:
        axes.legend(loc="upper right", fontsize=7, framealpha=0.7)

    title = []
    label = steps[0].get("y")
    if label is not None:
        title.append(f"y = {int(np.asarray(label).reshape(-1)[0])}")
    last = steps[-1]
    if "agents.decision" in last and "agents.decision_mask" in last:
        decisions = np.asarray(last["agents.decision"])
        mask = np.asarray(last["agents.decision_mask"]).astype(bool)
        made = [int(d) for d, m in zip(decisions, mask, strict=False) if m]
        if made:
            title.append(f"decision: {DECISION_NAMES.get(made[0], made[0])}")
    title.append(f"{len(steps)} rounds")
    axes.set_title(", ".join(title), fontsize=9)
    axes.set_xticks([])
    axes.set_yticks([])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
