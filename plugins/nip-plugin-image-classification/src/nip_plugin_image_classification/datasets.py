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
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from nip_core.errors import DatasetDamagedError, DatasetNotFoundError, UnknownKeyError

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


class DamagedFileError(ValueError):
    """A raw file is there but is not what the dataset's format says it should be
    (truncated, corrupt, another format, images of another shape).

    Parameters
    ----------
    path : Path
        The file.
    reason : str
        What is wrong with it, in words.
    """

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@attrs.frozen
class RawPart:
    """Images and labels as read from one file (or one pair of files) of a split.

    Parameters
    ----------
    images : numpy.ndarray
        ``uint8`` array of shape ``(N, channels, height, width)``.
    labels : numpy.ndarray
        ``int64`` array of shape ``(N,)``.
    images_file, labels_file : Path | None
        The files they were read from (``None`` for ``digits``, read from
        scikit-learn), named when they do not fit the dataset.
    """

    images: np.ndarray
    labels: np.ndarray
    images_file: Path | None = None
    labels_file: Path | None = None


Reader = Callable[[Path, bool], list[RawPart]]
"""``reader(raw_dir, train) -> parts``; raises ``FileNotFoundError`` for a missing
file and :class:`DamagedFileError` for one that cannot be read."""

SplitFiles = Callable[[Path, bool], tuple[Path, ...]]
"""``files(raw_dir, train) -> paths``: the files a reader reads for one split."""


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
    files : SplitFiles
        The files the reader reads for one split (none for ``digits``).
    max_value : int
        The pixel value meaning "full intensity".
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
    files: SplitFiles = attrs.field(default=lambda raw_dir, train: ())
    max_value: int = 255
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


def _reason(error: BaseException, what: str) -> str:
    """Why a file of format ``what`` could not be read, in words."""
    if isinstance(error, gzip.BadGzipFile):
        return "not a gzip file, although its name ends in .gz"
    if isinstance(error, EOFError):
        return "it ends too early: truncated, or only partly downloaded"
    if isinstance(error, zlib.error):
        return f"corrupt gzip data ({error})"
    detail = str(error) or type(error).__name__
    return f"not a readable {what} ({detail})"


@contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn any failure to read ``path`` (but its absence) into
    :class:`DamagedFileError`."""
    try:
        yield
    except (FileNotFoundError, DamagedFileError):
        raise
    except Exception as error:  # noqa: BLE001 - whatever a damaged file provokes
        raise DamagedFileError(path, _reason(error, what)) from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped if its name ends in ``.gz``.

    The header is two zero bytes, a type code, the number of dimensions, then one
    big-endian 32-bit size per dimension; the data follow in C order.

    Raises
    ------
    DamagedFileError
        When the file is not a complete IDX file (a ``ValueError``).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with _reading(path, "IDX file"), opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DamagedFileError(path, "not an IDX file (bad magic number)")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise DamagedFileError(path, f"unknown IDX element type 0x{type_code:02x}")
    dtype = np.dtype(_IDX_DTYPES[type_code])
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise DamagedFileError(
            path,
            f"its header is cut short ({len(data)} bytes, {header_end} expected): "
            "truncated, or only partly downloaded",
        )
    shape = tuple(int(s) for s in np.frombuffer(data[4:header_end], dtype=">u4"))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_end != expected:
        raise DamagedFileError(
            path,
            f"header says shape {shape} ({expected} bytes) but the file has "
            f"{len(data) - header_end} bytes of data",
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_end).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(folder / stem)


def _mnist_stems(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")


def _mnist_family_files(folder_name: str) -> SplitFiles:
    def files(raw_dir: Path, train: bool) -> tuple[Path, ...]:
        folder = raw_dir / folder_name / "raw"
        found = []
        for stem in _mnist_stems(train):
            try:
                found.append(_find_file(folder, stem))
            except FileNotFoundError:
                found.append(folder / stem)
        return tuple(found)

    return files


def _mnist_family_reader(folder_name: str) -> Reader:
    def read(raw_dir: Path, train: bool) -> list[RawPart]:
        folder = raw_dir / folder_name / "raw"
        images_stem, labels_stem = _mnist_stems(train)
        images_file = _find_file(folder, images_stem)
        labels_file = _find_file(folder, labels_stem)
        images = read_idx(images_file)
        labels = read_idx(labels_file)
        if images.ndim != 3:
            raise DamagedFileError(
                images_file,
                f"expected images of shape (N, height, width), got shape "
                f"{images.shape}",
            )
        if labels.ndim != 1:
            raise DamagedFileError(
                labels_file, f"expected labels of shape (N,), got shape {labels.shape}"
            )
        return [
            RawPart(
                images=np.ascontiguousarray(images[:, None, :, :], dtype=np.uint8),
                labels=labels.astype(np.int64),
                images_file=images_file,
                labels_file=labels_file,
            )
        ]

    return read


def _unpickle(path: Path, label_key: bytes) -> RawPart:
    """One CIFAR batch: a pickled dict of ``b"data"`` (one row of 3×H×W bytes per
    image, the red, then green, then blue plane) and ``label_key``."""
    if not path.is_file():
        raise FileNotFoundError(path)
    with _reading(path, "CIFAR pickle"), open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DamagedFileError(
            path,
            f"not a CIFAR batch: expected a pickled dict with b'data' and "
            f"{label_key!r} entries",
        )
    with _reading(path, "CIFAR batch"):
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    values = data.shape[1] if data.ndim == 2 else 0
    side = int(round((values / 3) ** 0.5))
    if data.ndim != 2 or values == 0 or 3 * side * side != values:
        raise DamagedFileError(
            path,
            f"its data of shape {data.shape} are not rows of 3-channel square images",
        )
    return RawPart(
        images=data.reshape(-1, 3, side, side),
        labels=labels,
        images_file=path,
        labels_file=path,
    )


def _cifar10_files(raw_dir: Path, train: bool) -> tuple[Path, ...]:
    folder = raw_dir / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return tuple(folder / n for n in names)


def read_cifar10(raw_dir: Path, train: bool) -> list[RawPart]:
    """Read CIFAR-10's python pickles from ``raw_dir/cifar-10-batches-py``."""
    return [_unpickle(path, b"labels") for path in _cifar10_files(raw_dir, train)]


