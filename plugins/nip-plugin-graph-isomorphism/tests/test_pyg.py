"""torch_geometric in the graph isomorphism plugin: PyG graph pairs in and out, and
the sparse message-passing GIN, the same function as the dense one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from nip_core.errors import NipError
from torch_geometric.data import Data

from nip_plugin_graph_isomorphism.generation import GenerationConfig, generate_pairs
from nip_plugin_graph_isomorphism.networks import (
    DenseGin,
    GraphIsomorphismEncoder,
    SparseGin,
)
from nip_plugin_graph_isomorphism.pyg import (
    load_pyg_split,
    pairs_from_pyg,
    pairs_to_pyg,
    write_pyg_dataset,
)
from nip_plugin_graph_isomorphism.storage import read_split

pytestmark = pytest.mark.usefixtures("single_thread")


def _graphs(batch: int, nodes: int, probability: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    upper = torch.rand(batch, 2, nodes, nodes, generator=generator) < probability
    upper = torch.triu(upper, diagonal=1)
    adjacency = (upper | upper.transpose(-1, -2)).float()
    sizes = torch.randint(2, nodes + 1, (batch, 2), generator=generator)
    mask = (torch.arange(nodes)[None, None] < sizes[..., None]).float()
    adjacency = adjacency * mask[..., None] * mask[..., None, :]
    return adjacency, mask


# --------------------------------------------------------------------------------------
# The sparse GIN


@pytest.mark.parametrize(("nodes", "probability"), [(11, 0.4), (60, 0.05)])
def test_the_sparse_gin_is_the_dense_gin(nodes: int, probability: float) -> None:
    adjacency, mask = _graphs(6, nodes, probability)
    torch.manual_seed(1)
    dense = DenseGin(3, 8, 16, 3, "tanh")
    sparse = SparseGin(3, 8, 16, 3, "tanh")
    sparse.load_state_dict(dense.state_dict())  # the same parameters, by name
    x = torch.randn(6, 2, nodes, 3) * mask[..., None]
    x_dense = x.clone().requires_grad_()
    x_sparse = x.clone().requires_grad_()
    out_dense = dense(x_dense, adjacency, mask)
    out_sparse = sparse(x_sparse, adjacency, mask)
    assert torch.allclose(out_dense, out_sparse, atol=1e-5)
    assert (out_sparse[mask == 0] == 0).all()
    out_dense.square().sum().backward()
    out_sparse.square().sum().backward()
    assert torch.allclose(x_dense.grad, x_sparse.grad, atol=1e-5)
    for (name, a), (_, b) in zip(
        dense.named_parameters(), sparse.named_parameters(), strict=True
    ):
        assert torch.allclose(a.grad, b.grad, atol=1e-4), name


def test_the_agent_parameter_picks_the_implementation() -> None:
    from nip_plugin_graph_isomorphism.agent_parameters import (
        GraphIsomorphismAgentParameters,
    )

    params = GraphIsomorphismAgentParameters.construct_test_params()
    dense = GraphIsomorphismEncoder(2, params)
    sparse_params = attrs.evolve(params, gnn_implementation="sparse")
    sparse = GraphIsomorphismEncoder(2, sparse_params)
    assert type(dense.gnn) is DenseGin and type(sparse.gnn) is SparseGin
    sparse.load_state_dict(dense.state_dict())
    dense.eval(), sparse.eval()
    adjacency, mask = _graphs(4, 9, 0.3)
    x = torch.randn(4, 2, 9, 2) * mask[..., None]
    pair_dense, nodes_dense = dense(x, adjacency, mask.bool())
    pair_sparse, nodes_sparse = sparse(x, adjacency, mask.bool())
    assert torch.allclose(pair_dense, pair_sparse, atol=1e-5)
    assert torch.allclose(nodes_dense, nodes_sparse, atol=1e-5)
    with pytest.raises(NipError, match="gnn_implementation"):
        GraphIsomorphismAgentParameters(gnn_implementation="scatter")


# --------------------------------------------------------------------------------------
# PyG pairs in and out


def _pyg_pairs() -> list:
    triangle = Data(edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]), num_nodes=3)
    relabelled = Data(edge_index=torch.tensor([[2, 0, 1], [0, 1, 2]]), num_nodes=3)
    path = Data(edge_index=torch.tensor([[0, 1], [1, 2]]), num_nodes=3)
    star = Data(edge_index=torch.tensor([[0, 0, 0], [1, 2, 3]]), num_nodes=4)
    square = Data(edge_index=torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]), num_nodes=4)
    return [(triangle, relabelled, 1), (triangle, path, 0), (star, square, 0)]


def test_pyg_pairs_become_graph_pairs_and_back() -> None:
    pairs = pairs_from_pyg(_pyg_pairs())
    assert pairs.adjacency.shape == (3, 2, 4, 4)
    assert pairs.labels.tolist() == [1, 0, 0]
    assert pairs.sizes.tolist() == [[3, 3], [3, 3], [4, 4]]
    # WL: isomorphic pairs are never separated; the others in the first round here
    assert pairs.wl_scores.tolist() == [-1, 1, 1]
    assert (pairs.adjacency == pairs.adjacency.transpose(0, 1, 3, 2)).all()
    back = pairs_to_pyg(pairs)
    assert [label for _, _, label in back] == [1, 0, 0]
    again = pairs_from_pyg(back)
    assert np.array_equal(again.adjacency, pairs.adjacency)


def test_generated_pairs_round_trip_through_pyg() -> None:
    pairs = generate_pairs(GenerationConfig(num_pairs=20, graph_sizes=(7, 8)), seed=3)
    back = pairs_from_pyg(pairs_to_pyg(pairs))
    n = pairs.adjacency.shape[-1]
    assert np.array_equal(back.adjacency[..., :n, :n], pairs.adjacency)
    assert np.array_equal(back.labels, pairs.labels)
    assert np.array_equal(back.wl_scores, pairs.wl_scores)


def test_bad_pyg_pairs_are_one_clear_error() -> None:
    graph = Data(edge_index=torch.tensor([[0], [1]]), num_nodes=2)
    with pytest.raises(NipError, match="pair 0: the label must be 0 or 1"):
        pairs_from_pyg([(graph, graph, 2)])
    with pytest.raises(NipError, match="outside 0..1"):
        pairs_from_pyg(
            [(graph, Data(edge_index=torch.tensor([[0], [5]]), num_nodes=2), 0)]
        )
    with pytest.raises(NipError, match="expected \\(graph_a, graph_b, label\\)"):
        pairs_from_pyg([(graph, graph)])


def test_a_pair_labelled_isomorphic_that_is_not_is_refused() -> None:
    """The WL test separates only non-isomorphic graphs: such a pair labelled 1 is
    a wrong label, refused with the pair's index and round, not stored."""
    pairs = _pyg_pairs()
    triangle, path, _ = pairs[1]
    with pytest.raises(NipError) as error:
        pairs_from_pyg([pairs[0], (triangle, path, 1), pairs[2]])
    assert str(error.value) == (
        "1 pair(s) labelled isomorphic (1) cannot be: the Weisfeiler-Lehman test "
        "tells their graphs apart (pair 1 in round 1), which it never does for "
        "isomorphic graphs; fix their labels"
    )


