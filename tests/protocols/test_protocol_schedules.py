"""Who speaks when, who sees what, and when the verifier may decide."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from nip_core.errors import NipConfigError
from nip_core.protocols.base import (
    DeterministicProtocolHandler,
    ProtocolHandler,
    ProtocolSpecificationError,
    ProtocolWarning,
    SingleVerifierProtocolHandler,
    validate_agent_names,
)
from nip_core.protocols.main_protocols import (
    AdpProtocolHandler,
    DebateProtocolHandler,
    MerlinArthurProtocolHandler,
    MnipProtocolHandler,
    NipProtocolHandler,
    SoloVerifierProtocolHandler,
)
from nip_core.testing.protocols import MultiChannelTestProtocolHandler


def build(cls: type[ProtocolHandler], **sections) -> ProtocolHandler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProtocolWarning)
        return cls.from_sections(**sections)


def active_pairs(handler: ProtocolHandler, round_id: int, seed: int = 0) -> set:
    """The (agent, channel) pairs active in a round, read off the tensor mask."""
    mask = handler.get_active_agents_mask_from_rounds_and_seed(
        torch.tensor(round_id), torch.tensor(seed)
    )
    return {
        (handler.agent_names[a], handler.message_channel_names[c])
        for a, c in mask.nonzero().tolist()
    }


def guess_rounds(handler: ProtocolHandler, seed: int = 0) -> list[int]:
    rounds = torch.arange(handler.max_message_rounds)
    guess = handler.get_verifier_guess_mask_from_rounds_and_seed(
        rounds, torch.full_like(rounds, seed)
    )
    return rounds[guess].tolist()


V, P = ("verifier", "main"), ("prover", "main")


# ---------------------------------------------------------------------------------
# nip and adp
# ---------------------------------------------------------------------------------


def test_nip_verifier_first_alternates() -> None:
    handler = build(NipProtocolHandler)
    assert handler.agent_names == ["prover", "verifier"]
    assert handler.message_channel_names == ["main"]
    assert [active_pairs(handler, r) for r in range(4)] == [{V}, {P}, {V}, {P}]
    assert guess_rounds(handler) == [0, 2, 4, 6]
    assert handler.max_verifier_questions == 4


def test_nip_prover_first_alternates() -> None:
    handler = build(
        NipProtocolHandler,
        protocol_common={"verifier_first": False},
        nip_protocol={"max_message_rounds": 5},
    )
    assert [active_pairs(handler, r) for r in range(5)] == [{P}, {V}, {P}, {V}, {P}]
    assert guess_rounds(handler) == [1, 3]


def test_nip_reads_its_rounds_from_nip_protocol() -> None:
    handler = build(
        NipProtocolHandler,
        nip_protocol={"min_message_rounds": 3, "max_message_rounds": 5},
        mnip_protocol={"min_message_rounds": 2, "max_message_rounds": 9},
    )
    assert (handler.min_message_rounds, handler.max_message_rounds) == (3, 5)


@pytest.mark.parametrize("max_rounds", range(2, 12))
@pytest.mark.parametrize("verifier_first", [True, False])
def test_alternating_max_verifier_questions(
    max_rounds: int, verifier_first: bool
) -> None:
    expected = math.ceil(max_rounds / 2) if verifier_first else max_rounds // 2
    for cls, section in [
        (NipProtocolHandler, "nip_protocol"),
        (DebateProtocolHandler, "debate_protocol"),
        (MnipProtocolHandler, "mnip_protocol"),
    ]:
        handler = build(
            cls,
            protocol_common={"verifier_first": verifier_first},
            **{section: {"max_message_rounds": max_rounds}},
        )
        assert handler.max_verifier_questions == expected, cls.__name__


def test_adp_is_prover_then_verifier() -> None:
    handler = build(
        AdpProtocolHandler,
        protocol_common={"verifier_first": True},
        nip_protocol={"max_message_rounds": 7},
    )
    assert (handler.min_message_rounds, handler.max_message_rounds) == (1, 2)
    assert [active_pairs(handler, r) for r in range(2)] == [{P}, {V}]
    assert guess_rounds(handler) == [1]
    assert handler.max_verifier_questions == 1


# ---------------------------------------------------------------------------------
# debate and mnip
# ---------------------------------------------------------------------------------

V0, V1 = ("verifier", "prover0_channel"), ("verifier", "prover1_channel")
P0, P1 = ("prover0", "prover0_channel"), ("prover1", "prover1_channel")


@pytest.mark.parametrize("cls", [DebateProtocolHandler, MnipProtocolHandler])
def test_simultaneous_schedule(cls: type) -> None:
    handler = build(cls)
    assert handler.message_channel_names == ["prover0_channel", "prover1_channel"]
    expected = [{V0, V1}, {P0, P1}, {V0, V1}, {P0, P1}]
    assert [active_pairs(handler, r) for r in range(4)] == expected


@pytest.mark.parametrize("cls", [DebateProtocolHandler, MnipProtocolHandler])
def test_simultaneous_provers_first(cls: type) -> None:
    handler = build(cls, protocol_common={"verifier_first": False})
    expected = [{P0, P1}, {V0, V1}, {P0, P1}, {V0, V1}]
    assert [active_pairs(handler, r) for r in range(4)] == expected


@pytest.mark.parametrize(
    "cls, section",
    [
        (DebateProtocolHandler, "debate_protocol"),
        (MnipProtocolHandler, "mnip_protocol"),
    ],
)
def test_sequential_schedule(cls: type, section: str) -> None:
    handler = build(cls, **{section: {"sequential": True, "max_message_rounds": 7}})
    expected = [{V0, V1}, {P0}, {P1}, {V0, V1}, {P0}, {P1}, {V0, V1}]
    assert [active_pairs(handler, r) for r in range(7)] == expected
    assert handler.max_verifier_questions == 3

    swapped = build(cls, **{section: {"sequential": True, "prover0_first": False}})
    assert [active_pairs(swapped, r) for r in range(3)] == [{V0, V1}, {P1}, {P0}]

    provers_first = build(
        cls,
        protocol_common={"verifier_first": False},
        **{section: {"sequential": True, "max_message_rounds": 6}},
    )
    assert [active_pairs(provers_first, r) for r in range(6)] == [
        {P0},
        {P1},
        {V0, V1},
        {P0},
        {P1},
        {V0, V1},
    ]
    assert provers_first.max_verifier_questions == 2


def test_mnip_reads_mnip_protocol_not_nip_protocol() -> None:
    handler = build(
        MnipProtocolHandler,
        nip_protocol={"min_message_rounds": 1, "max_message_rounds": 8},
        mnip_protocol={"min_message_rounds": 2, "max_message_rounds": 5},
    )
    assert (handler.min_message_rounds, handler.max_message_rounds) == (2, 5)


def test_debate_reads_debate_protocol() -> None:
    handler = build(
        DebateProtocolHandler,
        debate_protocol={"max_message_rounds": 3, "sequential": True},
        mnip_protocol={"max_message_rounds": 9},
    )
    assert handler.max_message_rounds == 3
    assert active_pairs(handler, 1) == {P0}


def test_debate_visibility_is_everyone_sees_everything() -> None:
    handler = build(DebateProtocolHandler)
    assert handler.agent_channel_visibility_mask.tolist() == [
        [True, True],
        [True, True],
        [True, True],
    ]


def test_mnip_visibility_each_prover_sees_only_its_channel() -> None:
    handler = build(MnipProtocolHandler)
    assert handler.get_agent_visible_channels("prover0") == ["prover0_channel"]
    assert handler.get_agent_visible_channels("prover1") == ["prover1_channel"]
    assert handler.get_agent_visible_channels("verifier") == [
        "prover0_channel",
        "prover1_channel",
    ]
    assert handler.agent_channel_visibility_mask.tolist() == [
        [True, False],
        [False, True],
        [True, True],
    ]


# ---------------------------------------------------------------------------------
# merlin_arthur, solo_verifier, multi_channel_test
# ---------------------------------------------------------------------------------


def test_merlin_arthur_prover_is_chosen_by_seed_parity() -> None:
    handler = build(MerlinArthurProtocolHandler)
    rounds = torch.tensor([0, 0, 0, 0, 1, 1])
    seeds = torch.tensor([0, 1, 2, 7, 0, 1])
    mask = handler.get_active_agents_mask_from_rounds_and_seed(rounds, seeds)
    assert mask.shape == (6, 3, 1)
    assert mask[..., 0].tolist() == [
        [True, False, False],  # even seed: prover0
        [False, True, False],  # odd seed: prover1
        [True, False, False],
        [False, True, False],
        [False, False, True],  # round 1: the verifier
        [False, False, True],
    ]
    assert guess_rounds(handler, seed=0) == [1] == guess_rounds(handler, seed=1)
    assert handler.can_agent_be_active("prover0", 0, "main")
    assert handler.can_agent_be_active("prover1", 0, "main")
    assert not handler.can_agent_be_active("verifier", 0, "main")
    assert handler.max_verifier_questions == 1


def test_solo_verifier_has_one_round() -> None:
    handler = build(SoloVerifierProtocolHandler)
    assert handler.agent_names == ["verifier"]
    assert (handler.min_message_rounds, handler.max_message_rounds) == (1, 1)
    assert active_pairs(handler, 0) == {V}
    assert handler.max_verifier_questions == 1
    assert handler.prover_names == []


def test_multi_channel_test_schedule_and_visibility() -> None:
    handler = build(MultiChannelTestProtocolHandler)
    assert handler.message_channel_names == ["main", "prover0_verifier", "prover_chat"]
    assert (handler.min_message_rounds, handler.max_message_rounds) == (2, 8)
    expected = [
        {("prover1", "main"), ("prover0", "prover_chat")},
        {
            ("prover2", "main"),
            ("prover0", "prover0_verifier"),
            ("prover1", "prover_chat"),
        },
        {
            ("verifier", "main"),
            ("verifier", "prover0_verifier"),
            ("prover2", "prover_chat"),
        },
    ]
    assert [active_pairs(handler, r) for r in range(6)] == expected * 2
    assert guess_rounds(handler) == [2, 5]
    # Derived from the schedule (the original hard-coded 4)
    assert handler.max_verifier_questions == 2
    assert handler.agent_channel_visibility_mask.tolist() == [
        [True, True, True],
        [True, False, True],
        [True, False, True],
        [True, True, False],
    ]


# ---------------------------------------------------------------------------------
# Masks in general
# ---------------------------------------------------------------------------------


def test_masks_keep_the_batch_shape() -> None:
    handler = build(DebateProtocolHandler)
    rounds = torch.tensor([[0, 1, 2], [3, 4, 5]])
    active = handler.get_active_agents_mask_from_rounds_and_seed(rounds, None)
    assert active.shape == (2, 3, 3, 2)
    assert torch.equal(active[1, 2], active[0, 1])
    guess = handler.get_verifier_guess_mask_from_rounds_and_seed(rounds, None)
    assert guess.tolist() == [[True, False, True], [False, True, False]]


def test_rounds_outside_the_schedule_are_silent() -> None:
    handler = build(NipProtocolHandler)
    mask = handler.get_active_agents_mask_from_rounds_and_seed(
        torch.tensor([-1, 8, 100]), None
    )
    assert not mask.any()


def test_decision_mask_and_restriction() -> None:
    handler = build(NipProtocolHandler, nip_protocol={"min_message_rounds": 3})
    rounds = torch.arange(8)
    restriction = handler.get_decision_restriction_from_rounds_and_seed(rounds, None)
    # verifier turns 0, 2, 4, 6; verdicts count from round 2; round 6 is its last
    assert restriction.tolist() == [1, 1, 0, 1, 0, 1, 2, 1]
    decision_mask = handler.get_decision_mask_from_rounds_and_seed(rounds, None)
    assert decision_mask[:, 0].tolist() == [False] * 8
    assert decision_mask[:, 1].tolist() == [
        False,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize(
    "cls, sections",
    [
        (NipProtocolHandler, {"nip_protocol": {"min_message_rounds": 2}}),
        (
            NipProtocolHandler,
            {"protocol_common": {"verifier_first": False}, "nip_protocol": {}},
        ),
        (
            DebateProtocolHandler,
            {"debate_protocol": {"sequential": True, "max_message_rounds": 7}},
        ),
        (MnipProtocolHandler, {"mnip_protocol": {"min_message_rounds": 3}}),
        (MultiChannelTestProtocolHandler, {}),
        (SoloVerifierProtocolHandler, {}),
    ],
)
def test_restriction_follows_the_schedule_on_any_batch_shape(cls, sections) -> None:
    handler = build(cls, **sections)
    turns = [
        r
        for r in range(handler.max_message_rounds)
        if handler.can_agent_be_active_any_channel("verifier", r)
    ]
    min_round = handler.min_message_rounds - 1
    expected = []
    for r in range(handler.max_message_rounds):
        if r not in turns or r < min_round:
            expected.append(1)
        elif r == turns[-1]:
            expected.append(2)
        else:
            expected.append(0)
    rounds = torch.arange(handler.max_message_rounds)
    batch = torch.stack([rounds, rounds.flip(0)])  # batch shape (2, R)
    restriction = handler.get_decision_restriction_from_rounds_and_seed(
        batch, torch.zeros_like(batch)
    )
    assert restriction.shape == batch.shape
    assert restriction[0].tolist() == expected
    assert restriction[1].tolist() == expected[::-1]


def test_merlin_arthur_restriction_depends_on_round_only() -> None:
    handler = build(MerlinArthurProtocolHandler)
    restriction = handler.get_decision_restriction_from_rounds_and_seed(
        torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0, 1, 1])
    )
    assert restriction.tolist() == [1, 2, 1, 2]


def test_visibility_mask_matches_pairs_for_every_protocol() -> None:
    for cls in [
        NipProtocolHandler,
        AdpProtocolHandler,
        DebateProtocolHandler,
        MerlinArthurProtocolHandler,
        MnipProtocolHandler,
        SoloVerifierProtocolHandler,
        MultiChannelTestProtocolHandler,
    ]:
        handler = build(cls)
        mask = handler.agent_channel_visibility_mask
        pairs = {
            (handler.agent_names[a], handler.message_channel_names[c])
            for a, c in mask.nonzero().tolist()
        }
        assert pairs == set(handler.agent_channel_visibility), cls.__name__


def test_provers_and_verifiers_by_name() -> None:
    handler = build(MultiChannelTestProtocolHandler)
    assert handler.prover_names == ["prover0", "prover1", "prover2"]
    assert handler.prover_indices == [0, 1, 2]
    assert handler.verifier_names == ["verifier"]
    assert handler.is_prover("prover2") and not handler.is_prover("verifier")
    assert handler.default_stackelberg_sequence == (
        ("verifier",),
        ("prover0", "prover1", "prover2"),
    )
    assert handler.agent_first_active_round == {
        "prover0": 0,
        "prover1": 0,
        "prover2": 1,
        "verifier": 2,
    }


# ---------------------------------------------------------------------------------
# Warnings and validation
# ---------------------------------------------------------------------------------


def test_even_rounds_with_verifier_first_warn() -> None:
    with pytest.warns(ProtocolWarning, match="round 7 of max_message_rounds=8"):
        NipProtocolHandler.from_sections()
    with pytest.warns(ProtocolWarning, match="debate_protocol.max_message_rounds to 5"):
        DebateProtocolHandler.from_sections(debate_protocol={"max_message_rounds": 6})
    with pytest.warns(ProtocolWarning, match="rounds 4 to 5"):
        MnipProtocolHandler.from_sections(
            mnip_protocol={"sequential": True, "max_message_rounds": 6}
        )


def test_rounds_the_verifier_can_use_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NipProtocolHandler.from_sections(nip_protocol={"max_message_rounds": 7})
        NipProtocolHandler.from_sections(
            protocol_common={"verifier_first": False},
            nip_protocol={"max_message_rounds": 8},
        )
        AdpProtocolHandler.from_sections()
        MerlinArthurProtocolHandler.from_sections()
        SoloVerifierProtocolHandler.from_sections()
        MultiChannelTestProtocolHandler.from_sections()


def test_prover_first_odd_rounds_warn_too() -> None:
    with pytest.warns(ProtocolWarning, match="round 6 of max_message_rounds=7"):
        NipProtocolHandler.from_sections(
            protocol_common={"verifier_first": False},
            nip_protocol={"max_message_rounds": 7},
        )


def test_agent_name_rules() -> None:
    validate_agent_names(["prover0", "prover1", "verifier"])
    with pytest.raises(ProtocolSpecificationError, match="'prover' is a substring"):
        validate_agent_names(["prover", "prover1", "verifier"])
    with pytest.raises(ProtocolSpecificationError, match="appears twice"):
        validate_agent_names(["verifier", "verifier"])
    with pytest.raises(ProtocolSpecificationError, match="not a valid agent name"):
        validate_agent_names(["bad name", "verifier"])
    validate_agent_names(
        ["verifier", "adversarial_verifier"],
        frozenset({("verifier", "adversarial_verifier")}),
    )


class _TwoChannelToy(DeterministicProtocolHandler, SingleVerifierProtocolHandler):
    """A handler for checking validation; its parts are set per test."""

    names = ["prover", "verifier"]
    channels = ["a", "b"]
    visibility = [("prover", "a"), ("verifier", "a"), ("verifier", "b")]
    schedule = {("verifier", "a"): True}

    @property
    def agent_names(self) -> list[str]:
        return self.names

    @property
    def message_channel_names(self) -> list[str]:
        return self.channels

    @property
    def agent_channel_visibility(self) -> list[tuple[str, str]]:
        return self.visibility

    max_message_rounds = 2
    min_message_rounds = 1

    def is_agent_active(
        self, agent_name: str, round_id: int, channel_name: str
    ) -> bool:
        return self.schedule.get((agent_name, channel_name), False)


def test_toy_handler_is_valid() -> None:
    handler = _TwoChannelToy.from_sections()
    assert active_pairs(handler, 1) == {("verifier", "a")}


@pytest.mark.parametrize(
    "attribute, value, message",
    [
        ("names", ["prover", "prover_verifier"], "substring"),
        ("schedule", {("prover", "b"): True, ("verifier", "a"): True}, "cannot see it"),
        ("schedule", {}, "no verifier is ever active"),
        ("visibility", [("verifier", "a"), ("verifier", "b")], "sees no channel"),
        ("visibility", [("ghost", "a")], "unknown agent"),
        ("channels", ["a", "a"], "duplicate channel"),
        ("names", ["prover", "judge"], "has no verifier"),
    ],
)
def test_inconsistent_handlers_are_refused(attribute, value, message) -> None:
    toy = type("Toy", (_TwoChannelToy,), {attribute: value})
    with pytest.raises(ProtocolSpecificationError, match=message):
        toy.from_sections()


def test_randomized_stance_needs_one_prover() -> None:
    with pytest.raises(NipConfigError, match="exactly one prover"):
        build(DebateProtocolHandler, protocol_common={"randomize_prover_stance": True})
    handler = build(
        NipProtocolHandler, protocol_common={"randomize_prover_stance": True}
    )
    stance = handler.get_prover_stance_from_seed(torch.tensor([0, 1, 2, 3, 65535]))
    assert stance.tolist() == [0, 1, 0, 1, 1]


def test_fixed_stance_is_accept() -> None:
    handler = build(NipProtocolHandler)
    assert handler.get_prover_stance_from_seed(torch.tensor([0, 1])).tolist() == [1, 1]


def test_device_follows_the_round_tensor() -> None:
    handler = build(NipProtocolHandler)
    rounds = torch.tensor([0, 1], device="meta")
    mask = handler.get_active_agents_mask_from_rounds_and_seed(rounds, None)
    assert mask.device.type == "meta"


class _SectionReadingToy(_TwoChannelToy):
    """Reads its round limit from a plugin's own section."""

    @property
    def max_message_rounds(self) -> int:
        return self.hyper_params.toy_protocol["rounds"]


