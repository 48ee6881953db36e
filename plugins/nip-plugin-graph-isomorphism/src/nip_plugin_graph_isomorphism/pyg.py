"""Graph pairs as torch_geometric ``Data`` objects, in and out.

A pair is a tuple ``(graph_a, graph_b, label)``: two
:class:`torch_geometric.data.Data` graphs, each with ``edge_index`` (``(2, E)``, the
undirected edges in one direction or both) and ``num_nodes``, and the label, 1 iff
the graphs are isomorphic.

- :func:`pairs_from_pyg` turns a list of such pairs into the plugin's
  :class:`~nip_plugin_graph_isomorphism.generation.GraphPairs` (computing each pair's
  Weisfeiler-Lehman score), and :func:`write_pyg_dataset` saves them as a dataset
  that ``nip run dataset=NAME`` uses; from the command line::

      nip datasets generate graph_isomorphism NAME --from-pyg pairs.pt

  where ``pairs.pt`` holds, saved with :func:`torch.save`, either a list of pairs or
  a dict ``{"train": [...], "test": [...]}``.
- :func:`pairs_to_pyg` and :func:`load_pyg_split` give a dataset's pairs back as
  ``Data`` pairs, to use with torch_geometric's own models and loaders.

Node features are not part of a graph isomorphism pair: ``x`` is ignored on the
way in and left out on the way out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nip_core.errors import DatasetNotFoundError, NipError

from nip_plugin_graph_isomorphism.generation import GraphPairs

__all__ = [
    "load_pyg_split",
    "pairs_from_pyg",
    "pairs_to_pyg",
    "read_pyg_file",
    "write_pyg_dataset",
]

SPLITS = ("train", "test")


def _adjacency(graph: Any, num_nodes: int, where: str) -> np.ndarray:
    edge_index = getattr(graph, "edge_index", None)
    if edge_index is None:
        raise NipError(f"{where}: a graph needs an edge_index")
    edge_index = torch.as_tensor(edge_index).long()
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise NipError(
            f"{where}: edge_index must have shape (2, E), not {tuple(edge_index.shape)}"
        )
    adjacency = np.zeros((num_nodes, num_nodes), dtype=np.uint8)
    if edge_index.numel():
        if int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes:
            raise NipError(
                f"{where}: edge_index names a node outside 0..{num_nodes - 1}"
            )
        rows, cols = edge_index.numpy()
        adjacency[rows, cols] = 1
        adjacency[cols, rows] = 1
    np.fill_diagonal(adjacency, 0)
    return adjacency


def _num_nodes(graph: Any) -> int:
    count = getattr(graph, "num_nodes", None)
    if count is None:
        edge_index = getattr(graph, "edge_index", None)
        count = int(edge_index.max()) + 1 if edge_index is not None else 0
    return int(count)


def pairs_from_pyg(pairs: Sequence[Sequence[Any]]) -> GraphPairs:
    """Graph pairs from ``(Data, Data, label)`` tuples.

    Graphs are undirected: an edge given in one direction is taken in both, and
    self-loops are dropped. The pairs are padded to the largest graph; each pair's
    Weisfeiler-Lehman score (the first refinement round that tells the graphs apart,
    ``-1`` when none does) is computed as for generated datasets.

    Raises
    ------
    NipError
        For a pair that is not two graphs and a 0/1 label, a malformed graph, or a
        pair labelled isomorphic whose graphs the WL test tells apart (which only
        non-isomorphic graphs can be).
    """
    from nip_plugin_graph_isomorphism.wl import wl_scores

    if len(pairs) == 0:
        raise NipError("no graph pairs to convert")
    sizes, labels = [], []
    for index, pair in enumerate(pairs):
        if len(pair) != 3:
            raise NipError(
                f"pair {index}: expected (graph_a, graph_b, label), got {len(pair)} "
                "items"
            )
        label = int(pair[2])
        if label not in (0, 1):
            raise NipError(f"pair {index}: the label must be 0 or 1, not {pair[2]!r}")
        sizes.append((_num_nodes(pair[0]), _num_nodes(pair[1])))
        labels.append(label)
    max_nodes = max(max(size) for size in sizes)
    adjacency = np.zeros((len(pairs), 2, max_nodes, max_nodes), dtype=np.uint8)
    for index, pair in enumerate(pairs):
        for side in (0, 1):
            n = sizes[index][side]
            adjacency[index, side, :n, :n] = _adjacency(
                pair[side], n, f"pair {index}, graph {'ab'[side]}"
            )
    size_array = np.asarray(sizes, dtype=np.int64)
    node_range = np.arange(max_nodes)
    mask_a = torch.from_numpy(node_range[None, :] < size_array[:, :1])
    mask_b = torch.from_numpy(node_range[None, :] < size_array[:, 1:])
    scores = wl_scores(
        torch.from_numpy(adjacency[:, 0]).long(),
        torch.from_numpy(adjacency[:, 1]).long(),
        mask_a,
        mask_b,
    ).numpy()
    label_array = np.asarray(labels, dtype=np.int64)
    # the WL test tells apart only graphs that are not isomorphic: a pair it
    # separates cannot carry label 1 (the converse does not hold: it cannot tell
    # some non-isomorphic pairs apart)
    wrong = np.flatnonzero((label_array == 1) & (scores != -1))
    if len(wrong):
        shown = ", ".join(f"pair {i} in round {int(scores[i])}" for i in wrong[:5])
        more = f", and {len(wrong) - 5} more" if len(wrong) > 5 else ""
        raise NipError(
            f"{len(wrong)} pair(s) labelled isomorphic (1) cannot be: the "
            f"Weisfeiler-Lehman test tells their graphs apart ({shown}{more}), "
            "which it never does for isomorphic graphs; fix their labels"
        )
    return GraphPairs(
        adjacency=adjacency,
        sizes=size_array,
        wl_scores=scores.astype(np.int64),
        labels=label_array,
    )


def pairs_to_pyg(pairs: GraphPairs) -> list[tuple[Any, Any, int]]:
    """The pairs as ``(Data, Data, label)``, each edge in both directions."""
    from torch_geometric.data import Data

    out = []
    for index in range(len(pairs)):
        graphs = []
        for side in (0, 1):
            n = int(pairs.sizes[index, side])
            adjacency = torch.from_numpy(pairs.adjacency[index, side, :n, :n])
            edge_index = adjacency.nonzero().t().contiguous().long()
            graphs.append(Data(edge_index=edge_index, num_nodes=n))
        out.append((graphs[0], graphs[1], int(pairs.labels[index])))
    return out


def read_pyg_file(path: str | Path) -> dict[str, list[Any]]:
    """The splits of a ``torch.save`` file of PyG pairs: a list (the train split)
    or a ``{"train": [...], "test": [...]}`` dict.

    Raises
    ------
    DatasetNotFoundError
        When the file does not exist.
    NipError
        When it holds something else.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"no file of PyG graph pairs at {path}")
    # PyG's Data objects are not plain tensors: the file is the user's own
    try:
        content = torch.load(path, weights_only=False)
    except Exception as error:  # noqa: BLE001 - whatever unpickling a stray file raises
        raise NipError(
            f"{path} cannot be read as a file torch.save wrote: "
            f"{type(error).__name__}: {str(error)[:200]}"
        ) from None
    if isinstance(content, Mapping):
        unknown = set(content) - set(SPLITS)
        if unknown or "train" not in content:
            raise NipError(
                f"{path} must map 'train' (and optionally 'test') to lists of pairs, "
                f"not {sorted(map(str, content))}"
            )
        return {split: list(content[split]) for split in SPLITS if split in content}
    if isinstance(content, list | tuple):
        return {"train": list(content)}
    raise NipError(
        f"{path} must hold a list of (graph_a, graph_b, label) pairs or a dict of "
        f"splits, not {type(content).__name__}"
    )


