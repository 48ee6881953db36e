"""Drawing one saved episode: both graphs, the nodes each agent sent, the verdict.

Reads a rollout-sample record (see :mod:`nip_core.runs.rollouts`): a dict whose
``"steps"`` are dicts of dotted TensorDict keys to plain lists. The two graphs are
drawn side by side (networkx spring layouts, seeded); every node an active agent sent
gets a ring in the agent's colour labelled with the round; the title gives the label
and the verifier's decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

DECISION_NAMES = {0: "reject", 1: "accept", 2: "continue"}


def node_messages(episode: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """``(round, agent, graph, node)`` of every node an active agent sent."""
    messages = []
    for step in episode["steps"]:
        if "agents.message_selected" not in step:
            continue
        num_nodes = int(np.asarray(step["node_mask"]).shape[-1])
        selected = np.asarray(step["agents.message_selected"])  # (A, C, P)
        active = np.asarray(
            step.get("agents.active_mask", np.ones(selected.shape[:2], dtype=bool))
        ).astype(bool)
        round_id = int(np.asarray(step.get("round", 0)))
        for agent, channel, position in np.ndindex(*selected.shape):
            if active[agent, channel]:
                index = int(selected[agent, channel, position])
                messages.append(
                    (round_id, agent, index // num_nodes, index % num_nodes)
                )
    return messages


def render_episode(episode: dict[str, Any], path: Path) -> None:
    """Write a PNG of one episode to ``path``.

    Parameters
    ----------
    episode : dict
        A rollout-sample record; its first step must hold ``"adjacency"`` and
        ``"node_mask"``. Optional ``"agent_names"`` names the agents.
    path : Path
        The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import networkx as nx
    from matplotlib import pyplot as plt

    steps = episode["steps"]
    if not steps or "adjacency" not in steps[0] or "node_mask" not in steps[0]:
        raise ValueError("the episode's first step has no 'adjacency' / 'node_mask'")
    adjacency = np.asarray(steps[0]["adjacency"])
    node_mask = np.asarray(steps[0]["node_mask"]).astype(bool)
    messages = node_messages(episode)
    num_agents = max(
        [len(np.asarray(steps[0].get("agents.message_selected", [[0]])))]
        + [m[1] + 1 for m in messages]
    )
    names = list(
        episode.get("agent_names") or [f"agent {i}" for i in range(num_agents)]
    )
    colours = plt.get_cmap("tab10")

    figure, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    for graph in (0, 1):
        size = int(node_mask[graph].sum())
        g = nx.from_numpy_array(adjacency[graph][:size, :size])
        layout = nx.spring_layout(g, seed=graph)
        ax = axes[graph]
        nx.draw_networkx(
            g, layout, ax=ax, node_color="#dddddd", node_size=260, font_size=8
        )
        for offset, (round_id, agent, message_graph, node) in enumerate(messages):
            if message_graph != graph or node >= size:
                continue
            x, y = layout[node]
            ax.scatter(
                [x],
                [y],
                s=520 + 160 * (offset % 3),
                facecolors="none",
                edgecolors=[colours(agent % 10)],
                linewidths=2,
            )
            ax.annotate(
                str(round_id),
                (x, y),
                xytext=(8, 8 + 6 * (agent % 3)),
                textcoords="offset points",
                color=colours(agent % 10),
                fontsize=8,
            )
        ax.set_title(f"graph {'AB'[graph]} ({size} nodes)", fontsize=9)
        ax.set_axis_off()
    for agent in sorted({m[1] for m in messages}):
        axes[1].plot([], [], color=colours(agent % 10), label=names[agent])
    if messages:
        axes[1].legend(loc="upper right", fontsize=7, framealpha=0.7)

    title = []
    label = steps[0].get("y")
    if label is not None:
        title.append(
            "isomorphic" if int(np.asarray(label).reshape(-1)[0]) else "not isomorphic"
        )
    decided = None
    for step in steps:
        if "agents.decision" in step and "agents.decision_mask" in step:
            decisions = np.asarray(step["agents.decision"])
            mask = np.asarray(step["agents.decision_mask"]).astype(bool)
            made = [
                int(d) for d, m in zip(decisions, mask, strict=False) if m and d != 2
            ]
            if made:
                decided = made[0]
    if decided is not None:
        title.append(f"verifier: {DECISION_NAMES.get(decided, decided)}")
    title.append(f"{len(steps)} rounds")
    figure.suptitle(", ".join(title), fontsize=10)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
