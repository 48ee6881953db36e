"""Exact environment steps of the nip protocol on hand-built batches."""

from __future__ import annotations

import pytest
import torch
from helpers import settings, tiny_hyper_params
from nip_core.scenario import keys as K
from nip_core.testing.contracts.scenario import build_scenario_components
from tensordict import TensorDict

import nip_plugin_graph_isomorphism.plugin as gi_plugin

N = 8  # the `test` dataset's largest graph


@pytest.fixture
def environment(register_plugin, tmp_path):
    register_plugin(gi_plugin, name="graph_isomorphism")
    instance = build_scenario_components(
        tiny_hyper_params("nip"), settings(tmp_path), roles=()
    )
    return instance.train_environment


def hand_built_batch(labels: list[int]) -> TensorDict:
    """Pairs of a 7-node path (graph A, node 7 is padding) and an 8-node star."""
    num = len(labels)
    adjacency = torch.zeros(num, 2, N, N, dtype=torch.int32)
    for i in range(6):
        adjacency[:, 0, i, i + 1] = adjacency[:, 0, i + 1, i] = 1
    for i in range(1, N):
        adjacency[:, 1, 0, i] = adjacency[:, 1, i, 0] = 1
    node_mask = torch.ones(num, 2, N, dtype=torch.bool)
    node_mask[:, 0, 7] = False
    return TensorDict(
        {
            "adjacency": adjacency,
            "node_mask": node_mask,
            "wl_score": torch.full((num,), 1),
            "y": torch.tensor(labels),
            "id": torch.arange(num),
        },
        batch_size=(num,),
    )


def act(env, state, nodes: list[int], decisions: list[int]):
    """Every agent selects ``nodes[agent]`` and decides ``decisions[agent]``."""
    num = state.batch_size[0]
    A, C, P = env.num_agents, env.num_message_channels, env.message_size
    selected = torch.tensor(nodes).reshape(1, A, 1, 1).expand(num, A, C, P)
    state[K.AGENTS, K.MESSAGE_SELECTED] = selected.clone()
    state[K.AGENTS, K.DECISION] = torch.tensor(decisions).expand(num, A).clone()
    state[K.AGENTS, K.MAIN_MESSAGE_LOGITS] = torch.zeros(num, A, C, P, 2 * N)
    state[K.AGENTS, K.DECISION_LOGITS] = torch.zeros(num, A, 3)
    # _step: the batch here is smaller than the environment's own num_envs
    nxt = env._step(state)
    # the state keys TorchRL's step_mdp would carry over
    for key in (K.Y, K.DATAPOINT_ID):
        nxt[key] = state[key]
    return nxt


def test_message_space_and_padding(environment) -> None:
    env = environment
    assert env.message_space_shape == (2, N)
    assert env.num_messages == 2 * N
    state = env.datapoints_to_observation(hand_built_batch([1]))
    valid = state[K.AGENTS, K.VALID_MESSAGE_MASK]
    assert valid.shape == (1, 2, 1, 1, 2 * N)
    # round 0: nothing sent yet, every real node (not node 7 of graph A) is valid
    expected = torch.ones(2 * N, dtype=torch.bool)
    expected[7] = False
    for agent in range(2):
        assert torch.equal(valid[0, agent, 0, 0], expected)


def test_verifier_message_then_prover_restricted_to_the_other_graph(
    environment,
) -> None:
    env = environment
    names = list(env.agent_names)
    verifier, prover = names.index("verifier"), names.index("prover")
    state = env.datapoints_to_observation(hand_built_batch([1, 0]))
    assert state[K.ROUND].tolist() == [0, 0]
    nodes = [0, 0]
    nodes[verifier] = N + 3  # node 3 of graph B
    nodes[prover] = 2  # the prover is not active in round 0: must not reach the channel
    decisions = [2, 2]
    nxt = act(env, state, nodes, decisions)

    expected_message = torch.zeros(2, 1, 1, 2, N)
    expected_message[:, 0, 0, 1, 3] = 1
    assert torch.equal(nxt[K.MESSAGE], expected_message)
    history = nxt[K.MESSAGE_HISTORY]
    assert history.shape == (2, 3, 1, 1, 2, N)
    assert torch.equal(history[:, 0], expected_message)
    assert not history[:, 1:].any()
    assert nxt[K.ROUND].tolist() == [1, 1]
    assert not nxt[K.DONE].any()
    assert nxt[K.AGENTS, K.REWARD].squeeze(-1).tolist() == [[0.0, 0.0], [0.0, 0.0]]

    valid = nxt[K.AGENTS, K.VALID_MESSAGE_MASK][0, :, 0, 0]
    graph_a = torch.zeros(2 * N, dtype=torch.bool)
    graph_a[:7] = True
    assert torch.equal(valid[prover], graph_a)
    everything_real = torch.ones(2 * N, dtype=torch.bool)
    everything_real[7] = False
    assert torch.equal(valid[verifier], everything_real)

    # round 1: the prover answers with node 5 of graph A
    nodes[prover] = 5
    nodes[verifier] = N + 1
    nxt2 = act(env, nxt, nodes, decisions)
    expected_message = torch.zeros(2, 1, 1, 2, N)
    expected_message[:, 0, 0, 0, 5] = 1
    assert torch.equal(nxt2[K.MESSAGE], expected_message)
    assert torch.equal(nxt2[K.MESSAGE_HISTORY][:, 1], expected_message)
    assert nxt2[K.ROUND].tolist() == [2, 2]
    # the latest message is in graph A: a prover could now only pick graph B nodes
    valid = nxt2[K.AGENTS, K.VALID_MESSAGE_MASK][0, prover, 0, 0]
    assert torch.equal(valid, ~graph_a & everything_real)