def _cifar100_files(raw_dir: Path, train: bool) -> tuple[Path, ...]:
    return (raw_dir / "cifar-100-python" / ("train" if train else "test"),)


def read_cifar100(raw_dir: Path, train: bool) -> list[RawPart]:
    """Read CIFAR-100's pickles (fine labels) from ``raw_dir/cifar-100-python``."""
    return [_unpickle(path, b"fine_labels") for path in _cifar100_files(raw_dir, train)]


def _svhn_files(raw_dir: Path, train: bool) -> tuple[Path, ...]:
    return (raw_dir / ("train_32x32.mat" if train else "test_32x32.mat"),)


def read_svhn(raw_dir: Path, train: bool) -> list[RawPart]:
    """Read SVHN's cropped-digits ``.mat`` file; the label 10 (digit 0) becomes 0."""
    from scipy.io import loadmat

    (path,) = _svhn_files(raw_dir, train)
    if not path.is_file():
        raise FileNotFoundError(path)
    with _reading(path, "MATLAB .mat file"):
        mat = loadmat(path)
    missing = [key for key in ("X", "y") if key not in mat]
    if missing:
        raise DamagedFileError(
            path,
            f"it has no {' or '.join(repr(k) for k in missing)} array (SVHN's "
            "cropped-digits files hold X and y)",
        )
    with _reading(path, "SVHN .mat file"):
        x = np.asarray(mat["X"], dtype=np.uint8)
        y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    if x.ndim != 4:
        raise DamagedFileError(
            path,
            f"its X array has shape {x.shape}; expected (height, width, channels, N)",
        )
    outside = y[(y < 1) | (y > 10)]
    if outside.size:
        raise DamagedFileError(
            path,
            f"it has the label {int(outside[0])} outside 1..10 (SVHN's labels, 10 "
            "meaning the digit 0)",
        )
    images = np.transpose(x, (3, 2, 0, 1))
    return [
        RawPart(
            images=np.ascontiguousarray(images),
            labels=y % 10,
            images_file=path,
            labels_file=path,
        )
    ]


