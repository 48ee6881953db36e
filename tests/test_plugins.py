"""The plugin manager: discovery through real entry points, broken plugins, switches.

Test distributions are written to a temporary directory on ``sys.path`` (a
``.dist-info`` with ``entry_points.txt`` beside the plugin module, copied from
``tests/fixtures_plugins/``), so discovery goes through :mod:`importlib.metadata`
exactly as for a ``pip install``-ed plugin. Their entry-point names start with
``fx_``; assertions look at those only, so other installed plugins do not matter.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import attrs
import pytest

import nip_core
from nip_core import hookimpl
from nip_core.builtin import BUILTIN_PLUGINS
from nip_core.errors import DuplicateKeyError, PluginError, UnknownKeyError
from nip_core.plugins import (
    HOOK_NAMES,
    NipPluginManager,
    PluginInfo,
    PluginWarning,
    builtin_plugin_name,
    get_plugin_manager,
    reset_plugin_manager,
    set_plugin_manager,
)
from nip_core.records import (
    ALL_RECORD_TYPES,
    LoggerSpec,
    ProtocolSpec,
    ScenarioSpec,
    TrainerSpec,
)
from nip_core.testing.fixtures import isolated_plugin_manager, make_plugin_distribution

FIXTURES = Path(__file__).parent / "fixtures_plugins"
BUILTIN_NAMES = [builtin_plugin_name(m) for m in BUILTIN_PLUGINS]


class Site:
    """A temporary site-packages directory holding test distributions."""

    def __init__(self, root: Path):
        self.root = root
        self.names: list[str] = []

    def install(self, distribution: str, version: str, **plugins: str) -> None:
        """Install ``distribution`` with entry points ``name=fixture_module``."""
        modules, entry_points = {}, {}
        for ep_name, fixture in plugins.items():
            package = f"nipfx_{ep_name}"
            modules[f"{package}.plugin"] = (FIXTURES / f"{fixture}.py").read_text()
            entry_points[ep_name] = f"{package}.plugin"
            self.names.append(ep_name)
        make_plugin_distribution(
            self.root, distribution, version, entry_points, modules
        )
        importlib.invalidate_caches()


_current_site: Site | None = None


@pytest.fixture
def site(tmp_path, monkeypatch):
    global _current_site
    root = tmp_path / "site-packages"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    _current_site = Site(root)
    yield _current_site
    _current_site = None
    for name in [m for m in sys.modules if m.startswith("nipfx_")]:
        del sys.modules[name]


def manager(**environ: str) -> NipPluginManager:
    """A manager reading only the given switches (autoload on unless switched off).

    Unless the test sets ``NIP_PLUGINS``, only the test distributions are allowed,
    so plugins that happen to be installed in the environment do not interfere.
    """
    if "NIP_PLUGINS" not in environ and _current_site is not None:
        environ["NIP_PLUGINS"] = ",".join(_current_site.names)
    return NipPluginManager(environ=environ)


def infos(pm: NipPluginManager) -> dict[str, PluginInfo]:
    return {i.name: i for i in pm.plugin_infos() if i.name.startswith("fx_")}


# ---------------------------------------------------------------------------------
# Discovery and stamping
# ---------------------------------------------------------------------------------


def test_builtins_are_registered_first_with_core_version():
    pm = NipPluginManager(autoload=False, environ={})
    assert pm.plugin_names() == BUILTIN_NAMES
    assert BUILTIN_NAMES[1] == "nip-core.protocols"
    for info in pm.plugin_infos():
        assert info.distribution == "nip-core"
        assert info.version == nip_core.__version__
        assert info.builtin and info.status == "ok"


def test_entry_point_plugin_is_discovered_and_records_stamped(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    pm = manager()
    record = pm.loggers["good_logger"]
    assert record.plugin == "fx_good"
    assert record.plugin_version == "1.2.3"
    assert record.logger_class == "good_pkg.loggers:Logger"
    section = pm.parameter_sections["good_section"]
    assert (section.plugin, section.plugin_version) == ("fx_good", "1.2.3")
    assert section.parameters_class().width == 2
    info = infos(pm)["fx_good"]
    assert info == PluginInfo(
        name="fx_good",
        distribution="nip-plugin-good",
        version="1.2.3",
        status="ok",
        contributions={
            "logger": ("good_logger",),
            "parameter_section": ("good_section",),
        },
        entry_point="nipfx_fx_good.plugin",
    )
    assert pm.plugin_names()[: len(BUILTIN_NAMES)] == BUILTIN_NAMES
    assert pm.plugin_versions()["nip-plugin-good"] == "1.2.3"
    assert pm.plugin_versions()["nip-core"] == nip_core.__version__


def test_stamping_overrides_a_stamp_the_plugin_set_itself(
    plugin_manager, register_plugin
):
    class Liar:
        @hookimpl
        def register_loggers(self):
            return [LoggerSpec(name="l", logger_class="m:L", plugin="someone-else")]

    register_plugin(Liar(), name="honest", version="0.9")
    assert plugin_manager.loggers["l"].plugin == "honest"
    assert plugin_manager.loggers["l"].plugin_version == "0.9"


# ---------------------------------------------------------------------------------
# Broken plugins
# ---------------------------------------------------------------------------------


def test_plugin_failing_to_import_is_reported_and_others_work(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    site.install("nip-plugin-broken", "0.3", fx_broken="broken_import")
    with pytest.warns(PluginWarning) as caught:
        pm = manager()
    messages = [str(w.message) for w in caught if "fx_broken" in str(w.message)]
    assert len(messages) == 1
    message = messages[0]
    assert "plugin 'fx_broken' (nip-plugin-broken 0.3) failed to import" in message
    assert f"(nip-core {nip_core.__version__})" in message
    assert "ModuleNotFoundError" in message
    assert "nip_dependency_that_is_not_installed" in message
    assert "NIP_DISABLED_PLUGINS=fx_broken" in message
    assert pm.loggers["good_logger"].plugin == "fx_good"
    info = infos(pm)["fx_broken"]
    assert info.status == "broken"
    assert info.distribution == "nip-plugin-broken" and info.version == "0.3"
    assert info.error.startswith("ModuleNotFoundError: No module named")
    assert info.contributions == {}
    assert not pm.has_plugin("fx_broken")


def test_strict_mode_raises_for_a_broken_plugin(site):
    site.install("nip-plugin-broken", "0.3", fx_broken="broken_import")
    with pytest.raises(PluginError) as info:
        manager(NIP_STRICT_PLUGINS="1")
    assert "plugin 'fx_broken' (nip-plugin-broken 0.3) failed to import" in str(
        info.value
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_strict_mode_off_values():
    for value in ("0", "false", "no", "off", ""):
        assert (
            NipPluginManager(
                autoload=False, environ={"NIP_STRICT_PLUGINS": value}
            ).strict
            is False
        )
    assert NipPluginManager(
        autoload=False, environ={"NIP_STRICT_PLUGINS": "yes"}
    ).strict


def test_misspelt_hook_breaks_only_that_plugin(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    site.install("nip-plugin-misspelt", "1.0", fx_misspelt="misspelt")
    with pytest.warns(PluginWarning, match="fx_misspelt") as caught:
        pm = manager()
    message = next(str(w.message) for w in caught if "fx_misspelt" in str(w.message))
    assert "has invalid hook implementations" in message
    assert (
        "unknown hook 'register_trainer' (did you mean 'register_trainers'?)" in message
    )
    assert "misspelt_trainer" not in pm.trainers
    assert infos(pm)["fx_misspelt"].status == "broken"
    assert pm.loggers["good_logger"].plugin == "fx_good"
    # Nothing of the broken plugin is left behind for pluggy to complain about.
    pm.pluggy_manager.check_pending()


def test_misspelt_hook_in_strict_mode(site):
    site.install("nip-plugin-misspelt", "1.0", fx_misspelt="misspelt")
    with pytest.raises(PluginError, match="unknown hook 'register_trainer'"):
        manager(NIP_STRICT_PLUGINS="1")


def test_wrong_hook_signature_is_reported(site):
    site.install("nip-plugin-sig", "2.0", fx_sig="wrong_signature")
    with pytest.warns(PluginWarning, match="fx_sig") as caught:
        pm = manager()
    message = next(str(w.message) for w in caught if "fx_sig" in str(w.message))
    assert (
        "plugin 'fx_sig' (nip-plugin-sig 2.0) has invalid hook implementations"
        in message
    )
    assert "'config'" in message and "register_trainers" in message
    assert "nip's registration hooks take no arguments" in message
    assert "wrong_signature_trainer" not in pm.trainers
    assert infos(pm)["fx_sig"].status == "broken"


def test_hook_that_raises_breaks_the_plugin_everywhere(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    site.install("nip-plugin-raising", "0.1", fx_raising="raising")
    pm = manager()
    # The logger hook works, so the logger registry has the plugin's logger ...
    assert pm.loggers["raising_logger"].plugin == "fx_raising"
    with pytest.warns(PluginWarning, match="failed in register_trainers") as caught:
        trainers = pm.trainers
    assert "RuntimeError: the trainer table is corrupt" in str(caught[0].message)
    assert "plugin 'fx_raising' (nip-plugin-raising 0.1)" in str(caught[0].message)
    assert "raising_logger" not in {r.key for r in trainers.values()}
    # ... until the plugin breaks: then none of its records remain anywhere.
    assert "raising_logger" not in pm.loggers
    assert "good_logger" in pm.loggers
    info = infos(pm)["fx_raising"]
    assert info.status == "broken"
    assert info.error == "RuntimeError: the trainer table is corrupt"


def test_hook_that_raises_in_strict_mode(site):
    site.install("nip-plugin-raising", "0.1", fx_raising="raising")
    pm = manager(NIP_STRICT_PLUGINS="1")
    with pytest.raises(PluginError, match="corrupt") as info:
        pm.registry("trainer")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_hook_returning_the_wrong_record_type(site):
    site.install("nip-plugin-wrongtype", "0.1", fx_wrongtype="wrong_type")
    pm = manager()
    with pytest.warns(
        PluginWarning,
        match=r"register_trainers\(\) returned LoggerSpec at position 0; "
        "expected TrainerSpec records only",
    ):
        assert "not_a_trainer" not in pm.trainers
    assert infos(pm)["fx_wrongtype"].status == "broken"


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (
            LoggerSpec(name="x", logger_class="m:X"),
            "returned a single LoggerSpec; it must return a list of LoggerSpec "
            "records (wrap it in a list)",
        ),
        ({"name": "x"}, "returned dict; it must return a list of LoggerSpec"),
        (
            [LoggerSpec(name="", logger_class="m:X")],
            "with key ''; keys must be non-empty",
        ),
    ],
)
def test_hook_result_is_checked(plugin_manager, returned, expected):
    class Plugin:
        @hookimpl
        def register_loggers(self):
            return returned

    plugin_manager.register(Plugin(), name="bad")
    with pytest.raises(PluginError) as info:
        plugin_manager.registry("logger")
    assert expected in str(info.value)
    assert "plugin 'bad' failed in register_loggers()" in str(info.value)


@pytest.mark.parametrize(
    ("hook", "kind", "record"),
    [
        (
            "register_scenarios",
            "scenario",
            ScenarioSpec(
                name="s", data_world="txt", agent_parameters_class="m:P",
                dataset_class="m:D",
            ),
        ),
        (
            "register_trainers",
            "trainer",
            TrainerSpec(name="t", trainer_class="m:T", data_world="Text"),
        ),
        (
            "register_protocols",
            "protocol",
            ProtocolSpec(
                name="p", handler_class="m:H", agent_names=("v",),
                data_worlds=("tensor", "txt"),
            ),
        ),
    ],
)  # fmt: skip
def test_a_record_of_an_unknown_data_world_is_refused(
    plugin_manager, hook, kind, record
):
    # a typo in data_world was accepted, and validation then blamed the protocol or
    # the trainer of every config ("cannot run in the txt world")
    plugin = type("Plugin", (), {hook: hookimpl(lambda self: [record])})()
    plugin_manager.register(plugin, name="bad")
    with pytest.raises(PluginError) as info:
        plugin_manager.registry(kind)
    message = str(info.value)
    assert "data_world" in message
    assert "'txt'" in message or "'Text'" in message
    assert "'tensor', 'text'" in message


def test_hook_returning_none_or_tuple_is_fine(plugin_manager, register_plugin):
    class Plugin:
        @hookimpl
        def register_loggers(self):
            return None

        @hookimpl
        def register_trainers(self):
            return (TrainerSpec(name="t", trainer_class="m:T"),)

    register_plugin(Plugin(), name="fine")
    assert plugin_manager.trainers["t"].plugin == "fine"
    assert plugin_manager.has_plugin("fine")


def test_two_plugins_with_one_key_name_both(site):
    site.install("nip-plugin-dup-a", "1.0", fx_dup_a="dup_a")
    site.install("nip-plugin-dup-b", "2.0", fx_dup_b="dup_b")
    pm = manager()
    # the registry works; only the shared key cannot be used
    protocols = pm.registry("protocol")
    assert "nip" in protocols and "shared_protocol" not in protocols
    with pytest.raises(DuplicateKeyError) as info:
        protocols["shared_protocol"]
    message = str(info.value)
    assert "the protocol 'shared_protocol' is registered by 2 plugins" in message
    assert "plugin 'fx_dup_a' (version 1.0)" in message
    assert "plugin 'fx_dup_b' (version 2.0)" in message
    # `nip plugins` shows what each one registers, and the conflict
    found = infos(pm)
    assert found["fx_dup_a"].contributions == {"protocol": ("shared_protocol",)}
    assert found["fx_dup_b"].contributions == {"protocol": ("shared_protocol",)}
    for name in ("fx_dup_a", "fx_dup_b"):
        assert found[name].status == "conflict"
        assert found[name].conflicts == {
            "protocol": {"shared_protocol": ("fx_dup_a", "fx_dup_b")}
        }
        assert found[name].to_dict()["conflicts"] == [
            {
                "kind": "protocol",
                "key": "shared_protocol",
                "plugins": ["fx_dup_a", "fx_dup_b"],
            }
        ]
    resolved = manager(NIP_DISABLED_PLUGINS="fx_dup_b")
    assert resolved.protocols["shared_protocol"].handler_class == "a:Handler"
    assert {i.name: i.status for i in infos(resolved).values()}["fx_dup_a"] == "ok"


def test_a_clashing_key_fails_only_when_it_is_chosen(site, plugin_manager):
    from nip_core.errors import NipConfigError
    from nip_core.parameters import HyperParameters
    from nip_core.plugins import set_plugin_manager
    from nip_core.testing.synthetic import SYNTHETIC_PLUGIN

    site.install("nip-plugin-dup-a", "1.0", fx_dup_a="dup_a")
    site.install("nip-plugin-dup-b", "2.0", fx_dup_b="dup_b")
    pm = manager()
    pm.register(SYNTHETIC_PLUGIN, name="synthetic")
    previous = set_plugin_manager(pm)
    try:
        hp = HyperParameters(
            "synthetic", "reinforce", "tiny", agents={"_default": {"d_hidden": 4}}
        )
        assert hp.interaction_protocol == "nip"
        with pytest.raises(NipConfigError) as info:
            HyperParameters(
                "synthetic",
                "reinforce",
                "tiny",
                interaction_protocol="shared_protocol",
                agents={"_default": {"d_hidden": 4}},
            )
    finally:
        set_plugin_manager(previous)
    [problem] = [p for p in info.value.problems if p.path == "interaction_protocol"]
    assert "registered by 2 plugins" in problem.message
    assert "fx_dup_a" in problem.message and "fx_dup_b" in problem.message


def test_a_broken_plugin_does_not_stop_the_next_ones(site):
    # Loading is by name: fx_a_broken comes before fx_b_good.
    site.install("nip-plugin-a", "1", fx_a_broken="broken_import")
    site.install("nip-plugin-b", "1", fx_b_good="good")
    with pytest.warns(PluginWarning):
        pm = manager()
    assert list(infos(pm)) == ["fx_a_broken", "fx_b_good"]
    assert pm.has_plugin("fx_b_good")


# ---------------------------------------------------------------------------------
# Environment switches
# ---------------------------------------------------------------------------------


def test_disable_autoload_loads_builtins_only(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    pm = manager(NIP_DISABLE_PLUGIN_AUTOLOAD="1")
    assert pm.plugin_names() == BUILTIN_NAMES
    assert "good_logger" not in pm.loggers


def test_allow_list(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    site.install("nip-plugin-other", "1.0", fx_other="other")
    pm = manager(NIP_PLUGINS="fx_other")
    assert "other_trainer" in pm.trainers
    assert "good_logger" not in pm.loggers
    found = infos(pm)
    assert found["fx_good"].status == "disabled"
    assert found["fx_good"].error == "not listed in NIP_PLUGINS"
    assert found["fx_other"].status == "ok"
    # Built-ins are always loaded.
    assert set(BUILTIN_NAMES) <= set(pm.plugin_names())


def test_allow_list_naming_a_missing_plugin_warns(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    with pytest.warns(
        PluginWarning, match="NIP_PLUGINS names plugins that are not installed: fx_nope"
    ):
        pm = manager(NIP_PLUGINS="fx_good, fx_nope")
    assert pm.has_plugin("fx_good")


def test_block_list(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    site.install("nip-plugin-other", "1.0", fx_other="other")
    pm = manager(NIP_DISABLED_PLUGINS="fx_good,fx_unrelated")
    assert "good_logger" not in pm.loggers
    assert "other_trainer" in pm.trainers
    assert infos(pm)["fx_good"].status == "disabled"
    assert infos(pm)["fx_good"].error == "listed in NIP_DISABLED_PLUGINS"


def test_an_unknown_name_points_at_disabled_and_broken_plugins(site):
    from nip_core.parameters.hyper_parameters import _unloaded_plugins_note

    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    site.install("nip-plugin-broken", "0.3", fx_broken="broken_import")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        pm = manager(NIP_DISABLED_PLUGINS="fx_good")
        note = _unloaded_plugins_note(pm)
    assert note.startswith(" (plugins that failed to load: fx_broken; ")
    assert "disabled plugins, which may provide it: " in note
    assert "fx_good (listed in NIP_DISABLED_PLUGINS)" in note
    assert note.endswith("; see `nip plugins`)")
    # every plugin installed here beside the test's is left out of NIP_PLUGINS:
    # named once, with that reason
    assert note.count("(not listed in NIP_PLUGINS)") <= 1
    assert "fx_good" not in _unloaded_plugins_note(manager())


def test_block_list_silences_a_broken_plugin(site):
    site.install("nip-plugin-broken", "0.3", fx_broken="broken_import")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pm = manager(NIP_DISABLED_PLUGINS="fx_broken", NIP_STRICT_PLUGINS="1")
    assert infos(pm)["fx_broken"].status == "disabled"


def test_switches_are_read_from_os_environ(site, monkeypatch):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    monkeypatch.setenv("NIP_PLUGINS", "fx_good")
    monkeypatch.setenv("NIP_DISABLED_PLUGINS", "fx_good")
    assert not NipPluginManager().has_plugin("fx_good")
    monkeypatch.delenv("NIP_DISABLED_PLUGINS")
    assert NipPluginManager().has_plugin("fx_good")


def test_tracing_prints_loads_and_hook_calls(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    stream = io.StringIO()
    pm = NipPluginManager(trace=stream, environ={"NIP_PLUGINS": "fx_good"})
    assert "good_logger" in pm.loggers
    lines = stream.getvalue().splitlines()
    assert "[nip plugins] loaded plugin 'fx_good' (nip-plugin-good 1.2.3)" in lines
    assert any(
        line.startswith("[nip plugins] register_loggers() [fx_good] -> ['good_logger']")
        for line in lines
    )


def test_tracing_switch_prints_to_stderr(site, capsys):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    assert (
        "good_logger" in manager(NIP_TRACE_PLUGINS="1", NIP_PLUGINS="fx_good").loggers
    )
    assert "register_loggers() [fx_good]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------
# Registering, caching, invalidation
# ---------------------------------------------------------------------------------


class CountingPlugin:
    def __init__(self, name: str):
        self.name = name
        self.calls = 0

    @hookimpl
    def register_loggers(self):
        self.calls += 1
        return [LoggerSpec(name=self.name, logger_class=f"m:{self.name}")]


def test_registries_are_cached_and_rebuilt_on_register_and_unregister(plugin_manager):
    first = CountingPlugin("first")
    plugin_manager.register(first, name="first", version="3.0")
    loggers = plugin_manager.loggers
    assert plugin_manager.loggers is loggers
    assert loggers["first"].plugin_version == "3.0"

    second = CountingPlugin("second")
    plugin_manager.register(second, name="second")
    rebuilt = plugin_manager.loggers
    assert rebuilt is not loggers
    assert {"first", "second"} <= set(rebuilt)
    assert rebuilt["second"].plugin_version is None

    assert plugin_manager.unregister("second") is second
    assert "second" not in plugin_manager.loggers
    assert "first" in plugin_manager.loggers
    # Each hook implementation ran once, however often the registries were rebuilt.
    assert (first.calls, second.calls) == (1, 1)


def test_register_module_class_and_instance(plugin_manager, tmp_path, monkeypatch):
    module_path = tmp_path / "nipfx_module_plugin.py"
    module_path.write_text(
        textwrap.dedent(
            """
            from nip_core import hookimpl
            from nip_core.records import LoggerSpec

            @hookimpl
            def register_loggers():
                return [LoggerSpec(name="from_module", logger_class="m:M")]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("nipfx_module_plugin")
    try:
        assert plugin_manager.register(module) == "nipfx_module_plugin"
    finally:
        del sys.modules["nipfx_module_plugin"]

    class AsClass:
        @staticmethod
        @hookimpl
        def register_trainers():
            return [TrainerSpec(name="from_class", trainer_class="m:C")]

    plugin_manager.register(AsClass, name="as_class")
    plugin_manager.register(CountingPlugin("from_instance"), name="as_instance")
    assert plugin_manager.loggers["from_module"].plugin == "nipfx_module_plugin"
    assert plugin_manager.trainers["from_class"].plugin == "as_class"
    assert plugin_manager.loggers["from_instance"].plugin == "as_instance"


