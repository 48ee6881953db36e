"""Saved dicts: ``_meta``, migration chains, and dicts of the original library."""

from __future__ import annotations

import copy
import warnings

import pytest
from toy_plugin import DISTRIBUTION

from nip_core import hookimpl
from nip_core.errors import NipConfigError
from nip_core.parameters import (
    AlternatingPeriodicUpdateSchedule,
    ContiguousPeriodicUpdateSchedule,
    HyperParameters,
    LrFactors,
    ParameterMigrationWarning,
    RandomAgentParameters,
    version_key,
)
from nip_core.parameters.migrations import (
    is_legacy_dict,
    legacy_0_1_to_1_0,
    legacy_1_0_to_core,
)
from nip_core.records import MigrationSpec


def saved(**changes) -> dict:
    hp = HyperParameters("toy", "toy_trainer", interaction_protocol="toy_protocol")
    data = hp.to_dict()
    data.update(changes)
    return data


def test_meta_records_schema_versions_and_sources(toy):
    meta = saved()["_meta"]
    assert meta["schema_version"] == 1
    assert meta["versions"] == {"nip-core": "0.1.0", DISTRIBUTION: "1.2.0"}
    sources = meta["sources"]
    assert sources["scenario"] == DISTRIBUTION
    assert sources["trainer"] == DISTRIBUTION
    assert sources["interaction_protocol"] == DISTRIBUTION
    assert sources["sections.toy_section"] == DISTRIBUTION
    assert sources["sections.rl"] == "nip-core"
    assert sources["sections.protocol_common"] == "nip-core"


def test_meta_versions_name_only_the_plugins_used(toy):
    hp = HyperParameters("toy", "reinforce", interaction_protocol="nip")
    meta = hp.to_dict()["_meta"]
    # the toy plugin still provides the scenario and two sections
    assert meta["versions"] == {"nip-core": "0.1.0", DISTRIBUTION: "1.2.0"}
    assert meta["sources"]["trainer"] == "nip-core"
    assert meta["sources"]["interaction_protocol"] == "nip-core"


def test_current_dict_loads_without_warning(toy):
    data = saved()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HyperParameters.from_dict(data)


def test_from_dict_does_not_modify_its_argument(toy):
    data = saved()
    data["_meta"]["versions"][DISTRIBUTION] = "1.0"
    data["toy_section"]["num_steps"] = data["toy_section"].pop("steps")
    before = copy.deepcopy(data)
    with pytest.warns(ParameterMigrationWarning):
        HyperParameters.from_dict(data)
    assert data == before


def test_plugin_migrations_chain_from_the_saved_version(toy):
    data = saved()
    data["_meta"]["versions"][DISTRIBUTION] = "1.0.3"
    section = data["toy_section"]
    section["num_steps"] = section.pop("steps") + 4
    section["rate"] = 0.25
    with pytest.warns(ParameterMigrationWarning) as record:
        hp = HyperParameters.from_dict(data)
    assert (hp.toy_section.steps, hp.toy_section.rate) == (7, 0.5)
    message = str(record[0].message)
    assert message.index("num_steps renamed") < message.index("rate doubled")
    assert f"[{DISTRIBUTION} 1.1]" in message and f"[{DISTRIBUTION} 1.2]" in message


def test_chain_starts_at_the_saved_version(toy):
    data = saved()
    data["_meta"]["versions"][DISTRIBUTION] = "1.1"
    data["toy_section"]["rate"] = 0.25
    with pytest.warns(ParameterMigrationWarning) as record:
        hp = HyperParameters.from_dict(data)
    assert hp.toy_section.rate == 0.5
    assert "num_steps" not in str(record[0].message)


def test_dict_from_a_newer_plugin_warns(toy):
    data = saved()
    data["_meta"]["versions"][DISTRIBUTION] = "2.0"
    with pytest.warns(
        ParameterMigrationWarning, match="newer than the installed 1.2.0"
    ):
        HyperParameters.from_dict(data)


