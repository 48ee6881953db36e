"""Where the sparse GIN overtakes the dense one (nip-plugin-graph-isomorphism).

The graph isomorphism agents' GIN sums neighbours either as a batched product with
the padded adjacency (``gnn_implementation: dense``, ``O(n² d)`` per graph and layer)
or by torch_geometric message passing over the edges (``sparse``, ``O(E d)`` plus
reading the edge list off the adjacency). This times a forward and backward pass of
both, with the same weights and the same graphs, over graph sizes and edge
probabilities, and prints the time of each and the ratio; the crossover is where the
ratio passes 1.

    python benchmarks/gin_dense_vs_sparse.py
    python benchmarks/gin_dense_vs_sparse.py --sizes 11,256,1024 --probabilities 0.01
    python benchmarks/gin_dense_vs_sparse.py --device cuda --json gin.json

Run it on a quiet machine (see README.md): timings taken beside another job mean
little.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch


def random_graphs(
    batch: int, nodes: int, probability: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Erdős–Rényi graph pairs: adjacency ``(batch, 2, n, n)``, node mask."""
    upper = torch.rand(batch, 2, nodes, nodes, generator=generator) < probability
    upper = torch.triu(upper, diagonal=1)
    adjacency = (upper | upper.transpose(-1, -2)).float()
    mask = torch.ones(batch, 2, nodes)
    return adjacency, mask


def time_pass(
    gin: Any, x: torch.Tensor, adjacency: torch.Tensor, mask: torch.Tensor, repeats: int
) -> float:
    """Median seconds of one forward and backward pass."""
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        if x.grad is not None:
            x.grad = None
        start = time.perf_counter()
        gin(x, adjacency, mask).sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    return times[len(times) // 2]


def measure(
    sizes: list[int],
    probabilities: list[float],
    *,
    batch_nodes: int,
    d_gnn: int,
    layers: int,
    repeats: int,
    device: str,
) -> list[dict[str, Any]]:
    from nip_plugin_graph_isomorphism.networks import DenseGin, SparseGin

    torch.manual_seed(0)
    dense = DenseGin(1, d_gnn, 4 * d_gnn, layers, "tanh").to(device)
    sparse = SparseGin(1, d_gnn, 4 * d_gnn, layers, "tanh").to(device)
    sparse.load_state_dict(dense.state_dict())
    generator = torch.Generator().manual_seed(0)
    results = []
    for nodes in sizes:
        # about the same number of nodes per batch at every size
        batch = max(1, batch_nodes // (2 * nodes))
        for probability in probabilities:
            adjacency, mask = random_graphs(batch, nodes, probability, generator)
            adjacency, mask = adjacency.to(device), mask.to(device)
            x = torch.randn(batch, 2, nodes, 1, device=device, requires_grad=True)
            dense_s = time_pass(dense, x, adjacency, mask, repeats)
            sparse_s = time_pass(sparse, x, adjacency, mask, repeats)
            results.append(
                {
                    "nodes": nodes,
                    "edge_probability": probability,
                    "graphs": 2 * batch,
                    "mean_degree": float(adjacency.sum(-1).mean()),
                    "dense_ms": 1000 * dense_s,
                    "sparse_ms": 1000 * sparse_s,
                    "dense_over_sparse": dense_s / sparse_s,
                }
            )
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'nodes':>6} {'p':>6} {'graphs':>7} {'degree':>7} {'dense ms':>10} "
        f"{'sparse ms':>10} {'dense/sparse':>13}"
    ]
    for row in results:
        lines.append(
            f"{row['nodes']:>6} {row['edge_probability']:>6g} {row['graphs']:>7} "
            f"{row['mean_degree']:>7.1f} {row['dense_ms']:>10.2f} "
            f"{row['sparse_ms']:>10.2f} {row['dense_over_sparse']:>13.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="11,32,64,128,256,512,1024")
    parser.add_argument("--probabilities", default="0.01,0.05,0.2")
    parser.add_argument(
        "--batch-nodes", type=int, default=8192, help="nodes per batch (all graphs)"
    )
    parser.add_argument("--d-gnn", type=int, default=16)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    results = measure(
        [int(s) for s in args.sizes.split(",")],
        [float(p) for p in args.probabilities.split(",")],
        batch_nodes=args.batch_nodes,
        d_gnn=args.d_gnn,
        layers=args.layers,
        repeats=args.repeats,
        device=args.device,
    )
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
