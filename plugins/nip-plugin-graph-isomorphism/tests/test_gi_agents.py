"""Agent parts: shapes, options, the GNN learning-rate group, the manual verifier."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import settings, tiny_hyper_params
from nip_core.parameters import RandomAgentParameters
from nip_core.scenario import keys as K
from nip_core.scenario.agents import agent_view
from nip_core.testing.contracts.scenario import build_scenario_components
from tensordict import TensorDict

import nip_plugin_graph_isomorphism.plugin as gi_plugin
from nip_plugin_graph_isomorphism.agent_parameters import (
    GraphIsomorphismAgentParameters,
)
from nip_plugin_graph_isomorphism.agents import GRAPH_LEVEL_REPR, NODE_LEVEL_REPR
from nip_plugin_graph_isomorphism.generation import GenerationConfig, generate_pairs
from nip_plugin_graph_isomorphism.networks import PairTransformer


@pytest.fixture
def registered(register_plugin):
    register_plugin(gi_plugin, name="graph_isomorphism")


@pytest.mark.parametrize(
    ("protocol", "zero_knowledge"),
    [("nip", False), ("debate", False), ("mnip", False), ("nip", True)],
)
def test_body_and_head_shapes(registered, tmp_path, protocol, zero_knowledge) -> None:
    instance = build_scenario_components(
        tiny_hyper_params(protocol, zero_knowledge), settings(tmp_path)
    )
    env = instance.train_environment
    td = env.reset()
    B, C, P, n = env.num_envs, env.num_message_channels, env.message_size, 8
    for agent in instance.agents.values():
        body = agent.body
        out = body(agent_view(td, body, body.agent_index, None))
        d = agent.agent_params.d_transformer
        assert out[GRAPH_LEVEL_REPR].shape == (B, d)
        assert out[NODE_LEVEL_REPR].shape == (B, 2, n, d)
        head = agent.policy_head
        head_input = out.clone()
        head_input[K.ROUND] = td[K.ROUND]
        logits = head(head_input)
        assert logits[K.MAIN_MESSAGE_LOGITS].shape == (B, C, P, 2 * n)
        assert logits[K.DECISION_LOGITS].shape == (B, 3)
        hidden = [c for c in range(C) if c not in head.visible_message_channel_indices]
        assert not logits[K.MAIN_MESSAGE_LOGITS][:, hidden].any()
        if not head.has_decider:
            assert not logits[K.DECISION_LOGITS].any()


@pytest.mark.parametrize(
    ("protocol", "zero_knowledge", "random_agent"),
    [
        ("nip", False, "prover"),
        ("nip", False, "verifier"),
        ("debate", False, "prover1"),
        ("mnip", False, "prover0"),
        ("nip", True, "prover"),
    ],
)
def test_random_agents_run_beside_real_ones(
    registered, tmp_path, protocol, zero_knowledge, random_agent
) -> None:
    """A random agent's body outputs zeros as wide as the other agents' (the
    combined body stacks them) and its policy is uniform: zero logits, which the
    action distribution masks to the valid nodes."""
    hyper_params = tiny_hyper_params(protocol, zero_knowledge, trainer="reinforce")
    hyper_params.agents[random_agent] = RandomAgentParameters()
    from nip_core.experiment import prepare_experiment

    instance = prepare_experiment(hyper_params, settings(tmp_path)).scenario_instance
    td = instance.train_environment.reset()
    instance.combined_body(td)
    instance.combined_policy_head(td)
    index = instance.protocol_handler.agent_names.index(random_agent)
    d = GraphIsomorphismAgentParameters.construct_test_params().d_transformer
    graph_level = td[K.AGENTS, GRAPH_LEVEL_REPR]
    assert graph_level.shape[-1] == d
    assert not graph_level[:, index].any()
    logits = td[K.AGENTS, K.MAIN_MESSAGE_LOGITS][:, index]
    assert not logits.any()


@pytest.mark.parametrize(
    "overrides",
    [
        {"use_dual_gnn": False},
        {"use_pair_invariant_pooling": False},
        {"use_batch_norm": False, "noise_sigma": 0.5},
        {"gnn_output_digits": 1},
        {"num_transformer_layers": 0},
        {"include_round_in_decider": False, "include_round_in_value": False},
    ],
)
def test_options_build_and_run(registered, tmp_path, overrides) -> None:
    instance = build_scenario_components(
        tiny_hyper_params("nip", **overrides), settings(tmp_path)
    )
    td = instance.train_environment.reset()
    instance.combined_body(td)
    instance.combined_policy_head(td)
    instance.combined_value_head(td)
    assert torch.isfinite(td[K.AGENTS, K.VALUE]).all()


def test_pair_invariant_body_ignores_the_pair_order(registered, tmp_path) -> None:
    instance = build_scenario_components(
        tiny_hyper_params("nip", num_transformer_layers=0),
        settings(tmp_path),
        roles=("body", "solo_head"),
    )
    body = instance.agents["verifier"].body.eval()
    td = instance.train_environment.reset()
    view = agent_view(td, body, body.agent_index, None)
    swapped = view.clone()
    for key in ("adjacency", "node_mask"):
        swapped[key] = view[key].flip(1)
    swapped[K.MESSAGE_HISTORY] = view[K.MESSAGE_HISTORY].flip(-2)
    swapped[K.MESSAGE] = view[K.MESSAGE].flip(-2)
    a, b = body(view)[GRAPH_LEVEL_REPR], body(swapped)[GRAPH_LEVEL_REPR]
    assert torch.allclose(a, b, atol=1e-5)


def test_gnn_parameters_get_their_own_learning_rate_group(registered, tmp_path) -> None:
    hyper_params = tiny_hyper_params("nip")
    hyper_params.agents["verifier"].gnn_lr_factor.actor = 0.1
    instance = build_scenario_components(
        hyper_params, settings(tmp_path), roles=("body", "solo_head")
    )
    body = instance.agents["verifier"].body
    groups = body.parameter_groups()
    names = [suffix for suffix, _, _ in groups]
    assert names == ["gnn", ""]
    gnn, rest = groups[0][1], groups[1][1]
    assert groups[0][2] == 0.1 and groups[1][2] == 1.0
    assert {id(p) for p in gnn} == {id(p) for p in body.encoder.gnn_parameters()}
    assert len(gnn) + len(rest) == len(list(body.parameters()))
    assert not {id(p) for p in gnn} & {id(p) for p in rest}
    # A value body scales its GNN by the critic factor, other bodies by the actor's
    hyper_params.agents["verifier"].gnn_lr_factor.critic = 0.3
    assert body.parameter_groups(role="value_body")[0][2] == 0.3
    assert body.parameter_groups(role="policy_body")[0][2] == 0.1


@pytest.mark.parametrize(
    "overrides", [{}, {"num_transformer_layers": 2}, {"num_transformer_layers": 0}]
)
def test_value_bodies_skip_node_outputs_with_the_same_pair_output(
    registered, tmp_path, overrides
) -> None:
    roles = ("policy_body", "value_body", "policy_head", "value_head")
    instance = build_scenario_components(
        tiny_hyper_params("debate", trainer="reinforce", **overrides),
        settings(tmp_path),
        roles=roles,
    )
    node_key, pair_key = (K.AGENTS, NODE_LEVEL_REPR), (K.AGENTS, GRAPH_LEVEL_REPR)
    assert node_key not in instance.combined_value_body.out_keys
    assert node_key in instance.combined_policy_body.out_keys
    td = instance.train_environment.reset()
    td[K.MESSAGE_HISTORY] = torch.randint_like(td[K.MESSAGE_HISTORY], 2)
    for agent in instance.agents.values():
        restricted = agent.value_body.eval()
        full = type(restricted)(
            restricted.hyper_params,
            restricted.settings,
            restricted.agent_name,
            restricted.protocol_handler,
        ).eval()
        full.load_state_dict(restricted.state_dict())
        view = agent_view(td, full, full.agent_index, None)
        out, full_out = restricted(view), full(view)
        assert NODE_LEVEL_REPR not in out.keys()
        assert torch.allclose(
            out[GRAPH_LEVEL_REPR], full_out[GRAPH_LEVEL_REPR], atol=1e-6
        )
    instance.combined_value_body.eval()(td)
    instance.combined_value_head(td)
    assert td[pair_key].shape[:2] == td[K.AGENTS, K.VALUE].shape[:2]


def test_value_and_solo_heads_keep_their_state_dict_keys(registered, tmp_path) -> None:
    # The heads are the core's representation heads; checkpoints saved before that
    # must still load, so names and shapes are pinned: d_transformer 2, 3 rounds
    instance = build_scenario_components(
        tiny_hyper_params("nip", num_value_layers=3), settings(tmp_path)
    )
    verifier = instance.agents["verifier"]
    value_shapes = {
        key: tuple(tensor.shape)
        for key, tensor in verifier.value_head.state_dict().items()
    }
    assert value_shapes == {
        "value_mlp.mlp.0.weight": (1, 2 + 4),
        "value_mlp.mlp.0.bias": (1,),
        "value_mlp.mlp.2.weight": (1, 1),
        "value_mlp.mlp.2.bias": (1,),
        "value_mlp.mlp.4.weight": (1, 1),
        "value_mlp.mlp.4.bias": (1,),
    }
    assert verifier.value_head.in_keys == [K.ROUND, GRAPH_LEVEL_REPR]
    solo_shapes = {
        key: tuple(tensor.shape)
        for key, tensor in verifier.solo_head.state_dict().items()
    }
    assert solo_shapes == {
        "decider.mlp.0.weight": (1, 2),
        "decider.mlp.0.bias": (1,),
        "decider.mlp.2.weight": (2, 1),
        "decider.mlp.2.bias": (2,),
    }
    assert verifier.solo_head.in_keys == [GRAPH_LEVEL_REPR]


def test_attention_reaches_only_the_other_graph_and_the_pooled_token() -> None:
    transformer = PairTransformer(4, 2, 8, 1, 0.0, "relu")
    node_mask = torch.tensor([[[True, True, False], [True, True, True]]])
    blocked = transformer.attention_mask(node_mask)[0]  # first head
    # token order: pooled, graph A nodes 0-2, graph B nodes 0-2
    allowed = ~blocked
    assert allowed[0].tolist() == [True, True, True, False, True, True, True]
    assert allowed[1].tolist() == [True, False, False, False, True, True, True]
    assert allowed[4].tolist() == [True, True, True, False, False, False, False]


def test_manual_verifier_is_right_on_isomorphic_pairs(registered, tmp_path) -> None:
    hyper_params = tiny_hyper_params("nip", use_manual_architecture=True)
    instance = build_scenario_components(hyper_params, settings(tmp_path))
    verifier = instance.agents["verifier"]
    pairs = generate_pairs(
        GenerationConfig(
            num_pairs=40, graph_sizes=(7, 8), edge_probabilities=(0.4, 0.6)
        ),
        seed=1,
        workers=1,
    )
    n = pairs.adjacency.shape[-1]
    num = len(pairs)
    td = TensorDict(
        {
            "adjacency": torch.as_tensor(pairs.adjacency, dtype=torch.int32),
            "node_mask": torch.arange(n)[None, None, :]
            < torch.as_tensor(pairs.sizes)[:, :, None],
            K.MESSAGE_HISTORY: torch.zeros(num, 3, 1, 1, 2, n),
            K.MESSAGE: torch.zeros(num, 1, 1, 2, n),
            K.ROUND: torch.zeros(num, dtype=torch.long),
        },
        batch_size=(num,),
    )
    body_out = verifier.body(td)
    td.update(body_out)
    decisions = verifier.policy_head(td)[K.DECISION_LOGITS].argmax(-1).numpy()
    labels = pairs.labels
    assert labels.sum() == 20
    assert (decisions[labels == 1] == 1).all()
    # every generated non-isomorphic pair is WL-separated, so rejected too
    assert (decisions[labels == 0] == 0).all()
    assert np.array_equal(decisions, labels)


def test_manual_architecture_is_refused_outside_nip(registered, tmp_path) -> None:
    from nip_core.errors import NipConfigError

    with pytest.raises(NipConfigError, match="nip protocol only"):
        build_scenario_components(
            tiny_hyper_params("debate", use_manual_architecture=True),
            settings(tmp_path),
        )


def test_dataset_options_cap_the_training_set(registered, tmp_path) -> None:
    # dataset_options is a core section: graph isomorphism honours it without the
    # image classification plugin installed
    hyper_params = tiny_hyper_params("nip")
    assert hyper_params.dataset_options.max_train_size is None
    full = build_scenario_components(hyper_params, settings(tmp_path), roles=())
    hyper_params.dataset_options.max_train_size = 10
    capped = build_scenario_components(hyper_params, settings(tmp_path), roles=())
    assert len(full.train_dataset) == 100
    assert len(capped.train_dataset) == 10
    assert len(capped.test_dataset) == len(full.test_dataset)


@pytest.mark.parametrize(
    ("overrides", "safe_in_training"),
    [
        ({}, True),
        ({"noise_sigma": 0.5}, False),
        ({"transformer_dropout": 0.1}, False),
    ],
)
@pytest.mark.usefixtures("single_thread")
def test_bodies_run_on_agent_threads_unless_they_draw_random_numbers(
    registered, tmp_path, overrides, safe_in_training
) -> None:
    """Paired noise and dropout draw from torch's shared generator: such bodies
    must not run beside each other on threads while training (the order of the
    draws would vary); without them, or in eval mode, they may."""
    from nip_core.scenario.concurrency import concurrent_parts

    instance = build_scenario_components(
        tiny_hyper_params("nip", **overrides), settings(tmp_path)
    )
    bodies = [agent.body for agent in instance.agents.values()]
    combined = instance.combined_body
    for train, expected in ((True, safe_in_training), (False, True)):
        combined.train(train)
        assert all(body.concurrent_safe is expected for body in bodies)
        assert combined._threadable() is expected
    combined.train(True)
    td = instance.train_environment.reset()
    with concurrent_parts(2):
        torch.manual_seed(0)
        threaded = combined(td.clone())
    torch.manual_seed(0)
    sequential = combined(td.clone())
    torch.testing.assert_close(
        threaded[K.AGENTS, GRAPH_LEVEL_REPR],
        sequential[K.AGENTS, GRAPH_LEVEL_REPR],
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize(
    ("overrides", "independent_in_training", "same_rows"),
    [
        ({"use_batch_norm": False}, True, True),
        ({"use_batch_norm": True}, False, False),
        # random draws scaled by the batch's spread: not promised, not checked
        ({"use_batch_norm": False, "noise_sigma": 0.5}, False, None),
    ],
)
def test_parts_on_some_rows_give_those_rows_outputs_unless_they_mix_rows(
    registered, tmp_path, overrides, independent_in_training, same_rows
) -> None:
    """``rows_independent``: the body and policy head may run on the rows where
    the agent's choices count alone (the update's counted_rows_only) exactly
    when their outputs there are those of a run on every row: not with batch
    norm's batch statistics or random noise while training."""
    instance = build_scenario_components(
        tiny_hyper_params("nip", **overrides), settings(tmp_path)
    )
    instance.combined_body.train(True)
    agent = instance.agents["prover"]
    body, head = agent.body, agent.policy_head
    assert head.rows_independent
    assert body.rows_independent is independent_in_training
    body.eval()
    assert body.rows_independent
    body.train()
    td = instance.train_environment.reset()
    # messages in the history, so the rows differ in more than their graphs
    history = td[K.MESSAGE_HISTORY]
    td[K.MESSAGE_HISTORY] = torch.randint_like(history, 2)
    rows = torch.tensor([0, 2, 3])
    view = agent_view(td, body, body.agent_index, None)
    torch.manual_seed(0)
    full = body(view)
    torch.manual_seed(0)
    some = body(view[rows])
    same = torch.allclose(
        some[GRAPH_LEVEL_REPR], full[GRAPH_LEVEL_REPR][rows], rtol=1e-5, atol=1e-6
    ) and torch.allclose(
        some[NODE_LEVEL_REPR], full[NODE_LEVEL_REPR][rows], rtol=1e-5, atol=1e-6
    )
    if same_rows is not None:
        assert same is same_rows
    head_input = full.clone()
    head_input[K.ROUND] = td[K.ROUND]
    logits = head(head_input)
    some_logits = head(head_input[rows])
    for key in (K.MAIN_MESSAGE_LOGITS, K.DECISION_LOGITS):
        torch.testing.assert_close(some_logits[key], logits[key][rows])


