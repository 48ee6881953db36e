"""The malformed-value helpers a plugin's tests use on their own sections
(:mod:`nip_core.testing.malformed`): a section's bad values are checked without an
experiment config of the plugin's, through the validation ``nip run`` does."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Literal

import pytest
from attrs import field
from attrs import validators as v

from nip_core import hookimpl
from nip_core.parameters import LrFactors, SubParameters, parameters_class
from nip_core.records import ParameterSectionSpec
from nip_core.testing.configs import config_app
from nip_core.testing.malformed import (
    MalformedCase,
    assert_refused,
    assert_section_refused,
    field_cases,
)


@parameters_class
class WidgetParameters(SubParameters):
    """The ``widget`` section of the test plugin.

    Parameters
    ----------
    width : int
        At least 1.
    rate : float
        In [0, 1).
    shape : {"round", "square"}
        A choice.
    factors : LrFactors
        Nested parameters.
    """

    width: int = field(default=2, validator=v.ge(1))
    rate: float = field(default=0.5, validator=[v.ge(0.0), v.lt(1.0)])
    shape: Literal["round", "square"] = "round"
    factors: LrFactors = field(factory=LrFactors)


class WidgetPlugin:
    """Registers the ``widget`` section, and nothing else: no scenario, no config."""

    @hookimpl
    def register_parameter_sections(self) -> list[ParameterSectionSpec]:
        return [ParameterSectionSpec(name="widget", parameters_class=WidgetParameters)]


@pytest.fixture
def widget(register_plugin: Any) -> None:
    register_plugin(WidgetPlugin(), name="widget")


def test_every_bad_value_of_a_section_is_refused_without_a_config(
    widget: None, plugin_manager: Any
) -> None:
    cases = field_cases(WidgetParameters, "widget")
    assert {"widget.rate=nan", "widget.factors.no_such_field=1"} <= {
        case.override for case in cases
    }
    with config_app() as app:
        for case in cases:
            assert_section_refused(case, app=app)
    # the synthetic scenario was there for the checks only
    assert not plugin_manager.has_plugin("synthetic")
    assert "synthetic" not in plugin_manager.registry("scenario")


def test_without_an_application_it_makes_its_own(widget: None) -> None:
    assert_section_refused(MalformedCase("widget.width=0", "widget.width", "int"))


def test_a_registered_synthetic_scenario_stays(
    widget: None, synthetic_scenario: Any, plugin_manager: Any
) -> None:
    assert_section_refused(MalformedCase("widget.shape=oval", "widget.shape", "c"))
    assert plugin_manager.has_plugin("synthetic")


def test_a_value_that_is_accepted_fails_the_check(widget: None) -> None:
    with pytest.raises(AssertionError, match=r"widget\.rate=0\.25 was accepted"):
        assert_section_refused(MalformedCase("widget.rate=0.25", "widget.rate", "ok"))


def test_a_refusal_about_another_field_fails_the_check(widget: None) -> None:
    case = MalformedCase("widget.width=0", "widget.rate", "wrong path")
    with pytest.raises(AssertionError, match="expected a problem at 'widget.rate'"):
        assert_section_refused(case)


def test_a_refusal_for_more_than_the_case_fails_the_check(widget: None) -> None:
    case = MalformedCase("widget.rate=nan seed=abc", "widget.rate", "two problems")
    with pytest.raises(AssertionError, match="also for what it does not touch") as info:
        assert_section_refused(case)
    assert "seed: expected an integer" in str(info.value)


def test_a_section_nobody_registered_fails_the_check(plugin_manager: Any) -> None:
    # a test that forgets to register its plugin does not pass by luck: the error
    # is then about an unknown section, not about the field
    case = MalformedCase("widget.width=0", "widget.width", "int")
    with pytest.raises(AssertionError, match="expected a problem at 'widget.width'"):
        assert_section_refused(case)


def test_assert_refused_applies_the_case_to_a_config(
    widget: None, synthetic_scenario: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "widget_experiment.yaml").write_text(
        textwrap.dedent(
            """\
            defaults:
              - /base
              - _self_
            scenario: synthetic
            trainer: reinforce
            widget:
              width: 3
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    with config_app() as app:
        for case in field_cases(WidgetParameters, "widget"):
            assert_refused(case, "widget_experiment", app=app)
    with pytest.raises(AssertionError, match="was accepted"):
        assert_refused(
            MalformedCase("widget.width=4", "widget.width", "ok"), "widget_experiment"
        )
