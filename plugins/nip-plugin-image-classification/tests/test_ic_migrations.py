"""Migrating the original library's image classification dicts."""

from __future__ import annotations

import warnings

from nip_core.parameters import HyperParameters

from nip_plugin_image_classification.migrations import original_to_0_1


def test_conv_group_names_are_renamed():
    saved = {
        "scenario": "image_classification",
        "image_classification": {"num_conv_groups": 2, "initial_num_channels": 4},
        "agents": {
            "verifier": {"num_convs_per_group": 3, "d_decider": 8},
            "prover": {"is_random": True},
        },
    }
    migrated, changes = original_to_0_1(saved)
    assert migrated["image_classification"] == {
        "num_block_groups": 2,
        "initial_num_channels": 4,
    }
    assert migrated["agents"]["verifier"] == {"num_blocks_per_group": 3, "d_decider": 8}
    assert migrated["agents"]["prover"] == {"is_random": True}
    assert len(changes) == 2
    # The input is left as it was.
    assert "num_conv_groups" in saved["image_classification"]


def test_other_scenarios_agents_are_untouched():
    saved = {
        "scenario": "graph_isomorphism",
        "agents": {"verifier": {"num_convs_per_group": 3}},
    }
    migrated, changes = original_to_0_1(saved)
    assert migrated == saved
    assert changes == []


def test_an_original_library_dict_loads(ic_in_global_manager):
    saved = {
        "_package_version": "1.0.0",
        "scenario": "image_classification",
        "trainer": "solo_agent",
        "dataset": "cifar10",
        "interaction_protocol": "nip",
        "image_classification": {"num_conv_groups": 2, "initial_num_channels": 16},
        "dataset_options": {
            "binarification_method": "select_two",
            "selected_classes": None,
            "binarification_seed": None,
            "make_balanced": True,
            "max_train_size": None,
            "max_test_size": None,
        },
        "agents": {
            "verifier": {
                "num_convs_per_group": 1,
                "agent_lr_factor": None,
                "pretrained_embeddings_model": None,
                "is_random": False,
            },
            "prover": {"is_random": True},
            "agents_update_repr": "Standard",
        },
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hyper_params = HyperParameters.from_dict(saved)
    assert hyper_params.image_classification.num_block_groups == 2
    assert hyper_params.agents["verifier"].num_blocks_per_group == 1
    assert hyper_params.agents["prover"].is_random
    assert any("num_conv_groups renamed" in str(w.message) for w in caught)
