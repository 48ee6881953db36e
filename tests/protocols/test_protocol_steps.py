"""Done signals, termination and rewards of single-verifier protocol steps."""

from __future__ import annotations

import warnings

import pytest
import torch

from nip_core.protocols.base import ProtocolHandler, ProtocolWarning
from nip_core.protocols.main_protocols import (
    AdpProtocolHandler,
    DebateProtocolHandler,
    MerlinArthurProtocolHandler,
    MnipProtocolHandler,
    NipProtocolHandler,
    SoloVerifierProtocolHandler,
)
from nip_core.testing.contracts.protocol import make_protocol_step_td
from nip_core.testing.protocols import MultiChannelTestProtocolHandler
from nip_core.text.parsing import parse_decision

# Distinct values, so every branch shows in the rewards
REWARDS = {
    "verifier_reward": 1.0,
    "verifier_incorrect_penalty": -1.0,
    "verifier_no_guess_reward": 0.25,
    "verifier_terminated_penalty": -2.0,
    "prover_reward": 0.5,
}

R, A, C = 0, 1, 2  # reject, accept, continue


def build(cls: type[ProtocolHandler], common=None, **sections) -> ProtocolHandler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProtocolWarning)
        return cls.from_sections(
            protocol_common={**REWARDS, **(common or {})}, **sections
        )


def step(handler: ProtocolHandler, rounds, decisions, **inputs):
    td = make_protocol_step_td(handler, rounds, decisions, **inputs)
    shared_done, agent_done, terminated, reward = handler.step_interaction_protocol(td)
    return (
        shared_done.tolist(),
        agent_done.tolist(),
        terminated.tolist(),
        reward.tolist(),
    )


# ---------------------------------------------------------------------------------
# nip: every branch
# ---------------------------------------------------------------------------------


def test_nip_branches() -> None:
    handler = build(NipProtocolHandler)  # agents: prover, verifier
    rows = [
        # round, (prover, verifier) decisions, y
        (0, (C, A), 1),  # accept, right
        (0, (C, R), 0),  # reject, right
        (0, (C, A), 0),  # accept, wrong
        (0, (C, R), 1),  # reject, wrong
        (0, (C, C), 1),  # continue on its turn
        (1, (C, A), 1),  # verdict off-turn: ignored
        (6, (C, A), 1),  # accept on its last turn
        (7, (C, C), 1),  # last round, no verdict: terminated
        (7, (A, A), 1),  # last round is the prover's: verdict ignored, terminated
    ]
    done, agent_done, terminated, reward = step(
        handler,
        [r[0] for r in rows],
        [list(r[1]) for r in rows],
        y=[r[2] for r in rows],
    )
    assert done == [True, True, True, True, False, False, True, True, True]
    assert terminated == [False, False, False, False, False, False, False, True, True]
    assert agent_done == [[d, d] for d in done]
    assert reward == [
        [0.5, 1.0],
        [0.0, 1.0],
        [0.5, -1.0],
        [0.0, -1.0],
        [0.0, 0.25],
        [0.0, 0.0],
        [0.5, 1.0],
        [0.0, -2.0],
        [0.0, -2.0],
    ]


def test_nip_decisions_before_min_rounds_are_ignored() -> None:
    handler = build(NipProtocolHandler, nip_protocol={"min_message_rounds": 3})
    done, _, terminated, reward = step(
        handler, [0, 2, 4], [[C, A], [C, A], [C, R]], y=[1, 1, 1]
    )
    # round 0 < min - 1 = 2: the verdict counts as continuing
    assert done == [False, True, True]
    assert terminated == [False, False, False]
    assert reward == [[0.0, 0.25], [0.5, 1.0], [0.0, -1.0]]


