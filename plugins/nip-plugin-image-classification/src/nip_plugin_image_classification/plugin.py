"""Hook implementations of the image classification plugin.

nip imports this module (the ``nip_core.plugins`` entry point
``image_classification``) whenever it loads plugins, including for ``nip --help`` and
``nip plugins``, so it stays light: hook implementations only, no torch. The heavy
classes are given as ``"module:Class"`` references that nip resolves when a run needs
them.
"""

from __future__ import annotations

from pathlib import Path

from nip_core import hookimpl
from nip_core.records import (
    AgentPartSpec,
    ConfigDirSpec,
    EpisodeRendererSpec,
    MigrationSpec,
    ParameterSectionSpec,
    PretrainedModelSpec,
    ScenarioSpec,
)

SCENARIO = "image_classification"
"""The scenario's registry key."""

PACKAGE = "nip_plugin_image_classification"

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""The plugin's Hydra config directory (shipped as package data)."""

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion_mnist",
    "kmnist",
    "cifar10",
    "cifar100",
    "svhn",
)
"""The datasets the scenario resolves (``digits`` offline; the rest downloaded)."""

AGENT_PARTS: dict[str, str] = {
    "body": f"{PACKAGE}.agents:ImageClassificationAgentBody",
    "policy_head": f"{PACKAGE}.agents:ImageClassificationAgentPolicyHead",
    "value_head": f"{PACKAGE}.agents:ImageClassificationAgentValueHead",
    "solo_head": f"{PACKAGE}.agents:ImageClassificationSoloAgentHead",
    # The core's uniform policy reads the message-space shape from the valid-message
    # mask, so it serves this scenario as it is.
    "random_policy_head": "nip_core.scenario.agents:RandomAgentPolicyHead",
    "constant_value_head": "nip_core.scenario.agents:ConstantAgentValueHead",
}
"""Part role to class (the body serves random agents too, with zero outputs)."""


@hookimpl
def register_scenarios() -> list[ScenarioSpec]:
    """The ``image_classification`` scenario."""
    return [
        ScenarioSpec(
            name=SCENARIO,
            # its splits are fixed: the core's test_size is not read
            unread_parameters=("test_size",),
            data_world="tensor",
            agent_parameters_class=(
                f"{PACKAGE}.agent_parameters:ImageClassificationAgentParameters"
            ),
            dataset_class=f"{PACKAGE}.data:ImageClassificationDataset",
            environment_class=f"{PACKAGE}.environment:ImageClassificationEnvironment",
            default_dataset="digits",
            datasets=DATASETS,
            # the named sets only: no path to the user's own images
            own_datasets=False,
            config_problems=f"{PACKAGE}.checks:config_problems",
            description=(
                "Two-class image classification; messages are latent pixels of a CNN."
            ),
        )
    ]


@hookimpl
def register_agent_parts() -> list[AgentPartSpec]:
    """Bodies and heads of image classification agents."""
    return [
        AgentPartSpec(scenario=SCENARIO, part=part, part_class=ref)
        for part, ref in AGENT_PARTS.items()
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    """The ``image_classification`` section: the data's two classes and the CNN
    shape (the size caps are the core's ``dataset_options``)."""
    from nip_plugin_image_classification.parameters import (
        ImageClassificationParameters,
    )

    return [
        ParameterSectionSpec(
            name="image_classification",
            parameters_class=ImageClassificationParameters,
            description="Two-class reduction of the images, and the CNN shape "
            "shared by image classification agents.",
        ),
    ]


@hookimpl
def register_pretrained_models() -> list[PretrainedModelSpec]:
    """``resnet18``: timm's ResNet-18 features of the images (needs ``timm``)."""
    return [
        PretrainedModelSpec(
            name="resnet18",
            model_class=f"{PACKAGE}.pretrained:Resnet18PretrainedModel",
            scenario=SCENARIO,
            description=(
                "ResNet-18 (timm) trained on the run's dataset; stride-4 feature maps."
            ),
        )
    ]


@hookimpl
def register_episode_renderers() -> list[EpisodeRendererSpec]:
    """Draw an episode: the image with the latent pixels each agent sent."""
    return [
        EpisodeRendererSpec(
            scenario=SCENARIO,
            renderer=f"{PACKAGE}.render:render_episode",
            description="The image with each agent's messaged latent pixels outlined.",
        )
    ]


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    """Put the plugin's experiment configs on ``nip run``'s search path."""
    return [ConfigDirSpec(name=SCENARIO, path=str(CONFIG_DIR))]


@hookimpl
def register_parameter_migrations() -> list[MigrationSpec]:
    """Dicts of the original library (its early "conv group" names), and of 0.1.0
    (the two-class reduction was in the core's ``dataset_options``)."""
    return [
        MigrationSpec(
            component="nip-plugin-image-classification",
            from_version="0",
            to_version="0.1.0",
            migrate=f"{PACKAGE}.migrations:original_to_0_1",
            description="num_conv_groups / num_convs_per_group renamed.",
        ),
        MigrationSpec(
            component="nip-plugin-image-classification",
            from_version="0.1.0",
            to_version="0.1.1",
            migrate=f"{PACKAGE}.migrations:binarification_into_own_section",
            description="dataset_options.binarification_* into image_classification.",
        ),
    ]