def test_plugin_sections_reach_the_handler() -> None:
    handler = _SectionReadingToy.from_sections(toy_protocol={"rounds": 5})
    assert handler.max_message_rounds == 5
    with pytest.raises(AttributeError, match="no parameter section 'toy_protocol'"):
        _SectionReadingToy.from_sections()


@pytest.mark.parametrize(
    ("handler", "section", "sections", "first_turn"),
    [
        ("nip", "nip_protocol", {"max_message_rounds": 1}, 1),
        # sequential: prover0, prover1, then the verifier
        ("mnip", "mnip_protocol", {"max_message_rounds": 2, "sequential": True}, 2),
        ("debate", "debate_protocol", {"max_message_rounds": 2, "sequential": True}, 2),
    ],
)
def test_round_limits_without_a_verifier_turn_name_the_rounds_needed(
    handler, section, sections, first_turn
) -> None:
    """The rounds come from the user's config: a config error on
    max_message_rounds with the smallest value that gives the verifier a turn."""
    import warnings

    from nip_core.errors import NipConfigError
    from nip_core.protocols.main_protocols import (
        DebateProtocolHandler,
        MnipProtocolHandler,
    )

    cls = {
        "nip": NipProtocolHandler,
        "mnip": MnipProtocolHandler,
        "debate": DebateProtocolHandler,
    }[handler]
    limits = {**sections, "min_message_rounds": 1}
    common = {"verifier_first": False}
    with pytest.raises(NipConfigError) as caught:
        cls.from_sections(protocol_common=common, **{section: limits})
    (problem,) = caught.value.problems
    assert problem.path == f"{section}.max_message_rounds"
    assert problem.value == sections["max_message_rounds"]
    assert f"with these settings its first turn is round {first_turn}" in (
        problem.message
    )
    assert f"Set max_message_rounds to at least {first_turn + 1}" in problem.message
    # the value it names is accepted
    limits["max_message_rounds"] = first_turn + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        handler = cls.from_sections(protocol_common=common, **{section: limits})
    assert handler.verifier_turn_rounds == (first_turn,)
