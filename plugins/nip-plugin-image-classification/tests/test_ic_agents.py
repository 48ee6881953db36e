"""Forward shapes of every part: every protocol, zero knowledge, both block types."""

from __future__ import annotations

import pytest
import torch
from ic_helpers import (
    PROTOCOLS,
    make_handler,
    make_hyper_params,
    make_settings,
    random_agent,
    tiny_agent_params,
)
from nip_core.errors import NipConfigError
from nip_core.scenario import keys as K
from nip_core.scenario.agents import (
    CombinedBody,
    CombinedPolicyHead,
    CombinedSoloHead,
    CombinedValueHead,
    RandomAgentPolicyHead,
)
from tensordict import TensorDict

from nip_plugin_image_classification.agents import (
    ImageClassificationAgentBody,
    ImageClassificationAgentPolicyHead,
    ImageClassificationAgentValueHead,
    ImageClassificationSoloAgentHead,
)

BATCH = 5


def observation(handler, hyper_params, latent=(4, 4), image=(1, 8, 8), round_id=1):
    rounds = handler.max_message_rounds
    channels = len(handler.message_channel_names)
    agents = len(handler.agent_names)
    size = hyper_params.message_size
    history = torch.zeros(BATCH, rounds, channels, size, *latent)
    history[:, 0, :, :, 0, latent[1] - 1] = 1.0
    return TensorDict(
        {
            "image": torch.randn(BATCH, *image),
            K.MESSAGE_HISTORY: history,
            K.MESSAGE: history[:, 0],
            K.ROUND: torch.full((BATCH,), round_id, dtype=torch.long),
            K.AGENTS: TensorDict(
                {
                    K.VALID_MESSAGE_MASK: torch.ones(
                        BATCH,
                        agents,
                        channels,
                        size,
                        latent[0] * latent[1],
                        dtype=torch.bool,
                    )
                },
                batch_size=(BATCH, agents),
            ),
        },
        batch_size=(BATCH,),
    )


def build_parts(hyper_params, handler, settings):
    bodies, policies, values, solos = {}, {}, {}, {}
    for name in handler.agent_names:
        args = (hyper_params, settings, name, handler)
        bodies[name] = ImageClassificationAgentBody(*args)
        if getattr(hyper_params.agents[name], "is_random", False):
            policies[name] = RandomAgentPolicyHead(*args)
        else:
            policies[name] = ImageClassificationAgentPolicyHead(*args)
        values[name] = (
            ImageClassificationAgentValueHead(*args)
            if not getattr(hyper_params.agents[name], "is_random", False)
            else None
        )
        solos[name] = ImageClassificationSoloAgentHead(*args) if values[name] else None
    return bodies, policies, values, solos


CASES = [(p, False) for p in PROTOCOLS] + [
    (p, True) for p in ("nip", "adp", "debate", "merlin_arthur", "mnip")
]


