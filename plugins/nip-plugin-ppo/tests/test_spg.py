"""The spg trainer's surrogates, sampler and update directions."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from ppo_helpers import collected_minibatch, prepared_trainer

from nip_core.errors import NipConfigError
from nip_core.scenario import keys as K
from nip_plugin_ppo.losses import RowSampler

LOG_PROB = (K.AGENTS, K.SAMPLE_LOG_PROB)
ADVANTAGE = (K.AGENTS, "advantage")


def _hyper_params(scenario: Any, variant: str, **spg: Any) -> Any:
    return scenario.hyper_params(
        "nip",
        trainer="spg",
        spg={"variant": variant, **spg},
        ppo={"entropy_eps": 0.0},
        rl={"normalize_observations": False, "rollouts_per_iteration": 6},
    )


def _rows(trainer: Any, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    rollout = collected_minibatch(trainer)
    old = rollout.get(LOG_PROB)
    rollout.set(LOG_PROB, old + torch.empty_like(old).uniform_(-0.3, 0.3))
    return rollout


@pytest.mark.parametrize("variant", ["spg", "pspg"])
def test_surrogate_uses_joint_ratio_over_episode_prefix(
    ppo_scenario: Any, variant: str
) -> None:
    trainer = prepared_trainer(ppo_scenario, _hyper_params(ppo_scenario, variant))
    rows = _rows(trainer)  # [env, time]
    out = trainer.loss_module(rows.reshape(-1))
    with torch.no_grad():
        log_prob = trainer.policy_operator.get_dist(rows.clone(False)).log_prob(rows)
    step = (log_prob - rows.get(LOG_PROB)).sum(-1)  # [env, time]: every agent
    done = rows.get(("next", "done")).reshape(step.shape)
    prefix = torch.zeros_like(step)
    for e in range(step.shape[0]):
        running = 0.0
        for t in range(step.shape[1]):
            running = running + step[e, t]
            prefix[e, t] = running
            if done[e, t]:
                running = 0.0
    ratio = prefix.exp().reshape(-1, 1)
    advantage = rows.get(ADVANTAGE).reshape(-1, 2)
    advantage = (advantage - advantage.mean(0)) / advantage.std(0)
    gain = ratio * advantage
    if variant == "pspg":
        gain = torch.minimum(gain, ratio.clamp(0.8, 1.2) * advantage)
    torch.testing.assert_close(out["loss_objective"].detach(), -gain.mean(0))


def test_leader_is_shaped_and_follower_is_not(ppo_scenario: Any) -> None:
    """In nip the verifier leads: LOLA changes its direction, not the prover's."""
    trainer = prepared_trainer(
        ppo_scenario, _hyper_params(ppo_scenario, "lola", additional_lola_term=False)
    )
    loss = trainer.loss_module
    assert loss.sequence == [("verifier",), ("prover",)]
    batch = _rows(trainer).reshape(-1)
    out = loss(batch)
    directions = loss.directions(out)
    for index, name in enumerate(trainer.agent_names):
        plain = torch.autograd.grad(
            out["loss_objective"][index],
            loss.actor_params[name],
            retain_graph=True,
            allow_unused=True,
        )
        plain = torch.cat(
            [
                torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
                for g, p in zip(plain, loss.actor_params[name], strict=True)
            ]
        )
        got = torch.cat([d.reshape(-1) for d in directions[name]])
        if name == "prover":
            torch.testing.assert_close(got, plain)
        else:
            assert (got - plain).norm() > 1e-6 * plain.norm()


