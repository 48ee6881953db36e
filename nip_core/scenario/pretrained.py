"""Pretrained models: compute embeddings of a dataset once and cache them.

An agent whose parameters name pretrained models gets their embeddings attached to
the datasets (``("pretrained_embeddings", <model name>)`` in every datapoint and in
the environment's observation). A scenario plugin registers each model with
:class:`~nip_core.records.PretrainedModelSpec` and implements
:meth:`PretrainedModel.generate_embeddings`.

Embeddings are cached under the cache directory (``settings.cache_dir``, by default
``~/.cache/nip``)::

    <cache_dir>/embeddings/<model>/<scenario>/<dataset>/<split>-<key hash>.pt

The key hashes :meth:`PretrainedModel.cache_key_dict`: the model's name and version
and the dataset's own cache key (everything that shapes the processed data), so
changed data or a changed model never reuses stale embeddings.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch

from nip_core.scenario.data import TensorDictDataset, hash_key_dict
from nip_core.settings import (  # noqa: F401 (re-exported)
    cache_dir_or_default,
    default_cache_dir,
)


class PretrainedModel(ABC):
    """A model whose embeddings of a dataset agents can read.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters.
    settings : ExperimentSettings
        The run's settings (``cache_dir``, ``ignore_cache``, ``device``).
    model_name : str
        The model's registry key.

    Class attributes
    ----------------
    version : str
        Bump it when the embeddings a model computes change, to invalidate caches.
    """

    version: ClassVar[str] = "1"

    def __init__(self, hyper_params: Any, settings: Any, model_name: str):
        self.hyper_params = hyper_params
        self.settings = settings
        self.model_name = model_name

    @abstractmethod
    def generate_embeddings(self, dataset: TensorDictDataset) -> torch.Tensor:
        """Compute the embeddings of every datapoint: ``(len(dataset), *features)``."""

    def cache_key_dict(self, dataset: TensorDictDataset) -> dict[str, Any]:
        """What the cached embeddings depend on (extend it with model options)."""
        return {
            "model": self.model_name,
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "model_version": self.version,
            "dataset": dataset.cache_key_dict(),
        }

    @property
    def cache_dir(self) -> Path:
        """The run's cache directory."""
        return cache_dir_or_default(getattr(self.settings, "cache_dir", None))

    def cache_path(self, dataset: TensorDictDataset) -> Path:
        """Where the embeddings of ``dataset`` are cached."""
        digest = hash_key_dict(self.cache_key_dict(dataset))[:16]
        safe_name = self.model_name.replace("/", "_")
        return (
            self.cache_dir
            / "embeddings"
            / safe_name
            / dataset.scenario
            / dataset.name
            / f"{dataset.split}-{digest}.pt"
        )

    def embeddings(self, dataset: TensorDictDataset) -> torch.Tensor:
        """The embeddings of ``dataset``: cached, or computed now (and cached).

        ``settings.ignore_cache`` recomputes them.
        """
        path = self.cache_path(dataset)
        if path.is_file() and not getattr(self.settings, "ignore_cache", False):
            return torch.load(path, map_location="cpu", weights_only=True)
        embeddings = self.generate_embeddings(dataset).detach().cpu()
        if embeddings.shape[0] != len(dataset):
            raise ValueError(
                f"{type(self).__name__}.generate_embeddings returned "
                f"{embeddings.shape[0]} rows for {len(dataset)} datapoints"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed, so an interrupted run leaves no
        # truncated file that a later run would load.
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
        os.close(fd)
        try:
            torch.save(embeddings, tmp_name)
            os.replace(tmp_name, path)
        finally:
            if os.path.exists(tmp_name):
                os.remove(tmp_name)
        return embeddings

    def add_to_dataset(self, dataset: TensorDictDataset) -> None:
        """Attach this model's embeddings to ``dataset``."""
        dataset.add_pretrained_embeddings(self.model_name, self.embeddings(dataset))
