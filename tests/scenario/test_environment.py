"""Exact steps of the tensor environment, on the synthetic scenario."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import step_mdp

from nip_core.errors import NipConfigError
from nip_core.scenario import keys as K
from nip_core.scenario.environment import environment_seed

PROVER, VERIFIER = 0, 1  # nip's agent order
CONTINUE, REJECT, ACCEPT = 2, 0, 1


def _act(env, td, messages, decisions):
    """Set the actions: ``messages[agent]`` and ``decisions[agent]`` for every env."""
    B = env.num_envs
    selected = torch.tensor(messages).reshape(1, -1, 1, 1).expand(B, -1, 1, 1)
    td[K.AGENTS, K.MESSAGE_SELECTED] = selected.clone()
    decision = torch.as_tensor(decisions)
    if decision.ndim == 1:
        decision = decision.expand(B, -1)
    td[K.AGENTS, K.DECISION] = decision.clone()
    td[K.AGENTS, K.MAIN_MESSAGE_LOGITS] = torch.zeros(B, env.num_agents, 1, 1, 6)
    td[K.AGENTS, K.DECISION_LOGITS] = torch.zeros(B, env.num_agents, 3)
    return td


@pytest.fixture
def nip_env(synthetic_scenario):
    # verifier first, rounds 0 (verifier), 1 (prover), 2 (verifier); 4 envs
    instance = synthetic_scenario.build(
        synthetic_scenario.hyper_params("nip"), roles=()
    )
    return instance.train_environment


def test_batch_arithmetic(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip", rl={"frames_per_batch": 12})
    env = synthetic_scenario.build(hp, roles=()).train_environment
    assert env.steps_per_env_per_iteration == 3  # max_message_rounds
    assert env.frames_per_batch == 12
    assert env.num_envs == 4
    assert tuple(env.batch_size) == (4,)

    hp = synthetic_scenario.hyper_params(
        "nip", rl={"frames_per_batch": 12, "steps_per_env_per_iteration": 6}
    )
    env = synthetic_scenario.build(hp, roles=()).train_environment
    assert (env.steps_per_env_per_iteration, env.num_envs) == (6, 2)

    # rollouts_per_iteration (the fixture's default: 4) × steps
    env = synthetic_scenario.build(roles=()).train_environment
    assert (env.frames_per_batch, env.num_envs) == (12, 4)

    hp = synthetic_scenario.hyper_params("nip", rl={"frames_per_batch": 10})
    with pytest.raises(NipConfigError, match="rl.frames_per_batch"):
        synthetic_scenario.build(hp, roles=())


def test_reset_masks_come_from_the_protocol(nip_env):
    td = nip_env.reset()
    assert td[K.AGENTS, K.ACTIVE_MASK][:, :, 0].tolist() == [[False, True]] * 4
    assert td[K.AGENTS, K.DECISION_MASK].tolist() == [[False, True]] * 4
    valid = td[K.AGENTS, K.VALID_MESSAGE_MASK]
    # provers may not point at the last bit; the verifier may
    assert valid[:, PROVER, 0, 0].tolist() == [[True] * 5 + [False]] * 4
    assert valid[:, VERIFIER].all()


def test_three_exact_steps_with_protocol_rewards(nip_env):
    env = nip_env
    td = env.reset()
    y = td[K.Y].squeeze(-1).clone()
    x = td["x"].clone()

    # Round 0: only the verifier speaks; the prover's choice must not reach "main".
    out = env.step(_act(env, td, messages=[4, 2], decisions=[CONTINUE, CONTINUE]))
    nxt = out["next"]
    assert nxt[K.ROUND].tolist() == [1] * 4
    expected = torch.zeros(4, 1, 1, 6)
    expected[..., 2] = 1
    assert torch.equal(nxt[K.MESSAGE], expected)
    assert torch.equal(nxt[K.MESSAGE_HISTORY][:, 0], expected)
    assert not nxt[K.MESSAGE_HISTORY][:, 1:].any()
    assert not nxt[K.DONE].any()
    assert torch.equal(nxt[K.AGENTS, K.REWARD], torch.zeros(4, 2, 1))
    assert nxt[K.AGENTS, K.ACTIVE_MASK][:, :, 0].tolist() == [[True, False]] * 4
    assert torch.equal(nxt["x"], x)

    # Round 1: the prover points at bit 3.
    td = step_mdp(out)
    out = env.step(_act(env, td, messages=[3, 0], decisions=[CONTINUE, CONTINUE]))
    nxt = out["next"]
    history = nxt[K.MESSAGE_HISTORY]
    assert history[:, 0, 0, 0].argmax(-1).tolist() == [2] * 4
    assert history[:, 1, 0, 0].argmax(-1).tolist() == [3] * 4
    assert history[:, 1].sum().item() == 4
    assert not history[:, 2].any()

    # Round 2 (the last): accept, reject, accept, continue.
    td = step_mdp(out)
    decisions = torch.tensor([[0, ACCEPT], [0, REJECT], [0, ACCEPT], [0, CONTINUE]])
    out = env.step(_act(env, td, messages=[0, 1], decisions=decisions))
    nxt = out["next"]
    verdict = decisions[:, VERIFIER]
    verifier_reward = torch.where(verdict == y, 1.0, -1.0)
    verifier_reward[3] = -1.0  # verifier_terminated_penalty
    prover_reward = (verdict == ACCEPT).float()
    expected_reward = torch.stack([prover_reward, verifier_reward], dim=-1)
    assert torch.equal(nxt[K.AGENTS, K.REWARD].squeeze(-1), expected_reward)
    assert nxt[K.DONE].all()
    assert nxt[K.TERMINATED].tolist() == [False, False, False, True]
    assert nxt[K.AGENTS, K.DONE].all()
    assert torch.equal(nxt[K.AGENTS, K.TERMINATED], nxt[K.AGENTS, K.DONE])


def test_messages_of_several_active_agents_are_summed(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("debate")
    env = synthetic_scenario.build(hp, roles=()).train_environment
    td = env.reset()
    B, A, C = env.num_envs, env.num_agents, env.num_message_channels
    selected = torch.tensor([1, 1, 4]).reshape(1, A, 1, 1).expand(B, A, C, 1)
    td[K.AGENTS, K.MESSAGE_SELECTED] = selected.clone()
    active = torch.zeros(B, A, C, dtype=torch.bool)
    active[:, 0, 0] = active[:, 1, 0] = True  # both provers on channel 0: same bit
    active[:, 1, 1] = active[:, 2, 1] = True  # prover1 and verifier on channel 1
    message, history = env._write_messages(
        td,
        active,
        selected_key=K.MESSAGE_SELECTED,
        history_key=K.MESSAGE_HISTORY,
        message_shape=(6,),
    )
    assert message[:, 0, 0].tolist() == [[0, 2, 0, 0, 0, 0]] * B
    assert message[:, 1, 0].tolist() == [[0, 1, 0, 0, 1, 0]] * B
    assert torch.equal(history[:, 0], message)


def test_finished_episodes_restart_with_the_next_datapoints(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip")
    env = synthetic_scenario.build(hp, roles=()).train_environment
    # What the environment's generator will draw: the permutation of the first pass
    # over the 16 train datapoints, then 4 episode seeds.
    generator = torch.Generator().manual_seed(environment_seed(hp.seed, "train"))
    order = torch.randperm(16, generator=generator)

    td = env.reset()
    assert td[K.DATAPOINT_ID].tolist() == order[:4].tolist()
    decisions = torch.tensor([[0, ACCEPT], [0, CONTINUE], [0, CONTINUE], [0, REJECT]])
    stepped, td = env.step_and_maybe_reset(
        _act(env, td, messages=[0, 5], decisions=decisions)
    )
    assert stepped["next", K.DONE].tolist() == [True, False, False, True]
    assert td[K.ROUND].tolist() == [0, 1, 1, 0]
    assert td[K.DATAPOINT_ID].tolist() == [
        order[4].item(),
        order[1].item(),
        order[2].item(),
        order[5].item(),
    ]
    assert not td[K.MESSAGE_HISTORY][[0, 3]].any()
    assert torch.equal(
        td[K.MESSAGE_HISTORY][[1, 2]], stepped["next", K.MESSAGE_HISTORY][[1, 2]]
    )
    ids = td[K.DATAPOINT_ID]
    assert torch.equal(td[K.Y].squeeze(-1), env.dataset.data["y"][ids])
    assert torch.equal(td["x"], env.dataset.data["x"][ids])
    assert not td[K.DONE].any()


def test_resets_are_reproducible_and_seeded(synthetic_scenario):
    first = synthetic_scenario.build(roles=()).train_environment.reset()
    again = synthetic_scenario.build(roles=()).train_environment.reset()
    assert torch.equal(first[K.SEED], again[K.SEED])
    assert torch.equal(first[K.DATAPOINT_ID], again[K.DATAPOINT_ID])
    other = synthetic_scenario.build(
        synthetic_scenario.hyper_params("nip", seed=7), roles=()
    ).train_environment.reset()
    assert not torch.equal(first[K.SEED], other[K.SEED])
    assert ((first[K.SEED] >= 0) & (first[K.SEED] < 2**16)).all()


def test_linear_message_space(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "nip", include_linear_message_space=True, d_linear_message_space=3
    )
    env = synthetic_scenario.build(hp, roles=()).train_environment
    td = _act(env, env.reset(), messages=[4, 2], decisions=[CONTINUE, CONTINUE])
    td[K.AGENTS, K.LINEAR_MESSAGE_SELECTED] = (
        torch.tensor([0, 2]).reshape(1, 2, 1, 1).expand(4, 2, 1, 1)
    )
    td[K.AGENTS, K.LINEAR_MESSAGE_LOGITS] = torch.zeros(4, 2, 1, 1, 3)
    nxt = env.step(td)["next"]
    assert nxt[K.LINEAR_MESSAGE].shape == (4, 1, 1, 3)
    assert nxt[K.LINEAR_MESSAGE][:, 0, 0].tolist() == [[0, 0, 1]] * 4  # the verifier's
    assert torch.equal(nxt[K.LINEAR_MESSAGE_HISTORY][:, 0], nxt[K.LINEAR_MESSAGE])
    assert "linear_message_selected" in env.action_spec[K.AGENTS].keys()


def test_datapoints_to_observation(nip_env):
    data = nip_env.dataset[torch.tensor([3, 5, 7])]
    td = nip_env.datapoints_to_observation(data)
    assert td.batch_size == torch.Size([3])
    assert td[K.DATAPOINT_ID].tolist() == [3, 5, 7]
    assert torch.equal(td["x"], data["x"])
    assert (td[K.ROUND] == 0).all() and not td[K.MESSAGE_HISTORY].any()
    assert td[K.AGENTS, K.ACTIVE_MASK].shape == (3, 2, 1)


def test_restarted_episodes_draw_fresh_seeds_and_others_keep_theirs(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip")
    env = synthetic_scenario.build(hp, roles=()).train_environment
    # The generator's draws: the data order of the first pass, the 4 first episode
    # seeds, then (the pass is not over) the seeds of the 2 restarted episodes.
    generator = torch.Generator().manual_seed(environment_seed(hp.seed, "train"))
    torch.randperm(16, generator=generator)
    first_seeds = torch.randint(0, 2**16, (4,), generator=generator)
    restart_seeds = torch.randint(0, 2**16, (2,), generator=generator)

    td = env.reset()
    assert td[K.SEED].tolist() == first_seeds.tolist()
    decisions = torch.tensor([[0, ACCEPT], [0, CONTINUE], [0, CONTINUE], [0, REJECT]])
    _, td = env.step_and_maybe_reset(
        _act(env, td, messages=[0, 5], decisions=decisions)
    )
    assert td[K.SEED].tolist() == [
        restart_seeds[0].item(),
        first_seeds[1].item(),
        first_seeds[2].item(),
        restart_seeds[1].item(),
    ]


def test_each_reset_returns_its_own_tensors(nip_env):
    first = nip_env.reset()
    first[K.MESSAGE_HISTORY] += 1
    first[K.ROUND] += 3
    second = nip_env.reset()
    assert not second[K.MESSAGE_HISTORY].any()
    assert (second[K.ROUND] == 0).all()
    # A partial reset keeps the other environments' state
    handed = first.clone().set("_reset", torch.tensor([True, False, False, False]))
    out = nip_env.reset(handed)
    assert out[K.ROUND].tolist() == [0, 3, 3, 3]
    assert not out[K.MESSAGE_HISTORY][0].any()
    assert (out[K.MESSAGE_HISTORY][1:] == 1).all()
    third = nip_env.reset()
    assert not third[K.MESSAGE_HISTORY].any()


def test_a_verifier_that_has_decided_decides_nothing_more(synthetic_scenario):
    # Zero knowledge over nip: agents prover, verifier, adversarial_verifier,
    # simulator; the verifier decides on round 0, the adversarial verifier continues,
    # so the episode goes on and the verifier's later decisions are ignored.
    hp = synthetic_scenario.hyper_params("nip", zero_knowledge=True)
    env = synthetic_scenario.build(hp, roles=()).train_environment
    B, A, C = env.num_envs, env.num_agents, env.num_message_channels
    td = env.reset()
    # the simulator's decisions count where the verifiers' do (its reward compares
    # its decision logits with the adversarial verifier's)
    assert td[K.AGENTS, K.DECISION_MASK].tolist() == [[False, True, True, True]] * B
    td[K.AGENTS, K.MESSAGE_SELECTED] = torch.zeros(B, A, C, 1, dtype=torch.long)
    td[K.AGENTS, K.DECISION] = (
        torch.tensor([CONTINUE, ACCEPT, CONTINUE, CONTINUE]).expand(B, A).clone()
    )
    td[K.AGENTS, K.MAIN_MESSAGE_LOGITS] = torch.zeros(B, A, C, 1, 6)
    td[K.AGENTS, K.DECISION_LOGITS] = torch.zeros(B, A, 3)
    nxt = step_mdp(env.step(td), keep_other=True)
    assert not nxt[K.DONE].any()
    assert (
        nxt[K.AGENTS, K.DONE].squeeze(-1).tolist() == [[False, True, False, False]] * B
    )
    # Round 1 is the prover's: no decision counts
    assert not nxt[K.AGENTS, K.DECISION_MASK].any()
    nxt[K.AGENTS, K.MESSAGE_SELECTED] = torch.zeros(B, A, C, 1, dtype=torch.long)
    nxt[K.AGENTS, K.DECISION] = torch.full((B, A), CONTINUE)
    nxt[K.AGENTS, K.MAIN_MESSAGE_LOGITS] = torch.zeros(B, A, C, 1, 6)
    nxt[K.AGENTS, K.DECISION_LOGITS] = torch.zeros(B, A, 3)
    round_two = env.step(nxt)["next"]
    assert round_two[K.ROUND].tolist() == [2] * B
    # Round 2 is a verifier turn: the verifier that decided decides nothing more
    assert (
        round_two[K.AGENTS, K.DECISION_MASK].tolist()
        == [[False, False, True, True]] * B
    )
    # ... and says nothing: only the adversarial verifier and the simulator speak
    # (the verifier's standard channel stays empty), so no message of the done
    # verifier counts in its log-probability
    speaking = round_two[K.AGENTS, K.ACTIVE_MASK].any(-1)
    assert speaking.tolist() == [[False, False, True, True]] * B
    round_two[K.AGENTS, K.MESSAGE_SELECTED] = torch.zeros(B, A, C, 1, dtype=torch.long)
    round_two[K.AGENTS, K.DECISION] = torch.full((B, A), CONTINUE)
    round_two[K.AGENTS, K.MAIN_MESSAGE_LOGITS] = torch.zeros(B, A, C, 1, 6)
    round_two[K.AGENTS, K.DECISION_LOGITS] = torch.zeros(B, A, 3)
    state = step_mdp(env.step(nxt), keep_other=True)
    for key in (
        K.MESSAGE_SELECTED,
        K.DECISION,
        K.MAIN_MESSAGE_LOGITS,
        K.DECISION_LOGITS,
    ):
        state[K.AGENTS, key] = round_two[K.AGENTS, key]
    round_three = env.step(state)["next"]
    # standard, adversarial, simulator channel: the done verifier's is empty
    written = round_three[K.MESSAGE].flatten(2).any(-1)  # (B, C)
    assert written.tolist() == [[False, True, True]] * B


def test_set_seed_restarts_the_split_stream(synthetic_scenario):
    instance = synthetic_scenario.build(roles=())
    train, test = instance.train_environment, instance.test_environment
    first = train.reset()
    train.set_seed(5)
    seeded = train.reset()
    # Exactly the stream of a fresh environment of a run with seed 5
    fresh = synthetic_scenario.build(
        synthetic_scenario.hyper_params("nip", seed=5), roles=()
    ).train_environment.reset()
    assert torch.equal(seeded[K.SEED], fresh[K.SEED])
    assert torch.equal(seeded[K.DATAPOINT_ID], fresh[K.DATAPOINT_ID])
    assert not torch.equal(seeded[K.SEED], first[K.SEED])
    # The same seed gives the test split a stream of its own
    test.set_seed(5)
    assert not torch.equal(test.reset()[K.SEED], seeded[K.SEED])
