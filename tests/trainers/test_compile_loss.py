"""``run.compile_loss``: the RL loss through torch.compile, with an eager fallback."""

from __future__ import annotations

import pytest
import torch

from nip_core.errors import FallbackWarning
from nip_core.experiment import run_experiment

pytestmark = pytest.mark.usefixtures("single_thread")


def _train(scenario, run_id: str, **settings):
    hp = scenario.hyper_params(
        "nip",
        rl=scenario.short_rl(num_iterations=2, num_epochs=2),
        agents={"_default": {"d_hidden": 4}},
    )
    result = run_experiment(
        hp, scenario.settings(test_run=False, **settings), run_id=run_id
    )
    return {
        name: _flat(agent.state_dict()) for name, agent in result.trainer.agents.items()
    }


def _flat(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """An agent's (nested) state dict as ``{dotted key: tensor}``."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif torch.is_tensor(value):
            flat[f"{prefix}{key}"] = value.detach().clone()
    return flat


def test_a_loss_that_cannot_compile_trains_eagerly_with_one_warning(
    synthetic_scenario, monkeypatch
):
    eager = _train(synthetic_scenario, "eager")
    assert all(eager.values())  # every agent has parameters to compare
    calls = []

    def failing_compile(module, *args, **kwargs):
        def compiled(*inputs, **kw):
            calls.append(1)
            raise RuntimeError("inductor: cannot lower this\nsecond line")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    with pytest.warns(FallbackWarning, match="compile_loss.*RuntimeError: inductor"):
        fallback = _train(synthetic_scenario, "fallback", compile_loss=True)
    assert calls == [1]  # tried once, then never again
    for name, state in eager.items():
        for key, value in state.items():
            assert torch.equal(fallback[name][key], value), (name, key)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
# the fallback's warning would mean the loss was not compiled after all
@pytest.mark.filterwarnings("error:run.compile_loss:nip_core.errors.FallbackWarning")
def test_the_compiled_loss_trains_to_the_same_parameters(synthetic_scenario):
    eager = _train(synthetic_scenario, "eager")
    compiled = _train(synthetic_scenario, "compiled", compile_loss=True)
    assert all(eager.values())
    for name, state in eager.items():
        for key, value in state.items():
            torch.testing.assert_close(
                compiled[name][key], value, rtol=1e-4, atol=1e-5, msg=f"{name}.{key}"
            )
