"""Saved dicts: ``_meta``, migration chains, and dicts of the original library."""

from __future__ import annotations

import copy
import warnings

import pytest
from toy_plugin import DISTRIBUTION

import nip_core
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
    assert meta["versions"] == {"nip-core": nip_core.__version__, DISTRIBUTION: "1.2.0"}
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
    assert meta["versions"] == {"nip-core": nip_core.__version__, DISTRIBUTION: "1.2.0"}
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
    assert f"[{DISTRIBUTION} 1.0 -> 1.1]" in message
    assert f"[{DISTRIBUTION} 1.1 -> 1.2]" in message


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
    assert (
        "unknown section or parameter; the config names 'nip-plugin-ppo' as the "
        "section's source: "
    ) in problems["ppo"].message
    # what became of the plugin here: installed, but this plugin manager (the
    # toy's) did not load it
    assert "its plugin was not loaded" in problems["ppo"].message
    assert "the config names 'nip-plugin-ppo' as its source" in (
        problems["trainer"].message
    )
    # the plugin's own name is no misspelling of another trainer
    assert "did you mean" not in problems["trainer"].message

    data["_meta"]["sources"]["trainer"] = "nip-plugin-not-a-real-one"
    with pytest.raises(NipConfigError) as info:
        HyperParameters.from_dict(data)
    problems = {p.path: p for p in info.value.problems}
    assert (
        "the config names 'nip-plugin-not-a-real-one' as its source: "
        "nip-plugin-not-a-real-one is not installed; install it with"
    ) in problems["trainer"].message


def test_a_saved_source_that_is_loaded_gives_no_install_hint(toy, monkeypatch):
    # the provider is here: the value is wrong for another reason (a typo in an
    # override), and "install that plugin" would mislead
    import nip_core.plugin_catalogue as catalogue

    monkeypatch.setattr(
        catalogue, "plugin_state", lambda d, pm=None: f"{d} is installed and loaded"
    )
    data = saved(trainer="toy_trainr")
    with pytest.raises(NipConfigError) as info:
        HyperParameters.from_dict(data)
    (problem,) = info.value.problems
    assert problem.path == "trainer"
    assert "did you mean 'toy_trainer'?" in problem.message
    assert "came from" not in problem.message and "install" not in problem.message


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
        "rl.body_lr_factor: null (no override) dropped",
        "section 'spg' dropped: no installed plugin provides it",
    ):
        assert change in message


def test_the_originals_rl_body_lr_factor_was_read_before_1_0_only(toy):
    """The original 1.0 filled rl.body_lr_factor in (actor 1, critic 1) but its RL
    trainers never read it: each agent's body_lr_factor set its body's rate. Its
    older trainers applied it (one number) to every agent's body."""
    agent_factor = {"_type": "LrFactors", "actor": 0.1, "critic": 0.1}
    filled_in = {"_type": "LrFactors", "actor": 1.0, "critic": 1.0}
    data = original_dict(_package_version="1.0.0", interaction_protocol="nip")
    data["nip_protocol"] = data.pop("pvg_protocol")
    data["rl"]["body_lr_factor"] = filled_in
    data["agents"]["verifier"]["body_lr_factor"] = agent_factor
    with pytest.warns(ParameterMigrationWarning) as record:
        hp = HyperParameters.from_dict(data)
    assert hp.rl.body_lr_factor_override is None
    assert hp.agents["verifier"].body_lr_factor == LrFactors(actor=0.1, critic=0.1)
    assert "rl.body_lr_factor dropped: the original 1.0's RL trainers did not read" in (
        str(record[0].message)
    )

    older = original_dict()
    older["rl"]["body_lr_factor"] = 0.1
    older["agents"]["verifier"]["agent_lr_factor"] = 0.5
    older["agents"]["verifier"]["body_lr_factor"] = 2
    with pytest.warns(ParameterMigrationWarning) as record:
        hp = HyperParameters.from_dict(older)
    assert hp.rl.body_lr_factor_override == LrFactors(actor=0.1, critic=0.1)
    assert hp.agents["verifier"].agent_lr_factor == LrFactors(actor=0.5, critic=0.5)
    assert hp.agents["verifier"].body_lr_factor == LrFactors(actor=2.0, critic=2.0)
    message = str(record[0].message)
    assert "became rl.body_lr_factor_override" in message
    assert "agents.verifier.agent_lr_factor: 0.5 became {actor: 0.5, critic: 0.5}" in (
        message
    )


