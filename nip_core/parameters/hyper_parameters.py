"""The experiment's hyper-parameters: :class:`HyperParameters`.

An experiment is reproducible from its hyper-parameters alone (up to hardware quirks
and model APIs). The tree has fixed core fields (scenario, trainer, dataset, ...),
the ``agents`` mapping, and one *section* per :class:`~nip_core.records.
ParameterSectionSpec` registered through ``register_parameter_sections`` (``rl``,
``protocol_common``, a plugin's ``ppo`` ...). Sections are not fields of the class:
every registered section is present on every object and read as an attribute.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import types
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs
from attrs import field
from attrs import validators as v

import nip_core
from nip_core.errors import ConfigProblem, NipConfigError, ParameterWarning
from nip_core.parameters.agents import (
    DEFAULT_AGENT_KEY,
    AgentParameters,
    AgentsParameters,
)
from nip_core.parameters.base import (
    BaseHyperParameters,
    SubParameters,
    parameters_class,
)
from nip_core.parameters.base_run import base_run_preserve
from nip_core.parameters.migrations import (
    CORE_COMPONENT,
    META_KEY,
    SCHEMA_VERSION,
    is_legacy_dict,
    prepare_saved_dict,
)
from nip_core.parameters.validation import (
    closest,
    collecting,
    prefixed,
    problems_from_exception,
)

__all__ = [
    "CORE_FIELD_NAMES",
    "ZERO_KNOWLEDGE_AGENTS",
    "HyperParameters",
    "datasets_in",
    "datasets_on_disk",
    "is_path_like_dataset",
]

ZERO_KNOWLEDGE_AGENTS: tuple[str, ...] = ("adversarial_verifier", "simulator")
"""The agents the zero-knowledge wrapper adds to a protocol."""

_SOURCE_HINTS: contextvars.ContextVar[Mapping[str, str] | None] = (
    contextvars.ContextVar("nip_parameter_source_hints", default=None)
)
"""Which distribution provided what, from the ``_meta`` of the dict being read."""

_READING_ORIGINAL: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nip_reading_original_dict", default=False
)
"""Whether the dict being read was saved by the original library."""

_DATA_DIR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nip_parameter_data_dir", default=None
)
"""The data directory datasets are looked up in while parameters are validated."""


@contextlib.contextmanager
def datasets_in(data_dir: str | os.PathLike[str] | None) -> Iterator[None]:
    """Validate dataset names against the datasets in ``data_dir`` (the run's
    ``run.data_dir``) instead of the default data directory.

    A dataset generated with ``nip datasets generate SCENARIO NAME`` lives in
    ``<data_dir>/<scenario>/<NAME>`` and is used by name (``dataset=NAME``).
    ``None`` means the default (:func:`nip_core.settings.default_data_dir`).
    """
    token = _DATA_DIR.set(None if data_dir is None else str(data_dir))
    try:
        yield
    finally:
        _DATA_DIR.reset(token)


def datasets_on_disk(
    scenario: str, data_dir: str | os.PathLike[str] | None
) -> list[str]:
    """The datasets of ``scenario`` in a data directory (``None``: the default one):
    the sub-directories of ``<data_dir>/<scenario>``, by name, but the one holding
    what is derived from paths to one's own data (``own``) and those holding only
    processed-data caches (of a dataset the scenario ships as package data)."""
    from nip_core.settings import OWN_DATA_DIR, data_dir_or_default, holds_dataset

    directory = data_dir_or_default(data_dir) / scenario
    try:
        return sorted(
            path.name
            for path in directory.iterdir()
            if path.is_dir()
            and not path.name.startswith(".")
            and path.name != OWN_DATA_DIR
            and holds_dataset(path)
        )
    except OSError:
        return []


def is_path_like_dataset(name: str) -> bool:
    """Whether a dataset name refers to the user's own data rather than a named set.

    Path-like means: contains a path separator, or starts with ``.``, ``~`` or
    ``/``. Such names are not checked against the scenario's dataset list; the
    dataset class resolves them when the experiment is built.
    """
    return "/" in name or "\\" in name or name.startswith((".", "~"))


def _distributions(pm: Any) -> dict[str, str]:
    """Plugin name to the distribution it belongs to (its name when none is known)."""
    return {info.name: info.distribution or info.name for info in pm.plugin_infos()}


@parameters_class(init=False, repr=False, on_setattr=attrs.setters.NO_OP)
class HyperParameters(BaseHyperParameters):
    """The hyper-parameters of an experiment.

    Parameters
    ----------
    scenario : str
        The scenario (task, data, agents): a key of the scenario registry, e.g.
        ``"graph_isomorphism"``.
    trainer : str
        The trainer: a key of the trainer registry, e.g. ``"vanilla_ppo"``.
    dataset : str | None
        A dataset the scenario lists, or a path to your own data (see
        :func:`is_path_like_dataset`); ``None`` for the scenario's default dataset.
    interaction_protocol : str
        The interaction protocol: a key of the protocol registry (``"nip"``,
        ``"debate"``, ...). The scenario must support it.
    seed : int
        The random seed (at least 0). Each agent's seed is derived from it with
        :func:`nip_core.seeding.derive_seed`.
    functionalize_modules : bool
        Functionalise the agents' modules. Slower; needed to freeze parameters with a
        non-constant update schedule in some trainers, and lets batch norm track
        running statistics in eval mode.
    pretrain_agents : bool
        Pre-train the agents' bodies on their own (section ``solo_agent``) before the
        main training.
    test_size : float
        The proportion of the dataset used for testing, in (0, 1), for scenarios
        that split a dataset themselves. The built-in scenarios have fixed splits
        and do not read it (setting it warns).
    test_dataset_split : {"validation", "test"}
        The split tested on. Kept when re-running the tests of a base run.
    d_representation : int
        The width of each agent body's representation (at least 1). This field
        and the four below it, ``functionalize_modules`` and ``pretrain_agents``
        are the tensor world's: a text run does not read them, and warns when
        they are set.
    message_size : int
        Messages sent at once: a dimension of the message space (at least 1).
    include_linear_message_space : bool
        Add a 1-dimensional message space of ``d_linear_message_space`` possible
        messages alongside the scenario's own (useful for debugging).
    d_linear_message_space : int
        The number of possible messages in the linear message space (at least 1).
    agents : AgentsParameters | Mapping[str, AgentParameters | dict] | None
        Agent name (or ``"_default"``) to the scenario's agent parameters. Dicts are
        converted to the scenario's agent-parameter class; ``{"is_random": True,
        ...}`` gives :class:`~nip_core.parameters.RandomAgentParameters`. ``None``:
        the scenario's defaults for every agent.
    **sections : SubParameters | dict
        Every registered section, by name (``rl={"lr": 0.001}``). Sections not given
        get their defaults.

    Raises
    ------
    NipConfigError
        Listing every problem found: unknown keys, wrong types, values out of
        range, unknown scenario / trainer / protocol / dataset names and
        incompatible combinations, each with its dotted path.
    """

    scenario: str
    trainer: str
    dataset: str | None = None
    interaction_protocol: str = "nip"
    seed: int = field(default=6198, validator=v.ge(0))
    functionalize_modules: bool = False
    pretrain_agents: bool = False
    test_size: float = field(default=0.2, validator=[v.gt(0), v.lt(1)])
    test_dataset_split: Literal["validation", "test"] = field(
        default="test", metadata=base_run_preserve("rerun_tests")
    )
    d_representation: int = field(default=16, validator=v.ge(1))
    message_size: int = field(default=1, validator=v.ge(1))
    include_linear_message_space: bool = False
    d_linear_message_space: int = field(default=2, validator=v.ge(1))
    agents: AgentsParameters = field(factory=AgentsParameters)
    _sections: dict[str, SubParameters] = field(factory=dict, alias="_sections")

    def __init__(
        self,
        scenario: str,
        trainer: str,
        dataset: str | None = None,
        *,
        interaction_protocol: str = "nip",
        seed: int = 6198,
        functionalize_modules: bool = False,
        pretrain_agents: bool = False,
        test_size: float = 0.2,
        test_dataset_split: str = "test",
        d_representation: int = 16,
        message_size: int = 1,
        include_linear_message_space: bool = False,
        d_linear_message_space: int = 2,
        agents: AgentsParameters | Mapping[str, Any] | None = None,
        **sections: Any,
    ) -> None:
        core = dict(
            scenario=scenario,
            trainer=trainer,
            dataset=dataset,
            interaction_protocol=interaction_protocol,
            seed=seed,
            functionalize_modules=functionalize_modules,
            pretrain_agents=pretrain_agents,
            test_size=test_size,
            test_dataset_split=test_dataset_split,
            d_representation=d_representation,
            message_size=message_size,
            include_linear_message_space=include_linear_message_space,
            d_linear_message_space=d_linear_message_space,
        )
        self._build(core, agents, sections)

    # -----------------------------------------------------------------------------
    # Construction and validation
    # -----------------------------------------------------------------------------

    def _build(
        self, core: dict[str, Any], agents: Any, sections: dict[str, Any]
    ) -> None:
        from nip_core.plugins import get_plugin_manager

        pm = get_plugin_manager()
        hints = _SOURCE_HINTS.get() or {}
        problems: list[ConfigProblem] = []

        given = dict(sections.pop("_sections", None) or {})
        given.update(sections)
        specs = pm.parameter_sections
        for name in given:
            if name not in specs:
                problems.append(_unknown_section_problem(pm, name, specs, hints))
        built: dict[str, SubParameters] = {}
        for name, spec in specs.items():
            if name in CORE_FIELD_NAMES or hasattr(type(self), name):
                problems.append(
                    ConfigProblem(
                        name,
                        f"the section registered by plugin {spec.plugin!r} has the "
                        "name of a HyperParameters field or method; the plugin must "
                        "rename it",
                    )
                )
                continue
            try:
                built[name] = _build_section(spec.parameters_class, given.get(name))
            except NipConfigError as exc:
                section_problems = _explain_moved_keys(exc.problems, name, specs)
                problems.extend(prefixed(section_problems, name))

        with collecting() as field_problems:
            self.__attrs_init__(**core, agents=AgentsParameters(), _sections=built)
        problems.extend(field_problems)

        scenario = _lookup(pm, "scenario", "scenario", self.scenario, problems, hints)
        trainer = _lookup(pm, "trainer", "trainer", self.trainer, problems, hints)
        protocol = _lookup(
            pm,
            "protocol",
            "interaction_protocol",
            self.interaction_protocol,
            problems,
            hints,
        )

        agent_class = None
        if scenario is not None:
            self._check_dataset(pm, scenario, problems)
            agent_class = _agent_class(scenario, problems)
            if agent_class is not None:
                from nip_core.parameters.converter import structure_agents

                try:
                    # its warning waits for the names to be checked: none for
                    # a misspelt agent the error names anyway
                    object.__setattr__(
                        self,
                        "agents",
                        structure_agents(agents, agent_class, warn_defaults=False),
                    )
                except NipConfigError as exc:
                    problems.extend(prefixed(exc.problems, "agents"))
        elif agents is not None and not isinstance(agents, Mapping):
            problems.append(
                ConfigProblem("agents", "expected a mapping of agent names", agents)
            )

        # Names are checked as given, so a misspelt agent is reported even when its
        # parameters could not be built.
        source = agents if isinstance(agents, Mapping) else self.agents
        keys = dict.keys(source) if isinstance(source, dict) else source.keys()
        given_agents = [name for name in keys if isinstance(name, str)]
        problems.extend(
            self._compatibility_problems(pm, scenario, trainer, protocol, given_agents)
        )
        if not problems and scenario is not None and protocol is not None:
            problems.extend(self._cross_agent_problems(protocol))
            if trainer is not None:
                problems.extend(self._trainer_agent_problems(trainer, protocol))
        if problems:
            raise NipConfigError([_with_source_hint(p, hints) for p in problems])
        if agent_class is not None and isinstance(agents, Mapping):
            from nip_core.parameters.converter import warn_defaults_not_inherited

            warn_defaults_not_inherited(agents, self.agents, agent_class, stacklevel=4)
        object.__setattr__(self, "_ready", True)
        if trainer is not None:
            self._warn_unread_parameters(trainer, "trainer")
            self._warn_sections_of_others(pm, trainer)
        if scenario is not None:
            self._warn_unread_parameters(scenario, "scenario")
            self._warn_tensor_fields_in_text_run(scenario)

    def _warn_tensor_fields_in_text_run(self, scenario: Any) -> None:
        """In a text run, warn about the tensor world's own fields
        (:data:`~nip_core.parameters.usage.TENSOR_WORLD_FIELDS`: networks, message
        spaces, pre-training) set away from their defaults: no text agent reads
        them."""
        from nip_core.parameters.usage import (
            TENSOR_WORLD_AGENT_FIELDS,
            TENSOR_WORLD_FIELDS,
            agent_fields_at_default,
        )

        if getattr(scenario, "data_world", "tensor") != "text":
            return
        fields = attrs.fields_dict(type(self))
        set_fields = [
            f"{name}={getattr(self, name)!r}"
            for name in TENSOR_WORLD_FIELDS
            if name in fields and getattr(self, name) != fields[name].default
        ]
        agent_fields = agent_fields_at_default(self.agents, TENSOR_WORLD_AGENT_FIELDS)
        for key, found in agent_fields.items():
            set_fields.extend(
                f"agents.{key}.{name}={getattr(self.agents[key], name)!r}"
                for name, at_default in found.items()
                if not at_default
            )
        if set_fields:
            warnings.warn(
                f"scenario {scenario.name!r} is a text scenario, and the text world "
                "does not read "
                + ", ".join(set_fields)
                + " (the tensor agents' networks, message spaces, pre-training, "
                "learning rates, update schedules and initialisation): the setting "
                "has no effect in this run",
                ParameterWarning,
                stacklevel=3,
            )

    def _warn_unread_parameters(self, spec: Any, kind: str) -> None:
        """Warn about fields the trainer or scenario declares it does not read
        (``TrainerSpec.unread_parameters``, ``ScenarioSpec.unread_parameters``)
        that are set away from their defaults."""
        set_fields = []
        for path in getattr(spec, "unread_parameters", ()):
            section_name, _, field_name = path.partition(".")
            if not field_name:
                # a field of the hyper-parameters themselves (test_size)
                fields = attrs.fields_dict(type(self))
                if path not in fields:
                    continue
                value = getattr(self, path)
                default = fields[path].default
                if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                    continue
            else:
                section = self.sections.get(section_name)
                if section is None:
                    continue
                value = getattr(section, field_name, None)
                default = getattr(type(section)(), field_name, None)
            if value != default:
                set_fields.append(f"{path}={value!r}")
        if set_fields:
            warnings.warn(
                f"{kind} {spec.name!r} does not read "
                + ", ".join(set_fields)
                + ": the setting has no effect in this run",
                ParameterWarning,
                stacklevel=3,
            )

    def _warn_sections_of_others(self, pm: Any, trainer: Any) -> None:
        """In a text run, warn about settings in sections only other trainers or
        other text backends read (``rl.num_iterations``, whose loop here is
        ``text_rl.num_iterations``; ``pure_text_ei`` under ``pure_text_malt``; the
        ``openai_backend`` of a run whose agents all use ``transformers``): set
        away from their defaults, they have no effect in this run.

        Tensor runs are not warned: their configs, as the original library's,
        carry every trainer's section (``solo_agent`` beside ``rl``) to switch
        trainers with one override.
        """
        from nip_core.parameters.usage import owned_sections, read_sections

        scenario = pm.scenarios.get(self.scenario, None)
        if scenario is None or getattr(scenario, "data_world", "tensor") != "text":
            return

        owners = {
            name
            for name, kind in owned_sections(self, pm).items()
            if kind in ("trainer", "text backend")
        }
        read = read_sections(self, pm)
        set_fields = []
        for name in sorted(owners):
            section = self.sections.get(name)
            if name in read or section is None:
                continue
            try:
                default = type(section)()
            except Exception:  # noqa: BLE001 - a section without defaults
                continue
            for field_ in attrs.fields(type(section)):
                value = getattr(section, field_.name)
                if value != getattr(default, field_.name):
                    set_fields.append(f"{name}.{field_.name}={value!r}")
        if set_fields:
            warnings.warn(
                f"this run (trainer {trainer.name!r}) does not read "
                + ", ".join(set_fields)
                + ": only other trainers or text backends read these sections, so "
                "the setting has no effect",
                ParameterWarning,
                stacklevel=3,
            )

    def _trainer_agent_problems(
        self, trainer: Any, protocol: Any
    ) -> list[ConfigProblem]:
        """Agents the trainer cannot train: a random agent under ``solo_agent``
        (which trains every agent's solo head; there is none to train)."""
        if getattr(trainer, "trainer_type", None) != "solo_agent":
            return []
        return [
            ConfigProblem(
                f"agents.{name}.is_random",
                "a random agent cannot be trained with the solo_agent trainer",
                True,
            )
            for name in protocol.agent_names
            if name in self.agents and getattr(self.agents[name], "is_random", False)
        ]

    def _cross_agent_problems(self, protocol: Any) -> list[ConfigProblem]:
        """Problems involving several agents, from the agent class's
        ``cross_agent_problems(agents, hyper_params)`` (text agents: shared model
        groups that disagree)."""
        names = list(protocol.agent_names)
        if self.zero_knowledge:
            names.extend(n for n in ZERO_KNOWLEDGE_AGENTS if n not in names)
        resolved = {name: self.agents[name] for name in names if name in self.agents}
        checks = {
            type(params).cross_agent_problems
            for params in resolved.values()
            if hasattr(type(params), "cross_agent_problems")
        }
        problems: list[ConfigProblem] = []
        for check in checks:
            problems.extend(check(resolved, self))
        return problems

    def _check_dataset(
        self, pm: Any, scenario: Any, problems: list[ConfigProblem]
    ) -> None:
        if self.dataset is None:
            if scenario.default_dataset is not None:
                object.__setattr__(self, "dataset", scenario.default_dataset)
                return
            problems.append(
                ConfigProblem(
                    "dataset",
                    f"a dataset is required: scenario {scenario.name!r} has no default",
                    None,
                    tuple(scenario.datasets),
                )
            )
            return
        if not isinstance(self.dataset, str):
            return
        alias = dict(getattr(scenario, "dataset_aliases", {}) or {}).get(self.dataset)
        if alias is not None:
            # a saved dict of the original library is read as it is: no advice to
            # rewrite it
            advice = (
                ""
                if _READING_ORIGINAL.get()
                else f" (write dataset={alias} to silence this)"
            )
            warnings.warn(
                ParameterWarning(
                    f"dataset {self.dataset!r} is called {alias!r} by scenario "
                    f"{scenario.name!r}: running {alias!r}{advice}"
                ),
                stacklevel=5,
            )
            object.__setattr__(self, "dataset", alias)
            return
        if not scenario.datasets or self.dataset in scenario.datasets:
            return
        if not getattr(scenario, "own_datasets", True):
            message = f"unknown dataset of scenario {scenario.name!r}"
            suggestion = closest(self.dataset, scenario.datasets)
            if suggestion and not is_path_like_dataset(self.dataset):
                message += f"; did you mean {suggestion!r}?"
            message += (
                " (it reads only its named datasets, not a path or another folder "
                "of the data directory)"
            )
            problems.append(
                ConfigProblem("dataset", message, self.dataset, scenario.datasets)
            )
            return
        if is_path_like_dataset(self.dataset):
            return
        data_dir = _DATA_DIR.get()
        on_disk = datasets_on_disk(scenario.name, data_dir)
        if self.dataset in on_disk:
            return
        known = tuple(dict.fromkeys([*scenario.datasets, *on_disk]))
        message = f"unknown dataset of scenario {scenario.name!r}"
        suggestion = closest(self.dataset, known)
        if suggestion:
            message += f"; did you mean {suggestion!r}?"
        from nip_core.settings import data_dir_or_default

        where = data_dir_or_default(data_dir) / scenario.name
        if scenario.name in pm.dataset_builders:
            make = (
                f"make one with `nip datasets generate {scenario.name} "
                f"{self.dataset}`, or give a path, e.g. './data/my_set'"
            )
        else:  # the scenario has no builder: only a path or a named set will do
            make = "give a path to your own data, e.g. './data/my_set'"
        message += f" (none named so in {where}; {make})"
        problems.append(ConfigProblem("dataset", message, self.dataset, known))

    def _compatibility_problems(
        self,
        pm: Any,
        scenario: Any,
        trainer: Any,
        protocol: Any,
        agent_keys: list[str],
    ) -> list[ConfigProblem]:
        problems: list[ConfigProblem] = []
        if scenario is not None and protocol is not None:
            supported = scenario.supported_protocols
            if supported is not None and protocol.name not in supported:
                problems.append(
                    ConfigProblem(
                        "interaction_protocol",
                        f"scenario {scenario.name!r} does not support this protocol",
                        protocol.name,
                        tuple(supported),
                    )
                )
            elif supported is None and scenario.data_world not in protocol.data_worlds:
                fitting = tuple(
                    name
                    for name, spec in pm.protocols.items()
                    if scenario.data_world in spec.data_worlds
                )
                problems.append(
                    ConfigProblem(
                        "interaction_protocol",
                        f"protocol {protocol.name!r} cannot run in the "
                        f"{scenario.data_world} world of scenario {scenario.name!r}",
                        protocol.name,
                        fitting,
                    )
                )
        if scenario is not None and trainer is not None:
            if trainer.data_world != scenario.data_world:
                fitting = tuple(
                    name
                    for name, spec in pm.trainers.items()
                    if spec.data_world == scenario.data_world
                )
                problems.append(
                    ConfigProblem(
                        "trainer",
                        f"trainer {trainer.name!r} works in the {trainer.data_world} "
                        f"world, scenario {scenario.name!r} in the "
                        f"{scenario.data_world} world",
                        trainer.name,
                        fitting,
                    )
                )
            else:
                parts = pm.agent_parts
                missing = [
                    part
                    for part in trainer.required_parts
                    if f"{scenario.name}/{part}" not in parts
                ]
                if missing:
                    problems.append(
                        ConfigProblem(
                            "trainer",
                            f"trainer {trainer.name!r} needs agent parts that scenario "
                            f"{scenario.name!r} does not register: "
                            + ", ".join(missing),
                            trainer.name,
                        )
                    )
        if protocol is not None:
            problems.extend(self._agent_name_problems(protocol, agent_keys, scenario))
        if scenario is not None:
            problems.extend(self._rollout_analyser_problems(scenario))
        return problems

    def _rollout_analyser_problems(self, scenario: Any) -> list[ConfigProblem]:
        """Rollout analysers (``<section>.rollout_analysers``) of another scenario
        (unknown names are their section's own problem)."""
        problems: list[ConfigProblem] = []
        for name, section in self.sections.items():
            names = getattr(section, "rollout_analysers", None)
            if not names:
                continue
            from nip_core.text.analysis import rollout_analyser_problems

            problems.extend(
                rollout_analyser_problems(
                    names,
                    scenario.name,
                    path=f"{name}.rollout_analysers",
                    unknown=False,
                )
            )
        return problems

    def _agent_name_problems(
        self, protocol: Any, agent_keys: list[str], scenario_spec: Any = None
    ) -> list[ConfigProblem]:
        problems: list[ConfigProblem] = []
        zero_knowledge = self.zero_knowledge
        names = list(protocol.agent_names)
        if zero_knowledge:
            if scenario_spec is not None and scenario_spec.data_world == "text":
                problems.append(
                    ConfigProblem(
                        "protocol_common.zero_knowledge",
                        "zero-knowledge protocols need the tensor world: their "
                        "simulator is rewarded on the agents' logits, which text "
                        f"agents do not have (scenario {self.scenario!r} is a text "
                        "scenario)",
                        True,
                    )
                )
            if not protocol.supports_zero_knowledge:
                problems.append(
                    ConfigProblem(
                        "protocol_common.zero_knowledge",
                        f"protocol {protocol.name!r} has no zero-knowledge version",
                        True,
                    )
                )
            names.extend(n for n in ZERO_KNOWLEDGE_AGENTS if n not in names)
        common = self.__dict__.get("_sections", {}).get("protocol_common")
        if getattr(common, "randomize_prover_stance", False) is True:
            # The same rule as the protocol handler's, checked before anything is
            # built: a stance is drawn for the one prover of the protocol.
            provers = [n for n in protocol.agent_names if "prover" in n]
            if len(provers) != 1:
                problems.append(
                    ConfigProblem(
                        "protocol_common.randomize_prover_stance",
                        "randomized prover stances need a protocol with exactly one "
                        f"prover; {protocol.name!r} has {len(provers)}",
                        True,
                    )
                )
        for name in agent_keys:
            if name != DEFAULT_AGENT_KEY and name not in names:
                message = f"not an agent of protocol {protocol.name!r}"
                suggestion = closest(name, names)
                if suggestion:
                    message += f"; did you mean {suggestion!r}?"
                problems.append(
                    ConfigProblem(f"agents.{name}", message, choices=tuple(names))
                )
        if DEFAULT_AGENT_KEY not in agent_keys:
            missing = [n for n in names if n not in agent_keys]
            if missing:
                problems.append(
                    ConfigProblem(
                        "agents",
                        "no parameters for agent(s) "
                        + ", ".join(missing)
                        + " and no '_default' entry",
                        choices=tuple(names),
                    )
                )
        return problems

    # -----------------------------------------------------------------------------
    # Access
    # -----------------------------------------------------------------------------

    @property
    def sections(self) -> Mapping[str, SubParameters]:
        """Every section, by name (read-only view)."""
        return types.MappingProxyType(self._sections)

    @property
    def zero_knowledge(self) -> bool:
        """Whether ``protocol_common.zero_knowledge`` is on (false without it)."""
        common = self.__dict__.get("_sections", {}).get("protocol_common")
        return getattr(common, "zero_knowledge", False) is True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        sections = self.__dict__.get("_sections")
        if sections is None:
            raise AttributeError(name)
        if name in sections:
            return sections[name]
        message = f"HyperParameters has no field or section {name!r}"
        suggestion = closest(name, [*sections, *CORE_FIELD_NAMES])
        if suggestion:
            message += f"; did you mean {suggestion!r}?"
        message += f" Sections: {', '.join(sorted(sections)) or 'none'}."
        raise AttributeError(message)

    def __setattr__(self, name: str, value: Any) -> None:
        if not self.__dict__.get("_ready"):
            object.__setattr__(self, name, value)
            return
        sections = self.__dict__["_sections"]
        if name in sections:
            try:
                sections[name] = _build_section(type(sections[name]), value)
            except NipConfigError as exc:
                raise NipConfigError(prefixed(exc.problems, name)) from None
            return
        fields = attrs.fields_dict(type(self))
        if name == "agents":
            from nip_core.parameters.converter import structure_agents
            from nip_core.plugins import get_plugin_manager

            spec = get_plugin_manager().scenarios[self.scenario]
            problems: list[ConfigProblem] = []
            agent_class = _agent_class(spec, problems)
            if agent_class is None:
                raise NipConfigError(problems)
            try:
                value = structure_agents(value, agent_class)
            except NipConfigError as exc:
                raise NipConfigError(prefixed(exc.problems, "agents")) from None
        elif name in fields and fields[name].validator is not None:
            fields[name].validator(self, fields[name], value)
        elif name not in fields:
            raise AttributeError(
                f"HyperParameters has no field or section {name!r}; sections: "
                + ", ".join(sorted(sections))
            )
        object.__setattr__(self, name, value)

    def _child(self, name: str) -> Any:
        if name in CORE_FIELD_NAMES:
            return getattr(self, name)
        if name in self._sections:
            return self._sections[name]
        raise KeyError(name)

    def __repr__(self) -> str:
        parts = [f"{name}={getattr(self, name)!r}" for name in CORE_FIELD_NAMES]
        parts.extend(f"{name}={section!r}" for name, section in self._sections.items())
        return f"HyperParameters({', '.join(parts)})"

    def validate(self) -> None:
        """Validate again (after assigning core fields), raising ``NipConfigError``."""
        data = self.to_dict(include_meta=False)
        type(self).from_dict(data)

    # -----------------------------------------------------------------------------
    # Dicts
    # -----------------------------------------------------------------------------

    def to_dict(self, include_meta: bool = True) -> dict[str, Any]:
        """Convert to a plain, JSON-serialisable nested dict.

        Core fields first, then ``agents`` (each agent with ``is_random``), then every
        section by name, then ``_meta`` (schema version, and the versions of the core
        and of every plugin that provided a section, the scenario, the trainer or the
        protocol).

        Parameters
        ----------
        include_meta : bool
            Add the ``_meta`` record (needed to migrate the dict later).
        """
        from nip_core.parameters.converter import unstructure

        out: dict[str, Any] = {
            name: unstructure(getattr(self, name)) for name in CORE_FIELD_NAMES
        }
        for name in sorted(self._sections):
            out[name] = unstructure(self._sections[name])
        if include_meta:
            out[META_KEY] = self.meta()
        return out

    def meta(self) -> dict[str, Any]:
        """The ``_meta`` record :meth:`to_dict` writes."""
        from nip_core.plugins import get_plugin_manager

        pm = get_plugin_manager()
        used: dict[str, Any] = {}
        for key, registry, name in (
            ("scenario", pm.scenarios, self.scenario),
            ("trainer", pm.trainers, self.trainer),
            ("interaction_protocol", pm.protocols, self.interaction_protocol),
        ):
            if name in registry:
                used[key] = registry[name]
        sections = pm.parameter_sections
        for name in self._sections:
            if name in sections:
                used[f"sections.{name}"] = sections[name]
        versions = {CORE_COMPONENT: nip_core.__version__}
        sources: dict[str, str] = {}
        distributions = _distributions(pm)
        for key, record in used.items():
            if record.plugin is None:
                continue
            distribution = distributions.get(record.plugin, record.plugin)
            sources[key] = distribution
            if record.plugin_version and distribution != CORE_COMPONENT:
                versions[distribution] = record.plugin_version
        return {
            "schema_version": SCHEMA_VERSION,
            "versions": dict(sorted(versions.items())),
            "sources": sources,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HyperParameters:
        """Build from a nested dict, migrating and validating it.

        ``_meta`` is checked and removed; dicts saved by older versions (or by the
        original ``nip`` library) are migrated, with a
        :class:`~nip_core.parameters.ParameterMigrationWarning` listing the changes.
        The dict given is not modified.

        Raises
        ------
        NipConfigError
            Listing every problem found.
        """
        if not isinstance(data, Mapping):
            raise NipConfigError(
                ConfigProblem("", "expected a mapping of parameters", data)
            )
        original = META_KEY not in data and is_legacy_dict(data)
        saved = prepare_saved_dict(data)
        params = saved.data
        missing = [k for k in ("scenario", "trainer") if k not in params]
        if missing:
            raise NipConfigError(
                [ConfigProblem(k, "a value is required") for k in missing]
            )
        bad_keys = [k for k in params if not isinstance(k, str)]
        if bad_keys:
            raise NipConfigError(
                [ConfigProblem(str(k), "keys must be strings", k) for k in bad_keys]
            )
        token = _SOURCE_HINTS.set(saved.sources)
        original_token = _READING_ORIGINAL.set(original)
        try:
            return cls(**params)
        finally:
            _READING_ORIGINAL.reset(original_token)
            _SOURCE_HINTS.reset(token)

    @classmethod
    def construct_test_params(
        cls,
        scenario: str,
        trainer: str,
        dataset: str | None = None,
        **overrides: Any,
    ) -> HyperParameters:
        """Small parameters for fast tests of a scenario and trainer.

        Every section comes from its class's ``construct_test_params()`` (tiny loops
        for ``rl`` and ``solo_agent``), and ``_default`` agent parameters from the
        scenario's agent class's ``construct_test_params()`` (tiny networks).
        ``overrides`` replace core fields, ``agents`` or whole sections.
        """
        from nip_core.plugins import get_plugin_manager
        from nip_core.records import resolve_ref

        pm = get_plugin_manager()
        kwargs: dict[str, Any] = {
            name: spec.parameters_class.construct_test_params()
            for name, spec in pm.parameter_sections.items()
        }
        if scenario in pm.scenarios:
            agent_class = resolve_ref(pm.scenarios[scenario].agent_parameters_class)
            kwargs["agents"] = AgentsParameters(
                {DEFAULT_AGENT_KEY: agent_class.construct_test_params()}
            )
        kwargs.update(overrides)
        return cls(scenario, trainer, dataset, **kwargs)


CORE_FIELD_NAMES: tuple[str, ...] = tuple(
    f.name for f in attrs.fields(HyperParameters) if not f.name.startswith("_")
)
"""The fixed fields of :class:`HyperParameters`, ``agents`` included."""


def _build_section(cls: type[SubParameters], value: Any) -> SubParameters:
    from nip_core.parameters.converter import structure

    if value is None:
        try:
            return cls()
        except NipConfigError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise NipConfigError(
                [
                    ConfigProblem(
                        "",
                        f"{cls.__name__} cannot be built with its defaults: "
                        + "; ".join(p.format() for p in problems_from_exception(exc)),
                    )
                ]
            ) from exc
    if type(value) is cls:
        return value
    if isinstance(value, Mapping):
        return structure(value, cls)
    raise NipConfigError(
        [
            ConfigProblem(
                "", f"expected {cls.__name__} or a mapping of its fields", value
            )
        ]
    )


def _lookup(
    pm: Any,
    kind: str,
    path: str,
    name: Any,
    problems: list[ConfigProblem],
    hints: Mapping[str, str],
) -> Any:
    if not isinstance(name, str):
        return None
    registry = pm.registry(kind)
    if name in registry:
        return registry[name]
    conflict = registry.conflict_error(name)
    if conflict is not None:
        problems.append(ConfigProblem(path, str(conflict), name))
        return None
    known = list(registry)
    message = f"unknown {kind.replace('_', ' ')}"
    provider = _missing_provider(pm, hints.get(path))
    install = _missing_key_hint(pm, kind, name)
    suggestion = closest(name, known)
    # a name a missing or disabled plugin provides is no misspelling
    if suggestion and not (provider or install):
        message += f"; did you mean {suggestion!r}?"
    if provider:
        message += f"; the config names {provider[0]!r} as its source: {provider[1]}"
    elif install:
        message += f"; {install}"
    else:
        message += _unloaded_plugins_note(pm)
    problems.append(ConfigProblem(path, message, name, tuple(known)))
    return None


def _with_source_hint(
    problem: ConfigProblem, hints: Mapping[str, str]
) -> ConfigProblem:
    """Add "install <plugin>" to a problem at a path ``_meta.sources`` names (a
    config may record which plugin provides a value, e.g. ``text_backend.name``)."""
    provider = _missing_provider(None, hints.get(problem.path))
    if not provider or provider[0] in problem.message:
        return problem
    return attrs.evolve(
        problem,
        message=f"{problem.message}; {provider[0]!r} provides it: {provider[1]}",
    )


def _missing_provider(pm: Any, provider: str | None) -> tuple[str, str] | None:
    """``(plugin, what to do)`` for a plugin a config's ``_meta.sources`` names as
    a value's provider, when it is not installed and loaded here; ``None`` when it
    is (then the value is wrong for another reason, such as a typo in an
    override, and the plugin is no help)."""
    if not provider:
        return None
    from nip_core.plugin_catalogue import plugin_state

    try:
        state = plugin_state(provider, pm)
    except Exception:  # noqa: BLE001 - a hint must never hide the real problem
        return provider, f"install that plugin (pip install {provider})"
    if state.endswith("is installed and loaded"):
        return None
    return provider, state


def _missing_key_hint(pm: Any, kind: str, name: str) -> str | None:
    from nip_core.plugin_catalogue import missing_key_hint

    try:
        return missing_key_hint(kind, name, pm)
    except Exception:  # noqa: BLE001 - a hint must never hide the real problem
        return None


def _unloaded_plugins_note(pm: Any) -> str:
    """What may be missing for a name nothing loaded provides: plugins that failed
    to load, and plugins switched off (``NIP_DISABLED_PLUGINS``, or left out of
    ``NIP_PLUGINS``), either of which may provide it."""
    try:
        infos = list(pm.plugin_infos())
    except Exception:  # noqa: BLE001 - a note must never hide the real problem
        return ""
    broken = [info.name for info in infos if info.status == "broken"]
    by_reason: dict[str, list[str]] = {}
    for info in infos:
        if info.status == "disabled":
            by_reason.setdefault(info.error or "", []).append(info.name)
    disabled = [
        ", ".join(names) + (f" ({reason})" if reason else "")
        for reason, names in by_reason.items()
    ]
    parts = []
    if broken:
        parts.append(f"plugins that failed to load: {', '.join(broken)}")
    if disabled:
        parts.append(f"disabled plugins, which may provide it: {'; '.join(disabled)}")
    if not parts:
        return ""
    return f" ({'; '.join(parts)}; see `nip plugins`)"


def _explain_moved_keys(
    problems: list[ConfigProblem], section: str, specs: Mapping[str, Any]
) -> list[ConfigProblem]:
    """A section's unknown-key problems for keys it declares moved
    (``SubParameters.moved_keys``) say where the key went: the note, and every
    installed section with a field of that name; for keys it declares retired
    (``SubParameters.retired_keys``), what to write instead."""
    moved = getattr(specs[section].parameters_class, "moved_keys", {})
    retired = getattr(specs[section].parameters_class, "retired_keys", {})
    explained = []
    for problem in problems:
        key = problem.path
        if key in retired and problem.message.startswith("unknown key"):
            problem = attrs.evolve(problem, message=retired[key], choices=())
        elif key in moved and problem.message.startswith("unknown key"):
            message = f"no longer a key of {section}: {moved[key]}"
            homes = [
                f"{other}.{key}"
                for other, spec in specs.items()
                if other != section
                and attrs.has(spec.parameters_class)
                and key in attrs.fields_dict(spec.parameters_class)
            ]
            if homes:
                message += f"; set {' or '.join(homes)} instead"
            else:
                message += "; no installed plugin's section has it (see `nip plugins`)"
            problem = attrs.evolve(problem, message=message, choices=())
        explained.append(problem)
    return explained


def _unknown_section_problem(
    pm: Any, name: str, specs: Mapping[str, Any], hints: Mapping[str, str]
) -> ConfigProblem:
    conflict = getattr(specs, "conflict_error", lambda _: None)(name)
    if conflict is not None:
        return ConfigProblem(name, str(conflict))
    suggestion = closest(name, [*specs, *CORE_FIELD_NAMES])
    message = "unknown section or parameter"
    provider = _missing_provider(pm, hints.get(f"sections.{name}"))
    install = _missing_key_hint(pm, "parameter_section", name)
    # a section a missing or disabled plugin provides is no misspelling
    if suggestion and not (provider or install):
        message += f"; did you mean {suggestion!r}?"
    if install and not provider:
        return ConfigProblem(name, f"{message}; {install}", choices=tuple(specs))
    if provider:
        message += (
            f"; the config names {provider[0]!r} as the section's source: {provider[1]}"
        )
        return ConfigProblem(name, message)
    message += _unloaded_plugins_note(pm)
    return ConfigProblem(name, message, choices=tuple(specs))


def _agent_class(scenario: Any, problems: list[ConfigProblem]) -> type | None:
    from nip_core.records import resolve_ref

    ref = scenario.agent_parameters_class
    try:
        agent_class = resolve_ref(ref)
    except Exception as exc:  # noqa: BLE001
        problems.append(
            ConfigProblem(
                "agents",
                f"the agent parameters class {ref!r} of scenario {scenario.name!r} "
                f"could not be imported: {type(exc).__name__}: {exc}",
            )
        )
        return None
    if not (isinstance(agent_class, type) and issubclass(agent_class, AgentParameters)):
        problems.append(
            ConfigProblem(
                "agents",
                f"scenario {scenario.name!r} names {ref!r} as its agent parameters "
                "class, which is not an AgentParameters subclass",
            )
        )
        return None
    return agent_class
