"""The ``dataset_options`` section: how much of a scenario's data is used.

A core section, as in the original library: every scenario can cap its training and
test sets (``max_train_size``, ``max_test_size``; the core's
:class:`~nip_core.scenario.data.TensorDictDataset` applies ``max_train_size``).

How a many-class data set becomes a two-class one (the original library's
``dataset_options.binarification_method`` and friends) concerns image
classification only, and lives in that plugin's own section since nip-core 0.1.1;
the core's migration hands saved values over to it.

This module imports without torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from attrs import field
from attrs import validators as v

from nip_core.parameters.base import SubParameters, parameters_class
from nip_core.parameters.base_run import base_run_preserve

__all__ = ["MOVED_TO_SCENARIOS", "DatasetParameters"]

MOVED_TO_SCENARIOS: tuple[str, ...] = (
    "binarification_method",
    "selected_classes",
    "binarification_seed",
    "make_balanced",
)
"""Fields ``dataset_options`` held up to nip-core 0.1.0 that scenario plugins own
now (the migration to 0.1.1 hands them over; see
:data:`nip_core.parameters.migrations.HANDOVER_KEY`)."""


@parameters_class
class DatasetParameters(SubParameters):
    """How much of a scenario's data set is used.

    Parameters
    ----------
    max_train_size : int | None
        Keep at most this many training datapoints (after any processing the
        scenario applies). ``None`` keeps them all.
    max_test_size : int | None
        Keep at most this many test datapoints. ``None`` keeps them all. Kept when
        re-running the tests of a base run.
    """

    moved_keys: ClassVar[Mapping[str, str]] = {
        key: "nip-core 0.1.1 moved it into the scenario's own section"
        for key in MOVED_TO_SCENARIOS
    }

    max_train_size: int | None = field(default=None, validator=v.optional(v.ge(1)))
    max_test_size: int | None = field(
        default=None,
        validator=v.optional(v.ge(1)),
        metadata=base_run_preserve("rerun_tests"),
    )
