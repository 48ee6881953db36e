"""The image classification dataset: a labelled image set reduced to two classes.

Datapoints hold

- ``"image"`` (``float32``, ``(image_channel, height, width)``, scaled to [-1, 1]);
- ``"y"``: the two-class label (see
  :class:`~nip_plugin_image_classification.parameters.ImageClassificationParameters`);
- ``"id"``: the index in the processed split;
- ``"source_index"``: the index of the image in the original split (to trace a
  datapoint back to the raw data).

The message history is not stored: it starts empty in every episode, so the
environment creates it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.parameters.dataset import DatasetParameters
from nip_core.scenario.data import TensorDictDataset
from nip_core.scenario.data_base import resolve_data_dir
from tensordict import TensorDict

from nip_plugin_image_classification.binarification import binarify
from nip_plugin_image_classification.datasets import (
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_SIZE,
    IMAGE_DATASETS,
    ImageDatasetInfo,
    RawImages,
    fetch_missing_files,
    get_dataset_info,
    load_raw_images,
    source_fingerprint,
)

PROCESSING_VERSION = 2
"""Bumped whenever the processing below changes what it produces."""


def dataset_options(hyper_params: Any) -> DatasetParameters:
    """The ``dataset_options`` section, or its defaults when the tree has none."""
    options = getattr(hyper_params, "dataset_options", None)
    return options if options is not None else DatasetParameters()


def image_classification_options(hyper_params: Any) -> Any:
    """The ``image_classification`` section, or its defaults when absent."""
    from nip_plugin_image_classification.parameters import (
        ImageClassificationParameters,
    )

    options = getattr(hyper_params, "image_classification", None)
    return options if options is not None else ImageClassificationParameters()


def resolved_binarification(hyper_params: Any) -> dict[str, Any]:
    """The binarification actually applied, with the dataset's defaults filled in."""
    info = get_dataset_info(str(hyper_params.dataset))
    options = image_classification_options(hyper_params)
    selected = options.selected_classes or info.selected_classes
    seed = (
        options.binarification_seed
        if options.binarification_seed is not None
        else info.binarification_seed
    )
    return {
        "binarification_method": options.binarification_method,
        "selected_classes": list(selected)
        if options.binarification_method == "select_two"
        else None,
        "binarification_seed": int(seed),
        "make_balanced": bool(options.make_balanced),
    }


class ImageClassificationDataset(TensorDictDataset):
    """One split of an image set reduced to two classes.

    The raw images are read by :func:`~nip_plugin_image_classification.datasets.
    load_raw_images` (downloaded through torchvision on first use when possible),
    reduced to two classes and balanced as the ``image_classification`` section says,
    truncated as ``dataset_options`` says, and
    cached under the data directory keyed by everything that shapes the result,
    including a fingerprint (name, size, modification time) of each raw file read.
    """

    instance_keys: ClassVar[tuple[str, ...]] = ("image",)

    def __init__(
        self,
        hyper_params: Any,
        settings: Any,
        protocol_handler: Any = None,
        split: Any = "train",
    ):
        name = str(hyper_params.dataset)
        if split != "validation" and name in IMAGE_DATASETS:
            # The cache key fingerprints the raw files: fetch missing ones first,
            # so a first download does not key the cache by files not yet there.
            fetch_missing_files(
                name, resolve_data_dir(settings), train=split == "train"
            )
        super().__init__(hyper_params, settings, protocol_handler, split)

    @property
    def info(self) -> ImageDatasetInfo:
        """What the plugin knows about this dataset (shape, classes, defaults)."""
        return get_dataset_info(self.name)

    def how_to_get(self) -> str:
        info = self.info
        if info.torchvision_class is None:
            return f"it ships with the plugin's dependencies ({info.source})"
        return (
            "install `nip-plugin-image-classification[torchvision]` to download it on "
            f"first use, or put {info.expected_files} in {self.raw_dir}"
        )

    def cache_key_dict(self) -> dict[str, Any]:
        key = super().cache_key_dict()
        info = self.info
        options = dataset_options(self.hyper_params)
        ic_options = image_classification_options(self.hyper_params)
        key.update(resolved_binarification(self.hyper_params))
        key.update(
            {
                "processing_version": PROCESSING_VERSION,
                "max_test_size": options.max_test_size
                if self.split != "train"
                else None,
                "image_shape": [info.num_channels, info.height, info.width],
                "num_block_groups": int(ic_options.num_block_groups),
            }
        )
        if self.name == "digits":
            key["digits_split"] = [DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE]
        if self.split != "validation":
            # replaced, edited or deleted raw files build the processed data again
            key["source_files"] = source_fingerprint(
                self.name, self.data_dir, train=self.split == "train"
            )
        return key

    def _max_size_for_split(self) -> int | None:
        options = dataset_options(self.hyper_params)
        if self.split == "train":
            return options.max_train_size
        return options.max_test_size

    def load_raw(self) -> RawImages:
        """The raw images and original labels of this split."""
        if self.split == "validation":
            raise NipConfigError(
                ConfigProblem(
                    "test_dataset_split",
                    f"image dataset {self.name!r} has no validation split",
                    "validation",
                    ("test",),
                )
            )
        return load_raw_images(self.name, self.data_dir, train=self.split == "train")

    def build_tensor_dict(self) -> TensorDict:
        raw = self.load_raw()
        binarification = resolved_binarification(self.hyper_params)
        selected = binarification["selected_classes"] or self.info.selected_classes
        selection = binarify(
            raw.labels,
            method=binarification["binarification_method"],
            num_classes=self.info.num_classes,
            seed=binarification["binarification_seed"],
            selected_classes=tuple(selected),
            make_balanced=binarification["make_balanced"],
            max_size=self._max_size_for_split(),
        )
        images = torch.from_numpy(raw.normalised(selection.index))
        return TensorDict(
            {
                "image": images,
                "y": torch.from_numpy(selection.labels.astype(np.int64)),
                "source_index": torch.from_numpy(selection.index.astype(np.int64)),
            },
            batch_size=[len(selection.index)],
        )