def test_nip_prover_first() -> None:
    handler = build(
        NipProtocolHandler,
        common={"verifier_first": False},
        nip_protocol={"max_message_rounds": 4},
    )
    done, _, terminated, reward = step(
        handler, [0, 1, 3], [[C, A], [C, A], [C, C]], y=[1, 0, 1]
    )
    assert done == [False, True, True]
    assert terminated == [False, False, True]
    assert reward == [[0.0, 0.0], [0.5, -1.0], [0.0, -2.0]]


def test_already_done_rows_stay_done_and_earn_nothing() -> None:
    handler = build(NipProtocolHandler)
    done, agent_done, terminated, reward = step(
        handler,
        [0, 7, 2],
        [[C, A], [C, C], [C, C]],
        done=[True, True, True],
        terminated=[False, True, False],
    )
    assert done == [True, True, True]
    assert agent_done == [[True, True]] * 3
    assert terminated == [False, True, False]
    assert reward == [[0.0, 0.0]] * 3


def test_shared_reward_gives_provers_the_verifier_reward() -> None:
    handler = build(NipProtocolHandler, common={"shared_reward": True})
    _, _, _, reward = step(
        handler,
        [0, 0, 0, 1, 7],
        [[C, A], [C, A], [C, C], [C, C], [C, C]],
        y=[1, 0, 1, 1, 1],
    )
    assert reward == [
        [1.0, 1.0],
        [-1.0, -1.0],
        [0.25, 0.25],
        [0.0, 0.0],
        [-2.0, -2.0],
    ]


def test_randomized_stance_from_the_seed() -> None:
    handler = build(NipProtocolHandler, common={"randomize_prover_stance": True})
    # stance = seed % 2: seeds 4 and 6 argue for reject, 5 and 7 for accept
    _, _, _, reward = step(
        handler,
        [0, 0, 0, 0],
        [[C, R], [C, R], [C, A], [C, A]],
        y=[0, 0, 1, 1],
        seed=[4, 5, 6, 7],
    )
    assert [row[0] for row in reward] == [0.5, 0.0, 0.0, 0.5]
    assert [row[1] for row in reward] == [1.0, 1.0, 1.0, 1.0]


def test_explicit_prover_stance_wins_over_the_seed() -> None:
    handler = build(NipProtocolHandler, common={"randomize_prover_stance": True})
    _, _, _, reward = step(
        handler,
        [0, 0],
        [[C, R], [C, R]],
        y=[0, 0],
        seed=[5, 4],
        prover_stance=[0, 1],
    )
    assert [row[0] for row in reward] == [0.5, 0.0]


@pytest.mark.parametrize(
    "force, y, verdict_reward, prover",
    [
        ("one", 1, 1.0, 0.5),
        ("one", 0, -1.0, 0.5),
        ("zero", 1, -1.0, 0.0),
        ("zero", 0, 1.0, 0.0),
        ("y", 0, 1.0, 0.0),
        ("y", 1, 1.0, 0.5),
    ],
)
def test_force_guess_forces_the_verdict_and_its_rewards(
    force: str, y: int, verdict_reward: float, prover: float
) -> None:
    handler = build(NipProtocolHandler, common={"force_guess": force})
    # The verifier itself wants to continue; the forced verdict still ends the
    # episode and decides the rewards.
    done, _, terminated, reward = step(handler, [0, 1], [[C, C], [C, C]], y=[y, y])
    assert done == [True, False]
    assert terminated == [False, False]
    assert reward == [[prover, verdict_reward], [0.0, 0.0]]


def test_force_guess_waits_for_min_rounds() -> None:
    handler = build(
        NipProtocolHandler,
        common={"force_guess": "one"},
        nip_protocol={"min_message_rounds": 3},
    )
    done, _, _, reward = step(handler, [0, 2], [[C, R], [C, R]], y=[1, 1])
    assert done == [False, True]
    assert reward == [[0.0, 0.25], [0.5, 1.0]]


