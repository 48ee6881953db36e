"""The episode renderer: which latent pixels it reads, and that it writes a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from nip_plugin_image_classification.render import latent_pixel_messages, render_episode


def make_episode():
    image = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    history = np.zeros((2, 1, 1, 4, 4)).tolist()

    def step(round_id, selected, active, decision, decision_mask):
        return {
            "round": round_id,
            "image": image.tolist(),
            "y": [1],
            "message_history": history,
            "agents.message_selected": selected,
            "agents.active_mask": active,
            "agents.decision": decision,
            "agents.decision_mask": decision_mask,
        }

    # Two agents (prover, verifier), one channel, message size 1, a 4×4 latent grid.
    return {
        "iteration": 0,
        "env_index": 0,
        "num_steps": 2,
        "agent_names": ["prover", "verifier"],
        "steps": [
            step(0, [[[5]], [[9]]], [[False], [True]], [2, 2], [False, False]),
            step(1, [[[14]], [[3]]], [[True], [False]], [2, 1], [False, True]),
        ],
    }


def test_messages_are_active_agents_latent_pixels_row_major():
    # Index 9 of a 4-wide grid is row 2, column 1; inactive agents' picks are skipped.
    assert latent_pixel_messages(make_episode()) == [(0, 1, 2, 1), (1, 0, 3, 2)]


def test_render_writes_a_png(tmp_path):
    path = tmp_path / "episode.png"
    render_episode(make_episode(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_render_rejects_an_episode_without_image(tmp_path):
    episode = make_episode()
    for step in episode["steps"]:
        del step["image"]
    with pytest.raises(ValueError, match="image"):
        render_episode(episode, tmp_path / "x.png")


def test_a_cell_is_the_block_its_latent_pixel_pools():
    """The picture's cells are the image blocks the latent pixels pool (2**g a
    side), not the image divided by the grid: on 28 pixels with g = 3 the grid is
    3 cells of 8, and the last 4 rows belong to none."""
    from nip_plugin_image_classification.render import _pooled_block

    assert _pooled_block(28, 3) == 8
    assert _pooled_block(28, 7) == 4
    assert _pooled_block(8, 4) == 2
    assert _pooled_block(32, 32) == 1
    assert _pooled_block(8, 1) == 8
