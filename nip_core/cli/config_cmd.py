"""``nip config show`` and ``nip config validate``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

import yaml

from nip_core.cli import compose as composer
from nip_core.errors import ConfigProblem, NipConfigError
from nip_core.settings import check_device


def dump_yaml(data: Any) -> str:
    """YAML in the order of the data (the order of the parameter classes)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def used_sections(hyper_params: Any) -> set[str]:
    """The sections a run reads, or has been given other values than the defaults.

    Read: the sections of its trainer, protocol, scenario, mode and text backends
    (:func:`~nip_core.parameters.usage.read_sections`), ``protocol_common`` and the
    core's ``dataset_options``. A section with any value changed from its default
    is shown whatever reads it, so a config never hides what it sets.
    """
    from nip_core.parameters.usage import read_sections

    used = {"protocol_common", "dataset_options"} | read_sections(hyper_params)
    for name, section in hyper_params.sections.items():
        if name not in used and section != type(section)():
            used.add(name)
    return used


def show(
    config_name: str | None,
    overrides: list[str],
    *,
    raw: bool = False,
    show_all: bool = False,
    stream: TextIO | None = None,
) -> int:
    """Print the composed config: validated, as the run uses it (every section with
    ``show_all``), or (``raw``) as composed."""
    from nip_core.cli.run_cmd import compose_for_run

    stream = stream if stream is not None else sys.stdout
    with composer.hydra_app() as app:
        cfg = compose_for_run(app, config_name, overrides)
        config = composer.to_plain_dict(cfg)
    if raw:
        stream.write(dump_yaml(config))
        return 0
    hyper_params, settings = composer.build_experiment(
        config, config_name=config_name or composer.DEFAULT_CONFIG_NAME
    )
    # what `nip run` would run here: a device this machine lacks is an error
    check_device(settings)
    data = composer.experiment_to_dict(hyper_params, settings)
    hidden: list[str] = []
    hidden_fields: list[str] = []
    hidden_agent_fields: dict[str, list[str]] = {}
    if not show_all:
        used = used_sections(hyper_params)
        hidden = [name for name in hyper_params.sections if name not in used]
        hidden_fields = unused_fields(hyper_params)
        data = {
            key: value
            for key, value in data.items()
            if key not in hidden and key not in hidden_fields
        }
        hidden_agent_fields = unused_agent_fields(hyper_params)
        agents = data.get("agents")
        if isinstance(agents, dict):
            for key, names in hidden_agent_fields.items():
                if isinstance(agents.get(key), dict):
                    agents[key] = {
                        k: v for k, v in agents[key].items() if k not in names
                    }
    stream.write(dump_yaml(data))
    if hidden:
        stream.write(
            f"# {len(hidden)} section{'s' if len(hidden) != 1 else ''} this run does "
            f"not read, at their defaults, not shown ({', '.join(sorted(hidden))}); "
            "`nip config show --all` shows them\n"
        )
    if hidden_fields:
        stream.write(
            f"# {len(hidden_fields)} field{'s' if len(hidden_fields) != 1 else ''} "
            f"this run does not read, at their defaults, not shown "
            f"({', '.join(hidden_fields)}); `nip config show --all` shows them\n"
        )
    agent_fields = sorted({n for names in hidden_agent_fields.values() for n in names})
    if agent_fields:
        stream.write(
            f"# {len(agent_fields)} agent field{'s' if len(agent_fields) != 1 else ''}"
            " this run does not read (the tensor world's), at their defaults, not "
            f"shown ({', '.join(agent_fields)}); `nip config show --all` shows them\n"
        )
    return 0


def unused_fields(hyper_params: Any) -> list[str]:
    """The fields of the hyper-parameters themselves that a run does not read
    (:func:`~nip_core.parameters.usage.unread_fields`: the tensor world's in a text
    run) and that are at their defaults: a field set is always shown."""
    import attrs

    from nip_core.parameters.usage import unread_fields

    fields = attrs.fields_dict(type(hyper_params))
    hidden = []
    for name in unread_fields(hyper_params):
        default = fields[name].default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            continue
        if getattr(hyper_params, name) == default:
            hidden.append(name)
    return hidden


