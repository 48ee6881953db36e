"""Hook implementations of the EI plugin (light: no torch import here)."""

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
from nip_plugin_ei.parameters import PureTextEiParameters

_AGENT = r"(?P<agent>[^.]+)"


@hookimpl
def register_trainers() -> list[TrainerSpec]:
    return [
        TrainerSpec(
            name="pure_text_ei",
            trainer_class="nip_plugin_ei.trainer:PureTextEiTrainer",
            data_world="text",
            trainer_type="text",
            parameter_sections=("text_rl", "text_backend", "pure_text_ei"),
            description="Expert iteration: supervised fine-tuning of text agents on "
            "their best episodes (threshold or reward-weighted sampling).",
        )
    ]


@hookimpl
def register_parameter_sections() -> list[ParameterSectionSpec]:
    return [
        ParameterSectionSpec(
            name="pure_text_ei",
            parameters_class=PureTextEiParameters,
            description="Parameters of the pure_text_ei trainer (rollout selection).",
        )
    ]


@hookimpl
def register_config_dirs() -> list[ConfigDirSpec]:
    return [ConfigDirSpec(name="ei", path=str(Path(__file__).parent / "configs"))]


def _panel(name: str, title: str, ylabel: str, metric: str, display: str, order: int):
    return ReportPanelSpec(
        name=name,
        title=title,
        ylabel=ylabel,
        metrics=(
            ReportMetric(
                pattern=r"fine_tune\." + _AGENT + r"\." + metric, display=display
            ),
        ),
        order=order,
        description=f"pure_text_ei: fine_tune.{{agent}}.{metric}",
    )


@hookimpl
def register_report_panels() -> list[ReportPanelSpec]:
    return [
        _panel(
            "ei_selected_episodes",
            "Expert iteration: episodes selected by reward, per agent",
            "episodes",
            "num_selected",
            "{agent} selected",
            200,
        ),
        _panel(
            "ei_guess_replaced",
            "Expert iteration: verifier examples with the true verdict written in",
            "examples",
            "num_guess_replaced",
            "{agent} guess-replaced",
            201,
        ),
        _panel(
            "ei_selected_reward",
            "Expert iteration: mean episode reward of the selected episodes",
            "episode reward",
            "selected_mean_episode_reward",
            "{agent} selected reward",
            202,
        ),
        _panel(
            "ei_selected_accuracy",
            "Expert iteration: verifier accuracy in the selected episodes",
            "accuracy",
            "selected_accuracy",
            "{agent} selected accuracy",
            203,
        ),
    ]