@pytest.mark.usefixtures("test_protocols")  # multi_channel_test is a test fixture
@pytest.mark.parametrize(("protocol", "zero_knowledge"), CASES)
@pytest.mark.parametrize("block_type", ["conv2d", "residual_basic"])
def test_combined_forward_shapes(tmp_path, protocol, zero_knowledge, block_type):
    hyper_params = make_hyper_params(
        protocol,
        zero_knowledge=zero_knowledge,
        agents={"_default": tiny_agent_params(building_block_type=block_type)},
    )
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    bodies, policies, values, solos = build_parts(hyper_params, handler, settings)
    A = len(handler.agent_names)
    C = len(handler.message_channel_names)

    td = observation(handler, hyper_params)
    td = CombinedBody(hyper_params, settings, handler, bodies)(td)
    assert td[K.AGENTS, "image_level_repr"].shape == (BATCH, A, 8)
    assert td[K.AGENTS, "latent_pixel_level_repr"].shape == (BATCH, A, 4, 4, 8)

    td = CombinedPolicyHead(hyper_params, settings, handler, policies)(td)
    logits = td[K.AGENTS, K.MAIN_MESSAGE_LOGITS]
    assert logits.shape == (BATCH, A, C, 1, 16)
    assert td[K.AGENTS, K.DECISION_LOGITS].shape == (BATCH, A, 3)
    # Channels an agent cannot see get no logits of its own.
    visibility = handler.agent_channel_visibility_mask
    for a in range(A):
        for c in range(C):
            if not visibility[a, c]:
                assert torch.all(logits[:, a, c] == 0)
    # Only deciders have a decider: the others' decision logits are zero.
    for a, name in enumerate(handler.agent_names):
        decides = name in (
            getattr(handler, "decider_names", None) or handler.verifier_names
        )
        assert torch.any(td[K.AGENTS, K.DECISION_LOGITS][:, a] != 0) == decides

    td = CombinedValueHead(hyper_params, settings, handler, values)(td)
    assert td[K.AGENTS, K.VALUE].shape == (BATCH, A, 1)
    td = CombinedSoloHead(hyper_params, settings, handler, solos)(td)
    assert td[K.AGENTS, K.SOLO_LOGITS].shape == (BATCH, A, 2)


def test_body_sees_only_visible_channels(tmp_path):
    # In mnip each prover sees only its own channel: changing the other prover's
    # channel must not change its representation.
    hyper_params = make_hyper_params("mnip")
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    bodies, *_ = build_parts(hyper_params, handler, settings)
    combined = CombinedBody(hyper_params, settings, handler, bodies)
    prover0 = handler.agent_names.index("prover0")
    other_channel = handler.message_channel_names.index("prover1_channel")
    td = observation(handler, hyper_params)
    changed = td.clone()
    changed[K.MESSAGE_HISTORY][:, :, other_channel] = torch.rand_like(
        changed[K.MESSAGE_HISTORY][:, :, other_channel]
    )
    changed[K.MESSAGE][:, other_channel] = 1.0
    out = combined(td.clone())
    out_changed = combined(changed)
    torch.testing.assert_close(
        out[K.AGENTS, "image_level_repr"][:, prover0],
        out_changed[K.AGENTS, "image_level_repr"][:, prover0],
    )
    verifier = handler.agent_names.index("verifier")
    assert not torch.allclose(
        out[K.AGENTS, "image_level_repr"][:, verifier],
        out_changed[K.AGENTS, "image_level_repr"][:, verifier],
    )


def test_random_prover_stacks_with_a_real_verifier(tmp_path):
    hyper_params = make_hyper_params(
        "nip", agents={"prover": random_agent(), "verifier": tiny_agent_params()}
    )
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    bodies, policies, *_ = build_parts(hyper_params, handler, settings)
    td = CombinedBody(hyper_params, settings, handler, bodies)(
        observation(handler, hyper_params)
    )
    td = CombinedPolicyHead(hyper_params, settings, handler, policies)(td)
    prover = handler.agent_names.index("prover")
    assert bodies["prover"].encoder is None
    assert torch.all(td[K.AGENTS, "image_level_repr"][:, prover] == 0)
    assert torch.all(td[K.AGENTS, K.MAIN_MESSAGE_LOGITS][:, prover] == 0)
    assert td[K.AGENTS, K.MAIN_MESSAGE_LOGITS].shape == (BATCH, 2, 1, 1, 16)


@pytest.mark.parametrize(
    ("groups", "latent", "message_size"),
    [(0, (8, 8), 1), (2, (2, 2), 2), (3, (1, 1), 1)],
)
def test_latent_grid_follows_num_block_groups(tmp_path, groups, latent, message_size):
    hyper_params = make_hyper_params(
        "nip", num_block_groups=groups, message_size=message_size
    )
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    body = ImageClassificationAgentBody(hyper_params, settings, "verifier", handler)
    policy = ImageClassificationAgentPolicyHead(
        hyper_params, settings, "verifier", handler
    )
    td = observation(handler, hyper_params, latent=latent)
    view = td.select("image", K.MESSAGE_HISTORY, K.MESSAGE, K.ROUND)
    out = body(view)
    assert out["latent_pixel_level_repr"].shape == (BATCH, *latent, 8)
    # Channels double per group: initial_num_channels=2 -> 2 * 2**groups.
    assert body.encoder.latent_num_channels == 2 * 2**groups
    view.update(out)
    logits = policy(view)[K.MAIN_MESSAGE_LOGITS]
    assert logits.shape == (BATCH, 1, message_size, latent[0] * latent[1])


