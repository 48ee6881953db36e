"""HyperParameters: construction, sections, agents, access."""

from __future__ import annotations

import inspect

import attrs
import pytest
from toy_plugin import ToyAgentParameters, ToyOtherParameters, ToySectionParameters

from nip_core.errors import NipConfigError
from nip_core.parameters import (
    AgentsParameters,
    AgentsParams,
    ConstantUpdateSchedule,
    HyperParameters,
    LrFactors,
    RandomAgentParameters,
    RlTrainerParameters,
    preserved_paths,
)


def make(**kwargs) -> HyperParameters:
    kwargs.setdefault("interaction_protocol", "toy_protocol")
    return HyperParameters("toy", "toy_trainer", **kwargs)


def test_core_defaults_match_the_seed_api(toy):
    hp = make()
    assert (hp.scenario, hp.trainer, hp.dataset) == ("toy", "toy_trainer", "toy_small")
    assert hp.seed == 6198
    assert hp.functionalize_modules is False
    assert hp.pretrain_agents is False
    assert hp.test_size == 0.2
    assert hp.test_dataset_split == "test"
    assert hp.d_representation == 16
    assert hp.message_size == 1
    assert hp.include_linear_message_space is False
    assert hp.d_linear_message_space == 2
    assert HyperParameters("toy", "toy_trainer").interaction_protocol == "nip"


def test_signature_defaults_equal_attrs_defaults():
    signature = inspect.signature(HyperParameters.__init__)
    for f in attrs.fields(HyperParameters):
        if f.name in ("scenario", "trainer", "agents") or f.name.startswith("_"):
            continue
        assert signature.parameters[f.name].default == f.default, f.name


def test_attrs_introspection_sees_the_core_fields():
    names = [f.name for f in attrs.fields(HyperParameters)]
    assert names[:3] == ["scenario", "trainer", "dataset"]
    assert "agents" in names
    assert attrs.fields_dict(HyperParameters)["seed"].default == 6198


def test_every_registered_section_is_present_with_defaults(toy):
    hp = make()
    assert set(hp.sections) == set(toy.parameter_sections)
    assert hp.rl == RlTrainerParameters()
    assert hp.toy_section == ToySectionParameters()
    assert hp.toy_other.label == "x"
    assert hp.rl.num_epochs == 4


def test_sections_from_dicts_or_objects(toy):
    hp = make(rl={"num_epochs": 7}, toy_other=ToyOtherParameters(flag=True))
    assert hp.rl.num_epochs == 7
    assert hp.rl.lr == 0.003
    assert hp.toy_other.flag is True


def test_section_of_the_wrong_class_is_rejected(toy):
    with pytest.raises(NipConfigError) as info:
        make(rl=ToyOtherParameters())
    (problem,) = info.value.problems
    assert problem.path == "rl"
    assert "expected RlTrainerParameters" in problem.message


def test_unknown_section_lists_registered_sections(toy):
    with pytest.raises(NipConfigError) as info:
        make(ppo={"num_epochs": 3})
    (problem,) = info.value.problems
    assert problem.path == "ppo"
    assert problem.message.startswith("unknown section")
    assert set(problem.choices) == set(toy.parameter_sections)


def test_misspelt_core_field_is_suggested(toy):
    with pytest.raises(NipConfigError) as info:
        make(seeed=3)
    assert "did you mean 'seed'?" in info.value.problems[0].message


def test_missing_section_attribute_says_what_exists(toy):
    hp = make()
    with pytest.raises(AttributeError, match="no field or section 'ppo'.*Sections: "):
        hp.ppo  # noqa: B018


def test_agents_default_to_the_scenario_class(toy):
    hp = make()
    assert list(hp.agents) == ["_default"]
    assert type(hp.agents["_default"]) is ToyAgentParameters
    assert hp.agents["verifier"] is hp.agents["_default"]
    assert "prover" in hp.agents


def test_agent_dicts_become_the_scenario_class_or_random(toy):
    hp = make(
        agents=AgentsParams(
            prover={"is_random": True},
            verifier={"d_hidden": 32, "agent_lr_factor": {"actor": 0.5}},
        )
    )
    assert type(hp.agents["prover"]) is RandomAgentParameters
    verifier = hp.agents["verifier"]
    assert type(verifier) is ToyAgentParameters
    assert verifier.d_hidden == 32
    assert verifier.agent_lr_factor == LrFactors(actor=0.5, critic=1.0)
    assert isinstance(hp.agents, AgentsParameters)


def test_a_random_agent_given_the_scenarios_settings_says_so(toy):
    with pytest.raises(NipConfigError) as info:
        make(agents={"prover": {"is_random": True, "d_hidden": 32, "d_hiden": 1}})
    problems = {p.path: p for p in info.value.problems}
    assert problems["agents.prover.d_hidden"].message == (
        "a random agent (is_random: true) has no d_hidden: it is a setting of "
        "ToyAgentParameters; remove it, or set is_random: false"
    )
    assert problems["agents.prover.d_hidden"].value == 32
    # a key of no agent class is still an unknown key
    assert problems["agents.prover.d_hiden"].message.startswith("unknown key")


