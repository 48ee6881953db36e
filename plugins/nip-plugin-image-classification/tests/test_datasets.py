"""Readers of every on-disk format, on small files the tests write (no download)."""

from __future__ import annotations

import gzip
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from nip_core.errors import DatasetNotFoundError, UnknownKeyError

from nip_plugin_image_classification.datasets import (
    DIGITS_TEST_SIZE,
    IMAGE_DATASETS,
    RawImages,
    get_dataset_info,
    load_raw_images,
    raw_dir_for,
    read_idx,
)


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` (uint8) in the IDX format MNIST uses."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def test_read_idx_round_trips_plain_and_gzipped(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    write_idx(tmp_path / "b", array, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), array)


def test_read_idx_rejects_truncated_file(tmp_path):
    array = np.zeros((2, 2), dtype=np.uint8)
    write_idx(tmp_path / "a", array)
    (tmp_path / "a").write_bytes((tmp_path / "a").read_bytes()[:-1])
    with pytest.raises(ValueError, match="bytes of data"):
        read_idx(tmp_path / "a")


@pytest.mark.parametrize(
    ("name", "folder", "compress"),
    [
        ("mnist", "MNIST", False),
        ("fashion_mnist", "FashionMNIST", True),
        ("kmnist", "KMNIST", False),
    ],
)
def test_mnist_family_reader(tmp_path, name, folder, compress):
    rng = np.random.default_rng(0)
    raw = raw_dir_for(tmp_path, name) / folder / "raw"
    train_images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    train_labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    test_images = rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    test_labels = np.array([9, 2], dtype=np.uint8)
    write_idx(raw / "train-images-idx3-ubyte", train_images, compress=compress)
    write_idx(raw / "train-labels-idx1-ubyte", train_labels, compress=compress)
    write_idx(raw / "t10k-images-idx3-ubyte", test_images, compress=compress)
    write_idx(raw / "t10k-labels-idx1-ubyte", test_labels, compress=compress)

    train = load_raw_images(name, tmp_path, train=True, download=False)
    test = load_raw_images(name, tmp_path, train=False, download=False)
    assert train.images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(train.images[:, 0], train_images)
    assert train.labels.tolist() == [3, 1, 4, 1, 5]
    assert train.labels.dtype == np.int64
    assert test.labels.tolist() == [9, 2]
    np.testing.assert_array_equal(test.images[:, 0], test_images)


def _cifar_batch(rng, n, label_key, labels):
    return {
        b"data": rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
        label_key: list(labels),
    }


def test_cifar10_reader(tmp_path):
    rng = np.random.default_rng(1)
    folder = raw_dir_for(tmp_path, "cifar10") / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [_cifar_batch(rng, 2, b"labels", [i, (i + 1) % 10]) for i in range(5)]
    for i, batch in enumerate(batches, start=1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    test_batch = _cifar_batch(rng, 3, b"labels", [7, 8, 9])
    (folder / "test_batch").write_bytes(pickle.dumps(test_batch))

    train = load_raw_images("cifar10", tmp_path, train=True, download=False)
    assert train.images.shape == (10, 3, 32, 32)
    assert train.labels.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    # The pickle stores each image as 1024 red, then green, then blue values.
    first = batches[0][b"data"][0]
    np.testing.assert_array_equal(train.images[0, 0].reshape(-1), first[:1024])
    np.testing.assert_array_equal(train.images[0, 2].reshape(-1), first[2048:])
    test = load_raw_images("cifar10", tmp_path, train=False, download=False)
    assert test.labels.tolist() == [7, 8, 9]
    np.testing.assert_array_equal(
        test.images.reshape(3, -1), test_batch[b"data"].reshape(3, -1)
    )


def test_cifar100_reader_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(2)
    folder = raw_dir_for(tmp_path, "cifar100") / "cifar-100-python"
    folder.mkdir(parents=True)
    train = _cifar_batch(rng, 3, b"fine_labels", [99, 50, 0])
    train[b"coarse_labels"] = [19, 10, 0]
    (folder / "train").write_bytes(pickle.dumps(train))
    test = _cifar_batch(rng, 1, b"fine_labels", [42])
    (folder / "test").write_bytes(pickle.dumps(test))

    read = load_raw_images("cifar100", tmp_path, train=True, download=False)
    assert read.labels.tolist() == [99, 50, 0]
    assert read.images.shape == (3, 3, 32, 32)
    assert load_raw_images("cifar100", tmp_path, train=False).labels.tolist() == [42]


def test_svhn_reader_maps_label_ten_to_zero(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(3)
    raw = raw_dir_for(tmp_path, "svhn")
    raw.mkdir(parents=True)
    # SVHN stores images as (height, width, channel, N) and digit 0 as label 10.
    x = rng.integers(0, 256, size=(32, 32, 3, 4), dtype=np.uint8)
    savemat(raw / "train_32x32.mat", {"X": x, "y": np.array([[10], [1], [9], [10]])})
    savemat(raw / "test_32x32.mat", {"X": x[..., :1], "y": np.array([[5]])})

    train = load_raw_images("svhn", tmp_path, train=True, download=False)
    assert train.labels.tolist() == [0, 1, 9, 0]
    assert train.images.shape == (4, 3, 32, 32)
    np.testing.assert_array_equal(train.images[2, 1], x[:, :, 1, 2])
    assert load_raw_images("svhn", tmp_path, train=False).labels.tolist() == [5]


def test_digits_needs_no_files_and_is_split_fixed(tmp_path):
    train = load_raw_images("digits", tmp_path, train=True)
    test = load_raw_images("digits", tmp_path, train=False)
    assert test.images.shape == (DIGITS_TEST_SIZE, 1, 8, 8)
    assert train.images.shape == (1797 - DIGITS_TEST_SIZE, 1, 8, 8)
    assert train.max_value == 16
    assert int(train.images.max()) == 16
    assert set(train.labels.tolist()) == set(range(10))
    again = load_raw_images("digits", tmp_path, train=False)
    np.testing.assert_array_equal(again.labels, test.labels)
    # Train and test are disjoint and together the whole set.
    from sklearn.datasets import load_digits

    total = np.asarray(load_digits().images, dtype=np.uint8)
    assert len(train) + len(test) == len(total)
    assert not (tmp_path / "image_classification").exists()


def test_normalised_images_span_minus_one_to_one():
    raw = RawImages(
        images=np.array([[[[0, 8, 16]]]], dtype=np.uint8),
        labels=np.array([1]),
        max_value=16,
    )
    assert raw.normalised().tolist() == [[[[-1.0, 0.0, 1.0]]]]


def test_missing_files_without_torchvision_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DatasetNotFoundError) as info:
        load_raw_images("cifar10", tmp_path, train=True)
    message = str(info.value)
    assert "nip-plugin-image-classification[torchvision]" in message
    assert "cifar-10-batches-py" in message
    assert str(raw_dir_for(tmp_path, "cifar10")) in message


def test_missing_files_offline_say_where_to_put_them(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_raw_images("svhn", tmp_path, train=False, download=False)
    message = str(info.value)
    assert "test_32x32.mat" in message
    assert "downloading is switched off" in message
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownKeyError, match="cifar10"):
        get_dataset_info("imagenet")


def test_dataset_table_defaults_match_the_original():
    assert get_dataset_info("cifar10").selected_classes == (3, 5)
    assert get_dataset_info("svhn").binarification_seed == 2
    assert get_dataset_info("mnist").selected_classes == (0, 1)
    assert set(IMAGE_DATASETS) == {
        "digits",
        "mnist",
        "fashion_mnist",
        "kmnist",
        "cifar10",
        "cifar100",
        "svhn",
    }
