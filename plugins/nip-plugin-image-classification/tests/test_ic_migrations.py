"""Migrating the original library's image classification dicts."""

from __future__ import annotations

import warnings

import pytest
from nip_core.parameters import HyperParameters, ParameterMigrationWarning

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
    assert changes == [
        "image_classification.num_conv_groups renamed to num_block_groups",
        "binarification_method 'merge': the seeded class split (and balancing) is "
        "drawn differently from the original library's, so this is not the "
        "original run's two-class task",
        "agents.verifier.num_convs_per_group renamed to num_blocks_per_group",
    ]
    # select_two keeps the original's classes: nothing to say
    _, changes = original_to_0_1(
        {
            "scenario": "image_classification",
            "dataset_options": {"binarification_method": "select_two"},
        }
    )
    assert changes == []
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
        # (the original refused a random agent under solo_agent too)
        "trainer": "reinforce",
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
                "pretrained_embeddings_model": "SamAdamDay/resnet18_cifar10",
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
    assert hyper_params.agents["verifier"].pretrained_embeddings_model == "resnet18"
    assert hyper_params.agents["prover"].is_random
    assert any("num_conv_groups renamed" in str(w.message) for w in caught)


@pytest.mark.parametrize(
    ("dataset", "saved_model", "model"),
    [
        ("cifar10", "SamAdamDay/resnet18_cifar10", "resnet18"),
        ("fashion_mnist", "SamAdamDay/resnet18_fashion_mnist", "resnet18"),
        # another dataset's model, or a model this plugin lacks: left for
        # validation to refuse
        ("cifar10", "SamAdamDay/resnet18_svhn", "SamAdamDay/resnet18_svhn"),
        (
            "mnist",
            "SamAdamDay/resnet18_fashion_mnist",
            "SamAdamDay/resnet18_fashion_mnist",
        ),
        ("cifar10", "SamAdamDay/vit_cifar10", "SamAdamDay/vit_cifar10"),
        ("cifar10", "resnet18", "resnet18"),
        ("cifar10", None, None),
    ],
)
def test_the_originals_hub_id_of_a_pretrained_model_becomes_its_name(
    dataset, saved_model, model
):
    saved = {
        "scenario": "image_classification",
        "dataset": dataset,
        "agents": {
            "verifier": {"pretrained_embeddings_model": saved_model},
            "prover": {"is_random": True},
        },
    }
    migrated, changes = original_to_0_1(saved)
    verifier = migrated["agents"]["verifier"]
    assert verifier["pretrained_embeddings_model"] == model
    renamed = [c for c in changes if "pretrained_embeddings_model" in c]
    if model != saved_model:
        assert renamed == [
            f"agents.verifier.pretrained_embeddings_model {saved_model!r} renamed "
            f"to {model!r}"
        ]
    else:
        assert renamed == []


def test_the_pretrained_model_names_are_those_registered():
    from nip_plugin_image_classification import plugin
    from nip_plugin_image_classification.migrations import PRETRAINED_MODEL_NAMES

    registered = tuple(spec.name for spec in plugin.register_pretrained_models())
    assert registered == PRETRAINED_MODEL_NAMES


def _saved_by_0_1_0(**dataset_options):
    """A dict as nip-core 0.1.0 with this plugin 0.1.0 saved it."""
    return {
        "scenario": "image_classification",
        "trainer": "solo_agent",
        "dataset": "digits",
        "image_classification": {"num_block_groups": 1, "initial_num_channels": 8},
        "dataset_options": {
            "binarification_method": "merge",
            "selected_classes": None,
            "binarification_seed": None,
            "make_balanced": True,
            "max_train_size": 64,
            "max_test_size": None,
            **dataset_options,
        },
        "agents": {"_default": {"num_blocks_per_group": 1}},
        "_meta": {
            "schema_version": 1,
            "versions": {
                "nip-core": "0.1.0",
                "nip-plugin-image-classification": "0.1.0",
            },
            "sources": {"scenario": "nip-plugin-image-classification"},
        },
    }


def test_the_two_class_reduction_moves_into_the_plugins_section(
    ic_in_global_manager,
):
    saved = _saved_by_0_1_0(binarification_method="select_two", selected_classes=[3, 5])
    with pytest.warns(ParameterMigrationWarning) as caught:
        hyper_params = HyperParameters.from_dict(saved)
    section = hyper_params.image_classification
    assert section.binarification_method == "select_two"
    assert section.selected_classes == (3, 5)
    assert section.make_balanced is True
    assert section.num_block_groups == 1
    # the size caps stay in the core's section
    assert hyper_params.dataset_options.max_train_size == 64
    assert not hasattr(hyper_params.dataset_options, "binarification_method")
    text = str(caught[0].message)
    assert "moved to image_classification.binarification_method" in text
    # and the migrated parameters save and load without another migration
    again = hyper_params.to_dict()
    assert "binarification_method" not in again["dataset_options"]
    assert HyperParameters.from_dict(again) == hyper_params