def test_register_refuses_invalid_plugins_and_taken_names(plugin_manager):
    class Misspelt:
        @hookimpl
        def register_scenario(self):
            return []

    with pytest.raises(PluginError, match="did you mean 'register_scenarios'"):
        plugin_manager.register(Misspelt(), name="misspelt")
    assert not plugin_manager.has_plugin("misspelt")
    assert plugin_manager.pluggy_manager.get_plugin("misspelt") is None

    plugin_manager.register(CountingPlugin("a"), name="taken")
    with pytest.raises(
        PluginError, match="a plugin named 'taken' is already registered"
    ):
        plugin_manager.register(CountingPlugin("b"), name="taken")
    with pytest.raises(PluginError, match="a plugin named 'nip-core.protocols'"):
        plugin_manager.register(CountingPlugin("c"), name="nip-core.protocols")


def test_a_broken_plugins_name_can_be_taken_over(site):
    site.install("nip-plugin-broken", "0.3", fx_broken="broken_import")
    with pytest.warns(PluginWarning):
        pm = manager()
    pm.register(CountingPlugin("fixed"), name="fx_broken", version="0.4")
    assert pm.loggers["fixed"].plugin_version == "0.4"
    assert infos(pm)["fx_broken"].status == "ok"


def test_allow_list_may_name_builtins_without_warning(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pm = manager(NIP_PLUGINS="fx_good,nip-core.loggers")
    assert pm.has_plugin("nip-core.loggers") and pm.has_plugin("fx_good")


def test_unmarked_hook_function_warns(plugin_manager):
    class Forgetful:
        def register_loggers(self):
            return [LoggerSpec(name="never", logger_class="m:N")]

    with pytest.warns(
        PluginWarning, match="defines register_loggers\\(\\) without the"
    ):
        plugin_manager.register(Forgetful(), name="forgetful")
    assert "never" not in plugin_manager.loggers


def test_unregister_unknown_name_suggests(plugin_manager):
    with pytest.raises(UnknownKeyError, match="did you mean 'nip-core.protocols'"):
        plugin_manager.unregister("nip-core.protocol")


def test_registry_by_kind_and_properties_agree(plugin_manager, register_plugin):
    register_plugin(CountingPlugin("by_kind"), name="by_kind")
    properties = {
        "scenario": "scenarios",
        "protocol": "protocols",
        "trainer": "trainers",
        "agent_part": "agent_parts",
        "parameter_section": "parameter_sections",
        "config_dir": "config_dirs",
        "logger": "loggers",
        "dataset_builder": "dataset_builders",
        "migration": "migrations",
        "pretrained_model": "pretrained_models",
        "episode_renderer": "episode_renderers",
        "text_backend": "text_backends",
        "report_panel": "report_panels",
        "rollout_analyser": "rollout_analysers",
    }
    assert set(properties) == set(ALL_RECORD_TYPES) == set(HOOK_NAMES)
    for kind, attribute in properties.items():
        registry = getattr(plugin_manager, attribute)
        assert registry is plugin_manager.registry(kind)
        assert registry.kind == kind
        assert all(isinstance(r, ALL_RECORD_TYPES[kind]) for r in registry.values())
    assert "by_kind" in plugin_manager.registry("logger")
    with pytest.raises(
        UnknownKeyError, match="unknown record kind 'trainers'; did you mean 'trainer'"
    ):
        plugin_manager.registry("trainers")


def test_every_hook_spec_has_a_kind():
    specs = {name for name in dir(nip_core.hookspecs) if name.startswith("register_")}
    assert specs == set(HOOK_NAMES.values())


def test_plugin_info_to_dict_is_json_ready(plugin_manager, register_plugin):
    register_plugin(
        CountingPlugin("j"), name="json_plugin", distribution="d", version="1"
    )
    info = next(i for i in plugin_manager.plugin_infos() if i.name == "json_plugin")
    assert json.loads(json.dumps(info.to_dict())) == {
        "name": "json_plugin",
        "distribution": "d",
        "version": "1",
        "status": "ok",
        "error": None,
        "builtin": False,
        "entry_point": None,
        "contributions": {"logger": ["j"]},
        "conflicts": [],
    }


# ---------------------------------------------------------------------------------
# The process-wide manager and the fixtures
# ---------------------------------------------------------------------------------


def test_global_manager_is_created_once_and_replaceable():
    previous = set_plugin_manager(None)
    try:
        reset_plugin_manager()
        with warnings.catch_warnings():
            # Whatever is installed in this environment is loaded here.
            warnings.simplefilter("ignore", PluginWarning)
            first = get_plugin_manager()
        assert get_plugin_manager() is first
        mine = NipPluginManager(autoload=False, environ={})
        assert set_plugin_manager(mine) is first
        assert get_plugin_manager() is mine
        reset_plugin_manager()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)
            assert get_plugin_manager() not in (first, mine)
    finally:
        set_plugin_manager(previous)


