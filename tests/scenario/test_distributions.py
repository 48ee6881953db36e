"""The combined policy's action distribution counts only actions that happen."""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule

from nip_core.scenario import keys as K
from nip_core.scenario.distributions import (
    NipActionDistribution,
    actor_out_keys,
    build_policy_actor,
    pack_actions,
    unpack_actions,
)

B, A, C, P, N = 2, 3, 2, 1, 4


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    message_logits = torch.randn(B, A, C, P, N, generator=generator)
    decision_logits = torch.randn(B, A, 3, generator=generator)
    active = torch.tensor(
        [
            [[True, False], [False, True], [False, False]],
            [[False, False], [True, True], [True, False]],
        ]
    )
    decision_mask = torch.tensor([[False, False, True], [False, False, False]])
    return message_logits, decision_logits, active, decision_mask


def _dist(message_logits, decision_logits, active, decision_mask, **kwargs):
    return NipActionDistribution(
        message_logits, decision_logits, active, decision_mask, **kwargs
    )


def test_log_prob_is_the_sum_over_active_actions_only():
    message_logits, decision_logits, active, decision_mask = _inputs()
    dist = _dist(message_logits, decision_logits, active, decision_mask)
    message = torch.randint(
        0, N, (B, A, C, P), generator=torch.Generator().manual_seed(1)
    )
    decision = torch.tensor([[0, 1, 2], [2, 1, 0]])
    log_prob = dist.log_prob(message, decision)
    assert log_prob.shape == (B, A)

    message_lp = torch.log_softmax(message_logits, -1).gather(-1, message[..., None])
    decision_lp = torch.log_softmax(decision_logits, -1).gather(-1, decision[..., None])
    expected = (message_lp.squeeze(-1) * active[..., None]).sum((-1, -2))
    expected = expected + decision_lp.squeeze(-1) * decision_mask
    assert torch.allclose(log_prob, expected)
    # batch 1, agent 0: no active channel and no decision, so nothing counts
    assert log_prob[1, 0] == 0


def test_inactive_actions_change_neither_log_prob_nor_entropy():
    message_logits, decision_logits, active, decision_mask = _inputs()
    message = torch.zeros(B, A, C, P, dtype=torch.long)
    decision = torch.full((B, A), 2)
    base = _dist(message_logits, decision_logits, active, decision_mask)

    # Change every logit and action where nothing is active or decided.
    inactive = ~active[..., None, None].expand(B, A, C, P, N)
    other_message_logits = torch.where(inactive, message_logits * 7 + 3, message_logits)
    other_decision_logits = torch.where(
        decision_mask[..., None], decision_logits, -decision_logits * 5
    )
    other_message = torch.where(
        ~active[..., None], torch.full_like(message, 3), message
    )
    other_decision = torch.where(decision_mask, decision, torch.zeros_like(decision))
    other = _dist(other_message_logits, other_decision_logits, active, decision_mask)

    assert torch.allclose(
        base.log_prob(message, decision), other.log_prob(other_message, other_decision)
    )
    assert torch.allclose(base.entropy(), other.entropy())

    # ...while changing an active logit does change them.
    changed = message_logits.clone()
    changed[0, 0, 0, 0, 0] += 2.0
    moved = _dist(changed, decision_logits, active, decision_mask)
    assert not torch.allclose(base.entropy(), moved.entropy())


def test_entropy_counts_active_channels_and_decisions():
    message_logits = torch.zeros(B, A, C, P, N)  # uniform: entropy log N each
    decision_logits = torch.zeros(B, A, 3)
    _, _, active, decision_mask = _inputs()
    dist = _dist(message_logits, decision_logits, active, decision_mask)
    expected = active.sum(-1) * P * math.log(N) + decision_mask * math.log(3)
    assert torch.allclose(dist.entropy(), expected.float())
    assert torch.allclose(
        dist.message_entropy(), (active.sum(-1) * math.log(N)).float()
    )
    assert torch.allclose(
        dist.decision_entropy(), (decision_mask * math.log(3)).float()
    )


def test_invalid_messages_get_no_probability():
    message_logits, decision_logits, active, decision_mask = _inputs()
    valid = torch.ones(B, A, C, P, N, dtype=torch.bool)
    valid[..., 0] = False
    valid[0, 1, 1, 0] = False  # a row with nothing valid: left alone, never counted
    active = active.clone()
    active[0, 1, 1] = False
    dist = _dist(
        message_logits, decision_logits, active, decision_mask, valid_message_mask=valid
    )
    probs = dist.message_dist.probs
    assert (probs[..., 0][valid.any(-1)] == 0).all()
    assert torch.isfinite(dist.entropy()).all()
    samples = dist.sample((200,))[1]
    assert not (samples[:, valid.any(-1)] == 0).any()
    # a sample's log-prob is finite; an invalid message on an active channel is -inf
    assert torch.isfinite(dist.log_prob(samples[0], torch.zeros(B, A))).all()
    bad = samples[0].clone()
    bad[0, 0, 0, 0] = 0  # agent 0 is active on channel 0 of batch 0
    assert dist.log_prob(bad, torch.zeros(B, A))[0, 0] == -math.inf


def test_decision_restriction():
    message_logits, decision_logits, active, _ = _inputs()
    decision_mask = torch.ones(B, A, dtype=torch.bool)
    restriction = torch.tensor([1, 2])  # batch 0: only continue; batch 1: only guess
    dist = _dist(
        message_logits,
        decision_logits,
        active,
        decision_mask,
        decision_restriction=restriction,
    )
    probs = dist.decision_dist.probs
    assert torch.allclose(probs[0, :, 2], torch.ones(A))
    assert (probs[1, :, 2] == 0).all()
    assert torch.allclose(probs[1, :, :2].sum(-1), torch.ones(A))


