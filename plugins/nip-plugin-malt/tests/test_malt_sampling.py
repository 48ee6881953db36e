"""Sampling response trees against the test server: the shape of the trees, ended
branches, batching across nodes and datapoints, the bound on generations, and
continuing from a saved level."""

from __future__ import annotations

import copy

import pytest

from nip_plugin_malt.sampling import sample_response_trees, tree_generation_bound
from nip_plugin_malt.tree import ResponseForest, split_branch_key


@pytest.fixture
def instance(malt_scenario):
    built = []

    def build(**overrides):
        hyper_params = malt_scenario.hyper_params(
            "nip", trainer="pure_text_malt", **overrides
        )
        built.append(malt_scenario.build(hyper_params))
        return built[-1]

    yield build
    for one in built:
        one.close()


def mid_points(instance):
    handler = instance.protocol_handler
    return [handler.reward_mid_point_estimate(a) for a in handler.agent_names]


def test_every_node_that_goes_on_has_k_children(instance):
    built = instance()
    leaves = sample_response_trees(
        built.train_environment, built.agents, [0, 3], iteration=2, num_responses=2
    )
    # the verifier asks (round 0), the prover answers, the verifier decides
    assert leaves.batch_size == 2 * 2**3
    assert (leaves.episode_length == 3).all()
    assert leaves.iteration == 2
    roots = [split_branch_key(k) for k in leaves["sample_key"]]
    assert {root for root, _ in roots} == {"train/2/0", "train/2/1"}
    assert sorted(path for root, path in roots if root == "train/2/0") == [
        (a, b, c) for a in range(2) for b in range(2) for c in range(2)
    ]
    forest = ResponseForest(leaves, mid_points(built))
    for node in forest:
        assert len(node.children) == (0 if len(node.path) == 3 else 2)
    # the leaves below a node share its history
    for node in forest:
        if node.is_root:
            continue
        first, *others = node.episodes
        for b in others:
            for r in range(node.round_id + 1):
                assert leaves["agents.raw_output"][b, r].tolist() == (
                    leaves["agents.raw_output"][first, r].tolist()
                )
    # siblings sampled their own responses: the decisions of one node's children
    # differ somewhere in the trees
    decisions = leaves["agents.decision"][:, 2, 1].reshape(-1, 2)
    assert (decisions[:, 0] != decisions[:, 1]).any()


def test_ended_branches_are_padded_leaves(instance):
    # a random verifier may decide in round 0 or go on
    built = instance(agents={"verifier": {"is_random": True}})
    leaves = sample_response_trees(
        built.train_environment,
        built.agents,
        [0, 1, 2, 3],
        iteration=0,
        num_responses=3,
    )
    lengths = set(leaves.episode_length.tolist())
    assert 1 in lengths and 3 in lengths
    forest = ResponseForest(leaves, mid_points(built))
    for node in forest:
        if node.is_leaf:
            b = node.episodes[0]
            assert len(node.episodes) == 1
            assert leaves.episode_length[b] == len(node.path)
            assert leaves["padding"][b, len(node.path) :].all()
        else:
            assert len(node.children) == 3
    # the bound counts every model turn as if no episode ended early
    bound = tree_generation_bound(
        built.train_environment,
        built.agents,
        [0, 1, 2, 3],
        iteration=0,
        num_responses=3,
    )
    assert bound == 4 * 3**2  # the prover speaks in round 1 only
    assert forest.turns(["prover"]) < bound
    # the random verifier generated nothing: its turns are not counted
    assert forest.turns(["verifier"]) == 0
    assert forest.turns() == forest.turns(["prover"])
    assert forest.statistics()["num_tree_turns"] == forest.turns(["prover"])


