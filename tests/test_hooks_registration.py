"""One ``test_hook_<name>`` test per hook: a plugin implementing the hook, registered
with the ``register_plugin`` fixture, shows up stamped in the right registry."""

from __future__ import annotations

import attrs

from nip_core import hookimpl
from nip_core.parameters.base import SubParameters, parameters_class
from nip_core.records import (
    AgentPartSpec,
    BuilderOption,
    ConfigDirSpec,
    DatasetBuilderSpec,
    EpisodeRendererSpec,
    LoggerSpec,
    MigrationSpec,
    ParameterSectionSpec,
    PretrainedModelSpec,
    ProtocolSpec,
    ReportMetric,
    ReportPanelSpec,
    RolloutAnalyserSpec,
    ScenarioSpec,
    TextBackendSpec,
    TrainerSpec,
)


@parameters_class
class HookTestParameters(SubParameters):
    """Parameters of the hook test.

    Parameters
    ----------
    depth : int
        How deep.
    """

    depth: int = 1


def assert_stamped(record, expected, plugin="hook-test", version="4.5.6"):
    """``record`` is ``expected`` (compared field by field) stamped by the plugin."""
    assert record == expected
    assert attrs.asdict(record, recurse=False) | {
        "plugin": None,
        "plugin_version": None,
    } == attrs.asdict(expected, recurse=False)
    assert (record.plugin, record.plugin_version) == (plugin, version)


def register(register_plugin, plugin) -> None:
    register_plugin(
        plugin, name="hook-test", distribution="nip-plugin-hook-test", version="4.5.6"
    )


def test_hook_register_scenarios(plugin_manager, register_plugin):
    spec = ScenarioSpec(
        name="hook_scenario",
        data_world="text",
        agent_parameters_class="hook_pkg.params:AgentParams",
        dataset_class="hook_pkg.data:Dataset",
        default_dataset="tiny",
        datasets=["tiny"],
        supported_protocols=("nip",),
    )

    class Plugin:
        @hookimpl
        def register_scenarios(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.scenarios["hook_scenario"], spec)
    assert plugin_manager.scenarios["hook_scenario"].datasets == ("tiny",)


def test_hook_register_protocols(plugin_manager, register_plugin):
    spec = ProtocolSpec(
        name="hook_protocol",
        handler_class="hook_pkg.protocol:Handler",
        agent_names=["prover", "verifier"],
        supports_zero_knowledge=True,
    )

    class Plugin:
        @hookimpl
        def register_protocols(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.protocols["hook_protocol"], spec)
    assert plugin_manager.registry("protocol")["hook_protocol"].agent_names == (
        "prover",
        "verifier",
    )


def test_hook_register_trainers(plugin_manager, register_plugin):
    spec = TrainerSpec(
        name="hook_trainer",
        trainer_class="hook_pkg.trainer:Trainer",
        trainer_type="solo_agent",
        required_parts=("body", "solo_head"),
    )

    class Plugin:
        @hookimpl
        def register_trainers(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.trainers["hook_trainer"], spec)


def test_hook_register_agent_parts(plugin_manager, register_plugin):
    body = AgentPartSpec(scenario="hook_scenario", part="body", part_class="p:Body")
    head = AgentPartSpec(scenario="hook_scenario", part="value_head", part_class="p:V")

    class Plugin:
        @hookimpl
        def register_agent_parts(self):
            return [head, body]

    register(register_plugin, Plugin())
    parts = plugin_manager.agent_parts
    assert_stamped(parts["hook_scenario/body"], body)
    assert_stamped(parts["hook_scenario/value_head"], head)
    assert [p.part for p in parts.where(scenario="hook_scenario")] == [
        "body",
        "value_head",
    ]


def test_hook_register_pretrained_models(plugin_manager, register_plugin):
    spec = PretrainedModelSpec(
        name="hook_model", model_class="hook_pkg.models:Model", scenario="hook_scenario"
    )

    class Plugin:
        @hookimpl
        def register_pretrained_models(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.pretrained_models["hook_model"], spec)


def test_hook_register_episode_renderers(plugin_manager, register_plugin):
    spec = EpisodeRendererSpec(scenario="hook_scenario", renderer="hook_pkg.draw:draw")

    class Plugin:
        @hookimpl
        def register_episode_renderers(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.episode_renderers["hook_scenario"], spec)


