"""Agent parts, the Agent dataclass and combined parts, on the synthetic scenario."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from nip_core.errors import NipConfigError
from nip_core.scenario import keys as K
from nip_core.scenario.agents import (
    Agent,
    CombinedBody,
    CombinedPolicyHead,
    ConstantAgentValueHead,
    RandomAgentPolicyHead,
    agent_view,
)
from nip_core.testing.synthetic.agents import (
    REPRESENTATION,
    SyntheticAgentBody,
    SyntheticAgentPolicyHead,
    SyntheticAgentValueHead,
    SyntheticSoloAgentHead,
)


class RecordingBody(SyntheticAgentBody):
    """Remembers the message history it was given."""

    def forward(self, tensordict):
        self.seen_history = tensordict.get(K.MESSAGE_HISTORY).clone()
        return super().forward(tensordict)


def test_combined_parts_stack_each_agents_output_in_agent_order(synthetic_scenario):
    instance = synthetic_scenario.build(synthetic_scenario.hyper_params("debate"))
    env = instance.train_environment
    td = env.reset()
    td[K.MESSAGE_HISTORY] = torch.rand(td[K.MESSAGE_HISTORY].shape)
    instance.combined_body(td)
    out = instance.combined_policy_head(td.clone())
    value = instance.combined_value_head(td.clone())[K.AGENTS, K.VALUE]
    assert value.shape == (env.num_envs, 3, 1)
    for index, name in enumerate(instance.protocol_handler.agent_names):
        agent = instance.agents[name]
        # debate: every agent sees both channels, so the view is the raw input
        view = agent_view(td, agent.body, index, None)
        representation = agent.body(view)[REPRESENTATION]
        assert torch.allclose(td[K.AGENTS, REPRESENTATION][:, index], representation)
        head_view = agent_view(td, agent.policy_head, index, None)
        head_out = agent.policy_head(head_view)
        assert torch.allclose(
            out[K.AGENTS, K.MAIN_MESSAGE_LOGITS][:, index],
            head_out[K.MAIN_MESSAGE_LOGITS],
        )
        assert torch.allclose(value[:, index, 0], agent.value_head(head_view)[K.VALUE])
    # only the verifier decides: the provers' decision logits are constant zeros
    decision_logits = out[K.AGENTS, K.DECISION_LOGITS]
    assert not decision_logits[:, :2].any()
    assert decision_logits[:, 2].abs().sum() > 0


def test_agents_observe_only_their_visible_channels(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("mnip")
    settings = synthetic_scenario.settings()
    instance = synthetic_scenario.build(hp, settings, roles=())
    handler = instance.protocol_handler
    bodies = {
        name: RecordingBody(hp, settings, name, handler) for name in handler.agent_names
    }
    combined = CombinedBody(hp, settings, handler, bodies)
    td = instance.train_environment.reset()
    history = torch.rand(td[K.MESSAGE_HISTORY].shape) + 1
    td[K.MESSAGE_HISTORY] = history
    combined(td)
    # channels: prover0_channel, prover1_channel; each prover sees only its own
    seen = {name: body.seen_history for name, body in bodies.items()}
    assert torch.equal(seen["prover0"][:, :, 0], history[:, :, 0])
    assert not seen["prover0"][:, :, 1].any()
    assert torch.equal(seen["prover1"][:, :, 1], history[:, :, 1])
    assert not seen["prover1"][:, :, 0].any()
    assert torch.equal(seen["verifier"], history)
    assert bodies["prover0"].visible_message_channel_names == ["prover0_channel"]
    assert bodies["prover1"].visible_message_channel_mask.tolist() == [False, True]


def test_random_and_constant_heads(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip", agents={"prover": {"is_random": True}})
    instance = synthetic_scenario.build(hp)
    prover = instance.agents["prover"]
    assert isinstance(prover.policy_head, RandomAgentPolicyHead)
    assert isinstance(prover.value_head, ConstantAgentValueHead)
    td = instance.train_environment.reset()
    instance.combined_body(td)
    out = instance.combined_policy_head(td)
    out = instance.combined_value_head(out)
    assert not out[K.AGENTS, K.MAIN_MESSAGE_LOGITS][:, 0].any()
    assert out[K.AGENTS, K.MAIN_MESSAGE_LOGITS][:, 1].abs().sum() > 0
    assert not out[K.AGENTS, K.VALUE][:, 0].any()


def test_combining_parts_with_different_outputs_is_refused(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip")
    settings = synthetic_scenario.settings()
    handler = synthetic_scenario.build(hp, settings, roles=()).protocol_handler
    heads = {
        "prover": SyntheticAgentPolicyHead(hp, settings, "prover", handler),
        "verifier": SyntheticAgentValueHead(hp, settings, "verifier", handler),
    }
    with pytest.raises(ValueError, match="same keys"):
        CombinedPolicyHead(hp, settings, handler, heads)
    with pytest.raises(ValueError, match="one part per agent"):
        CombinedPolicyHead(hp, settings, handler, {"prover": heads["prover"]})


def test_agent_structure_is_checked(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip")
    settings = synthetic_scenario.settings()
    handler = synthetic_scenario.build(hp, settings, roles=()).protocol_handler
    body = SyntheticAgentBody(hp, settings, "prover", handler)
    head = SyntheticAgentPolicyHead(hp, settings, "prover", handler)
    value = SyntheticAgentValueHead(hp, settings, "prover", handler)
    solo = SyntheticSoloAgentHead(hp, settings, "prover", handler)
    with pytest.raises(ValueError, match="needs a body"):
        Agent("prover", policy_head=head)
    with pytest.raises(ValueError, match="policy head or a solo head"):
        Agent("prover", body=body)
    with pytest.raises(ValueError, match="both a shared body"):
        Agent("prover", body=body, policy_body=body, policy_head=head)
    with pytest.raises(ValueError, match="value head but no policy head"):
        Agent("prover", body=body, value_head=value, solo_head=solo)
    agent = Agent("prover", body=body, policy_head=head, value_head=value)
    assert list(agent.parts) == ["body", "policy_head", "value_head"]
    assert agent.agent_params is hp.agents["prover"]


def _lr_by_name(groups):
    return {group["name"]: group["lr"] for group in groups}


def test_parameter_groups_follow_the_learning_rate_rules(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "nip",
        agents={
            "prover": {
                "d_hidden": 4,
                "agent_lr_factor": {"actor": 0.5, "critic": 0.5},
                "body_lr_factor": {"actor": 0.1, "critic": 0.1},
            },
            "verifier": {
                "d_hidden": 4,
                "agent_lr_factor": {"actor": 2.0, "critic": 3.0},
                "body_lr_factor": {"actor": 0.0, "critic": 1.0},
            },
        },
    )
    instance = synthetic_scenario.build(hp)
    prover = instance.agents["prover"]
    groups = prover.get_model_parameter_dicts(0.01)
    assert _lr_by_name(groups) == pytest.approx(
        {
            "prover.body": 0.01 * 0.5 * 0.1,
            "prover.policy_head": 0.005,
            "prover.solo_head": 0.005,
            "prover.value_head": 0.005,
        }
    )
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in prover.parameters())

    override = prover.get_model_parameter_dicts(0.01, body_lr_factor_override=True)
    assert _lr_by_name(override)["prover.body"] == pytest.approx(0.005)

    # A shared body needs agreeing actor and critic factors.
    with pytest.raises(NipConfigError, match="agents.verifier.agent_lr_factor"):
        instance.agents["verifier"].get_model_parameter_dicts(0.01)


def test_zero_learning_rate_freezes(synthetic_scenario):
    hp = synthetic_scenario.hyper_params(
        "nip",
        agents={
            "_default": {"d_hidden": 4, "body_lr_factor": {"actor": 0, "critic": 0}}
        },
    )
    agent = synthetic_scenario.build(hp).agents["verifier"]
    groups = agent.get_model_parameter_dicts(0.01)
    assert "verifier.body" not in _lr_by_name(groups)
    assert not any(p.requires_grad for p in agent.body.parameters())
    assert all(p.requires_grad for p in agent.policy_head.parameters())


def test_agent_state_round_trip(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip")
    first = synthetic_scenario.build(hp).agents["prover"]
    second = synthetic_scenario.build(hp, synthetic_scenario.settings()).agents[
        "verifier"
    ]
    with torch.no_grad():
        for p in second.parameters():
            p.add_(1.0)
    second_state = second.state_dict()
    third = synthetic_scenario.build(hp).agents["verifier"]
    third.load_state_dict(second_state)
    for a, b in zip(third.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(KeyError, match="value_head"):
        third.load_state_dict({"body": second_state["body"]})
    assert set(first.state_dict()) == {"body", "policy_head", "value_head", "solo_head"}


def test_parts_of_an_unknown_agent_are_refused(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip")
    handler = synthetic_scenario.build(hp, roles=()).protocol_handler
    with pytest.raises(ValueError, match="not in protocol"):
        SyntheticAgentBody(hp, synthetic_scenario.settings(), "prover0", handler)


def test_agent_view_reads_agent_level_keys_at_the_agent_index(synthetic_scenario):
    hp = synthetic_scenario.hyper_params("nip")
    settings = synthetic_scenario.settings()
    handler = synthetic_scenario.build(hp, settings, roles=()).protocol_handler
    head = SyntheticAgentPolicyHead(hp, settings, "verifier", handler)
    td = TensorDict(
        {
            K.AGENTS: TensorDict(
                {REPRESENTATION: torch.arange(24.0).reshape(3, 2, 4)}, [3, 2]
            )
        },
        [3],
    )
    view = agent_view(td, head, 1, None)
    assert torch.equal(view[REPRESENTATION], td[K.AGENTS, REPRESENTATION][:, 1])


class TwoOutputBody(SyntheticAgentBody):
    """The synthetic body plus a ``summary`` output it computes only when read."""

    agent_level_out_keys = (REPRESENTATION, "summary")

    def forward(self, tensordict):
        out = super().forward(tensordict)
        if self.needs_output("summary"):
            out["summary"] = out[REPRESENTATION].sum(-1)
        return out


class SummaryReadingPolicyHead(SyntheticAgentPolicyHead):
    agent_level_in_keys = (REPRESENTATION, "summary")


def test_bodies_compute_only_what_their_heads_read(synthetic_scenario):
    from nip_core.factory import restrict_body_outputs

    hp = synthetic_scenario.hyper_params("nip")
    settings = synthetic_scenario.settings()
    instance = synthetic_scenario.build(hp, settings, roles=())
    handler = instance.protocol_handler
    agents = {
        name: Agent(
            name,
            policy_body=TwoOutputBody(hp, settings, name, handler),
            value_body=TwoOutputBody(hp, settings, name, handler),
            policy_head=SummaryReadingPolicyHead(hp, settings, name, handler),
            value_head=SyntheticAgentValueHead(hp, settings, name, handler),
        )
        for name in handler.agent_names
    }
    assert agents["prover"].value_body.out_keys == [REPRESENTATION, "summary"]
    restrict_body_outputs(agents)
    for agent in agents.values():
        assert agent.policy_body.out_keys == [REPRESENTATION, "summary"]
        assert agent.value_body.out_keys == [REPRESENTATION]
        assert not agent.value_body.needs_output("summary")
    td = instance.train_environment.reset()
    value_bodies = {name: agent.value_body for name, agent in agents.items()}
    CombinedBody(hp, settings, handler, value_bodies)(td)
    assert td[K.AGENTS, REPRESENTATION].shape[:2] == (
        instance.train_environment.num_envs,
        2,
    )
    assert (K.AGENTS, "summary") not in td.keys(include_nested=True)
    policy_bodies = {name: agent.policy_body for name, agent in agents.items()}
    CombinedBody(hp, settings, handler, policy_bodies)(td)
    assert torch.allclose(td[K.AGENTS, "summary"], td[K.AGENTS, REPRESENTATION].sum(-1))
    with pytest.raises(ValueError, match="does not produce"):
        agents["prover"].value_body.restrict_outputs(["missing"])


def test_scatter_to_channels_zeroes_the_channels_an_agent_cannot_see(
    synthetic_scenario,
):
    hp = synthetic_scenario.hyper_params("mnip")
    settings = synthetic_scenario.settings()
    handler = synthetic_scenario.build(hp, settings, roles=()).protocol_handler
    prover1 = SyntheticAgentBody(hp, settings, "prover1", handler)
    verifier = SyntheticAgentBody(hp, settings, "verifier", handler)
    visible = torch.arange(1.0, 7.0).reshape(3, 1, 2)  # (batch, channel, position)
    full = prover1.scatter_to_channels(visible, 1)
    assert full.shape == (3, 2, 2)
    assert torch.equal(full[:, 1], visible[:, 0])
    assert not full[:, 0].any()
    assert prover1.num_visible_channels == 1
    both = torch.ones(3, 2, 2)
    assert verifier.scatter_to_channels(both, 1) is both
