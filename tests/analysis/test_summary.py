"""The summary printed when a run finishes."""

import pytest

from nip_core.analysis.summary import final_values, format_duration, summary_lines


def test_summary_uses_last_finite_values():
    records = [
        {"step": 0, "mean_accuracy": 0.5, "verifier.mean_episode_reward": -0.2},
        {"step": 1, "mean_accuracy": 0.75, "prover.mean_episode_reward": 0.4},
        {
            "step": 1,
            "test_mean_accuracy": 0.7,
            "verifier.test_mean_episode_reward": 0.1,
        },
        {"step": 2, "mean_accuracy": float("nan")},
    ]
    assert final_values(records)["mean_accuracy"] == 0.75
    assert summary_lines(records, "runs/x") == [
        "verifier accuracy: train 0.750, test 0.700",
        "mean episode reward: prover +0.400, verifier -0.200 (test +0.100)",
        "run directory: runs/x",
    ]


def test_summary_of_a_solo_agent_run():
    records = [
        {"step": 3, "verifier.train_accuracy": 0.9, "verifier.test_accuracy": 0.8}
    ]
    assert summary_lines(records) == [
        "verifier accuracy (solo): train 0.900, test 0.800"
    ]


def test_summary_says_how_long_the_run_ran():
    records = [
        {"step": 0, "mean_accuracy": 0.5, "timing.elapsed_s": 12.0},
        {"step": 1, "mean_accuracy": 0.6, "timing.elapsed_s": 243.4},
    ]
    assert summary_lines(records) == [
        "verifier accuracy: train 0.600",
        "wall-clock time: 4 min 03 s",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0 s"),
        (42.46, "42.5 s"),
        (60.0, "1 min 00 s"),
        (59.96, "1 min 00 s"),
        (3599.4, "59 min 59 s"),
        (3599.6, "1 h 00 min"),
        (7529.0, "2 h 05 min"),
    ],
)
def test_durations_read_as_people_write_them(seconds, shown):
    assert format_duration(seconds) == shown
