"""The plugin manager: built-in plugins, installed plugins, and the registries.

Only this module calls hooks. The rest of the code asks the process-wide manager for
registries::

    from nip_core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    spec = pm.scenarios["graph_isomorphism"]  # a stamped ScenarioSpec
    pm.registry("trainer")                    # the same, by record kind

Loading
-------
The manager registers the core's built-in plugins (:data:`nip_core.builtin.
BUILTIN_PLUGINS`) first, then every entry point of the group ``nip_core.plugins``,
one at a time, in the order of their names. A plugin that fails to import, whose hook
implementations do not match the specifications (an argument the hook does not
have, a misspelt hook name) or whose hook raises or returns something other than a
list of the right records is marked *broken* and skipped: a :class:`PluginWarning`
names the plugin, its distribution and version, the core version and the error, and
every other plugin keeps working. ``nip plugins`` lists broken plugins with their
error.

We warn (:mod:`warnings`) rather than log so that a broken plugin is visible on the
console by default, is shown once per plugin, and can be asserted in tests
(``pytest.warns(PluginWarning)``) or turned into an error (``-W error::...``).

Environment switches
--------------------
``NIP_STRICT_PLUGINS=1``
    A broken plugin raises :class:`~nip_core.errors.PluginError` instead of a warning.
``NIP_DISABLE_PLUGIN_AUTOLOAD=1``
    Load the built-in plugins only.
``NIP_PLUGINS=a,b``
    Load only the installed plugins with these entry-point names (built-ins are
    always loaded).
``NIP_DISABLED_PLUGINS=a,b``
    Do not load the installed plugins with these entry-point names.
``NIP_TRACE_PLUGINS=1``
    Print every plugin load and hook call (with its result and duration) to stderr.

The switches are read when a manager is created.

Registries
----------
Each registry is built lazily, on first use, from the records the plugins' hook
implementations return; every record is stamped with the plugin's name and version
(``record.plugin``, ``record.plugin_version``). Each hook implementation is called
once per manager; registering or unregistering a plugin rebuilds the registries from
the stored results.
"""

from __future__ import annotations

import importlib
import importlib.metadata as importlib_metadata
import os
import sys
import threading
import time
import typing
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

import attrs
import pluggy

import nip_core
from nip_core import hookspecs
from nip_core.builtin import BUILTIN_PLUGINS
from nip_core.errors import NipWarning, PluginError, UnknownKeyError
from nip_core.records import (
    ALL_RECORD_TYPES,
    AgentPartSpec,
    ConfigDirSpec,
    Contribution,
    DatasetBuilderSpec,
    DataWorld,
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
from nip_core.registry import Registry, closest_key

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "HOOK_NAMES",
    "NipPluginManager",
    "PluginInfo",
    "PluginWarning",
    "builtin_plugin_name",
    "get_plugin_manager",
    "reset_plugin_manager",
    "set_plugin_manager",
]

ENTRY_POINT_GROUP = "nip_core.plugins"
"""The entry-point group installed plugins declare themselves in."""

BUILTIN_DISTRIBUTION = "nip-core"
"""The distribution the built-in plugins belong to."""

HOOK_NAMES: Mapping[str, str] = {
    "scenario": "register_scenarios",
    "protocol": "register_protocols",
    "trainer": "register_trainers",
    "agent_part": "register_agent_parts",
    "parameter_section": "register_parameter_sections",
    "config_dir": "register_config_dirs",
    "logger": "register_loggers",
    "dataset_builder": "register_dataset_builders",
    "migration": "register_parameter_migrations",
    "pretrained_model": "register_pretrained_models",
    "episode_renderer": "register_episode_renderers",
    "text_backend": "register_text_backends",
    "report_panel": "register_report_panels",
    "rollout_analyser": "register_rollout_analysers",
}
"""The registration hook of each record kind (keys of ``ALL_RECORD_TYPES``)."""

ENV_STRICT = "NIP_STRICT_PLUGINS"
ENV_DISABLE_AUTOLOAD = "NIP_DISABLE_PLUGIN_AUTOLOAD"
ENV_ALLOW = "NIP_PLUGINS"
ENV_BLOCK = "NIP_DISABLED_PLUGINS"
ENV_TRACE = "NIP_TRACE_PLUGINS"