def test_too_many_groups_for_digits_is_a_config_error(tmp_path):
    hyper_params = make_hyper_params("nip", num_block_groups=4)
    handler = make_handler(hyper_params)
    with pytest.raises(NipConfigError, match="at most 3"):
        ImageClassificationAgentBody(
            hyper_params, make_settings(tmp_path), "prover", handler
        )


def test_body_without_message_keys_reads_an_empty_history(tmp_path):
    # Supervised (solo) training feeds dataset batches: image only.
    hyper_params = make_hyper_params("nip")
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    body = ImageClassificationAgentBody(hyper_params, settings, "verifier", handler)
    image = torch.randn(BATCH, 1, 8, 8)
    bare = body(TensorDict({"image": image}, batch_size=(BATCH,)))
    rounds = handler.max_message_rounds
    full = body(
        TensorDict(
            {
                "image": image,
                K.MESSAGE_HISTORY: torch.zeros(BATCH, rounds, 1, 1, 4, 4),
                K.MESSAGE: torch.zeros(BATCH, 1, 1, 4, 4),
            },
            batch_size=(BATCH,),
        )
    )
    torch.testing.assert_close(bare["image_level_repr"], full["image_level_repr"])


def test_decider_reads_the_round(tmp_path):
    hyper_params = make_hyper_params("nip")
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    body = ImageClassificationAgentBody(hyper_params, settings, "verifier", handler)
    policy = ImageClassificationAgentPolicyHead(
        hyper_params, settings, "verifier", handler
    )
    assert K.ROUND in policy.in_keys
    td = observation(handler, hyper_params, round_id=0)
    view = td.select("image", K.MESSAGE_HISTORY, K.MESSAGE, K.ROUND)
    view.update(body(view))
    first = policy(view.clone())[K.DECISION_LOGITS]
    view[K.ROUND] = torch.full((BATCH,), 2, dtype=torch.long)
    later = policy(view)[K.DECISION_LOGITS]
    assert not torch.allclose(first, later)


def test_value_and_solo_heads_keep_their_state_dict_keys(tmp_path):
    # The heads are the core's representation heads; checkpoints saved before that
    # must still load, so names and shapes are pinned: d_representation 8, 3 rounds
    hyper_params = make_hyper_params("nip")
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    value = ImageClassificationAgentValueHead(
        hyper_params, settings, "verifier", handler
    )
    assert {k: tuple(t.shape) for k, t in value.state_dict().items()} == {
        "value_mlp.mlp.0.weight": (4, 8 + 4),
        "value_mlp.mlp.0.bias": (4,),
        "value_mlp.mlp.2.weight": (1, 4),
        "value_mlp.mlp.2.bias": (1,),
    }
    assert value.in_keys == [K.ROUND, "image_level_repr"]
    solo = ImageClassificationSoloAgentHead(hyper_params, settings, "verifier", handler)
    assert {k: tuple(t.shape) for k, t in solo.state_dict().items()} == {
        "decider.mlp.0.weight": (4, 8),
        "decider.mlp.0.bias": (4,),
        "decider.mlp.2.weight": (2, 4),
        "decider.mlp.2.bias": (2,),
    }
    assert solo.in_keys == ["image_level_repr"]


