"""Exact environment steps: message index → latent pixel, history, rewards."""

from __future__ import annotations

import pytest
import torch
from ic_helpers import make_handler, make_hyper_params, make_settings
from nip_core.errors import NipConfigError
from nip_core.scenario import keys as K
from torchrl.envs.utils import check_env_specs, step_mdp

from nip_plugin_image_classification.data import ImageClassificationDataset
from nip_plugin_image_classification.environment import (
    ImageClassificationEnvironment,
    latent_grid_shape,
)

NUM_ENVS = 4


def make_env(tmp_path, protocol="nip", **kwargs):
    hyper_params = make_hyper_params(
        protocol,
        binarification_method="select_two",
        frames_per_batch=NUM_ENVS * kwargs.get("max_message_rounds", 3),
        **kwargs,
    )
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    dataset = ImageClassificationDataset(hyper_params, settings, handler, "train")
    return ImageClassificationEnvironment(hyper_params, settings, dataset, handler)


def act(env, td, messages, decisions):
    """Set every agent's message index (one channel, one position) and decision."""
    td = td.clone()
    td[K.AGENTS, K.MESSAGE_SELECTED] = (
        torch.tensor(messages)
        .reshape(1, env.num_agents, 1, 1)
        .expand(NUM_ENVS, -1, -1, -1)
        .clone()
    )
    decisions = torch.as_tensor(decisions).reshape(-1, env.num_agents)
    td[K.AGENTS, K.DECISION] = decisions.expand(NUM_ENVS, -1).clone()
    # The next root state: the new observation plus the state carried over (y, ids).
    return step_mdp(env.step(td), keep_other=True)


def test_specs_are_consistent(tmp_path):
    check_env_specs(make_env(tmp_path))


def test_reset_shows_the_datapoint_image_and_an_empty_history(tmp_path):
    env = make_env(tmp_path)
    td = env.reset()
    assert env.message_space_shape == (4, 4)
    assert td["image"].shape == (NUM_ENVS, 1, 8, 8)
    ids = td[K.DATAPOINT_ID]
    torch.testing.assert_close(td["image"], env.dataset.data["image"][ids])
    assert td[K.Y].reshape(-1).tolist() == env.dataset.data["y"][ids].tolist()
    assert td[K.MESSAGE_HISTORY].shape == (NUM_ENVS, 3, 1, 1, 4, 4)
    assert not td[K.MESSAGE_HISTORY].any()
    # Every latent pixel is a valid message.
    assert td[K.AGENTS, K.VALID_MESSAGE_MASK].shape == (NUM_ENVS, 2, 1, 1, 16)
    assert td[K.AGENTS, K.VALID_MESSAGE_MASK].all()


def test_nip_episode_step_by_step(tmp_path):
    env = make_env(tmp_path, max_message_rounds=3)
    assert env.agent_names == ["prover", "verifier"]
    td = env.reset()
    y = td[K.Y].reshape(-1)

    # Round 0, the verifier's turn: it sends latent pixel 6 = row 1, column 2 of the
    # 4×4 grid; the prover's pick (15) is ignored because it is not active.
    nxt = act(env, td, messages=[15, 6], decisions=[2, 2])
    expected = torch.zeros(4, 4)
    expected[1, 2] = 1.0
    for env_index in range(NUM_ENVS):
        torch.testing.assert_close(nxt[K.MESSAGE][env_index, 0, 0], expected)
        torch.testing.assert_close(nxt[K.MESSAGE_HISTORY][env_index, 0, 0, 0], expected)
    assert not nxt[K.MESSAGE_HISTORY][:, 1:].any()
    assert nxt[K.ROUND].tolist() == [1] * NUM_ENVS
    assert not nxt[K.DONE].any()
    assert (
        nxt[K.AGENTS, K.REWARD].reshape(NUM_ENVS, 2).tolist() == [[0.0, 0.0]] * NUM_ENVS
    )

    # Round 1, the prover's turn: pixel 13 = row 3, column 1. Round 0 stays.
    nxt2 = act(env, nxt, messages=[13, 0], decisions=[2, 2])
    second = torch.zeros(4, 4)
    second[3, 1] = 1.0
    torch.testing.assert_close(nxt2[K.MESSAGE][0, 0, 0], second)
    torch.testing.assert_close(nxt2[K.MESSAGE_HISTORY][0, 0, 0, 0], expected)
    torch.testing.assert_close(nxt2[K.MESSAGE_HISTORY][0, 1, 0, 0], second)
    assert not nxt2[K.DONE].any()

    # Round 2, the verifier decides: right on environments 0 and 2, wrong on 1 and 3.
    decisions = torch.stack(
        [torch.zeros_like(y), torch.where(torch.arange(NUM_ENVS) % 2 == 0, y, 1 - y)],
        dim=-1,
    )
    nxt3 = act(env, nxt2, messages=[0, 0], decisions=decisions)
    assert nxt3[K.DONE].all()
    reward = nxt3[K.AGENTS, K.REWARD].reshape(NUM_ENVS, 2)
    assert reward[:, 1].tolist() == [1.0, -1.0, 1.0, -1.0]
    prover_reward = reward[:, 0]
    # The prover is rewarded exactly when the verifier accepts.
    assert prover_reward.tolist() == (decisions[:, 1] == 1).float().tolist()


def test_message_size_two_writes_two_pixels_per_round(tmp_path):
    env = make_env(tmp_path, message_size=2)
    td = env.reset().clone()
    selected = torch.zeros(NUM_ENVS, 2, 1, 2, dtype=torch.long)
    selected[:, 1, 0] = torch.tensor([0, 15])  # the verifier speaks first
    td[K.AGENTS, K.MESSAGE_SELECTED] = selected
    td[K.AGENTS, K.DECISION] = torch.full((NUM_ENVS, 2), 2)
    nxt = env.step(td)["next"]
    message = nxt[K.MESSAGE][0, 0]
    assert message.shape == (2, 4, 4)
    assert message[0, 0, 0] == 1 and message.sum() == 2 and message[1, 3, 3] == 1


def test_latent_grid_of_each_dataset_and_group_count():
    assert latent_grid_shape(make_hyper_params(num_block_groups=2)) == (2, 2)
    assert latent_grid_shape(make_hyper_params(dataset="cifar10")) == (16, 16)
    assert latent_grid_shape(
        make_hyper_params(dataset="mnist", num_block_groups=3)
    ) == (3, 3)
    with pytest.raises(NipConfigError, match="at most 5"):
        latent_grid_shape(make_hyper_params(dataset="svhn", num_block_groups=6))
