"""The ``dataset_options`` section: how a scenario's labelled data become its dataset.

A core section, as in the original library: every scenario can cap its training and
test sets (``max_train_size``, ``max_test_size``; the core's
:class:`~nip_core.scenario.data.TensorDictDataset` applies ``max_train_size``), and
scenarios whose raw data have many classes (image classification) read how to reduce
them to two (``binarification_method``, ``selected_classes``,
``binarification_seed``, ``make_balanced``).

This module imports without torch.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import field
from attrs import validators as v

from nip_core.parameters.base import SubParameters, parameters_class

__all__ = ["BINARIFICATION_METHODS", "BinarificationMethod", "DatasetParameters"]

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
class DatasetParameters(SubParameters):
    """How a labelled data set is turned into the two-class problem agents solve,
    and how much of it is used.

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
