"""Exact labels of every binarification method on tiny hand-made label arrays."""

from __future__ import annotations

import numpy as np
import pytest
from nip_core.errors import NipConfigError

from nip_plugin_image_classification.binarification import (
    balance,
    balanced_prefix,
    binarify,
    merge_classes,
    random_labels,
    select_two_classes,
)

LABELS = np.array([0, 1, 2, 3, 3, 2, 1, 0])


def test_merge_maps_first_half_of_seeded_class_shuffle_to_zero():
    # default_rng(0).permutation(4) == [2, 0, 1, 3]: classes 1 and 2 land in the
    # first half (positions 0, 1) and become 0; classes 0 and 3 become 1.
    assert np.random.default_rng(0).permutation(4).tolist() == [2, 0, 1, 3]
    assert merge_classes(LABELS, 4, seed=0).tolist() == [1, 0, 0, 1, 1, 0, 0, 1]


def test_merge_depends_on_seed_and_keeps_every_image():
    other = merge_classes(LABELS, 4, seed=1)
    assert other.tolist() != merge_classes(LABELS, 4, seed=0).tolist()
    selection = binarify(
        LABELS,
        method="merge",
        num_classes=4,
        seed=0,
        selected_classes=(0, 1),
        make_balanced=False,
    )
    assert selection.index.tolist() == list(range(8))
    assert selection.labels.tolist() == [1, 0, 0, 1, 1, 0, 0, 1]


def test_merge_uses_all_classes_even_when_some_are_absent():
    # Only classes 0 and 1 occur, but the shuffle is over all 4 classes.
    labels = np.array([0, 1, 1, 0])
    assert merge_classes(labels, 4, seed=0).tolist() == [1, 0, 0, 1]


def test_select_two_keeps_the_two_classes_and_second_becomes_one():
    selection = select_two_classes(LABELS, (3, 1))
    assert selection.index.tolist() == [1, 3, 4, 6]
    assert selection.labels.tolist() == [1, 0, 0, 1]


def test_random_labels_are_seeded():
    assert random_labels(8, seed=7).tolist() == [1, 1, 1, 1, 1, 1, 1, 0]
    assert random_labels(8, seed=7).tolist() == random_labels(8, seed=7).tolist()


def test_random_method_ignores_the_original_classes():
    selection = binarify(
        LABELS,
        method="random",
        num_classes=4,
        seed=7,
        selected_classes=(0, 1),
        make_balanced=False,
    )
    assert selection.index.tolist() == list(range(8))
    assert selection.labels.tolist() == [1, 1, 1, 1, 1, 1, 1, 0]


def test_balance_subsamples_larger_class_seeded_and_keeps_order():
    labels = np.array([1, 0, 1, 1, 0, 1, 1])
    keep = balance(labels, seed=3)
    # The two zeros (positions 1, 4) stay; two of the five ones are drawn.
    assert keep.tolist() == [0, 1, 4, 5]
    assert keep.tolist() == balance(labels, seed=3).tolist()
    kept = labels[keep]
    assert (kept == 0).sum() == (kept == 1).sum() == 2


def test_binarify_select_two_balanced_and_truncated():
    labels = np.array([5, 3, 5, 5, 9, 3, 5, 5])
    selection = binarify(
        labels,
        method="select_two",
        num_classes=10,
        seed=0,
        selected_classes=(3, 5),
        make_balanced=True,
        max_size=3,
    )
    # Kept by select_two: positions [0, 1, 2, 3, 5, 6, 7], labels [1, 0, 1, 1, 0, 1, 1].
    # Balancing (seed 0 + 1) keeps both zeros and the ones at kept positions 2 and 3
    # (original 2, 3); the size limit then keeps the first three.
    assert balance(np.array([1, 0, 1, 1, 0, 1, 1]), seed=1).tolist() == [1, 2, 3, 4]
    assert selection.index.tolist() == [1, 2, 3]
    assert selection.labels.tolist() == [0, 1, 1]


def test_binarify_balanced_merge_is_exact():
    labels = np.array([0, 1, 2, 3, 0, 0])
    # merge (seed 0, 4 classes) gives [1, 0, 0, 1, 1, 1]; balancing keeps the two
    # zeros (positions 1, 2) and two of the four ones.
    selection = binarify(
        labels,
        method="merge",
        num_classes=4,
        seed=0,
        selected_classes=(0, 1),
        make_balanced=True,
    )
    assert selection.index.tolist() == [1, 2, 3, 4]
    assert selection.labels.tolist() == [0, 0, 1, 1]


def test_size_limit_keeps_a_balanced_selection_balanced():
    # Balanced already (four of each), but the ones come first: the first four
    # images would all be ones. The limit keeps the first two of each label, in
    # order, and with an odd limit the earliest image left (the third one).
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0])

    def limited(max_size, make_balanced=True):
        return binarify(
            labels,
            method="select_two",
            num_classes=2,
            seed=0,
            selected_classes=(0, 1),
            make_balanced=make_balanced,
            max_size=max_size,
        )

    assert limited(4).index.tolist() == [0, 1, 4, 5]
    assert limited(4).labels.tolist() == [1, 1, 0, 0]
    assert limited(5).index.tolist() == [0, 1, 2, 4, 5]
    assert limited(20).index.tolist() == list(range(8))
    # Without balancing the limit is the first images, whatever their labels.
    assert limited(4, make_balanced=False).labels.tolist() == [1, 1, 1, 1]


def test_balanced_prefix_with_classes_smaller_than_half_the_limit():
    # Two of each label, limit 6: all four stay, in order.
    assert balanced_prefix(np.array([0, 1, 1, 0]), 6).tolist() == [0, 1, 2, 3]
    assert balanced_prefix(np.array([0, 1, 1, 0]), 3).tolist() == [0, 1, 2]


def test_select_two_out_of_range_class_is_a_config_error():
    with pytest.raises(NipConfigError, match="selected_classes"):
        binarify(
            LABELS,
            method="select_two",
            num_classes=4,
            seed=0,
            selected_classes=(1, 7),
            make_balanced=False,
        )


def test_unknown_method_is_a_config_error():
    with pytest.raises(NipConfigError, match="merge, select_two, random"):
        binarify(
            LABELS,
            method="halve",
            num_classes=4,
            seed=0,
            selected_classes=(0, 1),
            make_balanced=False,
        )
