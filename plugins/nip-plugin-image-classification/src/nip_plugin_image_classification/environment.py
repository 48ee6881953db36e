"""The image classification environment.

A message is one latent pixel: a cell of the ``(H // 2**g, W // 2**g)`` grid the
agents' CNNs produce (``g = image_classification.num_block_groups``). The agents
observe the image (``"image"``) and the message history; everything else (turns,
rewards, done signals) is the tensor world's common stepping.
"""

from __future__ import annotations

from typing import Any, ClassVar

from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.scenario.environment import TensorDictEnvironment

from nip_plugin_image_classification.data import image_classification_options
from nip_plugin_image_classification.datasets import get_dataset_info
from nip_plugin_image_classification.networks import latent_size


def latent_grid_shape(hyper_params: Any) -> tuple[int, int]:
    """The ``(latent_height, latent_width)`` grid of the run's dataset and CNN shape.

    Raises
    ------
    NipConfigError
        When ``num_block_groups`` pools the image down to nothing.
    """
    info = get_dataset_info(str(hyper_params.dataset))
    groups = int(image_classification_options(hyper_params).num_block_groups)
    shape = (latent_size(info.height, groups), latent_size(info.width, groups))
    if min(shape) < 1:
        largest = 0
        while latent_size(min(info.height, info.width), largest + 1) >= 1:
            largest += 1
        raise NipConfigError(
            ConfigProblem(
                path="image_classification.num_block_groups",
                message=(
                    f"pools the {info.height}×{info.width} images of "
                    f"{info.name!r} to an empty grid; at most {largest} for this "
                    "dataset"
                ),
                value=groups,
            )
        )
    return shape


class ImageClassificationEnvironment(TensorDictEnvironment):
    """Batched environment of the image classification scenario.

    Observations add ``"image"`` (``float32``, ``(num_envs, image_channel, height,
    width)``) to the tensor world's common keys; ``message_history`` has shape
    ``(num_envs, rounds, channels, message_size, latent_height, latent_width)``.
    Every latent pixel is a valid message for every agent.
    """

    observation_data_keys: ClassVar[tuple[str, ...]] = ("image",)

    @property
    def message_space_shape(self) -> tuple[int, int]:
        return latent_grid_shape(self.hyper_params)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(image_channel, height, width)`` of the run's dataset."""
        info = get_dataset_info(str(self.hyper_params.dataset))
        return (info.num_channels, info.height, info.width)
