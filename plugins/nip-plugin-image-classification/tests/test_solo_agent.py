"""A solo_agent run on digits (two classes) learns to classify the images."""

from __future__ import annotations

import pytest
from nip_core.experiment import run_experiment
from nip_core.parameters import HyperParameters
from nip_core.settings import ExperimentSettings

import nip_plugin_image_classification.plugin as ic_plugin


@pytest.mark.slow
def test_solo_agent_on_digits_reaches_ninety_percent(tmp_path, register_plugin):
    register_plugin(ic_plugin, name="image_classification")
    hyper_params = HyperParameters(
        scenario="image_classification",
        trainer="solo_agent",
        dataset="digits",
        interaction_protocol="solo_verifier",
        seed=11,
        # merge: classes {shuffled first half} against the rest, all ten digits used.
        image_classification={
            "binarification_method": "merge",
            "num_block_groups": 1,
            "initial_num_channels": 8,
        },
        agents={
            "verifier": {
                "num_blocks_per_group": 2,
                "activation_function": "relu",
                "d_decider": 32,
            }
        },
        solo_agent={"num_epochs": 12, "batch_size": 32, "learning_rate": 0.003},
    )
    settings = ExperimentSettings(
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "cache"),
        runs_dir=str(tmp_path / "runs"),
        show_progress=False,
    )
    result = run_experiment(hyper_params, settings)
    test_accuracy = [
        m["verifier.test_accuracy"]
        for m in result.metrics
        if "verifier.test_accuracy" in m
    ]
    assert test_accuracy, result.metrics[-1]
    assert test_accuracy[-1] >= 0.9