def test_the_originals_keys_in_a_current_config_say_what_to_write(toy):
    """A dict that is not an original one (a config written by hand, or rebuilt
    from a W&B table without the bookkeeping keys) with the original's keys: each
    says what replaced it, with no "did you mean" pointing elsewhere."""
    data = saved()
    data["rl"]["body_lr_factor"] = 0.1
    data["text_rl"] = {"test_on_whole_dataset": True, "transcript_format": "json"}
    data["base_run"]["rerun_tests_force_test_during_training_state"] = True
    with pytest.raises(NipConfigError) as error:
        HyperParameters.from_dict(data)
    problems = {problem.path: problem for problem in error.value.problems}
    assert set(problems) == {
        "rl.body_lr_factor",
        "text_rl.test_on_whole_dataset",
        "text_rl.transcript_format",
        "base_run.rerun_tests_force_test_during_training_state",
    }
    assert "rl.body_lr_factor_override" in problems["rl.body_lr_factor"].message
    assert "did you mean" not in str(error.value)
    assert problems["text_rl.test_on_whole_dataset"].message == (
        "the original library's key; use text_rl.num_test_rollouts (null: the whole "
        "test set)"
    )
    assert problems["rl.body_lr_factor"].choices == ()


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


def test_pvg_era_dict_says_which_version_wrote_it(toy):
    data = original_dict(_package_version="0.0.1", _package_name="pvg")
    with pytest.warns(ParameterMigrationWarning) as record:
        HyperParameters.from_dict(data)
    message = str(record[0].message)
    assert "the dict was written by pvg 0.0.1, before nip 0.1" in message
    assert "has no package version" not in message


def test_original_dict_newer_than_the_converter_is_refused(toy):
    with pytest.raises(NipConfigError) as info:
        HyperParameters.from_dict(original_dict(_package_version="2.0.0"))
    [problem] = info.value.problems
    assert problem.path == "_package_version"
    assert problem.value == "2.0.0"
    assert "newer than this converter knows" in problem.message
    assert "up to the 1.0 series" in problem.message


def test_original_dict_with_agents_not_a_mapping(toy):
    with pytest.raises(NipConfigError) as info:
        HyperParameters.from_dict(original_dict(agents=[1, 2]))
    [problem] = info.value.problems
    assert problem.path == "agents"
    assert problem.value == [1, 2]
    assert problem.message == "expected a mapping of agent names to parameters"


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


# --------------------------------------------------------------------------------------
# A whole dict as the original library 0.1 / 1.0.0 wrote it
# --------------------------------------------------------------------------------------


def _original_agent(**changes) -> dict:
    """An agent as the original's ``AgentParameters.to_dict()`` wrote it."""
    data = {
        "_type": "ToyAgentParameters",
        "agent_lr_factor": None,
        "body_lr_factor": None,
        "update_schedule": {"_type": "ConstantUpdateSchedule"},
        "use_manual_architecture": False,
        "normalize_message_history": False,
        "load_checkpoint_and_parameters": False,
        "checkpoint_entity": "",
        "checkpoint_project": "",
        "checkpoint_run_id": None,
        "checkpoint_version": "latest",
        "use_orthogonal_initialisation": True,
        "orthogonal_initialisation_gain": 1.0,
        "d_hidden": 5,
        "is_random": False,
    }
    data.update(changes)
    return data


