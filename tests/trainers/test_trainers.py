"""Trainer behaviour on the synthetic scenario: learning-rate groups, update
schedules, learning, the iteration count, and the statistics."""

from __future__ import annotations

import math

import pytest
import torch

from nip_core.errors import NipConfigError
from nip_core.experiment import prepare_experiment, run_experiment
from nip_core.parameters.update_schedule import ContiguousPeriodicUpdateSchedule
from nip_core.testing.synthetic.fixtures import SyntheticScenario
from nip_core.trainers.stats import episode_index, normalised_entropy

pytestmark = pytest.mark.usefixtures("single_thread")


_rl = SyntheticScenario.short_rl


# --------------------------------------------------------------------------------------
# Learning-rate groups


def _optimizer_of(trainer):
    trainer._build_operators()
    trainer.loss_module, trainer.gae = trainer._get_loss_module_and_gae()
    return trainer._get_optimizer()


def test_every_zero_knowledge_decider_trains_its_decision_head(synthetic_scenario):
    # the simulator decides too (its reward compares its decision logits with the
    # adversarial verifier's): its decision head must get gradients
    hp = synthetic_scenario.hyper_params(
        "nip", zero_knowledge=True, rl=_rl(lr=0.05, num_iterations=2)
    )
    trainer = prepare_experiment(hp, synthetic_scenario.settings()).trainer
    names = ("verifier", "adversarial_verifier", "simulator")
    before = {
        name: trainer.agents[name].policy_head.decider.weight.detach().clone()
        for name in names
    }
    trainer.train()
    for name in names:
        after = trainer.agents[name].policy_head.decider.weight
        assert not torch.equal(before[name], after), name


def test_every_trainable_parameter_is_in_one_group_with_its_lr(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "nip",
        reinforce={"use_advantage_and_critic": True},
        rl=_rl(lr=0.01, use_shared_body=False),
        agents={
            "prover": {
                "d_hidden": 4,
                "agent_lr_factor": {"actor": 2.0, "critic": 0.5},
                "body_lr_factor": {"actor": 0.1, "critic": 3.0},
            },
            "verifier": {"d_hidden": 4},
        },
    )
    trainer = prepare_experiment(hp, synthetic_scenario.settings()).trainer
    verifier = trainer.agents["verifier"]
    first_layer = verifier.policy_body.mlp[0]
    # The scenario hook: the verifier's first layer learns at a quarter of the body LR
    verifier.policy_body.parameter_groups = lambda role="body": [
        ("first", list(first_layer.parameters()), 0.25),
        (
            "",
            [
                p
                for p in verifier.policy_body.parameters()
                if all(p is not q for q in first_layer.parameters())
            ],
            1.0,
        ),
    ]
    optimizer = _optimizer_of(trainer)

    expected_lr = {
        ("prover", "policy_body"): 0.01 * 2.0 * 0.1,
        ("prover", "value_body"): 0.01 * 0.5 * 3.0,
        ("prover", "policy_head"): 0.01 * 2.0,
        ("prover", "value_head"): 0.01 * 0.5,
        ("verifier", "policy_body"): 0.01,
        ("verifier", "value_body"): 0.01,
        ("verifier", "policy_head"): 0.01,
        ("verifier", "value_head"): 0.01,
    }
    lr_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert id(p) not in lr_of, f"a parameter is in two groups ({group['name']})"
            lr_of[id(p)] = group["lr"]
    checked = 0
    for name, agent in trainer.agents.items():
        for role, part in agent.parts.items():
            for p in part.parameters():
                if not p.requires_grad:
                    continue
                lr = expected_lr[(name, role)]
                if name == "verifier" and any(p is q for q in first_layer.parameters()):
                    lr *= 0.25
                assert math.isclose(lr_of.pop(id(p)), lr), (name, role)
                checked += 1
    assert lr_of == {}  # no group holds anything but agent parameters
    assert checked == sum(
        p.numel() > 0 for a in trainer.agents.values() for p in a.parameters()
    )