def test_effective_decision_is_exposed_for_logging() -> None:
    handler = build(NipProtocolHandler, common={"force_guess": "y"})
    decision = torch.tensor([2, 0, 1])
    y = torch.tensor([1, 1, 0])
    assert handler.get_effective_verifier_decision(decision, y).tolist() == [1, 1, 0]
    plain = build(NipProtocolHandler)
    assert plain.get_effective_verifier_decision(decision, y).tolist() == [2, 0, 1]


def test_invalid_prover_response_is_penalised_and_terminates() -> None:
    handler = build(
        NipProtocolHandler, common={"prover_invalid_response_penalty": -3.0}
    )
    td = make_protocol_step_td(handler, [1, 1], [[C, C], [C, C]])
    td["agents", "valid_response"] = torch.tensor([[False, True], [True, True]])
    shared_done, _, terminated, reward = handler.step_interaction_protocol(td)
    assert shared_done.tolist() == [True, False]
    assert terminated.tolist() == [True, False]
    assert reward.tolist() == [[-3.0, 0.0], [0.0, 0.0]]


def test_y_without_trailing_dimension_and_plain_dicts_are_accepted() -> None:
    handler = build(NipProtocolHandler)
    data = {
        "round": torch.tensor([0, 0]),
        "seed": torch.tensor([0, 0]),
        "y": torch.tensor([1, 0]),
        "done": torch.tensor([False, False]),
        "terminated": torch.tensor([False, False]),
        "agents": {"decision": torch.tensor([[C, A], [C, A]])},
    }
    shared_done, agent_done, _, reward = handler.step_interaction_protocol(data)
    assert shared_done.tolist() == [True, True]
    assert agent_done.tolist() == [[True, True], [True, True]]
    assert reward.tolist() == [[0.5, 1.0], [0.5, -1.0]]


def test_trailing_feature_dimensions_are_accepted() -> None:
    handler = build(NipProtocolHandler)
    td = make_protocol_step_td(handler, [0, 0], [[C, A], [C, A]], y=[1, 1])
    td["done"] = torch.tensor([[False], [True]])
    td["agents", "done"] = torch.zeros(2, 2, 1, dtype=torch.bool)
    shared_done, agent_done, _, reward = handler.step_interaction_protocol(td)
    assert shared_done.tolist() == [True, True]
    assert agent_done.shape == (2, 2)
    assert reward.tolist() == [[0.5, 1.0], [0.0, 0.0]]


def test_missing_keys_and_wrong_shapes_are_explained() -> None:
    handler = build(NipProtocolHandler)
    td = make_protocol_step_td(handler, [0], [[C, A]])
    del td["seed"]
    with pytest.raises(KeyError, match="'seed'"):
        handler.step_interaction_protocol(td)
    td = make_protocol_step_td(handler, [0, 1], [[C, A], [C, A]])
    td["y"] = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="y has shape"):
        handler.step_interaction_protocol(td)


def test_batch_of_two_dimensions() -> None:
    handler = build(NipProtocolHandler)
    td = make_protocol_step_td(
        handler, [0, 1, 2, 7], [[C, A], [C, A], [C, R], [C, C]], y=[1, 1, 1, 1]
    ).reshape(2, 2)
    shared_done, agent_done, terminated, reward = handler.step_interaction_protocol(td)
    assert shared_done.tolist() == [[True, False], [True, True]]
    assert terminated.tolist() == [[False, False], [False, True]]
    assert agent_done.shape == (2, 2, 2)
    assert reward.tolist() == [[[0.5, 1.0], [0.0, 0.0]], [[0.0, -1.0], [0.0, -2.0]]]


# ---------------------------------------------------------------------------------
# Other protocols
# ---------------------------------------------------------------------------------


def test_adp() -> None:
    handler = build(AdpProtocolHandler)
    done, _, terminated, reward = step(
        handler, [0, 1, 1, 1], [[C, A], [C, A], [C, R], [C, C]], y=[1, 1, 1, 0]
    )
    assert done == [False, True, True, True]
    assert terminated == [False, False, False, True]
    assert reward == [[0.0, 0.0], [0.5, 1.0], [0.0, -1.0], [0.0, -2.0]]


