"""Raw image sets: what each named dataset is, where its files live, how to read them.

``digits`` (scikit-learn's bundled handwritten digits) needs nothing: it ships with
scikit-learn. The others (``mnist``, ``fashion_mnist``, ``kmnist``, ``cifar10``,
``cifar100``, ``svhn``) are read from their usual on-disk formats by the readers in
this module:

- MNIST family: IDX files (optionally gzipped) under ``<raw>/<Folder>/raw/``;
- CIFAR-10 / CIFAR-100: the "python version" pickles under
  ``<raw>/cifar-10-batches-py/`` and ``<raw>/cifar-100-python/``;
- SVHN: ``<raw>/train_32x32.mat`` and ``<raw>/test_32x32.mat`` (the "cropped digits"
  format 2), read with :func:`scipy.io.loadmat`.

These are exactly the layouts torchvision's dataset classes write, so when the
plugin's optional ``torchvision`` extra is installed (and importable), missing files
are downloaded through torchvision on first use and then read by the same readers.
torchvision is only ever the downloader: reading never needs it.

``digits`` images are used as they are, 8×8 with one channel: upsampling adds no
information, and 8×8 keeps the default ``num_block_groups=1`` (a 4×4 grid of latent
pixels) fast enough for tests and examples on a laptop. ``num_block_groups`` may be
at most 3 for ``digits``. scikit-learn ships no train/test split; ours is fixed: a
permutation seeded with 0 puts 360 of the 1797 images (20 %) in the test split.

No torch here: the arrays are numpy, so this module also serves tools that only list
or check datasets.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np
from nip_core.errors import DatasetNotFoundError, UnknownKeyError

DIGITS_TEST_SIZE = 360
"""Images of scikit-learn's digits set (of 1797) in our test split."""

DIGITS_SPLIT_SEED = 0
"""The seed of the permutation that splits the digits set."""


@attrs.frozen
class RawImages:
    """Images and labels of one split of a dataset, as read from disk.

    Parameters
    ----------
    images : numpy.ndarray
        ``uint8`` array of shape ``(N, channels, height, width)``.
    labels : numpy.ndarray
        ``int64`` array of shape ``(N,)``, the original class of each image.
    max_value : int
        The pixel value meaning "full intensity" (255, or 16 for ``digits``).
    """

    images: np.ndarray
    labels: np.ndarray
    max_value: int = 255

    def __attrs_post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(
                f"images must have shape (N, C, H, W), got {self.images.shape}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.images.shape[0]} images but labels of shape {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def normalised(self, index: np.ndarray | None = None) -> np.ndarray:
        """The images (or those at ``index``) as ``float32`` scaled to [-1, 1]."""
        images = self.images if index is None else self.images[index]
        return images.astype(np.float32) * (2.0 / self.max_value) - 1.0


Reader = Callable[[Path, bool], RawImages]
"""``reader(raw_dir, train) -> RawImages``; raises ``FileNotFoundError``."""


@attrs.frozen(kw_only=True)
class ImageDatasetInfo:
    """What the plugin knows about one named image dataset.

    Parameters
    ----------
    name : str
        The name used in ``HyperParameters.dataset``.
    num_channels, height, width : int
        The shape of one image.
    num_classes : int
        The number of original classes.
    reader : Reader
        Reads one split from the raw directory.
    selected_classes : tuple[int, int]
        The default classes of ``select_two``.
    binarification_seed : int
        The default seed of ``merge``, ``random`` and ``make_balanced``.
    torchvision_class : str | None
        The torchvision dataset class that can download the files, if any.
    expected_files : str
        Where the files go, for the error message when they are missing.
    """

    name: str
    num_channels: int
    height: int
    width: int
    num_classes: int
    reader: Reader
    selected_classes: tuple[int, int] = (0, 1)
    binarification_seed: int = 0
    torchvision_class: str | None = None
    expected_files: str = ""
    source: str = ""


# --------------------------------------------------------------------------------------
# Readers of the on-disk formats
# --------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped if its name ends in ``.gz``.

    The header is two zero bytes, a type code, the number of dimensions, then one
    big-endian 32-bit size per dimension; the data follow in C order.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX element type 0x{type_code:02x}")
    dtype = np.dtype(_IDX_DTYPES[type_code])
    header_end = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(data[4:header_end], dtype=">u4"))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file has "
            f"{len(data) - header_end} bytes of data"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(folder / stem)


