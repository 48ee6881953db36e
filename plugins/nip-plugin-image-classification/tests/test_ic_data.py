"""The processed dataset: two-class reduction of digits, and its cache key."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nip_core.parameters.dataset import DatasetParameters

from nip_plugin_image_classification.binarification import binarify
from nip_plugin_image_classification.data import ImageClassificationDataset
from nip_plugin_image_classification.datasets import load_raw_images
from nip_plugin_image_classification.parameters import ImageClassificationParameters


def make_hyper_params(**options):
    sizes = {
        k: options.pop(k) for k in ("max_train_size", "max_test_size") if k in options
    }
    return SimpleNamespace(
        scenario="image_classification",
        dataset="digits",
        message_size=1,
        dataset_options=DatasetParameters(**sizes),
        image_classification=ImageClassificationParameters(**options),
    )


def make_handler(max_rounds=8, channels=("main",)):
    return SimpleNamespace(
        max_message_rounds=max_rounds,
        min_message_rounds=1,
        message_channel_names=list(channels),
    )


@pytest.fixture
def settings(tmp_path):
    return SimpleNamespace(data_dir=str(tmp_path), ignore_cache=False)


def test_select_two_digits_keeps_zeros_and_ones_balanced(settings, tmp_path):
    hyper_params = make_hyper_params(binarification_method="select_two")
    dataset = ImageClassificationDataset(
        hyper_params, settings, make_handler(), "train"
    )
    raw = load_raw_images("digits", tmp_path, train=True)
    source = dataset.data["source_index"].numpy()
    # Every kept image is a 0 (label 0) or a 1 (label 1), and the classes are equal.
    np.testing.assert_array_equal(raw.labels[source], dataset.data["y"].numpy())
    assert int(dataset.data["y"].sum()) * 2 == len(dataset)
    np.testing.assert_allclose(
        dataset.data["image"].numpy(), raw.images[source] / 8.0 - 1.0, rtol=1e-6
    )
    assert dataset.data["image"].shape[1:] == (1, 8, 8)
    assert dataset.data["id"].tolist() == list(range(len(dataset)))


def test_merge_labels_match_binarify_on_the_raw_labels(settings, tmp_path):
    hyper_params = make_hyper_params(
        binarification_method="merge", binarification_seed=5, make_balanced=False
    )
    dataset = ImageClassificationDataset(hyper_params, settings, make_handler(), "test")
    raw = load_raw_images("digits", tmp_path, train=False)
    expected = binarify(
        raw.labels,
        method="merge",
        num_classes=10,
        seed=5,
        selected_classes=(0, 1),
        make_balanced=False,
    )
    assert dataset.data["y"].tolist() == expected.labels.tolist()
    assert dataset.data["source_index"].tolist() == list(range(len(raw)))


def test_max_sizes_truncate_each_split(settings):
    hyper_params = make_hyper_params(max_train_size=10, max_test_size=4)
    train = ImageClassificationDataset(hyper_params, settings, make_handler(), "train")
    test = ImageClassificationDataset(hyper_params, settings, make_handler(), "test")
    assert len(train) == 10
    assert len(test) == 4


def test_size_limits_keep_a_balanced_split_balanced(settings):
    # Merged digits, balanced: the first 100 balanced test images are 56 of label 0
    # and 44 of label 1; the limit keeps 50 of each (and of the train split too).
    hyper_params = make_hyper_params(
        binarification_method="merge", max_train_size=100, max_test_size=100
    )
    for split in ("train", "test"):
        dataset = ImageClassificationDataset(
            hyper_params, settings, make_handler(), split
        )
        assert len(dataset) == 100
        assert np.bincount(dataset.data["y"].numpy()).tolist() == [50, 50]
        source = dataset.data["source_index"].numpy()
        assert (np.diff(source) > 0).all()


def test_second_load_reads_the_cache(settings):
    hyper_params = make_hyper_params(binarification_method="select_two")
    first = ImageClassificationDataset(hyper_params, settings, make_handler(), "train")
    second = ImageClassificationDataset(hyper_params, settings, make_handler(), "train")
    assert not first.loaded_from_cache
    assert second.loaded_from_cache
    assert torch.equal(first.data["image"], second.data["image"])


def _key(settings, hyper_params, handler, split="train"):
    dataset = ImageClassificationDataset(hyper_params, settings, handler, split)
    return dataset.cache_key


@pytest.mark.parametrize(
    "change",
    [
        {"binarification_method": "select_two"},
        {"binarification_method": "random"},
        {"binarification_seed": 3},
        {"make_balanced": False},
        {"max_train_size": 20},
    ],
)
def test_cache_key_changes_with_every_dataset_option(settings, change):
    handler = make_handler()
    base = _key(settings, make_hyper_params(), handler)
    assert _key(settings, make_hyper_params(**change), handler) != base


def test_cache_key_changes_with_selected_classes(settings):
    handler = make_handler()
    a = _key(settings, make_hyper_params(binarification_method="select_two"), handler)
    b = _key(
        settings,
        make_hyper_params(binarification_method="select_two", selected_classes=(2, 7)),
        handler,
    )
    assert a != b


def test_cache_key_changes_with_rounds_channels_message_size_and_groups(settings):
    hyper_params = make_hyper_params(max_train_size=8)
    base = _key(settings, hyper_params, make_handler())
    assert _key(settings, hyper_params, make_handler(max_rounds=4)) != base
    assert _key(settings, hyper_params, make_handler(channels=("a", "b"))) != base
    bigger_messages = make_hyper_params(max_train_size=8)
    bigger_messages.message_size = 2
    assert _key(settings, bigger_messages, make_handler()) != base
    more_groups = make_hyper_params(max_train_size=8)
    more_groups.image_classification = ImageClassificationParameters(num_block_groups=2)
    assert _key(settings, more_groups, make_handler()) != base
    # ... and the split.
    assert _key(settings, hyper_params, make_handler(), split="test") != base


def test_default_seed_is_filled_in_so_explicit_default_shares_the_cache(settings):
    handler = make_handler()
    implicit = _key(settings, make_hyper_params(), handler)
    explicit = _key(settings, make_hyper_params(binarification_seed=0), handler)
    assert implicit == explicit