def test_a_file_that_is_not_torch_saved_is_one_clear_error(tmp_path: Path) -> None:
    from nip_plugin_graph_isomorphism.pyg import read_pyg_file

    path = tmp_path / "pairs.pt"
    path.write_text("garbage\n")
    with pytest.raises(NipError) as info:
        read_pyg_file(path)
    assert str(info.value).startswith(
        f"{path} cannot be read as a file torch.save wrote: "
    )


def test_a_file_of_pyg_pairs_becomes_a_dataset_used_by_name(
    tmp_path: Path, gi_in_global_manager, monkeypatch, capsys
) -> None:
    from nip_core.cli.main import main

    source = tmp_path / "pairs.pt"
    torch.save(_pyg_pairs() * 4, source)
    monkeypatch.setenv("NIP_DATA_DIR", str(tmp_path / "data"))
    status = main(
        ["datasets", "generate", "graph_isomorphism", "mine", "--from-pyg", str(source)]
    )
    assert status == 0, capsys.readouterr().err
    target = tmp_path / "data" / "graph_isomorphism" / "mine"
    train, test = read_split(target, "train"), read_split(target, "test")
    assert (len(train), len(test)) == (10, 2)  # a fifth held out
    exported = load_pyg_split("mine", tmp_path / "data", "test")
    assert len(exported) == 2 and isinstance(exported[0][0], Data)

    from nip_core.parameters import HyperParameters

    hyper_params = HyperParameters(
        "graph_isomorphism",
        "solo_agent",
        "mine",
        agents={"_default": {"num_gnn_layers": 1}},
    )
    assert hyper_params.dataset == "mine"


def test_large_graphs_keep_their_node_indices_on_disk(tmp_path: Path) -> None:
    big = Data(
        edge_index=torch.stack((torch.arange(299), torch.arange(1, 300))),
        num_nodes=300,
    )
    ring = Data(
        edge_index=torch.stack((torch.arange(300), (torch.arange(300) + 1) % 300)),
        num_nodes=300,
    )
    source = tmp_path / "big.pt"
    torch.save({"train": [(big, ring, 0)], "test": [(ring, ring, 1)]}, source)
    write_pyg_dataset(source, tmp_path / "big")
    pairs = read_split(tmp_path / "big", "train")
    assert pairs.adjacency.shape == (1, 2, 300, 300)
    assert pairs.adjacency[0, 1, 0, 299] == 1 and pairs.adjacency[0, 0, 298, 299] == 1


def test_the_crossover_benchmark_runs() -> None:
    script = (
        Path(__file__).resolve().parents[3] / "benchmarks" / "gin_dense_vs_sparse.py"
    )
    if not script.is_file():
        pytest.skip("the benchmarks are not next to these tests (an installed wheel)")
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--sizes",
            "8,16",
            "--probabilities",
            "0.3",
            "--batch-nodes",
            "64",
            "--layers",
            "1",
            "--repeats",
            "1",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "dense/sparse" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 3


def test_the_sparse_gin_leaves_no_file_in_the_temporary_directory(tmp_path) -> None:
    """torch_geometric writes each message-passing class's generated ``propagate``
    to the temporary directory and never deletes it; the sparse GIN removes it once
    loaded, and still runs (also traced by ``torch.compile``)."""
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    script = """
import torch
from nip_plugin_graph_isomorphism.networks import DenseGin, SparseGin
torch.manual_seed(0)
dense, sparse = DenseGin(3, 8, 16, 2, "tanh"), SparseGin(3, 8, 16, 2, "tanh")
sparse.load_state_dict(dense.state_dict())
SparseGin(3, 8, 16, 2, "tanh")  # a second instance
x = torch.randn(4, 5, 3)
adjacency = (torch.rand(4, 5, 5) < 0.5).float()
adjacency = ((adjacency + adjacency.transpose(1, 2)) > 0).float()
mask = torch.ones(4, 5)
compiled = torch.compile(sparse, backend="eager")
expected = dense(x, adjacency, mask)
assert torch.allclose(compiled(x, adjacency, mask), expected, atol=1e-5)
print("ran")
"""
    env = {**os.environ, "TMPDIR": str(system_tmp)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ran"
    assert sorted(p.name for p in system_tmp.iterdir()) == []
