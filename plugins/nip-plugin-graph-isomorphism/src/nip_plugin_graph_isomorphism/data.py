"""The graph isomorphism dataset: pairs of graphs, label 1 iff isomorphic.

Datapoints hold

- ``"adjacency"`` (int32, ``(2, max_nodes, max_nodes)``): both graphs, padded;
- ``"node_mask"`` (bool, ``(2, max_nodes)``): the real nodes of each graph;
- ``"wl_score"`` (long): the first WL round separating the pair (``-1``: isomorphic);
- ``"y"`` and ``"id"``.

Datasets are found by :func:`~nip_plugin_graph_isomorphism.storage.resolve_dataset`:
the data directory first (``nip datasets generate graph_isomorphism NAME``), then the
datasets shipped with the package (``eru10000``), then named recipes cheap enough to
generate on first use (``test``). A dataset name that is a path is read from that
directory (the plugin's format, or the original library's ``raw/<split>/data.pt``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from nip_core.scenario.data import TensorDictDataset
from nip_core.scenario.data_base import files_fingerprint
from tensordict import TensorDict

from nip_plugin_graph_isomorphism.generation import GraphPairs
from nip_plugin_graph_isomorphism.storage import (
    read_original_data_pt,
    read_split,
    resolve_dataset,
)

PROCESSING_VERSION = 1
"""Bumped whenever the processing below changes what it produces."""


def pairs_to_tensordict(pairs: GraphPairs) -> TensorDict:
    """Turn :class:`GraphPairs` into the dataset's TensorDict (without ``"id"``)."""
    num, _, max_nodes, _ = pairs.adjacency.shape
    sizes = torch.as_tensor(pairs.sizes, dtype=torch.long)
    node_mask = torch.arange(max_nodes)[None, None, :] < sizes[:, :, None]
    return TensorDict(
        {
            "adjacency": torch.as_tensor(pairs.adjacency, dtype=torch.int32),
            "node_mask": node_mask,
            "wl_score": torch.as_tensor(pairs.wl_scores, dtype=torch.long),
            "y": torch.as_tensor(pairs.labels, dtype=torch.long),
        },
        batch_size=(num,),
    )


class GraphIsomorphismDataset(TensorDictDataset):
    """One split of a graph-pair dataset."""

    instance_keys: ClassVar[tuple[str, ...]] = ("adjacency", "node_mask")

    def how_to_get(self) -> str:
        return (
            f"generate it with `nip datasets generate graph_isomorphism {self.name} "
            "--num-pairs N --seed S`, convert an original-library dataset with "
            f"`--from-original DIR`, or use a named dataset (eru10000, test)"
        )

    def cache_key_dict(self) -> dict[str, Any]:
        key = super().cache_key_dict()
        key["processing_version"] = PROCESSING_VERSION
        source = self._source()
        key["source"] = str(source)
        # the file this split is read from: replaced, edited or deleted, the
        # processed data is built again
        key["files"] = files_fingerprint(
            source / f"{self.split}.npz", source / "raw" / self.split / "data.pt"
        )
        return key

    def _source(self) -> Path:
        if self.is_own_data:
            return self.raw_dir
        return resolve_dataset(self.name, self.data_dir / self.scenario)

    def build_tensor_dict(self) -> TensorDict:
        source = self._source()
        original = source / "raw" / self.split / "data.pt"
        if not (source / f"{self.split}.npz").is_file() and original.is_file():
            pairs = read_original_data_pt(original)
        else:
            pairs = read_split(source, self.split)
        return pairs_to_tensordict(pairs)
