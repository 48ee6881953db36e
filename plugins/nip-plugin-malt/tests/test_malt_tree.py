"""MALT's rules on hand-built response trees: values, labels, preference pairs and
the per-round statistics, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from malt_helpers import hand_built_trees, keys

from nip_core.text.rollouts import TextRollouts
from nip_plugin_malt.tree import ResponseForest, branch_key, split_branch_key

MID_POINTS = (0.5, 0.0)  # prover (returns 0..1), verifier (returns -1..1)

# K = 2, the prover speaks in round 0, the verifier in round 1
TREE_A = {
    "a/0/0#0.0": {"returns": (1.0, 1.0)},
    "a/0/0#0.1": {"returns": (0.0, -1.0)},
    "a/0/0#1.0": {"returns": (0.0, 1.0)},
    "a/0/0#1.1": {"returns": (0.0, 1.0)},
}

# a branch that ended after round 0 beside one that went on (prover speaks in
# rounds 0 and 2, the verifier in round 1)
TREE_B = {
    "b/0/0#0": {"returns": (1.0, 0.0)},
    "b/0/0#1.0.0": {"returns": (0.0, 1.0)},
    "b/0/0#1.0.1": {"returns": (0.0, 1.0)},
    "b/0/0#1.1.0": {"returns": (0.0, -1.0)},
    "b/0/0#1.1.1": {"returns": (1.0, -1.0)},
}


def forest(leaves, max_rounds=2, **kwargs):
    return ResponseForest(hand_built_trees(leaves, max_rounds), MID_POINTS, **kwargs)


def test_branch_keys():
    assert branch_key("train/3/5", 1) == "train/3/5#1"
    assert branch_key("train/3/5#1", 0) == "train/3/5#1.0"
    assert split_branch_key("train/3/5#1.0.12") == ("train/3/5", (1, 0, 12))
    assert split_branch_key("train/3/5") == ("train/3/5", ())
    with pytest.raises(ValueError, match="no valid branch path"):
        split_branch_key("train/3/5#a.b")


def test_values_are_means_over_the_leaves_and_labels_use_the_mid_point():
    trees = forest(TREE_A)
    expected = {
        "a/0/0#0.0": (1.0, 1.0),
        "a/0/0#0.1": (0.0, -1.0),
        "a/0/0#1.0": (0.0, 1.0),
        "a/0/0#1.1": (0.0, 1.0),
        "a/0/0#0": (0.5, 0.0),
        "a/0/0#1": (0.0, 1.0),
        "a/0/0": (0.25, 0.5),
    }
    assert set(trees.nodes) == set(expected)
    for key, (prover, verifier) in expected.items():
        assert trees.value(key, "prover") == pytest.approx(prover)
        assert trees.value(key, "verifier") == pytest.approx(verifier)
        # positive iff at least the mid-point (0.5 and 0 count as positive)
        assert trees.is_positive(key, "prover") == (prover >= 0.5)
        assert trees.is_positive(key, "verifier") == (verifier >= 0.0)
    assert [n.key for n in trees] == [
        "a/0/0",
        "a/0/0#0",
        "a/0/0#0.0",
        "a/0/0#0.1",
        "a/0/0#1",
        "a/0/0#1.0",
        "a/0/0#1.1",
    ]


def test_by_default_a_node_is_worth_the_mean_reward_of_its_leaves():
    trees = forest(TREE_B, max_rounds=3)
    assert trees.value("b/0/0#1.1", "prover") == pytest.approx(0.5)
    assert trees.value("b/0/0#1", "prover") == pytest.approx(0.25)
    # the plain mean of the five leaves: the ended branch #0 is one leaf of five
    assert trees.value("b/0/0", "prover") == pytest.approx(0.4)
    assert trees.value("b/0/0", "verifier") == pytest.approx(0.0)
    assert trees.is_positive("b/0/0", "prover") is False
    assert trees.nodes["b/0/0#0"].is_leaf
    assert trees.nodes["b/0/0#0"].episodes == [0]
    # on a tree whose episodes all run the same rounds the two rules agree
    balanced = forest(TREE_A)
    assert balanced.value("a/0/0", "prover") == pytest.approx(0.25)
    assert forest(TREE_A, node_value="branches").value(
        "a/0/0", "prover"
    ) == pytest.approx(0.25)


def test_with_branches_an_ended_branch_weighs_as_much_as_its_siblings():
    trees = forest(TREE_B, max_rounds=3, node_value="branches")
    assert trees.value("b/0/0#1.1", "prover") == pytest.approx(0.5)
    assert trees.value("b/0/0#1", "prover") == pytest.approx(0.25)
    # (1 + 0.25) / 2, not the plain mean of the five leaves (0.4)
    assert trees.value("b/0/0", "prover") == pytest.approx(0.625)
    assert trees.is_positive("b/0/0", "prover") is True
    assert trees.value("b/0/0#1", "verifier") == pytest.approx(0.0)
    # the verifier's (0 + 0) / 2 against the leaves' (0 + 1 + 1 - 1 - 1) / 5
    assert trees.value("b/0/0", "verifier") == pytest.approx(0.0)


@pytest.mark.parametrize("node_value", ["leaves", "branches"])
def test_a_value_that_adds_up_to_the_mid_point_is_positive(node_value):
    # as floats, (0.1 + 0.7) / 2 and (0.1 + 0.1 + 0.7 + 0.7) / 4 are both
    # 0.39999999999999997, and so is the mid-point given: all three are 0.4
    leaves = {
        "c/0/0#0.0": {"returns": (0.1, 1.0)},
        "c/0/0#0.1": {"returns": (0.1, 1.0)},
        "c/0/0#1.0": {"returns": (0.7, 1.0)},
        "c/0/0#1.1": {"returns": (0.7, 1.0)},
    }
    trees = ResponseForest(
        hand_built_trees(leaves, 2), ((0.1 + 0.7) / 2, 0.0), node_value=node_value
    )
    assert trees.value("c/0/0", "prover") == 0.4
    assert trees.is_positive("c/0/0", "prover") is True
    assert trees.is_positive("c/0/0#0", "prover") is False
    assert trees.is_positive("c/0/0#1", "prover") is True


def test_an_unknown_node_value_rule_is_refused():
    with pytest.raises(ValueError, match="node_value must be one of leaves, branches"):
        forest(TREE_A, node_value="children")


def test_one_pair_per_node_with_both_labels():
    trees = forest(TREE_A)
    prover = trees.preference_pairs("prover", seed=0)
    assert keys(prover.pairs) == [("a/0/0", "a/0/0#0", "a/0/0#1")]
    [pair] = prover.pairs
    assert pair.round_id == 0
    assert pair.example.prompt == (
        {"role": "system", "content": "You are the prover."},
        {"role": "user", "content": "prompt a/0/0"},
    )
    assert (pair.example.chosen, pair.example.rejected) == (
        "prover a/0/0#0",
        "prover a/0/0#1",
    )
    assert (prover.decision_points, prover.with_both_labels, prover.unpaired) == (
        1,
        1,
        0,
    )
    verifier = trees.preference_pairs("verifier", seed=0)
    # node #1's responses are both positive: no pair there
    assert keys(verifier.pairs) == [("a/0/0#0", "a/0/0#0.0", "a/0/0#0.1")]
    assert verifier.pairs[0].example.chosen == "verifier a/0/0#0.0"
    assert verifier.pairs[0].example.rejected == "verifier a/0/0#0.1"
    assert verifier.pairs[0].example.prompt[-1]["content"] == "prompt a/0/0#0"
    assert (verifier.decision_points, verifier.with_both_labels) == (2, 1)


def test_pairs_in_an_unbalanced_tree():
    trees = forest(TREE_B, max_rounds=3)
    prover = trees.preference_pairs("prover", seed=0)
    assert keys(prover.pairs) == [
        ("b/0/0", "b/0/0#0", "b/0/0#1"),
        ("b/0/0#1.1", "b/0/0#1.1.1", "b/0/0#1.1.0"),
    ]
    assert (prover.decision_points, prover.with_both_labels) == (3, 2)
    verifier = trees.preference_pairs("verifier", seed=0)
    assert keys(verifier.pairs) == [("b/0/0#1", "b/0/0#1.0", "b/0/0#1.1")]


def test_identical_responses_and_invalid_positives_make_no_pair():
    same = dict(TREE_A)
    same["a/0/0#0.0"] = {"returns": (1.0, 1.0), "texts": ["p", "same verdict"]}
    same["a/0/0#0.1"] = {"returns": (0.0, -1.0), "texts": ["p", "same verdict"]}
    verifier = forest(same).preference_pairs("verifier", seed=0)
    assert verifier.pairs == ()
    assert (verifier.with_both_labels, verifier.unpaired) == (1, 1)

    invalid = dict(TREE_A)
    invalid["a/0/0#0.0"] = {"returns": (1.0, 1.0), "invalid": [1]}
    verifier = forest(invalid).preference_pairs("verifier", seed=0)
    assert verifier.pairs == ()
    assert verifier.unpaired == 1
    # an invalid response may still be the rejected one
    flipped = dict(TREE_A)
    flipped["a/0/0#0.1"] = {"returns": (0.0, -1.0), "invalid": [1]}
    assert keys(forest(flipped).preference_pairs("verifier", seed=0).pairs) == [
        ("a/0/0#0", "a/0/0#0.0", "a/0/0#0.1")
    ]


def test_the_pair_is_a_seeded_choice_among_the_positives_and_negatives():
    leaves = {
        f"c/0/0#{k}": {"returns": (ret, 0.0)}
        for k, ret in enumerate((1.0, 1.0, 0.0, 0.0))
    }
    trees = forest(leaves, max_rounds=1)
    chosen = {}
    for seed in range(24):
        [pair] = trees.preference_pairs("prover", seed=seed).pairs
        assert pair.chosen_key in ("c/0/0#0", "c/0/0#1")
        assert pair.rejected_key in ("c/0/0#2", "c/0/0#3")
        assert trees.preference_pairs("prover", seed=seed).pairs == (pair,)
        chosen[(pair.chosen_key, pair.rejected_key)] = seed
    assert len(chosen) == 4


def test_statistics_per_round():
    stats = forest(TREE_A).statistics()
    assert stats["num_trees"] == 1
    assert stats["mean_tree_leaves"] == 4
    assert stats["num_tree_turns"] == 6  # 2 prover and 4 verifier turns
    assert stats["prover.round_0.mean_expected_reward"] == pytest.approx(0.25)
    assert stats["prover.round_0.mean_is_positive_example"] == pytest.approx(0.5)
    assert stats["prover.round_0.mean_has_positive_and_negative"] == 1.0
    assert stats["verifier.round_1.mean_expected_reward"] == pytest.approx(0.5)
    assert stats["verifier.round_1.mean_is_positive_example"] == pytest.approx(0.75)
    assert stats["verifier.round_1.mean_has_positive_and_negative"] == 0.5
    assert stats["verifier.mean_expected_reward"] == pytest.approx(0.5)
    assert stats["verifier.std_expected_reward"] == 0.0  # one tree, one round
    assert "verifier.round_0.mean_expected_reward" not in stats


def test_statistics_over_two_trees():
    second = {key.replace("a/0/0", "a/0/1"): {"returns": (1.0, -1.0)} for key in TREE_A}
    rollouts = TextRollouts.concatenate(
        [hand_built_trees(TREE_A), hand_built_trees(second)]
    )
    stats = ResponseForest(rollouts, MID_POINTS).statistics()
    assert stats["num_trees"] == 2
    # the second tree's verifier responses are all worth -1
    assert stats["verifier.round_1.mean_expected_reward"] == pytest.approx(-0.25)
    assert stats["verifier.round_1.std_expected_reward"] == pytest.approx(0.75)
    assert stats["verifier.round_1.mean_has_positive_and_negative"] == 0.25
    assert stats["prover.round_0.mean_is_positive_example"] == pytest.approx(0.75)


def test_rollouts_that_are_not_trees_are_refused():
    rollouts = hand_built_trees(TREE_A)
    rollouts["sample_key"][0] = "a/0/0#0"
    with pytest.raises(ValueError, match="played 2 rounds but its key names 1"):
        ResponseForest(rollouts, MID_POINTS)
    twice = TextRollouts.concatenate([hand_built_trees(TREE_A)] * 2)
    with pytest.raises(ValueError, match="have the same sample key"):
        ResponseForest(twice, MID_POINTS)
    overlapping = hand_built_trees({"d#0": {"returns": (0, 0)}}, max_rounds=2)
    grown = hand_built_trees({"d#0.1": {"returns": (0, 0)}}, max_rounds=2)
    with pytest.raises(ValueError, match="which has children"):
        ResponseForest(TextRollouts.concatenate([overlapping, grown]), MID_POINTS)
    with pytest.raises(ValueError, match="one reward mid-point per agent"):
        ResponseForest(hand_built_trees(TREE_A), (0.5,))


def test_values_are_arrays_per_agent():
    trees = forest(TREE_A)
    np.testing.assert_allclose(trees.roots["a/0/0"].value, [0.25, 0.5])