def test_agent_objects_must_be_of_the_scenario_class(toy):
    from nip_core.parameters import AgentParameters

    with pytest.raises(NipConfigError) as info:
        make(agents={"_default": AgentParameters()})
    (problem,) = info.value.problems
    assert problem.path == "agents._default"
    assert "expected ToyAgentParameters" in problem.message


def test_agent_parameters_class_is_resolved_from_a_reference(toy):
    hp = HyperParameters(
        "toy_text", "toy_text_trainer", "anything", interaction_protocol="toy_protocol"
    )
    assert type(hp.agents["_default"]) is ToyAgentParameters


def test_get_walks_sections_and_agents(toy):
    hp = make(
        agents={"_default": {"d_hidden": 5}, "prover": {"dropout": 0.5, "d_hidden": 5}}
    )
    assert hp.get("seed") == 6198
    assert hp.get("rl.gamma") == 0.9
    assert hp.get("agents.verifier.d_hidden") == 5
    assert hp.get("agents.prover.dropout") == 0.5
    assert hp.get("agents.prover.update_schedule") == ConstantUpdateSchedule()
    assert hp.get("toy_section.factors.critic") == 1.0
    with pytest.raises(KeyError, match="rl has no 'gama'"):
        hp.get("rl.gama")
    with pytest.raises(KeyError):
        hp.get("to_dict")


def test_a_named_agent_leaving_out_a_field_default_sets_is_warned_about(toy):
    from nip_core.errors import ParameterWarning

    with pytest.warns(ParameterWarning) as caught:
        hp = make(agents={"_default": {"d_hidden": 5}, "prover": {"dropout": 0.5}})
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "agents.prover.d_hidden is 8 (the class's default)" in message
    assert "not agents._default.d_hidden=5" in message
    # the behaviour it warns about: _default is for agents not named
    assert hp.agents["prover"].d_hidden == 8
    assert hp.agents["verifier"].d_hidden == 5
    # a misspelt agent gets its error, not this warning about its fields first
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterWarning)
        with pytest.raises(NipConfigError, match="did you mean 'prover'"):
            make(agents={"_default": {"d_hidden": 5}, "provr": {"dropout": 0.5}})


@pytest.mark.parametrize(
    "agents",
    [
        # the named agent sets the field itself
        {"_default": {"d_hidden": 5}, "prover": {"d_hidden": 6}},
        # _default sets the field to the class's default
        {"_default": {"d_hidden": 8}, "prover": {"dropout": 0.5}},
        # no agent named
        {"_default": {"d_hidden": 5}},
        # a hand-built agent reads no network field
        {"_default": {"d_hidden": 5}, "prover": {"use_manual_architecture": True}},
        # a random agent has no such field
        {"_default": {"d_hidden": 5}, "prover": {"is_random": True}},
    ],
)
def test_no_warning_where_a_named_agent_does_not_drop_a_default(toy, agents):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(agents=agents)