PluginStatus = Literal["ok", "conflict", "broken", "disabled"]


class PluginWarning(NipWarning):
    """A plugin was skipped because it is broken (or a switch names no plugin)."""


def builtin_plugin_name(module_name: str) -> str:
    """The plugin name of a built-in module: ``"nip_core.builtin.protocols"`` ->
    ``"nip-core.protocols"``."""
    return f"{BUILTIN_DISTRIBUTION}.{module_name.rsplit('.', 1)[-1]}"


@attrs.frozen(kw_only=True)
class PluginInfo:
    """What ``nip plugins`` shows about one plugin.

    Parameters
    ----------
    name : str
        The plugin's name: the entry-point name for installed plugins,
        ``"nip-core.<module>"`` for built-ins, the given name for plugins registered
        directly.
    distribution : str | None
        The distribution (``pip`` package) that provides it, if known.
    version : str | None
        That distribution's version, if known.
    status : {"ok", "conflict", "broken", "disabled"}
        ``"conflict"``: loaded, but another plugin registers one of its keys (see
        ``conflicts``; those keys cannot be used, the others work); ``"broken"``:
        failed to load or its hooks failed; ``"disabled"``: skipped by
        ``NIP_PLUGINS`` / ``NIP_DISABLED_PLUGINS``.
    error : str | None
        Why it is broken or disabled.
    contributions : Mapping[str, tuple[str, ...]]
        Record kind to the keys the plugin registers (kinds with none are left out).
    builtin : bool
        Whether it is one of the core's built-in plugins.
    entry_point : str | None
        The entry point's value (``"package.module"``) for installed plugins.
    conflicts : Mapping[str, Mapping[str, tuple[str, ...]]]
        Record kind to the keys this plugin registers that other plugins register
        too, each with every plugin that claims it.
    """

    name: str
    distribution: str | None = None
    version: str | None = None
    status: PluginStatus = "ok"
    error: str | None = None
    contributions: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    builtin: bool = False
    entry_point: str | None = None
    conflicts: Mapping[str, Mapping[str, tuple[str, ...]]] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``nip plugins --json``)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "builtin": self.builtin,
            "entry_point": self.entry_point,
            "contributions": {k: list(v) for k, v in self.contributions.items()},
            "conflicts": [
                {"kind": kind, "key": key, "plugins": list(plugins)}
                for kind, keys in self.conflicts.items()
                for key, plugins in keys.items()
            ],
        }


@attrs.define
class _Entry:
    """The manager's bookkeeping for one plugin."""

    name: str
    obj: Any = None
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    entry_point: str | None = None
    status: PluginStatus = "ok"
    error: str | None = None
    # Stamped records per kind, filled the first time the kind's hook is called.
    results: dict[str, tuple[Contribution, ...]] = attrs.field(factory=dict)

    def describe(self) -> str:
        if self.distribution:
            where = self.distribution + (f" {self.version}" if self.version else "")
            return f"plugin {self.name!r} ({where})"
        return f"plugin {self.name!r}"


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    return True


