"""Typed records that hook implementations return.

A hook implementation describes what its plugin contributes with these frozen attrs
records. The plugin manager stamps each record with the plugin that returned it
(``plugin``, ``plugin_version``), refuses two records with the same key in one registry
(naming both plugins), and sorts registries by key.

Heavy classes (anything importing torch) are given as *references*: an import string
``"package.module:attribute"`` that is resolved only when needed (see
:func:`resolve_ref`). This keeps plugin discovery, ``nip --help`` and ``nip plugins``
free of torch. A reference may also be the object itself.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

import attrs

Ref = str | type | Callable[..., Any]
"""An import string ``"module:attr"`` or the object itself."""

DataWorld = Literal["tensor", "text"]
"""The kind of data an experiment passes around: TensorDicts or strings."""


def resolve_ref(ref: Ref) -> Any:
    """Return the object a reference names, importing its module if needed.

    Parameters
    ----------
    ref : Ref
        ``"package.module:attribute"`` (attribute may be dotted), or an object, which
        is returned as is.
    """
    if not isinstance(ref, str):
        return ref
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"a reference must look like 'module:attribute', got {ref!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # only the module the reference names (or a package above it): a module
        # it imports that is missing is that module's own problem
        missing = error.name or ""
        if not (module_name == missing or module_name.startswith(missing + ".")):
            raise
        raise _unresolvable(ref, f"there is no module {missing!r}") from error
    for depth, part in enumerate(attribute.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError as error:
            owner = ".".join([module_name, *attribute.split(".")[:depth]])
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _unresolvable(ref, f"{owner} has no attribute {part!r}{hint}") from (
                error
            )
    return obj


def _unresolvable(ref: str, detail: str) -> Exception:
    from nip_core.errors import PluginError

    return PluginError(
        f"the plugin reference {ref!r} names nothing: {detail} (fix it where the "
        "plugin registers it; `nip plugins` lists what each plugin registers)"
    )


def _tuple(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


@attrs.frozen(kw_only=True)
class Contribution:
    """Base of every record: the stamp the plugin manager adds.

    Parameters
    ----------
    plugin : str | None
        The name of the plugin that registered the record (set by the manager).
    plugin_version : str | None
        That plugin's distribution version (set by the manager).
    """

    plugin: str | None = attrs.field(default=None, eq=False)
    plugin_version: str | None = attrs.field(default=None, eq=False)

    kind: str = attrs.field(default="", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        """The registry key of this record."""
        raise NotImplementedError  # every concrete record defines its key


@attrs.frozen(kw_only=True)
class ScenarioSpec(Contribution):
    """A scenario: task, data, environment and the agent-parameter class.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"graph_isomorphism"``.
    data_world : DataWorld
        ``"tensor"`` (TensorDict + TorchRL) or ``"text"``.
    agent_parameters_class : Ref
        The scenario's :class:`~nip_core.parameters.AgentParameters` subclass. It
        must import without torch.
    dataset_class : Ref
        The dataset class (a :class:`nip_core.scenario.Dataset` subclass).
    environment_class : Ref | None
        The environment class, for RL trainers.
    default_dataset : str | None
        The dataset used when a config names none.
    datasets : tuple[str, ...]
        Named datasets the scenario can always resolve (shipped, generated on first
        use, or downloaded). Other names are looked up on disk by the dataset class.
    own_datasets : bool
        Whether the scenario reads data besides its named ``datasets``: a path to
        the user's own data, or a set by another name under the data directory (one
        made with ``nip datasets generate``). ``False``: only the named datasets;
        validation refuses anything else, and hints at neither a path nor the sets
        on disk.
    dataset_aliases : Mapping[str, str]
        Other names of named datasets (the original library's, a hub id): a config
        giving one runs the dataset it names, with a
        :class:`~nip_core.errors.ParameterWarning` saying the name to use, and the
        run saves that name.
    supported_protocols : tuple[str, ...] | None
        Protocols the scenario supports; ``None`` means every protocol of its data
        world.
    protocol_handlers : Mapping[str, Ref]
        Scenario-specific specialisations of protocols (protocol name to handler
        class), used instead of the registered handler.
    unread_parameters : tuple[str, ...]
        Parameters the scenario does not read: fields of the hyper-parameters
        themselves (``"test_size"`` for a scenario with fixed splits) or dotted
        section fields. Setting one away from its default gives a
        :class:`~nip_core.errors.ParameterWarning` saying it has no effect.
    config_problems : Ref | None
        ``function(hyper_params) -> list[ConfigProblem]``: what stops this scenario
        from running these parameters that no single field's validator can tell
        (a setting too large for the chosen dataset, say; paths dotted from the
        root). It must not build the dataset. Asked before anything runs, with the
        protocol checks (``nip config show``/``validate``, a sweep's check of every
        job, ``nip run``).
    description : str
        One line for ``nip plugins``.
    """

    name: str
    data_world: DataWorld = "tensor"
    agent_parameters_class: Ref
    dataset_class: Ref
    environment_class: Ref | None = None
    default_dataset: str | None = None
    datasets: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    own_datasets: bool = True
    dataset_aliases: Mapping[str, str] = attrs.field(factory=dict)
    supported_protocols: tuple[str, ...] | None = None
    protocol_handlers: Mapping[str, Ref] = attrs.field(factory=dict)
    unread_parameters: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    config_problems: Ref | None = None
    description: str = ""
    kind: str = attrs.field(default="scenario", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class ProtocolSpec(Contribution):
    """An interaction protocol.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"nip"``.
    handler_class : Ref
        The :class:`nip_core.protocols.ProtocolHandler` subclass.
    agent_names : tuple[str, ...]
        The protocol's agents (without the zero-knowledge additions), so
        configurations can be validated without importing the handler.
    parameter_section : str | None
        The parameter section holding the protocol's own parameters
        (``"nip_protocol"``), if any.
    data_worlds : tuple[DataWorld, ...]
        Data worlds the handler can step.
    supports_zero_knowledge : bool
        Whether the zero-knowledge wrapper may wrap it (single-verifier protocols).
    description : str
        One line for ``nip plugins`` and the docs.
    """

    name: str
    handler_class: Ref
    agent_names: tuple[str, ...] = attrs.field(converter=_tuple)
    parameter_section: str | None = None
    data_worlds: tuple[str, ...] = attrs.field(default=("tensor",), converter=_tuple)
    supports_zero_knowledge: bool = False
    description: str = ""
    kind: str = attrs.field(default="protocol", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class TrainerSpec(Contribution):
    """A trainer.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"vanilla_ppo"``.
    trainer_class : Ref
        The :class:`nip_core.trainers.Trainer` subclass.
    data_world : DataWorld
        The data world the trainer works in; a scenario of another world is rejected
        at validation time.
    trainer_type : str
        Which agent parts the factory builds: ``"rl"`` (bodies, policy and value
        heads) or ``"solo_agent"`` (bodies and solo heads), or a plugin's own value.
    required_parts : tuple[str, ...]
        Agent parts the scenario must register for this trainer (e.g. ``("body",
        "policy_head", "value_head")``).
    parameter_sections : tuple[str, ...]
        Every parameter section the trainer reads, another trainer's included. A
        section some trainer lists counts as read by the runs of the trainers
        listing it only: ``nip config show`` shows it for them, a run of another
        trainer that sets it warns that the setting has no effect, and ``nip
        report`` does not tell such runs apart by it.
    unread_parameters : tuple[str, ...]
        Dotted paths of fields in those sections that this trainer does not read
        (e.g. ``"text_rl.verifier_guess_replacement_proportion"`` for a trainer
        without guess replacement). Setting one away from its default gives a
        :class:`~nip_core.errors.ParameterWarning` saying it has no effect.
    config_problems : Ref | None
        ``function(hyper_params, protocol_handler) -> list[ConfigProblem]``: what
        stops this trainer from running these parameters that only the protocol's
        schedule tells (paths dotted from the root). Asked before anything runs,
        with the protocol checks (``nip config show``/``validate``, a sweep's
        check of every job, ``nip run``).
    description : str
        One line.
    """

    name: str
    trainer_class: Ref
    data_world: DataWorld = "tensor"
    trainer_type: str = "rl"
    required_parts: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    parameter_sections: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    unread_parameters: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    config_problems: Ref | None = None
    description: str = ""
    kind: str = attrs.field(default="trainer", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class AgentPartSpec(Contribution):
    """One agent part class of a scenario.

    Parameters
    ----------
    scenario : str
        The scenario the part belongs to.
    part : str
        The part's role: ``"body"``, ``"policy_head"``, ``"value_head"``,
        ``"solo_head"``, ``"random_policy_head"``, ``"constant_value_head"``, or a
        plugin's own role.
    part_class : Ref
        The :class:`nip_core.scenario.AgentPart` subclass.
    description : str
        One line for ``nip plugins``.
    """

    scenario: str
    part: str
    part_class: Ref
    description: str = ""
    kind: str = attrs.field(default="agent_part", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.part}"


@attrs.frozen(kw_only=True)
class ParameterSectionSpec(Contribution):
    """A section of :class:`~nip_core.parameters.HyperParameters`.

    Parameters
    ----------
    name : str
        The section's key in the parameter tree, e.g. ``"ppo"``.
    parameters_class : type
        The :class:`~nip_core.parameters.SubParameters` subclass (attrs; no torch).
    description : str
        One line.
    """

    name: str
    parameters_class: type
    description: str = ""
    kind: str = attrs.field(
        default="parameter_section", init=False, eq=False, repr=False
    )

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class ConfigDirSpec(Contribution):
    """A directory of Hydra YAML configs that ``nip run`` searches.

    Parameters
    ----------
    name : str
        Key (usually the plugin's name).
    path : str
        Absolute path of the directory.
    """

    name: str
    path: str
    kind: str = attrs.field(default="config_dir", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class LoggerSpec(Contribution):
    """A metrics logger.

    Parameters
    ----------
    name : str
        Key used in run settings (``"jsonl"``, ``"wandb"``, ``"csv"``,
        ``"tensorboard"``).
    logger_class : Ref
        The :class:`nip_core.runs.loggers.MetricLogger` subclass.
    description : str
        One line.
    requires : tuple[str, ...]
        Modules the logger imports that are optional dependencies (``"tensorboard"``);
        a config naming the logger is refused while one is missing.
    install : str
        What to ``pip install`` to get them (``"nip-core[tensorboard]"``); shown in
        that error. Defaults to the module names.
    """

    name: str
    logger_class: Ref
    description: str = ""
    requires: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    install: str = ""
    kind: str = attrs.field(default="logger", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.name

    def missing_requirements(self) -> list[str]:
        """The modules of :attr:`requires` that cannot be imported here."""
        import importlib.util

        missing = []
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(module)
        return missing

    def install_hint(self) -> str:
        """The command that installs :attr:`requires`."""
        target = self.install or " ".join(self.requires)
        return f"pip install '{target}'"


@attrs.frozen(kw_only=True)
class BuilderOption:
    """A command-line option of a dataset builder (``--num-pairs 100``).

    Parameters
    ----------
    name : str
        The builder's keyword argument (``num_pairs``); its flag is the name with
        dashes (``--num-pairs``).
    type : type
        What the flag's value is converted with (``int``, ``float``, ``str``);
        ``bool`` makes a ``--flag``/``--no-flag`` pair.
    default : Any
        The value the builder is given when the flag is absent, shown in the help;
        ``None`` passes no keyword, leaving the builder's own default.
    help : str
        The flag's help line.
    """

    name: str
    type: type = int
    default: Any = None
    help: str = ""


@attrs.frozen(kw_only=True)
class DatasetBuilderSpec(Contribution):
    """A dataset builder, run as ``nip datasets generate SCENARIO NAME [OPTIONS]``.

    Parameters
    ----------
    scenario : str
        The scenario the builder makes datasets for (registry key).
    builder : Ref
        Callable ``builder(name: str, data_dir: pathlib.Path, **options) -> Path``
        that writes the dataset and returns its directory.
    options : tuple[BuilderOption, ...]
        Options the builder accepts, turned into command-line flags.
    description : str
        One line.
    """

    scenario: str
    builder: Ref
    options: tuple[BuilderOption, ...] = attrs.field(default=(), converter=_tuple)
    description: str = ""
    kind: str = attrs.field(default="dataset_builder", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.scenario


@attrs.frozen(kw_only=True)
class MigrationSpec(Contribution):
    """One step migrating saved parameter dicts of a component between versions.

    Parameters
    ----------
    component : str
        Whose schema changes: ``"nip-core"``, a plugin's distribution name, or
        ``"nip"`` for dicts written by the original library.
    from_version : str
        The schema version the step reads.
    to_version : str
        The schema version it writes.
    migrate : Ref
        Callable ``migrate(params: dict) -> tuple[dict, list[str]]`` returning the new
        dict and one human-readable line per change (shown as a warning).
    description : str
        One line saying what the step changes.
    """

    component: str
    from_version: str
    to_version: str
    migrate: Ref
    description: str = ""
    kind: str = attrs.field(default="migration", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.component}:{self.from_version}->{self.to_version}"


@attrs.frozen(kw_only=True)
class PretrainedModelSpec(Contribution):
    """A pretrained model that computes embeddings of a scenario's data.

    Parameters
    ----------
    name : str
        Key used in agent parameters (``pretrained_embeddings_model``).
    model_class : Ref
        The :class:`nip_core.scenario.PretrainedModel` subclass.
    scenario : str | None
        The scenario whose data the model embeds; ``None`` for any.
    description : str
        One line for ``nip plugins``.
    """

    name: str
    model_class: Ref
    scenario: str | None = None
    description: str = ""
    kind: str = attrs.field(
        default="pretrained_model", init=False, eq=False, repr=False
    )

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class EpisodeRendererSpec(Contribution):
    """Draws a picture of one saved episode of a scenario.

    Parameters
    ----------
    scenario : str
        The scenario whose episodes it draws.
    renderer : Ref
        Callable ``renderer(episode: dict, path: pathlib.Path) -> None`` writing a PNG
        of one rollout-sample record: in the tensor world a record of
        :mod:`nip_core.runs.rollouts`, in the text world one episode of an
        iteration's rollouts file (:meth:`TextRollouts.episode_dict
        <nip_core.text.rollouts.TextRollouts.episode_dict>`).
    description : str
        One line for ``nip plugins``.
    """

    scenario: str
    renderer: Ref
    description: str = ""
    kind: str = attrs.field(
        default="episode_renderer", init=False, eq=False, repr=False
    )

    @property
    def key(self) -> str:
        return self.scenario


@attrs.frozen(kw_only=True)
class TextBackendSpec(Contribution):
    """A text-model backend: generation and fine-tuning of language models.

    Parameters
    ----------
    name : str
        Key used in parameters (``text_backend.name``, an agent's ``backend``), e.g.
        ``"openai"``.
    backend_class : Ref
        The :class:`nip_core.text.backend.TextBackend` subclass.
    parameter_section : str | None
        The parameter section holding the backend's own options
        (``"openai_backend"``), registered by the same plugin, if any.
    description : str
        One line for ``nip plugins``.
    """

    name: str
    backend_class: Ref
    parameter_section: str | None = None
    description: str = ""
    kind: str = attrs.field(default="text_backend", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class ReportMetric:
    """A kind of metric a report panel draws, matched by name.

    Parameters
    ----------
    pattern : str
        Regular expression matching the full metric name (as logged in
        ``metrics.jsonl``). A named group ``agent`` captures what the metric is about
        (an agent, a shared model group): one curve (or sub-plot) per value.
    display : str
        How the table of final metrics names it; ``{agent}`` is replaced by the
        captured value.
    test : bool
        Whether it is measured on the test set (drawn dashed, with markers).
    """

    pattern: str
    display: str
    test: bool = False


@attrs.frozen(kw_only=True)
class ReportPanelSpec(Contribution):
    """A figure of ``nip report`` (and of a run's ``plots/``) and the metrics in it.

    Parameters
    ----------
    name : str
        The figure's file name without ``.png`` (``accuracy``, ``ei_selection``).
    title : str
        The figure's title.
    ylabel : str
        The y-axis label.
    metrics : tuple[ReportMetric, ...]
        The metrics drawn; each also becomes a column of the tables of final
        metrics. Within a panel, at most one train and one test metric should match
        per ``agent`` value (they share a curve's colour).
    order : int
        Where the panel's columns come in the tables (lower first); the core's
        panels use 0 to 99.
    description : str
        One line for ``nip plugins``.
    """

    name: str
    title: str
    ylabel: str
    metrics: tuple[ReportMetric, ...] = attrs.field(converter=_tuple)
    order: int = 100
    description: str = ""
    kind: str = attrs.field(default="report_panel", init=False, eq=False, repr=False)

    @property
    def key(self) -> str:
        return self.name


@attrs.frozen(kw_only=True)
class RolloutAnalyserSpec(Contribution):
    """A rollout analyser: metrics computed from a batch of text rollouts.

    Parameters
    ----------
    name : str
        Key used in parameters (``text_rl.rollout_analysers``) and on the command
        line (``nip analyse RUN --analyser NAME``), e.g. ``"message_lengths"``.
    analyser_class : Ref
        The :class:`nip_core.text.analysis.RolloutAnalyser` subclass.
    scenario : str | None
        The scenario whose rollouts it understands; ``None`` for any text scenario.
    description : str
        One line for ``nip plugins``.
    """

    name: str
    analyser_class: Ref
    scenario: str | None = None
    description: str = ""
    kind: str = attrs.field(
        default="rollout_analyser", init=False, eq=False, repr=False
    )

    @property
    def key(self) -> str:
        return self.name


ALL_RECORD_TYPES: Mapping[str, type[Contribution]] = {
    "scenario": ScenarioSpec,
    "protocol": ProtocolSpec,
    "trainer": TrainerSpec,
    "agent_part": AgentPartSpec,
    "parameter_section": ParameterSectionSpec,
    "config_dir": ConfigDirSpec,
    "logger": LoggerSpec,
    "dataset_builder": DatasetBuilderSpec,
    "migration": MigrationSpec,
    "pretrained_model": PretrainedModelSpec,
    "episode_renderer": EpisodeRendererSpec,
    "text_backend": TextBackendSpec,
    "report_panel": ReportPanelSpec,
    "rollout_analyser": RolloutAnalyserSpec,
}
"""Record type per kind, in the order ``nip plugins`` shows them."""