def test_plugin_manager_fixture_is_isolated_strict_and_global(plugin_manager):
    assert get_plugin_manager() is plugin_manager
    assert plugin_manager.strict
    assert plugin_manager.plugin_names() == BUILTIN_NAMES


def test_register_plugin_fixture(plugin_manager, register_plugin):
    name = register_plugin(CountingPlugin("fixture_logger"), version="5")
    assert plugin_manager.has_plugin(name)
    assert get_plugin_manager().loggers["fixture_logger"].plugin_version == "5"


def test_isolated_manager_restores_the_previous_one():
    outer = NipPluginManager(autoload=False, environ={})
    previous = set_plugin_manager(outer)
    try:
        plugin = CountingPlugin("ctx")
        with isolated_plugin_manager({"ctx": plugin}) as pm:
            assert get_plugin_manager() is pm is not outer
            assert pm.loggers["ctx"].plugin == "ctx"
        assert get_plugin_manager() is outer
        assert "ctx" not in outer.loggers
    finally:
        set_plugin_manager(previous)


def test_fixture_distribution_metadata_is_what_importlib_reads(site):
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    dist = importlib.metadata.distribution("nip-plugin-good")
    assert dist.version == "1.2.3"
    (ep,) = [e for e in dist.entry_points if e.group == "nip_core.plugins"]
    assert (ep.name, ep.value) == ("fx_good", "nipfx_fx_good.plugin")


