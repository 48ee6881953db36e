"""Validation of whole configurations: every problem, in one error, with paths."""

from __future__ import annotations

import pytest

from nip_core.errors import NipConfigError
from nip_core.parameters import HyperParameters, is_path_like_dataset


def problems_of(**kwargs) -> dict[str, object]:
    kwargs.setdefault("scenario", "toy")
    kwargs.setdefault("trainer", "toy_trainer")
    kwargs.setdefault("interaction_protocol", "toy_protocol")
    with pytest.raises(NipConfigError) as info:
        HyperParameters(**kwargs)
    return {p.path: p for p in info.value.problems}


def test_three_mistakes_are_all_reported_with_dotted_paths(toy):
    with pytest.raises(NipConfigError) as info:
        HyperParameters(
            scenario="toy",
            trainer="toy_trainer",
            interaction_protocol="toy_protocol",
            rl={"num_epochs": 0},
            toy_section={"mdoe": "b"},
            agents={"verifier": {"d_hidden": "wide"}, "_default": {}},
        )
    problems = info.value.problems
    assert [p.path for p in problems] == [
        "rl.num_epochs",
        "toy_section.mdoe",
        "agents.verifier.d_hidden",
    ]
    assert problems[0].message == "must be >= 1"
    assert problems[0].value == 0
    assert problems[1].message == "unknown key; did you mean 'mode'?"
    assert problems[2].message == "expected an integer"
    text = str(info.value)
    assert text.startswith("invalid configuration: 3 problems\n")
    assert "  - rl.num_epochs: must be >= 1 (got 0)" in text
    assert "  - toy_section.mdoe: unknown key; did you mean 'mode'?" in text
    assert "  - agents.verifier.d_hidden: expected an integer (got 'wide')" in text


def test_unknown_registry_names_list_the_choices(toy):
    problems = problems_of(
        scenario="toyy", trainer="no_such", interaction_protocol="nipp"
    )
    assert problems["scenario"].message == "unknown scenario; did you mean 'toy'?"
    assert set(problems["scenario"].choices) == set(toy.scenarios)
    assert problems["trainer"].value == "no_such"
    assert set(problems["trainer"].choices) == set(toy.trainers)
    assert "did you mean 'nip'?" in problems["interaction_protocol"].message
    assert set(problems["interaction_protocol"].choices) == set(toy.protocols)


def test_wrong_core_types_are_reported(toy):
    problems = problems_of(seed="1", test_size=1.5, message_size=0, pretrain_agents=1)
    assert problems["seed"].message == "expected an integer"
    assert problems["test_size"].message == "must be < 1"
    assert problems["message_size"].message == "must be >= 1"
    assert problems["pretrain_agents"].message == "expected true or false"


def test_unknown_dataset_of_a_scenario_with_a_list(toy):
    problem = problems_of(dataset="toy_smal")["dataset"]
    assert "did you mean 'toy_small'?" in problem.message
    assert problem.choices == ("toy_small", "toy_large")


@pytest.mark.parametrize("dataset", ["toy_large", "./my_data", "data/set", "~/set"])
def test_listed_and_path_like_datasets_are_accepted(toy, dataset):
    hp = HyperParameters(
        "toy", "toy_trainer", dataset, interaction_protocol="toy_protocol"
    )
    assert hp.dataset == dataset


def test_any_dataset_name_for_a_scenario_without_a_list(toy):
    hp = HyperParameters(
        "toy_text", "toy_text_trainer", "mine", interaction_protocol="toy_protocol"
    )
    assert hp.dataset == "mine"


def test_dataset_required_without_a_default(toy):
    problem = problems_of(scenario="toy_text", trainer="toy_text_trainer")["dataset"]
    assert "a dataset is required" in problem.message


def test_path_like_rule():
    assert is_path_like_dataset("./x") and is_path_like_dataset("a/b")
    assert is_path_like_dataset("~") and is_path_like_dataset(r"C:\data")
    assert not is_path_like_dataset("eru10000")


def test_protocol_the_scenario_does_not_support(toy):
    problem = problems_of(interaction_protocol="debate")["interaction_protocol"]
    assert problem.message == "scenario 'toy' does not support this protocol"
    assert problem.choices == ("toy_protocol", "toy_solo", "nip")


def test_protocol_of_another_data_world(toy):
    problem = problems_of(
        scenario="toy_text",
        trainer="toy_text_trainer",
        dataset="d",
        interaction_protocol="toy_solo",
    )["interaction_protocol"]
    assert "cannot run in the text world" in problem.message
    # the text world's protocols: the toy's and every built-in one
    assert "toy_protocol" in problem.choices and "nip" in problem.choices
    assert "toy_solo" not in problem.choices