def test_a_level_is_one_batch_across_nodes_and_datapoints(instance, monkeypatch):
    built = instance()
    [backend] = {group.backend for group in built.shared_model_groups.values()}
    sizes = []
    generate = backend.generate

    def counting(requests):
        sizes.append(len(requests))
        return generate(requests)

    monkeypatch.setattr(backend, "generate", counting)
    leaves = sample_response_trees(
        built.train_environment, built.agents, [0, 1, 2], iteration=0, num_responses=2
    )
    # rounds 0, 1, 2: 3 datapoints x 2, 4 and 8 nodes; then only retries
    assert sizes[:3] == [6, 12, 24]
    assert all(size < 24 for size in sizes[3:])
    assert sum(sizes[:3]) == tree_generation_bound(
        built.train_environment,
        built.agents,
        [0, 1, 2],
        iteration=0,
        num_responses=2,
    )
    assert ResponseForest(leaves, mid_points(built)).turns() == 42


def test_sampling_continues_from_a_saved_level(instance, malt_scenario):
    built = instance()
    saved = {}

    def on_level(level, frontier):
        saved[level] = copy.deepcopy(frontier)

    whole = sample_response_trees(
        built.train_environment,
        built.agents,
        [1, 2],
        iteration=1,
        num_responses=2,
        on_level=on_level,
    )
    assert sorted(saved) == [1, 2, 3]
    assert [saved[level].batch_size for level in (1, 2, 3)] == [4, 8, 16]
    assert saved[3] == whole
    chats = malt_scenario.server.requests["chat"]
    again = sample_response_trees(
        built.train_environment,
        built.agents,
        [1, 2],
        iteration=1,
        num_responses=2,
        start=(2, saved[2]),
    )
    assert again == whole
    # only the last round was sampled again
    assert malt_scenario.server.requests["chat"] - chats < 4 + 8 + 16


def test_a_tree_needs_two_responses(instance):
    built = instance()
    with pytest.raises(ValueError, match="at least 2 responses"):
        sample_response_trees(
            built.train_environment, built.agents, [0], iteration=0, num_responses=1
        )


def _recorder():
    from nip_core.text.sampling import TurnProgress

    events = []
    progress = TurnProgress(
        advance=lambda n: events.append(("advance", n)),
        expect=lambda n: events.append(("expect", n)),
    )
    return events, progress


def _tree_turns_played(leaves, from_round=0):
    """The turns of the trees (each once, however many leaves share it)."""
    turns = set()
    for b, key in enumerate(leaves["sample_key"]):
        root, path = split_branch_key(key)
        for r in range(from_round, leaves.max_rounds):
            for a in range(leaves.num_agents):
                if leaves["agents.active"][b, r, a]:
                    turns.add((root, path[: r + 1], a))
    return len(turns)


def _check(events, played):
    announced = advanced = 0
    for kind, n in events:
        if kind == "expect":
            announced += n
        else:
            advanced += n
        assert advanced <= announced, events
    assert announced == advanced == played


def test_progress_hears_every_turn_the_trees_can_take_then_the_cut_ones(instance):
    # a random verifier may decide in round 0 or go on: some subtrees are cut
    built = instance(agents={"verifier": {"is_random": True}})
    events, progress = _recorder()
    leaves = sample_response_trees(
        built.train_environment,
        built.agents,
        [0, 1, 2, 3],
        iteration=0,
        num_responses=3,
        progress=progress,
    )
    expected = [n for kind, n in events if kind == "expect"]
    # the verifier on 3 nodes, the prover on 9, the verifier on 27, per tree;
    # the random verifier's turns count (they are turns played)
    assert expected[0] == 4 * (3 + 9 + 27)
    assert any(n < 0 for n in expected[1:])
    _check(events, _tree_turns_played(leaves))


def test_progress_of_a_continued_tree_counts_from_its_level(instance):
    built = instance()
    saved = {}
    whole = sample_response_trees(
        built.train_environment,
        built.agents,
        [1, 2],
        iteration=1,
        num_responses=2,
        on_level=lambda level, frontier: saved.setdefault(
            level, copy.deepcopy(frontier)
        ),
    )
    events, progress = _recorder()
    sample_response_trees(
        built.train_environment,
        built.agents,
        [1, 2],
        iteration=1,
        num_responses=2,
        start=(2, saved[2]),
        progress=progress,
    )
    # round 2 only: 8 nodes of level 2, 2 children each, the verifier's turn
    assert events[0] == ("expect", 16)
    _check(events, _tree_turns_played(whole, from_round=2))
