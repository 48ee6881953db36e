"""The tensor world's datasets: :class:`TensorDictDataset` and :class:`DataCycler`.

The common base of both data worlds, :class:`~nip_core.scenario.data_base.Dataset`,
lives in :mod:`nip_core.scenario.data_base` (no torch) and is re-exported here.

:class:`TensorDictDataset` keeps its datapoints in one TensorDict with batch size
``(num_datapoints,)``. It builds them once (:meth:`TensorDictDataset.build_tensor_dict`)
and caches the result as a memory-mapped TensorDict under the data directory::

    <data_dir>/<scenario>/<dataset>/processed/<split>-<key hash>/

The key hash is a SHA-256 of :meth:`TensorDictDataset.cache_key_dict`, a JSON-able
dict of *everything* that shapes the processed data: the dataset class, scenario,
dataset name, split, ``dataset_options.max_train_size``, the interaction's shape (the
protocol's rounds and channels, ``message_size``) and whatever a subclass adds by
extending the method. Changing any of these builds a new cache entry; nothing is
ever read back from a cache built with other settings.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from tensordict import TensorDict, TensorDictBase

from nip_core.scenario.data_base import (  # noqa: F401 (re-exported)
    SPLITS,
    Dataset,
    Split,
    hash_key_dict,
    resolve_data_dir,
)
from nip_core.settings import (  # noqa: F401 (re-exported)
    ENV_DATA_DIR,
    data_dir_or_default,
    default_data_dir,
)

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler

CACHE_FORMAT_VERSION = 2
"""Bumped when the layout of processed caches changes, so old caches are rebuilt
(2: entries list their files and sizes, :data:`CACHE_FILES`)."""


logger = logging.getLogger(__name__)

CACHE_FILES = "files.json"
"""In a processed-data cache entry: every file of its ``data/`` directory with its
size in bytes as written. A file missing or of another size (a partial copy, a
sync cut short: the memory-mapped loader would fill it up with zeros) makes the
entry damaged, and it is built again."""


def _cache_damage(processed_dir: Path) -> str | None:
    """What is wrong with a cache entry's files, or ``None`` when they are as
    written."""
    try:
        files = json.loads((processed_dir / CACHE_FILES).read_text())
    except (OSError, ValueError):
        return f"its list of files ({CACHE_FILES}) is missing or unreadable"
    if not isinstance(files, dict):
        return f"its list of files ({CACHE_FILES}) is unreadable"
    data_dir = processed_dir / "data"
    for name, size in files.items():
        try:
            actual = (data_dir / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} has {actual} bytes, {size} were written"
    return None


def _discard_entry(entry: Path) -> None:
    """Remove a cache entry that another process may be removing or replacing at
    the same time (sweep jobs building one dataset): it is first renamed aside,
    atomically, so that only one process deletes its files; gone already is
    fine."""
    aside = entry.with_name(f".old-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(entry, aside)
    except FileNotFoundError:
        return  # another process removed (or moved) it first
    shutil.rmtree(aside, ignore_errors=True)


STALE_BUILD_S = 24 * 3600.0
"""A cache entry being written (``.tmp-*``) untouched for this long belongs to a
build that was killed: the next build beside it removes it."""


def _remove_leftovers(cache_dir: Path) -> None:
    """Remove what killed processes left in a directory of cache entries: entries
    renamed aside for deletion (``.old-*``, never read again: removed whatever their
    age, by whichever process comes first) and entries whose writing stopped more
    than :data:`STALE_BUILD_S` ago (``.tmp-*``; a younger one may be another
    process's build in progress)."""
    try:
        children = list(cache_dir.iterdir())
    except OSError:
        return
    now = time.time()
    for path in children:
        if path.name.startswith(".old-"):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(".tmp-"):
            try:
                newest = max(
                    [path.stat().st_mtime]
                    + [child.stat().st_mtime for child in path.rglob("*")]
                )
            except OSError:
                continue  # it is changing: someone is at work on it
            if now - newest > STALE_BUILD_S:
                shutil.rmtree(path, ignore_errors=True)


class TensorDictDataset(Dataset, ABC):
    """A dataset held in one TensorDict, built once and cached on disk.

    Subclasses implement :meth:`build_tensor_dict`, returning a TensorDict with batch
    size ``(num_datapoints,)`` holding ``"y"`` (long) and the ``instance_keys``, and
    extend :meth:`cache_key_dict` with every parameter the build reads. When the
    build needs raw files, set ``requires_raw_data = True``: a missing
    :attr:`raw_dir` then raises :class:`~nip_core.errors.DatasetNotFoundError`
    saying how to get the data (see :meth:`Dataset.how_to_get`).

    ``settings.ignore_cache`` rebuilds the processed data even when a cache entry
    exists. Pretrained-model embeddings can be attached with
    :meth:`add_pretrained_embeddings`; they appear in datapoints under
    ``("pretrained_embeddings", <model name>)``.

    Class attributes
    ----------------
    requires_raw_data : bool
        Whether :meth:`build_tensor_dict` reads files under :attr:`raw_dir`.
    cache_processed_data : bool
        Whether to memory-map the processed data under the data directory. Datasets
        that are quicker to generate than to load can turn this off.
    """

    requires_raw_data: ClassVar[bool] = False
    cache_processed_data: ClassVar[bool] = True

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler | None = None,
        split: Split = "train",
    ):
        super().__init__(
            hyper_params=hyper_params,
            settings=settings,
            protocol_handler=protocol_handler,
            split=split,
        )
        self.loaded_from_cache = False
        self._main_data = self._load_or_build()
        self._pretrained_embeddings: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------------------------
    # To implement

    @abstractmethod
    def build_tensor_dict(self) -> TensorDict:
        """Build the split's datapoints (batch size ``(num_datapoints,)``).

        Must hold ``"y"`` (long, 0 or 1) and the ``instance_keys``; ``"id"`` is added
        afterwards. Randomness must come from a generator seeded from the parameters
        (and those parameters must be in :meth:`cache_key_dict`).
        """

    def cache_key_dict(self) -> dict[str, Any]:
        """Everything that shapes the processed data, as a JSON-able dict.

        Subclasses extend it (``key = super().cache_key_dict(); key[...] = ...``) with
        every parameter :meth:`build_tensor_dict` reads. The base holds the dataset
        class, scenario, dataset name, split, ``max_train_size`` (train split) and
        the shape of the interaction (rounds, channels, ``message_size``).
        """
        key: dict[str, Any] = {
            "format_version": CACHE_FORMAT_VERSION,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "scenario": self.scenario,
            "dataset": self.name,
            "split": self.split,
            "max_train_size": self.max_size,
            "message_size": getattr(self.hyper_params, "message_size", None),
        }
        handler = self.protocol_handler
        if handler is not None:
            key["max_message_rounds"] = int(handler.max_message_rounds)
            key["min_message_rounds"] = int(handler.min_message_rounds)
            key["message_channels"] = list(handler.message_channel_names)
        return key

    # ----------------------------------------------------------------------------------
    # Cache

    @property
    def max_size(self) -> int | None:
        """``dataset_options.max_train_size`` for the train split, else ``None``."""
        if self.split != "train":
            return None
        options = getattr(self.hyper_params, "dataset_options", None)
        return getattr(options, "max_train_size", None)

    @property
    def cache_key(self) -> str:
        """The hex digest of :meth:`cache_key_dict`."""
        return hash_key_dict(self.cache_key_dict())

    @property
    def processed_dir(self) -> Path:
        """The cache entry of the processed data for the current key."""
        from nip_core.settings import PROCESSED_DIR

        return self.dataset_dir / PROCESSED_DIR / f"{self.split}-{self.cache_key[:16]}"

    def _load_or_build(self) -> TensorDict:
        ignore_cache = bool(getattr(self.settings, "ignore_cache", False))
        processed_dir = self.processed_dir
        if self.cache_processed_data and not ignore_cache:
            data = self._load_cache(processed_dir)
            if data is not None:
                self.loaded_from_cache = True
                return data
        if self.requires_raw_data and not self.raw_dir.is_dir():
            raise self.dataset_not_found(f"no raw data at {self.raw_dir}")
        data = self._build()
        if self.cache_processed_data:
            self._save_cache(data, processed_dir)
        return data

    def _build(self) -> TensorDict:
        data = self.build_tensor_dict()
        if data.batch_dims != 1:
            raise ValueError(
                f"{type(self).__name__}.build_tensor_dict must return a TensorDict "
                f"with one batch dimension (the datapoints), got batch size "
                f"{tuple(data.batch_size)}"
            )
        missing = [key for key in ("y", *self.instance_keys) if key not in data.keys()]
        if missing:
            raise ValueError(
                f"{type(self).__name__}.build_tensor_dict did not produce the keys "
                f"{missing}"
            )
        if self.max_size is not None:
            data = data[: self.max_size]
        data = data.clone()
        data["y"] = data["y"].long()
        data["id"] = torch.arange(data.batch_size[0], dtype=torch.long)
        return data

    def _load_cache(self, processed_dir: Path) -> TensorDict | None:
        key_path = processed_dir / "cache_key.json"
        if not key_path.is_file():
            return None
        try:
            stored_key = json.loads(key_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        # The directory name holds a prefix of the hash only; compare the full key.
        if stored_key != json.loads(json.dumps(self.cache_key_dict(), default=str)):
            return None
        damage = _cache_damage(processed_dir)
        if damage is None:
            try:
                return TensorDict.load_memmap(processed_dir / "data")
            except Exception as error:  # noqa: BLE001 - any unreadable entry
                damage = f"it cannot be read ({type(error).__name__}: {error})"
        logger.warning(
            "the cached %s split of dataset %r in %s is damaged: %s; building it again",
            self.split,
            self.name,
            processed_dir,
            damage,
        )
        return None

    def _save_cache(self, data: TensorDict, processed_dir: Path) -> None:
        processed_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(processed_dir.parent)
        # Build in a temporary directory and rename, so a run killed mid-write never
        # leaves a half-written cache entry that a later run would trust.
        tmp_dir = Path(tempfile.mkdtemp(prefix=".tmp-", dir=processed_dir.parent))
        try:
            data.memmap(tmp_dir / "data")
            files = {
                path.relative_to(tmp_dir / "data").as_posix(): path.stat().st_size
                for path in sorted((tmp_dir / "data").rglob("*"))
                if path.is_file()
            }
            (tmp_dir / CACHE_FILES).write_text(json.dumps(files, indent=2))
            # the key last: an entry is trusted only once everything else is there
            (tmp_dir / "cache_key.json").write_text(
                json.dumps(self.cache_key_dict(), sort_keys=True, indent=2, default=str)
            )
            if processed_dir.exists():
                _discard_entry(processed_dir)
            try:
                os.replace(tmp_dir, processed_dir)
            except OSError as error:
                # Another process (a sweep's job beside this one) built the same
                # entry and put it in place between the check above and here:
                # keep its whole copy, drop this one.
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or (
                    self._load_cache(processed_dir) is None
                ):
                    raise
        finally:
            if tmp_dir.exists():
                shutil.rmtree(tmp_dir, ignore_errors=True)

    # ----------------------------------------------------------------------------------
    # Access

    @property
    def data(self) -> TensorDict:
        """All datapoints (without pretrained embeddings)."""
        return self._main_data

    @property
    def device(self) -> torch.device:
        """The device the datapoints are on."""
        return self._main_data.device or torch.device("cpu")

    def __len__(self) -> int:
        return int(self._main_data.batch_size[0])

    def __getitem__(self, index: Any) -> TensorDictBase | torch.Tensor:
        if isinstance(index, str) or (
            isinstance(index, tuple) and all(isinstance(i, str) for i in index)
        ):
            if index in ("pretrained_embeddings",) or (
                isinstance(index, tuple) and index[:1] == ("pretrained_embeddings",)
            ):
                # The embeddings TensorDict is keyed by model name, below the prefix
                embeddings = self._embeddings_td(slice(None))
                rest = () if isinstance(index, str) else index[1:]
                return embeddings if not rest else embeddings.get(rest)
            return self._main_data.get(index)
        if isinstance(index, Sequence) and not isinstance(index, tuple):
            index = torch.as_tensor(index, dtype=torch.long)
        batch = self._main_data[index]
        if isinstance(batch, TensorDictBase):
            batch = batch.clone(recurse=False)
            if self._pretrained_embeddings:
                batch.set("pretrained_embeddings", self._embeddings_td(index))
        return batch

    def _embeddings_td(self, index: Any) -> TensorDict:
        values = {name: emb[index] for name, emb in self._pretrained_embeddings.items()}
        if not values:
            return TensorDict({}, batch_size=[])
        first = next(iter(values.values()))
        return TensorDict(values, batch_size=first.shape[:1] if first.ndim else [])

    # ----------------------------------------------------------------------------------
    # Pretrained embeddings

    @property
    def pretrained_model_names(self) -> list[str]:
        """Names of the pretrained models whose embeddings are attached."""
        return sorted(self._pretrained_embeddings)

    def add_pretrained_embeddings(self, model_name: str, embeddings: torch.Tensor):
        """Attach a pretrained model's embeddings, one row per datapoint.

        Parameters
        ----------
        model_name : str
            The model's registry key.
        embeddings : torch.Tensor
            Shape ``(len(self), *feature_shape)``, aligned with the datapoint ids.
        """
        if embeddings.shape[0] != len(self):
            raise ValueError(
                f"embeddings of {model_name!r} have {embeddings.shape[0]} rows but the "
                f"{self.split} split of {self.name!r} has {len(self)} datapoints"
            )
        self._pretrained_embeddings[model_name] = embeddings

    def get_pretrained_embedding_feature_shape(self, model_name: str) -> torch.Size:
        """The shape of one datapoint's embedding from a model."""
        return self._pretrained_embeddings[model_name].shape[1:]

    def get_pretrained_embedding_dtype(self, model_name: str) -> torch.dtype:
        """The dtype of a model's embeddings."""
        return self._pretrained_embeddings[model_name].dtype


class DataCycler:
    """Draw datapoints from a dataset in seeded random order, forever.

    Each pass over the dataset is a fresh permutation drawn from ``generator``; a
    request for ``n`` datapoints continues where the last one stopped, crossing into
    the next pass when needed. Two cyclers with generators in the same state draw the
    same datapoints.

    Parameters
    ----------
    dataset : TensorDictDataset
        The dataset to draw from.
    generator : torch.Generator
        The source of randomness.
    shuffle : bool
        Draw in random order (default) or in index order.
    """

    def __init__(
        self,
        dataset: TensorDictDataset,
        generator: torch.Generator,
        shuffle: bool = True,
    ):
        if len(dataset) == 0:
            raise ValueError(
                f"cannot draw datapoints from an empty dataset {dataset!r}"
            )
        self.dataset = dataset
        self.generator = generator
        self.shuffle = shuffle
        self._order = torch.empty(0, dtype=torch.long)
        self._position = 0

    def _new_pass(self) -> None:
        if self.shuffle:
            self._order = torch.randperm(len(self.dataset), generator=self.generator)
        else:
            self._order = torch.arange(len(self.dataset))
        self._position = 0

    def next_indices(self, num: int) -> torch.Tensor:
        """The indices of the next ``num`` datapoints."""
        chunks = []
        remaining = num
        while remaining > 0:
            if self._position >= len(self._order):
                self._new_pass()
            take = min(remaining, len(self._order) - self._position)
            chunks.append(self._order[self._position : self._position + take])
            self._position += take
            remaining -= take
        if not chunks:
            return torch.empty(0, dtype=torch.long)
        return torch.cat(chunks)

    def get_batch(self, num: int) -> TensorDictBase:
        """The next ``num`` datapoints, as a TensorDict with batch size ``(num,)``."""
        return self.dataset[self.next_indices(num)]
