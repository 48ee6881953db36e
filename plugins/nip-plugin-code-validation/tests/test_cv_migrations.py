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
