"""The scenario's own check of settings that only fit together for its dataset.

Registered as the ``image_classification`` scenario's ``config_problems``: ``nip
config show`` / ``validate``, a sweep's check of every job and ``nip run`` ask it
before anything is written, so a setting that the chosen dataset cannot satisfy
costs no run directory and no dataset build (or download). Everything here comes
from the table of :mod:`nip_plugin_image_classification.datasets` (image shapes,
classes) and the registered pretrained models: no dataset is read, no torch is
imported.

The run-time checks (:func:`~nip_plugin_image_classification.environment.
latent_grid_shape`, :func:`~nip_plugin_image_classification.binarification.binarify`,
the dataset's split check) stay as a backstop for code that builds a run without
validating it.
"""

from __future__ import annotations

from typing import Any

from nip_core.errors import ConfigProblem

from nip_plugin_image_classification.datasets import (
    IMAGE_DATASETS,
    ImageDatasetInfo,
)

SCENARIO = "image_classification"


def largest_num_block_groups(info: ImageDatasetInfo) -> int:
    """The most groups of building blocks (each halving the image) that leave a
    latent grid of at least one pixel for the dataset's images."""
    side = min(info.height, info.width)
    groups = 0
    while side // 2 >= 1:
        side //= 2
        groups += 1
    return groups


def _section(hyper_params: Any) -> Any:
    from nip_plugin_image_classification.parameters import (
        ImageClassificationParameters,
    )

    section = getattr(hyper_params, "image_classification", None)
    return section if section is not None else ImageClassificationParameters()


def config_problems(hyper_params: Any) -> list[ConfigProblem]:
    """What stops an image classification run with ``hyper_params`` that only the
    dataset tells: ``num_block_groups`` pooling its images to nothing,
    ``selected_classes`` outside its classes, a ``test_dataset_split`` it does not
    have, an unknown ``pretrained_embeddings_model``. Paths are dotted from the root."""
    problems: list[ConfigProblem] = []
    problems.extend(_pretrained_model_problems(hyper_params))
    name = getattr(hyper_params, "dataset", None)
    info = IMAGE_DATASETS.get(name) if isinstance(name, str) else None
    if info is None:
        # validation refused every other name already (own_datasets=False)
        return problems
    section = _section(hyper_params)

    groups = section.num_block_groups
    largest = largest_num_block_groups(info)
    if isinstance(groups, int) and groups > largest:
        problems.append(
            ConfigProblem(
                "image_classification.num_block_groups",
                f"pools the {info.height}×{info.width} images of {info.name!r} to an "
                f"empty grid; at most {largest} for this dataset",
                groups,
            )
        )

    selected = section.selected_classes
    if section.binarification_method == "select_two" and selected is not None:
        if max(selected) >= info.num_classes:
            problems.append(
                ConfigProblem(
                    "image_classification.selected_classes",
                    f"names a class outside 0..{info.num_classes - 1}, the classes "
                    f"of {info.name!r}",
                    tuple(selected),
                )
            )

    if getattr(hyper_params, "test_dataset_split", "test") == "validation":
        problems.append(
            ConfigProblem(
                "test_dataset_split",
                f"image dataset {info.name!r} has no validation split",
                "validation",
                ("test",),
            )
        )
    return problems


def _pretrained_model_problems(hyper_params: Any) -> list[ConfigProblem]:
    agents = getattr(hyper_params, "agents", None)
    if not agents:
        return []
    from nip_core.plugins import get_plugin_manager

    registry = get_plugin_manager().pretrained_models
    known = tuple(
        sorted(
            name for name, spec in registry.items() if spec.scenario in (None, SCENARIO)
        )
    )
    problems = []
    for agent_name, agent in agents.items():
        model = getattr(agent, "pretrained_embeddings_model", None)
        if model is None or model in known:
            continue
        message = "unknown pretrained model"
        # the original library named models "<hub user>/<model>_<dataset>"
        stem = str(model).rsplit("/", 1)[-1].rsplit("_", 1)[0]
        if stem != model and stem in known:
            message += (
                f"; did you mean {stem!r}? (the original library's "
                "'<hub user>/<model>_<dataset>' name; here the dataset is the run's)"
            )
        problems.append(
            ConfigProblem(
                f"agents.{agent_name}.pretrained_embeddings_model",
                message,
                model,
                known,
            )
        )
    return problems
