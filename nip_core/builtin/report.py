"""Built-in plugin of nip-core: the figures of ``nip report`` for the core's metrics.

Every trainer logs ``mean_accuracy`` and per-agent rewards; staged text trainers log
their fine-tune examples per shared model group; message regression logs its
accuracy. Trainer plugins register panels for their own metrics through the same hook
(:func:`nip_core.hookspecs.register_report_panels`).

This module must stay light: no torch, no matplotlib.
"""

from __future__ import annotations

from nip_core import hookimpl
from nip_core.records import ReportMetric, ReportPanelSpec

_AGENT = r"(?P<agent>[^.]+)"

CORE_REPORT_PANELS: tuple[ReportPanelSpec, ...] = (
    ReportPanelSpec(
        name="accuracy",
        title="Verifier accuracy",
        ylabel="accuracy",
        metrics=(
            ReportMetric(pattern=r"mean_accuracy", display="accuracy"),
            ReportMetric(
                pattern=r"test_mean_accuracy", display="test accuracy", test=True
            ),
            ReportMetric(
                pattern=_AGENT + r"\.train_accuracy", display="{agent} accuracy"
            ),
            ReportMetric(
                pattern=_AGENT + r"\.test_accuracy",
                display="{agent} test accuracy",
                test=True,
            ),
        ),
        order=0,
        description="mean_accuracy and test_mean_accuracy (solo agents: per agent)",
    ),
    ReportPanelSpec(
        name="rewards",
        title="Mean episode reward per agent",
        ylabel="episode reward",
        metrics=(
            ReportMetric(
                pattern=_AGENT + r"\.mean_episode_reward", display="{agent} reward"
            ),
            ReportMetric(
                pattern=_AGENT + r"\.test_mean_episode_reward",
                display="{agent} test reward",
                test=True,
            ),
        ),
        order=10,
        description="{agent}.mean_episode_reward and its test variant",
    ),
    ReportPanelSpec(
        name="episode_length",
        title="Mean episode length",
        ylabel="steps per episode",
        metrics=(
            ReportMetric(pattern=r"mean_episode_length", display="episode length"),
            ReportMetric(
                pattern=r"test_mean_episode_length",
                display="test episode length",
                test=True,
            ),
        ),
        order=20,
        description="mean_episode_length and its test variant",
    ),
    ReportPanelSpec(
        name="fine_tune_examples",
        title="Fine-tune examples per shared model group",
        ylabel="examples",
        metrics=(
            ReportMetric(
                pattern=r"fine_tune\." + _AGENT + r"\.num_examples",
                display="{agent} fine-tune examples",
            ),
        ),
        order=30,
        description="staged text trainers: fine_tune.{group}.num_examples",
    ),
    ReportPanelSpec(
        name="fine_tune_left_out",
        title="Fine-tune examples the backend left out for length",
        ylabel="examples",
        metrics=(
            ReportMetric(
                pattern=r"fine_tune\." + _AGENT + r"\.num_examples_left_out",
                display="{agent} left out for length",
            ),
        ),
        order=31,
        description="staged text trainers, backends that report it (transformers): "
        "fine_tune.{group}.num_examples_left_out",
    ),
    ReportPanelSpec(
        name="message_regression",
        title="Label predicted from each agent's messages (held-out accuracy)",
        ylabel="accuracy",
        metrics=(
            ReportMetric(
                pattern=_AGENT + r"\.message_regression_test_accuracy",
                display="{agent} message regression",
            ),
        ),
        order=40,
        description="{agent}.message_regression_test_accuracy",
    ),
)
"""The core's panels, in table order."""


@hookimpl
def register_report_panels() -> list[ReportPanelSpec]:
    """Register the core's panels."""
    return list(CORE_REPORT_PANELS)