def test_shared_body_needs_agreeing_factors(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "nip",
        reinforce={"use_advantage_and_critic": True},
        rl=_rl(use_shared_body=True),
        agents={
            "_default": {"d_hidden": 4, "body_lr_factor": {"actor": 1, "critic": 2}}
        },
    )
    trainer = prepare_experiment(hp, synthetic_scenario.settings()).trainer
    with pytest.raises(
        NipConfigError, match=r"agents\.prover\.body_lr_factor: .*shared"
    ):
        _optimizer_of(trainer)


def test_zero_lr_factor_freezes_the_agent(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "nip",
        rl=_rl(),
        agents={
            "prover": {"d_hidden": 4, "agent_lr_factor": {"actor": 0.0, "critic": 0.0}},
            "verifier": {"d_hidden": 4},
        },
    )
    result = run_experiment(hp, synthetic_scenario.settings(test_run=False), run_id="z")
    trainer = result.trainer
    names = {g["name"].split(".")[0] for g in trainer.optimizer.param_groups}
    assert names == {"verifier"}
    assert not any(p.requires_grad for p in trainer.agents["prover"].parameters())


def test_a_part_frozen_by_a_zero_factor_gets_no_gradients(synthetic_scenario):
    """The value estimator (TorchRL's GAE) holds the value network out of the graph
    by turning ``requires_grad`` off for every parameter and back on afterwards,
    when the first one (here the prover's) required a gradient: the verifier's
    body, frozen by its body factor 0, used to get gradients at every minibatch
    (piling up, since the optimizer never clears them), though nothing stepped it.
    """
    hp = synthetic_scenario.hyper_params(
        "nip",
        reinforce={"use_advantage_and_critic": True},
        rl=_rl(num_iterations=2),
        agents={
            "prover": {"d_hidden": 4},
            "verifier": {"d_hidden": 4, "body_lr_factor": {"actor": 0, "critic": 0}},
        },
    )
    trainer = prepare_experiment(hp, synthetic_scenario.settings()).trainer
    assert trainer.agent_names[0] == "prover"
    body = trainer.agents["verifier"].body
    initial = [p.detach().clone() for p in body.parameters()]
    trainer.train()
    assert [p.requires_grad for p in body.parameters()] == [False] * len(initial)
    assert [p.grad for p in body.parameters()] == [None] * len(initial)
    for before, after in zip(initial, body.parameters(), strict=True):
        assert torch.equal(before, after)
    # the parts that train still do
    assert all(p.requires_grad for p in trainer.agents["prover"].parameters())
    value_head = trainer.agents["verifier"].value_head
    assert all(p.requires_grad for p in value_head.parameters())


# --------------------------------------------------------------------------------------
# Update schedules


def test_update_schedule_skips_the_agent_on_off_iterations(synthetic_scenario):
    schedule = ContiguousPeriodicUpdateSchedule(period=2, start=0, stop=1)
    # With a critic: the value loss moves an updated agent's value head every time
    hp = synthetic_scenario.hyper_params(
        "nip",
        reinforce={"use_advantage_and_critic": True},
        rl=_rl(num_iterations=4),
        agents={
            "prover": {"d_hidden": 4, "update_schedule": schedule},
            "verifier": {"d_hidden": 4},
        },
    )
    snapshots = []

    def snapshot(trainer, iteration, metrics):
        snapshots.append(
            {
                name: [p.detach().clone() for p in agent.parameters()]
                for name, agent in trainer.agents.items()
            }
        )

    result = run_experiment(
        hp, synthetic_scenario.settings(), run_id="sched", callbacks=[snapshot]
    )
    initial = prepare_experiment(hp, synthetic_scenario.settings()).trainer.agents

    def changed(before, after):
        return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))

    previous = {
        n: [p.detach().clone() for p in a.parameters()] for n, a in initial.items()
    }
    for iteration, current in enumerate(snapshots):
        assert changed(previous["prover"], current["prover"]) == (iteration % 2 == 0)
        assert changed(previous["verifier"], current["verifier"])
        previous = current
    updated = [m["prover.updated"] for m in result.metrics if "prover.updated" in m]
    assert updated == [1.0, 0.0, 1.0, 0.0]


