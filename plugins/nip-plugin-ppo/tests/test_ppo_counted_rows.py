"""PPO's and SPG's updates run the policy only on the rows where each agent's
choices count (``counted_rows_only``), training the same agents to float
tolerance."""

from __future__ import annotations

import pytest

from nip_core.experiment import run_experiment
from nip_core.scenario import combined
from nip_core.testing.contracts.trainer import (
    assert_close_agents,
    record_counted_rows,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _hyper_params(scenario, trainer, **section):
    return scenario.hyper_params(
        "nip",
        trainer=trainer,
        rl=scenario.short_rl(
            num_iterations=2, num_epochs=2, minibatch_size=4, use_shared_body=False
        ),
        agents={"_default": {"d_hidden": 8}},
        **({("ppo" if trainer == "vanilla_ppo" else trainer): section}),
    )


@pytest.mark.parametrize(
    ("trainer", "section"),
    [
        ("vanilla_ppo", {"loss_type": "clip"}),
        ("vanilla_ppo", {"loss_type": "kl_penalty"}),
        ("spg", {"variant": "spg"}),
        ("spg", {"variant": "pspg"}),
    ],
)
def test_counted_rows_train_the_same_agents(
    ppo_scenario, monkeypatch, trainer, section
):
    calls = record_counted_rows(monkeypatch)
    hp = _hyper_params(ppo_scenario, trainer, **section)
    settings = ppo_scenario.settings(agent_threads=2)
    counted = run_experiment(hp, settings, run_id="counted")
    assert calls and all(rows < size for rows, size in calls)
    # every row: the context never entered
    monkeypatch.setattr(combined, "counted_rows_only", _never)
    calls.clear()
    every_row = run_experiment(hp, settings, run_id="every-row")
    assert calls == []
    assert_close_agents(every_row, counted)


class _never:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
