"""Text-world datasets: rows of plain fields, and the seeded order they are drawn in.

A :class:`TextDataset` holds its datapoints as dicts (``"y"``, ``"id"`` and the
scenario's fields: a question, a solution, a prover stance ...). A scenario
subclasses it and implements :meth:`TextDataset.load_rows`; ``dataset_options.
max_train_size`` / ``max_test_size`` cap the splits.

:func:`draw_indices` gives the datapoints of any stretch of a seeded, endless
sequence of passes over a dataset, each pass a fresh permutation. It is stateless: a
trainer keeps only how many datapoints it has consumed, so a resumed run continues
exactly where the killed one stopped.

This module imports without torch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from nip_core.errors import DatasetNotFoundError
from nip_core.scenario.data_base import Dataset
from nip_core.seeding import derive_seed

__all__ = ["TextDataset", "draw_indices", "pass_permutation"]


def pass_permutation(seed: int, name: str, pass_index: int, size: int) -> np.ndarray:
    """The order of datapoints in one pass: a permutation of ``range(size)``."""
    rng = np.random.default_rng(derive_seed(int(seed), f"{name}/pass{pass_index}"))
    return rng.permutation(size)


def draw_indices(
    seed: int, name: str, size: int, offset: int, count: int, shuffle: bool = True
) -> np.ndarray:
    """Datapoints ``offset`` to ``offset + count`` of an endless sequence of passes.

    Parameters
    ----------
    seed : int
        The run's seed.
    name : str
        What the sequence is for (``"text_data/train"``): different names give
        independent orders.
    size : int
        The dataset's size (at least 1).
    offset : int
        How many datapoints were drawn before.
    count : int
        How many to draw now.
    shuffle : bool
        Each pass a seeded permutation (default), or index order.
    """
    if size < 1:
        raise ValueError("cannot draw datapoints from an empty dataset")
    out = np.empty(count, dtype=np.int64)
    position = 0
    while position < count:
        pass_index, start = divmod(offset + position, size)
        take = min(count - position, size - start)
        order = (
            pass_permutation(seed, name, pass_index, size)
            if shuffle
            else np.arange(size)
        )
        out[position : position + take] = order[start : start + take]
        position += take
    return out


class TextDataset(Dataset):
    """A dataset of plain rows, for text scenarios.

    Subclasses implement :meth:`load_rows`, returning one dict per datapoint with an
    integer ``"y"`` (1 iff the claim holds) and the scenario's fields
    (:attr:`instance_keys`). ``"id"`` is set to the row's index in its split.
    A missing dataset should raise :meth:`~nip_core.scenario.data_base.Dataset.
    dataset_not_found`, which says how to get it.
    """

    instance_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: Any = None,
        split: str = "train",
    ):
        super().__init__(hyper_params, settings, protocol_handler, split)  # type: ignore[arg-type]
        rows = [dict(row) for row in self.load_rows()]
        limit = self.max_size
        if limit is not None:
            rows = rows[:limit]
        for index, row in enumerate(rows):
            row["y"] = self._label(row, index)
            row["id"] = index
        if not rows:
            # a run would stop at its first draw, after its directory was made
            raise self.dataset_unusable("it holds no datapoints")
        self._rows = rows

    def _label(self, row: Mapping[str, Any], index: int) -> int:
        """Row ``index``'s label ``y``, checked to be 0 or 1."""
        if "y" not in row:
            raise self.dataset_unusable(
                f"row {index} has no label 'y'", hint=self._label_hint()
            )
        y = row["y"]
        if isinstance(y, bool | int | np.integer) and int(y) in (0, 1):
            return int(y)
        if isinstance(y, float) and y in (0.0, 1.0):
            return int(y)
        if isinstance(y, str) and y.strip() in ("0", "1"):
            return int(y)
        raise self.dataset_unusable(
            f"row {index} has label y={y!r}; a label is 0 (the claim fails) or 1 "
            "(it holds)",
            hint=self._label_hint(),
        )

    def _label_hint(self) -> str:
        return (
            f"the rows {type(self).__name__}.load_rows() returns (from the "
            "dataset's files or the scenario's own code) each need a label 'y'"
        )

    def dataset_unusable(
        self, detail: str, *, hint: str | None = None
    ) -> DatasetNotFoundError:
        """The error for a split that was found but cannot be used (empty, or a row
        without a valid label): names the dataset, its split and what is wrong,
        then ``hint`` (default: where the dataset's files go)."""
        return DatasetNotFoundError(
            f"dataset {self.name!r} of scenario {self.scenario!r} ({self.split} "
            f"split) cannot be used: {detail}; {hint or self.how_to_get()}"
        )

    @abstractmethod
    def load_rows(self) -> Sequence[Mapping[str, Any]]:
        """The datapoints of this split, in a fixed order."""

    @property
    def max_size(self) -> int | None:
        """``dataset_options.max_train_size`` (train) or ``max_test_size``."""
        options = getattr(self.hyper_params, "dataset_options", None)
        if options is None:
            return None
        if self.split == "train":
            return getattr(options, "max_train_size", None)
        return getattr(options, "max_test_size", None)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every datapoint (do not modify)."""
        return self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            return dict(self._rows[int(index)])
        if isinstance(index, slice):
            return [dict(row) for row in self._rows[index]]
        return [dict(self._rows[int(i)]) for i in index]
