"""Raw files that are there but cannot be used (truncated, corrupt, of the wrong
shape): one error naming the dataset, split and file, why, and what to do."""

from __future__ import annotations

import gzip
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from nip_core.errors import DatasetDamagedError

from nip_plugin_image_classification.datasets import (
    DamagedFileError,
    load_raw_images,
    raw_dir_for,
    read_idx,
)

MNIST_SOURCE = "http://yann.lecun.com/exdb/mnist/"
CIFAR_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html"
SVHN_SOURCE = "http://ufldl.stanford.edu/housenumbers/"
DOWNLOAD_AGAIN = (
    "delete it so that the next run downloads it again (with "
    "`nip-plugin-image-classification[torchvision]` installed), or replace it with a "
    "good copy (source: {source})"
)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_mnist(
    data_dir: Path,
    *,
    n: int = 6,
    side: int = 28,
    labels: list[int] | None = None,
    num_labels: int | None = None,
    compress: bool = False,
) -> Path:
    """A tiny MNIST in the torchvision layout; returns its ``MNIST/raw`` folder."""
    rng = np.random.default_rng(0)
    folder = raw_dir_for(data_dir, "mnist") / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        y = np.array(
            labels if labels is not None else [i % 10 for i in range(num_labels or n)],
            dtype=np.uint8,
        )
        for kind, array in (("images-idx3", images), ("labels-idx1", y)):
            payload = idx_bytes(array)
            path = folder / f"{prefix}-{kind}-ubyte{suffix}"
            path.write_bytes(gzip.compress(payload) if compress else payload)
    return folder


def damaged(dataset: str, split: str, path: Path, reason: str, source: str) -> str:
    return (
        f"image dataset {dataset!r} ({split} split): {path} is damaged ({reason}); "
        + DOWNLOAD_AGAIN.format(source=source)
    )


def load_error(dataset: str, data_dir: Path, *, train: bool = True) -> str:
    with pytest.raises(DatasetDamagedError) as info:
        load_raw_images(dataset, data_dir, train=train, download=False)
    return str(info.value)


# --------------------------------------------------------------------------------------
# Damaged files (D1)


def test_truncated_gzipped_idx(tmp_path):
    folder = write_mnist(tmp_path, compress=True)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    assert load_error("mnist", tmp_path) == damaged(
        "mnist",
        "train",
        path,
        "it ends too early: truncated, or only partly downloaded",
        MNIST_SOURCE,
    )


def test_plain_idx_named_gz(tmp_path):
    folder = write_mnist(tmp_path)
    plain = folder / "t10k-labels-idx1-ubyte"
    path = folder / "t10k-labels-idx1-ubyte.gz"
    plain.rename(path)
    assert load_error("mnist", tmp_path, train=False) == damaged(
        "mnist",
        "test",
        path,
        "not a gzip file, although its name ends in .gz",
        MNIST_SOURCE,
    )


def test_truncated_plain_idx_data(tmp_path):
    folder = write_mnist(tmp_path)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    assert load_error("mnist", tmp_path) == damaged(
        "mnist",
        "train",
        path,
        "header says shape (6, 28, 28) (4704 bytes) but the file has 984 bytes of data",
        MNIST_SOURCE,
    )


def test_idx_header_cut_short(tmp_path):
    folder = write_mnist(tmp_path)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:14])
    assert load_error("mnist", tmp_path) == damaged(
        "mnist",
        "train",
        path,
        "its header is cut short (14 bytes, 16 expected): truncated, or only "
        "partly downloaded",
        MNIST_SOURCE,
    )
    with pytest.raises(DamagedFileError) as info:
        read_idx(path)
    assert info.value.path == path
    assert isinstance(info.value, ValueError)


