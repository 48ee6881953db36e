"""``rl.test_period``: tests during training, which change nothing training does."""

from __future__ import annotations

import pytest
import torch

from nip_core.errors import NipConfigError
from nip_core.experiment import prepare_experiment, resume_run, run_experiment

pytestmark = pytest.mark.usefixtures("single_thread")


def _hyper_params(
    scenario, num_iterations: int, test_period=None, distributed=None, **rl
):
    values = {
        "num_iterations": num_iterations,
        "num_epochs": 2,
        "num_test_iterations": 2,
        "test_period": test_period,
        # observation normalisation: the test environments carry a transform too
        "normalize_observations": True,
        "num_normalization_steps": 2,
    }
    values.update(rl)
    return scenario.hyper_params(
        "nip",
        rl=scenario.short_rl(**values),
        agents={"_default": {"d_hidden": 4}},
        **({} if distributed is None else {"distributed": distributed}),
    )


def _test_records(result) -> dict[int, dict]:
    """``{step: the test_ statistics logged at that step}``."""
    records: dict[int, dict] = {}
    for record in result.metrics:
        test = {k: v for k, v in record.items() if k.startswith("test_")}
        if test:
            records.setdefault(record["step"], {}).update(test)
    return records


def _assert_same_agents(a, b) -> None:
    expected = a.trainer.agents_state_dict()
    actual = b.trainer.agents_state_dict()
    compared = 0
    for agent, parts in expected.items():
        for part, state in parts.items():
            for key, value in state.items():
                torch.testing.assert_close(
                    actual[agent][part][key], value, rtol=0, atol=0
                )
                compared += 1
    assert compared > 0


def test_tests_run_before_every_period_th_iteration_and_after_training(
    synthetic_scenario,
):
    result = run_experiment(
        _hyper_params(synthetic_scenario, 5, test_period=2),
        synthetic_scenario.settings(),
        run_id="periodic",
    )
    records = _test_records(result)
    assert sorted(records) == [0, 2, 4, 5]
    for step in (0, 2, 4):
        record = next(r for r in result.metrics if r["step"] == step)
        # logged beside the iteration's training statistics, timed apart
        assert "mean_accuracy" in record
        assert record["timing.test_s"] > 0
        assert set(records[step]) == set(records[5])
    assert "timing.test_s" not in next(r for r in result.metrics if r["step"] == 1)


@pytest.mark.parametrize("num_shards", [1, 2])
def test_testing_during_training_changes_neither_training_nor_the_final_test(
    synthetic_scenario, num_shards
):
    settings = synthetic_scenario.settings()
    distributed = {"num_shards": num_shards}

    def run(test_period, run_id):
        hp = _hyper_params(
            synthetic_scenario, 4, test_period=test_period, distributed=distributed
        )
        return run_experiment(hp, settings, run_id=run_id)

    without = run(None, f"without-{num_shards}")
    with_tests = run(1, f"with-{num_shards}")
    _assert_same_agents(without, with_tests)
    assert sorted(_test_records(with_tests)) == [0, 1, 2, 3, 4]
    assert _test_records(with_tests)[4] == _test_records(without)[4]
    # the training statistics of every iteration too
    for a, b in zip(without.metrics, with_tests.metrics, strict=True):
        for key, value in a.items():
            if not key.startswith(("timing.", "test_")):
                assert b[key] == value, (a["step"], key)


def test_a_test_during_training_measures_what_a_final_test_would(synthetic_scenario):
    """The test before iteration 2 of a longer run is the final test of a 2-iteration
    run: the same agents, the same test datapoints, the same random streams."""
    settings = synthetic_scenario.settings()
    short = run_experiment(
        _hyper_params(synthetic_scenario, 2), settings, run_id="short"
    )
    longer = run_experiment(
        _hyper_params(synthetic_scenario, 5, test_period=2), settings, run_id="longer"
    )
    assert _test_records(longer)[2] == _test_records(short)[2]
    # and the agents had moved: the untrained ones tested differently
    assert _test_records(longer)[0] != _test_records(longer)[2]


def test_a_run_with_tests_during_training_resumes_bit_identical(synthetic_scenario):
    hyper_params = _hyper_params(synthetic_scenario, 5, test_period=2)
    settings = synthetic_scenario.settings(checkpoint_period=1)
    reference = run_experiment(hyper_params, settings, run_id="reference")

    def stop(trainer, iteration, metrics):
        if iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(hyper_params, settings, run_id="stopped", callbacks=[stop])
    resumed = resume_run("stopped", settings.runs_dir, show_progress=False)
    assert resumed.resumed_from == 3
    _assert_same_agents(reference, resumed)
    # the tests after the resume (before iteration 4, after training) too
    assert _test_records(resumed)[4] == _test_records(reference)[4]
    assert _test_records(resumed)[5] == _test_records(reference)[5]


def test_a_test_period_without_test_iterations_is_a_config_error(synthetic_scenario):
    with pytest.raises(NipConfigError) as info:
        hp = _hyper_params(synthetic_scenario, 2, test_period=3, num_test_iterations=0)
        prepare_experiment(hp, synthetic_scenario.settings())
    problems = {p.path: p for p in info.value.problems}
    assert "rl.test_period" in problems
    assert "num_test_iterations" in str(info.value)
    assert "3" in str(problems["rl.test_period"].value)
