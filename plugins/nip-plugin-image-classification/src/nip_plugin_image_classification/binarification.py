"""Reducing a labelled image set to the two-class problem agents solve.

Every function returns an *index* into the original split alongside the new labels,
so the processed data remember where each image came from (pretrained embeddings are
computed on the original split and gathered with the same index).

Randomness comes from :func:`numpy.random.default_rng` seeded explicitly, so the same
options give the same labels on every machine and every run.
"""

from __future__ import annotations

import attrs
import numpy as np
from nip_core.errors import ConfigProblem, NipConfigError


@attrs.frozen
class TwoClassSelection:
    """Which images of a split are kept and their two-class labels.

    Parameters
    ----------
    index : numpy.ndarray
        ``int64`` indices into the original split, in the order kept.
    labels : numpy.ndarray
        ``int64`` labels (0 or 1), aligned with ``index``.
    """

    index: np.ndarray
    labels: np.ndarray


def merge_classes(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """Shuffle the classes (seeded) and map the first half of the shuffle to 0.

    Class ``c`` goes to position ``permutation[c]``; it gets label 0 when that
    position is below ``num_classes // 2``.
    """
    permutation = np.random.default_rng(seed).permutation(num_classes)
    return (permutation[labels] >= num_classes // 2).astype(np.int64)


def select_two_classes(
    labels: np.ndarray, selected_classes: tuple[int, int]
) -> TwoClassSelection:
    """Keep the images of the two classes; the second class becomes label 1."""
    first, second = selected_classes
    index = np.flatnonzero((labels == first) | (labels == second)).astype(np.int64)
    return TwoClassSelection(
        index=index, labels=(labels[index] == second).astype(np.int64)
    )


def random_labels(num_images: int, seed: int) -> np.ndarray:
    """Uniformly random labels (seeded): a control with nothing to learn."""
    return np.random.default_rng(seed).integers(0, 2, size=num_images, dtype=np.int64)


def balance(labels: np.ndarray, seed: int) -> np.ndarray:
    """Positions to keep so both labels are equally frequent, in their original order.

    The larger class is subsampled uniformly (seeded) down to the size of the smaller
    one; the smaller class is kept whole.
    """
    zeros = np.flatnonzero(labels == 0)
    ones = np.flatnonzero(labels == 1)
    larger, smaller = (zeros, ones) if len(zeros) > len(ones) else (ones, zeros)
    rng = np.random.default_rng(seed)
    kept = rng.choice(larger, size=len(smaller), replace=False)
    return np.sort(np.concatenate([smaller, kept])).astype(np.int64)


def balanced_prefix(labels: np.ndarray, max_size: int) -> np.ndarray:
    """Positions of at most ``max_size`` images that keep balanced labels balanced.

    The first ``max_size // 2`` images of each label are kept, in their original
    order; when ``max_size`` is odd, the earliest image of either label after those
    fills the last place. So a balanced selection stays balanced (to within the one
    image an odd size forces), where taking the first ``max_size`` images whatever
    their labels would leave chance imbalance.
    """
    labels = np.asarray(labels, dtype=np.int64)
    positions = np.arange(len(labels), dtype=np.int64)
    # rank of each image among the images of its label, in order
    rank = np.empty(len(labels), dtype=np.int64)
    for label in (0, 1):
        of_label = labels == label
        rank[of_label] = np.arange(int(of_label.sum()), dtype=np.int64)
    by_rank = np.lexsort((positions, rank))
    return np.sort(by_rank[:max_size]).astype(np.int64)


def binarify(
    labels: np.ndarray,
    *,
    method: str,
    num_classes: int,
    seed: int,
    selected_classes: tuple[int, int],
    make_balanced: bool,
    max_size: int | None = None,
) -> TwoClassSelection:
    """Apply a binarification method, then balancing, then the size limit.

    Parameters
    ----------
    labels : numpy.ndarray
        The original class of every image of the split.
    method : {"merge", "select_two", "random"}
        See ``binarification_method`` of the ``image_classification`` section.
    num_classes : int
        The number of original classes (``merge`` shuffles all of them, whether or
        not each occurs in this split).
    seed : int
        The seed of ``merge``, ``random`` and the balancing.
    selected_classes : tuple[int, int]
        The classes ``select_two`` keeps.
    make_balanced : bool
        Whether to subsample the larger class.
    max_size : int | None
        Keep at most ``max_size`` images: the first ones, in order; with
        ``make_balanced``, the first ``max_size // 2`` of each label (see
        :func:`balanced_prefix`), so the kept images stay balanced.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if method == "merge":
        selection = TwoClassSelection(
            index=np.arange(len(labels), dtype=np.int64),
            labels=merge_classes(labels, num_classes, seed),
        )
    elif method == "select_two":
        if max(selected_classes) >= num_classes:
            raise NipConfigError(
                ConfigProblem(
                    "image_classification.selected_classes",
                    f"names a class outside 0..{num_classes - 1}",
                    tuple(selected_classes),
                )
            )
        selection = select_two_classes(labels, selected_classes)
    elif method == "random":
        selection = TwoClassSelection(
            index=np.arange(len(labels), dtype=np.int64),
            labels=random_labels(len(labels), seed),
        )
    else:
        raise NipConfigError(
            ConfigProblem(
                "image_classification.binarification_method",
                "unknown method",
                method,
                ("merge", "select_two", "random"),
            )
        )
    if make_balanced:
        # A different stream from the one `merge` / `random` drew from.
        keep = balance(selection.labels, seed + 1)
        selection = TwoClassSelection(
            index=selection.index[keep], labels=selection.labels[keep]
        )
    if max_size is not None:
        keep = (
            balanced_prefix(selection.labels, max_size)
            if make_balanced
            else np.arange(min(max_size, len(selection.labels)), dtype=np.int64)
        )
        selection = TwoClassSelection(
            index=selection.index[keep], labels=selection.labels[keep]
        )
    return selection
