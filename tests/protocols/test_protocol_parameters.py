"""The protocol parameter sections and their registration."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

from nip_core.errors import NipConfigError
from nip_core.protocols.parameters import (
    PROTOCOL_SECTIONS,
    CommonProtocolParameters,
    DebateProtocolParameters,
    MnipProtocolParameters,
    NipProtocolParameters,
    TwoProverProtocolParameters,
    ZkProtocolParameters,
)


def test_common_defaults_match_the_original() -> None:
    common = CommonProtocolParameters()
    assert common.verifier_first is True
    assert common.randomize_prover_stance is False
    assert common.prover_reward == 1.0
    assert common.prover_invalid_response_penalty is None
    assert common.verifier_reward == 1.0
    assert common.verifier_incorrect_penalty == -1.0
    assert common.verifier_neither_accept_nor_reject_reward is None
    assert common.verifier_terminated_penalty == -1.0
    assert common.verifier_no_guess_reward == 0.0
    assert common.shared_reward is False
    assert common.force_guess is None
    assert common.zero_knowledge is False
    assert common.verifier_decision_spectrum == "accept_reject"


@pytest.mark.parametrize(
    "cls", [NipProtocolParameters, DebateProtocolParameters, MnipProtocolParameters]
)
def test_round_defaults(cls: type) -> None:
    section = cls()
    assert (section.min_message_rounds, section.max_message_rounds) == (1, 8)


@pytest.mark.parametrize("cls", [DebateProtocolParameters, MnipProtocolParameters])
def test_two_prover_sections_have_turn_order_fields(cls: type) -> None:
    section = cls()
    assert section.sequential is False
    assert section.prover0_first is True
    assert section.randomize_channel_order is True


@pytest.mark.parametrize("cls", [DebateProtocolParameters, MnipProtocolParameters])
def test_two_prover_sections_fields_and_round_trip(cls: type) -> None:
    # Both sections share TwoProverProtocolParameters; the saved form is unchanged
    assert issubclass(cls, TwoProverProtocolParameters)
    assert cls().to_dict() == {
        "max_message_rounds": 8,
        "min_message_rounds": 1,
        "allow_unread_rounds": False,
        "sequential": False,
        "prover0_first": True,
        "randomize_channel_order": True,
    }
    assert [f.name for f in attrs.fields(cls)] == [
        "max_message_rounds",
        "min_message_rounds",
        "allow_unread_rounds",
        "sequential",
        "prover0_first",
        "randomize_channel_order",
    ]
    section = cls(max_message_rounds=4, sequential=True, prover0_first=False)
    again = cls.from_dict(section.to_dict())
    assert type(again) is cls
    assert again == section
    with pytest.raises(NipConfigError) as info:
        cls(sequential="yes")
    assert info.value.problems[0].path == "sequential"


def test_zk_defaults() -> None:
    zk = ZkProtocolParameters()
    assert zk.simulator_reward_coefficient == 1.0
    assert zk.aux_prover_reward_coefficient == 1.0


def test_max_rounds_below_min_is_one_problem() -> None:
    with pytest.raises(NipConfigError) as info:
        NipProtocolParameters(min_message_rounds=5, max_message_rounds=4)
    assert len(info.value.problems) == 1
    assert "must be at least min_message_rounds" in str(info.value)


def test_rounds_must_be_positive() -> None:
    with pytest.raises(NipConfigError) as info:
        MnipProtocolParameters(min_message_rounds=0)
    assert info.value.problems[0].path == "min_message_rounds"
    # The value is shown once, beside the message
    assert str(info.value).splitlines()[-1] == (
        "  - min_message_rounds: must be at least 1 (got 0)"
    )


def test_round_order_messages_name_the_other_limit() -> None:
    with pytest.raises(NipConfigError) as info:
        NipProtocolParameters(min_message_rounds=5, max_message_rounds=4)
    assert str(info.value).splitlines()[-1] == (
        "  - max_message_rounds: must be at least min_message_rounds (5) (got 4)"
    )
    section = NipProtocolParameters(min_message_rounds=3, max_message_rounds=5)
    with pytest.raises(NipConfigError) as info:
        section.min_message_rounds = 6
    assert str(info.value).splitlines()[-1] == (
        "  - min_message_rounds: must be at most max_message_rounds (5) (got 6)"
    )


@pytest.mark.parametrize(
    "field, value",
    [("min_message_rounds", 6), ("max_message_rounds", 2)],
)
def test_assignment_checks_the_other_round_limit(field: str, value: int) -> None:
    section = NipProtocolParameters(min_message_rounds=3, max_message_rounds=5)
    with pytest.raises(NipConfigError):
        setattr(section, field, value)
    assert (section.min_message_rounds, section.max_message_rounds) == (3, 5)
    section.max_message_rounds = 3
    section.min_message_rounds = 3
    assert (section.min_message_rounds, section.max_message_rounds) == (3, 3)


def test_force_guess_choices() -> None:
    for choice in ("zero", "one", "y", None):
        assert CommonProtocolParameters(force_guess=choice).force_guess == choice
    with pytest.raises(NipConfigError) as info:
        CommonProtocolParameters(force_guess="maybe")
    assert info.value.problems[0].path == "force_guess"


def test_wrong_types_are_refused() -> None:
    with pytest.raises(NipConfigError) as info:
        CommonProtocolParameters(verifier_reward="high", shared_reward=1)
    paths = sorted(problem.path for problem in info.value.problems)
    assert paths == ["shared_reward", "verifier_reward"]


def test_decision_spectrum_choices() -> None:
    assert (
        CommonProtocolParameters(
            verifier_decision_spectrum="likert_scale_5"
        ).verifier_decision_spectrum
        == "likert_scale_5"
    )
    with pytest.raises(NipConfigError):
        CommonProtocolParameters(verifier_decision_spectrum="thumbs")


def test_parameter_module_and_builtin_plugin_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import nip_core.protocols.parameters\n"
        "import nip_core.builtin.protocols as plugin\n"
        "plugin.register_protocols(); plugin.register_parameter_sections()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_sections_and_protocols_are_registered(plugin_manager) -> None:
    sections = plugin_manager.parameter_sections
    for name, cls in PROTOCOL_SECTIONS.items():
        assert sections[name].parameters_class is cls
        assert sections[name].plugin == "nip-core.protocols"
    protocols = plugin_manager.protocols
    expected = {
        "nip": ("prover", "verifier"),
        "adp": ("prover", "verifier"),
        "debate": ("prover0", "prover1", "verifier"),
        "merlin_arthur": ("prover0", "prover1", "verifier"),
        "mnip": ("prover0", "prover1", "verifier"),
        "solo_verifier": ("verifier",),
    }
    for name, agents in expected.items():
        assert protocols[name].agent_names == agents
        # every built-in protocol steps tensor and text episodes alike
        assert protocols[name].data_worlds == ("tensor", "text")
    assert protocols["mnip"].parameter_section == "mnip_protocol"
    assert protocols["solo_verifier"].supports_zero_knowledge is False
    # a test fixture, not a protocol users choose
    assert "multi_channel_test" not in protocols


def test_allow_unread_rounds_silences_the_unread_round_warning() -> None:
    import warnings

    from nip_core.protocols.base import ProtocolWarning
    from nip_core.protocols.main_protocols import NipProtocolHandler

    with pytest.warns(ProtocolWarning, match="round 7 of max_message_rounds=8") as w:
        NipProtocolHandler.from_sections(nip_protocol={"max_message_rounds": 8})
    message = str(w[0].message)
    assert "Set nip_protocol.max_message_rounds to 7" in message
    # the warning names its opt-out
    assert "or nip_protocol.allow_unread_rounds=true" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NipProtocolHandler.from_sections(
            nip_protocol={"max_message_rounds": 8, "allow_unread_rounds": True}
        )


@pytest.mark.parametrize(
    ("handler", "sections", "path", "last_turn"),
    [
        # the verifier speaks on rounds 0 and 2; verdicts count from round 3
        (
            "nip",
            {"nip_protocol": {"max_message_rounds": 4, "min_message_rounds": 4}},
            "nip_protocol.min_message_rounds",
            2,
        ),
        (
            "nip",
            {"nip_protocol": {"max_message_rounds": 8, "min_message_rounds": 8}},
            "nip_protocol.min_message_rounds",
            6,
        ),
        # sequential debate: verifier, prover0, prover1, verifier, ...
        (
            "debate",
            {
                "debate_protocol": {
                    "max_message_rounds": 3,
                    "min_message_rounds": 3,
                    "sequential": True,
                }
            },
            "debate_protocol.min_message_rounds",
            0,
        ),
    ],
)
def test_round_limits_under_which_no_verdict_can_count_are_refused(
    handler, sections, path, last_turn
) -> None:
    from nip_core.errors import NipConfigError
    from nip_core.protocols.main_protocols import (
        DebateProtocolHandler,
        NipProtocolHandler,
    )

    cls = {"nip": NipProtocolHandler, "debate": DebateProtocolHandler}[handler]
    with pytest.raises(NipConfigError) as caught:
        cls.from_sections(**sections)
    (problem,) = caught.value.problems
    assert problem.path == path
    assert f"the verifier's last turn is round {last_turn}" in problem.message
    assert f"Set min_message_rounds to at most {last_turn + 1}" in problem.message
    # the largest minimum it suggests is accepted
    limits = dict(next(iter(sections.values())))
    limits["min_message_rounds"] = last_turn + 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls.from_sections(**{next(iter(sections)): limits})


def test_from_sections_names_the_section_of_a_problem_and_refuses_a_misspelt_one():
    from nip_core.errors import NipConfigError
    from nip_core.protocols.main_protocols import NipProtocolHandler

    with pytest.raises(NipConfigError) as caught:
        NipProtocolHandler.from_sections(nip_protocol={"max_message_rounds": 0})
    assert [p.path for p in caught.value.problems] == [
        "nip_protocol.max_message_rounds"
    ]
    with pytest.raises(NipConfigError) as caught:
        NipProtocolHandler.from_sections(protocol_common={"verifierfirst": False})
    assert [p.path for p in caught.value.problems] == ["protocol_common.verifierfirst"]
    # a section spelt almost like a built-in one is not passed through unread
    with pytest.raises(NipConfigError) as caught:
        NipProtocolHandler.from_sections(nip_protocl={"max_message_rounds": 3})
    (problem,) = caught.value.problems
    assert problem.path == "nip_protocl"
    assert "did you mean 'nip_protocol'?" in problem.message
    # a plugin protocol's own section is
    handler = NipProtocolHandler.from_sections(
        nip_protocol={"max_message_rounds": 3}, relay_protocol={"hops": 2}
    )
    assert handler.max_message_rounds == 3
    assert handler.hyper_params.relay_protocol == {"hops": 2}