def _env_list(environ: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _format_exception(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, PluginError) and text:
        # Our own messages already say what is wrong; the class name adds nothing.
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class NipPluginManager:
    """The plugins of one process and the registries built from their hooks.

    Parameters
    ----------
    builtins : bool | Iterable[str]
        Register the built-in plugins (``True``), none (``False``), or these
        built-in module names.
    autoload : bool | None
        Load installed plugins from entry points; default: unless
        ``NIP_DISABLE_PLUGIN_AUTOLOAD`` is set.
    strict : bool | None
        Raise :class:`~nip_core.errors.PluginError` for a broken plugin instead of
        warning; default: ``NIP_STRICT_PLUGINS``.
    allow : Iterable[str] | None
        Entry-point names to load (all when ``None``); default: ``NIP_PLUGINS``.
    block : Iterable[str] | None
        Entry-point names not to load; default: ``NIP_DISABLED_PLUGINS``.
    trace : bool | TextIO | None
        Print plugin loads and hook calls to stderr (``True``) or to a stream;
        default: ``NIP_TRACE_PLUGINS``.
    environ : Mapping[str, str] | None
        Where to read the switches (``os.environ`` by default).
    """

    def __init__(
        self,
        *,
        builtins: bool | Iterable[str] = True,
        autoload: bool | None = None,
        strict: bool | None = None,
        allow: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        trace: bool | TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        env = os.environ if environ is None else environ
        self.strict: bool = _env_flag(env, ENV_STRICT) if strict is None else strict
        if autoload is None:
            autoload = not _env_flag(env, ENV_DISABLE_AUTOLOAD)
        self.allow: tuple[str, ...] | None = (
            _env_list(env, ENV_ALLOW) if allow is None else tuple(allow)
        )
        self.block: tuple[str, ...] = (
            (_env_list(env, ENV_BLOCK) or ()) if block is None else tuple(block)
        )
        if trace is None:
            trace = _env_flag(env, ENV_TRACE)
        self._trace_stream: TextIO | None = (
            (sys.stderr if trace is True else trace) if trace else None
        )

        self._pm = pluggy.PluginManager(nip_core.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, _Entry] = {}
        self._registries: dict[str, Registry[Any]] = {}
        self._lock = threading.RLock()

        if builtins is True:
            builtins = BUILTIN_PLUGINS
        elif builtins is False:
            builtins = ()
        for module_name in builtins:
            self._load_builtin(module_name)
        self.autoloads: bool = bool(autoload)
        """Whether this manager loaded the installed plugins' entry points."""
        if autoload:
            self.load_entry_points()

    # -----------------------------------------------------------------------------
    # Loading and registering
    # -----------------------------------------------------------------------------

    def _load_builtin(self, module_name: str) -> None:
        entry = _Entry(
            name=builtin_plugin_name(module_name),
            distribution=BUILTIN_DISTRIBUTION,
            version=nip_core.__version__,
            builtin=True,
            entry_point=module_name,
        )
        self._entries[entry.name] = entry
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            self._fail(entry, exc, "failed to import")
            return
        self._attach(entry, module)

    def load_entry_points(self) -> None:
        """Load every installed plugin (entry-point group ``nip_core.plugins``).

        Plugins are loaded one at a time in the order of their names, honouring
        the allow- and block-lists. Already loaded names are skipped.
        """
        with self._lock:
            found = sorted(
                importlib_metadata.entry_points(group=ENTRY_POINT_GROUP),
                key=lambda ep: ep.name,
            )
            seen: set[str] = set()
            for ep in found:
                seen.add(ep.name)
                dist = getattr(ep, "dist", None)
                entry = _Entry(
                    name=ep.name,
                    distribution=dist.name if dist is not None else None,
                    version=dist.version if dist is not None else None,
                    entry_point=ep.value,
                )
                existing = self._entries.get(ep.name)
                if existing is not None:
                    if (existing.distribution, existing.entry_point) != (
                        entry.distribution,
                        entry.entry_point,
                    ):
                        self._fail(
                            entry,
                            PluginError(
                                f"the plugin name {ep.name!r} is already used by "
                                f"{existing.describe()}"
                            ),
                            "could not be registered",
                            record=False,
                        )
                    continue
                reason = self._disabled_reason(ep.name)
                if reason is not None:
                    entry.status = "disabled"
                    entry.error = reason
                    self._entries[entry.name] = entry
                    self._trace(f"{entry.describe()} disabled: {reason}")
                    continue
                self._entries[entry.name] = entry
                try:
                    obj = ep.load()
                except Exception as exc:
                    self._fail(entry, exc, "failed to import")
                    continue
                self._attach(entry, obj)
            if self.allow is not None:
                missing = [
                    name
                    for name in self.allow
                    if name not in seen and name not in self._entries
                ]
                if missing:
                    warnings.warn(
                        f"{ENV_ALLOW} names plugins that are not installed: "
                        f"{', '.join(missing)} (installed: "
                        f"{', '.join(sorted(seen)) or 'none'})",
                        PluginWarning,
                        stacklevel=2,
                    )

    def _disabled_reason(self, name: str) -> str | None:
        if self.allow is not None and name not in self.allow:
            return f"not listed in {ENV_ALLOW}"
        if name in self.block:
            return f"listed in {ENV_BLOCK}"
        return None

    def _attach(self, entry: _Entry, obj: Any) -> bool:
        """Register ``obj`` with pluggy under ``entry.name`` and check its hooks."""
        try:
            self._register_validated(obj, entry.name)
        except PluginError as exc:
            self._fail(entry, exc, "has invalid hook implementations")
            return False
        entry.obj = obj
        self._registries.clear()
        self._trace(f"loaded {entry.describe()}")
        return True

    def _register_validated(self, obj: Any, name: str) -> None:
        """Register with pluggy; undo and raise PluginError on any mismatch."""
        try:
            self._pm.register(obj, name=name)
        except pluggy.PluginValidationError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            if "can not be found in the hookspec" in str(exc):
                lines.append("nip's registration hooks take no arguments")
            raise PluginError("; ".join(lines)) from exc
        except ValueError as exc:
            raise PluginError(str(exc).splitlines()[0]) from exc
        problems = self._unknown_hooks(obj)
        if problems:
            self._pm.unregister(obj)
            raise PluginError("; ".join(problems))
        self._warn_unmarked(obj, name)

    def _unknown_hooks(self, obj: Any) -> list[str]:
        # pluggy's check_pending() looks at every plugin; this looks at one, so a
        # misspelt hook breaks only the plugin that misspelt it.
        problems = []
        for caller in self._pm.get_hookcallers(obj) or ():
            if caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is obj and not impl.optionalhook:
                    message = f"unknown hook {caller.name!r}"
                    suggestion = closest_key(caller.name, HOOK_NAMES.values())
                    if suggestion:
                        message += f" (did you mean {suggestion!r}?)"
                    problems.append(message)
        return problems

    def _warn_unmarked(self, obj: Any, name: str) -> None:
        implemented = {c.name for c in self._pm.get_hookcallers(obj) or ()}
        for hook_name in HOOK_NAMES.values():
            if hook_name in implemented:
                continue
            candidate = getattr(obj, hook_name, None)
            if callable(candidate):
                warnings.warn(
                    f"plugin {name!r} defines {hook_name}() without the "
                    "@nip_core.hookimpl marker, so it is never called",
                    PluginWarning,
                    stacklevel=4,
                )

    def register(
        self,
        obj: Any,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> str:
        """Register a plugin object directly (a module, class or instance).

        Parameters
        ----------
        obj : Any
            Anything with :data:`nip_core.hookimpl`-marked functions or methods.
        name : str | None
            The plugin's name; by default the module's name or an id.
        distribution, version : str | None
            What to show in ``nip plugins`` and to stamp records with.

        Returns
        -------
        str
            The name it was registered under.

        Raises
        ------
        PluginError
            When a hook implementation does not match its specification or the name
            is taken. Nothing is registered then. (Errors found later, when a hook
            is called, follow :attr:`strict`.)
        """
        with self._lock:
            plugin_name = name or self._pm.get_canonical_name(obj)
            existing = self._entries.get(plugin_name)
            if existing is not None and existing.status != "ok":
                # A broken or disabled plugin's name may be taken over, e.g. by a
                # fixed version registered in a test.
                del self._entries[plugin_name]
            elif existing is not None:
                raise PluginError(
                    f"a plugin named {plugin_name!r} is already registered "
                    f"({self._entries[plugin_name].describe()}); pass another name"
                )
            self._register_validated(obj, plugin_name)
            self._entries[plugin_name] = _Entry(
                name=plugin_name,
                obj=obj,
                distribution=distribution,
                version=version,
            )
            self._registries.clear()
            self._trace(f"registered {self._entries[plugin_name].describe()}")
            return plugin_name

    def unregister(self, name: str) -> Any:
        """Remove the plugin called ``name``; return its object (``None`` if it was
        not loaded). Registries are rebuilt on next use."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                raise UnknownKeyError(
                    _unknown_plugin_message(name, self._entries),
                    key=name,
                    known=list(self._entries),
                )
            if entry.obj is not None and self._pm.is_registered(entry.obj):
                self._pm.unregister(entry.obj)
            del self._entries[name]
            self._registries.clear()
            self._trace(f"unregistered {entry.describe()}")
            return entry.obj

    def _fail(
        self,
        entry: _Entry,
        exc: BaseException,
        what: str,
        *,
        record: bool = True,
    ) -> None:
        """Mark ``entry`` broken; warn, or raise in strict mode."""
        error = _format_exception(exc)
        if record:
            entry.status = "broken"
            entry.error = error
            entry.results.clear()
            if entry.obj is not None and self._pm.is_registered(entry.obj):
                self._pm.unregister(entry.obj)
            entry.obj = None
            self._entries[entry.name] = entry
            self._registries.clear()
        message = (
            f"{entry.describe()} {what} (nip-core {nip_core.__version__}): {error}"
        )
        self._trace(message)
        if self.strict:
            raise PluginError(message) from exc
        hint = ""
        if not entry.builtin:
            hint = f" It is skipped; set {ENV_BLOCK}={entry.name} to silence this."
        warnings.warn(
            f"{message}.{hint} Set {ENV_STRICT}=1 to make this an error.",
            PluginWarning,
            stacklevel=3,
        )

    # -----------------------------------------------------------------------------
    # Calling hooks
    # -----------------------------------------------------------------------------

    def _results(self, entry: _Entry, kind: str) -> tuple[Contribution, ...]:
        """The stamped records ``entry`` contributes to ``kind`` (hook called once)."""
        if entry.status != "ok" or entry.obj is None:
            return ()
        cached = entry.results.get(kind)
        if cached is not None:
            return cached
        hook_name = HOOK_NAMES[kind]
        record_type = ALL_RECORD_TYPES[kind]
        caller = getattr(self._pm.hook, hook_name)
        stamped: list[Contribution] = []
        # Each implementation is called on its own so a failure is pinned on its
        # plugin and every record can be stamped with the plugin that returned it.
        for impl in caller.get_hookimpls():
            if impl.plugin is not entry.obj:
                continue
            start = time.perf_counter()
            try:
                value = impl.function()
                records = _check_result(value, hook_name, record_type)
            except Exception as exc:
                self._fail(entry, exc, f"failed in {hook_name}()")
                return ()
            elapsed = (time.perf_counter() - start) * 1000
            self._trace(
                f"{hook_name}() [{entry.name}] -> "
                f"{[r.key for r in records]} ({elapsed:.1f} ms)"
            )
            stamped.extend(
                attrs.evolve(r, plugin=entry.name, plugin_version=entry.version)
                for r in records
            )
        result = tuple(stamped)
        entry.results[kind] = result
        return result

    def _trace(self, text: str) -> None:
        if self._trace_stream is not None:
            print(f"[nip plugins] {text}", file=self._trace_stream, flush=True)

    # -----------------------------------------------------------------------------
    # Registries
    # -----------------------------------------------------------------------------

    def registry(self, kind: str) -> Registry[Any]:
        """The registry of one record kind (``"scenario"``, ``"trainer"``, ...).

        Raises
        ------
        UnknownKeyError
            When ``kind`` is not a record kind.

        A key two plugins register is set aside in the registry (see
        :class:`~nip_core.registry.Registry`): looking it up raises
        :class:`~nip_core.errors.DuplicateKeyError`, every other key works.
        """
        if kind not in ALL_RECORD_TYPES:
            raise UnknownKeyError(
                _unknown_kind_message(kind), key=kind, known=list(ALL_RECORD_TYPES)
            )
        with self._lock:
            cached = self._registries.get(kind)
            if cached is not None:
                return cached
            records: list[Contribution] = []
            for entry in list(self._entries.values()):
                records.extend(self._results(entry, kind))
            # A plugin that broke while we collected may have contributed before
            # breaking in a later implementation; collect again without it.
            records = [
                r
                for r in records
                if r.plugin in self._entries and self._entries[r.plugin].status == "ok"
            ]
            built: Registry[Any] = Registry(kind, records)
            self._registries[kind] = built
            return built

    def build_all(self) -> dict[str, Registry[Any]]:
        """Build (and return) every registry: calls every hook of every plugin."""
        return {kind: self.registry(kind) for kind in ALL_RECORD_TYPES}

    @property
    def scenarios(self) -> Registry[ScenarioSpec]:
        """Scenarios, by name."""
        return self.registry("scenario")

    @property
    def protocols(self) -> Registry[ProtocolSpec]:
        """Interaction protocols, by name."""
        return self.registry("protocol")

    @property
    def trainers(self) -> Registry[TrainerSpec]:
        """Trainers, by name."""
        return self.registry("trainer")

    @property
    def agent_parts(self) -> Registry[AgentPartSpec]:
        """Agent parts, by ``"scenario/part"``."""
        return self.registry("agent_part")

    @property
    def parameter_sections(self) -> Registry[ParameterSectionSpec]:
        """Sections of the hyper-parameter tree, by name."""
        return self.registry("parameter_section")

    @property
    def config_dirs(self) -> Registry[ConfigDirSpec]:
        """Hydra config directories, by name."""
        return self.registry("config_dir")

    @property
    def loggers(self) -> Registry[LoggerSpec]:
        """Metric loggers, by name."""
        return self.registry("logger")

    @property
    def dataset_builders(self) -> Registry[DatasetBuilderSpec]:
        """Dataset builders, by scenario."""
        return self.registry("dataset_builder")

    @property
    def migrations(self) -> Registry[MigrationSpec]:
        """Parameter migration steps, by ``"component:from->to"``."""
        return self.registry("migration")

    @property
    def pretrained_models(self) -> Registry[PretrainedModelSpec]:
        """Pretrained models, by name."""
        return self.registry("pretrained_model")

    @property
    def text_backends(self) -> Registry[TextBackendSpec]:
        """Text-model backends, by name."""
        return self.registry("text_backend")

    @property
    def rollout_analysers(self) -> Registry[RolloutAnalyserSpec]:
        """Rollout analysers, by name."""
        return self.registry("rollout_analyser")

    @property
    def episode_renderers(self) -> Registry[EpisodeRendererSpec]:
        """Episode renderers, by scenario."""
        return self.registry("episode_renderer")

    @property
    def report_panels(self) -> Registry[ReportPanelSpec]:
        """Figures of ``nip report`` and the metrics in them, by name."""
        return self.registry("report_panel")

    # -----------------------------------------------------------------------------
    # Introspection
    # -----------------------------------------------------------------------------

    @property
    def pluggy_manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for tools; code should use registries)."""
        return self._pm

    def plugin_names(self) -> list[str]:
        """Names of the plugins that are loaded and not broken."""
        return [n for n, e in self._entries.items() if e.status == "ok"]

    def has_plugin(self, name: str) -> bool:
        """Whether a plugin called ``name`` is loaded and not broken."""
        entry = self._entries.get(name)
        return entry is not None and entry.status == "ok"

    def get_plugin(self, name: str) -> Any:
        """The object registered as plugin ``name``."""
        entry = self._entries.get(name)
        if entry is None or entry.obj is None:
            raise UnknownKeyError(
                _unknown_plugin_message(name, self._entries),
                key=name,
                known=self.plugin_names(),
            )
        return entry.obj

    def plugin_infos(self) -> list[PluginInfo]:
        """Every plugin known to the manager, with its status and contributions.

        Calls every hook of every loaded plugin (once), so plugins whose hooks fail
        show up as broken. Built-ins come first, then installed plugins by name,
        then plugins registered directly. A plugin sharing a key with another is
        listed with status ``"conflict"`` and the keys in ``conflicts``.
        """
        with self._lock:
            for entry in list(self._entries.values()):
                for kind in ALL_RECORD_TYPES:
                    self._results(entry, kind)
            owners: dict[tuple[str, str], list[str]] = {}
            for entry in self._entries.values():
                if entry.status != "ok":
                    continue
                for kind in ALL_RECORD_TYPES:
                    for record in entry.results.get(kind, ()):
                        names = owners.setdefault((kind, record.key), [])
                        names.append(entry.name)
            infos = []
            for entry in self._entries.values():
                contributions = {
                    kind: tuple(sorted(r.key for r in entry.results.get(kind, ())))
                    for kind in ALL_RECORD_TYPES
                }
                conflicts: dict[str, dict[str, tuple[str, ...]]] = {}
                for kind, keys in contributions.items():
                    for key in keys:
                        names = owners.get((kind, key), [])
                        if entry.status == "ok" and len(names) > 1:
                            conflicts.setdefault(kind, {})[key] = tuple(names)
                status: PluginStatus = entry.status
                if status == "ok" and conflicts:
                    status = "conflict"
                infos.append(
                    PluginInfo(
                        name=entry.name,
                        distribution=entry.distribution,
                        version=entry.version,
                        status=status,
                        error=entry.error,
                        contributions={k: v for k, v in contributions.items() if v},
                        builtin=entry.builtin,
                        entry_point=entry.entry_point,
                        conflicts=conflicts,
                    )
                )
            return infos

    def broken_plugins(self) -> list[PluginInfo]:
        """The plugins that failed, with their errors."""
        return [info for info in self.plugin_infos() if info.status == "broken"]

    def plugin_versions(self) -> dict[str, str]:
        """Distribution name to version for every working plugin's distribution
        (``nip-core`` included); recorded in saved parameters."""
        versions = {BUILTIN_DISTRIBUTION: nip_core.__version__}
        for entry in self._entries.values():
            if entry.status == "ok" and entry.distribution and entry.version:
                versions[entry.distribution] = entry.version
        return dict(sorted(versions.items()))

    def __repr__(self) -> str:
        return f"NipPluginManager(plugins={self.plugin_names()!r})"


def _check_result(
    value: Any, hook_name: str, record_type: type[Contribution]
) -> list[Contribution]:
    """Check one hook implementation's return value; raise PluginError if wrong."""
    if value is None:
        return []
    expected = record_type.__name__
    if isinstance(value, Contribution):
        raise PluginError(
            f"{hook_name}() returned a single {type(value).__name__}; it must return "
            f"a list of {expected} records (wrap it in a list)"
        )
    if not isinstance(value, list | tuple):
        raise PluginError(
            f"{hook_name}() returned {type(value).__name__}; it must return a list "
            f"of {expected} records or None"
        )
    for i, item in enumerate(value):
        if not isinstance(item, record_type):
            raise PluginError(
                f"{hook_name}() returned {type(item).__name__} at position {i}; "
                f"expected {expected} records only"
            )
        key = item.key
        if not isinstance(key, str) or not key:
            raise PluginError(
                f"{hook_name}() returned a {expected} with key {key!r}; keys must be "
                "non-empty strings"
            )
        _check_data_worlds(item, hook_name, expected)
    return list(value)


def _check_data_worlds(item: Contribution, hook_name: str, expected: str) -> None:
    """Refuse a record whose ``data_world`` (``data_worlds``) names no data world: a
    typo there would otherwise surface as every config's protocol or trainer being
    refused for "the txt world"."""
    valid = typing.get_args(DataWorld)
    for field_name in ("data_world", "data_worlds"):
        if not hasattr(item, field_name):
            continue
        worlds = getattr(item, field_name)
        for world in (worlds,) if field_name == "data_world" else worlds:
            if world not in valid:
                choices = ", ".join(repr(w) for w in valid)
                raise PluginError(
                    f"{hook_name}() returned a {expected} {item.key!r} with "
                    f"{field_name} {world!r}; valid choices: {choices}"
                )


def _unknown_plugin_message(name: str, known: Iterable[str]) -> str:
    known = list(known)
    message = f"no plugin named {name!r}"
    suggestion = closest_key(name, known)
    if suggestion:
        message += f"; did you mean {suggestion!r}?"
    return message + f" Plugins: {', '.join(known) or 'none'}."


def _unknown_kind_message(kind: str) -> str:
    message = f"unknown record kind {kind!r}"
    suggestion = closest_key(kind, ALL_RECORD_TYPES)
    if suggestion:
        message += f"; did you mean {suggestion!r}?"
    return message + f" Kinds: {', '.join(ALL_RECORD_TYPES)}."


# ---------------------------------------------------------------------------------
# The process-wide manager
# ---------------------------------------------------------------------------------

_manager: NipPluginManager | None = None
_manager_lock = threading.Lock()


def get_plugin_manager() -> NipPluginManager:
    """The process-wide plugin manager, created (and plugins loaded) on first use."""
    global _manager
    manager = _manager
    if manager is not None:
        return manager
    with _manager_lock:
        if _manager is None:
            _manager = NipPluginManager()
        return _manager


def set_plugin_manager(manager: NipPluginManager | None) -> NipPluginManager | None:
    """Install ``manager`` as the process-wide one (``None``: create on next use).

    Returns the previous one, so tests can restore it.
    """
    global _manager
    with _manager_lock:
        previous, _manager = _manager, manager
    return previous


def reset_plugin_manager() -> None:
    """Forget the process-wide manager; the next :func:`get_plugin_manager` call
    loads plugins afresh (for tests, and after installing a plugin in-process)."""
    set_plugin_manager(None)