def full_original_dict(version: str) -> dict:
    """Every section and top-level field of the original library's HyperParameters.

    Written as ``to_dict(include_package_meta=True)`` of nip ``version`` wrote it
    (``"0.1.x"``: the protocol was still called ``pvg``). Values differ from the
    defaults where that shows they were carried over.
    """
    old = version.startswith("0.")
    rounds_type = "PvgProtocolParameters" if old else "NipProtocolParameters"
    return {
        "_type": "HyperParameters",
        "_package_version": version,
        "_package_name": "nip",
        "scenario": "toy",
        "trainer": "toy_trainer",
        "dataset": "toy_small",
        "interaction_protocol": "pvg" if old else "nip",
        "seed": 6198,
        "functionalize_modules": False,
        "pretrain_agents": True,
        "test_dataset_split": "test",
        "d_representation": 32,
        "message_size": 2,
        "include_linear_message_space": False,
        "d_linear_message_space": 2,
        "agents": {
            "verifier": _original_agent(
                agent_lr_factor={"_type": "LrFactors", "actor": 0.5, "critic": 0.25}
            ),
            "prover": _original_agent(d_hidden=7),
            "agents_update_repr": "Standard",
        },
        "rl": {
            "_type": "RlTrainerParameters",
            "frames_per_batch": 1000,
            "rollouts_per_iteration": None,
            "steps_per_env_per_iteration": None,
            "num_iterations": 123,
            "num_epochs": 4,
            "minibatch_size": 64,
            "lr": 0.003,
            "anneal_lr": False,
            "max_grad_norm": 1.0,
            "loss_critic_type": "smooth_l1",
            "clip_value": False,
            "normalize_observations": True,
            "num_normalization_steps": 1000,
            "gamma": 0.9,
            "lmbda": 0.95,
            "body_lr_factor": None,
            "use_shared_body": True,
            "num_test_iterations": 10,
        },
        "ppo": {
            "_type": "CommonPpoParameters",
            "loss_type": "clip",
            "clip_epsilon": 0.2,
            "kl_target": 0.01,
            "kl_beta": 1.0,
            "kl_decrement": 0.5,
            "kl_increment": 2.0,
            "critic_coef": 1.0,
            "entropy_eps": 0.001,
            "normalize_advantage": True,
        },
        "vanilla_ppo": {"_type": "VanillaPpoParameters"},
        "spg": {
            "_type": "SpgParameters",
            "variant": "psos",
            "stackelberg_sequence": None,
            "additional_lola_term": True,
            "sos_a_param": 0.5,
            "sos_b_param": 0.1,
            "ihvp_variant": "nystrom",
            "ihvp_num_iterations": 5,
            "ihvp_rank": 5,
            "ihvp_rho": 0.1,
        },
        "reinforce": {"_type": "ReinforceParameters", "use_advantage_and_critic": True},
        "solo_agent": {
            "_type": "SoloAgentParameters",
            "num_epochs": 7,
            "batch_size": 256,
            "learning_rate": 0.001,
            "body_lr_factor_override": False,
        },
        "text_rl": {
            "_type": "TextRlParameters",
            "fine_tune_on_all_previous_rollouts": False,
            "verifier_guess_replacement_proportion": 0.0,
            "verifier_guess_replacement_annealing": "none",
            "verifier_guess_replacement_annealing_rate": 0.1,
            "save_transcripts": True,
            "transcript_format": "yaml",
            "test_scheme": "none",
            "test_on_whole_dataset": True,
        },
        "pure_text_ei": {
            "_type": "PureTextEiParameters",
            "rollout_selection_method": "threshold",
            "reward_threshold": 0.9,
            "weighting_sample_size_factor": 0.5,
            "weighting_minimum": None,
            "weighting_use_replacement": True,
            "weighting_epsilon": 0.01,
        },
        "pure_text_malt": {
            "_type": "PureTextMaltParameters",
            "num_responses_per_timestep": 2,
        },
        "image_classification": {
            "_type": "ImageClassificationParameters",
            "num_block_groups": 1,
            "initial_num_channels": 16,
        },
        "code_validation": {
            "_type": "CodeValidationParameters",
            "app_difficulty": "interview",
        },
        "dataset_options": {
            "_type": "DatasetParameters",
            "binarification_method": "merge",
            "selected_classes": None,
            "binarification_seed": None,
            "make_balanced": True,
            "max_train_size": None,
            "max_test_size": None,
        },
        "protocol_common": {
            "_type": "CommonProtocolParameters",
            "verifier_first": True,
            "randomize_prover_stance": False,
            "prover_reward": 1.0,
            "prover_invalid_response_penalty": None,
            "verifier_reward": 1.0,
            "verifier_incorrect_penalty": -1.0,
            "verifier_neither_accept_nor_reject_reward": None,
            "verifier_terminated_penalty": -1.0,
            "verifier_no_guess_reward": 0.125,
            "shared_reward": True,
            "force_guess": None,
            "zero_knowledge": False,
            "verifier_decision_spectrum": "accept_reject",
        },
        ("pvg_protocol" if old else "nip_protocol"): {
            "_type": rounds_type,
            "max_message_rounds": 7,
            "min_message_rounds": 3,
        },
        "debate_protocol": {
            "_type": "DebateProtocolParameters",
            "max_message_rounds": 9,
            "min_message_rounds": 1,
            "sequential": True,
            "prover0_first": False,
            "randomize_channel_order": True,
        },
        "mnip_protocol": {
            "_type": "MnipProtocolParameters",
            "max_message_rounds": 5,
            "min_message_rounds": 2,
            "sequential": False,
            "prover0_first": True,
            "randomize_channel_order": False,
        },
        "zk_protocol": {
            "_type": "ZkProtocolParameters",
            "simulator_reward_coefficient": 0.5,
            "aux_prover_reward_coefficient": 1.0,
        },
        "message_regression": {
            "_type": "MessageRegressionParameters",
            "enabled": True,
            "agents": ["prover"],
            "regression_method": "mlp",
            "test_size": 0.2,
            "reset_on_fit": True,
            "mlp_num_layers": 2,
            "mlp_hidden_size": 64,
            "mlp_activation": "relu",
            "mlp_num_epochs": 10,
            "mlp_batch_size": 512,
            "mlp_learning_rate": 0.001,
        },
        "base_run": {
            "_type": "BaseRunParameters",
            "base_run_type": "none",
            "run_id": None,
            "wandb_project": "proj",
            "wandb_entity": "",
            "rerun_tests_force_test_during_training_state": True,
        },
    }


