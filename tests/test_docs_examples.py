"""The complete plugins the docs show work as written.

An outsider copies the code blocks of a page into files and runs the tests they
contain. So do these tests: every Python block of a page whose first line names a
file (``# my_plugin/protocols.py  (imports torch)``) is written to that file in a
temporary directory, and ``pytest`` runs the example's own tests there, in a fresh
process, with nothing but nip-core installed.

The plugin tutorial (``docs/writing-a-plugin.md``) is followed step by step instead,
as a newcomer follows it: from a copy of ``plugins/_template``, its commands are run
in order, every block titled with a file (``title="src/.../plugin.py"``) is written
to that file, an excerpt (``title="pyproject.toml (excerpt)"``) must be in the file,
and the commands shown with their output (``$ nip plugins``) must print that output
(``...`` stands for lines left out). ``pip install`` is played by a distribution
written from the plugin's ``pyproject.toml`` onto ``PYTHONPATH``, so nothing is
installed into the environment running the tests.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
TEMPLATE = ROOT / "plugins" / "_template"
_FENCE = re.compile(
    r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.S | re.M
)
_TITLE = re.compile(r'\btitle="(?P<title>[^"]+)"')
_FILE_LINE = re.compile(r"^# (?P<path>[\w./]+\.py)\b")
_EXCERPT = " (excerpt)"


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block of a docs page."""

    lang: str
    title: str | None
    code: str


def page_blocks(page: str, *, start: str = "", end: str | None = None) -> list[Block]:
    """The code blocks of a docs page, in order, between the headings ``start``
    and ``end`` (lines beginning with them; the whole page by default)."""
    text = (DOCS / page).read_text()
    if start:
        text = text[text.index(f"\n{start}") :]
    if end is not None:
        text = text[: text.index(f"\n{end}")]
    blocks = []
    for match in _FENCE.finditer(text):
        title = _TITLE.search(match.group("info"))
        blocks.append(
            Block(
                match.group("lang"),
                title.group("title") if title else None,
                match.group("code"),
            )
        )
    return blocks


def example_files(page: str, package: str) -> dict[str, str]:
    """The files of a docs page's example: ``{relative path: text}``.

    Only Python blocks naming a file in ``package/`` or ``tests/`` count; the first
    of several blocks naming one file wins.
    """
    files: dict[str, str] = {}
    for block in page_blocks(page):
        if block.lang != "python":
            continue
        code = block.code
        first = code.splitlines()[0] if code.strip() else ""
        named = _FILE_LINE.match(first)
        if named is None:
            continue
        path = named.group("path")
        if path.split("/")[0] in (package, "tests"):
            files.setdefault(path, code)
    return files