def test_overlapping_migrations_are_an_error(toy, register_plugin):
    class Overlap:
        @hookimpl
        def register_parameter_migrations(self):
            return [
                MigrationSpec(
                    component=DISTRIBUTION,
                    from_version="1.0.1",
                    to_version="1.2",
                    migrate=lambda params: (params, []),
                )
            ]

    register_plugin(Overlap(), name="overlap")
    data = saved()
    data["_meta"]["versions"][DISTRIBUTION] = "1.0.5"
    with pytest.raises(NipConfigError, match="several migrations of nip-plugin-toy"):
        HyperParameters.from_dict(data)


def test_newer_schema_and_malformed_meta_are_reported(toy):
    data = saved()
    data["_meta"] = {"schema_version": 2, "versions": {"nip-core": 1}, "extra": 0}
    with pytest.raises(NipConfigError) as info:
        HyperParameters.from_dict(data)
    assert [p.path for p in info.value.problems] == [
        "_meta.schema_version",
        "_meta.extra",
        "_meta.versions",
    ]
    assert "upgrade nip-core" in info.value.problems[0].message


def test_unknown_section_names_the_plugin_that_saved_it(toy):
    data = saved(ppo={"num_epochs": 3})
    data["_meta"]["sources"]["sections.ppo"] = "nip-plugin-ppo"
    data["trainer"] = "vanilla_ppo"
    data["_meta"]["sources"]["trainer"] = "nip-plugin-ppo"
    with pytest.raises(NipConfigError) as info:
        HyperParameters.from_dict(data)
    problems = {p.path: p for p in info.value.problems}
    assert "came from 'nip-plugin-ppo'" in problems["ppo"].message
    assert "install that plugin" in problems["ppo"].message
    assert "it came from 'nip-plugin-ppo'" in problems["trainer"].message


def test_missing_required_keys(toy):
    with pytest.raises(NipConfigError) as info:
        HyperParameters.from_dict({"dataset": "toy_small"})
    assert [p.path for p in info.value.problems] == ["scenario", "trainer"]


def test_version_key():
    assert version_key("1.2") == version_key("1.2.0") == (1, 2)
    assert version_key("0.1.0.dev3") == (0, 1)
    assert version_key(None) == version_key("0") == ()
    assert version_key("1.10") > version_key("1.9")
    assert version_key("v2.0.1") == (2, 0, 1)


# --------------------------------------------------------------------------------------
# The original library
# --------------------------------------------------------------------------------------


def original_dict(**changes) -> dict:
    """A dict like the original library's ``to_dict(include_package_meta=True)``."""
    data = {
        "_type": "HyperParameters",
        "_package_version": "0.1.2",
        "_package_name": "nip",
        "scenario": "toy",
        "trainer": "toy_trainer",
        "dataset": "toy_small",
        "interaction_protocol": "pvg",
        "seed": 11,
        "pvg_protocol": {
            "_type": "PvgProtocolParameters",
            "max_message_rounds": 6,
            "min_message_rounds": 2,
        },
        "rl": {"_type": "RlTrainerParameters", "lr": 0.01, "body_lr_factor": None},
        "spg": {"_type": "SpgParameters", "sos_a_param": 0.3, "sos_b_param": 0.2},
        "base_run": {
            "_type": "BaseRunParameters",
            "base_run_type": "none",
            "run_id": None,
            "wandb_project": "p",
            "wandb_entity": "e",
            "rerun_tests_force_test_during_training_state": True,
        },
        "agents": {
            "agents_update_repr": "Standard",
            "verifier": {
                "_type": "ToyAgentParameters",
                "is_random": False,
                "agent_lr_factor": None,
                "body_lr_factor": {"_type": "LrFactors", "actor": 0.5, "critic": 1.0},
                "update_schedule": {
                    "_type": "ContiguousPeriodicUpdateSchedule",
                    "ContiguousPeriodicUpdateSchedule": {
                        "period": 4,
                        "start": 0,
                        "stop": 2,
                    },
                },
                "d_hidden": 3,
            },
            "prover": {
                "_type": "RandomAgentParameters",
                "is_random": True,
                "update_schedule": (
                    "AlternatingPeriodicUpdateSchedule(period=4, "
                    "first_agent_num_rounds=2, first_agent=False)"
                ),
            },
        },
    }
    data.update(changes)
    return data