@pytest.mark.parametrize("version", ["0.1.2", "1.0.0"])
def test_whole_original_dict_converts_and_says_what_changed(toy, version):
    with pytest.warns(ParameterMigrationWarning) as record:
        hp = HyperParameters.from_dict(full_original_dict(version))
    assert hp.interaction_protocol == "nip"
    assert (hp.seed, hp.pretrain_agents, hp.d_representation, hp.message_size) == (
        6198,
        True,
        32,
        2,
    )
    assert (hp.nip_protocol.min_message_rounds, hp.nip_protocol.max_message_rounds) == (
        3,
        7,
    )
    assert hp.debate_protocol.max_message_rounds == 9
    assert (hp.debate_protocol.sequential, hp.debate_protocol.prover0_first) == (
        True,
        False,
    )
    assert hp.mnip_protocol.min_message_rounds == 2
    assert hp.mnip_protocol.randomize_channel_order is False
    assert hp.protocol_common.shared_reward is True
    assert hp.protocol_common.verifier_no_guess_reward == 0.125
    assert hp.zk_protocol.simulator_reward_coefficient == 0.5
    assert hp.rl.num_iterations == 123
    assert hp.rl.body_lr_factor_override is None
    assert hp.solo_agent.num_epochs == 7
    assert hp.reinforce.use_advantage_and_critic is True
    assert hp.message_regression.enabled is True
    assert tuple(hp.message_regression.agents) == ("prover",)
    assert hp.base_run.wandb_project == "proj"
    assert hp.agents["verifier"].agent_lr_factor == LrFactors(actor=0.5, critic=0.25)
    assert hp.agents["verifier"].body_lr_factor == LrFactors()
    assert hp.agents["prover"].d_hidden == 7

    [warning] = record
    lines = str(warning.message).splitlines()
    assert lines[0] == "the saved parameters were converted to this version:"
    converted = f"  - converted a dict written by the original nip library {version}"
    assert converted in lines
    expected = [
        "agents.agents_update_repr dropped (it is derived)",
        "agents.verifier.body_lr_factor: null replaced by the default (actor 1.0, "
        "critic 1.0), which it meant",
        (
            "rl.body_lr_factor: null (no override) dropped"
            if version.startswith("0.")
            else "rl.body_lr_factor dropped: the original 1.0's RL trainers did not "
            "read it"
        ),
        "base_run.rerun_tests_force_test_during_training_state dropped",
        "text_rl.transcript_format dropped",
        "text_rl.test_on_whole_dataset: true is now text_rl.num_test_rollouts: null",
        # Sections of plugins not installed in this test (ppo, image
        # classification, the text trainers and code validation; text_rl is the
        # core's)
        *(
            f"section {name!r} dropped: no installed plugin provides it"
            for name in (
                "ppo",
                "vanilla_ppo",
                "spg",
                "pure_text_ei",
                "pure_text_malt",
                "image_classification",
                "code_validation",
            )
        ),
    ]
    if version.startswith("0."):
        expected += [
            "[nip 0.1 -> 1.0] interaction_protocol 'pvg' renamed to 'nip'",
            "[nip 0.1 -> 1.0] section 'pvg_protocol' renamed to 'nip_protocol'",
            "[nip 0.1 -> 1.0] spg.sos_a_param renamed to spg.sos_scaling_factor",
        ]
    else:
        assert not any("pvg" in line for line in lines)
    text = "\n".join(lines)
    for change in expected:
        assert change in text
    # The last step of the original's chain is labelled with where it ends
    assert "[nip 1.0 -> nip-core] " in text
    assert "nip 2.0" not in text

    # Once converted, the dict is current: no second warning, and an exact round trip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert HyperParameters.from_dict(hp.to_dict()) == hp


