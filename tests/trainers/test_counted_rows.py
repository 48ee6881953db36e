"""The update runs the policy only on the rows where each agent's choices count
(:func:`nip_core.scenario.combined.counted_rows_only`): the same training, to
float tolerance, for less work."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from nip_core.experiment import prepare_experiment, run_experiment
from nip_core.scenario import keys as K
from nip_core.scenario.combined import counted_rows_only, counting_rows
from nip_core.scenario.distributions import counted_agents
from nip_core.testing.contracts.trainer import (
    assert_close_agents,
    record_counted_rows,
)
from nip_core.trainers.reinforce import ReinforceLoss

pytestmark = pytest.mark.usefixtures("single_thread")


def _hyper_params(scenario, protocol: str = "nip", **rl):
    values = {
        "num_iterations": 2,
        "num_epochs": 2,
        "minibatch_size": 4,
        "use_shared_body": False,
    }
    values.update(rl)
    return scenario.hyper_params(
        protocol,
        rl=scenario.short_rl(**values),
        reinforce={"use_advantage_and_critic": True},
        agents={"_default": {"d_hidden": 8}},
    )


@pytest.fixture
def padded_rows(monkeypatch):
    """Every (computed rows, batch size) the policy's parts padded to."""
    return record_counted_rows(monkeypatch)


