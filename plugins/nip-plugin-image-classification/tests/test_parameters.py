"""Parameter sections and agent parameters: original defaults and validation."""

from __future__ import annotations

import pytest
from nip_core.errors import NipConfigError

from nip_plugin_image_classification.agent_parameters import (
    ImageClassificationAgentParameters,
)
from nip_plugin_image_classification.parameters import ImageClassificationParameters


def test_defaults_are_the_original_librarys():
    options = ImageClassificationParameters()
    assert (options.num_block_groups, options.initial_num_channels) == (1, 16)
    assert options.binarification_method == "merge"
    assert options.selected_classes is None
    assert options.binarification_seed is None
    assert options.make_balanced is True
    agent = ImageClassificationAgentParameters()
    assert (agent.activation_function, agent.building_block_type) == ("tanh", "conv2d")
    assert (agent.num_blocks_per_group, agent.kernel_size, agent.stride) == (2, 3, 1)
    assert agent.pretrained_embeddings_model is None
    assert agent.pretrained_embedding_channels == 64
    assert (agent.d_latent_pixel_selector, agent.num_latent_pixel_selector_layers) == (
        16,
        2,
    )
    assert (agent.d_decider, agent.num_decider_layers) == (16, 2)
    assert (agent.d_value, agent.num_value_layers) == (16, 2)
    assert agent.include_round_in_decider and agent.include_round_in_value


def test_selected_classes_accepts_a_list_and_checks_it():
    parameters = ImageClassificationParameters(selected_classes=[2, 7])
    assert parameters.selected_classes == (2, 7)
    with pytest.raises(NipConfigError, match="selected_classes"):
        ImageClassificationParameters(selected_classes=(4, 4))
    with pytest.raises(NipConfigError, match="selected_classes"):
        ImageClassificationParameters(selected_classes=(1, 2, 3))


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(NipConfigError) as info:
        ImageClassificationParameters(
            binarification_method="halves", num_block_groups=-1
        )
    paths = {problem.path for problem in info.value.problems}
    assert {"binarification_method", "num_block_groups"} <= paths


def test_agent_parameters_refuse_unknown_block_and_strides():
    with pytest.raises(NipConfigError) as info:
        ImageClassificationAgentParameters(building_block_type="dense", stride=2)
    message = str(info.value)
    assert "residual_basic" in message
    assert "latent-pixel grid" in message


def test_round_trip_through_a_dict():
    agent = ImageClassificationAgentParameters(
        building_block_type="residual_basic", num_blocks_per_group=3
    )
    assert ImageClassificationAgentParameters.from_dict(agent.to_dict()) == agent
    options = ImageClassificationParameters(
        binarification_method="select_two", selected_classes=(3, 5)
    )
    assert ImageClassificationParameters.from_dict(options.to_dict()) == options


def test_the_cores_old_binarification_keys_point_to_this_section():
    from nip_core.parameters import HyperParameters

    with pytest.raises(NipConfigError) as info:
        HyperParameters(
            "image_classification",
            "vanilla_ppo",
            "digits",
            dataset_options={"selected_classes": [3, 5]},
        )
    (problem,) = info.value.problems
    assert problem.path == "dataset_options.selected_classes"
    assert problem.message.endswith(
        "; set image_classification.selected_classes instead"
    )
