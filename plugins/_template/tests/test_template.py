"""Tests of the template plugin.

``plugin_manager`` and ``register_plugin`` are fixtures of nip-core's pytest plugin,
available to every test suite once nip-core is installed: ``plugin_manager`` is a
fresh manager with only nip-core's built-in plugins, so these tests do not depend on
what else is installed.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from nip_core.plugins import NipPluginManager
from nip_core.testing.configs import config_app
from nip_core.testing.malformed import assert_section_refused, field_cases

import nip_plugin_template
from nip_plugin_template import plugin
from nip_plugin_template.parameters import TemplateParameters


def test_registers_the_template_parameter_section(plugin_manager, register_plugin):
    register_plugin(plugin, name="template", version=nip_plugin_template.__version__)
    section = plugin_manager.parameter_sections["template"]
    assert section.parameters_class is TemplateParameters
    assert (section.plugin, section.plugin_version) == ("template", "0.1.0")
    defaults = section.parameters_class()
    assert (defaults.num_hidden_layers, defaults.hidden_size) == (2, 16)
    assert (defaults.activation, defaults.dropout) == ("relu", 0.0)


def test_registers_the_config_dir(plugin_manager, register_plugin):
    register_plugin(plugin, name="template")
    config_dir = Path(plugin_manager.config_dirs["template"].path)
    assert config_dir == plugin.CONFIG_DIR
    assert (config_dir / "template" / "wide.yaml").is_file()


def test_registers_nothing_else(plugin_manager, register_plugin):
    register_plugin(plugin, name="template")
    (info,) = [i for i in plugin_manager.plugin_infos() if i.name == "template"]
    assert info.contributions == {
        "parameter_section": ("template",),
        "config_dir": ("template",),
    }


def test_shipped_config_is_valid_for_the_section():
    text = (plugin.CONFIG_DIR / "template" / "wide.yaml").read_text()
    assert text.startswith("# @package template\n")
    values = yaml.safe_load(text)
    wide = TemplateParameters(**values)
    assert (wide.num_hidden_layers, wide.hidden_size) == (1, 64)
    assert (wide.activation, wide.dropout) == ("tanh", 0.1)


@pytest.mark.parametrize(
    "bad",
    [
        {"hidden_size": 0},
        {"num_hidden_layers": -1},
        {"activation": "gelu"},
        {"dropout": 1.0},
    ],
)
def test_section_rejects_invalid_values(bad):
    with pytest.raises(ValueError):
        TemplateParameters(**bad)


def test_every_bad_value_is_one_clear_error(register_plugin):
    """What ``nip run`` prints for each bad value of each field names the field."""
    register_plugin(plugin, name="template")
    with config_app() as app:
        for case in field_cases(TemplateParameters, "template"):
            assert_section_refused(case, app=app)


def test_entry_module_does_not_import_torch():
    code = "import sys, nip_plugin_template.plugin; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert result.stdout.strip() == "False"


def test_the_entry_point_is_discovered(tmp_path, monkeypatch):
    """The entry point pyproject.toml declares loads the plugin.

    Installed (``pip install .``), the plugin is found through its real
    distribution; run from the source tree (``scripts/test.sh`` keeps the template
    out of the environment), through a distribution written from pyproject.toml.
    """
    import tomllib

    from nip_core.testing.fixtures import make_plugin_distribution

    pyproject = tomllib.loads(
        (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    )
    declared = pyproject["project"]["entry-points"]["nip_core.plugins"]
    try:
        dist = importlib.metadata.distribution("nip-plugin-template")
    except importlib.metadata.PackageNotFoundError:
        site = tmp_path / "site"
        make_plugin_distribution(
            site, "nip-plugin-template", nip_plugin_template.__version__, declared
        )
        monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        dist = importlib.metadata.distribution("nip-plugin-template")
    (entry_point,) = [e for e in dist.entry_points if e.group == "nip_core.plugins"]
    assert {entry_point.name: entry_point.value} == declared
    assert entry_point.value == "nip_plugin_template.plugin"
    pm = NipPluginManager(allow=[entry_point.name], environ={})
    assert pm.has_plugin(entry_point.name)
    section = pm.parameter_sections["template"]
    assert (section.plugin, section.plugin_version) == (entry_point.name, dist.version)
