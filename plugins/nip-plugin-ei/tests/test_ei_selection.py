"""Expert iteration's rules on hand-built rollouts: exactly which episodes each agent
is fine-tuned on, the sampling weights, and the written-in verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from ei_helpers import last_text, prover_verifier_rollouts

from nip_core.parameters.text import TextRlParameters
from nip_core.seeding import derive_seed
from nip_plugin_ei.selection import (
    SelectionRule,
    guess_replacement_count,
    replace_guess,
    sampling_weights,
    select_agent_examples,
    select_by_threshold,
    select_by_weighted_sampling,
    selection_seed,
)

# six episodes: the verifier is right (reward 1) in 0, 2, 3, 5
VERIFIER_REWARDS = [1.0, -1.0, 1.0, 1.0, -1.0, 1.0]
PROVER_REWARDS = [1.0, 0.0, 0.0, 1.0, 1.0, 0.5]
LABELS = [1, 1, 0, 1, 0, 0]
VERDICTS = [1, 0, 0, 1, 1, 0]


@pytest.fixture
def rollouts():
    return prover_verifier_rollouts(VERIFIER_REWARDS, PROVER_REWARDS, LABELS, VERDICTS)


def select(rollouts, agent, rule=None, **kwargs):
    kwargs.setdefault("seed", 7)
    kwargs.setdefault("iteration", 0)
    return select_agent_examples(rollouts, agent, rule or SelectionRule(), **kwargs)


# --------------------------------------------------------------------------------------
# threshold


def test_threshold_keeps_the_episodes_at_or_above_it(rollouts):
    verifier = select(rollouts, "verifier", SelectionRule(reward_threshold=0.9))
    assert verifier.selected == (0, 2, 3, 5)
    assert verifier.guess_replaced == ()
    assert [last_text(c) for c in verifier.examples] == [
        "verifier text 0\nDecision: accept",
        "verifier text 2\nDecision: reject",
        "verifier text 3\nDecision: accept",
        "verifier text 5\nDecision: reject",
    ]
    # an episode exactly at the threshold is kept
    prover = select(rollouts, "prover", SelectionRule(reward_threshold=0.5))
    assert prover.selected == (0, 3, 4, 5)
    assert [last_text(c) for c in prover.examples] == [
        f"prover text {b}" for b in (0, 3, 4, 5)
    ]


def test_a_return_that_adds_up_to_the_threshold_is_kept():
    # 0.7 + 0.1 is 0.7999999999999999 as a float sum
    rollouts = prover_verifier_rollouts([0.0] * 3, [0.0] * 3, [1] * 3, [1] * 3)
    rollouts["agents.reward"][:, :, 1] = [[0.7, 0.1], [0.7, 0.05], [0.1, 0.7]]
    assert rollouts.episode_reward[:, 1].tolist() == [0.8, 0.75, 0.8]
    verifier = select(rollouts, "verifier", SelectionRule(reward_threshold=0.8))
    assert verifier.selected == (0, 2)


def test_examples_are_the_agents_last_chat_ending_on_its_own_message(rollouts):
    [chat, *_] = select(rollouts, "verifier").examples
    assert chat == [
        {"role": "system", "content": "You are the verifier."},
        {"role": "user", "content": "Prover: prover text 0"},
        {"role": "assistant", "content": "verifier text 0\nDecision: accept"},
    ]


def test_episodes_the_agent_did_not_speak_in_are_no_candidates():
    rollouts = prover_verifier_rollouts(
        VERIFIER_REWARDS, PROVER_REWARDS, LABELS, VERDICTS, prover_silent=(0, 3)
    )
    prover = select(rollouts, "prover", SelectionRule(reward_threshold=0.5))
    assert prover.candidates == (1, 2, 4, 5)
    assert prover.selected == (4, 5)


def test_episodes_with_an_invalid_response_of_the_agent_are_no_candidates():
    # a well-rewarded episode whose prover response failed parsing (sent as an
    # empty message) must not teach the prover to send it
    rollouts = prover_verifier_rollouts(
        VERIFIER_REWARDS, PROVER_REWARDS, LABELS, VERDICTS
    )
    for b in (0, 4):
        rollouts["agents.valid_response"][b, 0, 0] = False
        rollouts["agents.raw_output"][b, 0, 0] = ""
    prover = select(rollouts, "prover", SelectionRule(reward_threshold=0.5))
    assert prover.candidates == (1, 2, 3, 5)
    assert prover.invalid == (0, 4)
    assert prover.selected == (3, 5)
    assert all(last_text(chat) for chat in prover.examples)
    assert prover.summary(rollouts)["prover.num_invalid_excluded"] == 2
    # the verifier's own responses were valid: its candidates are all episodes
    verifier = select(rollouts, "verifier", SelectionRule(reward_threshold=0.9))
    assert verifier.candidates == tuple(range(6))
    assert verifier.invalid == ()
    # nor are they guess-replaced: an invalid verifier turn anywhere leaves it out
    rollouts["agents.valid_response"][2, 1, 1] = False
    verifier = select(
        rollouts, "verifier", SelectionRule(), guess_replacement_proportion=1.0
    )
    assert verifier.invalid == (2,)
    assert verifier.guess_replaced == (0, 1, 3, 4, 5)


def test_select_by_threshold():
    assert select_by_threshold(np.array([0.2, 0.9, 0.95, -1.0]), 0.9).tolist() == [
        1,
        2,
    ]
    assert select_by_threshold(np.zeros(0), 0.0).tolist() == []


# --------------------------------------------------------------------------------------
# weighted sampling


def test_sampling_weights_shift_normalise_and_add_epsilon():
    rewards = np.array([-1.0, 0.0, 1.0, 1.0])
    # minus the smallest reward: 0, 1, 2, 2 over 5
    np.testing.assert_allclose(sampling_weights(rewards), [0, 0.2, 0.4, 0.4])
    # + 0.4 / 4 each, normalised again (sum 1.4)
    np.testing.assert_allclose(
        sampling_weights(rewards, epsilon=0.4),
        np.array([0.1, 0.3, 0.5, 0.5]) / 1.4,
    )
    # rewards below the minimum count as the minimum: 0, 0, 1, 1 over 2
    np.testing.assert_allclose(sampling_weights(rewards, minimum=0.0), [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(
        sampling_weights(rewards, minimum=-3.0), np.array([2, 3, 4, 4]) / 13
    )


def test_equal_rewards_sample_uniformly():
    for epsilon in (0.0, 0.01):
        np.testing.assert_allclose(
            sampling_weights(np.full(4, 0.3), epsilon=epsilon), [0.25] * 4
        )
    np.testing.assert_allclose(
        sampling_weights(np.array([-2.0, -1.0]), minimum=0.0), [0.5, 0.5]
    )


def test_weighted_sampling_size_and_replacement():
    rewards = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    rng = np.random.default_rng(0)
    drawn = select_by_weighted_sampling(
        rewards,
        sample_size_factor=0.5,
        minimum=None,
        epsilon=0.0,
        replace=False,
        rng=rng,
    )
    assert len(drawn) == 4
    assert len(set(drawn.tolist())) == 4
    assert 0 not in drawn  # weight 0 without epsilon
    # without replacement, at most the episodes with a non-zero weight
    drawn = select_by_weighted_sampling(
        rewards,
        sample_size_factor=1.0,
        minimum=5.0,
        epsilon=0.0,
        replace=False,
        rng=rng,
    )
    assert sorted(drawn.tolist()) == [6, 7]
    # with replacement, round(N x factor) draws, repeats allowed
    drawn = select_by_weighted_sampling(
        rewards,
        sample_size_factor=1.5,
        minimum=5.0,
        epsilon=0.0,
        replace=True,
        rng=rng,
    )
    assert len(drawn) == 12
    assert set(drawn.tolist()) <= {6, 7}


@pytest.mark.parametrize(
    ("factor", "count", "size"),
    [
        (0.7, 45, 32),
        (2.3, 25, 58),
        (2.18, 25, 54),
        (0.5, 5, 2),
        (0.5, 7, 4),
        (1.5, 8, 12),
    ],
)
def test_weighted_sample_size_is_the_exact_products_rounding(factor, count, size):
    """Half to even, as Python's (and the original's) round, of the exact product:
    0.7 x 45 is 31.499999999999996 in floating point, 31.5 rounds to 32."""
    from nip_plugin_ei.selection import weighted_sample_size

    assert weighted_sample_size(factor, count) == size


def test_weighted_sampling_follows_the_weights():
    rewards = np.array([0.0, 1.0, 3.0])
    drawn = select_by_weighted_sampling(
        rewards,
        sample_size_factor=20_000 / 3,
        minimum=None,
        epsilon=0.3,
        replace=True,
        rng=np.random.default_rng(1),
    )
    frequencies = np.bincount(drawn, minlength=3) / len(drawn)
    # (0, 0.25, 0.75) + 0.1 each, over 1.3
    np.testing.assert_allclose(
        frequencies, np.array([0.1, 0.35, 0.85]) / 1.3, atol=0.015
    )


def test_weighted_sampling_of_an_agent_is_seeded_by_run_iteration_and_agent(rollouts):
    rule = SelectionRule(
        method="weighted_sampling", sample_size_factor=1.0, epsilon=0.01
    )
    first = select(rollouts, "prover", rule, seed=3, iteration=2)
    assert first == select(rollouts, "prover", rule, seed=3, iteration=2)
    expected = np.random.default_rng(
        derive_seed(3, "pure_text_ei/iteration2/prover/weighted_sampling")
    ).choice(6, size=6, p=sampling_weights(np.array(PROVER_REWARDS), None, 0.01))
    assert first.selected == tuple(expected.tolist())
    assert [last_text(c) for c in first.examples] == [
        f"prover text {b}" for b in expected
    ]
    others = {
        select(rollouts, "prover", rule, seed=3, iteration=i).selected for i in range(6)
    }
    assert len(others) > 1


# --------------------------------------------------------------------------------------
# guess replacement


def test_guess_replacement_takes_a_seeded_share_whatever_its_reward(rollouts):
    selection = select(
        rollouts,
        "verifier",
        SelectionRule(reward_threshold=0.9),
        seed=11,
        iteration=4,
        guess_replacement_proportion=0.5,
    )
    permutation = np.random.default_rng(
        selection_seed(11, 4, "verifier", "guess_replacement")
    ).permutation(6)
    replaced = sorted(permutation[:3].tolist())
    rest = sorted(permutation[3:].tolist())
    assert selection.guess_replaced == tuple(replaced)
    assert selection.selected == tuple(b for b in rest if VERIFIER_REWARDS[b] >= 0.9)
    assert len(selection.examples) == len(selection.selected) + 3
    guessed = selection.examples[len(selection.selected) :]
    for chat, b in zip(guessed, replaced, strict=True):
        truth = "accept" if LABELS[b] == 1 else "reject"
        assert last_text(chat) == f"verifier text {b}\n\nDecision: {truth}"
        assert chat[:-1] == rollouts.agent_chat(b, "verifier")[:-1]
    # the rollouts themselves are left alone
    assert rollouts["agents.raw_output"][replaced[0], 1, 1].startswith("verifier text")


def test_guess_replacement_without_the_reasoning_writes_the_verdict_alone(rollouts):
    # verifier_guess_replacement_keeps_reasoning off: the message is the true
    # verdict alone (as the original library wrote it), so no kept reasoning can
    # argue for the other verdict; the same episodes are replaced
    kept = select(rollouts, "verifier", guess_replacement_proportion=0.5, seed=3)
    alone = select(
        rollouts,
        "verifier",
        guess_replacement_proportion=0.5,
        seed=3,
        keep_reasoning=False,
    )
    assert alone.guess_replaced == kept.guess_replaced and alone.guess_replaced
    assert alone.selected == kept.selected
    guessed = alone.examples[len(alone.selected) :]
    for chat, b in zip(guessed, alone.guess_replaced, strict=True):
        truth = "accept" if LABELS[b] == 1 else "reject"
        assert last_text(chat) == f"Decision: {truth}"
        assert chat[:-1] == rollouts.agent_chat(b, "verifier")[:-1]
    chat = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "x"}]
    assert replace_guess(chat, 0, "out_of_10", keep_reasoning=False)[-1] == {
        "role": "assistant",
        "content": "Decision: 0",
    }


def test_guess_replacement_rounds_down_and_can_take_everything(rollouts):
    some = select(rollouts, "verifier", guess_replacement_proportion=0.34)
    assert len(some.guess_replaced) == 2  # int(0.34 x 6)
    every = select(rollouts, "verifier", guess_replacement_proportion=1.0)
    assert every.guess_replaced == tuple(range(6))
    assert every.selected == ()
    for chat, label in zip(every.examples, LABELS, strict=True):
        assert last_text(chat).endswith(
            "Decision: accept" if label else "Decision: reject"
        )
    with pytest.raises(ValueError, match="lie in"):
        select(rollouts, "verifier", guess_replacement_proportion=1.5)


def test_guess_replacement_only_where_the_last_turns_verdict_counts(rollouts):
    """Episodes 2 and 4 ended before the verifier's verdicts count (an invalid
    prover response, say): no true verdict is written there; they are selected
    by reward like the episodes not drawn."""
    counts = np.array([True, True, False, True, False, True])
    every = select(
        rollouts,
        "verifier",
        SelectionRule(reward_threshold=0.9),
        guess_replacement_proportion=1.0,
        verdict_counts=counts,
    )
    assert every.guess_replaced == (0, 1, 3, 5)
    assert every.selected == (2,)  # rewards 1.0 and -1.0
    half = select(
        rollouts, "verifier", guess_replacement_proportion=0.5, verdict_counts=counts
    )
    permutation = np.random.default_rng(
        selection_seed(7, 0, "verifier", "guess_replacement")
    ).permutation(4)
    assert half.guess_replaced == tuple(
        sorted(np.array([0, 1, 3, 5])[permutation[:2]].tolist())
    )
    # where every verdict counts, the draw is the one without the mask
    assert select(
        rollouts,
        "verifier",
        guess_replacement_proportion=0.5,
        verdict_counts=np.ones(6, dtype=bool),
    ) == select(rollouts, "verifier", guess_replacement_proportion=0.5)


def test_guess_replacement_counts_an_exact_share_exactly():
    # 0.29 x 100 is 28.999999999999996 in binary floating point: 29 episodes get
    # the true verdict, not 28
    count = 100
    rollouts = prover_verifier_rollouts(
        [1.0] * count, [0.0] * count, [1] * count, [1] * count
    )
    chosen = select(rollouts, "verifier", guess_replacement_proportion=0.29)
    assert len(chosen.guess_replaced) == 29
    assert len(chosen.selected) == 71
    assert guess_replacement_count(0.57, 100) == 57
    assert guess_replacement_count(0.34, 6) == 2
    assert guess_replacement_count(0.999, 10) == 9


@pytest.mark.parametrize(
    ("annealing", "proportions", "counts"),
    [
        ("none", [0.3, 0.3, 0.3, 0.3], [3, 3, 3, 3]),
        ("linear", [0.3, 0.2, 0.1, 0.0], [3, 2, 1, 0]),
        ("exponential", [0.3, 0.27, 0.243, 0.2187], [3, 2, 2, 2]),
    ],
)
def test_annealed_guess_replacement_per_iteration(annealing, proportions, counts):
    # p = 0.3, rate 0.1: linear 0.3 - 0.1 x i, exponential 0.3 x 0.9 ** i; of ten
    # verifier candidates, int(p x 10) get the true verdict
    params = TextRlParameters(
        verifier_guess_replacement_proportion=0.3,
        verifier_guess_replacement_annealing=annealing,
        verifier_guess_replacement_annealing_rate=0.1,
    )
    assert [params.guess_replacement_proportion(i) for i in range(4)] == proportions
    rollouts = prover_verifier_rollouts([1.0] * 10, [0.0] * 10, [1] * 10, [1] * 10)
    replaced = [
        len(
            select(
                rollouts,
                "verifier",
                iteration=i,
                guess_replacement_proportion=params.guess_replacement_proportion(i),
            ).guess_replaced
        )
        for i in range(4)
    ]
    assert replaced == counts


@pytest.mark.parametrize(
    ("spectrum", "text", "label", "expected"),
    [
        ("accept_reject", "Looks fine.\nDecision: accept", 0, "Decision: reject"),
        ("accept_reject", "No verdict here", 1, "Decision: accept"),
        ("out_of_10", "Hmm.\nDecision: 7", 0, "Decision: 0"),
        ("out_of_10", "Hmm.\nDecision: 2", 1, "Decision: 10"),
        ("likert_scale_5", "ok\nDecision: 3", 1, "Decision: 5"),
        ("likert_scale", "x\nDecision: strongly reject", 1, "Decision: accept"),
    ],
)
def test_replace_guess_on_every_spectrum(spectrum, text, label, expected):
    chat = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": text},
    ]
    replaced = replace_guess(chat, label, spectrum)
    before = text.split("\nDecision:")[0]
    assert replaced[-1] == {"role": "assistant", "content": f"{before}\n\n{expected}"}
    assert replaced[:-1] == chat[:-1]
    assert chat[-1]["content"] == text


def test_replace_guess_of_an_empty_message():
    chat = [{"role": "user", "content": "u"}, {"role": "assistant", "content": ""}]
    assert replace_guess(chat, 1, "accept_reject")[-1]["content"] == (
        "Decision: accept"
    )
    with pytest.raises(ValueError, match="ending on the agent's message"):
        replace_guess(chat[:1], 1, "accept_reject")


# --------------------------------------------------------------------------------------
# metrics


def test_selection_summary(rollouts):
    verifier = select(rollouts, "verifier", SelectionRule(reward_threshold=-1.0))
    summary = verifier.summary(rollouts, is_verifier=True)
    assert summary == {
        "verifier.num_selected": 6,
        "verifier.num_invalid_excluded": 0,
        "verifier.num_guess_replaced": 0,
        "verifier.selected_mean_episode_reward": pytest.approx(2 / 6),
        "verifier.selected_accuracy": pytest.approx(4 / 6),
    }
    prover = select(rollouts, "prover", SelectionRule(reward_threshold=2.0))
    assert prover.summary(rollouts) == {
        "prover.num_selected": 0,
        "prover.num_invalid_excluded": 0,
    }


def test_an_unknown_method_is_refused(rollouts):
    with pytest.raises(ValueError, match="unknown rollout selection method 'best'"):
        select(rollouts, "verifier", SelectionRule(method="best"))
