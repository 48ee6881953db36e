"""The processed cache is keyed by the raw files it was built from: changed raw
files build it again, unchanged ones reuse it."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
from nip_core.parameters.dataset import DatasetParameters
from test_damaged_files import write_mnist

from nip_plugin_image_classification.data import ImageClassificationDataset
from nip_plugin_image_classification.datasets import raw_dir_for, source_fingerprint
from nip_plugin_image_classification.parameters import ImageClassificationParameters


def hyper_params(dataset: str = "mnist") -> SimpleNamespace:
    return SimpleNamespace(
        scenario="image_classification",
        dataset=dataset,
        message_size=1,
        dataset_options=DatasetParameters(),
        image_classification=ImageClassificationParameters(make_balanced=False),
    )


def handler() -> SimpleNamespace:
    return SimpleNamespace(
        max_message_rounds=2, min_message_rounds=1, message_channel_names=["main"]
    )


def build(data_dir: Path, split: str = "train") -> ImageClassificationDataset:
    settings = SimpleNamespace(data_dir=str(data_dir), ignore_cache=False)
    return ImageClassificationDataset(hyper_params(), settings, handler(), split)


def test_key_holds_name_size_and_mtime_of_each_raw_file(tmp_path):
    folder = write_mnist(tmp_path, n=6)
    images = folder / "train-images-idx3-ubyte"
    labels = folder / "train-labels-idx1-ubyte"
    os.utime(images, ns=(1_000_000_000, 1_700_000_000_123_456_789))
    os.utime(labels, ns=(1_000_000_000, 1_700_000_001_000_000_000))
    dataset = build(tmp_path)
    assert dataset.cache_key_dict()["source_files"] == [
        [
            "MNIST/raw/train-images-idx3-ubyte",
            16 + 6 * 28 * 28,
            1_700_000_000_123_456_789,
        ],
        ["MNIST/raw/train-labels-idx1-ubyte", 8 + 6, 1_700_000_001_000_000_000],
    ]
    assert source_fingerprint("mnist", tmp_path, train=False) == [
        [
            "MNIST/raw/t10k-images-idx3-ubyte",
            16 + 6 * 28 * 28,
            (folder / "t10k-images-idx3-ubyte").stat().st_mtime_ns,
        ],
        [
            "MNIST/raw/t10k-labels-idx1-ubyte",
            8 + 6,
            (folder / "t10k-labels-idx1-ubyte").stat().st_mtime_ns,
        ],
    ]
    # a missing file is named, without size or time
    labels.unlink()
    assert source_fingerprint("mnist", tmp_path, train=True)[1] == [
        "MNIST/raw/train-labels-idx1-ubyte",
        None,
        None,
    ]
    assert source_fingerprint("digits", tmp_path, train=True) == []


def test_replaced_raw_files_build_the_processed_data_again(tmp_path):
    write_mnist(tmp_path, n=6)
    first = build(tmp_path)
    first_dir = first.processed_dir
    assert not first.loaded_from_cache
    assert len(first) == 6
    again = build(tmp_path)
    assert again.loaded_from_cache
    assert len(again) == 6

    # Other raw files (fewer images) in place of the old ones
    write_mnist(tmp_path, n=4)
    replaced = build(tmp_path)
    assert not replaced.loaded_from_cache
    assert len(replaced) == 4
    assert replaced.processed_dir != first_dir


def test_touched_raw_file_builds_again(tmp_path):
    folder = write_mnist(tmp_path, n=6)
    first_dir = build(tmp_path, "test").processed_dir
    path = folder / "t10k-labels-idx1-ubyte"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = build(tmp_path, "test")
    assert not second.loaded_from_cache
    assert second.processed_dir != first_dir


def test_first_download_is_cached_under_the_key_of_the_downloaded_files(
    tmp_path, monkeypatch
):
    """Missing files are downloaded before the key is computed, so the run after
    the download reuses the processed data."""
    calls = []

    class MNIST:
        def __init__(self, root, train, download):
            calls.append(train)
            write_mnist(Path(root).parent.parent.parent, n=6)

    fake = types.ModuleType("torchvision")
    fake.datasets = types.ModuleType("torchvision.datasets")
    fake.datasets.MNIST = MNIST
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)

    first = build(tmp_path)
    assert calls == [True]
    assert raw_dir_for(tmp_path, "mnist").is_dir()
    assert not first.loaded_from_cache
    second = build(tmp_path)
    assert second.loaded_from_cache
    assert calls == [True]
    processed = raw_dir_for(tmp_path, "mnist").parent / "processed"
    assert [p.name for p in processed.iterdir()] == [first.processed_dir.name]


@pytest.mark.parametrize("split", ["train", "test"])
def test_validation_split_is_a_config_error_naming_test_dataset_split(tmp_path, split):
    from nip_core.errors import NipConfigError

    settings = SimpleNamespace(data_dir=str(tmp_path), ignore_cache=False)
    with pytest.raises(NipConfigError) as info:
        ImageClassificationDataset(
            hyper_params("digits"), settings, handler(), "validation"
        )
    assert str(info.value) == (
        "invalid configuration: 1 problem\n  - test_dataset_split: image dataset "
        "'digits' has no validation split (got 'validation'); valid choices: test"
    )
