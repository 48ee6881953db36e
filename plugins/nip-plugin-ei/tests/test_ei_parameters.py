"""The ``pure_text_ei`` section: defaults, validation with one clear error, round
trips, and the original library's dicts."""

from __future__ import annotations

import math

import pytest

from nip_core.errors import NipConfigError
from nip_plugin_ei.parameters import PureTextEiParameters


def test_defaults_are_the_originals():
    params = PureTextEiParameters()
    assert params.rollout_selection_method == "threshold"
    assert params.reward_threshold == 0.9
    assert params.weighting_sample_size_factor == 0.5
    assert params.weighting_minimum is None
    assert params.weighting_use_replacement is True
    assert params.weighting_epsilon == 0.01


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"rollout_selection_method": "best"}, "rollout_selection_method"),
        ({"reward_threshold": math.nan}, "reward_threshold"),
        ({"weighting_sample_size_factor": 0.0}, "weighting_sample_size_factor"),
        ({"weighting_epsilon": -0.1}, "weighting_epsilon"),
        ({"weighting_minimum": math.inf}, "weighting_minimum"),
        ({"weighting_use_replacement": "yes"}, "weighting_use_replacement"),
    ],
)
def test_bad_values_are_one_clear_error(values, path):
    with pytest.raises(NipConfigError) as caught:
        PureTextEiParameters(**values)
    assert [p.path for p in caught.value.problems] == [path]


def test_sampling_more_than_every_episode_needs_replacement():
    PureTextEiParameters(weighting_sample_size_factor=2.0)
    with pytest.raises(NipConfigError, match="at most 1") as caught:
        PureTextEiParameters(
            rollout_selection_method="weighted_sampling",
            weighting_sample_size_factor=1.5,
            weighting_use_replacement=False,
        )
    assert [p.path for p in caught.value.problems] == ["weighting_sample_size_factor"]


def test_the_section_in_hyper_parameters(ei_scenario):
    from nip_core.parameters import HyperParameters

    hyper_params = ei_scenario.hyper_params(
        trainer="pure_text_ei",
        pure_text_ei={"rollout_selection_method": "weighted_sampling"},
    )
    again = HyperParameters.from_dict(hyper_params.to_dict())
    assert again.pure_text_ei == hyper_params.pure_text_ei
    assert again.to_dict()["_meta"]["sources"]["trainer"] == "nip-plugin-ei"
    with pytest.raises(NipConfigError) as caught:
        ei_scenario.hyper_params(
            trainer="pure_text_ei",
            pure_text_ei={"reward_treshold": 0.5, "weighting_epsilon": -1},
        )
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == ["pure_text_ei.reward_treshold", "pure_text_ei.weighting_epsilon"]
    assert "reward_threshold" in str(caught.value)  # did you mean


def test_an_original_library_dict_keeps_its_section(ei_scenario):
    """The original's ``pure_text_ei`` section survives migration when this plugin
    is installed (the core drops it, saying so, when it is not)."""
    import warnings

    from nip_core.parameters import HyperParameters

    original = ei_scenario.hyper_params_dict(trainer="pure_text_ei")
    original["pure_text_ei"] = {
        "rollout_selection_method": "weighted_sampling",
        "weighting_minimum": 0.0,
    }
    original["_package_version"] = "1.0.0"
    original["rl"] = {"num_iterations": 3, "rollouts_per_iteration": 5}
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        hyper_params = HyperParameters.from_dict(original)
    assert hyper_params.pure_text_ei.rollout_selection_method == "weighted_sampling"
    assert hyper_params.pure_text_ei.weighting_minimum == 0.0
    assert hyper_params.text_rl.num_iterations == 3


def test_guess_replacement_settings_are_read_by_expert_iteration(ei_scenario):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hyper_params = ei_scenario.hyper_params(
            trainer="pure_text_ei",
            text_rl={
                "verifier_guess_replacement_proportion": 0.5,
                "verifier_guess_replacement_annealing": "linear",
                "verifier_guess_replacement_keeps_reasoning": False,
            },
        )
    assert hyper_params.text_rl.verifier_guess_replacement_proportion == 0.5
    assert hyper_params.text_rl.verifier_guess_replacement_keeps_reasoning is False
