"""Hydra config composition for the ``nip`` command.

Hydra composes YAML configs; the attrs/cattrs parameter tree is the schema. This module
builds Hydra's search path from

1. ``./configs`` under the working directory (when it exists),
2. every plugin's config directory (the ``register_config_dirs`` hook), and
3. the core's own directory ``nip_core/configs/`` (last, so anything can shadow it),

composes a config with Hydra's override grammar, and turns the result into a validated
:class:`~nip_core.parameters.HyperParameters` (everything but ``run:`` and ``hydra:``)
and :class:`~nip_core.settings.ExperimentSettings` (the ``run:`` key).

Hydra is imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from nip_core.errors import ConfigProblem, NipConfigError

if TYPE_CHECKING:
    from hydra._internal.hydra import Hydra

    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings

HYDRA_VERSION_BASE = "1.3"
"""The Hydra defaults we follow (no change of working directory per job, ...)."""

TASK_NAME = "nip"
"""Hydra's job name: names the log file of each multirun job."""

DEFAULT_CONFIG_NAME = "default"
"""The config ``nip run`` composes when no ``--config-name`` is given."""

USER_CONFIG_DIR = "configs"
"""The user's config directory, relative to the working directory; searched first."""

RUN_KEY = "run"
"""The key of the run settings (:class:`~nip_core.settings.ExperimentSettings`)."""

HYDRA_KEY = "hydra"


@attrs.frozen
class SearchDir:
    """One directory of Hydra's search path.

    Parameters
    ----------
    origin : str
        Who put it there: ``"./configs"``, a plugin's config-dir key, ``"nip-core"``.
    path : Path
        The directory.
    """

    origin: str
    path: Path


def config_search_dirs(cwd: str | os.PathLike[str] | None = None) -> list[SearchDir]:
    """The config directories, in the order Hydra searches them.

    A config name found in an earlier directory shadows the same name in a later one.

    Parameters
    ----------
    cwd : path-like | None
        The directory whose ``configs/`` comes first; the working directory by
        default.
    """
    from nip_core.builtin.configs import CORE_CONFIG_DIR
    from nip_core.plugins import PluginWarning, get_plugin_manager

    dirs: list[SearchDir] = []
    user_dir = Path(cwd if cwd is not None else os.getcwd()) / USER_CONFIG_DIR
    if user_dir.is_dir():
        dirs.append(SearchDir(f"./{USER_CONFIG_DIR}", user_dir.resolve()))

    plugin_dirs: list[SearchDir] = []
    core_dirs: list[SearchDir] = []
    registry = get_plugin_manager().config_dirs
    for name in registry.conflicts:
        warnings.warn(
            f"config directories are not searched: {registry.conflict_error(name)}",
            PluginWarning,
            stacklevel=2,
        )
    for spec in registry.values():
        path = Path(spec.path)
        if not path.is_dir():
            warnings.warn(
                f"the config directory {spec.path!r} registered by plugin "
                f"{spec.plugin!r} (as {spec.name!r}) does not exist; it is skipped",
                stacklevel=2,
            )
            continue
        entry = SearchDir(spec.name, path.resolve())
        if entry.path == CORE_CONFIG_DIR:
            core_dirs.append(entry)
        else:
            plugin_dirs.append(entry)
    return dirs + plugin_dirs + core_dirs


@contextlib.contextmanager
def hydra_app(
    search_dirs: Sequence[SearchDir] | None = None,
    *,
    first: Sequence[Path] = (),
) -> Iterator[Hydra]:
    """A Hydra application over the nip config search path.

    Parameters
    ----------
    search_dirs : Sequence[SearchDir] | None
        The directories to search; :func:`config_search_dirs` by default.
    first : Sequence[Path]
        Directories to search before all others (``nip config validate FILE`` puts
        the file's directory here).

    Yields
    ------
    hydra._internal.hydra.Hydra
        Registered as Hydra's global instance until the context ends.
    """
    from hydra import version
    from hydra._internal.config_search_path_impl import ConfigSearchPathImpl
    from hydra._internal.hydra import Hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    version.setbase(HYDRA_VERSION_BASE)
    if search_dirs is None:
        search_dirs = config_search_dirs()

    search_path = ConfigSearchPathImpl()
    search_path.append("hydra", "pkg://hydra.conf")
    for path in first:
        search_path.append("nip-cli", f"file://{Path(path).resolve()}")
    for entry in search_dirs:
        search_path.append(f"nip:{entry.origin}", f"file://{entry.path}")
    # the same extension point Hydra's own entry point honours
    for plugin_class in Plugins.instance().discover(SearchPathPlugin):
        plugin_class().manipulate_search_path(search_path)
    search_path.append("schema", "structured://")

    GlobalHydra.instance().clear()
    try:
        with hydra_errors():
            app = Hydra.create_main_hydra2(
                task_name=TASK_NAME, config_search_path=search_path
            )
        yield app
    finally:
        GlobalHydra.instance().clear()