def test_debate_two_prover_rule() -> None:
    handler = build(DebateProtocolHandler)  # prover0, prover1, verifier
    done, _, terminated, reward = step(
        handler,
        [0, 0, 0, 0, 1, 0, 7],
        [[C, C, R], [C, C, A], [C, C, A], [C, C, R], [R, A, A], [C, C, C], [C, C, C]],
        y=[0, 1, 0, 1, 1, 1, 1],
    )
    assert done == [True, True, True, True, False, False, True]
    assert terminated == [False, False, False, False, False, False, True]
    assert reward == [
        [0.5, 0.0, 1.0],  # reject: prover0 wins
        [0.0, 0.5, 1.0],  # accept: prover1 wins
        [0.0, 0.5, -1.0],
        [0.5, 0.0, -1.0],
        [0.0, 0.0, 0.0],  # provers' turn: the verifier's verdict is ignored
        [0.0, 0.0, 0.25],
        [0.0, 0.0, -2.0],
    ]


def test_debate_sequential_verdict_only_every_third_round() -> None:
    handler = build(
        DebateProtocolHandler,
        debate_protocol={"sequential": True, "max_message_rounds": 7},
    )
    done, _, _, reward = step(
        handler, [1, 2, 3], [[C, C, A], [C, C, A], [C, C, A]], y=[1, 1, 1]
    )
    assert done == [False, False, True]
    assert reward[2] == [0.0, 0.5, 1.0]


def test_mnip_provers_win_as_two_provers_do() -> None:
    # prover0 on reject, prover1 on accept (REFERENCE: the two-prover rule)
    handler = build(MnipProtocolHandler)
    _, _, _, reward = step(
        handler, [0, 0, 0], [[C, C, A], [C, C, R], [C, C, C]], y=[0, 0, 1]
    )
    assert reward == [[0.0, 0.5, -1.0], [0.5, 0.0, 1.0], [0.0, 0.0, 0.25]]


def test_mnip_shared_reward() -> None:
    handler = build(MnipProtocolHandler, common={"shared_reward": True})
    _, _, _, reward = step(handler, [0], [[C, C, R]], y=[0])
    assert reward == [[1.0, 1.0, 1.0]]


def test_merlin_arthur() -> None:
    handler = build(MerlinArthurProtocolHandler)
    done, _, terminated, reward = step(
        handler,
        [0, 0, 1, 1, 1],
        [[C, C, A], [C, C, A], [C, C, A], [C, C, R], [C, C, C]],
        y=[1, 1, 0, 0, 1],
        seed=[0, 1, 2, 3, 4],
    )
    assert done == [False, False, True, True, True]
    assert terminated == [False, False, False, False, True]
    assert reward == [
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 0.5, -1.0],
        [0.5, 0.0, 1.0],
        [0.0, 0.0, -2.0],
    ]


def test_solo_verifier() -> None:
    handler = build(SoloVerifierProtocolHandler)
    done, agent_done, terminated, reward = step(
        handler, [0, 0, 0], [[A], [A], [C]], y=[1, 0, 1]
    )
    assert done == [True, True, True]
    assert agent_done == [[True], [True], [True]]
    assert terminated == [False, False, True]
    assert reward == [[1.0], [-1.0], [-2.0]]


def test_multi_channel_test() -> None:
    handler = build(MultiChannelTestProtocolHandler)  # prover0..2, verifier
    done, _, terminated, reward = step(
        handler,
        [0, 2, 2, 5, 7],
        [[C, C, C, A], [C, C, C, A], [C, C, C, C], [C, C, C, R], [C, C, C, C]],
        y=[1, 1, 1, 0, 1],
    )
    assert done == [False, True, False, True, True]
    assert terminated == [False, False, False, False, True]
    assert reward == [
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 0.25],
        [0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, -2.0],
    ]


