"""The complete plugins the docs show work as written.

An outsider copies the code blocks of a page into files and runs the tests they
contain. So do these tests: every Python block of a page whose first line names a
file (``# my_plugin/protocols.py  (imports torch)``) is written to that file in a
temporary directory, and ``pytest`` runs the example's own tests there, in a fresh
process, with nothing but nip-core installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.S)
_FILE_LINE = re.compile(r"^# (?P<path>[\w./]+\.py)\b")


def example_files(page: str, package: str) -> dict[str, str]:
    """The files of a docs page's example: ``{relative path: text}``.

    Only blocks naming a file in ``package/`` or ``tests/`` count; the first of
    several blocks naming one file wins.
    """
    files: dict[str, str] = {}
    for match in _BLOCK.finditer((DOCS / page).read_text()):
        code = match.group("code")
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