def read_digits(raw_dir: Path, train: bool) -> list[RawPart]:
    """scikit-learn's bundled 8×8 digits, split by :data:`DIGITS_SPLIT_SEED`."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)
    permutation = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    test_index = np.sort(permutation[:DIGITS_TEST_SIZE])
    train_index = np.sort(permutation[DIGITS_TEST_SIZE:])
    index = train_index if train else test_index
    return [RawPart(images=images[index], labels=labels[index])]


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
        files=_mnist_family_files(folder),
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
        max_value=16,
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
        files=_cifar10_files,
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
        files=_cifar100_files,
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
        files=_svhn_files,
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


def split_name(train: bool) -> str:
    """``"train"`` or ``"test"``."""
    return "train" if train else "test"


def source_files(name: str, data_dir: Path, train: bool) -> tuple[Path, ...]:
    """The raw files one split of dataset ``name`` is read from (none for
    ``digits``); a missing file is named as the reader would look for it."""
    info = get_dataset_info(name)
    return info.files(raw_dir_for(data_dir, name), train)


def source_fingerprint(name: str, data_dir: Path, train: bool) -> list[list[Any]]:
    """``[name, size, mtime_ns]`` of each raw file of one split (``[name, None,
    None]`` for a missing one; the name is relative to the raw directory).

    Part of the processed cache's key: replacing, editing or deleting a raw file
    builds the processed data again instead of reusing it. Cheap: the files are
    only looked at, not read.
    """
    from nip_core.scenario.data_base import files_fingerprint

    return files_fingerprint(
        *source_files(name, data_dir, train), root=raw_dir_for(data_dir, name)
    )


def fetch_missing_files(
    name: str, data_dir: Path, train: bool, *, download: bool = True
) -> None:
    """Make sure the raw files of one split are there, downloading them through
    torchvision first if possible and needed.

    Raises
    ------
    DatasetNotFoundError
        When files are missing and cannot be downloaded; the message says what to
        install and where to put which files.
    """
    info = get_dataset_info(name)
    raw_dir = raw_dir_for(data_dir, name)
    missing = [p for p in info.files(raw_dir, train) if not p.is_file()]
    if not missing:
        return
    if info.torchvision_class is None:
        raise DatasetNotFoundError(f"dataset {name!r}: could not read {missing[0]}")
    reason = (
        _torchvision_download(info, raw_dir, train)
        if download
        else "downloading is switched off"
    )
    if not reason:
        still = [p for p in info.files(raw_dir, train) if not p.is_file()]
        if not still:
            return
        reason = f"torchvision reported success but {still[0]} is still missing"
    raise DatasetNotFoundError(
        f"image dataset {name!r} ({split_name(train)} split) is not "
        f"available: {missing[0]} is missing and {reason}. To use it offline, put "
        f"{info.expected_files} in {raw_dir} (source: {info.source}). The 'digits' "
        "dataset needs no files."
    )


def check_part(info: ImageDatasetInfo, part: RawPart) -> None:
    """Check that images and labels read from a file fit dataset ``info``: images of
    its ``(channels, height, width)``, one label per image, labels in
    ``0..num_classes - 1``.

    Raises
    ------
    DamagedFileError
        Naming the file that does not fit.
    """
    expected = (info.num_channels, info.height, info.width)
    images, labels = part.images, part.labels
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        found = (
            "×".join(str(n) for n in images.shape[1:])
            if images.ndim == 4
            else f"of shape {images.shape}"
        )
        raise DamagedFileError(
            part.images_file or Path(info.name),
            f"its images are {found} (channels×height×width) but {info.name!r} "
            f"images are {'×'.join(str(n) for n in expected)}",
        )
    if labels.shape != (images.shape[0],):
        what = (
            f"the {images.shape[0]} images"
            if part.images_file in (None, part.labels_file)
            else f"the {images.shape[0]} images of {part.images_file}"
        )
        raise DamagedFileError(
            part.labels_file or Path(info.name),
            f"it has {labels.size} labels for {what}",
        )
    outside = labels[(labels < 0) | (labels >= info.num_classes)]
    if outside.size:
        raise DamagedFileError(
            part.labels_file or Path(info.name),
            f"it has the label {int(outside[0])} outside 0..{info.num_classes - 1} "
            f"(the {info.num_classes} classes of {info.name!r})",
        )


def damaged_file_message(
    info: ImageDatasetInfo, train: bool, error: DamagedFileError
) -> str:
    """The message for a raw file that is there but cannot be used."""
    replace = f"replace it with a good copy (source: {info.source})"
    if info.torchvision_class is not None:
        what_to_do = (
            "delete it so that the next run downloads it again (with "
            "`nip-plugin-image-classification[torchvision]` installed), or " + replace
        )
    else:
        what_to_do = replace
    return (
        f"image dataset {info.name!r} ({split_name(train)} split): {error.path} is "
        f"damaged ({error.reason}); {what_to_do}"
    )


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
        When the files are missing and cannot be downloaded (the message says what
        to install and where to put which files).
    DatasetDamagedError
        When a file is there but cannot be read or does not fit the dataset (the
        message names the file, says what is wrong and how to replace it).
    """
    info = get_dataset_info(name)
    fetch_missing_files(name, data_dir, train, download=download)
    try:
        parts = info.reader(raw_dir_for(data_dir, name), train)
        for part in parts:
            check_part(info, part)
    except FileNotFoundError as error:  # gone between the check and the read
        raise DatasetNotFoundError(
            f"image dataset {name!r} ({split_name(train)} split): could not read "
            f"{error.filename or error}; put {info.expected_files} in "
            f"{raw_dir_for(data_dir, name)} (source: {info.source})"
        ) from None
    except DamagedFileError as error:
        raise DatasetDamagedError(damaged_file_message(info, train, error)) from None
    if len(parts) == 1:
        images, labels = parts[0].images, parts[0].labels
    else:
        images = np.concatenate([part.images for part in parts])
        labels = np.concatenate([part.labels for part in parts])
    return RawImages(images=images, labels=labels, max_value=info.max_value)