# ---------------------------------------------------------------------------------
# Reward ranges
# ---------------------------------------------------------------------------------


def test_reward_ranges() -> None:
    handler = build(NipProtocolHandler, nip_protocol={"max_message_rounds": 7})
    # 4 verifier turns (rounds 0, 2, 4, 6): a verdict after 3 continues (+0.75),
    # or 3 continues and no verdict on its turn in the last round, which is
    # terminated (-2 instead of a continue reward): 0.75 - 2
    assert handler.max_reward("verifier") == pytest.approx(1.75)
    assert handler.min_reward("verifier") == pytest.approx(-1.25)
    assert handler.reward_mid_point_estimate("verifier") == pytest.approx(0.25)
    assert handler.max_reward("prover") == 0.5
    assert handler.min_reward("prover") == 0.0
    assert handler.reward_mid_point_estimate("prover") == 0.25
    # the last round is the prover's: 4 continues, then -2 in round 7
    even = build(NipProtocolHandler, nip_protocol={"max_message_rounds": 8})
    assert even.min_reward("verifier") == pytest.approx(-1.0)
    multi = build(MultiChannelTestProtocolHandler)
    assert multi.max_reward("prover1") == 0.0
    with pytest.raises(KeyError):
        handler.max_reward("judge")


def _reachable_returns(handler: ProtocolHandler) -> dict[str, tuple[float, float]]:
    """Every return an episode can end with, found by playing every verifier
    decision (and, with the penalty, every invalid prover response) through the
    protocol's step, for both labels and seed parities."""
    v = handler.verifier_index
    found: dict[str, set[float]] = {name: set() for name in handler.agent_names}
    penalty = handler.protocol_common.prover_invalid_response_penalty
    # the verdicts the verifier can give: "neither" (3) only on a scale with a
    # middle (what the text parser reads from every verdict of the scale)
    verdicts = {R, A}
    for statement in ("undecided", *map(str, range(101))):
        parsed = parse_decision(
            f"Decision: {statement}", handler.protocol_common.verifier_decision_spectrum
        )
        if parsed.valid:
            verdicts.add(parsed.decision)

    def play(round_id, y, seed, done, agent_done, terminated, total):
        if done or round_id == handler.max_message_rounds:
            for i, name in enumerate(handler.agent_names):
                found[name].add(round(total[i], 9))
            return
        active = handler.get_active_agents_mask_from_rounds_and_seed(
            torch.tensor([round_id]), torch.tensor([seed])
        )[0].any(dim=-1)
        choices = (*sorted(verdicts), C) if bool(active[v]) else (C,)
        invalid = [None]
        if penalty is not None:
            invalid += [i for i in handler.prover_indices if bool(active[i])]
        for choice in choices:
            for bad in invalid:
                decisions = [C] * handler.num_agents
                decisions[v] = choice
                td = make_protocol_step_td(
                    handler,
                    [round_id],
                    [decisions],
                    y=[y],
                    seed=[seed],
                    done=[done],
                    agent_done=[agent_done],
                    terminated=[terminated],
                )
                valid = torch.ones(1, handler.num_agents, dtype=torch.bool)
                if bad is not None:
                    valid[0, bad] = False
                td["agents", "valid_response"] = valid
                shared, agents, term, reward = handler.step_interaction_protocol(td)
                play(
                    round_id + 1,
                    y,
                    seed,
                    bool(shared[0]) or bool(term[0]),
                    agents[0].tolist(),
                    bool(term[0]),
                    [t + float(r) for t, r in zip(total, reward[0], strict=True)],
                )

    for y in (0, 1):
        for seed in (0, 1):
            zeros = [0.0] * handler.num_agents
            play(0, y, seed, False, [False] * handler.num_agents, False, zeros)
    return {name: (min(values), max(values)) for name, values in found.items()}