def test_log_prob_accepts_the_action_tensordict():
    message_logits, decision_logits, active, decision_mask = _inputs()
    dist = _dist(message_logits, decision_logits, active, decision_mask)
    packed, message, decision = dist.sample()
    assert message.shape == (B, A, C, P) and decision.shape == (B, A)
    assert packed.shape == (B, A, C * P + 1)
    td = TensorDict(
        {
            K.AGENTS: TensorDict(
                {K.MESSAGE_SELECTED: message, K.DECISION: decision}, [B, A]
            )
        },
        [B],
    )
    assert torch.equal(dist.log_prob(td), dist.log_prob(message, decision))
    # the packed action, and a whole sample tuple, give the same
    assert torch.equal(dist.log_prob(packed), dist.log_prob(message, decision))
    assert torch.equal(dist.log_prob(packed, message, decision), dist.log_prob(packed))
    assert [m.shape for m in dist.mode] == [packed.shape, message.shape, decision.shape]


def _actor_input(message_logits, decision_logits, active, decision_mask):
    """What the policy actor reads: the logits already computed, every message
    valid, no decision ruled out."""
    return TensorDict(
        {
            K.AGENTS: TensorDict(
                {
                    K.MAIN_MESSAGE_LOGITS: message_logits,
                    K.DECISION_LOGITS: decision_logits,
                    K.ACTIVE_MASK: active,
                    K.DECISION_MASK: decision_mask,
                    K.VALID_MESSAGE_MASK: torch.ones(B, A, C, P, N, dtype=torch.bool),
                },
                [B, A],
            ),
            K.DECISION_RESTRICTION: torch.zeros(B, dtype=torch.long),
        },
        [B],
    )


def test_policy_actor_writes_actions_and_per_agent_log_prob():
    message_logits, decision_logits, active, decision_mask = _inputs()
    # The logits are already in the TensorDict: the policy module passes through.
    module = TensorDictModule(
        torch.nn.Identity(), in_keys=[K.DECISION_RESTRICTION], out_keys=["unused"]
    )
    actor = build_policy_actor(module)
    td = _actor_input(message_logits, decision_logits, active, decision_mask)
    out = actor(td)
    for key in actor_out_keys():
        assert key in out.keys(True, True)
    assert torch.equal(
        out[K.AGENTS, K.ACTION],
        pack_actions(out[K.AGENTS, K.MESSAGE_SELECTED], out[K.AGENTS, K.DECISION]),
    )
    log_prob = out[K.AGENTS, K.SAMPLE_LOG_PROB]
    assert log_prob.shape == (B, A)
    dist = _dist(message_logits, decision_logits, active, decision_mask)
    expected = dist.log_prob(
        out[K.AGENTS, K.MESSAGE_SELECTED], out[K.AGENTS, K.DECISION]
    )
    assert torch.allclose(log_prob, expected)


def test_policy_actor_finds_its_distribution_module_once(monkeypatch):
    from tensordict.nn import ProbabilisticTensorDictSequential
    from torch import nn

    message_logits, decision_logits, active, decision_mask = _inputs()
    # a policy module with modules inside, as an agent's body has
    inner = TensorDictModule(
        nn.Sequential(nn.Identity(), nn.Sequential(nn.Identity())),
        in_keys=[K.DECISION_RESTRICTION],
        out_keys=["unused"],
    )
    actor = build_policy_actor(inner)
    modules_before = [name for name, _ in actor.named_modules()]
    td = _actor_input(message_logits, decision_logits, active, decision_mask)
    # the same distribution as TensorDict's own search builds
    expected = ProbabilisticTensorDictSequential.build_dist_from_params(actor, td)
    dist = actor.get_dist(td)
    assert isinstance(dist, NipActionDistribution)
    assert torch.equal(dist.decision_dist.logits, expected.decision_dist.logits)
    assert torch.equal(dist.message_dist.logits, expected.message_dist.logits)
    packed = expected.sample()[0]
    assert torch.equal(dist.log_prob(packed), expected.log_prob(packed))
    # found once: later calls walk no modules, and nothing was registered
    walked = []
    monkeypatch.setattr(
        type(actor), "modules", lambda self: walked.append(self) or iter(())
    )
    actor.get_dist(td)
    actor.build_dist_from_params(td)
    assert walked == []
    monkeypatch.undo()
    assert [name for name, _ in actor.named_modules()] == modules_before


def test_pack_and_unpack_are_inverse_and_keep_the_linear_messages():
    message = torch.randint(0, N, (B, A, C, P))
    decision = torch.randint(0, 3, (B, A))
    linear = torch.randint(0, 2, (B, A, C, P))
    packed = pack_actions(message, decision, linear)
    assert packed.shape == (B, A, 2 * C * P + 1)
    back = unpack_actions(packed, C, P, linear=True)
    expected = (message, decision, linear)
    assert all(torch.equal(a, b) for a, b in zip(back, expected, strict=True))


def test_kl_divergence_counts_only_the_choices_that_happen():
    from torch.distributions import kl_divergence

    message_logits, decision_logits, active, decision_mask = _inputs()
    p = _dist(message_logits, decision_logits, active, decision_mask)
    q = _dist(torch.randn_like(message_logits), decision_logits, active, decision_mask)
    kl = kl_divergence(p, q)
    assert kl.shape == (B, A)
    assert torch.equal(kl, p.kl_divergence(q))
    # decisions are equal: only active message choices differ
    per_choice = kl_divergence(p.message_dist, q.message_dist)
    expected = torch.where(p.counted_message_mask(per_choice), per_choice, 0).sum(
        dim=(-1, -2)
    )
    assert torch.allclose(kl, expected)
    assert (kl[~active.any(-1)] == 0).all()
