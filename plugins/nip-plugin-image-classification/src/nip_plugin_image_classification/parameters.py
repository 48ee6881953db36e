"""Parameter sections of the image classification scenario.

One section joins the hyper-parameter tree when this plugin is installed:
``image_classification`` (:class:`ImageClassificationParameters`), the shape of the
CNN every agent shares, which fixes the latent-pixel grid messages are drawn from.
How a labelled image set is reduced to a two-class problem and how large it is are
the core's ``dataset_options`` section (:class:`DatasetParameters`, re-exported
here).

The per-agent architecture lives in
:class:`~nip_plugin_image_classification.agent_parameters.ImageClassificationAgentParameters`.

This module imports without torch.
"""

from __future__ import annotations

from attrs import field
from attrs import validators as v
from nip_core.parameters import SubParameters, parameters_class
from nip_core.parameters.dataset import (  # noqa: F401 (re-exported)
    BINARIFICATION_METHODS,
    BinarificationMethod,
    DatasetParameters,
)


@parameters_class
class ImageClassificationParameters(SubParameters):
    """Parameters of the image classification scenario shared by every agent.

    Each group of building blocks ends with a 2×2 max-pooling, so an image of height
    ``H`` and width ``W`` becomes a grid of ``H // 2**num_block_groups`` by
    ``W // 2**num_block_groups`` latent pixels. A message is one of those latent
    pixels, which is why these two values are the scenario's and not an agent's.

    Parameters
    ----------
    num_block_groups : int
        The number of groups of building blocks (for example convolutional layers)
        in each agent's CNN. Each group halves the height and width and doubles the
        number of channels.
    initial_num_channels : int
        The number of channels the first group of building blocks receives.
    """

    num_block_groups: int = field(
        default=1, validator=v.and_(v.instance_of(int), v.ge(0))
    )
    initial_num_channels: int = field(
        default=16, validator=v.and_(v.instance_of(int), v.ge(1))
    )