def test_core_0_1_0_hands_the_two_class_reduction_over(synthetic_scenario):
    """A run saved by nip-core 0.1.0 has the image-classification fields in
    dataset_options; with no plugin to take them they are dropped, and said so."""
    from nip_core.parameters import HyperParameters, ParameterMigrationWarning

    saved = synthetic_scenario.hyper_params().to_dict()
    saved["_meta"]["versions"]["nip-core"] = "0.1.0"
    saved["dataset_options"].update(
        binarification_method="merge",
        selected_classes=None,
        binarification_seed=None,
        make_balanced=True,
    )
    with pytest.warns(ParameterMigrationWarning) as caught:
        loaded = HyperParameters.from_dict(saved)
    text = str(caught[0].message)
    assert "dataset_options.make_balanced dropped: no installed plugin uses it" in text
    assert loaded == synthetic_scenario.hyper_params()


def test_the_originals_reinforce_keeps_its_clip_epsilon():
    from nip_core.parameters.migrations import legacy_1_0_to_core

    params, messages = legacy_1_0_to_core(
        {"trainer": "reinforce", "ppo": {"clip_epsilon": 0.1}, "agents": {}}
    )
    assert params["reinforce"] == {"clip_epsilon": 0.1}
    assert "reinforce.clip_epsilon set from ppo.clip_epsilon" in messages


def _original_text_agent(**changes) -> dict:
    """A text agent as the original's ``CodeValidationAgentParameters`` wrote it
    (1.0.0: a vLLM endpoint by URL; later: by host and port)."""
    agent = {
        "_type": "CodeValidationAgentParameters",
        "model_provider": "OpenAI",
        "model_name": "gpt-4o-mini-2024-07-18",
        "vllm_openai_base_url": "http://localhost:8000/v1",
        "use_dummy_api": False,
        "shared_model_group": None,
        "temperature": None,
        "top_p": None,
        "repetition_penalty": None,
        "fine_tune_from_scratch": True,
        "freeze_agent": False,
        "max_response_words": 150,
        "max_tokens_per_message": None,
        "num_invalid_generation_retries": 20,
    }
    agent.update(changes)
    return agent


