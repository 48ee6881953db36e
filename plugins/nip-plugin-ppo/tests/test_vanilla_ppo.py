"""The vanilla_ppo objective equals the PPO formulas on a hand-made minibatch."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from ppo_helpers import collected_minibatch, prepared_trainer

from nip_core.scenario import keys as K

LOG_PROB = (K.AGENTS, K.SAMPLE_LOG_PROB)
ADVANTAGE = (K.AGENTS, "advantage")


def _hyper_params(scenario: Any, **ppo: Any) -> Any:
    return scenario.hyper_params(
        "nip",
        trainer="vanilla_ppo",
        ppo={"entropy_eps": 0.0, "critic_coef": 0.5, **ppo},
        rl={"normalize_observations": False, "rollouts_per_iteration": 6},
    )


def _minibatch(trainer: Any, seed: int = 0) -> Any:
    """A rollout whose behaviour log-probabilities are moved away from the policy's,
    so that ratios leave the clip range both ways."""
    torch.manual_seed(seed)
    batch = collected_minibatch(trainer).reshape(-1)
    old = batch.get(LOG_PROB)
    shift = torch.empty_like(old).uniform_(-0.6, 0.6)
    batch.set(LOG_PROB, old + shift)
    return batch


def _expected_clip_objective(trainer: Any, batch: Any, eps: float) -> torch.Tensor:
    with torch.no_grad():
        dist = trainer.policy_operator.get_dist(batch.clone(False))
        log_prob = dist.log_prob(batch)
    ratio = (log_prob - batch.get(LOG_PROB)).exp()  # (B, A)
    advantage = batch.get(ADVANTAGE).squeeze(-1)  # (B, A)
    mean = advantage.mean(dim=0)
    std = advantage.std(dim=0)  # TorchRL's rule: the sample std
    normalised = (advantage - mean) / std
    gain = torch.minimum(ratio * normalised, ratio.clamp(1 - eps, 1 + eps) * normalised)
    return -gain.mean(dim=0)


def test_clip_objective_matches_formula_per_agent(ppo_scenario: Any) -> None:
    trainer = prepared_trainer(ppo_scenario, _hyper_params(ppo_scenario))
    batch = _minibatch(trainer)
    out = trainer.loss_module(batch)
    expected = _expected_clip_objective(trainer, batch, eps=0.2)
    assert out["loss_objective"].shape == (2,)
    torch.testing.assert_close(out["loss_objective"].detach(), expected)
    # The shift puts ratios outside [0.8, 1.2]: the clip matters in this check
    assert float(out["clip_fraction"]) > 0.1


def test_advantage_is_normalised_per_agent_not_jointly(ppo_scenario: Any) -> None:
    trainer = prepared_trainer(ppo_scenario, _hyper_params(ppo_scenario))
    batch = _minibatch(trainer)
    # Scale one agent's advantages: per-agent normalisation makes it irrelevant
    scaled = batch.clone()
    advantage = scaled.get(ADVANTAGE).clone()
    advantage[:, 0] = advantage[:, 0] * 50 + 3
    scaled.set(ADVANTAGE, advantage)
    torch.testing.assert_close(
        trainer.loss_module(scaled)["loss_objective"].detach(),
        trainer.loss_module(batch)["loss_objective"].detach(),
    )


def test_critic_and_entropy_terms(ppo_scenario: Any) -> None:
    hp = _hyper_params(ppo_scenario, entropy_eps=0.01, critic_coef=0.5)
    trainer = prepared_trainer(ppo_scenario, hp)
    batch = _minibatch(trainer)
    out = trainer.loss_module(batch)
    with torch.no_grad():
        value = trainer.value_operator(batch.clone(False)).get((K.AGENTS, K.VALUE))
        target = batch.get((K.AGENTS, "value_target"))
        critic = torch.nn.functional.smooth_l1_loss(value, target, reduction="none")
        entropy = trainer.policy_operator.get_dist(batch.clone(False)).entropy()
    torch.testing.assert_close(
        out["loss_critic"].detach(), 0.5 * critic.squeeze(-1).mean(dim=0)
    )
    torch.testing.assert_close(
        out["loss_entropy"].detach(), -0.01 * entropy.mean(dim=0)
    )


def test_kl_and_ess_are_reported(ppo_scenario: Any) -> None:
    trainer = prepared_trainer(ppo_scenario, _hyper_params(ppo_scenario))
    batch = _minibatch(trainer)
    out = trainer.loss_module(batch)
    with torch.no_grad():
        dist = trainer.policy_operator.get_dist(batch.clone(False))
        log_weight = dist.log_prob(batch) - batch.get(LOG_PROB)
    weight = log_weight.exp()
    ess = weight.sum(0) ** 2 / (weight.pow(2).sum(0) * weight.shape[0])
    torch.testing.assert_close(out["prover.ess"], ess[0])
    torch.testing.assert_close(out["verifier.ess"], ess[1])
    torch.testing.assert_close(out["kl_approx"], (-log_weight).mean())


@pytest.mark.parametrize(
    ("scale", "factor"),
    [(0.0, 0.5), (5.0, 2.0)],
    ids=["kl-below-target-decrements", "kl-above-target-increments"],
)
def test_kl_penalty_adapts_beta(ppo_scenario: Any, scale: float, factor: float) -> None:
    hp = _hyper_params(
        ppo_scenario,
        loss_type="kl_penalty",
        kl_beta=0.3,
        kl_target=0.01,
        kl_increment=2.0,
        kl_decrement=0.5,
    )
    trainer = prepared_trainer(ppo_scenario, hp)
    torch.manual_seed(1)
    batch = collected_minibatch(trainer).reshape(-1)
    # The stored logits are the behaviour policy's: move them to make the KL large
    for key in (K.MAIN_MESSAGE_LOGITS, K.DECISION_LOGITS):
        logits = batch.get((K.AGENTS, key))
        batch.set((K.AGENTS, key), logits + scale * torch.randn_like(logits))
    inner = trainer.loss_module.loss
    out = trainer.loss_module(batch)
    assert float(inner.beta) == pytest.approx(0.3 * factor)
    # The objective is -(r A - beta kl) with the coefficient before the update
    with torch.no_grad():
        old = trainer.policy_operator.build_dist_from_params(batch.clone(False))
        new = trainer.policy_operator.get_dist(batch.clone(False))
        kl = torch.distributions.kl_divergence(old, new)
        ratio = (new.log_prob(batch) - batch.get(LOG_PROB)).exp()
    advantage = batch.get(ADVANTAGE).squeeze(-1)
    normalised = (advantage - advantage.mean(0)) / advantage.std(0)
    expected = -(ratio * normalised - 0.3 * kl).mean(dim=0)
    torch.testing.assert_close(out["loss_objective"].detach(), expected)
    torch.testing.assert_close(out["kl"], kl.mean(dim=0))
    assert (float(kl.mean()) > 0.015) == (factor > 1)


def test_kl_of_masked_distribution_counts_only_active_choices() -> None:
    from nip_core.scenario.distributions import NipActionDistribution

    torch.manual_seed(0)
    shape = (4, 2, 1, 1, 5)  # batch 4, agents 2, one channel, one position
    p_logits, q_logits = torch.randn(shape), torch.randn(shape)
    p_dec, q_dec = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    active = torch.tensor([[True], [False]]).expand(4, 2, 1)
    decides = torch.tensor([False, True]).expand(4, 2)
    p = NipActionDistribution(p_logits, p_dec, active, decides)
    q = NipActionDistribution(q_logits, q_dec, active, decides)
    kl = torch.distributions.kl_divergence(p, q)
    cat = torch.distributions.Categorical
    expected_prover = torch.distributions.kl_divergence(
        cat(logits=p_logits[:, 0, 0, 0]), cat(logits=q_logits[:, 0, 0, 0])
    )
    expected_verifier = torch.distributions.kl_divergence(
        cat(logits=p_dec[:, 1]), cat(logits=q_dec[:, 1])
    )
    torch.testing.assert_close(kl[:, 0], expected_prover)
    torch.testing.assert_close(kl[:, 1], expected_verifier)


@pytest.mark.parametrize("trainer_name", ["vanilla_ppo", "spg"])
def test_shared_body_runs_once_and_gets_the_critic_gradient(
    ppo_scenario: Any, trainer_name: str
) -> None:
    """The loss's critic is the value head alone; its loss and the body's gradient
    equal those of the whole value operator run on the minibatch."""
    hp = ppo_scenario.hyper_params(
        "nip",
        trainer=trainer_name,
        ppo={"critic_coef": 1.0},
        rl={"normalize_observations": False, "rollouts_per_iteration": 6},
    )
    trainer = prepared_trainer(ppo_scenario, hp)
    scenario = trainer.scenario_instance
    batch = collected_minibatch(trainer).reshape(-1)
    body = list(trainer.agents["verifier"].body.parameters())
    out = trainer.loss_module(batch)
    got = torch.autograd.grad(out["loss_critic"].sum(), body, allow_unused=True)

    value = trainer.value_operator(batch.clone(False)).get((K.AGENTS, K.VALUE))
    target = batch.get((K.AGENTS, "value_target"))
    critic = torch.nn.functional.smooth_l1_loss(value, target, reduction="none")
    critic = critic.squeeze(-1).mean(dim=0)
    expected = torch.autograd.grad(critic.sum(), body, allow_unused=True)
    torch.testing.assert_close(out["loss_critic"].detach(), critic.detach())
    for g, e in zip(got, expected, strict=True):
        assert e is not None and g is not None
        torch.testing.assert_close(g, e)
    critic_module = getattr(trainer.loss_module, "critic", None)
    if critic_module is None:
        critic_module = trainer.loss_module.loss.critic_network
    assert critic_module is scenario.combined_value_head


@pytest.mark.parametrize("loss_type", ["clip", "kl_penalty"])
def test_the_entropy_draws_no_random_numbers_while_compiling(
    ppo_scenario: Any, monkeypatch: pytest.MonkeyPatch, loss_type: str
) -> None:
    """Tracing under torch.compile, TorchRL's losses estimate the entropy by
    sampling; nip's distribution's entropy is analytic and finite, so the loss
    takes it as it is: the same value, and the run's random stream untouched
    (it moved at every compiled minibatch, so that a compiled run drew other
    minibatches and actions than the same run without compiling)."""
    import torchrl.objectives.ppo as torchrl_ppo

    hp = _hyper_params(ppo_scenario, entropy_eps=0.01, loss_type=loss_type)
    trainer = prepared_trainer(ppo_scenario, hp)
    batch = _minibatch(trainer)
    loss = trainer.loss_module.loss
    with torch.no_grad():
        dist = trainer.policy_operator.get_dist(batch.clone(False))
    shape = batch.get(ADVANTAGE).shape[:-1]
    monkeypatch.setattr(torchrl_ppo, "is_dynamo_compiling", lambda: True)
    state = torch.get_rng_state()
    entropy = loss._get_entropy(dist, shape)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(entropy, dist.entropy().unsqueeze(-1), rtol=0, atol=0)
    # TorchRL's own path would have sampled (what the override is for)
    base = type(loss).__mro__[2]
    assert base.__module__.startswith("torchrl")
    base._get_entropy(loss, dist, shape)
    assert not torch.equal(torch.get_rng_state(), state)


def test_kl_beta_holds_on_iterations_no_agent_trains(ppo_scenario: Any) -> None:
    """Every agent's schedule skips odd iterations: the loss still runs there (for
    its logged values), but β adapts only on the iterations that train."""
    from nip_core.experiment import run_experiment
    from nip_core.parameters.update_schedule import ContiguousPeriodicUpdateSchedule

    schedule = ContiguousPeriodicUpdateSchedule(period=2, start=0, stop=1)
    hp = ppo_scenario.hyper_params(
        "nip",
        trainer="vanilla_ppo",
        ppo={"loss_type": "kl_penalty", "kl_beta": 0.3, "kl_target": 1e-6},
        rl=ppo_scenario.short_rl(num_iterations=4, num_epochs=2, minibatch_size=4),
        agents={"_default": {"d_hidden": 8, "update_schedule": schedule}},
    )
    betas: list[float] = []

    def record(trainer: Any, iteration: int, metrics: Any) -> None:
        betas.append(float(trainer.loss_module.loss.beta))

    run_experiment(hp, ppo_scenario.settings(), run_id="beta", callbacks=[record])
    # A KL above the (tiny) target on every minibatch of a training iteration
    # doubles β each time; the iterations that train nobody leave it alone
    assert betas[0] > 0.3
    assert betas[1] == betas[0]
    assert betas[2] > betas[1]
    assert betas[3] == betas[2]


@pytest.mark.parametrize("trainer_name", ["vanilla_ppo", "spg"])
def test_a_body_frozen_by_a_zero_factor_gets_no_gradients(
    ppo_scenario: Any, trainer_name: str
) -> None:
    """GAE (TorchRL's ``hold_out_net``) turned ``requires_grad`` back on for the
    whole value network after every call when its first parameter (the prover's)
    trains: the verifier's body, frozen by its body factor 0, then got gradients
    at every backward pass, piling up, though the optimizer never stepped it."""
    from nip_core.experiment import prepare_experiment

    hp = ppo_scenario.hyper_params(
        "nip",
        trainer=trainer_name,
        spg={"variant": "spg"},
        rl=ppo_scenario.short_rl(num_iterations=2, num_epochs=2, minibatch_size=4),
        agents={
            "prover": {"d_hidden": 4},
            "verifier": {"d_hidden": 4, "body_lr_factor": {"actor": 0, "critic": 0}},
        },
    )
    trainer = prepare_experiment(hp, ppo_scenario.settings()).trainer
    assert trainer.agent_names[0] == "prover"
    body = list(trainer.agents["verifier"].body.parameters())
    initial = [p.detach().clone() for p in body]
    trainer.train()
    assert [p.requires_grad for p in body] == [False] * len(body)
    assert [p.grad for p in body] == [None] * len(body)
    assert all(torch.equal(p, q) for p, q in zip(body, initial, strict=True))
    assert all(p.requires_grad for p in trainer.agents["prover"].parameters())