@pytest.mark.parametrize(
    ("label", "decision", "verifier_reward", "prover_reward"),
    [(1, 1, 1.0, 1.0), (0, 1, -1.0, 1.0), (0, 0, 1.0, 0.0), (1, 0, -1.0, 0.0)],
)
def test_verifier_decision_ends_the_episode(
    environment, label, decision, verifier_reward, prover_reward
) -> None:
    env = environment
    names = list(env.agent_names)
    verifier, prover = names.index("verifier"), names.index("prover")
    state = env.datapoints_to_observation(hand_built_batch([label]))
    decisions = [2, 2]
    decisions[verifier] = decision
    nxt = act(env, state, [0, 0], decisions)
    assert nxt[K.DONE].tolist() == [True]
    reward = nxt[K.AGENTS, K.REWARD].squeeze(-1)[0]
    assert reward[verifier].item() == verifier_reward
    assert reward[prover].item() == prover_reward


def test_no_decision_by_the_last_round_is_penalised(environment) -> None:
    env = environment
    names = list(env.agent_names)
    verifier = names.index("verifier")
    state = env.datapoints_to_observation(hand_built_batch([1]))
    for round_id in range(3):
        state = act(env, state, [N, N], [2, 2])
        if round_id < 2:
            assert not state[K.DONE].any()
    assert state[K.DONE].tolist() == [True]
    assert state[K.TERMINATED].tolist() == [True]
    assert state[K.AGENTS, K.REWARD].squeeze(-1)[0, verifier].item() == -1.0


@pytest.mark.parametrize("protocol", ["debate", "mnip"])
def test_a_sequential_prover_answers_the_latest_message_on_its_channel(
    register_plugin, tmp_path, protocol
) -> None:
    """Sequential schedule: the verifier asks on both channels in round 0, prover0
    answers on its channel in round 1, prover1 on its own in round 2. In round 2
    nothing was sent on prover1's channel the round before: the latest message
    there is the verifier's of round 0, and prover1 must answer in the other graph."""
    register_plugin(gi_plugin, name="graph_isomorphism")
    hyper_params = tiny_hyper_params(protocol)
    section = getattr(hyper_params, f"{protocol}_protocol")
    section.sequential = True
    section.max_message_rounds = 4  # the verifier reads round 3's answers
    env = build_scenario_components(
        hyper_params, settings(tmp_path), roles=()
    ).train_environment
    names = list(env.agent_names)
    prover0, prover1, verifier = (
        names.index(name) for name in ("prover0", "prover1", "verifier")
    )
    state = env.datapoints_to_observation(hand_built_batch([1]))
    nodes = [0] * len(names)
    nodes[verifier] = N + 3  # graph B, on both channels
    decisions = [2] * len(names)
    state = act(env, state, nodes, decisions)
    nodes[prover0] = 4  # graph A, on prover0's channel
    state = act(env, state, nodes, decisions)
    assert state[K.ROUND].tolist() == [2]
    assert not state[K.MESSAGE][0, 1].any()  # prover1's channel was silent
    graph_a = torch.zeros(2 * N, dtype=torch.bool)
    graph_a[:7] = True
    valid = state[K.AGENTS, K.VALID_MESSAGE_MASK][0, prover1, 1, 0]
    assert torch.equal(valid, graph_a)
    # prover0's channel: its own answer in graph A is the latest, so graph B
    valid = state[K.AGENTS, K.VALID_MESSAGE_MASK][0, prover0, 0, 0]
    assert torch.equal(valid, torch.cat([torch.zeros(N), torch.ones(N)]).bool())
