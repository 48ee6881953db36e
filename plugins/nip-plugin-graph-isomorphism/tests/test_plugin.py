"""The plugin's registrations and the episode renderer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from nip_core.records import resolve_ref

import nip_plugin_graph_isomorphism.plugin as gi_plugin
from nip_plugin_graph_isomorphism.render import node_messages, render_episode


def test_plugin_module_is_light() -> None:
    code = (
        "import sys, nip_plugin_graph_isomorphism.plugin as p; "
        "[getattr(p, h)() for h in dir(p) if h.startswith('register_')]; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_registrations_resolve() -> None:
    (scenario,) = gi_plugin.register_scenarios()
    assert scenario.name == "graph_isomorphism"
    assert set(scenario.datasets) == {"eru10000", "test"}
    params = resolve_ref(scenario.agent_parameters_class)()
    assert (params.num_gnn_layers, params.d_gnn, params.d_gin_mlp) == (5, 16, 64)
    assert params.activation_function == "tanh" and params.use_dual_gnn
    for ref in (scenario.dataset_class, scenario.environment_class):
        assert isinstance(resolve_ref(ref), type)
    parts = {spec.part: spec for spec in gi_plugin.register_agent_parts()}
    assert set(parts) >= {"body", "policy_head", "value_head", "solo_head"}
    for spec in parts.values():
        assert isinstance(resolve_ref(spec.part_class), type)
    (builder,) = gi_plugin.register_dataset_builders()
    assert callable(resolve_ref(builder.builder))
    assert {o.name for o in builder.options} >= {"num_pairs", "seed", "from_original"}
    (config_dir,) = gi_plugin.register_config_dirs()
    assert (Path(config_dir.path) / "graph_isomorphism").is_dir()


def test_render_episode(tmp_path) -> None:
    n = 4
    adjacency = np.zeros((2, n, n), dtype=int)
    adjacency[:, 0, 1] = adjacency[:, 1, 0] = 1
    node_mask = np.ones((2, n), dtype=bool)
    steps = [
        {
            "adjacency": adjacency.tolist(),
            "node_mask": node_mask.tolist(),
            "round": r,
            "y": 1,
            "agents.message_selected": [[[n + 2]], [[1]]],
            "agents.active_mask": [[r % 2 == 1], [r % 2 == 0]],
            "agents.decision": [2, 1 if r == 2 else 2],
            "agents.decision_mask": [False, r % 2 == 0],
        }
        for r in range(3)
    ]
    episode = {"steps": steps, "agent_names": ["prover", "verifier"]}
    assert node_messages(episode) == [(0, 1, 0, 1), (1, 0, 1, 2), (2, 1, 0, 1)]
    render_episode(episode, tmp_path / "episode.png")
    assert (tmp_path / "episode.png").read_bytes()[:4] == b"\x89PNG"
