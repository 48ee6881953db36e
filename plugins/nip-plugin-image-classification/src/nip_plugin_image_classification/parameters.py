"""Parameter sections of the image classification scenario.

Two sections join the hyper-parameter tree when this plugin is installed:

- ``image_classification`` (:class:`ImageClassificationParameters`): the shape of the
  CNN every agent shares, which fixes the latent-pixel grid messages are drawn from;
- ``dataset_options`` (:class:`DatasetParameters`): how a labelled image set is
  reduced to a two-class problem and how large it is.

The per-agent architecture lives in
:class:`~nip_plugin_image_classification.agent_parameters.ImageClassificationAgentParameters`.

This module imports without torch.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import field
from attrs import validators as v
from nip_core.parameters import SubParameters, parameters_class

BinarificationMethod = Literal["merge", "select_two", "random"]
"""How a many-class dataset becomes a two-class one."""

BINARIFICATION_METHODS: tuple[str, ...] = ("merge", "select_two", "random")


def _check_selected_classes(instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if len(value) != 2:
        raise ValueError(
            f"{attribute.name} must name exactly two classes, got {len(value)}"
        )
    if not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        raise TypeError(f"{attribute.name} must be two integer class indices")
    if value[0] == value[1]:
        raise ValueError(f"{attribute.name} must name two different classes")
    if min(value) < 0:
        raise ValueError(f"{attribute.name} must be non-negative class indices")


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


@parameters_class
class DatasetParameters(SubParameters):
    """How a labelled image set is turned into the two-class problem agents solve.

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
        frequent.
    max_train_size : int | None
        Keep at most this many training images (after binarification and
        balancing). ``None`` keeps them all.
    max_test_size : int | None
        Keep at most this many test images. ``None`` keeps them all.
    """

    binarification_method: BinarificationMethod = field(
        default="merge", validator=v.in_(BINARIFICATION_METHODS)
    )
    selected_classes: tuple[int, int] | None = field(
        default=None, validator=_check_selected_classes
    )
    binarification_seed: int | None = field(
        default=None, validator=v.optional(v.instance_of(int))
    )
    make_balanced: bool = field(default=True, validator=v.instance_of(bool))
    max_train_size: int | None = field(
        default=None, validator=v.optional(v.and_(v.instance_of(int), v.ge(1)))
    )
    max_test_size: int | None = field(
        default=None, validator=v.optional(v.and_(v.instance_of(int), v.ge(1)))
    )
