"""``run.compile_loss`` with vanilla_ppo: the compiled loss trains the same agents."""

from __future__ import annotations

import pytest
import torch

from nip_core.experiment import run_experiment

pytestmark = pytest.mark.usefixtures("single_thread")


def _agents(result) -> dict[str, torch.Tensor]:
    """The trained agents' floating-point state, ``{dotted key: tensor}``."""

    def flat(state, prefix: str = "") -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            elif torch.is_tensor(value) and value.is_floating_point():
                out[f"{prefix}{key}"] = value.detach().clone()
        return out

    return flat(result.trainer.agents_state_dict())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
# the fallback's warning would mean the loss was not compiled after all
@pytest.mark.filterwarnings("error:run.compile_loss:nip_core.errors.FallbackWarning")
def test_the_compiled_ppo_loss_trains_to_the_same_parameters(ppo_scenario):
    """Two iterations of two epochs of several minibatches: the second epoch's
    minibatches and the second rollout's actions come from the run's random
    stream, which the compiled loss must leave as the eager one does."""
    hp = ppo_scenario.hyper_params(
        "nip",
        trainer="vanilla_ppo",
        rl=ppo_scenario.short_rl(
            num_iterations=2, num_epochs=2, minibatch_size=4, use_shared_body=False
        ),
        agents={"_default": {"d_hidden": 8}},
    )
    eager = _agents(run_experiment(hp, ppo_scenario.settings(), run_id="eager"))
    compiled = _agents(
        run_experiment(hp, ppo_scenario.settings(compile_loss=True), run_id="compiled")
    )
    assert eager
    for key, value in eager.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-5, msg=key)