HYDRA_PLUGIN_PACKAGES: Mapping[str, str] = {
    "hydra/launcher/joblib": "nip-core[joblib]",
    "hydra/launcher/submitit_local": "nip-core[submitit]",
    "hydra/launcher/submitit_slurm": "nip-core[submitit]",
    "hydra/launcher/ray": "nip-core[ray]",
    "hydra/launcher/rq": "hydra-rq-launcher",
    "hydra/sweeper/optuna": "hydra-optuna-sweeper",
    "hydra/sweeper/ax": "hydra-ax-sweeper",
    "hydra/sweeper/nevergrad": "hydra-nevergrad-sweeper",
}
"""Hydra's launcher and sweeper configs to the package that provides each."""


@contextlib.contextmanager
def hydra_errors() -> Iterator[None]:
    """Turn Hydra's, OmegaConf's and YAML errors into :class:`NipConfigError`.

    A config file that is not valid YAML is reported with its path, line and column;
    a missing Hydra launcher or sweeper with the package that provides it.
    """
    import yaml
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except yaml.YAMLError as error:
        raise NipConfigError(
            ConfigProblem(path="", message=describe_yaml_error(error))
        ) from error
    except (HydraException, OmegaConfBaseException) as error:
        message = _clean_message(str(error)).replace("override ++", "override ")
        cause = error.__cause__
        if isinstance(cause, OmegaConfBaseException):
            cause_message = _clean_message(str(cause))
            if cause_message not in message:
                message += f"\n{cause_message}"
        if isinstance(error, MissingConfigException):
            message = (
                _missing_hydra_plugin_hint(message)
                or _missing_config_hint(message)
                or _missing_included_config_hint(message)
                or message
            )
        path = _error_path(error)
        merging = _MERGE_ERROR.match(message)
        if not path and merging:
            # the key of the override, and Hydra's reason without its preamble
            path = merging.group("key").lstrip("+~")
            reason = message[merging.end() :].strip() or message
            message = f"cannot set it to {merging.group('value')}: {reason}"
        raise NipConfigError(ConfigProblem(path=path, message=message)) from error


_MERGE_ERROR = re.compile(
    r"^Error merging override (?P<key>[^=\s]+)=(?P<value>.*)$", re.M
)


_PRIMARY_MISSING = re.compile(r"Cannot find primary config '(?P<name>[^']+)'")


def _missing_config_hint(message: str) -> str | None:
    """For ``--config-name`` naming no config: the closest names and the configs
    there are (in the same group, or at the top level)."""
    match = _PRIMARY_MISSING.search(message)
    if match is None:
        return None
    from nip_core.parameters.validation import closest

    name = match.group("name").removesuffix(".yaml")
    try:
        known = sorted(
            {
                path.relative_to(entry.path).with_suffix("").as_posix()
                for entry in config_search_dirs()
                for path in entry.path.rglob("*.yaml")
                if not path.stem.endswith("_base")
                and path.relative_to(entry.path).parts[0] not in ("hydra", "run")
            }
        )
    except Exception:  # noqa: BLE001 - a hint must never hide the real problem
        return None
    group = name.rpartition("/")[0]
    nearby = [k for k in known if k.rpartition("/")[0] == group] or known
    hint = f"no config named {name!r}"
    suggestion = closest(name, known)
    if suggestion:
        hint += f"; did you mean {suggestion!r}?"
    shown = ", ".join(nearby[:40]) + (", ..." if len(nearby) > 40 else "")
    if nearby is known:
        where = "configs"
    else:
        where = f"configs in {group}/" if group else "top-level configs"
    return f"{hint} ({where}: {shown}; `nip config show -c NAME` shows one)"


