"""Migrating the original library's ``code_validation`` section, which every dict it
saved holds (whatever the run's scenario)."""

from __future__ import annotations

import pytest
from nip_core.parameters import ParameterMigrationWarning
from nip_core.parameters.migrations import prepare_saved_dict

import nip_plugin_code_validation.plugin as cv_plugin
from nip_plugin_code_validation.migrations import original_to_0_1
from nip_plugin_code_validation.parameters import CodeValidationParameters


def test_the_originals_names_are_renamed_and_its_prompt_version_dropped():
    saved = {
        "scenario": "graph_isomorphism",
        "code_validation": {
            "app_difficulty": "competition",
            "app_solution_number": 2,
            "apps_exclude_flagged": False,
            "system_prompt_version": "v1",
        },
    }
    migrated, changes = original_to_0_1(saved)
    assert migrated["code_validation"] == {
        "apps_difficulty": "competition",
        "apps_solution_number": 2,
        "apps_exclude_flagged": False,
    }
    assert changes == [
        "code_validation.app_difficulty renamed to apps_difficulty",
        "code_validation.app_solution_number renamed to apps_solution_number",
        "code_validation.system_prompt_version 'v1' dropped: this plugin's prompts "
        "are its own (docs/scenarios/code-validation.md), not the original "
        "library's versions",
    ]
    # the input is left as it was
    assert "system_prompt_version" in saved["code_validation"]
    # and the section is valid
    CodeValidationParameters(**migrated["code_validation"])


def test_a_new_name_beside_an_old_one_wins():
    migrated, changes = original_to_0_1(
        {"code_validation": {"app_difficulty": "competition", "apps_difficulty": "x"}}
    )
    assert migrated["code_validation"] == {"apps_difficulty": "x"}
    assert changes == [
        "code_validation.app_difficulty dropped (apps_difficulty is set)"
    ]


def test_no_section_no_change():
    assert original_to_0_1({"scenario": "x"}) == ({"scenario": "x"}, [])


def test_an_original_dict_of_another_scenario_loads_its_section(plugin_manager):
    """The chain: an original-library dict (any scenario) gets the plugin's step."""
    from nip_plugin_code_validation import __version__

    plugin_manager.register(
        cv_plugin,
        name="code_validation",
        distribution="nip-plugin-code-validation",
        version=__version__,
    )
    saved = {
        "_package_version": "1.0.0",
        "scenario": "graph_isomorphism",
        "trainer": "vanilla_ppo",
        "interaction_protocol": "nip",
        "code_validation": {
            "_type": "CodeValidationParameters",
            "apps_difficulty": "interview",
            "apps_solution_number": 0,
            "apps_exclude_flagged": True,
            "system_prompt_version": "v2",
        },
    }
    with pytest.warns(ParameterMigrationWarning, match="system_prompt_version 'v2'"):
        result = prepare_saved_dict(saved, pm=plugin_manager)
    assert result.data["code_validation"] == {
        "apps_difficulty": "interview",
        "apps_solution_number": 0,
        "apps_exclude_flagged": True,
    }


def test_an_original_code_validation_run_loads(code_validation_plugin):
    """A dict as the original wrote for a code validation run (its agent fields,
    its hub id for the dataset) loads, saying what changed."""
    from nip_core.errors import ParameterWarning
    from nip_core.parameters import HyperParameters

    agent = {
        "_type": "CodeValidationAgentParameters",
        "model_provider": "vLLM-OpenAI",
        "model_name": "Qwen/Qwen2.5-0.5B-Instruct",
        "vllm_openai_base_url": "http://localhost:8000/v1",
        "use_dummy_api": False,
        "shared_model_group": None,
        "temperature": 0.7,
        "top_p": None,
        "repetition_penalty": 1.05,
        "fine_tune_from_scratch": True,
        "freeze_agent": False,
        "max_response_words": 150,
        "max_tokens_per_message": None,
        "num_invalid_generation_retries": 20,
    }
    saved = {
        "_type": "HyperParameters",
        "_package_version": "1.0.0",
        "_package_name": "nip",
        "scenario": "code_validation",
        "trainer": "synthetic_text_sft",
        "dataset": "lrhammond/buggy-apps",
        "interaction_protocol": "mnip",
        "agents": {
            "agents_update_repr": "Standard",
            "verifier": dict(agent),
            "prover0": dict(agent),
            "prover1": dict(agent, freeze_agent=True),
        },
        "nip_protocol": {"_type": "NipProtocolParameters", "max_message_rounds": 5},
        "code_validation": {"_type": "CodeValidationParameters"},
    }
    with pytest.warns((ParameterMigrationWarning, ParameterWarning)) as record:
        hp = HyperParameters.from_dict(saved)
    text = "\n".join(str(w.message) for w in record)
    assert hp.dataset == "buggy_apps"
    assert "dataset 'lrhammond/buggy-apps' is called 'buggy_apps'" in text
    assert hp.openai_backend.base_url == "http://localhost:8000/v1"
    assert hp.mnip_protocol.max_message_rounds == 5
    verifier = hp.agents["verifier"]
    assert (verifier.model_name, verifier.temperature) == (
        "Qwen/Qwen2.5-0.5B-Instruct",
        0.7,
    )
    assert verifier.repetition_penalty == 1.05
    assert hp.agents["prover1"].freeze_agent is True
    # the original made 20 attempts in all; here 1 + 19 asked again
    assert verifier.num_invalid_generation_retries == 19
    assert "agents.verifier.model_provider 'vLLM-OpenAI' dropped" in text
    assert "mnip_protocol.max_message_rounds set to 5 from nip_protocol" in text


def test_the_sandbox_limits_of_0_1_0_are_dropped_with_a_note():
    from nip_plugin_code_validation.migrations import sandbox_limits_to_builder

    saved = {
        "code_validation": {
            "apps_difficulty": "interview",
            "sandbox_wall_time": 5.0,
            "sandbox_memory_mb": 512,
        }
    }
    migrated, changes = sandbox_limits_to_builder(saved)
    assert migrated == {"code_validation": {"apps_difficulty": "interview"}}
    assert changes == [
        "code_validation.sandbox_wall_time (5.0) dropped: no run read it; the "
        "sandbox's limits are --sandbox-wall-time of nip datasets generate "
        "code_validation",
        "code_validation.sandbox_memory_mb (512) dropped: no run read it; the "
        "sandbox's limits are --sandbox-memory-mb of nip datasets generate "
        "code_validation",
    ]
    assert "sandbox_wall_time" in saved["code_validation"]  # input untouched
    assert sandbox_limits_to_builder({"scenario": "x"}) == ({"scenario": "x"}, [])


def test_a_dict_of_0_1_0_loads_without_the_sandbox_limits(plugin_manager):
    from nip_plugin_code_validation import __version__

    plugin_manager.register(
        cv_plugin,
        name="code_validation",
        distribution="nip-plugin-code-validation",
        version=__version__,
    )
    saved = {
        "scenario": "graph_isomorphism",
        "code_validation": {
            "apps_difficulty": "competition",
            "sandbox_wall_time": 10.0,
            "sandbox_memory_mb": 1024,
        },
        "_meta": {
            "schema_version": 1,
            "versions": {
                "nip-core": "0.1.0",
                "nip-plugin-code-validation": "0.1.0",
            },
        },
    }
    with pytest.warns(ParameterMigrationWarning, match="sandbox_wall_time"):
        result = prepare_saved_dict(saved, pm=plugin_manager)
    assert result.data["code_validation"] == {"apps_difficulty": "competition"}
    CodeValidationParameters(**result.data["code_validation"])
