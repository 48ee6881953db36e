"""A sweep's jobs from a config's ``hydra.sweeper.params`` and the command line.

Hydra's basic sweeper takes the params and the command line's overrides together,
one list of values per key as written: a key given on the command line replaces the
params' sweep of the same key (``seed=7`` replaces ``seed: 1,2``), while ``++seed``,
``+seed`` and ``~seed`` are keys of their own. nip writes a plain ``seed=7`` as
``++seed=7``; the jobs it checks and launches must still be Hydra's.

Every test launches the sweep (``run_experiment`` is a recorder) and reads the jobs
Hydra ran from the job directories.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nip_core.cli.main import main

SWEEP_CONFIGS = {
    # toy_section.mode is in no YAML file: its default is the parameter class's
    "toy/sweep.yaml": """
        # @package _global_
        defaults:
          - /toy/exp
          - _self_
        hydra:
          sweeper:
            params:
              seed: 1,2
              toy_section.mode: fast,slow
        """,
    "toy/sweep_datasets.yaml": """
        # @package _global_
        defaults:
          - /toy/exp
          - _self_
        hydra:
          sweeper:
            params:
              toy/dataset: small,large
              seed: 1,2
        """,
    # depth 0 is invalid (at least 1)
    "toy/sweep_depths.yaml": """
        # @package _global_
        defaults:
          - /toy/exp
          - _self_
        hydra:
          sweeper:
            params:
              toy_section.depth: 0,3
        """,
}


@pytest.fixture
def sweep_configs(toy_plugin, write_configs):
    write_configs(toy_plugin.config_dir, SWEEP_CONFIGS)


def launched_jobs() -> list[list[str]]:
    """The overrides of each job of the one sweep under ./runs, by job number."""
    [sweep_dir] = (Path.cwd() / "runs" / "sweeps").iterdir()
    jobs = sorted(
        (p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    return [
        yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) for job in jobs
    ]


def test_the_params_sweep_every_combination_in_hydras_order(
    sweep_configs, recorded_runs, capsys
):
    status = main(["run", "-m", "-c", "toy/sweep"])
    assert status == 0, capsys.readouterr().err
    assert launched_jobs() == [
        ["++seed=1", "++toy_section.mode=fast"],
        ["++seed=1", "++toy_section.mode=slow"],
        ["++seed=2", "++toy_section.mode=fast"],
        ["++seed=2", "++toy_section.mode=slow"],
    ]
    assert [(hp.seed, hp.toy_section.mode) for hp, _ in recorded_runs] == [
        (1, "fast"),
        (1, "slow"),
        (2, "fast"),
        (2, "slow"),
    ]


@pytest.mark.parametrize(
    ("given", "jobs", "runs"),
    [
        (
            ["seed=7"],
            [
                ["++seed=7", "++toy_section.mode=fast"],
                ["++seed=7", "++toy_section.mode=slow"],
            ],
            [(7, "fast"), (7, "slow")],
        ),
        # a dotted key is one key of the params
        (
            ["toy_section.mode=slow"],
            [
                ["++seed=1", "++toy_section.mode=slow"],
                ["++seed=2", "++toy_section.mode=slow"],
            ],
            [(1, "slow"), (2, "slow")],
        ),
        # a sweep replaces a sweep, in the params' place
        (
            ["toy_section.mode=slow", "seed=7,8"],
            [
                ["++seed=7", "++toy_section.mode=slow"],
                ["++seed=8", "++toy_section.mode=slow"],
            ],
            [(7, "slow"), (8, "slow")],
        ),
        # a key of neither comes after the params' keys, in every job
        (
            ["toy_section.depth=4", "seed=7"],
            [
                ["++seed=7", "++toy_section.mode=fast", "++toy_section.depth=4"],
                ["++seed=7", "++toy_section.mode=slow", "++toy_section.depth=4"],
            ],
            [(7, "fast"), (7, "slow")],
        ),
    ],
)
def test_a_key_given_replaces_the_params_sweep_of_that_key(
    sweep_configs, recorded_runs, capsys, given, jobs, runs
):
    status = main(["run", "-m", "-c", "toy/sweep", *given])
    assert status == 0, capsys.readouterr().err
    assert launched_jobs() == jobs
    assert [(hp.seed, hp.toy_section.mode) for hp, _ in recorded_runs] == runs


def test_a_config_group_given_replaces_the_params_sweep_of_the_group(
    sweep_configs, recorded_runs, capsys
):
    status = main(["run", "-m", "-c", "toy/sweep_datasets", "toy/dataset=large"])
    assert status == 0, capsys.readouterr().err
    assert launched_jobs() == [
        ["toy/dataset=large", "++seed=1"],
        ["toy/dataset=large", "++seed=2"],
    ]
    assert [(hp.dataset, hp.seed) for hp, _ in recorded_runs] == [
        ("large", 1),
        ("large", 2),
    ]


def test_only_the_jobs_launched_are_validated(sweep_configs, recorded_runs, capsys):
    # the params' invalid depth 0 is replaced: no job has it
    status = main(["run", "-m", "-c", "toy/sweep_depths", "toy_section.depth=5"])
    assert status == 0, capsys.readouterr().err
    assert launched_jobs() == [["++toy_section.depth=5"]]
    assert [hp.toy_section.depth for hp, _ in recorded_runs] == [5]

    status = main(
        ["run", "-m", "-c", "toy/sweep_depths", "hydra.sweep.dir=runs/sweeps/all"]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "[job: toy_section.depth=0]" in err
    assert "[job: toy_section.depth=3]" not in err
    assert len(recorded_runs) == 1


def test_a_key_given_with_another_prefix_is_a_key_of_its_own(
    sweep_configs, recorded_runs, capsys
):
    # ++seed is not the params' seed: every job gets both, and ++seed=7 wins, so
    # the jobs of seeds 1 and 2 are one experiment (as in Hydra)
    status = main(["run", "-m", "-c", "toy/sweep", "++seed=7"])
    err = capsys.readouterr().err
    assert status == 2
    assert (
        "jobs [seed=1 toy_section.mode=fast seed=7] and "
        "[seed=2 toy_section.mode=fast seed=7] are the same experiment" in err
    )
    assert (
        "each job gives seed twice, and the last one wins (Hydra keeps seed, +seed, "
        "++seed and ~seed apart: one does not replace another): give seed one way "
        "only" in err
    )
    assert recorded_runs == []

    # +toy_section.mode adds a key the params' toy_section.mode has already set
    status = main(["run", "-m", "-c", "toy/sweep", "+toy_section.mode=slow"])
    err = capsys.readouterr().err
    assert status == 2
    assert "An item is already at 'toy_section.mode'" in err
    assert "[job: seed=1 toy_section.mode=fast +toy_section.mode=slow]" in err
    assert recorded_runs == []


def test_a_key_deleted_is_deleted_in_every_job(sweep_configs, recorded_runs, capsys):
    status = main(["run", "-m", "-c", "toy/sweep", "~toy_section.depth"])
    assert status == 0, capsys.readouterr().err
    assert launched_jobs() == [
        ["++seed=1", "++toy_section.mode=fast", "~toy_section.depth=null"],
        ["++seed=1", "++toy_section.mode=slow", "~toy_section.depth=null"],
        ["++seed=2", "++toy_section.mode=fast", "~toy_section.depth=null"],
        ["++seed=2", "++toy_section.mode=slow", "~toy_section.depth=null"],
    ]
    # the parameter class's default, not the experiment's 2
    assert {hp.toy_section.depth for hp, _ in recorded_runs} == {1}


def test_batches_of_the_sweeper_are_launched_in_order(
    sweep_configs, recorded_runs, capsys
):
    status = main(
        ["run", "-m", "-c", "toy/sweep", "seed=7", "hydra.sweeper.max_batch_size=1"]
    )
    assert status == 0, capsys.readouterr().err
    assert launched_jobs() == [
        ["++seed=7", "++toy_section.mode=fast"],
        ["++seed=7", "++toy_section.mode=slow"],
    ]
    assert [hp.toy_section.mode for hp, _ in recorded_runs] == ["fast", "slow"]


def test_a_resumed_sweep_launches_the_same_jobs(sweep_configs, recorded_runs, capsys):
    status = main(["run", "-m", "-c", "toy/sweep", "seed=7"])
    assert status == 0, capsys.readouterr().err
    [sweep_dir] = (Path.cwd() / "runs" / "sweeps").iterdir()
    first = launched_jobs()

    status = main(["run", "--resume-sweep", str(sweep_dir)])
    assert status == 0, capsys.readouterr().err
    assert launched_jobs() == first
    assert [(hp.seed, hp.toy_section.mode) for hp, _ in recorded_runs] == [
        (7, "fast"),
        (7, "slow"),
    ] * 2