def _mnist_family_reader(folder_name: str) -> Reader:
    def read(raw_dir: Path, train: bool) -> RawImages:
        folder = raw_dir / folder_name / "raw"
        prefix = "train" if train else "t10k"
        images = read_idx(_find_file(folder, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find_file(folder, f"{prefix}-labels-idx1-ubyte"))
        return RawImages(
            images=np.ascontiguousarray(images[:, None, :, :], dtype=np.uint8),
            labels=labels.astype(np.int64),
        )

    return read


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(path)
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _cifar_arrays(batches: list[dict], label_key: bytes) -> RawImages:
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return RawImages(images=data.reshape(-1, 3, 32, 32), labels=labels)


def read_cifar10(raw_dir: Path, train: bool) -> RawImages:
    """Read CIFAR-10's python pickles from ``raw_dir/cifar-10-batches-py``."""
    folder = raw_dir / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return _cifar_arrays([_unpickle(folder / n) for n in names], b"labels")


def read_cifar100(raw_dir: Path, train: bool) -> RawImages:
    """Read CIFAR-100's pickles (fine labels) from ``raw_dir/cifar-100-python``."""
    folder = raw_dir / "cifar-100-python"
    return _cifar_arrays(
        [_unpickle(folder / ("train" if train else "test"))], b"fine_labels"
    )


def read_svhn(raw_dir: Path, train: bool) -> RawImages:
    """Read SVHN's cropped-digits ``.mat`` file; the label 10 (digit 0) becomes 0."""
    from scipy.io import loadmat

    path = raw_dir / ("train_32x32.mat" if train else "test_32x32.mat")
    if not path.is_file():
        raise FileNotFoundError(path)
    mat = loadmat(path)
    images = np.transpose(np.asarray(mat["X"], dtype=np.uint8), (3, 2, 0, 1))
    labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1) % 10
    return RawImages(images=np.ascontiguousarray(images), labels=labels)