_INCLUDED_MISSING = re.compile(
    r"In '(?P<by>[^']+)': Could not (?:load|find) '(?P<name>[^']+)'"
)


def _missing_included_config_hint(message: str) -> str | None:
    """For a config a defaults list names that no config directory holds: when a
    first-party plugin ships that folder (``code_validation/humaneval_base``), what
    became of the plugin (not installed, disabled, broken) and how to get it."""
    match = _INCLUDED_MISSING.search(message)
    if match is None:
        return None
    from nip_core.plugin_catalogue import missing_key_hint

    name = match.group("name")
    folder = name.lstrip("/").partition("/")[0]
    hint = None
    # plugins keep their configs in a folder named after their config directory,
    # their scenario or their trainer (pure_text_ei/...)
    for kind in ("config_dir", "scenario", "trainer"):
        try:
            hint = missing_key_hint(kind, folder)
        except Exception:  # noqa: BLE001 - a hint must never hide the real problem
            return None
        if hint is not None:
            break
    if hint is None:
        return None
    return (
        f"{match.group('by')!r} includes {name!r}, which no config directory "
        f"holds: {hint}"
    )


def _missing_hydra_plugin_hint(message: str) -> str | None:
    for config, package in HYDRA_PLUGIN_PACKAGES.items():
        if f"'{config}'" in message:
            return (
                f"{config} is not installed: it comes with the package {package}. "
                f"Install it with: pip install '{package}'"
            )
    return None


def describe_yaml_error(error: Exception, path: str | os.PathLike | None = None) -> str:
    """One message for a YAML error: file, line, column and what is wrong.

    Tabs get a word of their own: YAML cannot indent with them.
    """
    mark = getattr(error, "problem_mark", None)
    where = str(path) if path is not None else None
    if mark is not None:
        where = f"{where or mark.name}, line {mark.line + 1}, column {mark.column + 1}"
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if "'\\t'" in problem or "\\t" in problem or "tab" in problem.lower():
        problem += " (YAML is indented with spaces, never tabs)"
    context = getattr(error, "context", None)
    if context:
        problem = f"{context}: {problem}"
    return f"{where or 'a config file'} is not valid YAML: {problem}"


_OMEGACONF_DETAIL_PREFIXES = ("full_key:", "object_type=", "reference_type=")


def _clean_message(message: str) -> str:
    """Drop OmegaConf's bookkeeping lines (the path is reported separately)."""
    lines = []
    for line in message.strip().splitlines():
        if line.strip().startswith("Config search path:"):
            break  # Hydra's list of directories: `nip config show --help` has it
        if not line.strip().startswith(_OMEGACONF_DETAIL_PREFIXES):
            lines.append(line)
    return "\n".join(lines).strip()


def _error_path(error: BaseException) -> str:
    full_key = getattr(error, "full_key", None)
    return str(full_key) if full_key else ""


def normalise_overrides(app: Hydra, overrides: Sequence[str]) -> list[str]:
    """Let a plain ``key=value`` override set any key, given in the YAML or not.

    Hydra refuses to change a key that the composed YAML does not hold unless it is
    written ``+key=value``. In nip the parameter classes are the schema: a section's
    default values live there, not in YAML, and validation rejects unknown keys with
    a suggestion. So ``ppo.clip_epsilon=0.1`` becomes ``++ppo.clip_epsilon=0.1``
    (set, adding it if needed). Config-group choices (``graph_isomorphism/dataset=x``,
    ``hydra/launcher=joblib``), Hydra's own settings (``hydra.*``), and overrides
    already written with ``+``, ``++`` or ``~`` are left as they are.

    Raises
    ------
    NipConfigError
        When an override does not parse, naming it.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    normalised = []
    for text in overrides:
        try:
            [override] = parser.parse_overrides([text])
        except OverrideParseException as error:
            raise NipConfigError(
                ConfigProblem(
                    path="",
                    message=f"cannot parse the override {text!r}: "
                    f"{_clean_message(error.message)}",
                )
            ) from error
        key = override.key_or_group
        if not key:
            raise NipConfigError(
                ConfigProblem(
                    path="",
                    message=f"the override {text!r} names no key: write KEY=VALUE, "
                    "e.g. seed=5 or rl.lr=0.001",
                )
            )
        if not _is_group_override_value_ok(app, override):
            raise NipConfigError(
                ConfigProblem(
                    path=key,
                    message=f"the override {text!r} picks a config of the group "
                    f"{key!r}: its value must be a config name",
                    value=override.value(),
                    choices=tuple(_group_options(app, key)),
                )
            )
        if (
            override.type is OverrideType.CHANGE
            and override.package is None
            and key != HYDRA_KEY
            and not key.startswith(f"{HYDRA_KEY}.")
            and "/" not in key
            and not app.config_loader.repository.group_exists(key)
        ):
            text = "++" + text.lstrip()
        normalised.append(text)
    return normalised


def _group_options(app: Hydra, group: str) -> list[str]:
    try:
        return sorted(app.config_loader.get_group_options(group))
    except Exception:  # noqa: BLE001 - choices are a courtesy
        return []


def _is_group_override_value_ok(app: Hydra, override: Any) -> bool:
    """A config-group override's value must be a name (or a list of names)."""
    key = override.key_or_group
    if override.is_delete() or not app.config_loader.repository.group_exists(key):
        return True
    try:
        value = override.value()
    except Exception:  # noqa: BLE001 - sweeps and the like: Hydra checks them
        return True
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return isinstance(value, str) or override.is_sweep_override()


