"""Every ``nip run`` command of the README and the docs, run as written, is a valid
config that builds without a warning it did not ask for.

The commands are read from the Markdown files of the repository (skipped when the
tests run from an installed wheel, without them). Each is composed and validated as
``nip run`` does, then its protocol handler is built with warnings turned into
errors: an example must not warn about its own defaults (the round the verifier can
never read, say).
"""

from __future__ import annotations

import importlib
import re
import shlex
import warnings
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
PAGES += sorted((ROOT / "plugins").glob("*/README.md"))

PLACEHOLDER = re.compile(r"[A-Z]{2,}|\.\.\.|<")
"""An argument that stands for something (``RUN_ID``, ``...``, ``<name>``)."""

NEEDS_MACHINE = ("run.device=cuda", "hydra/launcher=submitit", "hydra/launcher=ray")
"""Commands for machines these tests do not run on."""

ILLUSTRATIONS = ("key=value", "my_", "trainer=a2c", "-c parity/")
"""Commands about the reader's own configs, datasets or plugins (from the docs'
examples), which these tests do not have."""

WRONG_ON_PURPOSE = {
    "nip run rl.num_epochs=0 rl.num_epoch=4 run.device_id=1": 3,
    "nip run -c image_classification/digits_nip_vanilla_ppo "
    "dataset_options.binarification_method=merge": 1,
}
"""Commands the docs show to demonstrate errors, with the number of problems."""


def _commands() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for page in PAGES:
        if not page.is_file():
            continue
        for line in page.read_text().splitlines():
            text = line.strip().removeprefix("$ ")
            if "nip run" not in text:
                continue
            command = text[text.index("nip run") :].split("#")[0].strip()
            command = command.split("&&")[0].strip().rstrip("\\").strip()
            if command.endswith("`") or "`" in command:
                command = command.split("`")[0].strip()
            if not command or PLACEHOLDER.search(command[len("nip run") :]):
                continue
            if any(marker in command for marker in NEEDS_MACHINE + ILLUSTRATIONS):
                continue
            found.append((f"{page.relative_to(ROOT)}: {command}", command))
    return sorted(set(found))


COMMANDS = _commands()


def _job(command: str) -> tuple[str, list[str]]:
    """The config name and the overrides of the first job of a command."""
    args = shlex.split(command)[2:]
    name = "default"
    overrides: list[str] = []
    iterator = iter(args)
    for arg in iterator:
        if arg in ("-c", "--config-name"):
            name = next(iterator)
        elif arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        elif arg in ("-m", "--multirun"):
            continue
        elif "=" in arg:
            key, value = arg.split("=", 1)
            if key.startswith("hydra"):
                continue  # the launcher: nothing to validate in one job
            # a sweep's first value (seed=1,2,3 -> seed=1; range(1,6) -> 1)
            if value.startswith(("range(", "choice(")):
                value = value[value.index("(") + 1 :].split(",")[0].rstrip(")")
            elif "," in value and not value.startswith(("[", "{")):
                value = value.split(",")[0]
            overrides.append(f"{key}={value}")
    return name, overrides


OPTIONAL_PLUGINS = {
    "nip_plugin_image_classification.plugin": "image_classification",
    "nip_plugin_code_validation.plugin": "code_validation",
    "nip_plugin_ei.plugin": "ei",
    "nip_plugin_malt.plugin": "malt",
    "nip_plugin_transformers.plugin": "transformers",
}
"""Plugins of the repository whose documented commands are checked when they are
installed beside these tests."""


@pytest.fixture
def installed(register_plugin: Any, tmp_path: Path, monkeypatch: Any) -> None:
    gi = pytest.importorskip("nip_plugin_graph_isomorphism.plugin")
    import nip_plugin_ppo.plugin

    register_plugin(gi, name="graph_isomorphism")
    register_plugin(nip_plugin_ppo.plugin, name="ppo")
    for module, name in OPTIONAL_PLUGINS.items():
        try:
            plugin = importlib.import_module(module)
        except ImportError:
            continue
        register_plugin(plugin, name=name)
    monkeypatch.chdir(tmp_path)  # no ./configs of the working tree


def test_the_docs_have_run_commands() -> None:
    if not (ROOT / "docs").is_dir():
        pytest.skip("the docs are not next to these tests (an installed wheel)")
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_documented_command_runs_without_an_unasked_warning(
    installed: None, where: str, command: str
) -> None:
    from nip_core.errors import NipConfigError
    from nip_core.plugins import get_plugin_manager
    from nip_core.protocols import build_protocol_handler
    from nip_core.testing.configs import compose_experiment

    name, overrides = _job(command)
    if command in WRONG_ON_PURPOSE:
        with pytest.raises(NipConfigError) as info:
            compose_experiment(name, *overrides)
        assert len(info.value.problems) == WRONG_ON_PURPOSE[command]
        return
    if name.startswith("image_classification/") and (
        "image_classification" not in get_plugin_manager().scenarios
    ):
        pytest.skip("needs nip-plugin-image-classification")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            hyper_params, settings = compose_experiment(name, *overrides)
        except NipConfigError as error:
            missing = re.search(
                r"(nip-plugin-[a-z-]+), which is not installed", str(error)
            )
            if missing is None and "Cannot find primary config" in str(error):
                pytest.skip(f"the config {name!r} comes with a plugin not installed")
            if missing is not None:
                pytest.skip(f"needs {missing.group(1)}")
            raise
        build_protocol_handler(hyper_params, settings)
