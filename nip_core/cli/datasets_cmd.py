"""``nip datasets generate`` and ``nip datasets list``.

A scenario plugin registers a dataset builder (``register_dataset_builders``) with its
options; the options become flags of ``nip datasets generate SCENARIO NAME``, parsed
with the option's type (``--num-pairs 100`` arrives as ``int``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from nip_core.settings import DATA_DIR_RULE, data_dir_or_default

_DATA_DIR_DEST = "_nip_data_dir"


def option_flag(name: str) -> str:
    """The flag of a builder option: ``num_pairs`` -> ``--num-pairs``."""
    return "--" + name.replace("_", "-")


def builder_parser(spec: Any) -> argparse.ArgumentParser:
    """The parser of one builder's options (its flags, types, defaults and help)."""
    parser = argparse.ArgumentParser(
        prog=f"nip datasets generate {spec.scenario} NAME",
        description=spec.description or f"Generate a {spec.scenario} dataset.",
    )
    # also here, as REMAINDER hands everything after NAME to this parser
    parser.add_argument(
        "--data-dir",
        dest=_DATA_DIR_DEST,
        metavar="DIR",
        help=f"where to write it (default: {DATA_DIR_RULE})",
    )
    for option in spec.options:
        kwargs: dict[str, Any] = {"dest": option.name, "default": option.default}
        help_text = option.help or ""
        if option.default is not None:
            help_text += f" (default: {option.default})"
        kwargs["help"] = help_text.strip() or None
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = option.type
            kwargs["metavar"] = option.name.upper()
        parser.add_argument(option_flag(option.name), **kwargs)
    return parser


def generate(
    scenario: str,
    name: str,
    option_args: Sequence[str],
    *,
    data_dir: str | None = None,
    stream: TextIO | None = None,
) -> int:
    """Run the scenario's dataset builder with the options given as flags."""
    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref

    stream = stream if stream is not None else sys.stdout
    spec = get_plugin_manager().dataset_builders[scenario]
    parsed = builder_parser(spec).parse_args(list(option_args))
    options = {
        option.name: getattr(parsed, option.name)
        for option in spec.options
        if getattr(parsed, option.name) is not None
    }
    root = data_dir_or_default(getattr(parsed, _DATA_DIR_DEST) or data_dir)
    builder = resolve_ref(spec.builder)
    path = builder(name, root, **options)
    stream.write(f"nip: wrote the {scenario} dataset {name!r} to {path}\n")
    return 0


def list_datasets(*, data_dir: str | None = None, stream: TextIO | None = None) -> int:
    """List every scenario's named datasets, builders and datasets on disk."""
    from nip_core.plugins import get_plugin_manager

    stream = stream if stream is not None else sys.stdout
    pm = get_plugin_manager()
    root = data_dir_or_default(data_dir)
    if len(pm.scenarios) == 0:
        stream.write(
            "No scenario is installed; install a scenario plugin "
            "(e.g. pip install nip-plugin-graph-isomorphism).\n"
        )
        return 0
    stream.write(f"data directory: {root}\n")
    for scenario in pm.scenarios.values():
        stream.write(f"\n{scenario.name} ({scenario.plugin})\n")
        if scenario.default_dataset:
            stream.write(f"  default dataset: {scenario.default_dataset}\n")
        if scenario.datasets:
            stream.write(f"  named datasets:  {', '.join(scenario.datasets)}\n")
        on_disk_dir = root / scenario.name
        on_disk = (
            sorted(p.name for p in on_disk_dir.iterdir() if p.is_dir())
            if on_disk_dir.is_dir()
            else []
        )
        stream.write(f"  on disk:         {', '.join(on_disk) or '-'}\n")
        builder = pm.dataset_builders.get(scenario.name, None)
        if builder is None:
            stream.write("  builder:         -\n")
        else:
            flags = " ".join(
                f"[{option_flag(o.name)} {o.type.__name__.upper()}]"
                for o in builder.options
            )
            command = f"nip datasets generate {scenario.name} NAME {flags}"
            stream.write(f"  builder:         {command}\n")
    return 0