def check_primary_config(app: Hydra, config_name: str) -> None:
    """Refuse a primary config file that is not YAML or not a mapping, naming it.

    Hydra would report these with a traceback (invalid YAML, tabs) or compose
    nothing from them (a scalar).

    Raises
    ------
    NipConfigError
        With the file's path, and the line and column of a YAML error.
    """
    import yaml

    for element in app.config_loader.get_search_path().config_search_path:
        if not element.path or not element.path.startswith("file://"):
            continue
        base = Path(element.path[len("file://") :])
        for suffix in (".yaml", ".yml"):
            path = base / f"{config_name}{suffix}"
            if not path.is_file():
                continue
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as error:
                raise NipConfigError(
                    ConfigProblem("", describe_yaml_error(error, path))
                ) from None
            except (OSError, UnicodeDecodeError) as error:
                raise NipConfigError(
                    ConfigProblem("", f"cannot read the config {path}: {error}")
                ) from None
            if data is not None and not isinstance(data, dict):
                raise NipConfigError(
                    ConfigProblem(
                        "",
                        f"{path} must hold a mapping of config keys (key: value "
                        f"lines), not a {type(data).__name__}",
                    )
                )
            return


_WRAPPER_PREFIX = "_nip_primary__"


def _appends_a_top_level_group(
    app: Hydra, config_name: str, overrides: Sequence[str]
) -> bool:
    """Whether a primary config in a folder (``code_validation/default``) gets a
    config group appended (``+template=wide``) that lives at the top level, not in
    that folder. Hydra looks an appended group up relative to the primary config's
    folder (``code_validation/template/wide``, not found)."""
    folder, _, _ = config_name.rpartition("/")
    if not folder:
        return False
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception:  # noqa: BLE001 - Hydra reports bad overrides itself
        return False
    repository = app.config_loader.repository
    return any(
        override.is_add()
        and repository.group_exists(override.key_or_group)
        and not repository.group_exists(f"{folder}/{override.key_or_group}")
        for override in parsed
    )


def _top_level_primary(config_name: str) -> str:
    """A primary config at the top level that holds ``config_name`` (its content at
    the root, as when it is primary itself), so that appended groups are looked up
    from the top as everywhere else."""
    from hydra.core.config_store import ConfigStore

    name = _WRAPPER_PREFIX + config_name.replace("/", "__")
    ConfigStore.instance().store(
        name=name, node={"defaults": [f"/{config_name}@_global_", "_self_"]}
    )
    return name


_URL_CREDENTIALS = re.compile(r"(://)[^/@\s]*@")

_API_KEY_ENV_VALUE = re.compile(r"(api_key_env=)([^,\s]+)")
"""An ``api_key_env`` setting among overrides joined by commas (Hydra's
``hydra.job.override_dirname``)."""


