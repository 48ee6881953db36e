"""Every hook specification of nip, in one module.

This module *is* the hook reference (the docs page ``docs/hooks.md`` is generated from
it). A plugin implements hooks with the :data:`nip_core.hookimpl` marker::

    from nip_core import hookimpl
    from nip_core.records import TrainerSpec

    @hookimpl
    def register_trainers():
        return [
            TrainerSpec(name="my_trainer", trainer_class="my_plugin.trainer:MyTrainer")
        ]

All hooks are *registration* hooks: they take no arguments, are called once when the
plugin manager first builds its registries (on the first command or API call that
needs one), and return a list of records from :mod:`nip_core.records` (or ``None``
for nothing). The manager stamps every record with the plugin that returned it, sorts
each registry by key, and refuses duplicate keys naming both plugins.

Hook implementations must be cheap and must not import torch: return references
(``"module:attr"`` strings) to heavy classes instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from nip_core import PROJECT_NAME

if TYPE_CHECKING:
    from nip_core.records import (
        AgentPartSpec,
        ConfigDirSpec,
        DatasetBuilderSpec,
        EpisodeRendererSpec,
        LoggerSpec,
        MigrationSpec,
        ParameterSectionSpec,
        PretrainedModelSpec,
        ProtocolSpec,
        ReportPanelSpec,
        RolloutAnalyserSpec,
        ScenarioSpec,
        TextBackendSpec,
        TrainerSpec,
    )

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

# --------------------------------------------------------------------------------------
# Experiment components
# --------------------------------------------------------------------------------------


@hookspec
def register_scenarios() -> list[ScenarioSpec] | None:
    """Register scenarios: a task with its dataset, environment and agent parameters.

    Called once, when the scenario registry is first built. Return one
    :class:`~nip_core.records.ScenarioSpec` per scenario. The scenario's agent parts
    are registered separately through :func:`register_agent_parts`, so other plugins
    can add parts (a new head) to an existing scenario.
    """


@hookspec
def register_protocols() -> list[ProtocolSpec] | None:
    """Register interaction protocols.

    Called once, when the protocol registry is first built. Return one
    :class:`~nip_core.records.ProtocolSpec` per protocol. The built-in protocols
    (``nip``, ``adp``, ``debate``, ``merlin_arthur``, ``mnip``, ``solo_verifier``)
    are registered through this hook by the core's built-in protocol plugin; the
    test protocol ``multi_channel_test`` by :mod:`nip_core.testing.protocols`.
    """


@hookspec
def register_trainers() -> list[TrainerSpec] | None:
    """Register trainers.

    Called once, when the trainer registry is first built. Return one
    :class:`~nip_core.records.TrainerSpec` per trainer. The spec's ``data_world``
    and ``required_parts`` let validation reject a scenario the trainer cannot train
    before anything is built.
    """


@hookspec
def register_agent_parts() -> list[AgentPartSpec] | None:
    """Register agent part classes (bodies and heads) of scenarios.

    Called once, when the agent-part registry is first built. Return one
    :class:`~nip_core.records.AgentPartSpec` per (scenario, part role). The experiment
    factory builds, for each agent, the parts the trainer type needs (see
    :class:`~nip_core.records.TrainerSpec`).
    """


@hookspec
def register_pretrained_models() -> list[PretrainedModelSpec] | None:
    """Register pretrained models that compute embeddings of a scenario's data.

    Called once, when the pretrained-model registry is first built. Agents whose
    parameters name a model in ``use_pretrained_embeddings`` get the embeddings the
    model computes (and caches) added to the datasets before training.
    """


@hookspec
def register_episode_renderers() -> list[EpisodeRendererSpec] | None:
    """Register renderers that draw a picture of one saved episode of a scenario.

    Called once, when the renderer registry is first built. Used for rollout samples
    during training and by ``nip report``. A renderer that raises stops neither: a
    training run warns (``PluginWarning``) and draws no more pictures, and the
    report warns and goes on.
    """


@hookspec
def register_text_backends() -> list[TextBackendSpec] | None:
    """Register text-model backends: generation and fine-tuning of language models.

    Called once, when the text-backend registry is first built. Return one
    :class:`~nip_core.records.TextBackendSpec` per backend. Text agents use the
    backend their parameters name (``backend``, else ``text_backend.name``); the core
    registers ``openai`` (any OpenAI-compatible endpoint) through this hook.
    """


@hookspec
def register_rollout_analysers() -> list[RolloutAnalyserSpec] | None:
    """Register rollout analysers: metrics computed from batches of text rollouts.

    Called once, when the rollout-analyser registry is first built. Return one
    :class:`~nip_core.records.RolloutAnalyserSpec` per analyser. The staged text
    trainer runs the analysers named in ``text_rl.rollout_analysers`` on every
    batch of rollouts it logs; ``nip analyse RUN --analyser NAME`` runs any of them
    on the rollouts a run saved. The core registers the cheap, scenario-free ones
    (``message_lengths``, ``decisions``, ``invalid_responses``).
    """


# --------------------------------------------------------------------------------------
# Parameters and configuration
# --------------------------------------------------------------------------------------


@hookspec
def register_parameter_sections() -> list[ParameterSectionSpec] | None:
    """Register sections of the hyper-parameter tree.

    Called once, when the section registry is first built (before any
    :class:`~nip_core.parameters.HyperParameters` is constructed). Return one
    :class:`~nip_core.records.ParameterSectionSpec` per section, e.g. ``ppo``. Every
    registered section is present on every ``HyperParameters`` (with its defaults
    when not given).
    """


@hookspec
def register_parameter_migrations() -> list[MigrationSpec] | None:
    """Register migration steps for saved parameter dicts.

    Called once, when :meth:`HyperParameters.from_dict` first meets a dict whose
    recorded component version is older than the installed one. Each
    :class:`~nip_core.records.MigrationSpec` moves one component's dict from one
    schema version to the next; the steps are chained.
    """


@hookspec
def register_config_dirs() -> list[ConfigDirSpec] | None:
    """Register directories of Hydra YAML configs.

    Called once per ``nip run`` / ``nip config`` invocation, when the CLI builds the
    Hydra search path. Directories are searched after the user's ``./configs`` and
    before the core's own directory.
    """


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


@hookspec
def register_loggers() -> list[LoggerSpec] | None:
    """Register metric loggers.

    Called once, when the logger registry is first built. A run uses the loggers its
    settings name (``loggers=[jsonl, wandb]``); the local JSONL logger is always on.
    """


@hookspec
def register_dataset_builders() -> list[DatasetBuilderSpec] | None:
    """Register dataset builders for ``nip datasets generate SCENARIO NAME``.

    Called once, when the dataset-builder registry is first built. Each builder's
    options become command-line flags.
    """


@hookspec
def register_report_panels() -> list[ReportPanelSpec] | None:
    """Register figures of ``nip report`` and the metrics drawn in them.

    Called once, when the report-panel registry is first built (by ``nip report``
    and when a run draws its plots). Each :class:`~nip_core.records.ReportPanelSpec`
    names a figure (``<name>.png``) and the metrics it draws, matched by regular
    expression; the same metrics become columns of the report's tables. A trainer
    plugin registers the metrics its trainer logs; the core's own panels (accuracy,
    rewards, episode length, fine-tune examples, message regression) come through
    this hook too.
    """
