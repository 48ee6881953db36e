"""A run's datasets, fingerprinted, so a resumed run is known to see the same data.

A dataset is found by name in the data directory, and that directory can come from
the environment (``NIP_DATA_DIR``): a run resumed in another shell, or after the
dataset was generated again, could otherwise train on different datapoints without
a word (or fail deep inside training, indexing a smaller set). At its start a run
records, in ``run_info.json``, each split's size and a SHA-256 of its datapoints
(a tensor dataset's tensors, a text dataset's rows), and the data directory it
read; a resumed run computes them again and refuses to go on when they differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from nip_core.errors import DatasetNotFoundError

__all__ = ["check_same_datasets", "dataset_fingerprints"]


def _hash_dataset(dataset: Any) -> str | None:
    digest = hashlib.sha256()
    rows = getattr(dataset, "rows", None)
    if rows is not None:
        for row in rows:
            digest.update(json.dumps(row, sort_keys=True, default=str).encode())
        return digest.hexdigest()
    data = getattr(dataset, "data", None)
    if data is None or not hasattr(data, "items"):
        return None
    import torch

    for key, value in sorted(
        data.items(include_nested=True, leaves_only=True), key=lambda kv: str(kv[0])
    ):
        if not isinstance(value, torch.Tensor):
            continue
        digest.update(repr((key, tuple(value.shape), str(value.dtype))).encode())
        tensor = value.detach().cpu().contiguous()
        # the tensor's own buffer (a bytes copy would double a large set's memory)
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def dataset_fingerprints(scenario_instance: Any) -> dict[str, dict[str, Any]]:
    """``{"train": {"size": ..., "sha256": ...}, "test": {...}}`` of a built
    scenario's datasets (a split whose data cannot be read is left out)."""
    out: dict[str, dict[str, Any]] = {}
    for split in ("train", "test"):
        dataset = getattr(scenario_instance, f"{split}_dataset", None)
        if dataset is None:
            continue
        try:
            digest = _hash_dataset(dataset)
            size = len(dataset)
        except Exception:  # noqa: BLE001 - a fingerprint must never stop a run
            continue
        if digest is not None:
            out[split] = {"size": int(size), "sha256": digest}
    return out


def check_same_datasets(
    recorded: Mapping[str, Any] | None,
    scenario_instance: Any,
    *,
    dataset: str,
    data_dir: str | None = None,
    run_id: str | None = None,
) -> None:
    """Refuse to resume a run on datasets that differ from those it started with.

    Raises
    ------
    DatasetNotFoundError
        Naming the split, its size then and now, and where the run read it.
    """
    if not recorded:
        return
    now = dataset_fingerprints(scenario_instance)
    for split, then in recorded.items():
        current = now.get(split)
        if current is None or current == then:
            continue
        where = f" (the run read it from {data_dir})" if data_dir else ""
        raise DatasetNotFoundError(
            f"the {split} split of dataset {dataset!r} is not the one this run "
            f"started with: {then.get('size')} datapoints then, {current['size']} "
            f"now, different contents{where}; to resume, point it at the original "
            f"data (`nip resume {run_id or 'RUN_ID'} --set run.data_dir=DIR`, or "
            "NIP_DATA_DIR), "
            "or start a new run"
        )