def redact_override(text: str, *, secrets_as: str = "<{name}>") -> str:
    """An override with any secret hidden, as the config's own messages hide it: a
    value of ``*api_key_env`` that is not a variable name (the key itself) shown
    by its first characters, a URL's ``user:password@`` as ``***@``, and the value
    of any credential variable (:func:`nip_core.settings.redact_secrets`) as its
    name (``secrets_as``, ``{name}`` standing for it). Any other text is hidden the
    same way (a config's values, overrides joined by commas)."""
    from nip_core.parameters.text import shown_api_key_env
    from nip_core.settings import redact_secrets

    key, equals, value = text.partition("=")
    if equals and key.endswith("api_key_env"):
        text = key + equals + shown_api_key_env(value)
    else:
        text = _API_KEY_ENV_VALUE.sub(
            lambda match: match.group(1) + shown_api_key_env(match.group(2)), text
        )
    text = _URL_CREDENTIALS.sub(r"\1***@", _hide_escaped_secrets(text, secrets_as))
    return redact_secrets(text, shown_as=secrets_as)


def _hide_escaped_secrets(text: str, shown_as: str) -> str:
    """``text`` with the value of every credential variable written with Hydra's
    escapes (``abcdefgh\\=\\=`` for ``abcdefgh==``) replaced by ``shown_as``, as
    :func:`~nip_core.settings.redact_secrets` replaces one written plainly."""
    from hydra._internal.grammar.utils import escape_special_characters

    from nip_core.settings import secret_values

    for name, value in secret_values().items():
        escaped = escape_special_characters(value)
        if escaped != value:
            text = text.replace(escaped, shown_as.format(name=name))
    return text


SECRET_REFERENCE = "${{oc.env:{name}}}"
"""How an override refers to the value of the credential variable ``{name}``: an
interpolation that the job resolves from its environment."""

_REFERENCE = re.compile(r"\$\\?\{oc\.env\\?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)\\?\}")
"""A reference to a variable (:data:`SECRET_REFERENCE`), also as Hydra's sweeper
writes it into a job's overrides (``$\\{oc.env\\:NAME\\}``)."""


def display_override(text: str) -> str:
    """An override as the user wrote it (without the ``++`` nip may have added),
    with any secret hidden (:func:`redact_override`), and a reference to a
    credential variable (:func:`refer_to_secrets`) shown as ``<NAME>``, as a
    credential's value is. Sweep messages show overrides this way."""
    from nip_core.settings import secret_env_vars

    text = redact_override(text[2:] if text.startswith("++") else text)
    names = set(secret_env_vars())
    return _REFERENCE.sub(
        lambda match: f"<{match['name']}>" if match["name"] in names else match[0],
        text,
    )


def refer_to_secrets(text: str) -> str:
    """An override with the value of every credential variable in it
    (:func:`nip_core.settings.redact_secrets`) replaced by a reference to the
    variable (:data:`SECRET_REFERENCE`, ``${oc.env:OPENAI_API_KEY}``). A sweep
    hands Hydra its overrides this way: the credential reaches each job through
    its environment, and what Hydra and its launchers keep of a job (its config,
    submitit's pickles) holds the reference, not the value."""
    from nip_core.settings import redact_secrets

    text = _hide_escaped_secrets(text, SECRET_REFERENCE)
    return redact_secrets(text, shown_as=SECRET_REFERENCE)


def record_override(text: str) -> str:
    """An override as a sweep's manifest records it, to launch it again: as
    :func:`display_override` shows it, but the value of a credential variable as
    a reference to the variable (:func:`refer_to_secrets`; ``<OPENAI_API_KEY>``
    is no value Hydra can parse)."""
    return redact_override(
        text[2:] if text.startswith("++") else text, secrets_as=SECRET_REFERENCE
    )