def test_agent_options_the_scenario_lacks_are_found_before_the_run(
    registered,
) -> None:
    """What the agent parts refuse when built is found when the config is
    validated (nip config validate, a sweep's check), at the same dotted paths."""
    from nip_core.protocols.factory import protocol_problems

    from nip_plugin_graph_isomorphism.checks import agent_problems

    hyper_params = tiny_hyper_params("debate", normalize_message_history=True)
    hyper_params.agents["verifier"] = GraphIsomorphismAgentParameters(
        use_manual_architecture=True
    )
    hyper_params.agents["prover0"] = RandomAgentParameters()
    found = {(p.path, p.message) for p in protocol_problems(hyper_params)}
    assert found >= {
        (
            "agents._default.normalize_message_history",
            "is not available in the graph isomorphism scenario",
        ),
        (
            "agents.verifier.use_manual_architecture",
            "the manual graph isomorphism architecture exists for the nip protocol "
            "only, not 'debate'",
        ),
    }
    assert not any("prover0" in path for path, _ in found)
    hyper_params = tiny_hyper_params("nip")
    hyper_params.agents["verifier"] = GraphIsomorphismAgentParameters(
        use_manual_architecture=True
    )
    assert agent_problems(hyper_params) == []


def test_a_shared_body_refuses_gnn_factors_that_differ() -> None:
    """A shared body trains its GNN at one rate: gnn_lr_factor's actor and critic
    must agree, as agent_lr_factor's and body_lr_factor's must (its critic factor
    was silently ignored)."""
    from nip_core.parameters.agents import LrFactors
    from nip_core.trainers.checks import shared_body_factor_problems

    params = GraphIsomorphismAgentParameters(
        gnn_lr_factor=LrFactors(actor=1.0, critic=3.0)
    )
    [problem] = shared_body_factor_problems("verifier", params)
    assert problem.path == "agents.verifier.gnn_lr_factor"
    assert problem.value == {"actor": 1.0, "critic": 3.0}
    agreeing = GraphIsomorphismAgentParameters(
        gnn_lr_factor=LrFactors(actor=0.5, critic=0.5)
    )
    assert shared_body_factor_problems("verifier", agreeing) == []
