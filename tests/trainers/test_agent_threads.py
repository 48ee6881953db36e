"""``run.agent_threads``: the agents' bodies side by side on threads, same result."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nip_core.errors import NipConfigError
from nip_core.experiment import run_experiment
from nip_core.testing.contracts.trainer import assert_same_agents
from nip_core.trainers.rl import TensorDictRlTrainer

pytestmark = pytest.mark.usefixtures("single_thread")


def _hyper_params(scenario, protocol: str = "nip", **rl):
    values = {"num_iterations": 2, "num_epochs": 2, "minibatch_size": 4}
    values.update(rl)
    return scenario.hyper_params(
        protocol,
        rl=scenario.short_rl(**values),
        agents={"_default": {"d_hidden": 8}},
    )


@pytest.mark.parametrize("protocol", ["nip", "debate"])
def test_training_on_agent_threads_gives_the_same_agents_bit_for_bit(
    synthetic_scenario, agent_thread_sections, protocol
):
    sections = agent_thread_sections
    hp = _hyper_params(synthetic_scenario, protocol)
    sequential = run_experiment(
        hp, synthetic_scenario.settings(agent_threads=1), run_id=f"seq-{protocol}"
    )
    assert sections == {"forward": [], "backward": []}
    threaded = run_experiment(
        hp, synthetic_scenario.settings(agent_threads=2), run_id=f"thr-{protocol}"
    )
    # every agent's body ran on the threads, forward and backward
    agents = len(sequential.trainer.agent_names)
    assert sections["forward"] and set(sections["forward"]) == {agents}
    assert sections["backward"] and set(sections["backward"]) == {agents}
    assert_same_agents(sequential, threaded)
    losses = [
        {k: v for k, v in record.items() if "loss" in k and "timing" not in k}
        for record in sequential.metrics
    ]
    assert losses == [
        {k: v for k, v in record.items() if "loss" in k and "timing" not in k}
        for record in threaded.metrics
    ]


def test_agent_threads_must_be_positive(synthetic_scenario):
    with pytest.raises((NipConfigError, ValueError), match="agent_threads"):
        synthetic_scenario.settings(agent_threads=0)


@pytest.mark.parametrize(
    ("setting", "device", "compile_loss", "cores", "agents", "expected"),
    [
        (None, "cpu", False, 2, 2, (2, 1)),  # auto: one thread per agent
        (None, "cpu", False, 2, 3, (2, 1)),  # ... at most the cores
        (None, "cpu", False, 8, 3, (3, 2)),  # the cores divided among them
        (None, "cpu", False, 1, 2, (1, 1)),  # one core: off
        (None, "cuda", False, 2, 2, (1, 2)),  # not on a GPU
        (None, "cpu", True, 2, 2, (1, 2)),  # not with compile_loss
        (1, "cpu", False, 2, 2, (1, 2)),  # off
        (4, "cpu", False, 2, 2, (4, 1)),  # as asked
    ],
)
def test_agent_threads_resolution(
    setting, device, compile_loss, cores, agents, expected
):
    trainer = SimpleNamespace(
        settings=SimpleNamespace(
            agent_threads=setting, device=device, compile_loss=compile_loss
        ),
        agent_names=[f"a{i}" for i in range(agents)],
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(cores)
    try:
        assert TensorDictRlTrainer._agent_threads(trainer) == expected
    finally:
        torch.set_num_threads(threads)