def test_a_saved_config_with_named_agents_does_not_warn(toy):
    import warnings

    from nip_core.errors import ParameterWarning

    with pytest.warns(ParameterWarning):
        hp = make(agents={"_default": {"d_hidden": 5}, "prover": {"dropout": 0.5}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = HyperParameters.from_dict(hp.to_dict())
    assert again.agents["prover"].d_hidden == 8


def test_a_field_the_trainer_does_not_read_set_away_from_its_default_warns(toy):
    import warnings

    from nip_core.errors import ParameterWarning

    def value_trainer(**kwargs):
        return HyperParameters(
            "toy", "toy_partial_trainer", interaction_protocol="toy_protocol", **kwargs
        )

    with pytest.warns(ParameterWarning) as caught:
        value_trainer(toy_section={"rate": 0.25, "limit": 3})
    assert [str(w.message) for w in caught] == [
        "trainer 'toy_partial_trainer' does not read toy_section.rate=0.25, "
        "toy_section.limit=3: the setting has no effect in this run"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # at their defaults, or fields it reads, or another trainer: no warning
        value_trainer(toy_section={"rate": 0.5, "steps": 9})
        make(toy_section={"rate": 0.25})


def test_section_assignment_is_validated(toy):
    hp = make()
    hp.rl = {"num_epochs": 2}
    assert hp.rl.num_epochs == 2
    with pytest.raises(NipConfigError) as info:
        hp.rl = {"num_epochs": 0}
    assert info.value.problems[0].path == "rl.num_epochs"
    with pytest.raises(NipConfigError):
        hp.seed = -5
    assert hp.seed == 6198
    hp.agents = {"verifier": {"d_hidden": 4}, "prover": {"is_random": True}}
    assert hp.agents["verifier"].d_hidden == 4
    with pytest.raises(AttributeError):
        hp.not_a_thing = 1


def test_evolve_keeps_sections_and_agents(toy):
    hp = make(rl={"lr": 0.5}, agents={"_default": {"d_hidden": 2}})
    other = attrs.evolve(hp, seed=1)
    assert other.seed == 1
    assert other.rl.lr == 0.5
    assert other.agents == hp.agents
    assert other != hp


def test_equality_includes_sections(toy):
    assert make() == make()
    assert make(toy_other={"flag": True}) != make()


def test_construct_test_params(toy):
    hp = HyperParameters.construct_test_params(
        "toy", "toy_trainer", interaction_protocol="toy_protocol"
    )
    assert hp.agents["_default"] == ToyAgentParameters(d_hidden=1)
    assert hp.rl == RlTrainerParameters.construct_test_params()
    assert hp.toy_section.steps == 1
    assert hp.dataset == "toy_small"
    custom = HyperParameters.construct_test_params(
        "toy", "toy_trainer", interaction_protocol="nip", rl={"num_iterations": 3}
    )
    assert custom.rl.num_iterations == 3
    assert custom.interaction_protocol == "nip"


def test_preserved_paths_walk_the_tree(toy):
    assert preserved_paths(make(), "rerun_tests") == [
        "test_dataset_split",
        "dataset_options.max_test_size",
        "rl.num_test_iterations",
        "text_rl.num_test_rollouts",
        "text_rl.test_scheme",
        "text_rl.rollout_analysers",
    ]


def test_pickle_and_deepcopy_keep_everything(toy):
    import copy
    import pickle

    hp = make(rl={"lr": 0.25}, agents={"_default": {"d_hidden": 9}})
    for clone in (pickle.loads(pickle.dumps(hp)), copy.deepcopy(hp)):
        assert clone == hp
        assert clone.rl.lr == 0.25
        assert clone.agents["prover"].d_hidden == 9
        clone.rl = {"lr": 0.5}
        assert hp.rl.lr == 0.25


def test_section_named_like_a_field_or_method_is_refused(toy, register_plugin):
    from nip_core import hookimpl
    from nip_core.records import ParameterSectionSpec

    class Clashing:
        @hookimpl
        def register_parameter_sections(self):
            return [
                ParameterSectionSpec(name="seed", parameters_class=ToyOtherParameters),
                ParameterSectionSpec(
                    name="to_dict", parameters_class=ToyOtherParameters
                ),
            ]

    register_plugin(Clashing(), name="clashing")
    with pytest.raises(NipConfigError) as info:
        make()
    assert [p.path for p in info.value.problems] == ["seed", "to_dict"]
    assert "plugin 'clashing'" in info.value.problems[0].message


def test_validate_rechecks_the_whole_tree(toy):
    hp = make()
    hp.validate()
    hp.trainer = "toy_text_trainer"  # a string, so the assignment itself passes
    with pytest.raises(NipConfigError) as info:
        hp.validate()
    assert [p.path for p in info.value.problems] == ["trainer"]


def test_a_field_the_scenario_does_not_read_set_away_from_its_default_warns(
    synthetic_scenario,
):
    """ScenarioSpec.unread_parameters: the core's test_size, which no built-in
    scenario reads (their splits are fixed, or their own section's)."""
    import warnings

    from nip_core.errors import ParameterWarning

    with pytest.warns(ParameterWarning) as caught:
        synthetic_scenario.hyper_params(test_size=0.3)
    assert [str(w.message) for w in caught] == [
        "scenario 'synthetic' does not read test_size=0.3: the setting has no "
        "effect in this run"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        synthetic_scenario.hyper_params(test_size=0.2)


def test_a_key_a_section_declares_moved_says_where_it_went(toy, register_plugin):
    from nip_core import hookimpl
    from nip_core.parameters import SubParameters, parameters_class
    from nip_core.records import ParameterSectionSpec

    with pytest.raises(NipConfigError) as info:
        make(dataset_options={"binarification_method": "merge", "max_train_siz": 3})
    moved, misspelt = info.value.problems
    assert moved.path == "dataset_options.binarification_method"
    assert moved.message == (
        "no longer a key of dataset_options: nip-core 0.1.1 moved it into the "
        "scenario's own section; no installed plugin's section has it (see "
        "`nip plugins`)"
    )
    assert moved.choices == ()
    # keys not declared moved keep the plain unknown-key problem
    assert misspelt.message == "unknown key; did you mean 'max_train_size'?"

    @parameters_class
    class TakerParameters(SubParameters):
        binarification_method: str = "merge"

    class Taker:
        @hookimpl
        def register_parameter_sections(self):
            return [
                ParameterSectionSpec(name="taker", parameters_class=TakerParameters)
            ]

    register_plugin(Taker(), name="taker")
    with pytest.raises(NipConfigError) as info:
        make(dataset_options={"binarification_method": "merge"})
    (moved,) = info.value.problems
    assert moved.message.endswith("; set taker.binarification_method instead")
    assert (
        make(taker={"binarification_method": "select_two"}).get(
            "taker.binarification_method"
        )
        == "select_two"
    )
