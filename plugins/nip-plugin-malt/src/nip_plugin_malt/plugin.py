"""Hook implementations of the MALT plugin (light: no torch import here)."""

from __future__ import annotations

from pathlib import Path

from nip_core import hookimpl
from nip_core.records import (
    ConfigDirSpec,
    ParameterSectionSpec,
    ReportMetric,
    ReportPanelSpec,
    TrainerSpec,
)
from nip_plugin_malt.parameters import PureTextMaltParameters

_AGENT = r"(?P<agent>[^.]+)"


@hookimpl
def register_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(
            name="pure_text_malt",
            trainer_class="nip_plugin_malt.trainer:PureTextMaltTrainer",
            data_world="text",
            trainer_type="text",
            parameter_sections=("text_rl", "text_backend", "pure_text_malt"),
            # expert iteration's verifier guess replacement; MALT's pairs come
            # from the trees' expected rewards
            config_problems="nip_plugin_malt.limits:config_problems",
            unread_parameters=(
                "text_rl.verifier_guess_replacement_proportion",
                "text_rl.verifier_guess_replacement_annealing",
                "text_rl.verifier_guess_replacement_annealing_rate",
                "text_rl.verifier_guess_replacement_keeps_reasoning",
            ),
            description="Multi-agent LLM training: response trees, positive and "
            "negative responses by expected reward, DPO on preference pairs.",
        )
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    return [
        ParameterSectionSpec(
            name="pure_text_malt",
            parameters_class=PureTextMaltParameters,
            description="Parameters of the pure_text_malt trainer (response trees).",
        )
    ]


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    return [ConfigDirSpec(name="malt", path=str(Path(__file__).parent / "configs"))]


def _panel(name: str, title: str, ylabel: str, pattern: str, display: str, order: int):
    return ReportPanelSpec(
        name=name,
        title=title,
        ylabel=ylabel,
        metrics=(ReportMetric(pattern=pattern, display=display),),
        order=order,
        description=f"pure_text_malt: {pattern.replace(_AGENT, '{agent}')}",
    )


@hookimpl
def register_report_panels() -> list[ReportPanelSpec]:
    return [
        _panel(
            "malt_expected_reward",
            "MALT: mean expected reward of each agent's responses",
            "expected reward",
            _AGENT + r"\.mean_expected_reward",
            "{agent} expected reward",
            300,
        ),
        _panel(
            "malt_positive_responses",
            "MALT: share of each agent's responses labelled positive",
            "share",
            _AGENT + r"\.mean_is_positive_example",
            "{agent} positive",
            301,
        ),
        _panel(
            "malt_both_labels",
            "MALT: share of each agent's turns with positive and negative responses",
            "share",
            _AGENT + r"\.mean_has_positive_and_negative",
            "{agent} both labels",
            302,
        ),
        _panel(
            "malt_preference_pairs",
            "MALT: preference pairs per agent",
            "pairs",
            r"fine_tune\." + _AGENT + r"\.num_preference_pairs",
            "{agent} preference pairs",
            303,
        ),
    ]
