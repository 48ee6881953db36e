"""A sweep-test plugin installed the way a real one is, so remote jobs find it too.

The plugin (the synthetic scenario plus a config directory holding the experiment
``sweep_test/exp``) is written as a distribution with an entry point into a
temporary directory, which goes on ``sys.path`` here and on ``PYTHONPATH`` for the
processes launchers start (submitit's local executor, Ray workers). ``NIP_PLUGINS``
limits every process to this plugin and the built-ins. Each process that loads the
plugin leaves a file named after its pid in ``loaded_by/``, so a test can tell that
a job ran elsewhere and loaded the plugin there through its entry point.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from nip_core.testing.fixtures import isolated_plugin_manager, make_plugin_distribution

PLUGIN_NAME = "nip-sweep-test"
DISTRIBUTION = "nip-plugin-sweep-test"
DISTRIBUTION_VERSION = "0.3.1"

PLUGIN_SOURCE = """
import os
from pathlib import Path

from nip_core import hookimpl
from nip_core.records import ConfigDirSpec
from nip_core.testing.synthetic.plugin import SyntheticPlugin

CONFIG_DIR = {config_dir!r}
LOADED_BY = Path({loaded_by!r})


class SweepTestPlugin(SyntheticPlugin):
    @hookimpl
    def register_config_dirs(self):
        return [ConfigDirSpec(name="sweep_test", path=CONFIG_DIR)]


LOADED_BY.mkdir(parents=True, exist_ok=True)
(LOADED_BY / str(os.getpid())).touch()
plugin = SweepTestPlugin()
"""

EXPERIMENT = """
    # @package _global_
    defaults:
      - /base
      - _self_
    scenario: synthetic
    trainer: reinforce
    dataset: tiny
    d_representation: 4
    agents:
      _default:
        d_hidden: 4
    rl:
      frames_per_batch: null
      rollouts_per_iteration: 4
      num_iterations: 3
      num_epochs: 1
      minibatch_size: 6
      num_test_iterations: 1
      normalize_observations: false
    nip_protocol:
      max_message_rounds: 3
      min_message_rounds: 1
    synthetic:
      num_bits: 6
      train_size: 16
      test_size: 8
    run:
      runs_dir: {runs_dir}
      data_dir: {data_dir}
      cache_dir: {cache_dir}
      show_progress: false
      checkpoint_period: 1
    """


class SweepSite:
    """Paths of a sweep test: the working directory, runs, the plugin's traces."""

    def __init__(self, root: Path):
        self.root = root
        self.work = root / "work"
        self.runs = root / "runs"
        self.config_dir = root / "plugin_configs"
        self.loaded_by = root / "loaded_by"
        self.packages = root / "site"

    def run_dirs(self) -> list[Path]:
        return sorted(p for p in self.runs.iterdir() if (p / "run_info.json").is_file())

    def sweep_dirs(self) -> list[Path]:
        return sorted((self.runs / "sweeps").iterdir())

    def loading_pids(self) -> set[int]:
        if not self.loaded_by.is_dir():
            return set()
        return {int(p.name) for p in self.loaded_by.iterdir()}


@pytest.fixture
def sweep_site(tmp_path, monkeypatch) -> Iterator[SweepSite]:
    """The sweep-test plugin installed (entry point) and loaded in this process."""
    site = SweepSite(tmp_path)
    site.work.mkdir()
    experiment = site.config_dir / "sweep_test" / "exp.yaml"
    experiment.parent.mkdir(parents=True)
    experiment.write_text(
        textwrap.dedent(
            EXPERIMENT.format(
                runs_dir=site.runs,
                data_dir=tmp_path / "data",
                cache_dir=tmp_path / "cache",
            )
        ).lstrip()
    )
    make_plugin_distribution(
        site.packages,
        DISTRIBUTION,
        DISTRIBUTION_VERSION,
        {PLUGIN_NAME: "nip_sweep_test_plugin:plugin"},
        {
            "nip_sweep_test_plugin": PLUGIN_SOURCE.format(
                config_dir=str(site.config_dir), loaded_by=str(site.loaded_by)
            )
        },
    )
    # A previous test's copy of the module names its own directories
    sys.modules.pop("nip_sweep_test_plugin", None)
    monkeypatch.syspath_prepend(str(site.packages))
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv(
        "PYTHONPATH",
        str(site.packages) + (os.pathsep + pythonpath if pythonpath else ""),
    )
    monkeypatch.setenv("NIP_PLUGINS", PLUGIN_NAME)
    monkeypatch.setenv("NIP_STRICT_PLUGINS", "1")
    monkeypatch.delenv("NIP_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.chdir(site.work)
    with isolated_plugin_manager(autoload=True):
        yield site
    sys.modules.pop("nip_sweep_test_plugin", None)


@pytest.fixture(autouse=True)
def _restore_logging(restored_logging: None) -> None:
    """Every test here: the root logger put back afterwards (``restored_logging``
    of nip-core's pytest plugin)."""