@pytest.mark.parametrize(
    ("cls", "section", "common"),
    [
        (NipProtocolHandler, {"max_message_rounds": 5}, {}),
        (NipProtocolHandler, {"max_message_rounds": 5}, {"verifier_first": False}),
        (
            NipProtocolHandler,
            {"max_message_rounds": 5},
            {"verifier_no_guess_reward": -0.25, "verifier_terminated_penalty": -1.0},
        ),
        (
            NipProtocolHandler,
            {"max_message_rounds": 5, "min_message_rounds": 3},
            {"verifier_no_guess_reward": -0.25},
        ),
        (
            NipProtocolHandler,
            {"max_message_rounds": 4, "min_message_rounds": 2},
            {"shared_reward": True, "prover_invalid_response_penalty": -2.0},
        ),
        (DebateProtocolHandler, {"max_message_rounds": 5}, {}),
        (
            MnipProtocolHandler,
            {"max_message_rounds": 4, "min_message_rounds": 2},
            {"verifier_no_guess_reward": -0.25},
        ),
        (AdpProtocolHandler, None, {"verifier_terminated_penalty": -3.0}),
        (MerlinArthurProtocolHandler, None, {"prover_invalid_response_penalty": 0.5}),
        (SoloVerifierProtocolHandler, None, {"verifier_terminated_penalty": -3.0}),
        # a scale with a middle: "neither" is a verdict, with its own reward
        (
            NipProtocolHandler,
            {"max_message_rounds": 3},
            {
                "verifier_decision_spectrum": "likert_scale_5",
                "verifier_neither_accept_nor_reject_reward": 3.0,
            },
        ),
        (
            NipProtocolHandler,
            {"max_message_rounds": 3},
            {
                "verifier_decision_spectrum": "likert_scale_6",
                "verifier_neither_accept_nor_reject_reward": 3.0,
            },
        ),
        # a forced verdict: on the first turn it counts on, never "neither"
        *(
            (
                NipProtocolHandler,
                {"max_message_rounds": 6, "min_message_rounds": 3},
                {
                    "force_guess": force,
                    "verifier_no_guess_reward": 0.25,
                    "verifier_decision_spectrum": "out_of_10",
                    "verifier_neither_accept_nor_reject_reward": -4.0,
                    "shared_reward": shared,
                    "prover_invalid_response_penalty": -2.0,
                },
            )
            for force in ("y", "zero", "one")
            for shared in (False, True)
        ),
        (
            DebateProtocolHandler,
            {"max_message_rounds": 4},
            {"force_guess": "y", "verifier_terminated_penalty": -3.0},
        ),
        (
            MnipProtocolHandler,
            {"max_message_rounds": 4, "min_message_rounds": 2},
            {"force_guess": "zero", "verifier_no_guess_reward": -0.5},
        ),
        (SoloVerifierProtocolHandler, None, {"force_guess": "one"}),
        # a forced verdict before the prover's first turn: no invalid response of
        # its own can end the episode (nor can one where it never speaks)
        *(
            (
                cls,
                {"max_message_rounds": rounds, "min_message_rounds": 1},
                {"force_guess": "zero", "prover_invalid_response_penalty": -2.0},
            )
            for cls in (NipProtocolHandler, DebateProtocolHandler)
            for rounds in (1, 2)
        ),
        # the other prover's invalid response ends the episode before the verdict:
        # this one gets nothing (or, sharing it, the verifier's reward so far)
        (
            MerlinArthurProtocolHandler,
            None,
            {"force_guess": "zero", "prover_invalid_response_penalty": 3.0},
        ),
        (
            MnipProtocolHandler,
            {"max_message_rounds": 2, "min_message_rounds": 1},
            {
                "verifier_first": False,
                "force_guess": "y",
                "shared_reward": True,
                "prover_invalid_response_penalty": 3.0,
            },
        ),
    ],
)
def test_reward_ranges_are_the_reachable_returns(cls, section, common) -> None:
    # MALT labels a response positive iff its value is at least the middle of the
    # agent's reward range: the range must be the returns the step rules can give
    sections = {} if section is None else {cls.parameter_section: section}
    handler = build(cls, common, **sections)
    for name, (lowest, highest) in _reachable_returns(handler).items():
        assert handler.min_reward(name) == pytest.approx(lowest), name
        assert handler.max_reward(name) == pytest.approx(highest), name
        assert handler.reward_mid_point_estimate(name) == pytest.approx(
            (lowest + highest) / 2
        ), name


