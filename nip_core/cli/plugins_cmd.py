"""``nip plugins [--json]``: the built-in and installed plugins and what they register.

Light on purpose: it imports the plugin manager and the plugins' entry modules only
(which must not import torch), so it answers in well under a second.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from nip_core.errors import NipWarning
from nip_core.plugins import (
    ENV_STRICT,
    NipPluginManager,
    PluginInfo,
    PluginWarning,
    get_plugin_manager,
)


def install_plugin_warning_format() -> None:
    """Show nip's warnings on the command line as ``nip: warning: ...``.

    Python's default format adds the file and line of the manager's code, which
    means nothing to a user. Other warnings keep their format. Idempotent.
    """
    current = warnings.formatwarning
    if getattr(current, "_nip_plugin_format", False):
        return

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, PluginWarning | NipWarning):
            from nip_core.settings import redact_secrets

            # (a credential's value shown as its variable's name)
            return f"nip: warning: {redact_secrets(str(message))}\n"
        return current(message, category, filename, lineno, line)

    formatwarning._nip_plugin_format = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning


_MAX_KEYS = 8
"""Keys shown per kind in the table before ``... (N more)``; ``--json`` has all."""


def run_plugins_command(
    as_json: bool = False,
    file: TextIO | None = None,
    manager: NipPluginManager | None = None,
) -> int:
    """Print the plugins table (or JSON) and return the exit status.

    Parameters
    ----------
    as_json : bool
        Print a JSON list with one object per plugin (``name``, ``distribution``,
        ``version``, ``status``, ``error``, ``builtin``, ``entry_point``,
        ``contributions``: kind to list of keys) instead of the table.
    file : TextIO | None
        Where to print (standard output by default).
    manager : NipPluginManager | None
        The manager to describe (the process-wide one by default).

    Returns
    -------
    int
        0 when every plugin works, 1 when one is broken or two register one key
        (so ``nip plugins`` can serve as a health check in CI).
    """
    out = sys.stdout if file is None else file
    # Broken plugins are shown in the listing itself; the warnings would repeat them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        pm = get_plugin_manager() if manager is None else manager
        infos = pm.plugin_infos()
    if as_json:
        json.dump([info.to_dict() for info in infos], out, indent=2)
        out.write("\n")
    else:
        out.write(format_plugins_table(infos))
    healthy = not find_conflicts(infos) and all(i.status != "broken" for i in infos)
    return 0 if healthy else 1


def _registers_lines(info: PluginInfo) -> list[str]:
    lines = []
    for kind, keys in info.contributions.items():
        shown = ", ".join(keys[:_MAX_KEYS])
        if len(keys) > _MAX_KEYS:
            shown += f", ... ({len(keys) - _MAX_KEYS} more)"
        lines.append(f"{kind}: {shown}")
    if not lines:
        if info.status in ("ok", "conflict"):
            lines.append("-")
        else:
            lines.append(f"(nothing: {info.status})")
    return lines


def find_conflicts(infos: Sequence[PluginInfo]) -> dict[tuple[str, str], list[str]]:
    """``(kind, key)`` registered by more than one working plugin, to their names."""
    found: dict[tuple[str, str], list[str]] = {}
    for info in infos:
        for kind, keys in info.conflicts.items():
            for key, names in keys.items():
                found[(kind, key)] = list(names)
    return dict(sorted(found.items()))


def format_plugins_table(infos: Sequence[PluginInfo]) -> str:
    """The human-readable listing ``nip plugins`` prints."""
    header = ("NAME", "DISTRIBUTION", "VERSION", "STATUS", "REGISTERS")
    rows = []
    for info in infos:
        registers = _registers_lines(info)
        rows.append(
            (
                info.name,
                info.distribution or "-",
                info.version or "-",
                info.status,
                registers,
            )
        )
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) for i in range(4)]

    def line(cells: Sequence[str], registers: str) -> str:
        text = "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True))
        return f"{text}  {registers}".rstrip() + "\n"

    parts = [line(header[:4], header[4])]
    for *cells, registers in rows:
        parts.append(line(cells, registers[0]))
        for extra in registers[1:]:
            parts.append(line([""] * 4, extra))

    conflicts = find_conflicts(infos)
    if conflicts:
        parts.append(
            "\nConflicts (a key registered by several plugins cannot be used; "
            "every other key works):\n"
        )
        for (kind, key), names in conflicts.items():
            parts.append(f"  {kind} {key!r}: {', '.join(names)}\n")
    broken = [i for i in infos if i.status == "broken"]
    disabled = [i for i in infos if i.status == "disabled"]
    if broken:
        parts.append("\nBroken plugins (skipped; the others work):\n")
        for info in broken:
            where = info.distribution or "unknown distribution"
            if info.version:
                where += f" {info.version}"
            parts.append(f"  {info.name} ({where}): {info.error}\n")
        parts.append(
            "Fix or uninstall them, or disable one with NIP_DISABLED_PLUGINS=<name>; "
            f"{ENV_STRICT}=1 makes a broken plugin an error.\n"
        )
    if disabled:
        parts.append("\nDisabled plugins:\n")
        for info in disabled:
            parts.append(f"  {info.name}: {info.error}\n")
    return "".join(parts)
