"""`nip --help` and `nip plugins` stay light: no torch, quick answers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = """
import sys, time
start = time.perf_counter()
from nip_core.cli.main import main
try:
    status = main({argv!r})
except SystemExit as exit:
    status = exit.code
elapsed = time.perf_counter() - start
print("@@", status, "torch" in sys.modules, "hydra" in sys.modules, elapsed)
"""


def probe(argv: list[str]) -> tuple[int, bool, bool, float, str]:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    marker = [line for line in completed.stdout.splitlines() if line.startswith("@@")]
    assert marker, completed.stdout + completed.stderr
    _, status, torch_loaded, hydra_loaded, elapsed = marker[-1].split()
    return (
        int(status),
        torch_loaded == "True",
        hydra_loaded == "True",
        float(elapsed),
        completed.stdout,
    )


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["config", "show", "--help"]]
)
def test_help_imports_neither_torch_nor_hydra(argv):
    status, torch_loaded, hydra_loaded, elapsed, output = probe(argv)
    assert status == 0
    assert "usage: nip" in output
    assert not torch_loaded
    assert not hydra_loaded
    # "well under a second" on a quiet machine; loose for a busy two-core runner
    assert elapsed < 2.0


def test_plugins_command_does_not_import_torch():
    status, torch_loaded, _, elapsed, output = probe(["plugins", "--json"])
    # 1 says a plugin is broken: the installed plugins decide that, not this test
    assert status in (0, 1)
    assert not torch_loaded
    assert elapsed < 3.0
    payload = output[: output.index("@@")]
    names = [plugin["name"] for plugin in json.loads(payload)]
    assert "nip-core.configs" in names


def test_console_script_answers():
    completed = subprocess.run(
        [sys.executable, "-m", "nip_core.cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0
    assert completed.stdout.startswith("nip ")