def redact_config(data: Any, key: str = "") -> Any:
    """``data`` (a config as plain dicts and lists, ``key`` its own key) with every
    secret hidden as :func:`redact_override` hides it: the value of a key ending in
    ``api_key_env`` that is not a variable name, and in every string a URL's
    credentials, the value of a credential variable and an ``api_key_env``
    override. What nip writes of a config (Hydra's files of a sweep) holds it this
    way."""
    from nip_core.parameters.text import shown_api_key_env

    if isinstance(data, Mapping):
        return {name: redact_config(value, str(name)) for name, value in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(redact_config(item, key) for item in data)
    if isinstance(data, str):
        if key.endswith("api_key_env"):
            data = shown_api_key_env(data)
        return redact_override(data)
    return data


def compose(
    app: Hydra,
    config_name: str,
    overrides: Sequence[str] = (),
    *,
    multirun: bool = False,
    with_log_configuration: bool = False,
) -> Any:
    """Compose ``config_name`` with ``overrides`` (Hydra's grammar).

    Returns the whole ``DictConfig``, ``hydra:`` node included.

    Raises
    ------
    NipConfigError
        When the config or a config it names is missing, or an override is invalid.
    """
    from hydra.types import RunMode

    overrides = normalise_overrides(app, overrides)
    check_primary_config(app, config_name)
    primary = config_name
    if not multirun and _appends_a_top_level_group(app, config_name, overrides):
        primary = _top_level_primary(config_name)
    with hydra_errors():
        return app.compose_config(
            config_name=primary,
            overrides=overrides,
            run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN,
            with_log_configuration=with_log_configuration,
        )


def to_plain_dict(cfg: Any) -> dict[str, Any]:
    """The composed config as a plain dict: interpolations resolved, ``hydra:`` gone.

    Raises
    ------
    NipConfigError
        Listing every mandatory value left unset (``???``) by its dotted path, or an
        interpolation that cannot be resolved.
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf, open_dict

    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    cfg = cfg.copy()
    if HYDRA_KEY in cfg:
        # `${hydra:...}` interpolations read Hydra's config from here
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg[HYDRA_KEY]
    with hydra_errors():
        missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise NipConfigError(
            [
                ConfigProblem(
                    path=key,
                    message="mandatory value not set (the config has ???); "
                    f"give it with an override: {key}=VALUE",
                )
                for key in missing
            ]
        )
    with hydra_errors():
        container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return {str(key): value for key, value in container.items()}


def build_experiment(
    config: Mapping[str, Any],
    *,
    config_name: str | None = None,
    saved: bool = False,
) -> tuple[HyperParameters, ExperimentSettings]:
    """Validate a plain config: ``run:`` becomes the settings, the rest the parameters.

    Every problem of both halves is reported together. ``config_name`` (the name it
    was composed from) lets the error point at a missing ``# @package _global_``
    header, the usual mistake in an experiment config inside a directory. The
    original library's names (``interaction_protocol=pvg``) are an error, unless
    ``saved``: a saved dict (a run's ``hyper_params.json``, the original library's
    own) is converted to this version, as loading a run does.

    Raises
    ------
    NipConfigError
        With one problem per mistake, each with its dotted path.
    """
    from nip_core.parameters import HyperParameters
    from nip_core.settings import ExperimentSettings

    config = dict(config)
    config.pop(HYDRA_KEY, None)
    run_config = config.pop(RUN_KEY, None)
    problems: list[ConfigProblem] = []

    from nip_core.parameters.hyper_parameters import datasets_in
    from nip_core.parameters.migrations import legacy_name_problems

    data_dir = run_config.get("data_dir") if isinstance(run_config, Mapping) else None
    hyper_params = None
    # a config composed now with the original library's names is a mistake, not a
    # saved dict to convert (from_dict would take it for one)
    legacy = [] if saved else legacy_name_problems(config)
    try:
        if legacy:
            raise NipConfigError(legacy)
        # generated datasets are found by name in the run's data directory
        with datasets_in(data_dir if isinstance(data_dir, str) else None):
            hyper_params = HyperParameters.from_dict(config)
    except NipConfigError as error:
        problems.extend(error.problems)

    settings = None
    if run_config is not None and not isinstance(run_config, Mapping):
        problems.append(
            ConfigProblem(
                path=RUN_KEY,
                message="must be a mapping of run settings",
                value=run_config,
            )
        )
    else:
        try:
            settings = ExperimentSettings.from_dict(run_config)
        except NipConfigError as error:
            problems.extend(error.problems)

    if hyper_params is not None:
        # what only the protocol handler can tell (as building the run would)
        from nip_core.protocols.factory import protocol_problems

        problems.extend(protocol_problems(hyper_params))
        if not saved:
            problems.extend(
                _credential_problems(hyper_params.to_dict(include_meta=False))
            )

    if problems:
        hint = _package_header_hint(config_name, config, problems)
        raise NipConfigError(problems + ([hint] if hint else []))
    assert hyper_params is not None and settings is not None
    if not saved:
        _warn_missing_own_data(hyper_params.dataset)
    return hyper_params, settings


def _credential_problems(data: Any, path: str = "") -> list[ConfigProblem]:
    """A problem for every hyper-parameter that holds the value of a credential
    variable (:func:`nip_core.settings.redact_secrets`): a run saves its
    hyper-parameters as they are (``hyper_params.json``, which its resume reads)
    and hands them to W&B, so none may be a credential. (Settings are saved with
    such values hidden.)"""
    from nip_core.settings import redact_secrets

    if isinstance(data, Mapping):
        items: Any = data.items()
    elif isinstance(data, list | tuple):
        items = enumerate(data)
    else:
        shown = redact_secrets(data) if isinstance(data, str) else data
        if shown == data:
            return []
        return [
            ConfigProblem(
                path=path,
                message="holds the value of a credential variable (shown by its "
                "name): a run saves its hyper-parameters as they are, so keep the "
                "credential in its variable",
                value=shown,
            )
        ]
    return [
        problem
        for key, value in items
        for problem in _credential_problems(
            value, f"{path}.{key}" if path else str(key)
        )
    ]


def _warn_missing_own_data(dataset: Any) -> None:
    """A composed config's path to one's own data that does not exist here: said
    now, before a run fails on it (a saved run's data may live on another machine,
    so reading one back says nothing)."""
    from nip_core.errors import ParameterWarning
    from nip_core.parameters.hyper_parameters import is_path_like_dataset

    if not isinstance(dataset, str) or not is_path_like_dataset(dataset):
        return
    path = Path(dataset).expanduser()
    if not path.exists():
        warnings.warn(
            f"dataset {dataset!r}: there is no {path.resolve()} here; a run reads its "
            "own data from that path, so it must exist where the run runs",
            ParameterWarning,
            stacklevel=3,
        )


def _package_header_hint(
    config_name: str | None, config: Mapping[str, Any], problems: list[ConfigProblem]
) -> ConfigProblem | None:
    if not config_name or "/" not in config_name:
        return None
    from nip_core.parameters import CORE_FIELD_NAMES
    from nip_core.plugins import get_plugin_manager

    group_key = config_name.split("/", 1)[0]
    if not isinstance(config.get(group_key), Mapping):
        return None
    known = {*CORE_FIELD_NAMES, *get_plugin_manager().parameter_sections}
    if group_key in known:
        return None
    return ConfigProblem(
        path=group_key,
        message=f"the content of {config_name}.yaml landed under the key "
        f"{group_key!r}: an experiment config inside a directory must start with "
        "the line `# @package _global_`",
    )


def experiment_to_dict(
    hyper_params: HyperParameters, settings: ExperimentSettings
) -> dict[str, Any]:
    """The validated config as a plain dict, in the layout of a config file."""
    data = dict(hyper_params.to_dict())
    data.pop("_meta", None)
    data[RUN_KEY] = settings.to_dict()
    return data


DEFAULT_EXPERIMENT_PLUGINS: tuple[str, ...] = (
    "nip-plugin-graph-isomorphism",
    "nip-plugin-ppo",
)
"""The first-party plugins that provide the ``default`` config and what it needs."""


def missing_plugins_message(reason: str) -> str:
    """Explain what ``nip run`` lacks: for each plugin the default experiment needs,
    whether it is missing (and the command that installs it), disabled (and by
    which switch) or broken (and why)."""
    from nip_core.plugin_catalogue import install_command, plugin_state

    needed = list(DEFAULT_EXPERIMENT_PLUGINS)
    lines = [f"{reason}: nip needs a scenario plugin and a trainer plugin to run."]
    states = [plugin_state(name) for name in needed]
    lines += [f"  - {state}" for state in states if "installed and loaded" not in state]
    lines += [
        f"The default experiment needs {' and '.join(needed)}:",
        *(f"    {install_command(name)}" for name in needed),
        "Or name a config of your own with --config-name (configs are searched in "
        "./configs, then in each plugin's config directory).",
    ]
    return "\n".join(lines)


def _override_strings(value: Any) -> Iterator[str]:
    """The strings in a parsed override's value: a plain value, a list's or a
    dict's items, a sweep's choices."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _override_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _override_strings(item)
    elif isinstance(getattr(value, "list", None), list):  # ChoiceSweep, GlobSweep
        yield from _override_strings(value.list)


def _parsed_overrides(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed += parser.parse_overrides([text])
        except Exception:  # noqa: BLE001 - normalise_overrides reports it
            continue
    return parsed


def declare_key_variables(config: Any, overrides: Sequence[str] = ()) -> bool:
    """Declare secret (:func:`nip_core.settings.declare_secret_env_var`) every
    variable a ``*api_key_env`` setting names, in the composed ``config`` (a
    ``DictConfig`` or plain dicts) or among ``overrides`` (a sweep's choices too),
    before anything is saved: a parameter's own class declares it only when it is
    built, after a sweep's overrides were handed to Hydra. Return whether a
    variable was declared that was not a credential variable already."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from nip_core.parameters.text import _ENV_NAME
    from nip_core.settings import declare_secret_env_var, secret_env_vars

    names: set[str] = set()

    def walk(data: Any, key: str = "") -> None:
        if isinstance(data, Mapping):
            for name, value in data.items():
                if str(name) != HYDRA_KEY or key:
                    walk(value, str(name))
        elif isinstance(data, list | tuple):
            for item in data:
                walk(item, key)
        elif isinstance(data, str) and key.endswith("api_key_env"):
            names.add(data)

    if isinstance(config, DictConfig | ListConfig):
        config = OmegaConf.to_container(config, resolve=False)
    walk(config)
    for override in _parsed_overrides(overrides):
        if str(override.key_or_group).endswith("api_key_env"):
            with contextlib.suppress(Exception):
                names.update(_override_strings(override.value()))
    known = set(secret_env_vars())
    new = False
    for name in sorted(names):
        if _ENV_NAME.fullmatch(name):
            new |= name not in known
            declare_secret_env_var(name)
    return new


ENV_SET_KEY = "hydra.job.env_set"
"""Hydra's setting of the variables each job's environment gets."""


def literal_credential_problems(overrides: Sequence[str]) -> list[ConfigProblem]:
    """A problem for every credential written literally in a variable that
    ``hydra.job.env_set`` gives the jobs: a variable named like a credential
    (:data:`~nip_core.settings.SECRET_ENV_VARS`, a name ending in one of
    :data:`~nip_core.settings.SECRET_NAME_ENDINGS`, or one declared secret, such
    as the one ``openai_backend.api_key_env`` names) set to a value of 8
    characters or more that refers to no variable (``${oc.env:NAME}``).

    Hydra saves the value where it keeps the sweep's config (``multirun.yaml``,
    each job's ``hydra.yaml``) and nip in the manifest a resume launches again
    from (``sweep.json``); hidden there, the sweep could not resume. A value that
    is that of a credential variable in nip's environment was made a reference to
    it already (:func:`refer_to_secrets`)."""
    from nip_core.settings import (
        SECRET_ENV_VARS,
        SECRET_NAME_ENDINGS,
        secret_env_vars,
    )

    declared = set(secret_env_vars()) | set(SECRET_ENV_VARS)
    problems = []
    for override in _parsed_overrides(overrides):
        key = str(override.key_or_group)
        if override.is_delete():
            continue
        try:
            value = override.value()
        except Exception:  # noqa: BLE001 - normalise_overrides reports it
            continue
        if key == ENV_SET_KEY and isinstance(value, Mapping):
            items = [(str(name), item) for name, item in value.items()]
        elif key.startswith(f"{ENV_SET_KEY}."):
            items = [(key[len(ENV_SET_KEY) + 1 :], value)]
        else:
            continue
        for name, item in items:
            if name not in declared and not name.upper().endswith(SECRET_NAME_ENDINGS):
                continue
            if any(len(s) >= 8 and "${" not in s for s in _override_strings(item)):
                problems.append(
                    ConfigProblem(
                        path=f"{ENV_SET_KEY}.{name}",
                        message=f"gives the jobs a credential written out: Hydra "
                        "and nip would save it with the sweep's config (the "
                        "manifest a resume reads included). Export it instead "
                        f"(export {name}=...): the jobs inherit the environment, "
                        f"or refer to it ({ENV_SET_KEY}.{name}='${{oc.env:{name}}}')",
                    )
                )
    return problems
