"""``run.agent_threads`` with PPO's separate actor and critic bodies."""

from __future__ import annotations

import threading

import pytest

from nip_core.experiment import run_experiment
from nip_core.testing.contracts.trainer import assert_same_agents

pytestmark = pytest.mark.usefixtures("single_thread")


def _hyper_params(scenario, protocol="nip", **ppo):
    return scenario.hyper_params(
        protocol,
        trainer="vanilla_ppo",
        rl=scenario.short_rl(
            num_iterations=2, num_epochs=2, minibatch_size=4, use_shared_body=False
        ),
        agents={"_default": {"d_hidden": 8}},
        **({"ppo": ppo} if ppo else {}),
    )


def _record_head_threads(monkeypatch) -> list[str]:
    """The threads the synthetic policy and value heads' forward passes run on."""
    from nip_core.testing.synthetic import agents

    names: list[str] = []
    for cls in (agents.SyntheticAgentPolicyHead, agents.SyntheticAgentValueHead):

        def forward(self, tensordict, _original=cls.forward):
            names.append(threading.current_thread().name)
            return _original(self, tensordict)

        monkeypatch.setattr(cls, "forward", forward)
    return names


@pytest.mark.parametrize("protocol", ["nip", "debate"])
def test_policy_and_value_bodies_share_one_section_with_the_same_result(
    ppo_scenario, agent_thread_sections, monkeypatch, protocol
):
    """The policy bodies and value bodies of every agent run in one section,
    forward and backward, each with its head, and train the agents to the same
    weights, bit for bit, as one after the other."""
    sections = agent_thread_sections
    head_threads = _record_head_threads(monkeypatch)
    hp = _hyper_params(ppo_scenario, protocol)
    sequential = run_experiment(
        hp, ppo_scenario.settings(agent_threads=1), run_id=f"seq-{protocol}"
    )
    assert sections == {"forward": [], "backward": []}
    assert set(head_threads) == {threading.current_thread().name}
    head_threads.clear()
    threaded = run_experiment(
        hp, ppo_scenario.settings(agent_threads=2), run_id=f"thr-{protocol}"
    )
    # the loss's heads ran in their bodies' tasks: some on the helper thread
    assert any(name.startswith("nip-agents") for name in head_threads)
    agents = len(sequential.trainer.agent_names)
    # the loss's sections: policy and value bodies together; collection and
    # advantage sections (no gradients): one combined body each
    assert 2 * agents in sections["forward"] and agents in sections["forward"]
    assert sections["backward"] and set(sections["backward"]) == {2 * agents}
    assert_same_agents(sequential, threaded)


def test_kl_penalty_loss_on_agent_threads_gives_the_same_agents(ppo_scenario):
    """The KL-penalty loss runs the actor again without gradients (for the
    effective sample size): no prefetched outputs may be reused there."""
    hp = _hyper_params(ppo_scenario, loss_type="kl_penalty")
    sequential = run_experiment(
        hp, ppo_scenario.settings(agent_threads=1), run_id="kl-seq"
    )
    threaded = run_experiment(
        hp, ppo_scenario.settings(agent_threads=2), run_id="kl-thr"
    )
    assert_same_agents(sequential, threaded)
