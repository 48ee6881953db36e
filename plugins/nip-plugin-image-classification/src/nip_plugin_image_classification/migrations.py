"""Migrations of saved parameter dicts for this plugin's sections and agents."""

from __future__ import annotations

import copy
from typing import Any

SECTION_RENAMES = {"num_conv_groups": "num_block_groups"}
"""Names the original library once used in ``image_classification``."""

AGENT_RENAMES = {"num_convs_per_group": "num_blocks_per_group"}
"""Names the original library once used in image classification agents."""

PRETRAINED_MODEL_NAMES: tuple[str, ...] = ("resnet18",)
"""The pretrained embeddings models the plugin registers
(``register_pretrained_models``), whose hub ids the original library saved."""


def original_to_0_1(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert the original library's image classification names to ours.

    Early versions of the original called the block groups "conv groups"
    (``image_classification.num_conv_groups``, ``agents.*.num_convs_per_group``);
    they are ``num_block_groups`` and ``num_blocks_per_group`` here.

    The original named a pretrained embeddings model by its hub id,
    ``"<hub user>/<model>_<dataset>"`` (``"SamAdamDay/resnet18_cifar10"``); here it
    is the model's name (``"resnet18"``) and the dataset is the run's. An id whose
    dataset is the run's is rewritten; one of another dataset is left for
    validation to refuse (the run would embed its images with another model).
    """
    params = copy.deepcopy(params)
    changes: list[str] = []
    section = params.get("image_classification")
    if isinstance(section, dict):
        for old, new in SECTION_RENAMES.items():
            if old in section:
                section[new] = section.pop(old)
                changes.append(f"image_classification.{old} renamed to {new}")
    if params.get("scenario") == "image_classification":
        options = params.get("dataset_options")
        method = (
            options.get("binarification_method", "merge")
            if isinstance(options, dict)
            else "merge"
        )
        if method in ("merge", "random"):
            changes.append(
                f"binarification_method {method!r}: the seeded class split (and "
                "balancing) is drawn differently from the original library's, so "
                "this is not the original run's two-class task"
            )
    agents = params.get("agents")
    if params.get("scenario") == "image_classification" and isinstance(agents, dict):
        for name, agent in agents.items():
            if not isinstance(agent, dict):
                continue
            for old, new in AGENT_RENAMES.items():
                if old in agent:
                    agent[new] = agent.pop(old)
                    changes.append(f"agents.{name}.{old} renamed to {new}")
            model = agent.get("pretrained_embeddings_model")
            renamed = _model_name(model, params.get("dataset"))
            if renamed is not None:
                agent["pretrained_embeddings_model"] = renamed
                changes.append(
                    f"agents.{name}.pretrained_embeddings_model {model!r} renamed "
                    f"to {renamed!r}"
                )
    return params, changes


def _model_name(hub_id: Any, dataset: Any) -> str | None:
    """``"resnet18"`` for the original's ``"<hub user>/resnet18_<dataset>"`` of
    the run's dataset (a model this plugin provides), else ``None``."""
    if not isinstance(hub_id, str) or not isinstance(dataset, str) or "/" not in hub_id:
        return None
    suffix = f"_{dataset}"
    name = hub_id.rsplit("/", 1)[-1]
    if not name.endswith(suffix):
        return None
    model = name[: -len(suffix)]
    return model if model in PRETRAINED_MODEL_NAMES else None


BINARIFICATION_FIELDS: tuple[str, ...] = (
    "binarification_method",
    "selected_classes",
    "binarification_seed",
    "make_balanced",
)
"""The fields the core's ``dataset_options`` held up to nip-core 0.1.0."""


def binarification_into_own_section(
    params: dict[str, Any],
) -> tuple[dict[str, Any], list[str]]:
    """0.1.0 -> 0.1.1: the two-class reduction moves into ``image_classification``.

    The core's own migration (nip-core 0.1.0 -> 0.1.1, which runs first) hands the
    fields over from ``dataset_options``; a dict that still has them there (saved
    by a core that had already moved on) gives them up the same way.
    """
    from nip_core.parameters.migrations import take_handover

    params = copy.deepcopy(params)
    moved = take_handover(params, "dataset_options")
    options = params.get("dataset_options")
    if isinstance(options, dict):
        for key in BINARIFICATION_FIELDS:
            if key in options:
                moved[key] = options.pop(key)
    if not moved:
        return params, []
    section = params.get("image_classification")
    if not isinstance(section, dict):
        section = params["image_classification"] = {}
    changes = []
    for key, value in moved.items():
        section.setdefault(key, value)
        changes.append(f"dataset_options.{key} moved to image_classification.{key}")
    return params, changes