def test_original_library_dict_is_converted_with_a_warning(toy):
    with pytest.warns(ParameterMigrationWarning) as record:
        hp = HyperParameters.from_dict(original_dict())
    assert hp.interaction_protocol == "nip"
    assert (hp.nip_protocol.min_message_rounds, hp.nip_protocol.max_message_rounds) == (
        2,
        6,
    )
    assert hp.seed == 11
    assert hp.rl.lr == 0.01
    assert hp.rl.body_lr_factor_override is None
    assert (hp.base_run.wandb_project, hp.base_run.wandb_entity) == ("p", "e")
    verifier = hp.agents["verifier"]
    assert verifier.d_hidden == 3
    assert verifier.agent_lr_factor == LrFactors()
    assert verifier.body_lr_factor == LrFactors(actor=0.5, critic=1.0)
    assert verifier.update_schedule == ContiguousPeriodicUpdateSchedule(
        period=4, start=0, stop=2
    )
    prover = hp.agents["prover"]
    assert type(prover) is RandomAgentParameters
    assert prover.update_schedule == AlternatingPeriodicUpdateSchedule(
        period=4, first_agent_num_rounds=2, first_agent=False
    )
    message = str(record[0].message)
    for change in (
        "original nip library 0.1.2",
        "interaction_protocol 'pvg' renamed to 'nip'",
        "'pvg_protocol' renamed to 'nip_protocol'",
        "spg.sos_a_param renamed to spg.sos_scaling_factor",
        "rl.body_lr_factor renamed to rl.body_lr_factor_override",
        "section 'spg' dropped: no installed plugin provides it",
    ):
        assert change in message


def test_converted_original_dict_round_trips(toy):
    with pytest.warns(ParameterMigrationWarning):
        hp = HyperParameters.from_dict(original_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert HyperParameters.from_dict(hp.to_dict()) == hp


def test_unversioned_original_dict_says_so(toy):
    data = original_dict()
    del data["_package_version"]
    with pytest.warns(ParameterMigrationWarning, match="has no package version"):
        HyperParameters.from_dict(data)


def test_original_dicts_are_recognised():
    assert is_legacy_dict({"_package_version": "1.0.0"})
    assert is_legacy_dict({"interaction_protocol": "pvg"})
    assert is_legacy_dict({"agents": {"agents_update_repr": "Standard"}})
    assert not is_legacy_dict({"scenario": "x", "agents": {"_default": {}}})


def test_legacy_renames_exactly():
    params, messages = legacy_0_1_to_1_0(
        {
            "decision_problem": "abstract_decision_problem",
            "spg": {"sos_b_param": 0.2, "variant": "sos"},
        }
    )
    assert params == {
        "spg": {"sos_threshold_factor": 0.2, "variant": "sos"},
        "interaction_protocol": "adp",
    }
    assert len(messages) == 2
    params, _ = legacy_0_1_to_1_0({"interaction_protocol": "abstract_decision_problem"})
    assert params == {"interaction_protocol": "adp"}


def test_legacy_layout_conversion_exactly():
    params, _ = legacy_1_0_to_core(
        {
            "_type": "HyperParameters",
            "_package_name": "nip",
            "nip_protocol": {"_type": "NipProtocolParameters", "max_message_rounds": 4},
            "base_run": {"base_run_type": "parameters", "run_id": "abc"},
            "agents": {
                "agents_update_repr": "Standard",
                "verifier": {
                    "_type": "X",
                    "update_schedule": "ConstantUpdateSchedule()",
                    "gnn_lr_factor": None,
                    "load_checkpoint_and_parameters": True,
                },
            },
        }
    )
    assert params == {
        "nip_protocol": {"max_message_rounds": 4},
        "base_run": {"base_run_type": "parameters", "run_id": "abc", "source": "wandb"},
        "agents": {
            "verifier": {
                "update_schedule": {"_type": "ConstantUpdateSchedule"},
                "load_checkpoint_and_parameters": True,
                "checkpoint_source": "wandb",
            }
        },
    }