def test_the_originals_text_agent_fields_exactly():
    params, messages = legacy_1_0_to_core(
        {
            "agents": {
                "verifier": _original_text_agent(
                    model_provider="vLLM-OpenAI",
                    vllm_openai_base_url="http://gpu:9000/v1",
                    use_dummy_api=True,
                    repetition_penalty=1.1,
                    dpo_beta=0.2,
                ),
                "prover": _original_text_agent(
                    use_supervisor_message="always", supervisor_name="Boss"
                ),
            }
        }
    )
    kept = {
        "model_name": "gpt-4o-mini-2024-07-18",
        "shared_model_group": None,
        "temperature": None,
        "top_p": None,
        "fine_tune_from_scratch": True,
        "freeze_agent": False,
        "max_response_words": 150,
        "max_tokens_per_message": None,
        # the original's 20 attempts, the first included: 19 after the first
        "num_invalid_generation_retries": 19,
    }
    assert params["agents"] == {
        "verifier": {**kept, "repetition_penalty": 1.1},
        "prover": {**kept, "repetition_penalty": None},
    }
    assert params["openai_backend"] == {
        "base_url": "http://gpu:9000/v1",
        "dpo_beta": 0.2,
    }
    for line in (
        "agents.verifier.num_invalid_generation_retries 20 -> 19: the original "
        "counted the first attempt among its 20, here it counts the attempts after "
        "the first (the same 20 attempts)",
        "agents.verifier.model_provider 'vLLM-OpenAI' dropped: agents generate "
        "through the openai backend at http://gpu:9000/v1",
        # one openai backend serves every agent: the prover's requests go there
        # too, and the message says so (it once claimed OpenAI's API)
        "agents.prover.model_provider 'OpenAI' dropped: agents generate through the "
        "openai backend at http://gpu:9000/v1",
        "the agents generated at different endpoints (verifier: http://gpu:9000/v1, "
        "prover: OpenAI's API), which one openai backend cannot: every agent now "
        "sends its requests at http://gpu:9000/v1. To keep them apart, serve every "
        "model at one OpenAI-compatible endpoint, or run the open-weight ones "
        "locally with agents.<name>.backend=transformers",
        "agents.verifier was fine-tuned at the original's language model server "
        "(http://localhost:5000); here fine-tune jobs go to the openai backend's "
        "endpoint, which must offer OpenAI's fine-tuning API (vLLM does not): "
        "fine-tune it locally with agents.verifier.backend=transformers",
        "agents.verifier.use_dummy_api dropped: serve a scripted model with "
        "`python -m nip_core.testing.openai_server` and point "
        "openai_backend.base_url at it",
        "agents.prover.use_supervisor_message 'always' dropped: every prompt ends "
        "with a user turn holding the turn's instructions",
        "openai_backend.base_url set to http://gpu:9000/v1",
        "agents' dpo_beta moved to openai_backend.dpo_beta = 0.2",
    ):
        assert line in messages


def test_the_originals_agents_on_one_provider_get_no_mixed_endpoint_note():
    params, messages = legacy_1_0_to_core(
        {
            "agents": {
                "verifier": _original_text_agent(model_provider="OpenAI"),
                "prover": _original_text_agent(model_provider="OpenAI"),
            }
        }
    )
    assert "openai_backend" not in params
    assert (
        "agents.prover.model_provider 'OpenAI' dropped: agents generate through the "
        "openai backend (OpenAI's API)"
    ) in messages
    assert not any("different endpoints" in m for m in messages)
    assert not any("fine-tuned at the original's" in m for m in messages)


@pytest.mark.parametrize(
    ("agent", "url", "key_env"),
    [
        (
            {"model_provider": "SelfHosted", "vllm_server_port": 8123,
             "language_model_server_scheme_host": "http://box"},
            "http://box:8123/v1",
            None,
        ),
        ({"model_provider": "OpenRouter"}, "https://openrouter.ai/api/v1",
         "OPENROUTER_API_KEY"),
    ],
)  # fmt: skip
def test_the_originals_other_providers_become_endpoints(agent, url, key_env):
    original = _original_text_agent(**agent)
    del original["vllm_openai_base_url"]
    params, _ = legacy_1_0_to_core({"agents": {"verifier": original}})
    assert params["openai_backend"]["base_url"] == url
    assert params["openai_backend"].get("api_key_env") == key_env
    assert "model_provider" not in params["agents"]["verifier"]
    assert "vllm_server_port" not in params["agents"]["verifier"]


def test_an_endpoint_already_set_is_kept():
    params, messages = legacy_1_0_to_core(
        {
            "openai_backend": {"base_url": "http://mine/v1"},
            "agents": {"a": _original_text_agent(model_provider="OpenRouter")},
        }
    )
    assert params["openai_backend"]["base_url"] == "http://mine/v1"
    assert not any(m.startswith("openai_backend.base_url set") for m in messages)