def _run_example(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess:
    for relative, text in files.items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    env.update(NIP_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS="1")
    env.pop("NIP_STRICT_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-x", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_the_relay_protocol_plugin_of_the_protocols_page(tmp_path: Path) -> None:
    files = example_files("protocols.md", "my_plugin")
    assert set(files) == {
        "my_plugin/__init__.py",
        "my_plugin/parameters.py",
        "my_plugin/protocols.py",
        "my_plugin/plugin.py",
        "tests/test_relay.py",
    }
    result = _run_example(tmp_path, files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


@pytest.mark.slow
def test_the_a2c_trainer_plugin_of_the_trainer_page(tmp_path: Path) -> None:
    files = example_files("writing-a-trainer.md", "my_a2c")
    assert set(files) == {
        "my_a2c/__init__.py",
        "my_a2c/parameters.py",
        "my_a2c/trainer.py",
        "my_a2c/plugin.py",
        "tests/test_a2c.py",
    }
    result = _run_example(tmp_path, files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


# -------------------------------------------------------------------------------------
# The plugin tutorial, followed literally
# -------------------------------------------------------------------------------------

PLUGIN_PAGE = "writing-a-plugin.md"
LAST_STEP = "## 7."
"""The heading after the steps a reader follows (what follows shows other hooks)."""


class _Reader:
    """Follows a tutorial's blocks in order, in a terminal that starts in ``root``."""

    def __init__(self, root: Path) -> None:
        self.cwd = root
        self.installed: list[Path] = []
        self.plugin_names: list[str] = []
        self.commands: list[str] = []

    def follow(self, block: Block) -> None:
        if block.lang == "console":
            if any(line.startswith("$ ") for line in block.code.splitlines()):
                self._session(block.code)
            else:
                self._commands(block.code)
        elif block.title is not None and block.title.endswith(_EXCERPT):
            self._excerpt(block.title.removesuffix(_EXCERPT), block.code)
        elif block.title is not None:
            target = self.cwd / block.title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code)
        elif block.lang == "":
            self._layout(block.code)
        else:
            raise AssertionError(
                f"a {block.lang} block that names no file: a reader cannot tell "
                f"where it goes:\n{block.code}"
            )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(path) for path in self.installed]
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [*paths, env.get("PYTHONPATH", "")])
        )
        for name in ("NIP_PLUGINS", "NIP_DISABLE_PLUGIN_AUTOLOAD"):
            env.pop(name, None)
        # the tutorial's plugin only: what else is installed here stays out
        if self.plugin_names:
            env["NIP_PLUGINS"] = ",".join(self.plugin_names)
        else:
            env["NIP_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        env.pop("NIP_DISABLED_PLUGINS", None)
        env.update(NIP_STRICT_PLUGINS="1", OMP_NUM_THREADS="1")
        return env

    def _commands(self, code: str) -> None:
        """Shell commands without output: run them as one terminal session."""
        self.commands += [line for line in code.splitlines() if line.strip()]
        result = subprocess.run(
            ["bash", "-e", "-c", f'{code}\necho "$PWD"'],
            cwd=self.cwd,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{code}\n{result.stdout}{result.stderr}"
        self.cwd = Path(result.stdout.splitlines()[-1])

    def _session(self, code: str) -> None:
        """``$ command`` lines, each with the output the page shows under it."""
        steps: list[tuple[str, list[str]]] = []
        for line in code.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        for command, shown in steps:
            self.commands.append(command)
            words = shlex.split(command)
            if words[:3] == ["pip", "install", "-e"]:
                self._install(words[3])
                continue
            if words == ["pytest"]:
                argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            elif words[0] == "nip":
                argv = [sys.executable, "-m", "nip_core.cli.main", *words[1:]]
            else:
                raise AssertionError(f"the test does not know how to run: {command}")
            result = subprocess.run(
                argv,
                cwd=self.cwd,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=600,
            )
            output = result.stdout + result.stderr
            assert result.returncode == 0, f"$ {command}\n{output}"
            _assert_shows(command, shown, result.stdout)

    def _install(self, target: str) -> None:
        """``pip install -e .[extra]`` of the plugin in the current directory."""
        from nip_core.testing.fixtures import make_plugin_distribution

        path, _, extras = target.partition("[")
        assert Path(path) == Path("."), target
        project = tomllib.loads((self.cwd / "pyproject.toml").read_text())["project"]
        for extra in filter(None, extras.rstrip("]").split(",")):
            assert extra in project.get("optional-dependencies", {}), extra
        entry_points = project["entry-points"]["nip_core.plugins"]
        site = self.cwd.parent / f"site-{project['name']}"
        make_plugin_distribution(
            site, project["name"], project["version"], entry_points
        )
        self.installed += [site, self.cwd / "src"]
        self.plugin_names += list(entry_points)

    def _excerpt(self, relative: str, code: str) -> None:
        """Every line of the excerpt is in the file, in order."""
        lines = (self.cwd / relative).read_text().splitlines()
        position = 0
        for line in code.splitlines():
            if not line.strip():
                continue
            assert line in lines[position:], f"{relative} has no line {line!r}"
            position = lines.index(line, position) + 1

    def _layout(self, code: str) -> None:
        """A listing of files (``dir/`` followed by indented names) that exist."""
        directory = Path()
        for line in code.splitlines():
            if not line.strip():
                continue
            name = line.split()[0]
            if not line.startswith(" "):
                directory = Path(name) if name.endswith("/") else Path()
            path = self.cwd / (directory / name if line.startswith(" ") else name)
            assert path.exists(), f"the page lists {name}, which is not there"


def _assert_shows(command: str, shown: list[str], output: str) -> None:
    """The output holds the shown lines in order (``...``: lines left out), with
    columns compared as words."""

    def words(line: str) -> str:
        return " ".join(line.split())

    got = [words(line) for line in output.splitlines()]
    chunks: list[list[str]] = [[]]
    for line in shown:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(words(line))
    position = 0
    for chunk in filter(None, chunks):
        for start in range(position, len(got) - len(chunk) + 1):
            if got[start : start + len(chunk)] == chunk:
                position = start + len(chunk)
                break
        else:
            raise AssertionError(
                f"$ {command} does not print, in order:\n"
                + "\n".join(chunk)
                + f"\n\nit prints:\n{output}"
            )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="the commands need bash")
def test_the_plugin_tutorial_works_followed_literally(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(
        TEMPLATE,
        checkout / "plugins" / "_template",
        ignore=shutil.ignore_patterns("__pycache__", ".*_cache", "*.egg-info"),
    )
    reader = _Reader(checkout)
    for block in page_blocks(PLUGIN_PAGE, end=LAST_STEP):
        reader.follow(block)
    # every command the page runs was run (a new kind fails above, unknown)
    assert "pytest" in reader.commands
    assert reader.plugin_names == ["mytask"]
    assert reader.cwd == checkout / "nip-plugin-mytask"
    assert not (reader.cwd / "tests" / "test_template.py").exists()


def test_the_plugin_tutorial_registers_what_step_7_shows(plugin_manager) -> None:
    """The records of the last part (scenario, trainer, protocol) are valid and
    register, though the classes they name exist only in the reader's plugin."""
    from nip_core import hookimpl

    namespace: dict[str, object] = {"hookimpl": hookimpl}
    blocks = page_blocks(PLUGIN_PAGE, start=LAST_STEP, end="## Checklist")
    for block in blocks:
        if block.lang == "python":
            exec(compile(block.code, PLUGIN_PAGE, "exec"), namespace)
    hooks = {k: v for k, v in namespace.items() if k.startswith("register_")}
    plugin_manager.register(types.SimpleNamespace(**hooks), name="mytask")
    (info,) = [i for i in plugin_manager.plugin_infos() if i.name == "mytask"]
    assert info.status == "ok", info.error
    assert info.contributions == {
        "scenario": ("mytask",),
        "agent_part": (
            "mytask/body",
            "mytask/policy_head",
            "mytask/solo_head",
            "mytask/value_head",
        ),
        "dataset_builder": ("mytask",),
        "trainer": ("my_trainer",),
        "protocol": ("two_provers",),
    }
