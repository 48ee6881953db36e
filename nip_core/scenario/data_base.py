"""The base of every dataset, in both data worlds (imports without torch).

Every dataset has a name (``hyper_params.dataset``), a split (``"train"``,
``"test"`` or ``"validation"``) and datapoints indexed from 0. Every datapoint has

- ``"y"``: the label, 1 iff the claim holds (graphs isomorphic, code correct);
- ``"id"``: the index of the datapoint in its split;

plus the scenario's own keys describing the instance (``instance_keys``).

The tensor world's :class:`~nip_core.scenario.data.TensorDictDataset` and the text
world's :class:`~nip_core.text.data.TextDataset` subclass :class:`Dataset`.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from nip_core.errors import DatasetNotFoundError
from nip_core.settings import ENV_DATA_DIR, OWN_DATA_DIR, data_dir_or_default

if TYPE_CHECKING:
    from nip_core.protocols import ProtocolHandler

Split = Literal["train", "test", "validation"]
"""The split of a dataset."""

SPLITS: tuple[str, ...] = ("train", "test", "validation")


def resolve_data_dir(settings: Any) -> Path:
    """The run's data directory: ``settings.data_dir``, else
    :func:`~nip_core.settings.default_data_dir` (``$NIP_DATA_DIR``, else
    ``~/.cache/nip/data``)."""
    return data_dir_or_default(getattr(settings, "data_dir", None))


def hash_key_dict(key_dict: dict[str, Any]) -> str:
    """A stable hex digest of a JSON-able dict (never Python's ``hash``)."""
    text = json.dumps(key_dict, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def files_fingerprint(
    *paths: str | Path, root: str | Path | None = None
) -> list[list[Any]]:
    """What a processed cache's key holds of the raw files it was built from:
    ``[name, size, mtime_ns]`` for each file (``[name, None, None]`` for one that
    is missing), so that replacing, editing or deleting a raw file builds the
    processed data again instead of reusing it. Cheap: the files are not read.
    ``name`` is the file's name, or its path relative to ``root`` when given."""
    out: list[list[Any]] = []
    for path in paths:
        path = Path(path)
        name = path.name if root is None else path.relative_to(root).as_posix()
        try:
            stat = path.stat()
        except OSError:
            out.append([name, None, None])
        else:
            out.append([name, stat.st_size, stat.st_mtime_ns])
    return out


class Dataset(ABC):
    """Base class of every dataset, in both data worlds.

    Parameters
    ----------
    hyper_params : HyperParameters
        The experiment's parameters; ``hyper_params.dataset`` names the dataset and
        ``hyper_params.scenario`` the scenario.
    settings : ExperimentSettings
        The run's settings (``data_dir``, ``ignore_cache``, ``device``).
    protocol_handler : ProtocolHandler | None
        The interaction protocol, when the processed data depends on it.
    split : {"train", "test", "validation"}
        Which split to load.

    Class attributes
    ----------------
    instance_keys : tuple[str, ...]
        The keys describing one problem instance (e.g. ``("adjacency", "node_mask")``),
        besides ``"y"`` and ``"id"``.
    """

    instance_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: ProtocolHandler | None = None,
        split: Split = "train",
    ):
        if split not in SPLITS:
            raise ValueError(
                f"unknown dataset split {split!r}; valid splits: {', '.join(SPLITS)}"
            )
        self.hyper_params = hyper_params
        self.settings = settings
        self.protocol_handler = protocol_handler
        self.split: Split = split

    @property
    def name(self) -> str:
        """The dataset's name (``hyper_params.dataset``)."""
        return str(self.hyper_params.dataset)

    @property
    def scenario(self) -> str:
        """The scenario's name (``hyper_params.scenario``)."""
        return str(self.hyper_params.scenario)

    @property
    def keys(self) -> tuple[str, ...]:
        """The field names of a datapoint."""
        return ("y", "id", *self.instance_keys)

    @property
    def data_dir(self) -> Path:
        """The run's data directory (see :func:`resolve_data_dir`)."""
        return resolve_data_dir(self.settings)

    @property
    def is_own_data(self) -> bool:
        """Whether the dataset name is a path to the researcher's own data.

        A name with a path separator, or starting with ``.`` or ``~``.
        """
        name = self.name
        return "/" in name or "\\" in name or name.startswith((".", "~"))

    @property
    def dataset_dir(self) -> Path:
        """Where everything derived from this dataset lives.

        ``<data_dir>/<scenario>/<dataset>`` for a named dataset; for a path to one's
        own data, ``<data_dir>/<scenario>/own/<folder name>-<hash of the path>``.
        """
        if self.is_own_data:
            path = Path(self.name).expanduser().resolve()
            digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
            own = self.data_dir / self.scenario / OWN_DATA_DIR
            return own / f"{path.name}-{digest}"
        return self.data_dir / self.scenario / self.name

    @property
    def raw_dir(self) -> Path:
        """Where the dataset's raw files live.

        ``<dataset_dir>/raw`` for a named dataset; the path itself for one's own
        data.
        """
        if self.is_own_data:
            return Path(self.name).expanduser().resolve()
        return self.dataset_dir / "raw"

    def how_to_get(self) -> str:
        """Tell a researcher how to obtain this dataset when it is missing.

        Subclasses override this when the dataset comes from somewhere else (a
        download, another tool).
        """
        if self.is_own_data:
            return f"check the path {str(self.raw_dir)!r}"
        where = (
            f"(the data directory is set by the run setting `data_dir` or the "
            f"environment variable {ENV_DATA_DIR})"
        )
        if not _has_builder(self.scenario):
            return f"place its files in {self.raw_dir} {where}"
        return (
            f"generate it with `nip datasets generate {self.scenario} {self.name}`, "
            f"or place its files in {self.raw_dir} {where}"
        )

    def dataset_not_found(self, detail: str = "") -> DatasetNotFoundError:
        """Build the error raised when the dataset is missing."""
        message = (
            f"dataset {self.name!r} of scenario {self.scenario!r} ({self.split} "
            f"split) was not found"
        )
        if detail:
            message += f": {detail}"
        return DatasetNotFoundError(f"{message}; {self.how_to_get()}")

    @abstractmethod
    def __len__(self) -> int:
        """The number of datapoints."""

    @abstractmethod
    def __getitem__(self, index: Any) -> Any:
        """One datapoint, or a batch of them for a slice, tensor or list of indices."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
            f"size={len(self)})"
        )


def _has_builder(scenario: str) -> bool:
    """Whether a plugin registers a dataset builder for ``scenario``."""
    try:
        from nip_core.plugins import get_plugin_manager

        return scenario in get_plugin_manager().dataset_builders
    except Exception:  # noqa: BLE001 - a hint must never hide the real problem
        return True
