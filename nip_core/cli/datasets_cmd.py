"""``nip datasets generate`` and ``nip datasets list``.

A scenario plugin registers a dataset builder (``register_dataset_builders``) with its
options; the options become flags of ``nip datasets generate SCENARIO NAME``, parsed
with the option's type (``--num-pairs 100`` arrives as ``int``).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from nip_core.settings import (
    DATA_DIR_RULE,
    OWN_DATA_DIR,
    data_dir_or_default,
    holds_dataset,
)

_DATA_DIR_DEST = "_nip_data_dir"
_OVERWRITE_DEST = "_nip_overwrite"


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
    parser.add_argument(
        "--overwrite",
        dest=_OVERWRITE_DEST,
        action="store_true",
        help="replace a dataset of that name that already exists",
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
    overwrite: bool = False,
    stream: TextIO | None = None,
) -> int:
    """Run the scenario's dataset builder with the options given as flags.

    The dataset goes to ``<data_dir>/<scenario>/<name>``, where ``nip run
    dataset=<name>`` finds it. A dataset of that name that exists already is kept
    unless ``overwrite`` (``--overwrite``): then it is replaced, and restored if
    the builder fails.

    Raises
    ------
    UsageError
        When the name is not a plain directory name, or the dataset exists and
        ``overwrite`` is not set (``nip`` exits with 2).
    """
    from nip_core.errors import NipConfigError, UsageError
    from nip_core.plugins import get_plugin_manager
    from nip_core.records import resolve_ref

    stream = stream if stream is not None else sys.stdout
    spec = _builder_spec(scenario)
    parsed = builder_parser(spec).parse_args(list(option_args))
    options = {
        option.name: getattr(parsed, option.name)
        for option in spec.options
        if getattr(parsed, option.name) is not None
    }
    overwrite = overwrite or bool(getattr(parsed, _OVERWRITE_DEST))
    root = data_dir_or_default(getattr(parsed, _DATA_DIR_DEST) or data_dir)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise UsageError(
            f"a dataset name is a plain directory name (used as dataset=NAME in "
            f"configs), not {name!r}"
        )
    if name == OWN_DATA_DIR:
        raise UsageError(
            f"{OWN_DATA_DIR!r} is where {scenario}'s own-data caches live in the data "
            "directory, not a dataset name; choose another name"
        )
    target = root / scenario / name
    # a directory with only processed-data caches (left by runs on a dataset the
    # scenario ships) holds no dataset: it is replaced, caches and all
    if holds_dataset(target) and not overwrite:
        raise UsageError(
            f"the {scenario} dataset {name!r} already exists in {target}; pass "
            "--overwrite to replace it, or choose another name"
        )
    builder = resolve_ref(spec.builder)
    try:
        with _replacing(target):
            path = builder(name, root, **options)
    except NipConfigError as error:
        # a builder's problems name its options: say them as the flags given
        raise NipConfigError(
            [_as_flag(problem, spec.options) for problem in error.problems]
        ) from error
    usage = shlex.quote(f"dataset={name}")
    if root.resolve() != data_dir_or_default(None).resolve():
        # found by name only in the run's data directory
        usage += " " + shlex.quote(f"run.data_dir={root}")
    stream.write(
        f"nip: wrote the {scenario} dataset {name!r} to {path}; use it with {usage}\n"
    )
    scenario_spec = get_plugin_manager().scenarios.get(scenario, None)
    if scenario_spec is not None and name in scenario_spec.datasets:
        stream.write(
            f"nip: warning: {name!r} is also the name of a dataset the {scenario} "
            f"scenario provides; runs with this data directory ({root}) now use the "
            "one just written instead\n"
        )
    return 0


def _as_flag(problem: Any, options: Sequence[Any]) -> Any:
    """``problem`` with a path that names a builder option (``base_url``) as its
    flag (``--base-url``)."""
    import attrs

    head, dot, rest = str(problem.path).partition(".")
    if head not in {option.name for option in options}:
        return problem
    return attrs.evolve(problem, path=option_flag(head) + dot + rest)


def _builder_spec(scenario: str) -> Any:
    from nip_core.errors import MissingPluginError
    from nip_core.plugin_catalogue import missing_key_hint
    from nip_core.plugins import get_plugin_manager

    pm = get_plugin_manager()
    builders = pm.dataset_builders
    if scenario in builders:
        return builders[scenario]
    spec = pm.scenarios.get(scenario, None)
    if spec is not None:
        from nip_core.errors import UsageError

        # the scenario is installed: it has no builder, not a missing plugin
        named = ", ".join(spec.datasets) or "none"
        with_builders = ", ".join(sorted(builders)) or "none"
        raise UsageError(
            f"scenario {scenario!r} has no dataset builder: it reads its named "
            f"datasets ({named}); see `nip datasets list` and the scenario's page "
            f"for where their files go. Scenarios with a builder: {with_builders}"
        )
    hint = missing_key_hint("dataset_builder", scenario)
    if hint is None:
        from nip_core.errors import UnknownKeyError, UsageError

        try:
            return builders[scenario]
        except UnknownKeyError as error:
            # a name given on the command line: a usage error (exit status 2)
            raise UsageError(str(error)) from None
    raise MissingPluginError(f"no dataset builder for scenario {scenario!r}: {hint}")


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[None]:
    """Move an existing ``target`` aside while the block builds a new one; delete
    it afterwards, or put it back when the block fails."""
    if not target.exists():
        yield
        return
    aside = target.with_name(f".{target.name}.replaced")
    if aside.exists():
        shutil.rmtree(aside)
    target.rename(aside)
    try:
        yield
    except BaseException:
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        aside.rename(target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def list_datasets(*, data_dir: str | None = None, stream: TextIO | None = None) -> int:
    """List every scenario's named datasets, builders and datasets on disk."""
    from nip_core.parameters.hyper_parameters import datasets_on_disk
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
        # generated datasets are on disk, and used by name like the named ones;
        # a scenario that reads only its named sets reads no other folder there
        on_disk = datasets_on_disk(scenario.name, root)
        if not scenario.own_datasets:
            on_disk = [name for name in on_disk if name in scenario.datasets]
        stream.write(f"  on disk:         {', '.join(on_disk) or '-'}\n")
        if not scenario.own_datasets:
            stream.write("  own data:        - (only the named datasets)\n")
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
