"""Parameter sections and agent parameters: original defaults and validation."""

from __future__ import annotations

import pytest
from nip_core.errors import NipConfigError

from nip_plugin_image_classification.agent_parameters import (
    ImageClassificationAgentParameters,
)
from nip_plugin_image_classification.parameters import (
    DatasetParameters,
    ImageClassificationParameters,
)


def test_defaults_are_the_original_librarys():
    assert ImageClassificationParameters() == ImageClassificationParameters(
        num_block_groups=1, initial_num_channels=16
    )
    options = DatasetParameters()
    assert options.binarification_method == "merge"
    assert options.selected_classes is None
    assert options.binarification_seed is None
    assert options.make_balanced is True
    assert options.max_train_size is None and options.max_test_size is None
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
    assert DatasetParameters(selected_classes=[2, 7]).selected_classes == (2, 7)
    with pytest.raises(NipConfigError, match="selected_classes"):
        DatasetParameters(selected_classes=(4, 4))
    with pytest.raises(NipConfigError, match="selected_classes"):
        DatasetParameters(selected_classes=(1, 2, 3))


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(NipConfigError) as info:
        DatasetParameters(binarification_method="halves", max_train_size=0)
    paths = {problem.path for problem in info.value.problems}
    assert {"binarification_method", "max_train_size"} <= paths


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
    options = DatasetParameters(
        binarification_method="select_two", selected_classes=(3, 5)
    )
    assert DatasetParameters.from_dict(options.to_dict()) == options