def test_trainer_of_another_data_world(toy):
    problem = problems_of(trainer="toy_text_trainer")["trainer"]
    assert problem.message == (
        "trainer 'toy_text_trainer' works in the text world, scenario 'toy' in the "
        "tensor world"
    )
    assert "toy_trainer" in problem.choices
    assert "toy_text_trainer" not in problem.choices


def test_trainer_needing_parts_the_scenario_lacks(toy):
    problem = problems_of(trainer="toy_value_trainer")["trainer"]
    assert problem.message.endswith("does not register: value_head")
    problem = problems_of(trainer="solo_agent")["trainer"]
    assert problem.message.endswith("does not register: solo_head")


def test_agent_names_must_belong_to_the_protocol(toy):
    problems = problems_of(agents={"_default": {}, "prover0": {}})
    problem = problems["agents.prover0"]
    assert (
        problem.message
        == "not an agent of protocol 'toy_protocol'; did you mean 'prover'?"
    )
    assert problem.choices == ("prover", "verifier")


def test_every_agent_needs_parameters_without_default(toy):
    problem = problems_of(agents={"verifier": {}})["agents"]
    assert "prover" in problem.message
    hp = HyperParameters(
        "toy", "toy_trainer", agents={"verifier": {}}, interaction_protocol="toy_solo"
    )
    assert list(hp.agents) == ["verifier"]


def test_zero_knowledge_adds_its_agents(toy):
    agents = {"_default": {}, "simulator": {"d_hidden": 2}, "adversarial_verifier": {}}
    with pytest.raises(NipConfigError) as info:
        HyperParameters(
            "toy", "toy_trainer", interaction_protocol="toy_protocol", agents=agents
        )
    assert {p.path for p in info.value.problems} == {
        "agents.simulator",
        "agents.adversarial_verifier",
    }
    hp = HyperParameters(
        "toy",
        "toy_trainer",
        interaction_protocol="toy_protocol",
        agents=agents,
        protocol_common={"zero_knowledge": True},
    )
    assert hp.zero_knowledge is True
    assert hp.agents["simulator"].d_hidden == 2


def test_zero_knowledge_needs_a_protocol_that_supports_it(toy):
    problem = problems_of(
        interaction_protocol="toy_solo", protocol_common={"zero_knowledge": True}
    )["protocol_common.zero_knowledge"]
    assert problem.message == "protocol 'toy_solo' has no zero-knowledge version"


def test_randomized_stance_needs_exactly_one_prover(toy):
    problem = problems_of(
        interaction_protocol="toy_solo",
        agents={"_default": {}},
        protocol_common={"randomize_prover_stance": True},
    )["protocol_common.randomize_prover_stance"]
    assert problem.message == (
        "randomized prover stances need a protocol with exactly one prover; "
        "'toy_solo' has 0"
    )
    hp = HyperParameters(
        "toy",
        "toy_trainer",
        interaction_protocol="toy_protocol",
        protocol_common={"randomize_prover_stance": True},
    )
    assert hp.protocol_common.randomize_prover_stance is True


def test_problems_of_many_kinds_in_one_error(toy):
    problems = problems_of(
        trainer="toy_value_trainer",
        dataset="nope",
        seed=-1,
        agents={"verifer": {"d_hiden": 0, "dropout": 2.0}},
        rl={"num_epochs": 0, "lr": "x", "gama": 1},
        ppo={},
        toy_section={"limit": 5},
    )
    assert set(problems) == {
        "ppo",
        "rl.gama",
        "rl.num_epochs",
        "rl.lr",
        "toy_section.limit",
        "seed",
        "dataset",
        "agents.verifer.d_hiden",
        "agents.verifer.dropout",
        "agents.verifer",
        "agents",
        "trainer",
    }


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        ("tuple[str, ...]", "a list of strings"),
        ("list[int]", "a list of integers"),
        ("tuple[float, ...]", "a list of numbers"),
        ("list[bool]", "a list of true or false values"),
        ("tuple[Literal['a', 'b'], ...]", "a list whose items are one of 'a', 'b'"),
        ("tuple[int, int]", "a list of 2 items"),
        ("int | None", "an integer or null"),
    ],
)
def test_types_are_described_in_words(annotation, text):
    from typing import Literal  # noqa: F401 - used by the annotations' text

    from nip_core.parameters.validation import describe_type

    assert describe_type(eval(annotation)) == text


def test_a_validator_that_names_the_value_does_not_show_it_twice():
    from nip_core.parameters.validation import problem_from_validator_error

    for value, error in (
        (1.0, ValueError(f"rate must be in [0, 1), got {1.0!r}")),
        ("x", ValueError("rate must be short, got x")),
    ):
        problem = problem_from_validator_error(error, "rate", value)
        assert problem.message.endswith(("must be in [0, 1)", "must be short"))
        assert problem.format().count("got") == 1