def _flat_grad(output: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(output, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [
            torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


@pytest.mark.parametrize("frozen", ["prover", "verifier"])
def test_an_agent_frozen_by_a_zero_learning_rate_neither_shapes_nor_follows(
    ppo_scenario: Any, frozen: str
) -> None:
    """``agent_lr_factor`` 0: the optimizer, built after the loss, leaves the
    agent's parameters out. The update used to differentiate with respect to them
    anyway, and failed ("One of the differentiated Tensors does not require
    grad"); now the frozen agent leaves the game, so the other agent follows its
    own gradient exactly (there is no learning step or best response to
    anticipate). The rollout's value estimation turns ``requires_grad`` back on for
    the frozen body (TorchRL's ``hold_out_net``), which must not bring it back."""
    hp = ppo_scenario.hyper_params(
        "nip",
        trainer="spg",
        spg={"variant": "spg"},
        ppo={"entropy_eps": 0.0},
        rl={"normalize_observations": False, "rollouts_per_iteration": 6},
        agents={frozen: {"agent_lr_factor": {"actor": 0.0, "critic": 0.0}}},
    )
    trainer = prepared_trainer(ppo_scenario, hp)
    loss = trainer.loss_module
    assert set(loss.actor_params) == {"verifier", "prover"}
    trainer.optimizer = trainer._get_optimizer()
    (other,) = set(trainer.agent_names) - {frozen}
    assert set(loss.actor_params) == {other}
    assert loss.sequence == [(other,)]
    out = loss(_rows(trainer).reshape(-1))
    directions = loss.directions(out)
    assert set(directions) == {other}
    plain = _flat_grad(
        out["loss_objective"][trainer.agent_names.index(other)],
        loss.actor_params[other],
    )
    torch.testing.assert_close(
        torch.cat([d.reshape(-1) for d in directions[other]]), plain
    )
    loss.backward(out)


def test_backward_writes_directions_plus_critic_gradients(ppo_scenario: Any) -> None:
    trainer = prepared_trainer(ppo_scenario, _hyper_params(ppo_scenario, "sos"))
    loss = trainer.loss_module
    batch = _rows(trainer).reshape(-1)
    out = loss(batch)
    directions = loss.directions(out)
    critic = out["loss_critic"].sum()
    critic_grads = torch.autograd.grad(
        critic, loss.actor_params["verifier"], retain_graph=True, allow_unused=True
    )
    loss.backward(out)
    for param, direction, critic_grad in zip(
        loss.actor_params["verifier"], directions["verifier"], critic_grads, strict=True
    ):
        expected = direction if critic_grad is None else direction + critic_grad
        torch.testing.assert_close(param.grad, expected)


def test_stackelberg_sequence_must_name_every_agent(ppo_scenario: Any) -> None:
    hp = _hyper_params(
        ppo_scenario, "psos", stackelberg_sequence=[["verifier"], ["provr"]]
    )
    with pytest.raises(NipConfigError, match="provr"):
        prepared_trainer(ppo_scenario, hp)
    # found before anything runs (nip config show / validate, a sweep's check)
    from nip_core.protocols.factory import protocol_problems

    (problem,) = protocol_problems(hp)
    assert problem.path == "spg.stackelberg_sequence"
    assert problem.message.startswith(
        "must name every agent of the protocol exactly once (unknown agents "
        "['provr']; missing agents ['prover'])"
    )
    assert problem.value == [["verifier"], ["provr"]]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sos_scaling_factor", 0.0),
        ("sos_threshold_factor", 0.0),
        ("sos_scaling_factor", 1.5),
        ("sos_threshold_factor", -0.1),
    ],
)
def test_sos_factors_lie_in_the_half_open_unit_interval(
    ppo_scenario: Any, field: str, value: float
) -> None:
    with pytest.raises(NipConfigError) as error:
        _hyper_params(ppo_scenario, "psos", **{field: value})
    (problem,) = error.value.problems
    assert problem.path == f"spg.{field}"
    assert problem.message == "must be in (0, 1]"
    assert problem.value == value
    _hyper_params(ppo_scenario, "psos", **{field: 1.0})


def test_the_originals_sos_names_say_what_replaced_them(ppo_scenario: Any) -> None:
    with pytest.raises(NipConfigError) as error:
        _hyper_params(ppo_scenario, "psos", sos_a_param=0.3)
    (problem,) = error.value.problems
    assert (problem.path, problem.message) == (
        "spg.sos_a_param",
        "the original library's name; use spg.sos_scaling_factor",
    )


def test_custom_stackelberg_sequence_is_used(ppo_scenario: Any) -> None:
    hp = _hyper_params(
        ppo_scenario, "psos", stackelberg_sequence=[["prover"], ["verifier"]]
    )
    trainer = prepared_trainer(ppo_scenario, hp)
    assert trainer.loss_module.sequence == [("prover",), ("verifier",)]


def test_row_sampler_draws_whole_rows_without_replacement() -> None:
    torch.manual_seed(0)
    sampler = RowSampler(row_length=3)
    storage = list(range(12))  # four rows of three steps
    seen = []
    for _ in range(2):
        index, _ = sampler.sample(storage, batch_size=6)
        rows = index.reshape(-1, 3)
        assert torch.equal(rows - rows[:, :1], torch.arange(3).expand_as(rows))
        assert bool((rows[:, 0] % 3 == 0).all())
        seen.extend((rows[:, 0] // 3).tolist())
    assert sorted(seen) == [0, 1, 2, 3]


_REPRODUCIBILITY_SCRIPT = """
import json, sys
from pathlib import Path

import torch

from nip_core.experiment import run_experiment
from nip_core.plugins import get_plugin_manager
from nip_core.runs.run_dir import RunDirectory
from nip_core.testing.synthetic.fixtures import SyntheticScenario
from nip_core.testing.synthetic.plugin import SYNTHETIC_PLUGIN

torch.set_num_threads(1)
get_plugin_manager().register(SYNTHETIC_PLUGIN, name="synthetic")
scenario = SyntheticScenario(Path(sys.argv[1]))
metrics = {}
for variant in ("spg", "pspg"):
    hp = scenario.hyper_params(
        "nip",
        trainer="spg",
        spg={"variant": variant},
        rl={"num_iterations": 3, "num_test_iterations": 0,
            "rollouts_per_iteration": 8, "minibatch_size": 8, "num_epochs": 2,
            "normalize_observations": False},
    )
    result = run_experiment(hp, scenario.settings(checkpoint_period=None))
    metrics[variant] = [
        {k: v for k, v in m.items() if not k.startswith("timing.")}
        for m in RunDirectory(result.run_dir).read_metrics()
    ]
print(json.dumps(metrics))
"""


def test_nystrom_variants_are_reproducible_across_processes(tmp_path: Any) -> None:
    # Same seed, two processes: the same metrics to the last digit (LAPACK's
    # pivoted-QR least squares once made these runs differ).
    import json
    import subprocess
    import sys

    runs = []
    for name in ("first", "second"):
        done = subprocess.run(
            [sys.executable, "-c", _REPRODUCIBILITY_SCRIPT, str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert [len(runs[0][v]) for v in ("spg", "pspg")] == [3, 3]
    assert runs[0] == runs[1]