def write_cifar10(data_dir: Path, *, side: int = 32) -> Path:
    rng = np.random.default_rng(1)
    folder = raw_dir_for(data_dir, "cifar10") / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, size=(2, 3 * side * side), dtype=np.uint8),
            b"labels": [1, 2],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            lambda data: data[:500],
            "not a readable CIFAR pickle (pickle data was truncated)",
        ),
        (
            lambda data: b"not a pickle\n",
            "not a readable CIFAR pickle (invalid load key, 'n'.)",
        ),
        (
            lambda data: pickle.dumps({b"labels": [1]}),
            "not a CIFAR batch: expected a pickled dict with b'data' and b'labels' "
            "entries",
        ),
    ],
)
def test_damaged_cifar_batch(tmp_path, content, reason):
    folder = write_cifar10(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(content(path.read_bytes()))
    assert load_error("cifar10", tmp_path) == damaged(
        "cifar10", "train", path, reason, CIFAR_SOURCE
    )


def test_damaged_svhn_mat(tmp_path):
    from scipy.io import savemat

    raw = raw_dir_for(tmp_path, "svhn")
    raw.mkdir(parents=True)
    path = raw / "train_32x32.mat"
    x = np.zeros((32, 32, 3, 2), dtype=np.uint8)
    savemat(path, {"X": x, "y": np.array([[1], [2]])})
    path.write_bytes(path.read_bytes()[:1000])
    message = load_error("svhn", tmp_path)
    prefix = f"image dataset 'svhn' (train split): {path} is damaged (not a readable "
    assert message.startswith(prefix + "MATLAB .mat file ("), message
    assert message.endswith("); " + DOWNLOAD_AGAIN.format(source=SVHN_SOURCE))

    savemat(path, {"images": x, "y": np.array([[1], [2]])})
    assert load_error("svhn", tmp_path) == damaged(
        "svhn",
        "train",
        path,
        "it has no 'X' array (SVHN's cropped-digits files hold X and y)",
        SVHN_SOURCE,
    )
    savemat(path, {"X": x, "y": np.array([[1], [11]])})
    assert load_error("svhn", tmp_path) == damaged(
        "svhn",
        "train",
        path,
        "it has the label 11 outside 1..10 (SVHN's labels, 10 meaning the digit 0)",
        SVHN_SOURCE,
    )


def test_partial_torchvision_download_says_delete_it(tmp_path, monkeypatch):
    """An interrupted download leaves a short file; the message says to delete it
    (the next run would otherwise find it and skip the download)."""
    calls = []

    class MNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            folder = Path(root) / "MNIST" / "raw"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" * 3)
            (folder / "train-labels-idx1-ubyte").write_bytes(
                idx_bytes(np.zeros(2, dtype=np.uint8))
            )

    fake = types.ModuleType("torchvision")
    fake_datasets = types.ModuleType("torchvision.datasets")
    fake_datasets.MNIST = MNIST
    fake.datasets = fake_datasets
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake_datasets)

    path = raw_dir_for(tmp_path, "mnist") / "MNIST" / "raw" / "train-images-idx3-ubyte"
    expected = damaged(
        "mnist",
        "train",
        path,
        "its header is cut short (12 bytes, 16 expected): truncated, or only "
        "partly downloaded",
        MNIST_SOURCE,
    )
    with pytest.raises(DatasetDamagedError) as info:
        load_raw_images("mnist", tmp_path, train=True)
    assert str(info.value) == expected
    assert len(calls) == 1
    # The file is there now: no second download, the same advice.
    with pytest.raises(DatasetDamagedError) as info:
        load_raw_images("mnist", tmp_path, train=True)
    assert str(info.value) == expected
    assert len(calls) == 1


# --------------------------------------------------------------------------------------
# Files of the wrong shape or with labels out of range (D2)


def test_mnist_of_another_image_size(tmp_path):
    folder = write_mnist(tmp_path, side=32)
    assert load_error("mnist", tmp_path) == damaged(
        "mnist",
        "train",
        folder / "train-images-idx3-ubyte",
        "its images are 1×32×32 (channels×height×width) but 'mnist' images are 1×28×28",
        MNIST_SOURCE,
    )


def test_cifar_of_another_image_size(tmp_path):
    folder = write_cifar10(tmp_path, side=28)
    assert load_error("cifar10", tmp_path) == damaged(
        "cifar10",
        "train",
        folder / "data_batch_1",
        "its images are 3×28×28 (channels×height×width) but 'cifar10' images are "
        "3×32×32",
        CIFAR_SOURCE,
    )


def test_label_outside_the_classes(tmp_path):
    folder = write_mnist(tmp_path, labels=[0, 1, 2, 10, 4, 5])
    assert load_error("mnist", tmp_path, train=False) == damaged(
        "mnist",
        "test",
        folder / "t10k-labels-idx1-ubyte",
        "it has the label 10 outside 0..9 (the 10 classes of 'mnist')",
        MNIST_SOURCE,
    )


def test_fewer_labels_than_images(tmp_path):
    folder = write_mnist(tmp_path, num_labels=5)
    images = folder / "train-images-idx3-ubyte"
    assert load_error("mnist", tmp_path) == damaged(
        "mnist",
        "train",
        folder / "train-labels-idx1-ubyte",
        f"it has 5 labels for the 6 images of {images}",
        MNIST_SOURCE,
    )


def test_good_files_still_read(tmp_path):
    write_mnist(tmp_path, compress=True)
    raw = load_raw_images("mnist", tmp_path, train=True, download=False)
    assert raw.images.shape == (6, 1, 28, 28)
    assert raw.labels.tolist() == [0, 1, 2, 3, 4, 5]