@pytest.mark.parametrize(
    ("protocol", "agent_threads", "shared_body"),
    [
        ("nip", 1, False),
        ("nip", 2, False),
        ("debate", 2, False),
        ("nip", 1, True),
    ],
)
def test_the_update_trains_the_same_agents_computing_fewer_rows(
    synthetic_scenario, monkeypatch, padded_rows, protocol, agent_threads, shared_body
):
    hp = _hyper_params(synthetic_scenario, protocol, use_shared_body=shared_body)
    settings = synthetic_scenario.settings(agent_threads=agent_threads)
    counted = run_experiment(hp, settings, run_id="counted")
    padded = list(padded_rows)
    # the policy ran on fewer rows than the minibatch, at every minibatch
    assert padded
    assert all(rows < size for rows, size in padded)
    monkeypatch.setattr(ReinforceLoss, "reads_counted_choices_only", False)
    padded_rows.clear()
    every_row = run_experiment(hp, settings, run_id="every-row")
    assert padded_rows == []
    assert_close_agents(every_row, counted)
    for left, right in zip(every_row.metrics, counted.metrics, strict=True):
        for key, value in left.items():
            if "loss" in key and "timing" not in key:
                assert right[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_a_loss_that_does_not_say_so_gets_every_row(synthetic_scenario, padded_rows):
    hp = _hyper_params(synthetic_scenario)
    trainer = prepare_experiment(hp, synthetic_scenario.settings()).trainer
    trainer.loss_module = torch.nn.Module()  # reads who knows what
    with trainer._counted_rows_context():
        assert not counting_rows()
    trainer.loss_module = ReinforceLoss(None)
    with trainer._counted_rows_context():
        assert counting_rows()
    assert not counting_rows()


# ------------------------------------------------------------------------------------
# The combined parts on one minibatch
# ------------------------------------------------------------------------------------


def _policy_and_minibatch(synthetic_scenario, protocol: str = "nip"):
    """The trainer's policy operator and a minibatch of a real rollout."""
    hp = _hyper_params(synthetic_scenario, protocol)
    trainer = prepare_experiment(hp, synthetic_scenario.settings()).trainer
    trainer._build_operators()
    env = trainer.train_environment
    rollout, _ = trainer._collect(env, None, trainer._steps_per_iteration(env))
    return trainer, rollout.reshape(-1)


def _logits_and_gradients(trainer, minibatch):
    policy = trainer.policy_operator
    policy.zero_grad(set_to_none=True)
    td = minibatch.clone(False)
    dist = policy.get_dist(td)
    log_prob = dist.log_prob(minibatch.get((K.AGENTS, K.ACTION)))
    entropy = dist.entropy()
    (log_prob.sum() + entropy.sum()).backward()
    grads = {
        name: p.grad.clone()
        for name, p in policy.named_parameters()
        if p.grad is not None
    }
    logits = {
        key: td.get((K.AGENTS, key)).detach()
        for key in (K.MAIN_MESSAGE_LOGITS, K.DECISION_LOGITS)
    }
    return logits, log_prob.detach(), entropy.detach(), grads


@pytest.mark.parametrize("protocol", ["nip", "debate"])
def test_counted_rows_give_the_same_log_probabilities_entropies_and_gradients(
    synthetic_scenario, padded_rows, protocol
):
    trainer, minibatch = _policy_and_minibatch(synthetic_scenario, protocol)
    trainer.set_agents_mode(True)
    logits, log_prob, entropy, grads = _logits_and_gradients(trainer, minibatch)
    assert padded_rows == []
    with counted_rows_only():
        c_logits, c_log_prob, c_entropy, c_grads = _logits_and_gradients(
            trainer, minibatch
        )
    assert padded_rows
    torch.testing.assert_close(c_log_prob, log_prob)
    torch.testing.assert_close(c_entropy, entropy)
    assert grads and c_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(c_grads[name], grad, msg=name)
    counted = counted_agents(
        minibatch.get((K.AGENTS, K.ACTIVE_MASK)),
        minibatch.get((K.AGENTS, K.DECISION_MASK)),
    )
    assert (~counted).any()  # some rows were left out
    for key, full in logits.items():
        mask = counted.reshape(*counted.shape, *([1] * (full.ndim - 2)))
        mask = mask.expand_as(full)
        # the counted rows as on every row; zeros elsewhere
        torch.testing.assert_close(c_logits[key][mask], full[mask])
        assert torch.equal(c_logits[key][~mask], torch.zeros_like(full[~mask]))


def _head_and_batch(synthetic_scenario, active, decision):
    trainer, _ = _policy_and_minibatch(synthetic_scenario)
    head = trainer.scenario_instance.combined_policy_head
    batch = TensorDict(
        {
            K.AGENTS: TensorDict(
                {
                    K.ACTIVE_MASK: torch.tensor(active).unsqueeze(-1),
                    K.DECISION_MASK: torch.tensor(decision),
                },
                batch_size=(len(active), 2),
            )
        },
        batch_size=(len(active),),
    )
    return trainer, head, batch


def test_rows_read_are_the_counted_rows_of_each_agent(synthetic_scenario):
    # rows: prover speaks on 0 and 2; the verifier speaks on 1, decides on 3
    _, head, batch = _head_and_batch(
        synthetic_scenario,
        active=[[True, False], [False, True], [True, False], [False, False]],
        decision=[[False, False], [False, False], [False, False], [False, True]],
    )
    assert head.rows_read(batch) is None  # outside the context: every row
    with counted_rows_only():
        prover, verifier = head.rows_read(batch)
        assert prover.tolist() == [0, 2]
        assert verifier.tolist() == [1, 3]
        # a two-dimensional batch (collection's): every row
        assert head.rows_read(batch.reshape(2, 2)) is None
        # without the masks: every row
        assert head.rows_read(batch.exclude((K.AGENTS, K.DECISION_MASK))) is None


def test_an_agent_whose_choices_never_count_keeps_one_row_and_all_count_none(
    synthetic_scenario,
):
    _, head, batch = _head_and_batch(
        synthetic_scenario,
        active=[[True, False], [True, False], [True, False]],
        decision=[[False, False]] * 3,
    )
    with counted_rows_only():
        prover, verifier = head.rows_read(batch)
    assert prover is None  # every row counts: no gather at all
    assert verifier.tolist() == [0]  # none counts: one row keeps the shapes


def test_a_part_not_rows_independent_runs_on_every_row(synthetic_scenario, monkeypatch):
    trainer, head, batch = _head_and_batch(
        synthetic_scenario,
        active=[[True, False], [False, True]],
        decision=[[False, False], [False, False]],
    )
    body = trainer.scenario_instance.combined_policy_body
    with counted_rows_only():
        assert head.rows_read(batch) is not None
        assert body.rows_read(batch) is not None  # chained to the head
        part = type(body.parts["prover"])
        monkeypatch.setattr(part, "rows_independent", property(lambda self: False))
        assert body.rows_read(batch) is None
        assert head.rows_read(batch) is not None  # the heads still may
        head_part = type(head.parts["prover"])
        monkeypatch.setattr(head_part, "rows_independent", property(lambda self: False))
        assert head.rows_read(batch) is None


def test_uses_batch_statistics():
    from nip_core.scenario.parts import uses_batch_statistics

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    assert uses_batch_statistics(net)
    net.eval()
    assert not uses_batch_statistics(net)
    assert uses_batch_statistics(torch.nn.BatchNorm1d(2, track_running_stats=False))
    assert not uses_batch_statistics(torch.nn.Linear(2, 2))


def test_outputs_computed_ahead_on_counted_rows_are_not_used_on_every_row(
    synthetic_scenario,
):
    """The critic's pass computes the policy bodies too (paired bodies, on the
    agent threads) and keeps their outputs for the actor's pass: kept under
    counted_rows_only, they hold zeros on the rows that do not count, and an
    actor's pass outside it computes its own."""
    from nip_core.scenario.concurrency import concurrent_backward, concurrent_parts

    trainer, minibatch = _policy_and_minibatch(synthetic_scenario)
    trainer.set_agents_mode(True)
    expected = trainer.policy_operator(minibatch.clone(False))
    key = (K.AGENTS, K.DECISION_LOGITS)
    with concurrent_parts(2), concurrent_backward():
        td = minibatch.clone(False)
        with counted_rows_only():
            trainer.value_operator(td)  # runs (and keeps) the policy bodies too
        got = trainer.policy_operator(td)
    counted = counted_agents(
        minibatch.get((K.AGENTS, K.ACTIVE_MASK)),
        minibatch.get((K.AGENTS, K.DECISION_MASK)),
    )
    assert (~counted).any()
    torch.testing.assert_close(got.get(key), expected.get(key))


def test_run_counted_rows_false_computes_every_row(synthetic_scenario, padded_rows):
    hp = _hyper_params(synthetic_scenario)
    off = synthetic_scenario.settings(counted_rows=False)
    trainer = prepare_experiment(hp, off).trainer
    trainer.loss_module = ReinforceLoss(None)
    with trainer._counted_rows_context():
        assert not counting_rows()
    run_experiment(hp, off, run_id="every-row")
    assert padded_rows == []


def test_outputs_on_the_counted_rows_are_padded_to_the_whole_batch():
    # what a part computed on some rows, as outputs of the whole batch: tensors
    # get zeros on the other rows, a non-tensor value of the whole batch stays,
    # a non-tensor value per row is None on the other rows; none is dropped
    from tensordict import NonTensorData, NonTensorStack

    from nip_core.scenario.combined import _pad_rows

    out = TensorDict(
        {
            "logits": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
            "nested": TensorDict({"value": torch.tensor([5.0, 6.0])}, [2]),
        },
        batch_size=[2],
    )
    out.set_non_tensor("note", "whole batch")
    out["nested", "per_row"] = NonTensorStack(NonTensorData("a"), NonTensorData("b"))
    padded = _pad_rows(out, torch.tensor([1, 3]), 4)
    assert padded.batch_size == torch.Size([4])
    assert padded["logits"].tolist() == [[0, 0], [1, 2], [0, 0], [3, 4]]
    assert padded["nested", "value"].tolist() == [0, 5, 0, 6]
    assert padded.get_non_tensor("note") == "whole batch"
    assert padded.get(("nested", "per_row")).tolist() == [None, "a", None, "b"]
