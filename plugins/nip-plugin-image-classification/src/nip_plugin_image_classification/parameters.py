"""The parameter section of the image classification scenario.

One section joins the hyper-parameter tree when this plugin is installed:
``image_classification`` (:class:`ImageClassificationParameters`): how a labelled
image set is reduced to the two-class problem agents solve, and the shape of the
CNN every agent shares, which fixes the latent-pixel grid messages are drawn from.
How many images are used is the core's ``dataset_options`` section
(``max_train_size``, ``max_test_size``).

Up to nip-core 0.1.0 the two-class reduction sat in ``dataset_options``; saved
parameters are migrated (:mod:`nip_plugin_image_classification.migrations`).

The per-agent architecture lives in
:class:`~nip_plugin_image_classification.agent_parameters.ImageClassificationAgentParameters`.

This module imports without torch.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import field
from attrs import validators as v
from nip_core.parameters import SubParameters, parameters_class

__all__ = [
    "BINARIFICATION_METHODS",
    "BinarificationMethod",
    "ImageClassificationParameters",
]

BinarificationMethod = Literal["merge", "select_two", "random"]
"""How a many-class dataset becomes a two-class one."""

BINARIFICATION_METHODS: tuple[str, ...] = ("merge", "select_two", "random")


def _check_selected_classes(instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if value[0] == value[1]:
        raise ValueError(f"{attribute.name} must name two different classes")
    if min(value) < 0:
        raise ValueError(f"{attribute.name} must be non-negative class indices")


@parameters_class
class ImageClassificationParameters(SubParameters):
    """Parameters of the image classification scenario: the data's two classes, and
    the CNN shape every agent shares.

    Each group of building blocks ends with a 2×2 max-pooling, so an image of height
    ``H`` and width ``W`` becomes a grid of ``H // 2**num_block_groups`` by
    ``W // 2**num_block_groups`` latent pixels. A message is one of those latent
    pixels, which is why these two values are the scenario's and not an agent's.

    Parameters
    ----------
    binarification_method : {"merge", "select_two", "random"}
        ``merge``: shuffle the classes (seeded by ``binarification_seed``) and map the
        first half to label 0, the rest to 1. ``select_two``: keep only the images of
        the two ``selected_classes``; the second becomes label 1. ``random``: draw
        every label uniformly at random (seeded), a control with nothing to learn.
    selected_classes : tuple[int, int] | None
        The two classes kept by ``select_two``. ``None`` uses the dataset's default
        (``(3, 5)`` — cat and dog — for CIFAR-10, ``(0, 1)`` otherwise).
    binarification_seed : int | None
        The seed of ``merge``, ``random`` and ``make_balanced``. ``None`` uses the
        dataset's default (2 for SVHN, 0 otherwise).
    make_balanced : bool
        Whether to subsample the larger class (seeded) so both classes are equally
        frequent. The core's size caps (``dataset_options.max_train_size``,
        ``max_test_size``) then keep the first half of the cap from each class.
    num_block_groups : int
        The number of groups of building blocks (for example convolutional layers)
        in each agent's CNN. Each group halves the height and width and doubles the
        number of channels.
    initial_num_channels : int
        The number of channels the first group of building blocks receives.
    """

    binarification_method: BinarificationMethod = "merge"
    selected_classes: tuple[int, int] | None = field(
        default=None, validator=_check_selected_classes
    )
    binarification_seed: int | None = field(
        default=None, validator=v.optional(v.and_(v.instance_of(int), v.ge(0)))
    )
    make_balanced: bool = True
    num_block_groups: int = field(
        default=1, validator=v.and_(v.instance_of(int), v.ge(0))
    )
    initial_num_channels: int = field(
        default=16, validator=v.and_(v.instance_of(int), v.ge(1))
    )
