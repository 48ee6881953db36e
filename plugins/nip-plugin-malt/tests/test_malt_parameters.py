"""The ``pure_text_malt`` section: defaults, validation, round trips, and the
original library's dicts."""

from __future__ import annotations

import warnings

import pytest

from nip_core.errors import NipConfigError
from nip_plugin_malt.parameters import PureTextMaltParameters


def test_defaults():
    params = PureTextMaltParameters()
    assert params.num_responses_per_timestep == 2  # the original's
    assert params.max_generations_per_iteration == 20_000
    assert params.node_value == "leaves"  # the original's rule


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"num_responses_per_timestep": 1}, "num_responses_per_timestep"),
        ({"num_responses_per_timestep": 2.5}, "num_responses_per_timestep"),
        ({"max_generations_per_iteration": 0}, "max_generations_per_iteration"),
        ({"max_generations_per_iteration": "many"}, "max_generations_per_iteration"),
        ({"node_value": "children"}, "node_value"),
    ],
)
def test_bad_values_are_one_clear_error(values, path):
    with pytest.raises(NipConfigError) as caught:
        PureTextMaltParameters(**values)
    assert [p.path for p in caught.value.problems] == [path]
    if path == "node_value":
        assert "valid choices: leaves, branches" in str(caught.value)


def test_the_section_in_hyper_parameters(malt_scenario):
    from nip_core.parameters import HyperParameters

    hyper_params = malt_scenario.hyper_params(
        trainer="pure_text_malt",
        pure_text_malt={"num_responses_per_timestep": 3},
    )
    again = HyperParameters.from_dict(hyper_params.to_dict())
    assert again.pure_text_malt == hyper_params.pure_text_malt
    assert again.to_dict()["_meta"]["sources"]["trainer"] == "nip-plugin-malt"
    with pytest.raises(NipConfigError) as caught:
        malt_scenario.hyper_params(
            trainer="pure_text_malt",
            pure_text_malt={"num_responses": 3},
        )
    assert [p.path for p in caught.value.problems] == ["pure_text_malt.num_responses"]
    assert "num_responses_per_timestep" in str(caught.value)


def test_an_original_library_dict_keeps_its_section(malt_scenario):
    from nip_core.parameters import HyperParameters

    original = malt_scenario.hyper_params_dict(trainer="pure_text_malt")
    original["pure_text_malt"] = {"num_responses_per_timestep": 4}
    original["_package_version"] = "1.0.0"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        hyper_params = HyperParameters.from_dict(original)
    assert hyper_params.pure_text_malt.num_responses_per_timestep == 4


def test_guess_replacement_settings_warn_that_malt_does_not_read_them(malt_scenario):
    from nip_core.errors import ParameterWarning

    with pytest.warns(ParameterWarning) as caught:
        malt_scenario.hyper_params(
            trainer="pure_text_malt",
            text_rl={
                "verifier_guess_replacement_proportion": 0.5,
                "verifier_guess_replacement_annealing": "linear",
            },
        )
    assert [str(w.message) for w in caught] == [
        "trainer 'pure_text_malt' does not read "
        "text_rl.verifier_guess_replacement_proportion=0.5, "
        "text_rl.verifier_guess_replacement_annealing='linear': the setting has no "
        "effect in this run"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # at their defaults: nothing to say
        malt_scenario.hyper_params(trainer="pure_text_malt")