def test_reward_range_with_costly_questions_and_a_late_first_verdict() -> None:
    # nip, 5 rounds, verifier first (turns in rounds 0, 2, 4), verdicts count from
    # round 2: the best return is a right verdict on the second turn after one
    # costly continue (1 - 0.25); the worst a termination in round 4 after two
    # continues (-0.5 - 2), not a verdict after three continues
    handler = build(
        NipProtocolHandler,
        {"verifier_no_guess_reward": -0.25},
        nip_protocol={"max_message_rounds": 5, "min_message_rounds": 3},
    )
    assert handler.max_reward("verifier") == pytest.approx(0.75)
    assert handler.min_reward("verifier") == pytest.approx(-2.5)
    assert handler.reward_mid_point_estimate("verifier") == pytest.approx(-0.875)
    # a prover sharing the reward may also be penalised for an invalid response
    # in round 3, after the verifier's two continues: -0.5 - 3
    shared = build(
        NipProtocolHandler,
        {
            "verifier_no_guess_reward": -0.25,
            "shared_reward": True,
            "prover_invalid_response_penalty": -3.0,
        },
        nip_protocol={"max_message_rounds": 5, "min_message_rounds": 3},
    )
    assert shared.min_reward("prover") == pytest.approx(-3.5)
    assert shared.max_reward("prover") == pytest.approx(0.75)


def test_neither_accept_nor_reject_is_a_verdict_with_its_own_reward() -> None:
    # Text worlds: decision 3 ends the episode; the verifier gets the "neither"
    # reward (the mid-point of right and wrong when unset), no prover wins.
    N = 3
    handler = build(NipProtocolHandler)
    done, _, terminated, reward = step(
        handler, [0, 0, 1], [[C, N], [C, N], [C, N]], y=[1, 0, 1]
    )
    assert done == [True, True, False]
    assert terminated == [False, False, False]
    assert reward == [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]

    handler = build(
        DebateProtocolHandler,
        common={"verifier_neither_accept_nor_reject_reward": -0.5},
    )
    done, _, _, reward = step(handler, [0], [[C, C, N]], y=[1])
    assert done == [True]
    assert reward == [[0.0, 0.0, -0.5]]

    shared = build(
        NipProtocolHandler,
        common={
            "verifier_neither_accept_nor_reject_reward": 0.75,
            "shared_reward": True,
        },
    )
    _, _, _, reward = step(shared, [0], [[C, N]], y=[0])
    assert reward == [[0.75, 0.75]]
    # It bounds the verifier's return like any verdict, on a scale with a middle
    assert shared.max_reward("verifier") == pytest.approx(1.0 + 3 * 0.25)
    high = build(
        NipProtocolHandler,
        common={
            "verifier_neither_accept_nor_reject_reward": 4.0,
            "verifier_decision_spectrum": "likert_scale",
        },
        nip_protocol={"max_message_rounds": 1},
    )
    assert high.max_reward("verifier") == 4.0
    # accept or reject only: no verdict can earn it
    for spectrum in ("accept_reject", "likert_scale_4", "likert_scale_no_undecided"):
        two_way = build(
            NipProtocolHandler,
            common={
                "verifier_neither_accept_nor_reject_reward": 4.0,
                "verifier_decision_spectrum": spectrum,
            },
            nip_protocol={"max_message_rounds": 1},
        )
        assert two_way.max_reward("verifier") == 1.0, spectrum