def unused_agent_fields(hyper_params: Any) -> dict[str, list[str]]:
    """Per agent key (``_default`` included), the fields of its parameters that a
    run does not read (:func:`~nip_core.parameters.usage.unread_agent_fields`: the
    tensor world's in a text run) and that are at their defaults: a field set is
    always shown."""
    from nip_core.parameters.usage import agent_fields_at_default, unread_agent_fields

    fields = agent_fields_at_default(
        hyper_params.agents, unread_agent_fields(hyper_params)
    )
    hidden = {
        key: [name for name, at_default in found.items() if at_default]
        for key, found in fields.items()
    }
    return {key: names for key, names in hidden.items() if names}


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a config file as a plain dict.

    A file with a ``defaults:`` list is composed by Hydra, with its own directory
    searched first (then ``./configs``, the plugins' and the core's directories). A
    file without one (a config printed by ``nip config show``, a run's
    ``hyper_params.json``) is read as it is.

    Raises
    ------
    NipConfigError
        When the file is missing, is not YAML/JSON, or is not a mapping.
    """
    if path.is_dir():
        raise NipConfigError(
            ConfigProblem(
                path="",
                message=f"{path} is a directory; name a config file (YAML, or a "
                "run's hyper_params.json)",
            )
        )
    if not path.is_file():
        raise NipConfigError(ConfigProblem(path="", message=f"no such file: {path}"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise NipConfigError(
            ConfigProblem(
                path="",
                message=f"cannot read the config {path}: {error} (save it as UTF-8)"
                if isinstance(error, UnicodeDecodeError)
                else f"cannot read the config {path}: {error}",
            )
        ) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise NipConfigError(
                ConfigProblem(path="", message=f"{path} is not valid JSON: {error}")
            ) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise NipConfigError(
                ConfigProblem(
                    path="", message=composer.describe_yaml_error(error, path)
                )
            ) from None
    if not isinstance(data, dict):
        raise NipConfigError(
            ConfigProblem(
                path="",
                message=f"{path} must hold a mapping of config keys, "
                f"not {type(data).__name__}",
            )
        )
    if "defaults" not in data:
        return {str(key): value for key, value in data.items()}
    if path.suffix not in (".yaml", ".yml"):
        raise NipConfigError(
            ConfigProblem(
                path="defaults",
                message="a config with a defaults list is composed by Hydra, which "
                f"reads only .yaml files; rename {path.name}",
            )
        )
    with composer.hydra_app(first=[path.parent]) as app:
        cfg = composer.compose(app, path.stem)
        return composer.to_plain_dict(cfg)


def validate_named(
    config_name: str, overrides: list[str], *, stream: TextIO | None = None
) -> int:
    """Validate a named config with overrides, composed as ``nip run`` composes
    it; say what it runs when it is valid."""
    from nip_core.cli.run_cmd import compose_for_run

    stream = stream if stream is not None else sys.stdout
    with composer.hydra_app() as app:
        config = composer.to_plain_dict(compose_for_run(app, config_name, overrides))
    hyper_params, settings = composer.build_experiment(config, config_name=config_name)
    check_device(settings)
    _warn_as_a_run_would(hyper_params)
    given = " ".join(composer.display_override(o) for o in overrides)
    stream.write(
        f"config {config_name}{' ' + given if given else ''}: valid "
        f"({_summary(hyper_params)})\n"
    )
    return 0


def _warn_as_a_run_would(hyper_params: Any) -> None:
    """Give the warnings a run of ``hyper_params`` gives before it starts that
    its validation does not (the protocol's: rounds the verifier can never read):
    built as the run builds it, the protocol handler says them."""
    from nip_core.protocols.factory import build_protocol_handler

    build_protocol_handler(hyper_params)


def _summary(hyper_params: Any) -> str:
    return ", ".join(
        f"{key} {getattr(hyper_params, key)}"
        for key in ("scenario", "trainer", "interaction_protocol", "dataset")
        if getattr(hyper_params, key, None) is not None
    )


def validate(file: str, *, stream: TextIO | None = None) -> int:
    """Validate a config file; say what it runs when it is valid."""
    stream = stream if stream is not None else sys.stdout
    path = Path(file)
    config = load_config_file(path)
    # a JSON file is a saved dict (a run's hyper_params.json, the original
    # library's): converted as loading a run converts it
    hyper_params, _ = composer.build_experiment(
        config, saved=path.suffix.lower() == ".json"
    )
    _warn_as_a_run_would(hyper_params)
    stream.write(f"{path}: valid ({_summary(hyper_params)})\n")
    return 0