def write_pyg_dataset(source: str | Path, target: Path) -> Path:
    """Convert a file of PyG pairs (:func:`read_pyg_file`) into a dataset at
    ``target``. Without a test split, a fifth of the pairs (at least one) become
    the test split, the last ones."""
    from nip_plugin_graph_isomorphism.storage import write_dataset

    raw = read_pyg_file(source)
    if "test" not in raw:
        pairs = raw["train"]
        if len(pairs) < 2:
            raise NipError(f"{source}: at least two pairs are needed, for two splits")
        cut = len(pairs) - max(1, len(pairs) // 5)
        raw = {"train": pairs[:cut], "test": pairs[cut:]}
    splits = {split: pairs_from_pyg(pairs) for split, pairs in raw.items()}
    metadata = {
        "name": Path(target).name,
        "converted_from": str(source),
        "command": f"nip datasets generate graph_isomorphism {Path(target).name} "
        f"--from-pyg {source}",
    }
    return write_dataset(Path(target), splits, metadata)


def load_pyg_split(
    name: str, data_dir: str | Path | None = None, split: str = "train"
) -> list[tuple[Any, Any, int]]:
    """A dataset's split as PyG pairs (a named, shipped or generated dataset).

    Parameters
    ----------
    name : str
        The dataset (``"eru10000"``, or one made with ``nip datasets generate``).
    data_dir : str | Path | None
        The data directory (``None``: nip's default, ``~/.cache/nip/data``).
    split : {"train", "test"}
        Which split.
    """
    from nip_core.settings import data_dir_or_default

    from nip_plugin_graph_isomorphism.storage import (
        SCENARIO,
        read_split,
        resolve_dataset,
    )

    directory = resolve_dataset(name, data_dir_or_default(data_dir) / SCENARIO)
    return pairs_to_pyg(read_split(directory, split))