# --------------------------------------------------------------------------------------
# Learning


def test_reinforce_improves_the_verifier(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "solo_verifier",
        rl=_rl(
            num_iterations=12,
            frames_per_batch=64,
            rollouts_per_iteration=None,
            minibatch_size=32,
            num_epochs=2,
            lr=0.01,
        ),
        agents={"_default": {"d_hidden": 16}},
        synthetic={"train_size": 64, "test_size": 32},
    )
    result = run_experiment(hp, synthetic_scenario.settings(), run_id="learn")
    rewards = [m["verifier.mean_episode_reward"] for m in result.metrics[:12]]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.15
    test = result.metrics[-1]
    assert test["step"] == 12
    assert test["test_mean_accuracy"] > 0.65


def test_solo_agent_improves_on_the_test_set(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "nip",
        trainer="solo_agent",
        solo_agent={"num_epochs": 8, "batch_size": 16, "learning_rate": 0.01},
        agents={"_default": {"d_hidden": 16}},
        synthetic={"train_size": 64, "test_size": 32},
    )
    settings = synthetic_scenario.settings()
    trainer = prepare_experiment(hp, settings).trainer
    trainer._build()
    before = trainer.evaluate(trainer.scenario_instance.test_dataset)
    result = run_experiment(hp, settings, run_id="solo")
    test = result.metrics[-1]
    assert test["step"] == 8
    for name in ("prover", "verifier"):
        assert test[f"{name}.test_loss"] < before[name]["loss"] - 0.1
        assert test[f"{name}.test_accuracy"] > 0.7


# --------------------------------------------------------------------------------------
# Iteration counts and test runs


def test_prepare_experiment_counts_every_progress_bar_iteration(synthetic_scenario):
    settings = synthetic_scenario.settings()
    hp = synthetic_scenario.hyper_params(
        "nip", rl=_rl(num_iterations=5, num_test_iterations=2)
    )
    assert prepare_experiment(hp, settings).total_iterations == 7
    solo = synthetic_scenario.hyper_params(
        "nip", trainer="solo_agent", solo_agent={"num_epochs": 4}
    )
    assert prepare_experiment(solo, settings).total_iterations == 4
    shrunk = settings.shrunk()
    assert prepare_experiment(hp, shrunk).total_iterations == 2


def test_test_run_writes_nothing_and_runs_one_iteration(synthetic_scenario, tmp_path):
    hp = synthetic_scenario.hyper_params("nip", rl=_rl(num_iterations=5))
    result = run_experiment(hp, synthetic_scenario.settings(test_run=True))
    assert result.run_dir is None
    assert [m["step"] for m in result.metrics] == [0, 1]
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------------
# Statistics


def test_episode_index_splits_on_done():
    done = torch.tensor(
        [[False, True, False, True, False], [True, True, False, False, False]]
    )
    episode, complete = episode_index(done)
    assert episode.tolist() == [[0, 0, 1, 1, 2], [6, 7, 8, 8, 8]]
    assert complete.tolist() == [
        [True, True, True, True, False],
        [True, True, False, False, False],
    ]


def test_normalised_entropy_is_of_the_choices_left():
    """Normalised by the largest entropy the masked distribution can have: uniform
    over the choices left is 1, one choice left is 0."""
    inf = float("-inf")
    logits = torch.tensor(
        [[0.0, 0.0, inf, inf], [0.0, 0.0, 0.0, 0.0], [0.0, inf, inf, inf]]
    )
    assert torch.allclose(normalised_entropy(logits), torch.tensor([1.0, 1.0, 0.0]))