def test_hook_register_parameter_sections(plugin_manager, register_plugin):
    spec = ParameterSectionSpec(
        name="hook_section", parameters_class=HookTestParameters
    )

    class Plugin:
        @hookimpl
        def register_parameter_sections(self):
            return [spec]

    register(register_plugin, Plugin())
    record = plugin_manager.parameter_sections["hook_section"]
    assert_stamped(record, spec)
    assert record.parameters_class(depth=2).depth == 2


def test_hook_register_parameter_migrations(plugin_manager, register_plugin):
    def migrate(params):
        renamed = {k: v for k, v in params.items() if k != "size"}
        renamed["width"] = params["size"]
        return renamed, ["size renamed to width"]

    spec = MigrationSpec(
        component="nip-plugin-hook-test",
        from_version="1",
        to_version="2",
        migrate=migrate,
    )

    class Plugin:
        @hookimpl
        def register_parameter_migrations(self):
            return [spec]

    register(register_plugin, Plugin())
    record = plugin_manager.migrations["nip-plugin-hook-test:1->2"]
    assert_stamped(record, spec)
    assert record.migrate({"size": 3}) == ({"width": 3}, ["size renamed to width"])


def test_hook_register_config_dirs(plugin_manager, register_plugin, tmp_path):
    spec = ConfigDirSpec(name="hook-test", path=str(tmp_path))

    class Plugin:
        @hookimpl
        def register_config_dirs(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.config_dirs["hook-test"], spec)


def test_hook_register_loggers(plugin_manager, register_plugin):
    spec = LoggerSpec(name="hook_logger", logger_class="hook_pkg.log:Logger")

    class Plugin:
        @hookimpl
        def register_loggers(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.loggers["hook_logger"], spec)


def test_hook_register_dataset_builders(plugin_manager, register_plugin):
    spec = DatasetBuilderSpec(
        scenario="hook_scenario",
        builder="hook_pkg.build:build",
        options=[BuilderOption(name="num_pairs", default=10, help="How many.")],
    )

    class Plugin:
        @hookimpl
        def register_dataset_builders(self):
            return [spec]

    register(register_plugin, Plugin())
    record = plugin_manager.dataset_builders["hook_scenario"]
    assert_stamped(record, spec)
    assert record.options[0].default == 10


def test_hook_register_text_backends(plugin_manager, register_plugin):
    spec = TextBackendSpec(
        name="hook_backend",
        backend_class="hook_pkg.backend:Backend",
        parameter_section="hook_backend_options",
        description="A backend for the hook test.",
    )

    class Plugin:
        @hookimpl
        def register_text_backends(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.text_backends["hook_backend"], spec)
    # the core's own backend is registered through the same hook
    assert plugin_manager.text_backends["openai"].plugin == "nip-core.text"


def test_hook_register_report_panels(plugin_manager, register_plugin):
    spec = ReportPanelSpec(
        name="hook_panel",
        title="Hook metrics",
        ylabel="units",
        metrics=[ReportMetric(pattern=r"(?P<agent>[^.]+)\.hook", display="{agent}")],
        order=150,
        description="A panel for the hook test.",
    )

    class Plugin:
        @hookimpl
        def register_report_panels(self):
            return [spec]

    register(register_plugin, Plugin())
    record = plugin_manager.report_panels["hook_panel"]
    assert_stamped(record, spec)
    assert isinstance(record.metrics, tuple)
    # the core's own panels are registered through the same hook
    assert plugin_manager.report_panels["accuracy"].plugin == "nip-core.report"


def test_hook_register_rollout_analysers(plugin_manager, register_plugin):
    spec = RolloutAnalyserSpec(
        name="hook_analyser",
        analyser_class="hook_pkg.analysis:Analyser",
        scenario="hook_scenario",
        description="An analyser for the hook test.",
    )

    class Plugin:
        @hookimpl
        def register_rollout_analysers(self):
            return [spec]

    register(register_plugin, Plugin())
    assert_stamped(plugin_manager.rollout_analysers["hook_analyser"], spec)
    # the core's cheap analysers are registered through the same hook
    for name in ("message_lengths", "decisions", "invalid_responses"):
        assert plugin_manager.rollout_analysers[name].plugin == "nip-core.text"