def read_digits(raw_dir: Path, train: bool) -> RawImages:
    """scikit-learn's bundled 8×8 digits, split by :data:`DIGITS_SPLIT_SEED`."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    permutation = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    test_index = np.sort(permutation[:DIGITS_TEST_SIZE])
    train_index = np.sort(permutation[DIGITS_TEST_SIZE:])
    index = train_index if train else test_index
    return RawImages(images=images[index], labels=labels[index], max_value=16)


# --------------------------------------------------------------------------------------
# The table of datasets
# --------------------------------------------------------------------------------------


def _mnist_like(name: str, folder: str, source: str) -> ImageDatasetInfo:
    files = ", ".join(
        f"{stem}[.gz]"
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )
    return ImageDatasetInfo(
        name=name,
        num_channels=1,
        height=28,
        width=28,
        num_classes=10,
        reader=_mnist_family_reader(folder),
        torchvision_class=folder,
        expected_files=f"{folder}/raw/ containing {files}",
        source=source,
    )


IMAGE_DATASETS: dict[str, ImageDatasetInfo] = {
    "digits": ImageDatasetInfo(
        name="digits",
        num_channels=1,
        height=8,
        width=8,
        num_classes=10,
        reader=read_digits,
        source="bundled with scikit-learn",
    ),
    "mnist": _mnist_like("mnist", "MNIST", "http://yann.lecun.com/exdb/mnist/"),
    "fashion_mnist": _mnist_like(
        "fashion_mnist",
        "FashionMNIST",
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
    "kmnist": _mnist_like("kmnist", "KMNIST", "https://github.com/rois-codh/kmnist"),
    "cifar10": ImageDatasetInfo(
        name="cifar10",
        num_channels=3,
        height=32,
        width=32,
        num_classes=10,
        reader=read_cifar10,
        selected_classes=(3, 5),
        torchvision_class="CIFAR10",
        expected_files=(
            "cifar-10-batches-py/ containing data_batch_1 ... data_batch_5 and "
            "test_batch (the extracted 'CIFAR-10 python version' archive)"
        ),
        source="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": ImageDatasetInfo(
        name="cifar100",
        num_channels=3,
        height=32,
        width=32,
        num_classes=100,
        reader=read_cifar100,
        torchvision_class="CIFAR100",
        expected_files=(
            "cifar-100-python/ containing train and test (the extracted "
            "'CIFAR-100 python version' archive)"
        ),
        source="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "svhn": ImageDatasetInfo(
        name="svhn",
        num_channels=3,
        height=32,
        width=32,
        num_classes=10,
        reader=read_svhn,
        binarification_seed=2,
        torchvision_class="SVHN",
        expected_files="train_32x32.mat and test_32x32.mat (format 2, cropped digits)",
        source="http://ufldl.stanford.edu/housenumbers/",
    ),
}
"""Every dataset the scenario can resolve, by name."""

DATASET_NAMES: tuple[str, ...] = tuple(IMAGE_DATASETS)


def get_dataset_info(name: str) -> ImageDatasetInfo:
    """The :class:`ImageDatasetInfo` of ``name`` (``UnknownKeyError`` if unknown)."""
    try:
        return IMAGE_DATASETS[name]
    except KeyError:
        known = ", ".join(DATASET_NAMES)
        raise UnknownKeyError(
            f"unknown image classification dataset {name!r}; known datasets: {known}",
            key=name,
            known=DATASET_NAMES,
        ) from None


def raw_dir_for(data_dir: Path, name: str) -> Path:
    """Where the raw files of dataset ``name`` live under the data directory."""
    return Path(data_dir) / "image_classification" / name / "raw"


def _torchvision_download(info: ImageDatasetInfo, raw_dir: Path, train: bool) -> str:
    """Download through torchvision; return "" on success or why it failed."""
    try:
        import torchvision.datasets as tv_datasets
    except Exception as error:  # noqa: BLE001 - a broken install is as good as none
        return (
            "torchvision is not importable "
            f"({type(error).__name__}: {error}); install the plugin's extra with "
            "`pip install 'nip-plugin-image-classification[torchvision]'` (with a "
            "torchvision build that matches your torch) to download it on first use"
        )
    dataset_class = getattr(tv_datasets, info.torchvision_class or "", None)
    if dataset_class is None:
        return f"this torchvision has no {info.torchvision_class} dataset class"
    raw_dir.mkdir(parents=True, exist_ok=True)
    try:
        if info.name == "svhn":
            dataset_class(
                root=str(raw_dir), split="train" if train else "test", download=True
            )
        else:
            dataset_class(root=str(raw_dir), train=train, download=True)
    except Exception as error:  # noqa: BLE001 - network and checksum errors alike
        return (
            f"the download through torchvision failed ({type(error).__name__}: {error})"
        )
    return ""


def load_raw_images(
    name: str, data_dir: Path, train: bool, *, download: bool = True
) -> RawImages:
    """Read one split of dataset ``name``, downloading it first if possible and needed.

    Parameters
    ----------
    name : str
        A key of :data:`IMAGE_DATASETS`.
    data_dir : Path
        The data directory; the raw files are under
        ``data_dir/image_classification/<name>/raw``.
    train : bool
        The training split (otherwise the test split).
    download : bool
        Whether to try downloading missing files through torchvision.

    Raises
    ------
    DatasetNotFoundError
        When the files are missing and cannot be downloaded; the message says what
        to install and where to put which files.
    """
    info = get_dataset_info(name)
    raw_dir = raw_dir_for(data_dir, name)
    try:
        return info.reader(raw_dir, train)
    except FileNotFoundError as error:
        missing = error.filename or str(error)
    if info.torchvision_class is None:
        raise DatasetNotFoundError(f"dataset {name!r}: could not read {missing}")
    reason = (
        _torchvision_download(info, raw_dir, train)
        if download
        else "downloading is switched off"
    )
    if not reason:
        try:
            return info.reader(raw_dir, train)
        except FileNotFoundError as error:
            reason = (
                f"torchvision reported success but {error.filename or error} is "
                "still missing"
            )
    raise DatasetNotFoundError(
        f"image dataset {name!r} ({'train' if train else 'test'} split) is not "
        f"available: {missing} is missing and {reason}. To use it offline, put "
        f"{info.expected_files} in {raw_dir} (source: {info.source}). The 'digits' "
        "dataset needs no files."
    )