# ---------------------------------------------------------------------------------
# Lightness
# ---------------------------------------------------------------------------------


def test_building_every_builtin_registry_does_not_import_torch():
    code = textwrap.dedent(
        """
        import sys
        import nip_core.plugins as plugins
        pm = plugins.NipPluginManager(autoload=False)
        pm.build_all()
        pm.plugin_infos()
        heavy = [m for m in ("torch", "torchrl", "tensordict") if m in sys.modules]
        print("HEAVY:" + ",".join(heavy))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "HEAVY:\n" in result.stdout, result.stdout + result.stderr


def test_plugin_info_is_frozen():
    info = PluginInfo(name="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.status = "broken"  # type: ignore[misc]


# ---------------------------------------------------------------------------------
# `nip plugins`
# ---------------------------------------------------------------------------------


def test_plugins_command_table(site):
    from nip_core.cli.plugins_cmd import run_plugins_command

    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    site.install("nip-plugin-broken", "0.3", fx_broken="broken_import")
    with pytest.warns(PluginWarning):
        pm = manager()
    out = io.StringIO()
    assert run_plugins_command(file=out, manager=pm) == 1
    lines = out.getvalue().splitlines()
    header = lines[0].split()
    assert header == ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "REGISTERS"]
    good = lines.index(next(line for line in lines if line.startswith("fx_good ")))
    assert lines[good].split() == [
        "fx_good",
        "nip-plugin-good",
        "1.2.3",
        "ok",
        "parameter_section:",
        "good_section",
    ]
    # Kinds come in the order of ALL_RECORD_TYPES; continuation lines line up
    # under the REGISTERS column.
    assert lines[good + 1].split() == ["logger:", "good_logger"]
    column = lines[0].index("REGISTERS")
    assert lines[good].index("parameter_section:") == column
    assert lines[good + 1].index("logger:") == column
    assert "Broken plugins (skipped; the others work):" in lines
    assert (
        "  fx_broken (nip-plugin-broken 0.3): ModuleNotFoundError: No module named "
        "'nip_dependency_that_is_not_installed'" in lines
    )


def test_plugins_command_json(site):
    from nip_core.cli.plugins_cmd import run_plugins_command

    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    out = io.StringIO()
    assert run_plugins_command(as_json=True, file=out, manager=manager()) == 0
    data = json.loads(out.getvalue())
    assert [d["name"] for d in data[: len(BUILTIN_NAMES)]] == BUILTIN_NAMES
    (good,) = [d for d in data if d["name"] == "fx_good"]
    assert good == {
        "name": "fx_good",
        "distribution": "nip-plugin-good",
        "version": "1.2.3",
        "status": "ok",
        "error": None,
        "builtin": False,
        "entry_point": "nipfx_fx_good.plugin",
        "contributions": {
            "logger": ["good_logger"],
            "parameter_section": ["good_section"],
        },
        "conflicts": [],
    }


def test_plugins_command_reports_conflicts_and_disabled(site):
    from nip_core.cli.plugins_cmd import run_plugins_command

    site.install("nip-plugin-dup-a", "1.0", fx_dup_a="dup_a")
    site.install("nip-plugin-dup-b", "2.0", fx_dup_b="dup_b")
    site.install("nip-plugin-good", "1.2.3", fx_good="good")
    out = io.StringIO()
    pm = manager(NIP_PLUGINS="fx_dup_a,fx_dup_b")
    assert run_plugins_command(file=out, manager=pm) == 1
    text = out.getvalue()
    assert "  protocol 'shared_protocol': fx_dup_a, fx_dup_b\n" in text
    # installed plugins are listed beside it, sorted by name
    assert "Disabled plugins:\n" in text
    assert "\n  fx_good: not listed in NIP_PLUGINS\n" in text


def test_plugins_command_uses_the_global_manager(plugin_manager, register_plugin):
    from nip_core.cli.plugins_cmd import run_plugins_command

    register_plugin(CountingPlugin("global_logger"), name="global-test")
    out = io.StringIO()
    assert run_plugins_command(file=out) == 0
    assert any(
        line.split()[:1] == ["global-test"] and "global_logger" in line
        for line in out.getvalue().splitlines()
    )


def test_plugins_command_is_fast_and_torch_free():
    code = textwrap.dedent(
        """
        import io, sys, time
        start = time.perf_counter()
        from nip_core.cli.plugins_cmd import run_plugins_command
        from nip_core.plugins import NipPluginManager
        pm = NipPluginManager(autoload=False)
        run_plugins_command(file=io.StringIO(), manager=pm)
        elapsed = time.perf_counter() - start
        print("TORCH" if "torch" in sys.modules else "NO-TORCH", elapsed)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    verdict, elapsed = result.stdout.split()
    assert verdict == "NO-TORCH"
    assert float(elapsed) < 1.0


def test_cli_warning_format_is_plain(monkeypatch):
    from nip_core.cli.plugins_cmd import install_plugin_warning_format

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    install_plugin_warning_format()
    install_plugin_warning_format()
    text = warnings.formatwarning("plugin 'x' broke", PluginWarning, "/a/b.py", 3)
    assert text == "nip: warning: plugin 'x' broke\n"
    other = warnings.formatwarning("careful", UserWarning, "/a/b.py", 3, "")
    assert other.startswith("/a/b.py:3: UserWarning: careful")