def test_rollout_statistics_read_the_policy_the_agents_sample_from():
    """Entropies and the largest message probability are of the logits masked as
    the action distribution masks them, and an episode whose first steps lie in
    the batch before counts its whole length (its round at the end, plus one)."""
    import math

    from tensordict import TensorDict

    from nip_core.trainers.stats import rollout_statistics

    # one environment, 3 steps: an episode carried over (its round 1, ending), then
    # a fresh one of 2 steps; one agent on one channel, 4 messages
    message_logits = torch.tensor(
        [[1.0, 1.0, 5.0, 5.0], [0.0, 0.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0]]
    ).reshape(1, 3, 1, 1, 1, 4)
    valid = torch.tensor(
        [[True, True, False, False], [True, True, True, True], [True] * 4]
    ).reshape(1, 3, 1, 1, 1, 4)
    decision_logits = torch.tensor([[0.0, 0.0, 5.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    agents = TensorDict(
        {
            "main_message_logits": message_logits,
            "valid_message_mask": valid,
            "decision_logits": decision_logits.reshape(1, 3, 1, 3),
            "decision_mask": torch.ones(1, 3, 1, dtype=torch.bool),
            "active_mask": torch.ones(1, 3, 1, 1, dtype=torch.bool),
            "decision": torch.full((1, 3, 1), 2),
        },
        batch_size=(1, 3, 1),
    )
    rollout = TensorDict(
        {
            "round": torch.tensor([[1, 0, 1]]),
            # the last step may only guess: "continue" is ruled out there
            "decision_restriction": torch.tensor([[0, 0, 2]]),
            "y": torch.ones(1, 3, 1, dtype=torch.long),
            "datapoint_id": torch.zeros(1, 3, dtype=torch.long),
            "agents": agents,
            "next": TensorDict(
                {
                    "done": torch.tensor([[True, False, True]]),
                    "agents": TensorDict(
                        {"reward": torch.zeros(1, 3, 1)}, batch_size=(1, 3, 1)
                    ),
                },
                batch_size=(1, 3),
            ),
        },
        batch_size=(1, 3),
    )
    stats = rollout_statistics(rollout, ["verifier"])
    assert stats["mean_episode_length"] == 2.0  # both episodes had 2 rounds
    # step 0: two valid messages, equal logits -> entropy 1, largest prob 1/2
    # step 1: all valid, softmax([0, 0, 0, 3]); step 2: uniform over 4 -> 1, 1/4
    p = torch.softmax(torch.tensor([0.0, 0.0, 0.0, 3.0]), -1)
    entropy_1 = float(-(p * p.log()).sum() / math.log(4))
    assert stats["verifier.mean_message_entropy"] == pytest.approx(
        (1.0 + entropy_1 + 1.0) / 3
    )
    assert stats["verifier.mean_max_message_prob"] == pytest.approx(
        (0.5 + float(p.max()) + 0.25) / 3
    )
    # decisions: step 2 may not continue: uniform over accept/reject -> 1
    q = torch.softmax(torch.tensor([0.0, 0.0, 5.0]), -1)
    entropy_0 = float(-(q * q.log()).sum() / math.log(3))
    assert stats["verifier.mean_decision_entropy"] == pytest.approx(
        (entropy_0 + 1.0 + 1.0) / 3
    )


def test_rollout_statistics_exact_values():
    from tensordict import TensorDict

    from nip_core.trainers.stats import rollout_statistics

    # one environment, 4 steps: two episodes (2 steps each), datapoints 3 and 5
    done = torch.tensor([[False, True, False, True]])
    reward = torch.tensor([[[0.0, 0.0], [1.0, -1.0], [0.0, 0.0], [1.0, 1.0]]])
    decision = torch.tensor([[[2, 2], [2, 0], [2, 2], [2, 1]]])
    rollout = TensorDict(
        {
            "y": torch.tensor([[[1], [1], [1], [1]]]),
            "datapoint_id": torch.tensor([[3, 3, 5, 5]]),
            "agents": TensorDict({"decision": decision}, batch_size=[1, 4, 2]),
            "next": TensorDict(
                {
                    "done": done,
                    "agents": TensorDict({"reward": reward}, batch_size=[1, 4, 2]),
                },
                batch_size=[1, 4],
            ),
        },
        batch_size=[1, 4],
    )
    stats = rollout_statistics(rollout, ["prover", "verifier"], prefix="test_")
    assert stats["test_mean_episode_length"] == 2.0
    assert stats["prover.test_mean_episode_reward"] == 1.0
    assert stats["verifier.test_mean_episode_reward"] == 0.0
    assert stats["verifier.test_worst_episode_reward"] == -1.0
    assert stats["prover.test_mean_step_reward"] == 0.5
    # the verifier rejects datapoint 3 (wrong) and accepts datapoint 5 (right)
    assert stats["test_mean_accuracy"] == 0.5
    assert stats["test_worst_datapoint_accuracy"] == 0.0
    assert stats["test_mean_datapoint_accuracy"] == 0.5
    # with a forced verdict (force_guess=y) the accuracy is of what counted
    forced = rollout_statistics(
        rollout,
        ["prover", "verifier"],
        effective_decision=lambda decision, y: y.expand_as(decision).clone(),
    )
    assert forced["mean_accuracy"] == 1.0
    assert forced["worst_datapoint_accuracy"] == 1.0


def test_a_carried_over_episode_is_paid_its_whole_return():
    """An episode whose first rounds lie in the batch before counts the rewards it
    got there: its episode reward is its whole return, as its length is its whole
    length (before, only the rewards of its last batch counted)."""
    from tensordict import TensorDict

    from nip_core.trainers.stats import open_episode_returns, rollout_statistics

    def batch(rounds, rewards, done, datapoints):
        steps = len(rounds)
        return TensorDict(
            {
                "round": torch.tensor([rounds]),
                "y": torch.ones(1, steps, 1, dtype=torch.long),
                "datapoint_id": torch.tensor([datapoints]),
                "agents": TensorDict(
                    {"decision": torch.tensor([[[1 if d else 2] for d in done]])},
                    batch_size=(1, steps, 1),
                ),
                "next": TensorDict(
                    {
                        "done": torch.tensor([done]),
                        "agents": TensorDict(
                            {"reward": torch.tensor([[[r] for r in rewards]])},
                            batch_size=(1, steps, 1),
                        ),
                    },
                    batch_size=(1, steps),
                ),
            },
            batch_size=(1, steps),
        )

    # episodes of 3 rounds paid -0.25 per round the verifier continues and 1 for
    # its verdict: a return of 0.5 each. The first runs through batch A, its rounds
    # 0 and 1, and ends in batch B, where a whole second episode follows.
    first = batch([0, 1], [-0.25, -0.25], [False, False], [7, 7])
    carried = open_episode_returns(first)
    assert carried.tolist() == [[-0.5]]
    second = batch(
        [2, 0, 1, 2], [1.0, -0.25, -0.25, 1.0], [True, False, False, True], [7, 8, 8, 8]
    )
    stats = rollout_statistics(second, ["verifier"], carried_returns=carried)
    assert stats["mean_episode_length"] == 3.0
    assert stats["verifier.mean_episode_reward"] == 0.5
    assert stats["verifier.worst_episode_reward"] == 0.5
    # nothing is left running at the end of batch B
    assert open_episode_returns(second, carried).tolist() == [[0.0]]
    # an episode running through a whole batch carries on what it had before
    middle = batch([2, 3], [-0.25, -0.25], [False, False], [7, 7])
    assert open_episode_returns(middle, carried).tolist() == [[-1.0]]


def test_accuracy_reads_the_verdict_at_the_step_the_verifier_became_done():
    # zero knowledge: the verifier accepts on round 0 (y = 1: right) while the
    # adversarial verifier goes on; the episode ends on round 2, when the adversarial
    # verifier decides, and the verifier, done since round 0, samples a reject there
    # that counts for nothing
    from tensordict import TensorDict

    from nip_core.trainers.stats import rollout_statistics

    names = ["prover", "verifier", "adversarial_verifier", "simulator"]
    decision = torch.tensor([[[2, 1, 2, 2], [2, 2, 2, 2], [2, 0, 1, 2]]])
    agent_done_after = torch.tensor(
        [[[0, 1, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1]]], dtype=torch.bool
    )
    agent_done_before = torch.tensor(
        [[[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]]], dtype=torch.bool
    )

    def rollout(with_agent_done: bool) -> TensorDict:
        agents = {"decision": decision}
        next_agents = {"reward": torch.zeros(1, 3, 4, 1)}
        if with_agent_done:
            agents["done"] = agent_done_before.unsqueeze(-1)
            next_agents["done"] = agent_done_after.unsqueeze(-1)
        return TensorDict(
            {
                "y": torch.ones(1, 3, 1, dtype=torch.long),
                "datapoint_id": torch.zeros(1, 3, dtype=torch.long),
                "agents": TensorDict(agents, batch_size=(1, 3, 4)),
                "next": TensorDict(
                    {
                        "done": torch.tensor([[[False], [False], [True]]]),
                        "agents": TensorDict(next_agents, batch_size=(1, 3, 4)),
                    },
                    batch_size=(1, 3),
                ),
            },
            batch_size=(1, 3),
        )

    stats = rollout_statistics(rollout(True), names)
    assert stats["mean_accuracy"] == 1.0
    assert stats["worst_datapoint_accuracy"] == 1.0
    # without per-agent done flags: the episode's last step, as before
    assert rollout_statistics(rollout(False), names)["mean_accuracy"] == 0.0


@pytest.mark.parametrize(("force", "accuracy"), [("y", 1.0), ("zero", None)])
def test_accuracy_with_force_guess_follows_the_rewards(
    synthetic_scenario, force, accuracy
):
    # the verifier's sampled decisions are kept (the policy's log-probabilities are
    # of them); the accuracy is of the forced verdict, as the rewards are
    from nip_core.experiment import run_experiment

    hp = synthetic_scenario.hyper_params(
        "nip",
        rl=synthetic_scenario.short_rl(num_iterations=1),
        protocol_common={"force_guess": force},
    )
    result = run_experiment(hp, synthetic_scenario.settings(), run_id=f"forced-{force}")
    (record,) = [r for r in result.metrics if "mean_accuracy" in r]
    # every episode ends with the forced verdict on the verifier's first turn, paid
    # verifier_reward when right and verifier_incorrect_penalty when wrong
    common = hp.protocol_common
    right, wrong = common.verifier_reward, common.verifier_incorrect_penalty
    paid = (record["verifier.mean_episode_reward"] - wrong) / (right - wrong)
    assert record["mean_accuracy"] == pytest.approx(paid)
    if accuracy is not None:
        assert record["mean_accuracy"] == accuracy
    else:  # always reject: right on the label-0 datapoints only
        assert 0.0 < record["mean_accuracy"] < 1.0


def test_normalisation_statistics_match_a_stored_rollout(synthetic_scenario):
    """The running statistics equal those of the whole random rollout, which is no
    longer kept in memory."""
    from nip_core.trainers.rl import _running_observation_statistics

    instance = synthetic_scenario.build()
    env = instance.train_environment
    key = "message_history"
    env.set_seed(3)
    torch.manual_seed(3)
    data = env.rollout(12, break_when_any_done=False)
    values = data.get(key).double()
    dims = tuple(range(data.batch_dims))
    env.set_seed(3)
    torch.manual_seed(3)
    stats = _running_observation_statistics(env, [key], 12)
    mean, std = stats[key]
    torch.testing.assert_close(mean, values.mean(dim=dims).float())
    torch.testing.assert_close(std, values.std(dim=dims).float(), atol=1e-5, rtol=1e-4)


def test_reinforce_clips_its_critic_by_its_own_epsilon(synthetic_scenario):
    """REINFORCE reads its own section, never a PPO plugin's."""
    hp = synthetic_scenario.hyper_params(
        "nip",
        rl={"clip_value": True},
        reinforce={"use_advantage_and_critic": True, "clip_epsilon": 0.05},
    )
    trainer = prepare_experiment(hp, synthetic_scenario.settings()).trainer
    assert trainer._clip_value() == 0.05
    hp = synthetic_scenario.hyper_params("nip", rl={"clip_value": 0.3})
    assert (
        prepare_experiment(hp, synthetic_scenario.settings()).trainer._clip_value()
        == 0.3
    )


def test_the_core_reads_no_plugin_section():
    """No core module reads a section a plugin registers (ppo, spg, ...)."""
    import re
    from pathlib import Path

    import nip_core

    root = Path(nip_core.__file__).parent
    pattern = re.compile(r"""(hyper_params|params)\s*(\.|,\s*["'])(ppo|spg)\b""")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for path in root.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_a_random_agent_under_solo_agent_is_refused_at_validation(synthetic_scenario):
    from nip_core.errors import NipConfigError

    with pytest.raises(NipConfigError) as info:
        synthetic_scenario.hyper_params(
            "nip", trainer="solo_agent", agents={"verifier": {"is_random": True}}
        )
    (problem,) = info.value.problems
    assert problem.path == "agents.verifier.is_random"
    assert problem.message == (
        "a random agent cannot be trained with the solo_agent trainer"
    )
    # a random agent is fine when another trainer trains the others
    hp = synthetic_scenario.hyper_params(
        "nip", agents={"verifier": {"is_random": True}}
    )
    assert hp.agents["verifier"].is_random


def test_values_across_agents_sum_the_losses_and_average_the_statistics():
    """An entry with a value per agent is logged per agent and once across them:
    the loss terms summed (what the update minimises), statistics such as the KL
    and the explained variance averaged (a sum would scale with the agents)."""
    from types import SimpleNamespace

    from nip_core.trainers.rl import TensorDictRlTrainer

    trainer = SimpleNamespace(num_agents=2, agent_names=["prover", "verifier"])
    metrics = TensorDictRlTrainer._loss_metrics(
        trainer,
        {
            ("agents", "loss_objective"): torch.tensor([1.0, 2.0]),
            "kl": torch.tensor([0.25, 0.75]),
            "explained_variance": torch.tensor([-1.0, 0.5]),
            "kl_beta": torch.tensor(0.5),
        },
        "test_",
    )
    assert metrics == {
        "prover.test_loss_objective": 1.0,
        "verifier.test_loss_objective": 2.0,
        "test_loss_objective": 3.0,
        "prover.test_kl": 0.25,
        "verifier.test_kl": 0.75,
        "test_kl": 0.5,
        "prover.test_explained_variance": -1.0,
        "verifier.test_explained_variance": 0.5,
        "test_explained_variance": -0.25,
        "test_kl_beta": 0.5,
    }


def test_a_resumed_run_pays_carried_over_episodes_as_an_uninterrupted_one(
    synthetic_scenario,
):
    """The rewards that the training episodes running at an iteration's end got in
    it are checkpointed: after a resume the iterations log the episode rewards an
    uninterrupted run logs."""
    from nip_core.experiment import resume_run, run_experiment

    hp = synthetic_scenario.hyper_params(
        "nip",
        rl=synthetic_scenario.short_rl(num_iterations=4),
        # a reward each round the verifier continues: episodes that carry over
        # got part of their return in the batch before
        protocol_common={"verifier_no_guess_reward": -0.125},
    )
    settings = synthetic_scenario.settings(checkpoint_period=1)
    reference = run_experiment(hp, settings, run_id="reference")

    def stop(trainer, iteration, metrics):
        if iteration == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(hp, settings, run_id="stopped", callbacks=[stop])
    resumed = resume_run("stopped", settings.runs_dir, show_progress=False)
    assert resumed.resumed_from == 2

    def rewards(result):
        return {
            r["step"]: r["verifier.mean_episode_reward"]
            for r in result.metrics
            if "verifier.mean_episode_reward" in r
        }

    expected = rewards(reference)
    assert {2: expected[2], 3: expected[3]} == {
        step: value for step, value in rewards(resumed).items() if step >= 2
    }