def test_manual_architecture_is_refused(tmp_path):
    hyper_params = make_hyper_params(
        "nip", agents={"_default": tiny_agent_params(use_manual_architecture=True)}
    )
    handler = make_handler(hyper_params)
    with pytest.raises(NipConfigError, match="use_manual_architecture"):
        ImageClassificationAgentBody(
            hyper_params, make_settings(tmp_path), "prover", handler
        )


def test_residual_block_gets_gradients_everywhere(tmp_path):
    hyper_params = make_hyper_params(
        "nip",
        agents={
            "_default": tiny_agent_params(
                building_block_type="residual_basic", num_blocks_per_group=2
            )
        },
    )
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    body = ImageClassificationAgentBody(hyper_params, settings, "verifier", handler)
    solo = ImageClassificationSoloAgentHead(hyper_params, settings, "verifier", handler)
    td = TensorDict({"image": torch.randn(BATCH, 1, 8, 8)}, batch_size=(BATCH,))
    td.update(body(td))
    loss = solo(td)[K.SOLO_LOGITS].sum() + td["latent_pixel_level_repr"].sum()
    loss.backward()
    for name, parameter in body.named_parameters():
        assert parameter.grad is not None, name
        assert torch.any(parameter.grad != 0), name


def test_linear_message_space(tmp_path):
    hyper_params = make_hyper_params("debate")
    hyper_params.include_linear_message_space = True
    hyper_params.d_linear_message_space = 3
    handler = make_handler(hyper_params)
    settings = make_settings(tmp_path)
    body = ImageClassificationAgentBody(hyper_params, settings, "prover0", handler)
    policy = ImageClassificationAgentPolicyHead(
        hyper_params, settings, "prover0", handler
    )
    assert K.LINEAR_MESSAGE_HISTORY in body.in_keys
    rounds = handler.max_message_rounds
    td = observation(handler, hyper_params)
    td[K.LINEAR_MESSAGE_HISTORY] = torch.zeros(BATCH, rounds, 2, 1, 3)
    view = td.select("image", K.MESSAGE_HISTORY, K.MESSAGE, K.LINEAR_MESSAGE_HISTORY)
    view.update(body(view))
    out = policy(view)
    assert out[K.LINEAR_MESSAGE_LOGITS].shape == (BATCH, 2, 1, 3)
    # prover0 sees both debate channels, so both get logits.
    assert torch.all(out[K.LINEAR_MESSAGE_LOGITS].abs().sum(-1) > 0)
    changed = view.clone()
    changed[K.LINEAR_MESSAGE_HISTORY][:, 0, 0, 0, 1] = 1.0
    assert not torch.allclose(
        body(changed)["image_level_repr"], view["image_level_repr"]
    )


@pytest.mark.parametrize(
    ("size", "groups"), [((8, 8), 1), ((8, 8), 3), ((28, 28), 3), ((32, 28), 2)]
)
def test_the_message_history_marks_the_pixels_its_latent_pixel_pools(
    size, groups
) -> None:
    """Each latent pixel's history is painted onto exactly the image block the
    CNN's max-poolings pool into it: pooled back, it lands on that latent pixel and
    no other. Where a side is not a multiple of 2**g (28 with g = 3), the rows past
    the last block are pooled by none and get nothing."""
    import torch.nn.functional as F

    from nip_plugin_image_classification.networks import latent_size, upsample_latent

    height, width = size
    latent = (latent_size(height, groups), latent_size(width, groups))
    for row in range(latent[0]):
        for column in range(latent[1]):
            grid = torch.zeros(1, 1, *latent)
            grid[0, 0, row, column] = 1.0
            image = upsample_latent(grid, 2**groups, size)
            assert image.shape == (1, 1, height, width)
            pooled = image
            for _ in range(groups):
                pooled = F.max_pool2d(pooled, kernel_size=2, stride=2)
            assert torch.equal(pooled, grid)
            assert image.sum() == 4**groups
    if height % 2**groups:
        full = upsample_latent(torch.ones(1, 1, *latent), 2**groups, size)
        assert not full[..., latent[0] * 2**groups :, :].any()