def test_the_originals_mnip_rounds_come_from_nip_protocol():
    params, messages = legacy_1_0_to_core(
        {
            "interaction_protocol": "mnip",
            "nip_protocol": {"max_message_rounds": 6, "min_message_rounds": 2},
            "mnip_protocol": {"max_message_rounds": 8, "min_message_rounds": 2},
        }
    )
    assert params["mnip_protocol"] == {"max_message_rounds": 6, "min_message_rounds": 2}
    assert messages[:1] == [
        "mnip_protocol.max_message_rounds set to 6 from nip_protocol (the original's "
        "mnip read its rounds there; its unread mnip_protocol value was 8)"
    ]
    # another protocol's rounds stay where they were
    params, messages = legacy_1_0_to_core(
        {
            "interaction_protocol": "nip",
            "nip_protocol": {"max_message_rounds": 6},
            "mnip_protocol": {"max_message_rounds": 8},
        }
    )
    assert params["mnip_protocol"] == {"max_message_rounds": 8}
    assert not any("mnip_protocol" in m for m in messages)


def _original_text_loop(rl, text_rl, protocol="nip", **sections):
    params, messages = legacy_1_0_to_core(
        {
            "trainer": "pure_text_ei",
            "interaction_protocol": protocol,
            "rl": rl,
            "text_rl": text_rl,
            **sections,
        }
    )
    return params["text_rl"], messages


def test_the_originals_episodes_an_iteration_come_from_frames_per_batch_first():
    # frames_per_batch wins (the original ignored rollouts_per_iteration then),
    # over the protocol's max_message_rounds
    text_rl, messages = _original_text_loop(
        {"frames_per_batch": 120, "rollouts_per_iteration": 7, "num_iterations": 4},
        {"test_on_whole_dataset": False},
        nip_protocol={"max_message_rounds": 6},
    )
    assert text_rl == {
        "num_test_rollouts": 20,
        "num_iterations": 4,
        "rollouts_per_iteration": 20,
    }
    assert (
        "text_rl.rollouts_per_iteration = 20 (the original's episodes an iteration: "
        "rl.frames_per_batch 120 over 6 steps an episode (the protocol's "
        "max_message_rounds))"
    ) in messages
    # steps_per_env_per_iteration when set; mnip's rounds are nip_protocol's
    text_rl, _ = _original_text_loop(
        {"frames_per_batch": 120, "steps_per_env_per_iteration": 4},
        {},
        protocol="mnip",
        nip_protocol={"max_message_rounds": 6},
    )
    assert text_rl["rollouts_per_iteration"] == 30
    text_rl, _ = _original_text_loop(
        {"frames_per_batch": 120}, {}, protocol="mnip", nip_protocol={}
    )
    assert text_rl["rollouts_per_iteration"] == 15  # the original's default 8
    text_rl, _ = _original_text_loop({"frames_per_batch": 120}, {}, protocol="adp")
    assert text_rl["rollouts_per_iteration"] == 60


def test_the_originals_text_loop_sizes_move_out_of_rl():
    """A text trainer reads its loop sizes from text_rl: once moved there, the rl
    values would only be settings the run does not read (and be warned about)."""
    params, messages = legacy_1_0_to_core(
        {
            "trainer": "pure_text_ei",
            "interaction_protocol": "nip",
            "rl": {
                "frames_per_batch": None,
                "rollouts_per_iteration": 200,
                "num_iterations": 8,
                "lr": 0.003,
            },
            "text_rl": {},
        }
    )
    assert params["rl"] == {"lr": 0.003}
    assert params["text_rl"] == {"num_iterations": 8, "rollouts_per_iteration": 200}
    assert (
        "rl.num_iterations moved to text_rl.num_iterations (the text trainers' "
        "own section)"
    ) in messages


def test_the_originals_whole_dataset_loop_is_said():
    text_rl, messages = _original_text_loop(
        {"frames_per_batch": None, "rollouts_per_iteration": None},
        {"test_on_whole_dataset": False},
    )
    assert text_rl == {}
    assert (
        "text_rl.test_on_whole_dataset: false with neither rl.frames_per_batch nor "
        "rl.rollouts_per_iteration set tested on the whole test set: "
        "text_rl.num_test_rollouts: null"
    ) in messages
    assert any(
        m.startswith("the original sampled the whole training set each iteration")
        and "keeps its default" in m
        for m in messages
    )
    text_rl, _ = _original_text_loop(
        {"rollouts_per_iteration": 9}, {"test_on_whole_dataset": False}
    )
    assert text_rl == {"num_test_rollouts": 9, "rollouts_per_iteration": 9}
