"""The zero-knowledge wrapper: structure, done rule and rewards."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from nip_core.errors import NipConfigError
from nip_core.protocols.base import ProtocolParameterView, ProtocolWarning
from nip_core.protocols.main_protocols import (
    DebateProtocolHandler,
    NipProtocolHandler,
    SoloVerifierProtocolHandler,
)
from nip_core.protocols.parameters import (
    CommonProtocolParameters,
    ZkProtocolParameters,
)
from nip_core.protocols.zero_knowledge import ZeroKnowledgeProtocolHandler
from nip_core.testing.contracts.protocol import make_protocol_step_td
from nip_core.testing.protocols import MultiChannelTestProtocolHandler

R, A, C = 0, 1, 2
REWARDS = {
    "verifier_reward": 1.0,
    "verifier_incorrect_penalty": -1.0,
    "verifier_no_guess_reward": 0.25,
    "verifier_terminated_penalty": -2.0,
    "prover_reward": 0.5,
}


def zk(base_cls=NipProtocolHandler, coefficient=2.0, aux=0.5, **sections):
    view = ProtocolParameterView(
        protocol_common=CommonProtocolParameters(zero_knowledge=True, **REWARDS),
        zk_protocol=ZkProtocolParameters(
            simulator_reward_coefficient=coefficient, aux_prover_reward_coefficient=aux
        ),
        **sections,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProtocolWarning)
        return ZeroKnowledgeProtocolHandler(view, base_protocol=base_cls)


def zero_logits(handler, batch, message_dims=(1, 2)):
    return (
        torch.zeros(
            (batch, handler.num_agents, handler.num_message_channels, *message_dims)
        ),
        torch.zeros((batch, handler.num_agents, 3)),
    )


def test_structure_over_nip() -> None:
    handler = zk()
    assert handler.agent_names == [
        "prover",
        "verifier",
        "adversarial_verifier",
        "simulator",
    ]
    assert handler.message_channel_names == [
        "main_standard",
        "main_adversarial",
        "main_simulator",
    ]
    assert handler.verifier_names == ["verifier", "adversarial_verifier"]
    assert handler.decider_names == ["verifier", "adversarial_verifier", "simulator"]
    assert handler.prover_names == ["prover"]
    assert handler.agent_channel_visibility_mask.tolist() == [
        [True, True, False],
        [True, False, False],
        [False, True, False],
        [False, False, True],
    ]
    assert handler.max_message_rounds == 8 and handler.max_verifier_questions == 4


def test_channel_order_over_two_channel_base() -> None:
    handler = zk(DebateProtocolHandler)
    assert handler.message_channel_names == [
        "prover0_channel_standard",
        "prover1_channel_standard",
        "prover0_channel_adversarial",
        "prover1_channel_adversarial",
        "prover0_channel_simulator",
        "prover1_channel_simulator",
    ]
    assert handler.split_channel_name("prover1_channel_adversarial") == (
        "prover1_channel",
        "adversarial",
    )


def test_active_masks_over_nip() -> None:
    handler = zk()
    mask = handler.get_active_agents_mask_from_rounds_and_seed(
        torch.tensor([0, 1]), None
    )
    assert mask[0].tolist() == [
        [False, False, False],  # prover
        [True, False, False],  # verifier: standard copy
        [False, True, False],  # adversarial verifier: adversarial copy
        [False, False, True],  # simulator: simulator copy
    ]
    assert mask[1].tolist() == [
        [True, True, False],  # the prover speaks on both copies
        [False, False, False],
        [False, False, False],
        [False, False, False],
    ]


def test_active_masks_over_debate_agree_with_can_agent_be_active() -> None:
    handler = zk(DebateProtocolHandler)
    rounds = torch.arange(handler.max_message_rounds)
    mask = handler.get_active_agents_mask_from_rounds_and_seed(rounds, None)
    for r in range(handler.max_message_rounds):
        for a, agent in enumerate(handler.agent_names):
            for c, channel in enumerate(handler.message_channel_names):
                expected = handler.can_agent_be_active(agent, r, channel)
                assert bool(mask[r, a, c]) == expected, (r, agent, channel)
    # prover0 speaks on its own channel's standard and adversarial copies only
    assert mask[1, 0].tolist() == [True, False, True, False, False, False]


def test_the_simulators_decisions_count_where_the_verifiers_do() -> None:
    # the simulator's reward compares its decision logits with the adversarial
    # verifier's: left out of the decision mask, its decision head never trained
    handler = zk(nip_protocol={"min_message_rounds": 3})
    rounds = torch.arange(8)
    mask = handler.get_decision_mask_from_rounds_and_seed(rounds, None)
    index = handler.agent_index
    counted = [False, False, True, False, True, False, True, False]
    for name in ("verifier", "adversarial_verifier", "simulator"):
        assert mask[:, index(name)].tolist() == counted
    for name in ("prover",):
        assert not mask[:, index(name)].any()


def test_multi_channel_base_keeps_verifier_channels_private() -> None:
    handler = zk(MultiChannelTestProtocolHandler)
    assert handler.get_agent_visible_channels("simulator") == [
        "main_simulator",
        "prover0_verifier_simulator",
    ]
    assert handler.get_agent_visible_channels("prover1") == [
        "main_standard",
        "prover_chat_standard",
        "main_adversarial",
        "prover_chat_adversarial",
    ]


def test_solo_verifier_cannot_be_zero_knowledge() -> None:
    with pytest.raises(NipConfigError, match="no zero-knowledge version"):
        zk(SoloVerifierProtocolHandler)


def test_simulator_reward_with_known_cosine_similarities() -> None:
    handler = zk(coefficient=2.0, aux=0.5)
    messages, decisions = zero_logits(handler, batch=2)
    adv, sim = handler.adversarial_verifier_index, handler.simulator_index
    # adversarial copy (channel 1) vs simulator copy (channel 2): cos = 24 / 25
    messages[:, adv, 1, 0] = torch.tensor([3.0, 4.0])
    messages[:, sim, 2, 0] = torch.tensor([4.0, 3.0])
    # Logits on other channels must be ignored
    messages[:, adv, 0, 0] = torch.tensor([-7.0, 1.0])
    messages[:, sim, 0, 0] = torch.tensor([5.0, 5.0])
    # decisions: cos([1, 0, 0], [1, 1, 0]) = 1 / sqrt(2)
    decisions[:, adv] = torch.tensor([1.0, 0.0, 0.0])
    decisions[:, sim] = torch.tensor([1.0, 1.0, 0.0])
    td = make_protocol_step_td(
        handler,
        [0, 1],  # round 0: verifier turn; round 1: prover turn
        [[C, C, C, C], [C, C, C, C]],
        main_message_logits=messages,
        decision_logits=decisions,
    )
    shared_done, agent_done, terminated, reward = handler.step_interaction_protocol(td)
    simulator = 2.0 * (24 / 25 + 1 / math.sqrt(2))
    assert reward[0].tolist() == pytest.approx(
        [0.5 * simulator, 0.25, -simulator, simulator]
    )
    # On the prover's turn neither copy is active: nothing to compare
    assert reward[1].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0])
    assert shared_done.tolist() == [False, False]
    assert not terminated.any() and not agent_done.any()


def test_decisions_are_compared_only_where_a_verdict_can_count() -> None:
    # Verifier turns 0, 2, 4, 6; verdicts count from round min - 1 = 2 on. On round 0
    # every decision is restricted to "continue" and left out of every loss, so the
    # decision logits are not compared there; the messages still are.
    handler = zk(
        coefficient=1.0,
        aux=1.0,
        nip_protocol={"max_message_rounds": 7, "min_message_rounds": 3},
    )
    messages, decisions = zero_logits(handler, batch=3)
    adv, sim = handler.adversarial_verifier_index, handler.simulator_index
    decisions[:, adv] = torch.tensor([1.0, 0.0, 0.0])
    decisions[:, sim] = torch.tensor([1.0, 1.0, 0.0])  # cos = 1 / sqrt(2)
    messages[2, adv, 1, 0] = torch.tensor([3.0, 4.0])
    messages[2, sim, 2, 0] = torch.tensor([4.0, 3.0])  # cos = 24 / 25
    td = make_protocol_step_td(
        handler,
        [0, 2, 0],
        [[C] * 4] * 3,
        main_message_logits=messages,
        decision_logits=decisions,
    )
    _, _, _, reward = handler.step_interaction_protocol(td)
    assert reward[:, sim].tolist() == pytest.approx([0.0, 1 / math.sqrt(2), 24 / 25])
    assert reward[:, adv].tolist() == pytest.approx([0.0, -1 / math.sqrt(2), -24 / 25])


def test_simulator_reward_sums_the_active_channels() -> None:
    handler = zk(DebateProtocolHandler, coefficient=1.0, aux=1.0)
    messages, decisions = zero_logits(handler, batch=1, message_dims=(1, 1))
    adv, sim = handler.adversarial_verifier_index, handler.simulator_index
    # flattened over the two channels: [1, 0] . [1, 1] / (1 * sqrt(2))
    messages[0, adv, 2:4, 0, 0] = torch.tensor([1.0, 0.0])
    messages[0, sim, 4:6, 0, 0] = torch.tensor([1.0, 1.0])
    decisions[0, adv] = torch.tensor([0.0, 2.0, 0.0])
    decisions[0, sim] = torch.tensor([0.0, 3.0, 0.0])
    td = make_protocol_step_td(
        handler, [0], [[C] * 5], main_message_logits=messages, decision_logits=decisions
    )
    _, _, _, reward = handler.step_interaction_protocol(td)
    simulator = 1 / math.sqrt(2) + 1.0
    # prover0, prover1, verifier, adversarial_verifier, simulator
    assert reward[0].tolist() == pytest.approx(
        [simulator, simulator, 0.25, -simulator, simulator]
    )


def test_shared_done_needs_both_verifiers() -> None:
    handler = zk()
    messages, decisions = zero_logits(handler, batch=4)
    # agents: prover, verifier, adversarial_verifier, simulator
    td = make_protocol_step_td(
        handler,
        [0, 0, 2, 2],
        [[C, A, C, C], [C, A, R, C], [C, R, R, C], [C, C, A, C]],
        y=[1, 1, 1, 1],
        agent_done=[
            [False, False, False, False],
            [False, False, False, False],
            [False, True, False, False],  # the verifier already decided
            [False, False, False, False],
        ],
        main_message_logits=messages,
        decision_logits=decisions,
    )
    shared_done, agent_done, terminated, reward = handler.step_interaction_protocol(td)
    assert shared_done.tolist() == [False, True, True, False]
    assert terminated.tolist() == [False] * 4
    assert agent_done.tolist() == [
        [False, True, False, False],
        [True, True, True, True],
        [True, True, True, True],
        # the adversarial verifier decided: the simulator, imitating it, is done too
        [False, False, True, True],
    ]
    # The verifier's verdict pays once; its later (ignored) decision pays nothing
    assert reward[:, :2].tolist() == [[0.5, 1.0], [0.5, 1.0], [0.0, 0.0], [0.0, 0.25]]


def test_last_round_terminates_when_the_adversarial_verifier_has_not_decided() -> None:
    handler = zk(nip_protocol={"max_message_rounds": 7})
    messages, decisions = zero_logits(handler, batch=3)
    td = make_protocol_step_td(
        handler,
        [6, 6, 6],
        [[C, A, C, C], [C, A, A, C], [C, C, C, C]],
        agent_done=[
            [False, False, False, False],
            [False, False, False, False],
            [False, True, False, False],
        ],
        main_message_logits=messages,
        decision_logits=decisions,
    )
    shared_done, _, terminated, reward = handler.step_interaction_protocol(td)
    assert shared_done.tolist() == [True, True, True]
    assert terminated.tolist() == [True, False, True]
    # the already-done verifier is not penalised again
    assert reward[:, 1].tolist() == [1.0, 1.0, 0.0]


def test_last_round_does_not_terminate_when_both_verifiers_have_decided() -> None:
    # the verifier decided on an earlier round, the adversarial verifier decides on
    # the last one: both decided, so the episode ends without being cut off (and
    # the other way round)
    handler = zk(nip_protocol={"max_message_rounds": 7})
    messages, decisions = zero_logits(handler, batch=2)
    td = make_protocol_step_td(
        handler,
        [6, 6],
        [[C, C, A, C], [C, A, C, C]],
        agent_done=[[False, True, False, False], [False, False, True, False]],
        main_message_logits=messages,
        decision_logits=decisions,
    )
    shared_done, agent_done, terminated, reward = handler.step_interaction_protocol(td)
    assert shared_done.tolist() == [True, True]
    assert terminated.tolist() == [False, False]
    assert agent_done.all()
    # the verifier's earlier verdict was paid then; its verdict now pays once
    assert reward[:, 1].tolist() == [0.0, 1.0]


def test_no_simulator_reward_once_the_adversarial_verifier_is_done() -> None:
    handler = zk(coefficient=1.0)
    messages, decisions = zero_logits(handler, batch=1)
    adv, sim = handler.adversarial_verifier_index, handler.simulator_index
    messages[0, adv, 1, 0] = torch.tensor([1.0, 0.0])
    messages[0, sim, 2, 0] = torch.tensor([1.0, 0.0])
    td = make_protocol_step_td(
        handler,
        [2],
        [[C, C, C, C]],
        agent_done=[[False, False, True, False]],
        main_message_logits=messages,
        decision_logits=decisions,
    )
    _, _, _, reward = handler.step_interaction_protocol(td)
    assert reward[0, adv] == 0.0 and reward[0, sim] == 0.0


def test_step_does_not_modify_the_logits() -> None:
    handler = zk()
    messages, decisions = zero_logits(handler, batch=2)
    messages.normal_()
    decisions.normal_()
    td = make_protocol_step_td(
        handler,
        [1, 1],
        [[C] * 4] * 2,
        main_message_logits=messages.clone(),
        decision_logits=decisions.clone(),
    )
    handler.step_interaction_protocol(td)
    assert torch.equal(td["agents", "main_message_logits"], messages)
    assert torch.equal(td["agents", "decision_logits"], decisions)


def test_missing_logits_are_explained() -> None:
    handler = zk()
    td = make_protocol_step_td(handler, [0], [[C] * 4])
    with pytest.raises(KeyError, match="main_message_logits"):
        handler.step_interaction_protocol(td)


def test_reward_ranges() -> None:
    handler = zk(coefficient=2.0, aux=0.5)
    # 4 verifier turns, each worth at most 2 * (1 + 1)
    assert handler.max_reward("simulator") == 16.0
    assert handler.min_reward("adversarial_verifier") == -16.0
    assert handler.max_reward("prover") == 0.5 + 8.0
    assert handler.reward_mid_point_estimate("simulator") == 0.0


def test_from_sections() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProtocolWarning)
        handler = ZeroKnowledgeProtocolHandler.from_sections(
            base_protocol=DebateProtocolHandler,
            debate_protocol={"max_message_rounds": 3},
            zk_protocol={"simulator_reward_coefficient": 0.25},
        )
    assert handler.max_message_rounds == 3
    assert handler.hyper_params.zk_protocol.simulator_reward_coefficient == 0.25
    assert type(handler.base_protocol) is DebateProtocolHandler
